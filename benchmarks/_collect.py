"""Collecting a tool-call stream, in a fresh process: ``python -m benchmarks._collect``.

`ChatCompletionStream.collect` folds a stream's chunks with the public
`enkrypt_async.ChatCompletionAccumulator`. A tool call's arguments arrive as
thousands of small fragments, so a fold that re-joined them at every chunk would
be quadratic. This times ``add`` of every chunk then ``result()`` for a stream of
2,000 chunks and for one of 4,000 (decoded beforehand, as the stream yields them),
and prints one JSON line: microseconds per collect, per chunk, and the ratio of the
two, which is 2 when the fold is linear in the stream's size. No I/O, no target.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from itertools import pairwise
from typing import Any, Final

from ._decode import _interleaved_us
from ._payloads import reference

#: The sizes of the two streams compared.
SIZES: Final = (2000, 4000)


def tool_call_events(count: int) -> tuple[bytes, str]:
    """``count`` chat chunks of one tool call, as a JSON array; and its arguments.

    The first chunk opens the call (id, type, function name, empty arguments),
    the next ``count - 2`` each add a fragment of 4-5 characters of the arguments
    (a JSON object holding the reference text), and the last has an empty delta,
    ``finish_reason: "tool_calls"``, the usage and the detections.
    """
    ref = reference()
    fragments = count - 2
    text = ref["choices"][0]["text"]
    joke = (text * (4 * fragments // len(text) + 1))[: 4 * fragments]
    arguments = json.dumps({"joke": joke})
    bounds = [len(arguments) * i // fragments for i in range(fragments + 1)]
    head = {
        "id": "chatcmpl-" + ref["id"],
        "object": "chat.completion.chunk",
        "created": ref["created"],
        "model": ref["model"],
    }

    def chunk(
        delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def fragment(start: int, stop: int) -> dict[str, Any]:
        return {
            "tool_calls": [
                {"index": 0, "function": {"arguments": arguments[start:stop]}}
            ]
        }

    opening = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_bench",
                "type": "function",
                "function": {"name": "tell_joke", "arguments": ""},
            }
        ],
    }
    last = {
        **chunk({}, "tool_calls"),
        "usage": ref["usage"],
        "enkrypt_policy_detections": ref["enkrypt_policy_detections"],
    }
    chunks = [
        chunk(opening),
        *(chunk(fragment(a, b)) for a, b in pairwise(bounds)),
        last,
    ]
    return json.dumps(chunks).encode(), arguments


def measure(repeats: int) -> dict[str, Any]:
    import msgspec

    from enkrypt_async import (
        ChatCompletion,
        ChatCompletionAccumulator,
        ChatCompletionChunk,
    )

    def fold(chunks: list[ChatCompletionChunk]) -> ChatCompletion:
        accumulator = ChatCompletionAccumulator()
        for chunk in chunks:
            accumulator.add(chunk)
        return accumulator.result()

    streams: dict[str, list[ChatCompletionChunk]] = {}
    for size in SIZES:
        body, arguments = tool_call_events(size)
        chunks = msgspec.json.decode(body, type=list[ChatCompletionChunk], strict=False)
        if len(chunks) != size:
            raise AssertionError(f"{len(chunks)} chunks built, not {size}")
        # The fold must give the whole call back, or the timing means nothing.
        choice = fold(chunks).choices[0]
        calls = choice.message.tool_calls or []
        if choice.finish_reason != "tool_calls" or len(calls) != 1:
            raise AssertionError(f"not one finished tool call: {choice!r:.200}")
        if calls[0].function.arguments != arguments:
            raise AssertionError("the tool call's arguments were not joined back")
        streams[str(size)] = chunks
    us = _interleaved_us(
        {size: partial(fold, chunks) for size, chunks in streams.items()},
        repeats,
    )
    small, large = (str(size) for size in SIZES)
    return {
        "collect_us": us,
        "per_chunk_us": {size: us[size] / int(size) for size in us},
        "ratio": us[large] / us[small],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._collect")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.repeats)), flush=True)


if __name__ == "__main__":
    main()

"""Decode microbenchmarks, in a fresh process: ``python -m benchmarks._decode``.

Prints one JSON line of median microseconds per call for the whole ~9 KB
completion and for one stream chunk, with the library's decoder, the floor's
Structs, `json.loads` and a pydantic model; and per streamed event, the SSE
splitting alone (``bytes.split`` against the library's ``SSEDecoder``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

from ._payloads import completion_body, sample_chunk, stream_body, stream_events


def _interleaved_us(
    funcs: dict[str, Callable[[], object]], repeats: int, per: int = 1
) -> dict[str, float]:
    """Median microseconds per call, candidates timed in turn so drift hits all."""
    timers = {name: timeit.Timer(func) for name, func in funcs.items()}
    numbers = {name: timer.autorange()[0] for name, timer in timers.items()}
    runs: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {name: statistics.median(r) / per * 1e6 for name, r in runs.items()}


def _pruned(value: object) -> object:
    # The library's Structs omit defaults when converted, the floor's do not.
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def measure(repeats: int) -> dict[str, Any]:
    import msgspec

    from enkrypt_async._models.completions import completion_decoder
    from enkrypt_async.sse import SSEDecoder

    from . import _floor
    from ._pydantic import Completion as PydanticCompletion

    results: dict[str, Any] = {}
    for name, data in (("response", completion_body()), ("chunk", sample_chunk())):
        # Same answer from every decoder, or the comparison means nothing.
        ours = msgspec.to_builtins(completion_decoder.decode(data))
        floor = msgspec.to_builtins(_floor.decoder.decode(data))
        pydantic = PydanticCompletion.model_validate_json(data)
        assert _pruned(ours) == _pruned(floor) == _pruned(pydantic.model_dump())
        results[name] = _interleaved_us(
            {
                "enkrypt_async": partial(completion_decoder.decode, data),
                "floor msgspec": partial(_floor.decoder.decode, data),
                "json.loads": partial(json.loads, data),
                "pydantic": partial(PydanticCompletion.model_validate_json, data),
            },
            repeats,
        )
    events = len(stream_events())
    pieces = _pieces(stream_body(), 64 * 1024)

    def split_blocks() -> None:
        rest = b""
        for piece in pieces:
            blocks = (rest + piece).split(b"\n\n")
            rest = blocks.pop()

    def sse_decoder() -> None:
        decoder = SSEDecoder()
        for piece in pieces:
            decoder.feed(piece)

    results["sse_event"] = _interleaved_us(
        {"floor split": split_blocks, "enkrypt_async SSEDecoder": sse_decoder},
        repeats,
        events,
    )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._decode")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.repeats)), flush=True)


if __name__ == "__main__":
    main()

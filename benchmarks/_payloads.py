"""The pre-built bodies every benchmark uses, and what the processes share."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
REFERENCE: Final = ROOT / "tests" / "data" / "completion_reference.json"
RESULTS: Final = Path(__file__).resolve().parent / "results"

API_KEY: Final = "sk-bench-0123456789"
DEPLOYMENT: Final = "bench-deployment"
PROMPT: Final = "give me a good family joke"
#: A prompt containing this marker gets headers and one chunk, then silence.
IDLE_MARKER: Final = "__bench_idle__"
STREAM_CHUNKS: Final = 2048
#: A prompt containing this marker gets a paced stream: `PACED_CHUNKS` events, one
#: every `PACED_GAP_S`, so that each arrives in a read of its own, as an LLM's do.
PACED_MARKER: Final = "__bench_paced__"
PACED_CHUNKS: Final = 256
PACED_GAP_S: Final = 0.0005


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout first on the path."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return env


def _compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@cache
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_bytes())
    return data


@cache
def completion_body() -> bytes:
    """The ~9 KB reference completion, compact, with full detections."""
    return _compact(reference())


def _chunk(index: int, text: str, last: bool) -> dict[str, Any]:
    ref = reference()
    choice = ref["choices"][0]
    chunk: dict[str, Any] = {
        "id": ref["id"],
        "object": ref["object"],
        "created": ref["created"],
        "model": ref["model"],
        "choices": [
            {
                "text": text,
                "finish_reason": choice["finish_reason"] if last else None,
                "seed": choice["seed"],
                "logprobs": None,
                "index": 0,
            }
        ],
    }
    if last:
        chunk["usage"] = ref["usage"]
        chunk["enkrypt_policy_detections"] = ref["enkrypt_policy_detections"]
    return chunk


@cache
def _pieces() -> list[str]:
    """The reference text cut into 4-character pieces, one per streamed chunk."""
    text: str = reference()["choices"][0]["text"]
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def _events(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + _compact(chunk) + b"\n\n" for chunk in chunks] + [
        b"data: [DONE]\n\n"
    ]


@cache
def stream_events() -> list[bytes]:
    """``data: {...}\\n\\n`` blocks: 2,048 chunks (the last with detections), DONE."""
    pieces = _pieces()
    return _events(
        [
            _chunk(0, pieces[n % len(pieces)], n == STREAM_CHUNKS - 1)
            for n in range(STREAM_CHUNKS)
        ]
    )


def _chat_chunk(
    delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` as OpenAI writes it, one choice."""
    ref = reference()
    chunk: dict[str, Any] = {
        "id": "chatcmpl-" + ref["id"],
        "object": "chat.completion.chunk",
        "created": ref["created"],
        "model": ref["model"],
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if finish_reason is not None:
        chunk["usage"] = ref["usage"]
        chunk["enkrypt_policy_detections"] = ref["enkrypt_policy_detections"]
    return chunk


@cache
def chat_stream_events() -> list[bytes]:
    """The chat stream: 2,048 ``chat.completion.chunk`` events, then DONE.

    As OpenAI sends them: the first announces the role with empty content, the
    next 2,046 carry the pieces of `stream_events` as content deltas, and the last
    has an empty delta, the finish reason, the usage and the detections.
    """
    pieces = _pieces()
    ref = reference()
    return _events(
        [
            _chat_chunk({"role": "assistant", "content": ""}),
            *(
                _chat_chunk({"content": pieces[n % len(pieces)]})
                for n in range(STREAM_CHUNKS - 2)
            ),
            _chat_chunk({}, ref["choices"][0]["finish_reason"]),
        ]
    )


@cache
def paced_events() -> list[bytes]:
    """The paced stream: the first chunks of `stream_events`, the last one, DONE."""
    events = stream_events()
    return [*events[: PACED_CHUNKS - 1], events[-2], events[-1]]


def sample_chunk() -> bytes:
    """The JSON of one ordinary (not the last) stream chunk."""
    return stream_events()[1][len(b"data: ") : -2]


def stream_body() -> bytes:
    """The whole SSE body, as the client sees it once de-chunked."""
    return b"".join(stream_events())

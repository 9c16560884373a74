"""Chat completions: deterministic replies and tool calls, and their objects.

Nothing here touches the network. A reply is the completions generator's text
(`_generate.generate`) seeded with the request seed and the rendered
conversation (`ChatJob.prompt`), so the same messages and seed always give the
same reply, streamed or not. A tool call is built from the last user message
(`tool_arguments`); `max_tokens` and `stop` do not cut it. Refused bodies get
OpenAI's 400 `error` objects (messages, params and codes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ._chat_request import ROLES, ChatJob, content_text, parse_chat_request
from ._generate import (
    choice_seed,
    count_tokens,
    end_stream,
    generate,
    interleave,
    split_pieces,
)

__all__ = [
    "ROLES",
    "ChatChoice",
    "ChatExchange",
    "ChatJob",
    "ToolCall",
    "chat_body",
    "chat_stream_events",
    "content_text",
    "generate_chat",
    "parse_chat_request",
    "tool_arguments",
]

#: Words a reply may have when the request sets no limit (the corpus stops first).
_UNLIMITED: Final = 1_000_000
_FINISH: Final = {"eos": "stop", "stop": "stop", "length": "length"}


# --- the reply ----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A deterministic call to the requested tool.

    Attributes:
        id: `"call_"` and 24 hex digits, stable for the same request and choice.
        name: The function's name.
        arguments: The arguments, a JSON object encoded as a string.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatChoice:
    """One generated choice.

    Attributes:
        content: The reply text, or None for a tool call.
        finish_reason: "stop", "length" or "tool_calls".
        completion_tokens: Words of the reply (or of the call's arguments).
        tool_call: The call answered instead of text, if any.
    """

    content: str | None
    finish_reason: str
    completion_tokens: int
    tool_call: ToolCall | None = None


def _number(schema: Mapping[str, object], value_seed: int, integer: bool) -> float:
    """A stable number within the schema's `minimum`/`maximum` (default 1..100)."""
    given = [schema.get(k) for k in ("minimum", "maximum")]
    bounds = [float(v) if isinstance(v, (int, float)) else None for v in given]
    low = 1.0 if bounds[0] is None else bounds[0]
    high = max(low, low + 99 if bounds[1] is None else bounds[1])
    if integer:
        return int(low) + value_seed % (int(high) - int(low) + 1)
    return round(low + (high - low) * (value_seed % 10_001) / 10_000, 2)


def _value(schema: object, text: str, value_seed: int) -> object:
    """A property's value: text, a stable number, true, an enum member, or null."""
    if not isinstance(schema, dict):
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[value_seed % len(enum)]
    kind = schema.get("type")
    if isinstance(kind, list):  # e.g. ["string", "null"]
        kind = next((k for k in kind if k != "null"), None)
    if kind in ("integer", "number"):
        return _number(schema, value_seed, integer=kind == "integer")
    return (
        {"string": text, "boolean": True}.get(kind) if isinstance(kind, str) else None
    )


def tool_arguments(
    function: Mapping[str, object], text: str, *, seed: int | None, index: int
) -> dict[str, object]:
    """Return the arguments of a call to `function`, built from `text`.

    Each property of `parameters.properties` gets a value: strings the text,
    integers and numbers a stable number (within `minimum`/`maximum` when
    given), booleans true, an `enum` one of its members, anything else null.
    Without properties the arguments are `{"query": text}`.

    Args:
        function: The tool's `function` object.
        text: Text of the last user message.
        seed: The request's seed.
        index: The choice's rank.
    """
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict) or not properties:
        return {"query": text}
    return {
        str(name): _value(schema, text, choice_seed(seed, f"{name}\x00{text}", index))
        for name, schema in properties.items()
    }


def _reply(job: ChatJob, index: int) -> ChatChoice:
    if job.tool is None:
        limit = _UNLIMITED if job.max_tokens is None else job.max_tokens
        text = generate(
            job.prompt, seed=job.seed, index=index, max_tokens=limit, stop=job.stop
        )
        content = text.text.removeprefix(" ")
        return ChatChoice(content, _FINISH[text.finish_reason], text.completion_tokens)
    name = str(job.tool.get("name"))
    arguments = tool_arguments(job.tool, job.user_text, seed=job.seed, index=index)
    encoded = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    material = f"{job.seed!r}\x00{index}\x00{name}\x00{job.prompt}".encode()
    call = ToolCall("call_" + hashlib.sha256(material).hexdigest()[:24], name, encoded)
    return ChatChoice(None, "tool_calls", count_tokens(encoded), call)


def generate_chat(job: ChatJob) -> list[ChatChoice]:
    """Generate every choice of `job`, in `index` order."""
    return [_reply(job, index) for index in range(job.n)]


# --- chat completion objects (OpenAI's wire format) --------------------------------


def _head(job: ChatJob, kind: str) -> dict[str, object]:
    return {
        "id": job.completion_id,
        "object": kind,
        "created": job.created,
        "model": job.model,
    }


def _fingerprint(job: ChatJob) -> str:
    return "fp_" + hashlib.blake2b(job.model.encode(), digest_size=5).hexdigest()


def _usage(job: ChatJob, choices: Sequence[ChatChoice]) -> dict[str, object]:
    prompt_tokens = count_tokens(job.prompt)
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _call(call: ToolCall, arguments: str | None = None) -> dict[str, object]:
    function = {
        "name": call.name,
        "arguments": call.arguments if arguments is None else arguments,
    }
    return {"id": call.id, "type": "function", "function": function}


def chat_body(
    job: ChatJob, choices: Sequence[ChatChoice], detections: dict[str, object] | None
) -> dict[str, object]:
    """Return the non-streamed `chat.completion` object."""
    body = _head(job, "chat.completion")
    body["choices"] = [
        {
            "index": index,
            "message": {
                "role": "assistant",
                "content": choice.content,
                "refusal": None,
                **(
                    {"tool_calls": [_call(choice.tool_call)]}
                    if choice.tool_call
                    else {}
                ),
            },
            "logprobs": None,
            "finish_reason": choice.finish_reason,
        }
        for index, choice in enumerate(choices)
    ]
    body["usage"] = _usage(job, choices)
    body["system_fingerprint"] = _fingerprint(job)
    if detections is not None:
        body["enkrypt_policy_detections"] = detections
    return body


def _deltas(choice: ChatChoice, chunk_chars: int) -> list[dict[str, object]]:
    """Return one choice's deltas, the last one (`{}`) being its finish."""
    call = choice.tool_call
    if call is None:
        pieces = split_pieces(choice.content or "", chunk_chars)
        first: dict[str, object] = {"role": "assistant", "content": ""}
        rest: list[dict[str, object]] = [{"content": p} for p in pieces if p]
        return [first, *rest, {}]
    opening = {"index": 0, **_call(call, arguments="")}
    first = {"role": "assistant", "content": None, "tool_calls": [opening]}
    # At least three fragments of any arguments of three characters or more.
    size = max(1, min(chunk_chars, -(-len(call.arguments) // 3)))
    fragments = [p for p in split_pieces(call.arguments, size) if p]
    rest = [
        {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in fragments
    ]
    return [first, *rest, {}]


def chat_stream_events(
    job: ChatJob,
    choices: Sequence[ChatChoice],
    detections: dict[str, object] | None,
    chunk_chars: int,
) -> list[dict[str, object]]:
    """Return the stream's `chat.completion.chunk` objects, without `[DONE]`.

    Each choice opens with a delta carrying the role (and, for a tool call, its
    id, type, name and empty arguments), then content pieces of `chunk_chars`
    characters (or argument fragments, at least three), then an empty delta
    with the `finish_reason`. Choices interleave round-robin; the last of these
    chunks carries the detections. With `include_usage` every chunk has
    `usage: null` and a last chunk with `choices: []` carries the usage.
    """
    events: list[dict[str, object]] = []
    head = {
        **_head(job, "chat.completion.chunk"),
        "system_fingerprint": _fingerprint(job),
    }
    steps = [_deltas(choice, chunk_chars) for choice in choices]
    for index, delta, last in interleave(steps):
        reason = choices[index].finish_reason if last else None
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": reason,
        }
        events.append({**head, "choices": [choice]})
        if job.include_usage:
            events[-1]["usage"] = None
    usage = {**head, "choices": [], "usage": _usage(job, choices)}
    return end_stream(events, detections, usage if job.include_usage else None)


@dataclass
class ChatExchange:
    """One chat completions request as the emulator answers it.

    Attributes:
        job: The validated request.
        choices: The generated choices (after `generate`).
    """

    job: ChatJob
    choices: list[ChatChoice] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Mapping[str, object], default_model: str) -> ChatExchange:
        """Validate `body` (see `parse_chat_request`)."""
        return cls(parse_chat_request(body, default_model=default_model))

    def input_text(self) -> str:
        """Return the text input guardrails check: the last user message."""
        return self.job.user_text

    def generate(self) -> str:
        """Generate the choices; return the text output guardrails check."""
        self.choices = generate_chat(self.job)
        said = (
            c.tool_call.arguments if c.tool_call else c.content for c in self.choices
        )
        return "\n".join(text or "" for text in said)

    def body(self, detections: dict[str, object] | None) -> dict[str, object]:
        """Return the non-streamed answer."""
        return chat_body(self.job, self.choices, detections)

    def events(
        self, detections: dict[str, object] | None, chunk_chars: int
    ) -> list[dict[str, object]]:
        """Return the streamed answer's chunks."""
        return chat_stream_events(self.job, self.choices, detections, chunk_chars)

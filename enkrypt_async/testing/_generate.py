"""The completions request and answer: validation, deterministic text, objects.

Nothing here touches the network. A "token" is a whitespace-separated word.
Text is stitched from a small built-in corpus by a PRNG seeded from the request
seed, the prompt and the choice's rank, so the same inputs always give the same
text, streamed or not.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

__all__ = [
    "CORPUS",
    "DEFAULT_MAX_TOKENS",
    "CompletionJob",
    "GeneratedText",
    "InvalidRequestError",
    "TextExchange",
    "choice_seed",
    "completion_body",
    "count_tokens",
    "end_stream",
    "generate",
    "generate_all",
    "interleave",
    "parse_request",
    "split_pieces",
    "stream_events",
]

DEFAULT_MAX_TOKENS: Final = 64
_T = TypeVar("_T")

CORPUS: Final[tuple[str, ...]] = (
    "Why don't scientists trust atoms? Because they make up everything!",
    "Why was the math book sad? Because it had too many problems.",
    "Why did the scarecrow win an award? Because he was outstanding in his field.",
    "Why did the bicycle fall over? Because it was two-tired.",
    "Why did the tomato turn red? Because it saw the salad dressing.",
    "Why did the coffee file a police report? It got mugged.",
    "I used to be a baker, but I couldn't make enough dough.",
    "I was going to buy a book on anti-gravity, but I couldn't put it down.",
    "What do you call a fake noodle? An impasta.",
    "Why can't a nose be twelve inches long? Because then it would be a foot.",
    "What do you call a bear with no teeth? A gummy bear.",
    "Why did the cookie go to the doctor? Because it felt crummy.",
    "How does the moon cut his hair? Eclipse it.",
    "What did the ocean say to the beach? Nothing, it just waved.",
    "Why do cows wear bells? Because their horns don't work.",
    "What do you call a sleeping bull? A bulldozer.",
    "Why did the golfer bring two pairs of pants? In case he got a hole in one.",
    "What kind of tree fits in your hand? A palm tree.",
    "Why are elevator jokes so classic? They work on so many levels.",
    "What did one wall say to the other? I'll meet you at the corner.",
    "Why did the picture go to jail? Because it was framed.",
    "What do you call cheese that isn't yours? Nacho cheese.",
    "Why don't eggs tell jokes? They'd crack each other up.",
    "How do you organize a space party? You planet.",
    "Why was the broom late? It over-swept.",
    "What do lawyers wear to court? Lawsuits.",
    "Why did the student eat his homework? The teacher said it was a piece of cake.",
    "What do you call a dinosaur that is sleeping? A dino-snore.",
    "Why did the banana go to the doctor? It wasn't peeling well.",
    "Why do bees have sticky hair? Because they use honeycombs.",
    "A good family dinner starts with everyone at the table and phones away.",
    "Board games on a rainy afternoon make for the best family memories.",
    "Laughter is the shortest distance between two people.",
    "A walk in the park is a simple way to share a quiet moment together.",
    "Here is another one you can tell at breakfast.",
    "Kids love riddles, so keep a few ready for long car rides.",
)

_WORD = re.compile(r"\S+")
_MAX_SENTENCES: Final = 8


@dataclass(frozen=True)
class GeneratedText:
    """One generated choice.

    Attributes:
        text: The completion text (with the prompt prepended when echoed).
        finish_reason: "length", "stop" or "eos".
        completion_tokens: Words generated (the echoed prompt not included).
        seed: The unsigned 64-bit seed reported as `choices[].seed`.
    """

    text: str
    finish_reason: str
    completion_tokens: int
    seed: int


def count_tokens(text: str) -> int:
    """Return the number of "tokens" (whitespace-separated words) in `text`."""
    return sum(1 for _ in _WORD.finditer(text))


def choice_seed(seed: int | None, prompt: str, index: int) -> int:
    """Return a stable unsigned 64-bit seed for one choice.

    Python's `hash()` is salted per process, so a cryptographic digest is used
    instead; the value may exceed the int64 range, as Together's seeds do.
    """
    material = f"{seed!r}\x00{index}\x00{prompt}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


def _cut_at_word(text: str, words: int) -> int:
    """Return the end offset of the `words`-th word of `text`, or its length."""
    if words <= 0:
        return 0
    for count, match in enumerate(_WORD.finditer(text), start=1):
        if count == words:
            return match.end()
    return len(text)


def generate(
    prompt: str,
    *,
    seed: int | None,
    index: int,
    max_tokens: int,
    stop: Sequence[str] = (),
    echo: bool = False,
) -> GeneratedText:
    """Generate the text of one choice, deterministically.

    Args:
        prompt: The prompt this choice answers.
        seed: The request's seed (None still gives a deterministic text).
        index: The choice's rank among the `n` choices of its prompt.
        max_tokens: At most this many words are generated ("length" if hit).
        stop: Stop sequences; the text is cut before the first one ("stop").
        echo: Prepend the prompt to the returned text.

    Returns:
        The generated choice.
    """
    value = choice_seed(seed, prompt, index)
    rng = random.Random(value)
    count = rng.randint(1, _MAX_SENTENCES)
    full = " " + " ".join(rng.choice(CORPUS) for _ in range(count))
    cut = _cut_at_word(full, max_tokens)
    finish_reason = "length" if cut < len(full) else "eos"
    stops = [pos for pos in (full.find(s) for s in stop if s) if pos != -1]
    if stops and min(stops) < cut:
        cut = min(stops)
        finish_reason = "stop"
    text = full[:cut]
    tokens = count_tokens(text)
    if echo:
        text = prompt + text
    return GeneratedText(text, finish_reason, tokens, value)


def split_pieces(text: str, size: int) -> Iterator[str]:
    """Yield `text` in pieces of `size` characters (one empty piece if empty)."""
    if not text:
        yield ""
        return
    for start in range(0, len(text), size):
        yield text[start : start + size]


def interleave(per_choice: Sequence[Sequence[_T]]) -> Iterator[tuple[int, _T, bool]]:
    """Yield `(choice index, item, last of its choice)`, choices round-robin."""
    for step in range(max(map(len, per_choice), default=0)):
        for index, items in enumerate(per_choice):
            if step < len(items):
                yield index, items[step], step == len(items) - 1


def end_stream(
    events: list[dict[str, object]],
    detections: dict[str, object] | None,
    usage_event: dict[str, object] | None,
) -> list[dict[str, object]]:
    """Put `detections` on the last event, append `usage_event`; return `events`."""
    if detections is not None and events:
        events[-1]["enkrypt_policy_detections"] = detections
    if usage_event is not None:
        events.append(usage_event)
    return events


# --- completion objects (Together's dialect, as in the reference example) ---------


@dataclass
class CompletionJob:
    """A validated completion request, ready to answer."""

    prompts: list[str]
    model: str
    n: int = 1
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: tuple[str, ...] = ()
    seed: int | None = None
    echo: bool = False
    include_usage: bool = False
    completion_id: str = field(default_factory=lambda: secrets.token_hex(8))
    created: int = field(default_factory=lambda: int(time.time()))


def generate_all(job: CompletionJob) -> list[GeneratedText]:
    """Generate every choice of `job`, in `index` order (prompt-major, as OpenAI).

    A choice's text depends on its prompt and its rank for that prompt, not on
    the other prompts, so a prompt gives the same text alone or in a list.
    """
    return [
        generate(
            prompt,
            seed=job.seed,
            index=rank,
            max_tokens=job.max_tokens,
            stop=job.stop,
            echo=job.echo,
        )
        for prompt in job.prompts
        for rank in range(job.n)
    ]


def _usage(job: CompletionJob, choices: Sequence[GeneratedText]) -> dict[str, int]:
    prompt_tokens = sum(count_tokens(p) for p in job.prompts)
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _head(job: CompletionJob) -> dict[str, object]:
    return {
        "id": job.completion_id,
        "object": "text.completion",
        "created": job.created,
        "model": job.model,
    }


def _choice(
    index: int, text: str, finish_reason: str | None, seed: int
) -> dict[str, object]:
    return {
        "text": text,
        "finish_reason": finish_reason,
        "seed": seed,
        "logprobs": None,
        "index": index,
    }


def completion_body(
    job: CompletionJob,
    choices: Sequence[GeneratedText],
    detections: dict[str, object] | None,
) -> dict[str, object]:
    """Return the non-streamed completion object."""
    body = _head(job)
    body["prompt"] = []
    body["choices"] = [
        _choice(i, c.text, c.finish_reason, c.seed) for i, c in enumerate(choices)
    ]
    body["usage"] = _usage(job, choices)
    if detections is not None:
        body["enkrypt_policy_detections"] = detections
    return body


def stream_events(
    job: CompletionJob,
    choices: Sequence[GeneratedText],
    detections: dict[str, object] | None,
    chunk_chars: int,
) -> list[dict[str, object]]:
    """Return the stream's chunks, without the final `[DONE]`.

    Each chunk carries one piece of one choice; choices interleave round-robin,
    the last piece of a choice carries its `finish_reason`, the last content
    chunk carries the detections, and with `include_usage` a chunk with
    `choices: []` and `usage` comes last.
    """
    pieces = [list(split_pieces(c.text, chunk_chars)) for c in choices]
    events: list[dict[str, object]] = []
    for index, piece, last in interleave(pieces):
        choice = choices[index]
        reason = choice.finish_reason if last else None
        event = _head(job)
        event["choices"] = [_choice(index, piece, reason, choice.seed)]
        events.append(event)
    usage: dict[str, object] | None = None
    if job.include_usage:
        usage = {**_head(job), "choices": [], "usage": _usage(job, choices)}
    return end_stream(events, detections, usage)


@dataclass
class TextExchange:
    """One completions request as the emulator answers it (see `ChatExchange`)."""

    job: CompletionJob
    choices: list[GeneratedText] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Mapping[str, object], default_model: str) -> TextExchange:
        """Validate `body` (see `parse_request`)."""
        return cls(parse_request(body, default_model=default_model))

    def input_text(self) -> str:
        """Return the text input guardrails check: the prompts."""
        return "\n".join(self.job.prompts)

    def generate(self) -> str:
        """Generate the choices; return the text output guardrails check."""
        self.choices = generate_all(self.job)
        return "\n".join(choice.text for choice in self.choices)

    def body(self, detections: dict[str, object] | None) -> dict[str, object]:
        """Return the non-streamed answer."""
        return completion_body(self.job, self.choices, detections)

    def events(
        self, detections: dict[str, object] | None, chunk_chars: int
    ) -> list[dict[str, object]]:
        """Return the streamed answer's chunks."""
        return stream_events(self.job, self.choices, detections, chunk_chars)


# --- request validation -----------------------------------------------------------


class InvalidRequestError(Exception):
    """A body the proxy refuses: 400 with an `error` object, or 422 with `detail`.

    Attributes:
        status: 400 or 422.
        message: The error message (400).
        param: The offending parameter (400).
        code: A machine-readable code (400).
        detail: FastAPI-style validation errors (422).
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        detail: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = 422 if detail else 400
        self.message = message
        self.param = param
        self.code = code
        self.detail = detail or []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_strs(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


# Pydantic's error types, as FastAPI reports them: check and message; fields.
_CHECKS: Final[dict[str, tuple[Callable[[object], bool], str]]] = {
    "string_type": (lambda v: isinstance(v, str), "Input should be a valid string"),
    "int_type": (_is_int, "Input should be a valid integer"),
    "float_type": (_is_number, "Input should be a valid number"),
    "bool_type": (lambda v: isinstance(v, bool), "Input should be a valid boolean"),
    "dict_type": (lambda v: isinstance(v, dict), "Input should be a valid dictionary"),
    "list_type": (_is_strs, "Input should be a valid string or a list of strings"),
}
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "string_type": ("model", "suffix", "user", "enkrypt_context"),
    "int_type": ("max_tokens", "n", "seed", "logprobs", "best_of"),
    "float_type": ("temperature", "top_p", "frequency_penalty", "presence_penalty"),
    "bool_type": ("stream", "echo"),
    "dict_type": ("stream_options", "logit_bias"),
    "list_type": ("prompt", "stop"),
}
_TYPES: Final = {name: kind for kind, names in _FIELDS.items() for name in names}
_RANGES: Final[dict[str, tuple[float, float]]] = {
    "max_tokens": (0, 1_000_000),
    "temperature": (0, 2),
    "top_p": (0, 1),
    "n": (1, 128),
    "logprobs": (0, 5),
    "best_of": (1, 128),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
}


def _issue(kind: str, loc: list[str], msg: str, value: object) -> dict[str, object]:
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}


def _type_errors(body: Mapping[str, object]) -> list[dict[str, object]]:
    """Return FastAPI-style errors for wrong types and out-of-range values."""
    detail: list[dict[str, object]] = []
    for name, value in body.items():
        if name not in _TYPES or value is None:
            continue  # unknown fields are ignored, null means "not given"
        kind = _TYPES[name]
        check, msg = _CHECKS[kind]
        if not check(value):
            detail.append(_issue(kind, [name], msg, value))
        elif name in _RANGES and isinstance(value, (int, float)):
            low, high = _RANGES[name]
            if value < low:
                msg = f"Input should be greater than or equal to {low}"
                detail.append(_issue("greater_than_equal", [name], msg, value))
            elif value > high:
                msg = f"Input should be less than or equal to {high}"
                detail.append(_issue("less_than_equal", [name], msg, value))
    options = body.get("stream_options")
    usage = options.get("include_usage") if isinstance(options, dict) else None
    if usage is not None and not isinstance(usage, bool):
        loc = ["stream_options", "include_usage"]
        detail.append(_issue("bool_type", loc, _CHECKS["bool_type"][1], usage))
    if body.get("prompt") == []:
        msg = "List should have at least 1 item after validation, not 0"
        detail.append(_issue("too_short", ["prompt"], msg, []))
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        msg = "List should have at most 4 items after validation"
        detail.append(_issue("too_long", ["stop"], msg, stop))
    return detail


def _int_field(body: Mapping[str, object], name: str, default: int) -> int:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _strs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_request(body: Mapping[str, object], *, default_model: str) -> CompletionJob:
    """Validate a decoded completions body into a job.

    Args:
        body: The decoded JSON object.
        default_model: Model answered when the body names none.

    Returns:
        The job to answer.

    Raises:
        InvalidRequestError: The body is refused (400 or 422).
    """
    if body.get("prompt") is None:
        message = "Missing required parameter: 'prompt'"
        raise InvalidRequestError(
            message, param="prompt", code="missing_required_parameter"
        )
    detail = _type_errors(body)
    if detail:
        raise InvalidRequestError("Validation failed", detail=detail)
    options = body.get("stream_options")
    model = body.get("model")
    seed = body.get("seed")
    job = CompletionJob(
        prompts=_strs(body["prompt"]),
        model=model if isinstance(model, str) else default_model,
        n=_int_field(body, "n", 1),
        max_tokens=_int_field(body, "max_tokens", DEFAULT_MAX_TOKENS),
        stop=tuple(_strs(body.get("stop"))),
        seed=seed if isinstance(seed, int) and _is_int(seed) else None,
        echo=body.get("echo") is True,
        include_usage=isinstance(options, dict)
        and options.get("include_usage") is True,
    )
    best_of = body.get("best_of")
    if _is_int(best_of) and body.get("stream") is True:
        message = "best_of cannot be used with stream"
        raise InvalidRequestError(message, param="best_of")
    if isinstance(best_of, int) and best_of < job.n:
        message = "best_of must be greater than or equal to n"
        raise InvalidRequestError(message, param="best_of")
    return job

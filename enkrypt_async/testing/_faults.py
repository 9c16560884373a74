"""Fault injection: which request misbehaves, and how.

A `Fault` names one kind of misbehaviour and when it triggers. The emulator
asks a `FaultSchedule` for a `FaultPlan` once per request to `/completions` or
`/chat/completions` (numbered together), and `send_events` writes an event
stream broken as planned.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Final, Literal, get_args

import msgspec
from aiohttp import web

__all__ = [
    "BROKEN_CHAT_EVENT",
    "BROKEN_CHAT_JSON",
    "BROKEN_EVENT",
    "BROKEN_JSON",
    "STREAM_ONLY",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FaultSchedule",
    "send_events",
    "status_payload",
    "stream_error_payload",
]

FaultKind = Literal[
    "status",
    "reset_before_response",
    "reset_mid_stream",
    "slow_first_byte",
    "slow_chunks",
    "malformed_json",
    "truncate_stream",
    "stream_error_event",
]
_KINDS: Final[frozenset[str]] = frozenset(get_args(FaultKind))
#: Faults that only make sense inside an event stream (skipped otherwise).
STREAM_ONLY: Final[frozenset[str]] = frozenset(
    {"reset_mid_stream", "slow_chunks", "truncate_stream", "stream_error_event"}
)

#: The body of a non-streamed `"malformed_json"` fault: JSON cut short.
BROKEN_JSON: Final = (
    b'{"id": "cmpl-broken", "object": "text.completion", "choices": [{"te'
)
#: The event of a streamed `"malformed_json"` fault.
BROKEN_EVENT: Final = b'data: {"id": "cmpl-broken", "choices": [{"text": "\n\n'
#: `BROKEN_JSON` and `BROKEN_EVENT` on `/chat/completions`.
BROKEN_CHAT_JSON: Final = (
    b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"me'
)
BROKEN_CHAT_EVENT: Final = (
    b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "\n\n'
)
_DONE: Final = b"data: [DONE]\n\n"
_ENCODER: Final = msgspec.json.Encoder()


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour of the emulated proxy.

    Kinds:
        - `"status"`: answer `status` with a JSON error body (`message` if
          given); a 429 says `{"message": "API rate limit exceeded"}` as Kong
          does, and `retry_after` adds a `Retry-After` header (seconds).
        - `"reset_before_response"`: close the connection without answering.
        - `"reset_mid_stream"`: abort the connection after `after_events` events.
        - `"slow_first_byte"`: wait `delay` seconds before answering.
        - `"slow_chunks"`: wait `delay` more seconds between stream events.
        - `"malformed_json"`: a 200 whose JSON body is cut short or, in a
          stream, one broken `data:` event after `after_events` events.
        - `"truncate_stream"`: end the stream cleanly after `after_events`
          events, without `data: [DONE]`.
        - `"stream_error_event"`: after `after_events` events send
          `data: {"error": {...}}` and end the stream (no `[DONE]`).

    Faults apply alike to `/completions` and `/chat/completions` (a broken body
    or event is shaped like the endpoint's own).

    When it triggers: on the 1-based request numbers in `on_requests` (counted
    over every request to `/completions` and `/chat/completions` together, in
    arrival order: with `on_requests={2}`, a chat request after a completions
    request is number 2), else on every request; with
    `probability`, only when the emulator's seeded RNG says so (reproducible
    for a given `EnkryptEmulator(seed=...)`); at most `times` times in all.
    The stream-only kinds (`reset_mid_stream`, `slow_chunks`, `truncate_stream`,
    `stream_error_event`) never trigger on a non-streamed request. When several
    faults trigger on one request, delays add up and, of the others, the first
    in list order wins (the rest are not spent). Faults apply before the API key
    and deployment checks, as a failing gateway would.

    Examples:
        ```python
        faults = [
            Fault("status", status=429, retry_after=1, on_requests={1, 2}),
            Fault("reset_mid_stream", after_events=3, probability=0.1),
        ]
        async with EnkryptEmulator(faults=faults, seed=7) as emu: ...
        ```

    Attributes:
        kind: What goes wrong (see above).
        on_requests: Request numbers (1-based) that trigger it; None: all.
        probability: Chance in [0, 1] that a candidate request triggers it.
        times: Trigger at most this many times; None: no limit.
        status: HTTP status of a `"status"` fault.
        retry_after: Seconds sent in `Retry-After` by a `"status"` fault.
        message: Error message of `"status"` and `"stream_error_event"`.
        after_events: Stream events sent intact before a stream fault.
        delay: Seconds of a `"slow_first_byte"` or `"slow_chunks"` fault.
    """

    kind: FaultKind
    _: KW_ONLY
    on_requests: Collection[int] | None = None
    probability: float | None = None
    times: int | None = None
    status: int = 503
    retry_after: float | None = None
    message: str | None = None
    after_events: int = 1
    delay: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: use {sorted(_KINDS)}")
        if self.on_requests is not None:
            requests = frozenset(self.on_requests)
            if any(n < 1 for n in requests):
                raise ValueError("on_requests counts requests from 1")
            object.__setattr__(self, "on_requests", requests)
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.retry_after is not None and not (
            math.isfinite(self.retry_after) and self.retry_after >= 0
        ):
            raise ValueError("retry_after must be a finite number >= 0")
        if self.after_events < 0:
            raise ValueError("after_events must be >= 0")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError("delay must be a finite number >= 0")


@dataclass
class FaultPlan:
    """What goes wrong with one request.

    Attributes:
        first_byte_delay: Seconds to wait before answering.
        chunk_delay: Extra seconds to wait before each stream event.
        action: The fault that replaces or breaks the answer, if any.
    """

    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    action: Fault | None = None

    @property
    def injected(self) -> int:
        """Number of faults in this plan."""
        return (
            (self.first_byte_delay > 0)
            + (self.chunk_delay > 0)
            + (self.action is not None)
        )


@dataclass
class FaultSchedule:
    """The configured faults, their trigger counts and the seeded RNG."""

    seed: int
    faults: list[Fault] = field(default_factory=list)
    _fired: dict[int, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, faults: Iterable[Fault]) -> None:
        """Append faults; they apply from the next request on."""
        self.faults.extend(faults)

    def clear(self) -> None:
        """Remove every fault."""
        self.faults.clear()
        self._fired.clear()

    def reset(self) -> None:
        """Forget trigger counts and reseed the RNG (faults stay)."""
        self._fired.clear()
        self._rng = random.Random(self.seed)

    def plan(self, number: int, *, stream: bool) -> FaultPlan:
        """Decide the faults of request `number` (1-based).

        Every candidate fault with a probability draws from the RNG in list
        order, so a run is reproducible for a given seed and request sequence.
        """
        plan = FaultPlan()
        for position, fault in enumerate(self.faults):
            if fault.kind in STREAM_ONLY and not stream:
                continue
            if fault.on_requests is not None and number not in fault.on_requests:
                continue
            fired = self._fired.get(position, 0)
            if fault.times is not None and fired >= fault.times:
                continue
            if (
                fault.probability is not None
                and self._rng.random() >= fault.probability
            ):
                continue
            if fault.kind == "slow_first_byte":
                plan.first_byte_delay += fault.delay
            elif fault.kind == "slow_chunks":
                plan.chunk_delay += fault.delay
            elif plan.action is None:
                plan.action = fault
            else:
                continue  # one breaking fault per request; this one waits
            self._fired[position] = fired + 1
        return plan


def _seconds(value: float) -> str:
    """Format Retry-After: integral seconds as HTTP wants, else a decimal."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def status_payload(fault: Fault) -> tuple[dict[str, object], dict[str, str]]:
    """Return the JSON body and the extra headers of a `"status"` fault."""
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = _seconds(fault.retry_after)
    if fault.status == 429:
        # Kong's rate-limiting plugin answers this way.
        headers["RateLimit-Remaining"] = "0"
        return {"message": fault.message or "API rate limit exceeded"}, headers
    type_ = "server_error" if fault.status >= 500 else "invalid_request_error"
    message = fault.message or f"Injected fault: HTTP {fault.status}"
    error = {"message": message, "type": type_, "param": None, "code": None}
    return {"error": error}, headers


def stream_error_payload(fault: Fault) -> dict[str, object]:
    """Return the `data:` object of a `"stream_error_event"` fault."""
    message = fault.message or "The upstream model failed while streaming"
    return {
        "error": {"message": message, "type": "server_error", "code": "stream_error"}
    }


# --- sending a stream ------------------------------------------------------------


def _event(payload: object) -> bytes:
    return b"data: " + _ENCODER.encode(payload) + b"\n\n"


async def send_events(
    request: web.Request,
    events: Sequence[object],
    plan: FaultPlan,
    delay: float,
    broken_event: bytes,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Send `events` as data-only Server-Sent Events, applying `plan`'s fault.

    Args:
        request: The request answered.
        events: The JSON objects to send, `data: [DONE]` not included.
        plan: The request's faults (`action` breaks the stream, if it may).
        delay: Seconds to wait between events.
        broken_event: What a `"malformed_json"` fault sends.
        headers: More response headers.

    Returns:
        The (already sent) response.
    """
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **headers,
        }
    )
    action = plan.action
    breaks_at = -1 if action is None else min(action.after_events, len(events))
    try:
        await response.prepare(request)
        for number in range(len(events) + 1):
            if number == breaks_at and action is not None:
                if action.kind == "reset_mid_stream":
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if action.kind == "truncate_stream":
                    await response.write_eof()
                    return response
                if action.kind == "stream_error_event":
                    await response.write(_event(stream_error_payload(action)))
                    await response.write_eof()
                    return response
                await response.write(broken_event)  # malformed_json
            if number == len(events):
                break
            if delay and number:
                await asyncio.sleep(delay)
            await response.write(_event(events[number]))
        await response.write(_DONE)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away; aiohttp ends the exchange
    return response

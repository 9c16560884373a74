"""Fault soak: thousands of requests through a flaky emulated proxy, none lost.

2,000 plain and 400 streamed completions run 50 at a time through one client
(``max_retries=2``) against `EnkryptEmulator` injecting seeded, probabilistic
faults: 429 and 503 with ``Retry-After: 0``, connection resets before the answer,
and for streams resets mid-body, truncation and in-stream error events. About one
attempt in ten is broken (9.7% of plain attempts, 16% of streamed ones).

Nothing is taken on trust: the emulator records every attempt, and replaying its
fault schedule over that record tells exactly which fault each attempt met. From
that, each request's fate is predicted (how many attempts the retry policy makes,
and which typed error, if any, ends it) and compared with what the caller saw.
Every success must carry the emulator's deterministic text for its prompt and
seed, and a streamed answer merged with ``collect()`` must equal the plain answer
to the same prompt and seed. One request in ten is sent with ``max_retries=0`` so
that every fault kind also surfaces as its typed error, not only as a retry.

Timing: status faults ask for ``Retry-After: 0``, so their retries do not wait;
after a reset the client's own backoff (0.375-0.5 s, then 0.75-1 s) is kept as in
production rather than patched out. That costs one worker about half a second per
reset, some 0.6 s of wall time in all; the file runs in 5-8 s on two cores.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from enkrypt_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    Completion,
    EnkryptClient,
    GuardrailsBlockedError,
    InternalServerError,
    RateLimitError,
    StreamError,
    Timeout,
)
from enkrypt_async.testing import EnkryptEmulator, Fault
from enkrypt_async.testing._faults import FaultSchedule
from enkrypt_async.testing._generate import generate

from .conftest import checked_out

PLAIN = 2000
STREAMED = 400
CONCURRENCY = 50
MAX_RETRIES = 2
SEED = 20260301
#: Every STREAM_EVERY-th plain request has a streamed twin (same prompt and seed).
STREAM_EVERY = PLAIN // STREAMED
#: Every NO_RETRY_EVERY-th request is sent with ``max_retries=0``.
NO_RETRY_EVERY = 10
#: The whole soak must end well inside pytest's patience on a slow machine.
DEADLINE = 50.0

FAULTS = (
    Fault("status", status=429, retry_after=0, probability=0.035),
    Fault("status", status=503, retry_after=0, probability=0.035),
    Fault("reset_before_response", probability=0.03),
    Fault("reset_mid_stream", after_events=2, probability=0.025),
    Fault("truncate_stream", after_events=2, probability=0.025),
    Fault("stream_error_event", after_events=2, probability=0.025),
)
#: Faults the client retries: the retryable statuses. A reset after the request
#: was sent may have been processed, so it is never sent again.
RETRIED = {"status"}


@dataclass(frozen=True)
class Job:
    """One logical request: what is asked, and what must come back."""

    number: int
    prompt: str
    seed: int
    max_tokens: int
    stream: bool
    max_retries: int

    @property
    def key(self) -> tuple[str, bool]:
        return self.prompt, self.stream


@dataclass
class Outcome:
    """What the caller saw for one job."""

    completion: Completion | None = None
    error: BaseException | None = None


@dataclass
class Soak:
    outcomes: dict[tuple[str, bool], Outcome] = field(default_factory=dict)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)


def make_jobs() -> list[Job]:
    rng = random.Random(SEED)
    jobs: list[Job] = []
    for n in range(PLAIN):
        # A prompt unique per job, so the emulator's record maps back to it.
        prompt = f"soak {n}: tell me a joke about {rng.choice(['cats', 'maps'])}"
        for stream in (False, True) if n % STREAM_EVERY == 0 else (False,):
            retries = retries_for(len(jobs))
            jobs.append(Job(n, prompt, n * 7919, 5 + n % 60, stream, retries))
    rng.shuffle(jobs)
    return jobs


def retries_for(position: int) -> int:
    return 0 if position % NO_RETRY_EVERY == 0 else MAX_RETRIES


async def run_job(client: EnkryptClient, job: Job) -> Outcome:
    extra: dict[str, Any] = {}
    if job.max_retries != MAX_RETRIES:
        extra["max_retries"] = job.max_retries
    try:
        if job.stream:
            stream = await client.completions.create(
                prompt=job.prompt,
                seed=job.seed,
                max_tokens=job.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            return Outcome(completion=await stream.collect())
        completion = await client.completions.create(
            prompt=job.prompt, seed=job.seed, max_tokens=job.max_tokens, **extra
        )
        return Outcome(completion=completion)
    except APIError as exc:  # anything else escaping fails the soak at once
        return Outcome(error=exc)


async def soak(client: EnkryptClient, jobs: list[Job]) -> Soak:
    result = Soak()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: result.loop_errors.append(context))
    pending: Iterator[Job] = iter(jobs)

    async def worker() -> None:
        for job in pending:  # a shared iterator: each job goes to one worker
            result.outcomes[job.key] = await run_job(client, job)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(CONCURRENCY))), DEADLINE
        )
    finally:
        loop.set_exception_handler(previous)
    return result


def attempts_by_job(emu: EnkryptEmulator) -> dict[tuple[str, bool], list[str | None]]:
    """Replay the emulator's seeded schedule: the fault each recorded attempt met.

    The emulator numbers requests in arrival order and draws its RNG in that order
    (stream-only faults draw only for streams), so the same schedule fed the same
    sequence decides exactly as it did.
    """
    schedule = FaultSchedule(SEED, list(FAULTS))
    attempts: dict[tuple[str, bool], list[str | None]] = defaultdict(list)
    for number, recorded in enumerate(emu.requests, start=1):
        stream = recorded.body.get("stream") is True
        action = schedule.plan(number, stream=stream).action
        kind = None
        if action is not None:
            kind = f"status {action.status}" if action.kind == "status" else action.kind
        prompt = recorded.body["prompt"]
        assert isinstance(prompt, str)
        attempts[prompt, stream].append(kind)
    return attempts


def predicted(job: Job, faults: list[str | None]) -> tuple[int, str | None]:
    """Attempts the retry policy makes given these faults, and the last fault.

    When the recorded attempts run out while the policy still calls for another,
    the count is one more than recorded: the caller's check then fails, loudly.
    """
    for attempt, fault in enumerate(faults):
        if fault is None:
            return attempt + 1, None
        retried = fault.split()[0] in RETRIED and attempt < job.max_retries
        if not retried:
            return attempt + 1, fault
    return len(faults) + 1, None


#: The one error type each fault must surface as, once retries are spent.
ERROR_OF: dict[str, type[APIError]] = {
    "status 429": RateLimitError,
    "status 503": InternalServerError,
    "reset_before_response": APIConnectionError,
    "reset_mid_stream": StreamError,
    "truncate_stream": StreamError,
    "stream_error_event": StreamError,
}


def check_error(job: Job, fault: str, error: BaseException | None) -> None:
    expected = ERROR_OF[fault]
    assert type(error) is expected, f"{job}: {fault} gave {error!r}"
    assert not isinstance(error, (APITimeoutError, GuardrailsBlockedError))
    if fault == "stream_error_event":
        assert isinstance(error, StreamError)
        assert error.code == "stream_error"
    if fault.startswith("status"):
        assert isinstance(error, RateLimitError | InternalServerError)
        assert error.status_code == int(fault.split()[1])
        assert error.request_id  # the emulator sends x-request-id


def check_completion(job: Job, completion: Completion | None) -> None:
    assert completion is not None
    want = generate(job.prompt, seed=job.seed, index=0, max_tokens=job.max_tokens)
    [choice] = completion.choices
    assert choice.text == want.text, job
    assert choice.finish_reason == want.finish_reason, job
    assert choice.seed == want.seed, job
    assert completion.usage is not None
    assert completion.usage.completion_tokens == want.completion_tokens, job
    assert completion.enkrypt_policy_detections is not None


def comparable(completion: Completion) -> dict[str, Any]:
    """What must match between a plain and a merged streamed answer.

    The id and creation time differ per request, and the emulator echoes
    ``prompt: []`` only in plain answers (as Together does).
    """
    built: dict[str, Any] = msgspec.to_builtins(completion)
    for volatile in ("id", "created", "prompt"):
        built.pop(volatile, None)
    return built


async def test_soak_with_injected_faults_loses_nothing_and_leaks_nothing() -> None:
    jobs = make_jobs()
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with EnkryptEmulator(faults=FAULTS, seed=SEED, chunk_chars=16) as emu:
            client = EnkryptClient(
                api_key=emu.api_key,
                deployment=emu.deployment,
                base_url=emu.base_url,
                max_retries=MAX_RETRIES,
                timeout=Timeout(connect=5.0, read=10.0),
            )
            async with client:
                result = await soak(client, jobs)
                assert checked_out(client) == 0
            attempts = attempts_by_job(emu)
            stats = emu.stats
        del client
        gc.collect()  # an unclosed stream or session would warn now
    wall = time.perf_counter() - started

    assert caught == [], [str(w.message) for w in caught]
    assert result.loop_errors == []
    assert len(result.outcomes) == len(jobs) == PLAIN + STREAMED

    # Every request's fate is exactly what its attempts' faults call for.
    seen: Counter[str] = Counter()
    for job in jobs:
        outcome = result.outcomes[job.key]
        faults = attempts[job.key]
        count, fault = predicted(job, faults)
        assert len(faults) == count, f"{job}: attempts {faults}, outcome {outcome}"
        if fault is None:
            assert outcome.error is None, f"{job}: {faults} but {outcome.error!r}"
            check_completion(job, outcome.completion)
            seen["ok"] += 1
        else:
            check_error(job, fault, outcome.error)
            seen[type(outcome.error).__name__] += 1

    # A streamed answer, merged, is the plain answer to the same prompt and seed.
    twins = 0
    for job in jobs:
        if not job.stream:
            continue
        streamed = result.outcomes[job.key].completion
        plain = result.outcomes[job.prompt, False].completion
        if streamed is not None and plain is not None:
            assert comparable(streamed) == comparable(plain), job
            twins += 1

    fault_kinds = Counter(f for faults in attempts.values() for f in faults if f)
    total_attempts = sum(len(faults) for faults in attempts.values())
    retries = stats.requests - len(jobs)
    assert stats.requests == total_attempts
    assert stats.faults_injected == sum(fault_kinds.values())
    # The emulator counts a stream as answered before a stream fault breaks it.
    broken = ("reset_mid_stream", "truncate_stream", "stream_error_event")
    assert stats.completions == seen["ok"] + sum(fault_kinds[k] for k in broken)
    assert stats.blocked == 0
    assert set(fault_kinds) == set(ERROR_OF), fault_kinds  # every kind exercised
    assert set(seen) == {"ok", *(e.__name__ for e in ERROR_OF.values())}, seen
    assert retries > 100, retries
    assert twins > STREAMED * 0.7, twins
    print(
        f"\nsoak: {len(jobs)} requests ({PLAIN} plain, {STREAMED} streamed, "
        f"concurrency {CONCURRENCY}), {total_attempts} attempts, "
        f"{retries} retries, {sum(fault_kinds.values())} faults "
        f"{dict(sorted(fault_kinds.items()))}; outcomes {dict(sorted(seen.items()))}; "
        f"{twins} stream/plain twins equal; wall {wall:.1f}s"
    )
    assert wall < DEADLINE


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        pytest.param([None], (1, None), id="clean"),
        pytest.param(["status 429", None], (2, None), id="retried"),
        pytest.param(["status 503"] * 3, (3, "status 503"), id="exhausted"),
        pytest.param(["truncate_stream"], (1, "truncate_stream"), id="not-retried"),
        pytest.param(["status 429"], (2, None), id="a-retry-is-missing"),
    ],
)
def test_the_soak_predicts_attempts_like_the_client(
    faults: list[str | None], expected: tuple[int, str | None]
) -> None:
    job = Job(0, "p", 1, 5, stream=True, max_retries=MAX_RETRIES)
    assert predicted(job, faults) == expected

"""The retry policy, seen from outside: attempts and pauses against real servers."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest
from aiohttp import web

from enkrypt_async import (
    APIConnectionError,
    BadRequestError,
    GuardrailsBlockedError,
    RateLimitError,
)

from .conftest import (
    ClientFactory,
    Resource,
    ServerFactory,
    checked_out,
    json_response,
    unused_port,
)

#: The longest pause a server may ask for before the client gives up instead.
MAX_RETRY_AFTER = 60


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the client takes between attempts (it does not really sleep)."""
    pauses: list[float] = []

    async def no_sleep(delay: float, *args: Any) -> None:
        pauses.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    return pauses


async def _refused(
    make_client: ClientFactory, resource: Resource, retries: int
) -> None:
    client = make_client(
        base_url=f"http://127.0.0.1:{unused_port()}/ai-proxy", max_retries=retries
    )
    with pytest.raises(APIConnectionError):
        await resource.create(client, "hi")


async def test_backoff_doubles_from_half_a_second_up_to_the_cap(
    make_client: ClientFactory, resource: Resource, slept: list[float]
) -> None:
    await _refused(make_client, resource, 7)
    caps = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(slept) == len(caps)
    assert all(
        0.75 * cap <= pause <= cap for pause, cap in zip(slept, caps, strict=True)
    )


async def test_jitter_takes_off_at_most_a_quarter(
    make_client: ClientFactory, resource: Resource, slept: list[float]
) -> None:
    for _ in range(10):
        await _refused(make_client, resource, 1)
    assert all(0.375 <= pause <= 0.5 for pause in slept)
    assert len(set(slept)) > 1  # jittered: clients that failed together spread out


def _http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        pytest.param({}, 0.375, 0.5, id="none-backoff"),
        pytest.param({"Retry-After": "3"}, 3.0, 3.0, id="seconds"),
        pytest.param({"retry-after": "0"}, 0.0, 0.0, id="zero-lowercase"),
        pytest.param({"retry-after-ms": "250"}, 0.25, 0.25, id="ms"),
        pytest.param(
            {"retry-after-ms": "250", "Retry-After": "9"}, 0.25, 0.25, id="ms-wins"
        ),
        pytest.param({"retry-after-ms": "x", "Retry-After": "9"}, 9, 9, id="bad-ms"),
        pytest.param({"retry-after-ms": "-5", "Retry-After": "2"}, 2, 2, id="neg-ms"),
        pytest.param({"Retry-After": "-3"}, 0.375, 0.5, id="negative-backoff"),
        pytest.param({"Retry-After": "soon"}, 0.375, 0.5, id="garbage-backoff"),
        pytest.param({"Retry-After": "DATE+30"}, 28.0, 30.0, id="http-date"),
        pytest.param({"Retry-After": "DATE-30"}, 0.0, 0.0, id="http-date-past"),
        pytest.param(
            {"Retry-After": str(MAX_RETRY_AFTER)},
            MAX_RETRY_AFTER,
            MAX_RETRY_AFTER,
            id="at-the-cap",
        ),
    ],
)
async def test_retry_after_reads_every_form(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
    slept: list[float],
    headers: dict[str, str],
    low: float,
    high: float,
) -> None:
    headers = {
        name: _http_date(float(value[4:])) if value.startswith("DATE") else value
        for name, value in headers.items()
    }
    url, calls = await _flaky_server(make_server, resource, [(429, headers)])
    client = make_client(base_url=url, max_retries=1)
    assert resource.text(await resource.create(client, "hi")) == "recovered"
    assert len(calls) == 2
    assert len(slept) == 1
    assert low <= slept[0] <= high


async def _flaky_server(
    make_server: ServerFactory,
    resource: Resource,
    failures: list[tuple[int, dict[str, str]]],
) -> tuple[str, list[int]]:
    """Answer each status of ``failures`` in turn, then "recovered"."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.path == "/ai-proxy" + resource.path
        calls.append(len(calls))
        if failures:
            status, headers = failures.pop(0)
            return json_response({"error": {"message": "try later"}}, status, headers)
        return json_response(resource.body("recovered"))

    return await make_server(handler), calls


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_status_is_retried_until_success(
    make_server: ServerFactory,
    make_client: ClientFactory,
    status: int,
    resource: Resource,
) -> None:
    base_url, calls = await _flaky_server(
        make_server, resource, [(status, {"Retry-After": "0"})] * 2
    )
    client = make_client(base_url=base_url, max_retries=2)
    answer = await resource.create(client, "hi")
    assert resource.text(answer) == "recovered"
    assert len(calls) == 3
    assert checked_out(client) == 0


async def test_retries_stop_after_max_retries_with_the_last_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    base_url, calls = await _flaky_server(
        make_server, resource, [(429, {"retry-after-ms": "1"})] * 5
    )
    client = make_client(base_url=base_url, max_retries=2)
    with pytest.raises(RateLimitError):
        await resource.create(client, "hi")
    assert len(calls) == 3


async def test_per_request_max_retries_overrides_the_client(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    base_url, calls = await _flaky_server(
        make_server, resource, [(503, {"Retry-After": "0"})]
    )
    client = make_client(base_url=base_url, max_retries=5)
    with pytest.raises(Exception, match="503"):
        await resource.create(client, "hi", max_retries=0)
    assert len(calls) == 1


async def test_non_retryable_status_fails_at_once(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    base_url, calls = await _flaky_server(make_server, resource, [(400, {})])
    client = make_client(base_url=base_url, max_retries=3)
    with pytest.raises(BadRequestError):
        await resource.create(client, "hi")
    assert len(calls) == 1


async def test_retry_after_beyond_the_cap_fails_at_once(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    base_url, calls = await _flaky_server(
        make_server, resource, [(429, {"Retry-After": "3600"})]
    )
    client = make_client(base_url=base_url, max_retries=3)
    with pytest.raises(RateLimitError) as info:
        await resource.create(client, "hi")
    assert info.value.headers["Retry-After"] == "3600"
    assert len(calls) == 1


async def test_connection_errors_are_retried(
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    resource: Resource,
) -> None:
    slept: list[float] = []

    async def no_sleep(delay: float, *args: Any) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    client = make_client(
        base_url=f"http://127.0.0.1:{unused_port()}/ai-proxy", max_retries=3
    )
    with pytest.raises(APIConnectionError):
        await resource.create(client, "hi")
    assert len(slept) == 3
    assert all(0.75 * b <= d <= b for d, b in zip(slept, [0.5, 1.0, 2.0], strict=True))


async def test_a_guardrails_block_is_never_retried_whatever_its_status(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    calls: list[int] = []
    body = {
        "error": {"message": "blocked"},
        "enkrypt_policy_detections": {"input_guardrails": {"summary": {"pii": 1}}},
    }

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return json_response(body, 503, {"Retry-After": "0"})

    client = make_client(base_url=await make_server(handler), max_retries=3)
    with pytest.raises(GuardrailsBlockedError):
        await resource.create(client, "hi")
    assert calls == [1]

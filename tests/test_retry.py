"""Retry arithmetic (pure) and the retry loop against a real server."""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from enkrypt_async import (
    APIConnectionError,
    BadRequestError,
    GuardrailsBlockedError,
    RateLimitError,
)
from enkrypt_async._retry import (
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    backoff_delay,
    retry_after,
    retry_delay,
)

from .conftest import (
    ClientFactory,
    Resource,
    ServerFactory,
    checked_out,
    json_response,
    unused_port,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("retries_done", "expected"),
    [
        pytest.param(0, 0.5, id="first"),
        pytest.param(1, 1.0, id="second"),
        pytest.param(2, 2.0, id="third"),
        pytest.param(4, 8.0, id="capped"),
        pytest.param(10_000, MAX_BACKOFF, id="huge-stays-capped"),
    ],
)
def test_backoff_doubles_from_half_a_second_up_to_the_cap(
    retries_done: int, expected: float
) -> None:
    assert backoff_delay(retries_done, jitter=0.0) == expected


def test_jitter_takes_off_at_most_a_quarter() -> None:
    assert backoff_delay(1, jitter=0.999999) == pytest.approx(0.75, abs=1e-5)
    assert backoff_delay(1, jitter=0.5) == 0.875


@pytest.mark.parametrize(
    ("args"),
    [pytest.param((-1, 0.0), id="negative"), pytest.param((0, 1.0), id="jitter")],
)
def test_backoff_rejects_bad_arguments(args: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(*args)


def _headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict((k.replace("_", "-"), v) for k, v in values.items())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(_headers(), None, id="none"),
        pytest.param(_headers(Retry_After="3"), 3.0, id="seconds"),
        pytest.param(_headers(retry_after="0"), 0.0, id="zero-lowercase"),
        pytest.param(_headers(retry_after_ms="250"), 0.25, id="ms"),
        pytest.param(
            _headers(retry_after_ms="250", Retry_After="9"), 0.25, id="ms-wins"
        ),
        pytest.param(_headers(retry_after_ms="x", Retry_After="9"), 9.0, id="bad-ms"),
        pytest.param(_headers(retry_after_ms="-5", Retry_After="2"), 2.0, id="neg-ms"),
        pytest.param(_headers(Retry_After="-3"), None, id="negative"),
        pytest.param(_headers(Retry_After="soon"), None, id="garbage"),
        pytest.param(
            _headers(Retry_After=email.utils.formatdate(NOW + 30, usegmt=True)),
            30.0,
            id="http-date",
        ),
        pytest.param(
            _headers(Retry_After=email.utils.formatdate(NOW - 30, usegmt=True)),
            0.0,
            id="http-date-past",
        ),
    ],
)
def test_retry_after_reads_every_form(
    headers: CIMultiDict[str], expected: float | None
) -> None:
    assert retry_after(headers, NOW) == expected


def test_retry_after_beyond_the_cap_means_give_up() -> None:
    far = _headers(Retry_After=str(int(MAX_RETRY_AFTER) + 1))
    near = _headers(Retry_After=str(int(MAX_RETRY_AFTER)))
    assert retry_delay(0, far, now=NOW, jitter=0.0) is None
    assert retry_delay(0, near, now=NOW, jitter=0.0) == MAX_RETRY_AFTER
    assert retry_delay(3, _headers(), now=NOW, jitter=0.0) == 4.0
    assert retry_delay(3, None, now=NOW, jitter=0.0) == 4.0


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

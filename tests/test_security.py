"""Secret hygiene and hostile input: the key never leaks, bad input never gets out."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import web

from enkrypt_async import (
    APIError,
    ConfigurationError,
    EnkryptClient,
    InternalServerError,
    StreamError,
)

from .conftest import (
    API_KEY,
    DEPLOYMENT,
    ClientFactory,
    Resource,
    ServerFactory,
    json_response,
)


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://api.example.com/ai-proxy", id="remote-host"),
        pytest.param("http://10.0.0.5:8080/ai-proxy", id="private-ip"),
    ],
)
def test_plain_http_to_a_remote_host_is_refused(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http") as info:
        EnkryptClient(api_key=API_KEY, base_url=base_url)
    assert API_KEY not in str(info.value)


def test_plain_http_is_allowed_when_asked() -> None:
    client = EnkryptClient(
        api_key=API_KEY, base_url="http://gateway.internal/x", allow_insecure_http=True
    )
    assert client.base_url == "http://gateway.internal/x"


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://127.0.0.1:8080/ai-proxy", id="ipv4-loopback"),
        pytest.param("http://127.8.9.10/ai-proxy", id="loopback-range"),
        pytest.param("http://[::1]:8080/ai-proxy", id="ipv6-loopback"),
        pytest.param("http://localhost:8080/ai-proxy", id="localhost"),
    ],
)
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    assert EnkryptClient(api_key=API_KEY, base_url=base_url).base_url == base_url


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("https://user:pw@api.example.com", id="credentials"),
        pytest.param("https://api.example.com/?x=1", id="query"),
        pytest.param("https:///nohost", id="no-host"),
        pytest.param("api.example.com", id="no-scheme"),
    ],
)
def test_malformed_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        EnkryptClient(api_key=API_KEY, base_url=base_url)


async def test_a_failing_retrying_debug_run_never_prints_the_key(
    make_server: ServerFactory,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["apikey"] == API_KEY
        return json_response({"error": {"message": "down"}}, 503, {"Retry-After": "0"})

    caplog.set_level(logging.DEBUG, logger="enkrypt_async")
    client = make_client(base_url=await make_server(handler), max_retries=2)
    with pytest.raises(InternalServerError) as info:
        await resource.create(client, "hi")
    error = info.value
    printed = "\n".join(
        [caplog.text, *capsys.readouterr(), str(error), repr(error), repr(client)]
    )
    printed += repr(dict(error.headers)) + repr(error.body)
    assert "retry 2 of 2" in caplog.text
    assert "<redacted>" in caplog.text
    assert API_KEY not in printed


def test_enkrypt_log_env_switches_on_stderr_logging() -> None:
    script = (
        "import logging, enkrypt_async\n"
        f"c = enkrypt_async.EnkryptClient(api_key={API_KEY!r}, deployment='d')\n"
        "c2 = enkrypt_async.EnkryptClient(api_key='k2', deployment='d')\n"
        "log = logging.getLogger('enkrypt_async')\n"
        "print(logging.getLevelName(log.level), len(log.handlers))\n"
        "log.debug('visible %s', c)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"ENKRYPT_LOG": "debug", "PATH": ""},
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["DEBUG", "1"]
    assert "visible <EnkryptClient" in result.stderr
    assert API_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "value", [pytest.param(None, id="unset"), pytest.param("verbose", id="unknown")]
)
def test_setup_logging_without_a_level_leaves_logging_alone(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("ENKRYPT_LOG", raising=False)
    else:
        monkeypatch.setenv("ENKRYPT_LOG", value)
    logger = logging.getLogger("enkrypt_async")
    before = (logger.level, list(logger.handlers))
    EnkryptClient(api_key=API_KEY, deployment=DEPLOYMENT)
    assert (logger.level, list(logger.handlers)) == before


async def test_compressed_body_is_capped_after_decompression(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    bomb = gzip.compress(resource.body("a" * 5_000_000))
    assert len(bomb) < 10_000

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    client = make_client(
        base_url=await make_server(handler), max_response_size=1_000_000
    )
    with pytest.raises(APIError, match="1000000-byte limit"):
        await resource.create(client, "hi")


async def test_endless_line_in_a_stream_fails_at_the_event_cap(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b"data: ")
            for _ in range(1000):
                await response.write(b"x" * 65536)
        except ConnectionError:
            pass
        return response

    client = make_client(base_url=await make_server(handler), max_event_size=1 << 20)
    stream = await resource.create(client, "hi", stream=True)
    with pytest.raises(StreamError, match="1048576"):
        async with stream:
            await stream.collect()


def test_header_injection_through_any_setting_is_refused() -> None:
    bad: list[dict[str, Any]] = [
        {"api_key": "k\r\nX-Evil: 1"},
        {"deployment": "d\nX: y"},
        {"tags": "a\x00b"},
        {"default_headers": {"X-Ok": "v\x7f"}},
    ]
    for kwargs in bad:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("deployment", DEPLOYMENT)
        with pytest.raises(ConfigurationError):
            EnkryptClient(**kwargs)

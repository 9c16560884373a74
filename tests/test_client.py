"""EnkryptClient: configuration, request shaping (aioresponses) and lifecycle."""

from __future__ import annotations

import gc
import json
import socket
import warnings
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from yarl import URL

import enkrypt_async
from enkrypt_async import (
    NOT_GIVEN,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    EnkryptClient,
    Timeout,
)

from .conftest import (
    API_KEY,
    DEPLOYMENT,
    REFERENCE,
    ClientFactory,
    ServerFactory,
    connector_of,
    json_response,
)

BASE = "https://proxy.test/ai-proxy"
URL_COMPLETIONS = URL(BASE + "/completions")


def sent(mocked: aioresponses) -> list[dict[str, Any]]:
    """The keyword arguments of every request aioresponses intercepted."""
    return [call.kwargs for call in mocked.requests[("POST", URL_COMPLETIONS)]]


def sent_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    data = kwargs["data"]
    assert isinstance(data, bytes), "the body is sent buffered, never chunked"
    body: dict[str, Any] = json.loads(data)
    return body


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as mock:
        mock.post(BASE + "/completions", payload=REFERENCE, repeat=True)
        yield mock


# -- configuration ----------------------------------------------------------------


def test_missing_api_key_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENKRYPT_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ENKRYPT_API_KEY"):
        EnkryptClient()


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKRYPT_API_KEY", "env-key")
    monkeypatch.setenv("ENKRYPT_DEPLOYMENT", "env-deployment")
    monkeypatch.setenv("ENKRYPT_BASE_URL", "https://self-hosted.test/ai-proxy/")
    client = EnkryptClient()
    assert client.deployment == "env-deployment"
    assert client.base_url == "https://self-hosted.test/ai-proxy"
    assert client._headers["apikey"] == "env-key"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKRYPT_API_KEY", "env-key")
    monkeypatch.setenv("ENKRYPT_DEPLOYMENT", "env-deployment")
    client = EnkryptClient(api_key="arg-key", deployment="arg-deployment")
    assert client.deployment == "arg-deployment"
    assert client._headers["apikey"] == "arg-key"


def test_environment_is_read_at_construction_not_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENKRYPT_API_KEY", "first")
    client = EnkryptClient(deployment="d")
    monkeypatch.setenv("ENKRYPT_API_KEY", "second")
    assert client._headers["apikey"] == "first"


def test_default_base_url_is_enkrypts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENKRYPT_BASE_URL", raising=False)
    client = EnkryptClient(api_key="k")
    assert client.base_url == "https://api.enkryptai.com/ai-proxy"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"base_url": "ftp://x"}, "base_url", id="base-url-scheme"),
        pytest.param({"max_retries": -1}, "max_retries", id="negative-retries"),
        pytest.param({"max_retries": True}, "max_retries", id="bool-retries"),
        pytest.param({"timeout": "10"}, "timeout", id="string-timeout"),
        pytest.param({"timeout": -1.0}, "read", id="negative-timeout"),
        pytest.param({"deployment": "a\r\nX-Evil: 1"}, "deployment", id="crlf"),
        pytest.param({"tags": ["a,b"]}, "comma", id="comma-in-tag"),
        pytest.param({"refresh_cache": "yes"}, "refresh_cache", id="refresh-str"),
        pytest.param({"default_headers": {"X-A": "1\n"}}, "control", id="header"),
    ],
)
def test_bad_settings_raise_configuration_error(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        EnkryptClient(api_key=API_KEY, **kwargs)


def test_api_key_with_newline_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        EnkryptClient(api_key="secret-value\n")
    assert "secret-value" not in str(info.value)


def test_repr_never_shows_the_api_key() -> None:
    client = EnkryptClient(api_key=API_KEY, deployment=DEPLOYMENT)
    assert API_KEY not in repr(client)
    assert API_KEY not in str(client)
    assert API_KEY not in repr(client._settings)
    assert DEPLOYMENT in repr(client)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(30, Timeout(read=30.0), id="number-sets-read"),
        pytest.param(None, Timeout(None, None, None, None), id="none-disables"),
        pytest.param(Timeout(connect=1.0), Timeout(connect=1.0), id="timeout"),
    ],
)
def test_timeout_coercion(value: float | Timeout | None, expected: Timeout) -> None:
    assert Timeout.coerce(value) == expected


def test_default_timeout_fits_slow_llm_calls() -> None:
    assert Timeout() == Timeout(connect=5.0, read=600.0, total=None, pool=30.0)


# -- request shaping --------------------------------------------------------------


async def test_request_carries_the_enkrypt_headers(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE, tags=["a", "b"], refresh_cache=False)
    await client.completions.create(prompt="hi")
    headers = sent(mocked)[0]["headers"]
    assert headers["apikey"] == API_KEY
    assert headers["X-Enkrypt-Deployment"] == DEPLOYMENT
    assert headers["X-Enkrypt-Tags"] == "a,b"
    assert headers["X-Enkrypt-Refresh-Cache"] == "false"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith(
        f"enkrypt-async/{enkrypt_async.__version__}"
    )


async def test_optional_headers_are_omitted_when_not_set(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    await client.completions.create(prompt="hi")
    headers = sent(mocked)[0]["headers"]
    assert "X-Enkrypt-Tags" not in headers
    assert "X-Enkrypt-Refresh-Cache" not in headers


async def test_refresh_cache_true_is_sent_as_lowercase_true(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE, refresh_cache=True, tags="one")
    await client.completions.create(prompt="hi")
    headers = sent(mocked)[0]["headers"]
    assert headers["X-Enkrypt-Refresh-Cache"] == "true"
    assert headers["X-Enkrypt-Tags"] == "one"


async def test_body_carries_only_the_given_parameters(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    await client.completions.create(prompt="hi")
    assert sent_body(sent(mocked)[0]) == {"prompt": "hi"}


async def test_every_parameter_is_sent_under_its_wire_name(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    params: dict[str, Any] = {
        "prompt": ["a", "b"],
        "model": "m",
        "max_tokens": 5,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 2,
        "stop": ("x", "y"),
        "seed": 2**63 + 5,
        "echo": True,
        "logprobs": 1,
        "best_of": 3,
        "frequency_penalty": 0.1,
        "presence_penalty": -0.1,
        "logit_bias": {"50256": -100},
        "suffix": "s",
        "user": "u",
        "stream_options": {"include_usage": True},
        "enkrypt_context": "ctx",
    }
    await client.completions.create(**params)
    expected = dict(params, stop=["x", "y"])
    assert sent_body(sent(mocked)[0]) == expected


async def test_not_given_omits_and_extra_body_can_send_null(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    await client.completions.create(
        prompt="hi", model=NOT_GIVEN, extra_body={"user": None}
    )
    assert sent_body(sent(mocked)[0]) == {"prompt": "hi", "user": None}


async def test_per_request_overrides_replace_client_settings(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(
        base_url=BASE,
        tags="client-tag",
        refresh_cache=True,
        default_headers={"X-Team": "core"},
    )
    await client.completions.create(
        prompt="hi",
        deployment="other",
        tags=["r1", "r2"],
        refresh_cache=None,
        extra_headers={"X-Trace": "t1", "X-Team": "override"},
        extra_body={"prompt": "replaced", "custom": [1, 2]},
    )
    kwargs = sent(mocked)[0]
    headers = kwargs["headers"]
    assert headers["X-Enkrypt-Deployment"] == "other"
    assert headers["X-Enkrypt-Tags"] == "r1,r2"
    assert "X-Enkrypt-Refresh-Cache" not in headers
    assert headers["X-Trace"] == "t1"
    assert headers["X-Team"] == "override"
    assert sent_body(kwargs) == {"prompt": "replaced", "custom": [1, 2]}


async def test_overrides_do_not_leak_into_the_next_request(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE, tags="keep")
    # The default request's headers are built once and reused: an override after
    # them must not change them, nor one before them.
    await client.completions.create(prompt="0")
    await client.completions.create(prompt="1", tags=None, extra_headers={"X-A": "1"})
    await client.completions.create(prompt="2")
    before, first, second = (dict(call["headers"]) for call in sent(mocked))
    assert "X-Enkrypt-Tags" not in first
    assert second["X-Enkrypt-Tags"] == "keep"
    assert "X-A" not in second
    assert before == second


async def test_per_request_timeout_becomes_the_aiohttp_timeout(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE, timeout=Timeout(connect=2.0, read=7.0))
    await client.completions.create(prompt="1")
    await client.completions.create(prompt="2", timeout=3.5)
    await client.completions.create(prompt="3", timeout=None)
    default, number, off = (call["timeout"] for call in sent(mocked))
    # aiohttp's connect covers the pool wait, the name lookup and the handshakes.
    assert default == aiohttp.ClientTimeout(
        connect=32.0, sock_connect=2.0, sock_read=7.0
    )
    assert number == aiohttp.ClientTimeout(
        connect=35.0, sock_connect=5.0, sock_read=3.5
    )
    assert off == aiohttp.ClientTimeout()


async def test_stream_request_asks_for_event_stream(
    make_client: ClientFactory,
) -> None:
    client = make_client(base_url=BASE)
    with aioresponses() as mocked:
        mocked.post(
            BASE + "/completions",
            body=b"data: [DONE]\n\n",
            content_type="text/event-stream",
        )
        stream = await client.completions.create(prompt="hi", stream=True)
        async with stream:
            assert [chunk async for chunk in stream] == []
    kwargs = sent(mocked)[0]
    assert kwargs["headers"]["Accept"] == "text/event-stream"
    assert sent_body(kwargs) == {"prompt": "hi", "stream": True}


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"deployment": "x\ny"}, id="deployment"),
        pytest.param({"tags": "a\rb"}, id="tags"),
        pytest.param({"extra_headers": {"X-A": "1\r\n2"}}, id="extra-header"),
        pytest.param({"extra_headers": {"X-A\n": "1"}}, id="extra-header-name"),
    ],
)
async def test_hostile_header_values_fail_before_sending(
    make_client: ClientFactory, mocked: aioresponses, override: dict[str, Any]
) -> None:
    client = make_client(base_url=BASE)
    with pytest.raises(ConfigurationError):
        await client.completions.create(prompt="hi", **override)
    assert ("POST", URL_COMPLETIONS) not in mocked.requests


async def test_missing_deployment_fails_before_sending(
    monkeypatch: pytest.MonkeyPatch, mocked: aioresponses
) -> None:
    monkeypatch.delenv("ENKRYPT_DEPLOYMENT", raising=False)
    async with EnkryptClient(api_key=API_KEY, base_url=BASE) as client:
        with pytest.raises(ConfigurationError, match="deployment"):
            await client.completions.create(prompt="hi")
        await client.completions.create(prompt="hi", deployment="given")
    assert len(sent(mocked)) == 1


@pytest.mark.parametrize(
    "prompt",
    [pytest.param(5, id="int"), pytest.param(["ok", 3], id="list-with-int")],
)
async def test_bad_prompt_type_raises(
    make_client: ClientFactory, mocked: aioresponses, prompt: object
) -> None:
    client = make_client(base_url=BASE)
    with pytest.raises(ConfigurationError, match="prompt"):
        await client.completions.create(prompt=prompt)  # type: ignore[call-overload]


async def test_unencodable_extra_body_raises_configuration_error(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    with pytest.raises(ConfigurationError, match="encoded"):
        await client.completions.create(prompt="hi", extra_body={"x": object()})


# -- lifecycle ---------------------------------------------------------------------


async def test_one_session_is_reused_for_every_request(
    make_client: ClientFactory, mocked: aioresponses
) -> None:
    client = make_client(base_url=BASE)
    assert client._session is None, "the session is created lazily"
    await client.completions.create(prompt="1")
    session = client._session
    await client.completions.create(prompt="2")
    assert client._session is session


async def test_pooled_connections_have_tcp_keepalive(
    make_server: ServerFactory,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(REFERENCE)

    async with EnkryptClient(
        api_key=API_KEY, deployment=DEPLOYMENT, base_url=await make_server(handler)
    ) as client:
        await client.completions.create(prompt="hi")
        connector = connector_of(client)
        (protocols,) = connector._conns.values()  # the one idle pooled connection
        protocol = protocols[0][0]
        assert protocol.transport is not None
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60


async def test_use_after_aclose_raises_client_closed_error(
    make_client: ClientFactory,
) -> None:
    client = make_client(base_url=BASE)
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.is_closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.completions.create(prompt="hi")
    with pytest.raises(ClientClosedError):
        async with client:
            pass


async def test_async_with_closes_the_session_it_created(
    make_server: ServerFactory,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(REFERENCE)

    base_url = await make_server(handler)
    async with EnkryptClient(
        api_key=API_KEY, deployment=DEPLOYMENT, base_url=base_url
    ) as client:
        await client.completions.create(prompt="hi")
        session = client._session
        assert session is not None
    assert session.closed


async def test_caller_owned_session_is_used_and_left_open(
    make_server: ServerFactory,
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Owner"])
        return json_response(REFERENCE)

    base_url = await make_server(handler)
    async with aiohttp.ClientSession(headers={"X-Owner": "caller"}) as session:
        async with EnkryptClient(
            api_key=API_KEY, deployment=DEPLOYMENT, base_url=base_url, session=session
        ) as client:
            await client.completions.create(prompt="hi")
        assert not session.closed
        assert seen == ["caller"]


async def test_caller_session_raising_for_status_still_gives_typed_errors(
    make_server: ServerFactory,
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return json_response({"error": {"message": "bad prompt"}}, 400)

    base_url = await make_server(handler)
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        client = EnkryptClient(
            api_key=API_KEY,
            deployment=DEPLOYMENT,
            base_url=base_url,
            session=session,
            max_retries=2,
        )
        with pytest.raises(BadRequestError, match="bad prompt"):
            await client.completions.create(prompt="hi")
        await client.aclose()
    assert calls == [1], "a 400 is not retried"


async def test_closed_caller_session_raises_client_closed_error(
    make_client: ClientFactory,
) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    client = make_client(base_url=BASE, session=session)
    with pytest.raises(ClientClosedError):
        await client.completions.create(prompt="hi")


async def test_unclosed_client_warns_resource_warning(
    make_server: ServerFactory,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(REFERENCE)

    base_url = await make_server(handler)
    client = EnkryptClient(api_key=API_KEY, deployment=DEPLOYMENT, base_url=base_url)
    await client.completions.create(prompt="hi")
    session = client._session
    assert session is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    messages = [str(w.message) for w in caught if w.category is ResourceWarning]
    assert any("Unclosed <EnkryptClient" in m for m in messages), messages
    assert not any(API_KEY in m for m in messages)
    await session.close()


async def test_client_that_never_sent_does_not_warn() -> None:
    client = EnkryptClient(api_key=API_KEY, deployment=DEPLOYMENT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert not [w for w in caught if w.category is ResourceWarning]

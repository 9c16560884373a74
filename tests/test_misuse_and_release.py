"""Misuse raises typed errors, timeouts bound every wait, and streams release.

Four promises, each against real aiohttp.web servers on 127.0.0.1 (or a resolver
that never answers, so no real name lookup is ever made):

* a stalled name lookup and a full pool end in `APITimeoutError`, never a hang;
* everything a caller can do wrong raises an `EnkryptError` (unencodable bodies,
  malformed base URLs, two readers of one stream, a client carried to another
  event loop), and nothing reaches the server;
* header names are RFC 9110 tokens, and framing headers cannot be given;
* streams give their connection back by themselves, with the garbage collector
  switched off, and the idle timeout covers every silence of a stream.

Tests taking ``resource`` run for completions and for chat completions.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from enkrypt_async import (
    APITimeoutError,
    ClientClosedError,
    ConfigurationError,
    EnkryptClient,
    EnkryptError,
    StreamBusyError,
    Timeout,
)

from .conftest import (
    API_KEY,
    COMPLETIONS,
    DEPLOYMENT,
    AnyStream,
    ClientFactory,
    Handler,
    Resource,
    ServerFactory,
    checked_out,
    connector_of,
    hold_until_gone,
    json_response,
)

DONE = b"data: [DONE]\n\n"
#: The longest any server here keeps a response open waiting for the client.
HOLD_LIMIT = 5.0


def event(resource: Resource, text: str) -> bytes:
    """One Server-Sent Event carrying a chunk of ``resource`` with ``text``."""
    return b"data: " + resource.chunk(text) + b"\n\n"


async def open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


def held_stream_handler(resource: Resource, texts: list[str]) -> Handler:
    """Stream ``texts`` as events in one write, then stay silent and open."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await open_sse(request)
        await response.write(b"".join(event(resource, text) for text in texts))
        await hold_until_gone(request)
        return response

    return handler


class Recorder:
    """A server handler that answers "hi" as ``resource`` and records what it got."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.path == "/ai-proxy" + self.resource.path
        self.requests.append(dict(request.headers))
        return json_response(self.resource.body("hi"))


def is_open(stream: AnyStream) -> bool:
    """``not stream.closed``, opaque to mypy's narrowing of the property."""
    return not stream.closed


@contextmanager
def gc_disabled() -> Iterator[None]:
    """Switch the cyclic garbage collector off: release must not depend on it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- 1. Timeouts cover name resolution and the pool --------------------------


class StalledResolver(AbstractResolver):
    """A name lookup that never answers (and never touches the real DNS)."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.cancelled = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.hosts.append(host)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("the stalled resolver answered")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("max_retries", "lookups"),
    [
        pytest.param(0, 1, id="no-retry"),
        pytest.param(1, 2, id="one-retry-each-bounded"),
    ],
)
async def test_a_stalled_name_lookup_raises_api_timeout_error_instead_of_hanging(
    make_client: ClientFactory,
    max_retries: int,
    lookups: int,
    resource: Resource,
) -> None:
    resolver = StalledResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = make_client(
            session=session,
            base_url="http://stalled.test:80/ai-proxy",
            allow_insecure_http=True,  # nothing is sent: the lookup never ends
            timeout=Timeout(connect=0.2, pool=0.2),
            max_retries=max_retries,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def request() -> pytest.ExceptionInfo[APITimeoutError]:
            with pytest.raises(APITimeoutError) as info:
                await resource.create(client, "hi")
            return info

        # A safety net only: a hang fails here with a plain TimeoutError.
        info = await asyncio.wait_for(request(), timeout=3.0 * lookups)
        elapsed = loop.time() - started
    assert isinstance(info.value, TimeoutError)
    assert resolver.hosts == ["stalled.test"] * lookups
    assert resolver.cancelled == lookups  # no lookup left running
    assert elapsed < 2.0 * lookups


class SlowResolver(AbstractResolver):
    """A name lookup that answers 127.0.0.1 after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.sleep(self.delay)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_a_slow_name_lookup_gets_the_connect_budget_not_the_pool_wait_alone(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    port = urllib.parse.urlsplit(await make_server(recorder.handle)).port
    connector = aiohttp.TCPConnector(resolver=SlowResolver(0.25), use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = make_client(
            session=session,
            base_url=f"http://slow-lookup.test:{port}/ai-proxy",
            allow_insecure_http=True,
            # The lookup is within `connect`, though longer than `pool`.
            timeout=Timeout(connect=0.5, pool=0.1),
        )
        completion = await asyncio.wait_for(resource.create(client, "hi"), 3)
    assert resource.text(completion) == "hi"
    assert len(recorder.requests) == 1


async def test_a_full_pool_raises_api_timeout_error_until_a_connection_is_freed(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("stream"):
            response = await open_sse(request)
            await response.write(event(resource, "held"))
            await hold_until_gone(request)
            return response
        return json_response(resource.body("hi"))

    client = make_client(
        base_url=await make_server(handler),
        pool_limit=1,
        timeout=Timeout(connect=0.2, pool=0.2),
    )
    stream = await resource.create(client, "hi", stream=True)
    assert resource.chunk_text(await stream.__anext__()) == "held"
    assert checked_out(client) == 1

    async def second() -> None:
        with pytest.raises(APITimeoutError):
            await resource.create(client, "hi")

    await asyncio.wait_for(second(), timeout=3.0)  # safety net only
    await stream.aclose()
    assert checked_out(client) == 0
    third = await asyncio.wait_for(resource.create(client, "hi"), 3.0)
    assert resource.text(third) == "hi"


# --- 2. Everything a caller can do wrong raises an EnkryptError --------------


@pytest.mark.parametrize(
    "stream", [pytest.param(False, id="create"), pytest.param(True, id="stream")]
)
async def test_a_prompt_with_a_lone_surrogate_is_refused_before_sending(
    make_server: ServerFactory,
    make_client: ClientFactory,
    stream: bool,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    client = make_client(base_url=await make_server(recorder.handle))
    with pytest.raises(ConfigurationError) as info:
        await resource.create(client, "a\ud800b", stream=stream)
    assert isinstance(info.value, ValueError)
    assert recorder.requests == []


async def test_an_extra_body_that_contains_itself_is_refused_before_sending(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    client = make_client(base_url=await make_server(recorder.handle))
    body: dict[str, object] = {}
    body["d"] = body
    try:
        with pytest.raises(ConfigurationError):
            await resource.create(client, "hi", extra_body=body)
    except RecursionError as exc:
        # Reported without its traceback: pytest cannot render one that deep.
        pytest.fail(f"a raw {exc!r} escaped", pytrace=False)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://[::1/x", id="unclosed-ipv6-bracket"),
        pytest.param("http://host:notaport/", id="port-not-a-number"),
        pytest.param("http://127.0.0.1:70000/ai-proxy", id="port-out-of-range"),
    ],
)
def test_a_malformed_base_url_is_refused_when_the_client_is_built(
    base_url: str,
) -> None:
    # allow_insecure_http: refused for being malformed, not for being plain http.
    with pytest.raises(ConfigurationError, match="base_url"):
        EnkryptClient(
            api_key=API_KEY,
            deployment=DEPLOYMENT,
            base_url=base_url,
            allow_insecure_http=True,
        )


async def test_a_second_task_reading_a_stream_gets_stream_busy_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    resume = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await open_sse(request)
        try:
            await response.write(event(resource, "0"))
            await asyncio.wait_for(resume.wait(), HOLD_LIMIT)
            await response.write(event(resource, "1") + event(resource, "2") + DONE)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: only if the first reader failed
        return response

    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    first_chunk = asyncio.Event()

    async def first_reader() -> None:
        async with stream:
            async for item in stream:
                seen.append(resource.chunk_text(item))
                first_chunk.set()

    task = asyncio.create_task(first_reader())
    await first_chunk.wait()
    await asyncio.sleep(0.05)  # the first task now waits in a read
    with pytest.raises(StreamBusyError) as info:
        async for _ in stream:
            pass
    assert isinstance(info.value, EnkryptError)
    assert isinstance(info.value, RuntimeError)
    assert is_open(stream)
    resume.set()
    await asyncio.wait_for(task, 3.0)
    assert seen == ["0", "1", "2"]
    assert stream.closed
    assert checked_out(client) == 0


@contextmanager
def threaded_server(handler: Handler) -> Iterator[str]:
    """An aiohttp.web server on its own thread and event loop; yields its URL."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            stop = asyncio.Event()
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = stop
            state["port"] = runner.addresses[0][1]
            ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5), "the threaded server did not start"
    try:
        yield f"http://127.0.0.1:{state['port']}/ai-proxy"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(5)
        assert not thread.is_alive()


def test_a_client_reused_across_two_asyncio_runs_works_and_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    with threaded_server(recorder.handle) as base_url:
        client = EnkryptClient(
            api_key=API_KEY, deployment=DEPLOYMENT, base_url=base_url, max_retries=0
        )
        first_pools: list[aiohttp.BaseConnector] = []

        async def first_run() -> str:
            completion = await resource.create(client, "hi")
            first_pools.append(connector_of(client))
            return resource.text(completion)

        async def second_run() -> str:
            try:
                completion = await asyncio.wait_for(resource.create(client, "hi"), 3.0)
                return resource.text(completion)
            finally:
                await client.aclose()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert asyncio.run(first_run()) == "hi"
            # Closed when the first loop shut down, not left to the collector.
            assert first_pools[0].closed
            assert asyncio.run(second_run()) == "hi"
            gc.collect()  # anything left unclosed warns now
    problems = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, ResourceWarning) or "nclosed" in str(w.message)
    ]
    assert problems == []
    assert "nclosed" not in caplog.text
    assert len(recorder.requests) == 2


async def test_a_client_used_from_another_running_loop_raises_client_closed_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    client = make_client(base_url=await make_server(recorder.handle))
    await resource.create(client, "hi")  # the session now lives here

    def from_another_thread() -> BaseException | None:
        async def use() -> None:
            await asyncio.wait_for(resource.create(client, "hi"), 3.0)

        try:
            asyncio.run(use())
        except BaseException as exc:  # handed back to the test to inspect
            return exc
        return None

    error = await asyncio.to_thread(from_another_thread)
    assert isinstance(error, ClientClosedError), repr(error)
    assert "one client per event loop" in str(error)
    # The client still works in its own loop, and the thread sent nothing.
    assert resource.text(await resource.create(client, "hi")) == "hi"
    assert len(recorder.requests) == 2


# --- 3. Header names are checked ---------------------------------------------

INVALID_NAMES = [
    pytest.param("X-Evil: injected", id="colon-and-value"),
    pytest.param("", id="empty"),
    pytest.param("X Evil", id="space"),
    pytest.param("X-Ünicode", id="non-ascii"),
    pytest.param("X-A\r\nB", id="crlf"),
]
FRAMING_NAMES = [
    pytest.param(name, id=name)
    for name in (
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Expect",
        "Proxy-Connection",
    )
]


def spellings(name: str) -> list[str]:
    """``name`` as given, lower, upper and swapped case (distinct ones)."""
    return list(dict.fromkeys([name, name.lower(), name.upper(), name.swapcase()]))


@pytest.mark.parametrize("name", [*INVALID_NAMES, *FRAMING_NAMES])
async def test_a_bad_or_framing_extra_header_is_refused_before_sending(
    make_server: ServerFactory,
    make_client: ClientFactory,
    name: str,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    client = make_client(
        base_url=await make_server(recorder.handle),
        timeout=Timeout(connect=1.0, read=1.0, pool=1.0),  # if one is sent anyway
    )
    for spelling in spellings(name):
        for stream in (False, True):
            with pytest.raises(ConfigurationError):
                await resource.create(
                    client, "hi", stream=stream, extra_headers={spelling: "1"}
                )
    assert recorder.requests == []


@pytest.mark.parametrize("name", [*INVALID_NAMES, *FRAMING_NAMES])
async def test_a_bad_or_framing_default_header_is_refused_by_the_client(
    make_server: ServerFactory, make_client: ClientFactory, name: str
) -> None:
    recorder = Recorder(COMPLETIONS)
    base_url = await make_server(recorder.handle)
    for spelling in spellings(name):
        with pytest.raises(ConfigurationError):
            make_client(base_url=base_url, default_headers={spelling: "1"})
    assert recorder.requests == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("X-Trace_Id.1", id="dot-underscore-digit"),
        pytest.param("x-lower-case", id="lower-case"),
        pytest.param("X-Odd!#$%&'*+^`|~", id="every-token-symbol"),
    ],
)
async def test_a_valid_token_header_name_reaches_the_server(
    make_server: ServerFactory,
    make_client: ClientFactory,
    name: str,
    resource: Resource,
) -> None:
    recorder = Recorder(resource)
    client = make_client(
        base_url=await make_server(recorder.handle),
        default_headers={name: "from-client"},
    )
    await resource.create(client, "hi")
    await resource.create(client, "hi", extra_headers={name: "per-request"})
    sent = [{k.lower(): v for k, v in headers.items()} for headers in recorder.requests]
    assert [headers[name.lower()] for headers in sent] == [
        "from-client",
        "per-request",
    ]


# --- 4. Release is proven without the garbage collector ----------------------


async def test_async_with_and_break_release_the_connection_at_once_without_gc(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    client = make_client(
        base_url=await make_server(held_stream_handler(resource, ["0", "1", "2"]))
    )
    with gc_disabled():
        stream = await resource.create(client, "hi", stream=True)
        seen: list[str] = []
        async with stream:
            async for item in stream:
                seen.append(resource.chunk_text(item))
                assert checked_out(client) == 1
                break
        # `stream` is still referenced: only the `async with` can have released.
        assert checked_out(client) == 0
        assert stream.closed
        assert seen == ["0"]


async def test_a_cancelled_read_closes_the_stream_and_frees_the_pool_without_gc(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    client = make_client(
        base_url=await make_server(held_stream_handler(resource, ["0"]))
    )
    with gc_disabled():
        stream = await resource.create(client, "hi", stream=True)
        assert resource.chunk_text(await stream.__anext__()) == "0"
        assert checked_out(client) == 1
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 0.1)
        assert stream.closed
        assert checked_out(client) == 0


async def test_a_bare_break_keeps_the_stream_open_and_resumable_without_gc(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    texts = ["0", "1", "2", "3", "4"]
    client = make_client(
        base_url=await make_server(held_stream_handler(resource, texts))
    )
    with gc_disabled():
        stream: AnyStream = await resource.create(client, "hi", stream=True)
        seen: list[str] = []
        async for item in stream:
            seen.append(resource.chunk_text(item))
            break
        await asyncio.sleep(0.01)  # let the abandoned loop's generator finalize
        assert is_open(stream)
        assert checked_out(client) == 1
        async for item in stream:
            seen.append(resource.chunk_text(item))
            if len(seen) == len(texts):
                break
        assert seen == texts
        assert is_open(stream)
        await stream.aclose()
        assert stream.closed
        assert checked_out(client) == 0


async def test_the_read_timeout_fires_on_the_second_silence_of_a_stream(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = await open_sse(request)
        await response.write(event(resource, "a"))
        await asyncio.sleep(0.15)  # shorter than the read timeout
        await response.write(event(resource, "b"))
        await hold_until_gone(request)  # longer than it
        return response

    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=0.3))
    loop = asyncio.get_running_loop()
    with gc_disabled():
        stream = await resource.create(client, "hi", stream=True)
        seen: list[str] = []
        second_at = failed_at = 0.0

        async def consume() -> None:
            nonlocal second_at, failed_at
            try:
                async with stream:
                    async for item in stream:
                        seen.append(resource.chunk_text(item))
                        second_at = loop.time()
            finally:
                failed_at = loop.time()

        with pytest.raises(APITimeoutError):
            await asyncio.wait_for(consume(), 3.0)  # safety net only
        assert seen == ["a", "b"]
        assert failed_at - second_at >= 0.3 - 0.02  # timer resolution
        assert stream.closed
        assert checked_out(client) == 0

"""No redirect is followed, and nothing the upstream may have processed is resent.

Redirects: every 3xx is a typed error, and the server its ``Location`` names gets
nothing at all. Resends: with retries on, a request is sent again only when it
provably never reached the upstream's work (refused, name lookup, TLS handshake,
or a pooled connection the server had dropped before answering a byte). Broken
answers come from raw ``asyncio`` servers: aiohttp.web cannot send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from enkrypt_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    EnkryptClient,
    Timeout,
)

from .conftest import (
    API_KEY,
    COMPLETIONS,
    AnyAnswer,
    ClientFactory,
    Resource,
    checked_out,
    unused_port,
)

PROMPT = "a prompt only the proxy may read 4242"


def ok_answer(resource: Resource) -> bytes:
    """A whole HTTP answer: 200 with the resource's success body, text "hi"."""
    body = resource.body("hi")
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


#: Limits so a misbehaving client fails a test instead of hanging it.
QUICK = Timeout(connect=2.0, read=2.0, total=10.0)


# --- TLS: one private CA for the module ---------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


def serving_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server context presenting ``cert`` (a new one each time)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def server_tls(cert: trustme.LeafCert) -> ssl.SSLContext:
    return serving_context(cert)


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the private CA (and verifies as usual)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_client(
    make_client: ClientFactory, tls: ssl.SSLContext | None, **kwargs: object
) -> EnkryptClient:
    """A client whose own connections trust ``tls``'s CAs (None: the defaults)."""
    if tls is not None:
        kwargs["ssl_context"] = tls
    return make_client(**kwargs)


# --- aiohttp.web servers, over http or https ----------------------------------

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WebServerFactory = Callable[[WebHandler, "ssl.SSLContext | None"], Awaitable[str]]


@pytest.fixture
async def web_server() -> AsyncIterator[WebServerFactory]:
    """Serve one handler on 127.0.0.1 (https with a context); return the origin."""
    runners: list[web.AppRunner] = []

    async def start(handler: WebHandler, tls: ssl.SSLContext | None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        return f"{'http' if tls is None else 'https'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


# --- raw asyncio servers: count connections and requests, answer anything ------


@dataclass(frozen=True)
class RawRequest:
    connection: int  # which TCP connection (1-based) carried it
    head: bytes
    body: bytes


#: Writes the answer to request ``number`` (1-based, over all connections);
#: returns True to read another request on the same connection, False to close.
Answer = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawServer:
    port: int
    tls_hellos: int = 0  # TLS handshakes begun (ClientHellos received)
    connections: int = 0  # connections established (after the handshake, if TLS)
    requests: list[RawRequest] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def received(self) -> bytes:
        return b"".join(request.head + request.body for request in self.requests)


RawServerFactory = Callable[[Answer, "trustme.LeafCert | None"], Awaitable[RawServer]]


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServerFactory]:
    """Start raw HTTP/1.1 servers on 127.0.0.1 (TLS presenting a certificate)."""
    started: list[tuple[asyncio.Server, RawServer]] = []

    async def start(answer: Answer, cert: trustme.LeafCert | None) -> RawServer:
        state = RawServer(port=0)
        tls = None
        if cert is not None:
            tls = serving_context(cert)

            def hello(
                obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext
            ) -> None:
                state.tls_hellos += 1  # called with None too: no SNI for an IP

            tls.sni_callback = hello

        async def serve(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            task = asyncio.current_task()
            assert task is not None
            state.handlers.add(task)
            state.connections += 1
            connection = state.connections
            try:
                while True:
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                        body = await reader.readexactly(content_length(head))
                    except (asyncio.IncompleteReadError, ConnectionError):
                        return  # the client closed the connection
                    state.requests.append(RawRequest(connection, head, body))
                    if not await answer(len(state.requests), writer):
                        return
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
        state.port = server.sockets[0].getsockname()[1]
        started.append((server, state))
        return state

    yield start
    for server, state in started:
        server.close()
        for task in state.handlers:
            task.cancel()
        await asyncio.gather(*state.handlers, return_exceptions=True)
        await server.wait_closed()


def answer_with(data: bytes, end: str) -> Answer:
    """Send ``data``, then: ``close``, ``reset`` (RST), ``keep`` or ``silent``.

    ``silent`` says nothing more and waits for the client to hang up.
    """

    async def answer(number: int, writer: asyncio.StreamWriter) -> bool:
        if data:
            writer.write(data)
            await writer.drain()
        if end == "reset":
            await asyncio.sleep(0.05)  # let the client read what was sent
            sock = writer.get_extra_info("socket")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
        return end in ("keep", "silent")

    return answer


def after_a_good_answer(resource: Resource, then: Answer) -> Answer:
    """Answer the first request in full (kept alive), the rest with ``then``."""
    good = answer_with(ok_answer(resource), "keep")

    async def answer(number: int, writer: asyncio.StreamWriter) -> bool:
        return await (good if number == 1 else then)(number, writer)

    return answer


async def decoy_answer(number: int, writer: asyncio.StreamWriter) -> bool:
    """What a redirect target would say: an error the client can raise."""
    body = b'{"error": {"message": "the decoy got the request"}}'
    writer.write(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return False


async def create(
    resource: Resource, client: EnkryptClient, *, stream: bool
) -> AnyAnswer:
    """One answer, whole or streamed (collected)."""
    if stream:
        chunks = await resource.create(client, PROMPT, stream=True)
        async with chunks:
            return await chunks.collect()
    return await resource.create(client, PROMPT)


# --- redirects ------------------------------------------------------------------

REDIRECT_STATUSES = [
    pytest.param(status, id=str(status)) for status in (301, 302, 303, 307, 308)
]

REDIRECT_TARGETS = [
    pytest.param("http", "http", "127.0.0.1", id="http-to-another-port"),
    pytest.param("http", "http", "localhost", id="http-to-another-host"),
    pytest.param("https", "https", "127.0.0.1", id="https-to-another-port"),
    pytest.param("https", "https", "localhost", id="https-to-another-host"),
    pytest.param("https", "http", "127.0.0.1", id="https-downgraded-to-http"),
]

WHOLE_OR_STREAMED = [
    pytest.param(False, id="whole"),
    pytest.param(True, id="streamed"),
]


@pytest.mark.parametrize("stream", WHOLE_OR_STREAMED)
@pytest.mark.parametrize(
    ("proxy_scheme", "target_scheme", "target_host"), REDIRECT_TARGETS
)
@pytest.mark.parametrize("status", REDIRECT_STATUSES)
async def test_a_redirect_is_never_followed_and_raises_its_status(
    web_server: WebServerFactory,
    raw_server: RawServerFactory,
    make_client: ClientFactory,
    cert: trustme.LeafCert,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    status: int,
    proxy_scheme: str,
    target_scheme: str,
    target_host: str,
    stream: bool,
    resource: Resource,
) -> None:
    # The decoy is bound on 127.0.0.1 only: whichever address "localhost" gives
    # first, nothing may arrive there.
    decoy = await raw_server(decoy_answer, cert if target_scheme == "https" else None)
    location = f"{target_scheme}://{target_host}:{decoy.port}/ai-proxy{resource.path}"
    proxied: list[bytes] = []

    async def proxy(request: web.Request) -> web.Response:
        assert request.path == "/ai-proxy" + resource.path
        assert request.headers["apikey"] == API_KEY
        proxied.append(await request.read())
        return web.Response(status=status, headers={"Location": location})

    https = proxy_scheme == "https"
    origin = await web_server(proxy, server_tls if https else None)
    client = tls_client(
        make_client,
        client_tls if https else None,
        base_url=f"{origin}/ai-proxy",
        max_retries=2,
        timeout=QUICK,
    )
    with pytest.raises(APIStatusError) as info:
        await create(resource, client, stream=stream)
    assert (decoy.tls_hellos, decoy.connections) == (0, 0), (
        f"the redirect was followed: {decoy.received!r}"
    )
    assert type(info.value) is APIStatusError
    assert info.value.status_code == status
    assert location in str(info.value)
    assert len(proxied) == 1, "a redirect is not retried"
    assert PROMPT.encode() in proxied[0]
    assert checked_out(client) == 0


# --- what is never resent ------------------------------------------------------

STATUS_LINE = b"HTTP/1.1 200 OK\r\n"

#: Answers that began (or a request that was read and then left unanswered):
#: the upstream may have run the model, so the request is not sent again.
BROKEN_ANSWERS = [
    pytest.param(STATUS_LINE, "close", APIConnectionError, id="status-line-then-close"),
    pytest.param(STATUS_LINE, "reset", APIConnectionError, id="status-line-then-reset"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: abc\r\n\r\n{}",
        "close",
        APIConnectionError,
        id="malformed-content-length",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "close",
        APIConnectionError,
        id="content-length-and-chunked",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 9000 + b"\r\n\r\n",
        "close",
        APIConnectionError,
        id="header-line-too-long",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"choices": [',
        "close",
        APIConnectionError,
        id="body-cut-short",
    ),
    pytest.param(b"", "silent", APITimeoutError, id="read-timeout-after-sending"),
    # Fresh or pooled, a close before any byte cannot be told apart from a server
    # that read the request and failed (or sent a 1xx, which leaves no trace).
    pytest.param(b"", "close", APIConnectionError, id="closed-before-any-byte"),
    pytest.param(
        b"HTTP/1.1 2", "close", APIConnectionError, id="part-of-a-status-line"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Ty",
        "close",
        APIConnectionError,
        id="part-of-the-headers",
    ),
    # An interim answer says the request arrived (102: it is being processed).
    pytest.param(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "close",
        APIConnectionError,
        id="100-continue-then-close",
    ),
    pytest.param(
        b"HTTP/1.1 102 Processing\r\n\r\n",
        "close",
        APIConnectionError,
        id="102-processing-then-close",
    ),
    pytest.param(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        "close",
        APIConnectionError,
        id="103-early-hints-then-close",
    ),
]


@pytest.mark.parametrize(("data", "end", "error_class"), BROKEN_ANSWERS)
async def test_a_request_that_may_have_been_processed_is_never_resent(
    raw_server: RawServerFactory,
    make_client: ClientFactory,
    data: bytes,
    end: str,
    error_class: type[APIError],
    resource: Resource,
) -> None:
    server = await raw_server(answer_with(data, end), None)
    client = make_client(
        base_url=f"http://127.0.0.1:{server.port}/ai-proxy",
        max_retries=2,
        timeout=Timeout(connect=2.0, read=0.2, total=10.0),
    )
    with pytest.raises(error_class):
        await resource.create(client, PROMPT)
    assert len(server.requests) == 1, "sent again"
    assert server.connections == 1
    assert checked_out(client) == 0


@pytest.mark.parametrize(("data", "end", "error_class"), BROKEN_ANSWERS)
async def test_a_broken_answer_on_a_reused_connection_is_never_resent(
    raw_server: RawServerFactory,
    make_client: ClientFactory,
    data: bytes,
    end: str,
    error_class: type[APIError],
    resource: Resource,
) -> None:
    server = await raw_server(
        after_a_good_answer(resource, answer_with(data, end)), None
    )
    client = make_client(
        base_url=f"http://127.0.0.1:{server.port}/ai-proxy",
        max_retries=2,
        timeout=Timeout(connect=2.0, read=0.2, total=10.0),
    )
    assert resource.text(await resource.create(client, "warm-up")) == "hi"
    with pytest.raises(error_class):
        await resource.create(client, PROMPT)
    assert [request.connection for request in server.requests] == [1, 1], "sent again"
    assert checked_out(client) == 0


# --- what is resent: the request never reached the upstream ------------------------


class CountingResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1 (or fails with ``error``), counting calls."""

    def __init__(self, error: OSError | None) -> None:
        self.error = error
        self.calls: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(None, id="connection-refused"),
        pytest.param(
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            id="name-lookup-failed",
        ),
    ],
)
async def test_a_request_that_never_connected_is_retried(
    make_client: ClientFactory, error: OSError | None
) -> None:
    resolver = CountingResolver(error)
    port = unused_port()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = make_client(
            base_url=f"http://enkrypt-proxy.invalid:{port}/ai-proxy",
            allow_insecure_http=True,
            session=session,
            max_retries=2,
            timeout=QUICK,
        )
        with pytest.raises(APIConnectionError):
            await client.completions.create(prompt=PROMPT)
    assert resolver.calls == [("enkrypt-proxy.invalid", port)] * 3


async def test_a_failed_tls_handshake_is_retried_and_never_carries_the_request(
    raw_server: RawServerFactory,
    make_client: ClientFactory,
    cert: trustme.LeafCert,
) -> None:
    server = await raw_server(answer_with(ok_answer(COMPLETIONS), "close"), cert)
    client = make_client(  # default TLS settings: the private CA is not trusted
        base_url=f"https://127.0.0.1:{server.port}/ai-proxy",
        max_retries=2,
        timeout=QUICK,
    )
    with pytest.raises(APIConnectionError):
        await client.completions.create(prompt=PROMPT)
    assert server.tls_hellos == 3, "each attempt began a handshake"
    assert server.connections == 0, "no handshake completed"
    assert server.requests == []


# --- ssl_context ------------------------------------------------------------------


async def test_ssl_context_lets_the_client_trust_a_private_ca(
    web_server: WebServerFactory,
    make_client: ClientFactory,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    resource: Resource,
) -> None:
    keys: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        keys.append(request.headers.get("apikey"))
        return web.Response(body=resource.body("hi"), content_type="application/json")

    origin = await web_server(handler, server_tls)
    client = tls_client(make_client, client_tls, base_url=f"{origin}/ai-proxy")
    assert resource.text(await resource.create(client, PROMPT)) == "hi"
    assert keys == [API_KEY]


async def test_by_default_a_server_of_an_unknown_ca_is_refused_before_the_key_is_sent(
    web_server: WebServerFactory,
    make_client: ClientFactory,
    server_tls: ssl.SSLContext,
    resource: Resource,
) -> None:
    calls: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request)
        return web.Response(body=resource.body("hi"), content_type="application/json")

    origin = await web_server(handler, server_tls)
    client = make_client(base_url=f"{origin}/ai-proxy", timeout=QUICK)
    with pytest.raises(APIConnectionError) as info:
        await resource.create(client, PROMPT)
    assert calls == []
    assert API_KEY not in str(info.value)

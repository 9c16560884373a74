"""Error hygiene: no secret in any error, no forged log line, every error pickles,
and an error inside a success answer (or a stream event) is an error.

Every error here is raised for real, by a client talking to a server on 127.0.0.1
(aiohttp.web, or a raw socket server for answers aiohttp.web cannot send). Every
test that provokes one (through the ``env`` fixture) runs for completions and for
chat completions.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import pickle
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

import enkrypt_async
from enkrypt_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    DecodeError,
    EnkryptError,
    GuardrailsBlockedAuthenticationError,
    GuardrailsBlockedBadRequestError,
    GuardrailsBlockedConflictError,
    GuardrailsBlockedError,
    GuardrailsBlockedInternalServerError,
    GuardrailsBlockedNotFoundError,
    GuardrailsBlockedPermissionDeniedError,
    GuardrailsBlockedRateLimitError,
    GuardrailsBlockedUnprocessableEntityError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    StreamBusyError,
    StreamConsumedError,
    StreamError,
    Timeout,
    UnprocessableEntityError,
)

from .conftest import (
    API_KEY,
    BLOCK_BODY,
    COMPLETIONS,
    DEPLOYMENT,
    AnyAnswer,
    AnyChunk,
    AnyStream,
    ClientFactory,
    Resource,
    ServerFactory,
    json_response,
    unused_port,
)

# --------------------------------------------------------------------------------
# Servers, clients and the errors they produce
# --------------------------------------------------------------------------------

RawServerFactory = Callable[[bytes], Awaitable[str]]

DONE = b"data: [DONE]\n\n"
#: Bytes for the server to send that depend on the resource under test.
Wire = Callable[[Resource], bytes]
#: Server text that would forge a log line, or colour a terminal, if printed raw.
FORGERY = "boom\nINFO forged line\x1b[31m\r\x00\x85\u2028\u202eend"
#: How each control character of `FORGERY` must read in a message.
FORGERY_ESCAPED = ("\\n", "\\x1b", "\\r", "\\x00", "\\x85", "\\u2028", "\\u202e")


@pytest.fixture
async def make_raw_server() -> AsyncIterator[RawServerFactory]:
    """Start socket servers on 127.0.0.1 that answer one request with raw bytes.

    Each reads the request head and its Content-Length body, writes the bytes
    given, and closes the connection. Returns the base URL.
    """
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> str:
        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/ai-proxy"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True)
class Env:
    """What a test case needs to provoke an error: servers, clients, the resource."""

    server: ServerFactory
    raw: RawServerFactory
    client: ClientFactory
    resource: Resource

    async def serve(
        self,
        body: object,
        status: int = 200,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve one answer for every request; JSON-encode non-text bodies."""
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()

        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                body=data, status=status, content_type=content_type, headers=headers
            )

        return await self.server(handler)

    async def serve_events(
        self,
        pieces: Sequence[bytes | Wire],
        *,
        pause: float = 0.0,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``pieces`` as one streamed body, one write each, ``pause`` apart.

        A `Wire` piece is made for the resource under test.
        """
        data = [
            piece if isinstance(piece, bytes) else piece(self.resource)
            for piece in pieces
        ]

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(
                headers={"Content-Type": content_type, **(headers or {})}
            )
            await response.prepare(request)
            try:
                for index, piece in enumerate(data):
                    if index and pause:
                        await asyncio.sleep(pause)
                    await response.write(piece)
                await response.write_eof()
            except ConnectionError:
                pass  # the client gave up on the stream: expected after an error
            return response

        return await self.server(handler)

    async def complete(self, base_url: str, **client_kwargs: Any) -> AnyAnswer:
        client = self.client(base_url=base_url, **client_kwargs)
        return await self.resource.create(client, "hi")

    async def open_stream(self, base_url: str, **client_kwargs: Any) -> AnyStream:
        client = self.client(base_url=base_url, **client_kwargs)
        return await self.resource.create(client, "hi", stream=True)

    async def stream_texts(self, base_url: str, **client_kwargs: Any) -> list[str]:
        """The text of each chunk of a whole stream."""
        seen: list[str] = []
        stream = await self.open_stream(base_url, **client_kwargs)
        await read_into(self.resource, stream, seen)
        return seen


@pytest.fixture
def env(
    make_server: ServerFactory,
    make_raw_server: RawServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> Env:
    return Env(
        server=make_server, raw=make_raw_server, client=make_client, resource=resource
    )


Trigger = Callable[[Env], Awaitable[object]]


async def raised_by(trigger: Trigger, env: Env) -> EnkryptError:
    """The library's error that ``trigger`` provokes (it must raise one)."""
    with pytest.raises(EnkryptError) as info:
        await trigger(env)
    return info.value


def event(data: bytes | str) -> bytes:
    """One ``data:`` Server-Sent Event."""
    return b"data: " + (data.encode() if isinstance(data, str) else data) + b"\n\n"


def text_of(resource: Resource, item: AnyChunk) -> str:
    """The text of a chunk; a chunk without choices reads as such."""
    return resource.chunk_text(item) if item.choices else "<no choices>"


async def read_into(resource: Resource, stream: AnyStream, seen: list[str]) -> None:
    """Read ``stream`` to its end, appending each chunk's text as it arrives."""
    async with stream:
        async for item in stream:
            seen.append(text_of(resource, item))  # noqa: PERF401 - kept on error


def chunk_event(text: str) -> Wire:
    """The event of one streamed chunk with ``text``, of the resource under test."""

    def wire(resource: Resource) -> bytes:
        return event(resource.chunk(text))

    return wire


# The triggers, one per way of failing; each provokes one error of the library.


def status_trigger(
    status: int, body: object, content_type: str = "application/json"
) -> Trigger:
    async def trigger(env: Env) -> object:
        base_url = await env.serve(
            body,
            status,
            content_type=content_type,
            headers={"x-request-id": f"req-{status}", "Retry-After": "0"},
        )
        return await env.complete(base_url)

    return trigger


def raw_trigger(answer: bytes | Wire, *, stream: bool = False) -> Trigger:
    async def trigger(env: Env) -> object:
        data = answer if isinstance(answer, bytes) else answer(env.resource)
        base_url = await env.raw(data)
        if stream:
            return await env.stream_texts(base_url)
        return await env.complete(base_url)

    return trigger


def events_trigger(pieces: Sequence[bytes | Wire], **client_kwargs: Any) -> Trigger:
    async def trigger(env: Env) -> object:
        base_url = await env.serve_events(pieces, headers={"x-request-id": "req-s"})
        return await env.stream_texts(base_url, **client_kwargs)

    return trigger


async def refused(env: Env) -> object:
    return await env.complete(f"http://127.0.0.1:{unused_port()}/ai-proxy")


async def read_timeout(env: Env) -> object:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.25)
        return json_response(env.resource.body("hi"))

    return await env.complete(await env.server(handler), timeout=Timeout(read=0.05))


async def stream_idle_timeout(env: Env) -> object:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(event(env.resource.chunk("a")))
            await asyncio.sleep(0.25)
        return response

    base_url = await env.server(handler)
    return await env.stream_texts(base_url, timeout=Timeout(read=0.05))


async def too_large(env: Env) -> object:
    return await env.complete(
        await env.serve(env.resource.body("hi")), max_response_size=16
    )


async def too_large_chunked(env: Env) -> object:
    body = env.resource.body("hi")
    pieces = [body[:20], body[20:]]
    base_url = await env.serve_events(pieces, content_type="application/json")
    return await env.complete(base_url, max_response_size=16)


async def redirect(env: Env) -> object:
    elsewhere = f"http://127.0.0.1:{unused_port()}/elsewhere"
    base_url = await env.serve(b"", 302, headers={"Location": elsewhere})
    return await env.complete(base_url)


async def bad_api_key(env: Env) -> object:
    return env.client(api_key=API_KEY + "\r\nX-Injected: 1")


async def bad_header_value(env: Env) -> object:
    client = env.client(base_url=await env.serve(env.resource.body("hi")))
    return await env.resource.create(
        client, "hi", extra_headers={"Authorization": f"Bearer {API_KEY}\n"}
    )


async def closed_client(env: Env) -> object:
    client = env.client(base_url=await env.serve(env.resource.body("hi")))
    await client.aclose()
    return await env.resource.create(client, "hi")


async def consumed_stream(env: Env) -> object:
    base_url = await env.serve_events([chunk_event("a"), DONE])
    stream = await env.open_stream(base_url)
    async with stream:
        async for _ in stream:
            pass
    async for _ in stream:  # a second loop over a finished stream
        pass
    return stream


async def busy_stream(env: Env) -> object:
    base_url = await env.serve_events(
        [b": hello\n\n", chunk_event("a"), DONE], pause=0.1
    )
    stream = await env.open_stream(base_url)
    async with stream:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.03)  # the first reader now waits in a read
        try:
            return await stream.__anext__()
        finally:
            await first


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --------------------------------------------------------------------------------
# A. No secret in any exception, anywhere down the chain
# --------------------------------------------------------------------------------


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception reachable through causes and contexts."""
    found: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        pending.extend(
            link for link in (current.__cause__, current.__context__) if link
        )
    return found


def renderings(error: BaseException) -> Iterator[tuple[str, str]]:
    """Every way ``error`` and its chain are commonly shown, with where from."""
    yield "traceback.format_exception", "".join(traceback.format_exception(error))
    for depth, link in enumerate(exception_chain(error)):
        name = f"{type(link).__name__} (chain #{depth})"
        yield f"str({name})", str(link)
        yield f"repr({name})", repr(link)
        yield f"{name}.args", repr(link.args)
        yield f"vars({name})", repr(vars(link))


def assert_no_secret(error: BaseException) -> None:
    for where, text in renderings(error):
        assert API_KEY not in text, f"the API key leaks through {where}: {text}"
    data = pickle.dumps(error)
    assert API_KEY.encode() not in data, "the API key leaks through pickle.dumps"


STATUSES = (400, 401, 403, 404, 409, 422, 429, 500, 503)

LEAK_CASES = [
    *(
        pytest.param(
            status_trigger(status, {"error": {"message": "refused", "code": status}}),
            id=f"status-{status}-json",
        )
        for status in STATUSES
    ),
    *(
        pytest.param(
            status_trigger(status, "upstream says no", "text/plain"),
            id=f"status-{status}-text",
        )
        for status in STATUSES
    ),
    pytest.param(status_trigger(400, BLOCK_BODY), id="guardrails-block"),
    pytest.param(
        raw_trigger(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
        id="malformed-content-length",
    ),
    pytest.param(
        raw_trigger(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", stream=True),
        id="malformed-content-length-stream-request",
    ),
    pytest.param(
        raw_trigger(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        id="content-length-and-transfer-encoding",
    ),
    pytest.param(raw_trigger(b"HTTP/1.1 abc\r\n\r\n"), id="bad-status-line"),
    pytest.param(refused, id="connection-refused"),
    pytest.param(read_timeout, id="read-timeout"),
    pytest.param(stream_idle_timeout, id="stream-idle-timeout"),
    pytest.param(events_trigger([chunk_event("a")]), id="stream-without-done"),
    pytest.param(
        raw_trigger(
            lambda resource: (
                CHUNKED_HEAD + chunked(event(resource.chunk("a"))) + b"40\r\ndata: {"
            ),
            stream=True,
        ),
        id="stream-cut-mid-chunk",
    ),
    pytest.param(
        raw_trigger(
            lambda resource: (
                CHUNKED_HEAD
                + chunked(event(resource.chunk("a")))
                + b"zz\r\ndata: {}\r\n"
            ),
            stream=True,
        ),
        id="stream-bad-chunk-size",
    ),
    pytest.param(
        events_trigger([chunk_event("a"), b"event: error\ndata: overloaded\n\n"]),
        id="stream-error-event",
    ),
    pytest.param(
        events_trigger([chunk_event("a"), event(b'{"error": {"message": "x"}}')]),
        id="stream-error-member",
    ),
    pytest.param(events_trigger([event(b"{oops"), DONE]), id="stream-malformed-chunk"),
    pytest.param(too_large, id="body-over-max-response-size"),
    pytest.param(too_large_chunked, id="chunked-body-over-max-response-size"),
    pytest.param(status_trigger(200, "not json"), id="decode-error"),
    pytest.param(status_trigger(200, {"error": "x"}), id="error-in-200"),
    pytest.param(redirect, id="redirect-302"),
    pytest.param(bad_api_key, id="configuration-bad-api-key"),
    pytest.param(bad_header_value, id="configuration-bad-header-value"),
]


@pytest.mark.parametrize("trigger", LEAK_CASES)
async def test_no_error_shows_the_api_key_anywhere_down_its_chain(
    env: Env, trigger: Trigger
) -> None:
    assert_no_secret(await raised_by(trigger, env))


async def test_a_malformed_answer_keeps_its_cause_with_the_request_headers_redacted(
    env: Env,
) -> None:
    base_url = await env.raw(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n")
    with pytest.raises(APIConnectionError) as info:
        await env.complete(base_url)
    # The cause stays for diagnosis, with the key replaced and the rest intact.
    infos = [
        getattr(link, "request_info", None) for link in exception_chain(info.value)
    ]
    headers = [found.headers for found in infos if found is not None]
    assert headers, "the aiohttp error carrying request_info is no longer chained"
    for sent in headers:
        assert sent["apikey"] == "<redacted>"
        assert sent["X-Enkrypt-Deployment"] == DEPLOYMENT
    assert_no_secret(info.value)


async def test_a_redirect_is_a_status_error_and_is_never_followed(env: Env) -> None:
    followed: list[str] = []

    async def target(request: web.Request) -> web.Response:
        followed.append(request.headers.get("apikey", ""))
        return json_response(env.resource.body("hi"))

    elsewhere = await env.server(target)
    base_url = await env.serve(b"", 307, headers={"Location": elsewhere})
    with pytest.raises(APIStatusError) as info:
        await env.complete(base_url)
    assert info.value.status_code == 307
    assert followed == []
    assert_no_secret(info.value)


# --------------------------------------------------------------------------------
# B. Server-controlled text cannot forge log lines
# --------------------------------------------------------------------------------


async def forged_reason(env: Env) -> object:
    answer = (
        b"HTTP/1.1 400 Bad\x1b[31m forged\xc2\x85 reason\r\nContent-Length: 0\r\n\r\n"
    )
    return await env.complete(await env.raw(answer))


async def forged_location(env: Env) -> object:
    target = f"http://127.0.0.1:{unused_port()}/forged\x1b[31m\u2028".encode()
    answer = (
        b"HTTP/1.1 302 Found\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n"
    )
    return await env.complete(await env.raw(answer))


async def forged_whole_json_stream(env: Env) -> object:
    body = json.dumps({"error": {"message": FORGERY}}).encode()
    base_url = await env.serve_events([body], content_type="application/json")
    return await env.stream_texts(base_url)


FORGED_SSE_LINE = "forged\x1b[31m\x00\x85\u2028end"

FORGERY_CASES = [
    pytest.param(
        status_trigger(400, {"error": {"message": FORGERY}}),
        FORGERY_ESCAPED,
        id="json-error-message-400",
    ),
    pytest.param(
        status_trigger(500, {"error": {"message": FORGERY}}),
        FORGERY_ESCAPED,
        id="json-error-message-500",
    ),
    pytest.param(
        status_trigger(422, {"detail": FORGERY}), FORGERY_ESCAPED, id="json-detail-422"
    ),
    pytest.param(
        status_trigger(400, {"error": FORGERY}), FORGERY_ESCAPED, id="json-error-string"
    ),
    pytest.param(
        status_trigger(400, FORGERY, "text/plain"), FORGERY_ESCAPED, id="text-body-400"
    ),
    pytest.param(
        status_trigger(503, FORGERY, "text/plain"), FORGERY_ESCAPED, id="text-body-503"
    ),
    pytest.param(
        status_trigger(200, {"error": {"message": FORGERY}}),
        FORGERY_ESCAPED,
        id="error-in-200",
    ),
    pytest.param(
        status_trigger(200, "not json: " + FORGERY, "text/plain"),
        FORGERY_ESCAPED,
        id="decode-error-excerpt",
    ),
    pytest.param(forged_reason, ("\\x1b",), id="reason-phrase"),
    # aiohttp may refuse such a header outright and quote its bytes (U+2028 then
    # reads \xe2\x80\xa8): either way the message is printable.
    pytest.param(forged_location, ("\\x1b",), id="location-header"),
    pytest.param(
        events_trigger(
            [chunk_event("a"), event(json.dumps({"error": {"message": FORGERY}}))]
        ),
        FORGERY_ESCAPED,
        id="stream-error-member",
    ),
    pytest.param(
        events_trigger([b"event: error\ndata: " + FORGED_SSE_LINE.encode() + b"\n\n"]),
        ("\\x1b", "\\x85", "\\u2028"),
        id="stream-error-event",
    ),
    pytest.param(
        events_trigger([event("{" + FORGED_SSE_LINE), DONE]),
        ("\\x1b", "\\x85", "\\u2028"),
        id="stream-malformed-chunk",
    ),
    pytest.param(forged_whole_json_stream, FORGERY_ESCAPED, id="stream-whole-json"),
]


@pytest.mark.parametrize(("trigger", "escapes"), FORGERY_CASES)
async def test_server_text_in_a_message_has_its_control_characters_escaped(
    env: Env, trigger: Trigger, escapes: tuple[str, ...]
) -> None:
    error = await raised_by(trigger, env)
    message = str(error)
    assert "forged" in message  # the server's text did reach the message...
    assert message.isprintable(), f"a control character in {message!r}"
    for escaped in escapes:  # ...and each control character reads escaped
        assert escaped in message
    if isinstance(error, APIError):  # and the message shown to users too
        assert error.message.isprintable()
        assert error.message in message


# --------------------------------------------------------------------------------
# C. Every exception class pickles with its fields
# --------------------------------------------------------------------------------

#: The error classes written out per status, and StreamBusyError: exported too.
WRITTEN_OUT_ERRORS: tuple[type[EnkryptError], ...] = (
    GuardrailsBlockedBadRequestError,
    GuardrailsBlockedAuthenticationError,
    GuardrailsBlockedPermissionDeniedError,
    GuardrailsBlockedNotFoundError,
    GuardrailsBlockedConflictError,
    GuardrailsBlockedUnprocessableEntityError,
    GuardrailsBlockedRateLimitError,
    GuardrailsBlockedInternalServerError,
    StreamBusyError,
)

#: Each error status, its class, and the class of a guardrails block sent with it.
STATUS_CLASSES: dict[int, tuple[type[APIStatusError], type[GuardrailsBlockedError]]] = {
    400: (BadRequestError, GuardrailsBlockedBadRequestError),
    401: (AuthenticationError, GuardrailsBlockedAuthenticationError),
    403: (PermissionDeniedError, GuardrailsBlockedPermissionDeniedError),
    404: (NotFoundError, GuardrailsBlockedNotFoundError),
    409: (ConflictError, GuardrailsBlockedConflictError),
    422: (UnprocessableEntityError, GuardrailsBlockedUnprocessableEntityError),
    429: (RateLimitError, GuardrailsBlockedRateLimitError),
    500: (InternalServerError, GuardrailsBlockedInternalServerError),
    503: (InternalServerError, GuardrailsBlockedInternalServerError),
}

STREAM_ERROR_EVENT = event(
    b'{"error": {"message": "overloaded", "code": 529, "type": "overloaded_error"}}'
)


async def base_error(env: Env) -> object:
    # The base class is never raised by the library itself: constructed directly.
    raise EnkryptError("constructed directly", 42)


#: One way to raise each error class: a real one wherever there is one.
RAISERS: dict[type[EnkryptError], Trigger] = {
    EnkryptError: base_error,
    APIError: status_trigger(200, {"error": {"message": "failed"}}),
    APIStatusError: status_trigger(418, {"error": {"message": "teapot"}}),
    BadRequestError: status_trigger(400, {"error": {"message": "bad"}}),
    AuthenticationError: status_trigger(401, "no key", "text/plain"),
    PermissionDeniedError: status_trigger(403, {"message": "denied"}),
    NotFoundError: status_trigger(404, {"error": "not found"}),
    ConflictError: status_trigger(409, {"error": {"code": "conflict"}}),
    UnprocessableEntityError: status_trigger(422, {"detail": "invalid"}),
    RateLimitError: status_trigger(429, {"error": {"message": "slow down"}}),
    InternalServerError: status_trigger(503, "overloaded", "text/plain"),
    GuardrailsBlockedError: status_trigger(418, BLOCK_BODY),
    **{
        blocked: status_trigger(status, BLOCK_BODY)
        for status, (_, blocked) in STATUS_CLASSES.items()
    },
    APIConnectionError: refused,
    APITimeoutError: read_timeout,
    StreamError: events_trigger([chunk_event("a"), STREAM_ERROR_EVENT]),
    DecodeError: status_trigger(200, "not json at all"),
    ConfigurationError: bad_api_key,
    ClientClosedError: closed_client,
    StreamConsumedError: consumed_stream,
    StreamBusyError: busy_stream,
}

FIELDS = (
    "message",
    "status_code",
    "body",
    "request_id",
    "detections",
    "code",
    "type",
    "excerpt",
)


def exported_error_classes() -> dict[str, type[EnkryptError]]:
    classes: dict[str, type[EnkryptError]] = {}
    for name in enkrypt_async.__all__:
        value = getattr(enkrypt_async, name)
        if isinstance(value, type) and issubclass(value, EnkryptError):
            classes[name] = value
    return classes


def library_error_classes() -> list[type[EnkryptError]]:
    """Every subclass of EnkryptError the library defines, exported or not."""
    found: list[type[EnkryptError]] = []
    pending: list[type[EnkryptError]] = [EnkryptError]
    while pending:
        cls = pending.pop()
        if cls in found or not cls.__module__.startswith("enkrypt_async"):
            continue
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def assert_round_trips(error: EnkryptError) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(error, protocol))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.args == error.args
        for field in FIELDS:
            if hasattr(error, field):
                assert getattr(copy, field) == getattr(error, field), field
        if isinstance(error, APIStatusError):
            assert isinstance(copy, APIStatusError)
            assert list(copy.headers.items()) == list(error.headers.items())
            assert copy.headers.get("X-REQUEST-ID") == error.headers.get("x-request-id")


def test_the_raiser_table_covers_every_error_class() -> None:
    classes = {*exported_error_classes().values(), *library_error_classes()}
    assert classes >= set(WRITTEN_OUT_ERRORS)
    assert classes <= set(RAISERS)


def test_the_per_status_guardrails_classes_and_stream_busy_error_are_exported() -> None:
    for cls in WRITTEN_OUT_ERRORS:
        assert cls.__name__ in enkrypt_async.__all__
        assert getattr(enkrypt_async, cls.__name__) is cls


@pytest.mark.parametrize(
    "error_class", [pytest.param(cls, id=cls.__name__) for cls in RAISERS]
)
async def test_a_raised_error_of_each_class_pickles_with_its_fields(
    env: Env, error_class: type[EnkryptError]
) -> None:
    error = await raised_by(RAISERS[error_class], env)
    assert type(error) is error_class
    assert_round_trips(error)


async def test_fields_survive_pickling_with_their_values(env: Env) -> None:
    # Not vacuous: the round trip above compares fields that hold real values.
    blocked = await raised_by(RAISERS[GuardrailsBlockedBadRequestError], env)
    assert isinstance(blocked, GuardrailsBlockedError)
    stream_error = await raised_by(RAISERS[StreamError], env)
    assert isinstance(stream_error, StreamError)
    decode_error = await raised_by(RAISERS[DecodeError], env)
    assert isinstance(decode_error, DecodeError)

    blocked_copy = pickle.loads(pickle.dumps(blocked))
    assert isinstance(blocked_copy, BadRequestError)
    assert isinstance(blocked_copy, GuardrailsBlockedError)
    assert blocked_copy.status_code == 400
    assert blocked_copy.request_id == "req-400"
    assert blocked_copy.headers["X-Request-Id"] == "req-400"
    assert blocked_copy.body == BLOCK_BODY
    assert blocked_copy.detections == blocked.detections
    assert blocked_copy.flagged == {"input": ["injection_attack"], "output": []}

    stream_copy = pickle.loads(pickle.dumps(stream_error))
    assert (stream_copy.code, stream_copy.type) == (529, "overloaded_error")
    assert stream_copy.request_id == "req-s"
    assert "overloaded" in stream_copy.message

    decode_copy = pickle.loads(pickle.dumps(decode_error))
    assert decode_copy.excerpt == "not json at all"
    assert decode_copy.request_id == "req-200"


def test_every_error_class_is_importable_from_the_module_it_names() -> None:
    classes = {*exported_error_classes().values(), *library_error_classes()}
    for cls in classes:
        module = importlib.import_module(cls.__module__)
        assert getattr(module, cls.__qualname__, None) is cls, cls


@pytest.mark.parametrize(
    ("status", "status_class", "blocked_class"),
    [
        pytest.param(status, cls, blocked, id=str(status))
        for status, (cls, blocked) in STATUS_CLASSES.items()
    ],
)
async def test_a_guardrails_block_is_also_an_error_of_its_status_class(
    env: Env,
    status: int,
    status_class: type[APIStatusError],
    blocked_class: type[GuardrailsBlockedError],
) -> None:
    error = await raised_by(status_trigger(status, BLOCK_BODY), env)
    assert type(error) is blocked_class
    assert isinstance(error, GuardrailsBlockedError)
    assert isinstance(error, status_class)
    assert error.status_code == status
    assert error.flagged == {"input": ["injection_attack"], "output": []}


# --------------------------------------------------------------------------------
# D. An error inside a success answer is an error, whatever its shape
# --------------------------------------------------------------------------------

ERROR_SHAPES = [
    # body, text the message must hold, expected code, expected type
    pytest.param(
        b'{"error": {"message": "m-float", "code": 1.5}}',
        "m-float",
        1.5,
        None,
        id="object-with-float-code",
    ),
    pytest.param(
        b'{"error": {"code": "quota_exceeded"}}',
        "quota_exceeded",
        "quota_exceeded",
        None,
        id="object-code-only",
    ),
    pytest.param(
        b'{"error": {"type": "server_error"}}',
        "server_error",
        None,
        "server_error",
        id="object-type-only",
    ),
    pytest.param(
        b'{"error": {"message": {"nested": "deep-detail"}}}',
        "deep-detail",
        None,
        None,
        id="object-message-object",
    ),
    pytest.param(b'{"error": true}', "true", None, None, id="true"),
    pytest.param(b'{"error": false}', "false", None, None, id="false"),
    pytest.param(
        b'{"error": ["first-problem", "second-problem"]}',
        "second-problem",
        None,
        None,
        id="list",
    ),
    pytest.param(b'{"error": 4242}', "4242", None, None, id="number"),
    pytest.param(
        b'{"error": "plain-failure"}', "plain-failure", None, None, id="string"
    ),
    pytest.param(b'{"error": {}}', "", None, None, id="empty-object"),
    pytest.param(
        b'{"\\u0065rror": {"message": "escaped-key", "code": 7, "type": "t"}}',
        "escaped-key",
        7,
        "t",
        id="key-with-escaped-e",
    ),
    pytest.param(
        b'{"erro\\u0072": "escaped-r"}', "escaped-r", None, None, id="escaped-r"
    ),
    pytest.param(
        b'{"\\u0065\\u0072\\u0072\\u006F\\u0072": "all-escaped"}',
        "all-escaped",
        None,
        None,
        id="key-all-escaped",
    ),
    pytest.param(
        b'{"choices": [{"text": "hi", "index": 0}], "error": {"message": "beside"}}',
        "beside",
        None,
        None,
        id="beside-choices",
    ),
]

#: A success answer or chunk (its JSON) changed to hold "error" but no error.
Variant = Callable[[dict[str, Any]], dict[str, Any]]


def with_error_inside_a_choice(answer: dict[str, Any]) -> dict[str, Any]:
    answer["choices"][0]["error"] = {"message": "x"}
    return answer


NOT_ERRORS = [
    pytest.param(lambda answer: {"error": None, **answer}, id="error-null"),
    pytest.param(with_error_inside_a_choice, id="error-inside-a-choice"),
    pytest.param(
        lambda answer: {**answer, "model": 'the "error": x'},
        id="error-inside-a-string",
    ),
    pytest.param(
        lambda answer: {**answer, "meta": {"error": "x"}}, id="error-in-another-member"
    ),
]


@pytest.mark.parametrize(("body", "text", "code", "kind"), ERROR_SHAPES)
async def test_a_200_body_with_any_top_level_error_raises_api_error(
    env: Env, body: bytes, text: str, code: object, kind: str | None
) -> None:
    error = await raised_by(status_trigger(200, body), env)
    assert type(error) is APIError
    assert text in error.message
    assert error.request_id == "req-200"


@pytest.mark.parametrize("variant", NOT_ERRORS)
async def test_a_200_body_without_a_top_level_error_is_a_completion(
    env: Env, variant: Variant
) -> None:
    body = variant(json.loads(env.resource.body("hi")))
    answer = await env.complete(await env.serve(body))
    assert env.resource.text(answer) == "hi"


async def read_until_error(
    env: Env, base_url: str
) -> tuple[list[str], StreamError, AnyStream]:
    """Read a stream that must fail; the texts before, the error, the stream."""
    seen: list[str] = []
    stream = await env.open_stream(base_url)
    with pytest.raises(StreamError) as info:
        await read_into(env.resource, stream, seen)
    return seen, info.value, stream


def assert_never_complete(stream: AnyStream) -> None:
    """After an error, the stream is over and a new loop cannot end quietly."""
    assert stream.closed
    with pytest.raises(StreamConsumedError):
        aiter(stream)


def multi_line(body: bytes) -> bytes:
    """``body`` as one event of two ``data:`` lines (joined with a LF)."""
    head, _, tail = body.partition(b": ")
    return b"data: " + head + b":\ndata: " + tail + b"\n\n"


def error_layouts(
    resource: Resource, error_event: bytes, body: bytes
) -> dict[str, list[bytes]]:
    """Ways an error event can arrive after the chunks "a", "b" (and "c")."""
    a, b, c = (event(resource.chunk(text)) for text in "abc")
    half = len(error_event) // 2
    return {
        # one write: the chunks and the error in the same network read
        "same-read": [a + b + error_event],
        "same-read-then-done": [a + b + error_event + DONE],
        "same-later-read": [a, b + c + error_event + DONE],
        # the error alone, in a read of its own
        "alone-in-later-read": [a + b, error_event, DONE],
        "split-across-reads": [a + b + error_event[:half], error_event[half:] + DONE],
        "crlf-framing": [a + b + error_event.replace(b"\n", b"\r\n") + DONE],
        "multi-line-data": [a + b + multi_line(body) + DONE],
    }


LAYOUTS = list(error_layouts(COMPLETIONS, b"", b""))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("body", "text", "code", "kind"), ERROR_SHAPES)
async def test_an_error_event_raises_stream_error_after_the_chunks_before_it(
    env: Env, body: bytes, text: str, code: object, kind: str | None, layout: str
) -> None:
    pieces = error_layouts(env.resource, event(body), body)[layout]
    base_url = await env.serve_events(pieces, pause=0.02)
    seen, error, stream = await read_until_error(env, base_url)
    assert seen == (["a", "b", "c"] if layout == "same-later-read" else ["a", "b"])
    assert type(error) is StreamError
    assert text in error.message
    assert (error.code, error.type) == (code, kind)
    assert_never_complete(stream)


async def test_an_error_event_fails_collect_instead_of_ending_it(env: Env) -> None:
    error_event = event(b'{"\\u0065rror": {"message": "collect-failed"}}')
    stream = await env.open_stream(
        await env.serve_events([chunk_event("a"), error_event, DONE])
    )
    with pytest.raises(StreamError, match="collect-failed"):
        await stream.collect()
    assert_never_complete(stream)


@pytest.mark.parametrize("variant", NOT_ERRORS)
async def test_a_stream_event_without_a_top_level_error_is_a_chunk(
    env: Env, variant: Variant
) -> None:
    resource = env.resource
    body = json.dumps(variant(json.loads(resource.chunk("hi")))).encode()
    base_url = await env.serve_events([event(resource.chunk("a")) + event(body) + DONE])
    assert await env.stream_texts(base_url) == ["a", "hi"]


@pytest.mark.parametrize(("body", "text", "code", "kind"), ERROR_SHAPES)
async def test_a_stream_answered_with_a_whole_json_error_body_raises(
    env: Env, body: bytes, text: str, code: object, kind: str | None
) -> None:
    base_url = await env.serve_events([body], content_type="application/json")
    seen, error, stream = await read_until_error(env, base_url)
    assert seen == []
    assert isinstance(error, StreamError)
    assert text in error.message
    assert (error.code, error.type) == (code, kind)
    assert_never_complete(stream)

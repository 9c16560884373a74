"""FastAPI integration: one client per application, errors, SSE and JSON responses.

Install the extra with ``pip install "enkrypt-async[fastapi]"``. Nothing in the core
imports this module: ``import enkrypt_async`` never imports FastAPI or Starlette.

- `enkrypt_lifespan` opens one `EnkryptClient` per application at startup (and
  fails the startup when no deployment is configured), keeps it on ``app.state``,
  closes it at shutdown, and runs the application's own lifespan inside.
- `get_enkrypt_client` and its ``Annotated`` alias `EnkryptClientDep` hand that
  client to handlers.
- `install_exception_handlers` turns every `APIError` into an OpenAI-shaped JSON
  error (`error_response`): a guardrails block keeps its 4xx status and carries the
  detections, a 429 keeps its ``Retry-After``, a timeout becomes 504 and any other
  upstream failure 502. An upstream error never becomes a 500.
- `EventSourceResponse` relays a stream as Server-Sent Events: each chunk's JSON
  exactly as the proxy sent it, the chunks of one upstream read in one write
  (`Stream.iter_data_batches`; ``typed=True`` re-encodes the decoded chunks
  instead), ``data: [DONE]`` at the end, an in-band error event when the stream
  fails after the headers were sent, and it closes the upstream stream as soon as
  the response ends or is cancelled (a browser that went away).
- `EnkryptJSONResponse` renders any model (a msgspec ``Struct``) with msgspec;
  FastAPI's ``jsonable_encoder`` cannot serialise them, so return one from the
  handler rather than the bare model.

Examples:
    >>> from fastapi import FastAPI
    >>> from enkrypt_async.fastapi import (
    ...     EnkryptClientDep,
    ...     EnkryptJSONResponse,
    ...     EventSourceResponse,
    ...     enkrypt_lifespan,
    ...     install_exception_handlers,
    ... )
    >>> app = FastAPI(lifespan=enkrypt_lifespan())
    >>> install_exception_handlers(app)
    >>> @app.post("/complete")
    ... async def complete(prompt: str, client: EnkryptClientDep) -> Response:
    ...     completion = await client.completions.create(prompt=prompt)
    ...     return EnkryptJSONResponse(completion)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, Request
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from enkrypt_async import (
    APIError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    EnkryptClient,
    GuardrailsBlockedError,
    RateLimitError,
    Stream,
    StreamError,
)

__all__ = [
    "STATE_KEY",
    "EnkryptClientDep",
    "EnkryptJSONResponse",
    "EventSourceResponse",
    "Lifespan",
    "enkrypt_lifespan",
    "error_body",
    "error_response",
    "get_enkrypt_client",
    "install_exception_handlers",
]

#: The attribute of ``app.state`` that holds the application's client.
STATE_KEY = "enkrypt_client"

#: The application type a `Lifespan` is given.
AppT = TypeVar("AppT", bound=Starlette)

#: A lifespan as ``FastAPI(lifespan=...)`` takes it.
Lifespan = Callable[[AppT], contextlib.AbstractAsyncContextManager[Any]]

_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def enkrypt_lifespan(
    *, lifespan: Lifespan[AppT] | None = None, **client_settings: Any
) -> Lifespan[AppT]:
    """A lifespan that opens one `EnkryptClient` for the application.

    At startup the client is built from ``client_settings`` (any argument of
    `EnkryptClient`; what is left out comes from the ``ENKRYPT_*`` environment)
    and checked, then stored as ``app.state.enkrypt_client`` (`STATE_KEY`). The
    application's own ``lifespan``, if any, runs inside, with the client already
    there; whatever state it yields is passed on. At shutdown the client is
    closed, after the application's lifespan has finished.

    Args:
        lifespan: The application's own lifespan, to compose with.
        **client_settings: Keyword arguments for `EnkryptClient`.

    Returns:
        A lifespan for ``FastAPI(lifespan=...)``.

    Raises:
        ConfigurationError: At startup, when no API key or no deployment is
            configured, or a setting is malformed: the application does not start.

    Examples:
        >>> app = FastAPI(lifespan=enkrypt_lifespan(deployment="my-deployment"))
    """

    @contextlib.asynccontextmanager
    async def run(app: AppT) -> AsyncIterator[Any]:
        client = EnkryptClient(**client_settings)
        try:
            if client.deployment is None:
                raise ConfigurationError(
                    "No deployment: pass deployment=... to enkrypt_lifespan() "
                    "or set $ENKRYPT_DEPLOYMENT"
                )
            setattr(app.state, STATE_KEY, client)
            try:
                if lifespan is None:
                    yield None
                else:
                    async with lifespan(app) as state:
                        yield state
            finally:
                with contextlib.suppress(AttributeError):
                    delattr(app.state, STATE_KEY)
        finally:
            await client.aclose()

    return run


async def get_enkrypt_client(request: Request) -> EnkryptClient:
    """The application's client, as a FastAPI dependency.

    A coroutine function, so that FastAPI calls it on the event loop: a plain
    function dependency would be run in a worker thread on every request.

    Args:
        request: The request being handled (injected by FastAPI).

    Returns:
        The `EnkryptClient` that `enkrypt_lifespan` opened.

    Raises:
        RuntimeError: The application does not run `enkrypt_lifespan`.
    """
    client = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(client, EnkryptClient):
        raise RuntimeError(
            "No EnkryptClient on app.state: create the application with "
            "FastAPI(lifespan=enkrypt_lifespan(...))"
        )
    return client


#: The application's client in a handler's signature: ``client: EnkryptClientDep``.
EnkryptClientDep = Annotated[EnkryptClient, Depends(get_enkrypt_client)]


class EnkryptJSONResponse(Response):
    """A JSON response rendered by msgspec: any model, or plain JSON values.

    The library's models are msgspec structs, which FastAPI's
    ``jsonable_encoder`` cannot serialise: return this from the handler (a
    ``response_class=EnkryptJSONResponse`` on the route only sets the documented
    media type; FastAPI still encodes a bare return value itself).

    Examples:
        >>> async def complete(client: EnkryptClientDep) -> EnkryptJSONResponse:
        ...     answer = await client.completions.create(prompt="Hi")
        ...     return EnkryptJSONResponse(answer)
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content`` with ``msgspec.json.encode``."""
        return msgspec.json.encode(content)


def _status_of(exc: APIError) -> int:
    if isinstance(exc, APIStatusError) and 400 <= exc.status_code < 500:
        return exc.status_code
    if isinstance(exc, APITimeoutError):
        return 504
    return 502


def error_body(exc: APIError) -> dict[str, Any]:
    """The OpenAI-shaped JSON body for ``exc``.

    ``{"error": {"message", "type", "code", "param"}, "request_id": ...}``, with
    ``enkrypt_policy_detections`` (decoded) added for a guardrails block. For an
    upstream 4xx, ``type``, ``code`` and ``param`` are the upstream's own when its
    body had them.

    Args:
        exc: The library's error.

    Returns:
        A dict ready to be encoded as JSON.
    """
    status = _status_of(exc)
    if isinstance(exc, GuardrailsBlockedError):
        kind, code = "guardrails_error", "guardrails_blocked"
    elif isinstance(exc, RateLimitError):
        kind, code = "rate_limit_error", "rate_limit_exceeded"
    elif status == 504:
        kind, code = "server_error", "upstream_timeout"
    elif status == 502:
        kind, code = "server_error", "upstream_error"
    else:
        kind, code = "invalid_request_error", None
    error: dict[str, Any] = {"message": exc.message, "type": kind, "code": code}
    error["param"] = None
    if status < 500 and isinstance(exc, APIStatusError):
        error["type"] = exc.type or kind
        error["code"] = code if exc.code is None else exc.code
        error["param"] = exc.param
    elif isinstance(exc, StreamError) and isinstance(exc.code, str | int):
        error["code"] = exc.code
    body: dict[str, Any] = {"error": error, "request_id": exc.request_id}
    if isinstance(exc, GuardrailsBlockedError):
        body["enkrypt_policy_detections"] = msgspec.to_builtins(exc.detections)
    return body


def error_response(exc: APIError) -> Response:
    """The JSON response for ``exc`` (see `install_exception_handlers`).

    Args:
        exc: The library's error.

    Returns:
        An `EnkryptJSONResponse` with the status of the mapping, the upstream
        request id in ``x-request-id`` when known, and ``Retry-After`` for a 429.
    """
    headers: dict[str, str] = {}
    if exc.request_id is not None:
        headers["x-request-id"] = exc.request_id
    if isinstance(exc, RateLimitError):
        retry_after = exc.headers.get("Retry-After")
        if retry_after is not None:
            headers["Retry-After"] = retry_after
    return EnkryptJSONResponse(error_body(exc), _status_of(exc), headers)


async def _handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


def install_exception_handlers(app: Starlette) -> None:
    """Answer every upstream error (`APIError`) with an OpenAI-shaped JSON error.

    ========================================  ==================================
    raised                                    status
    ========================================  ==================================
    `GuardrailsBlockedError` (4xx)            its own, with the detections
    `RateLimitError`                          429, with ``Retry-After``
    other `APIStatusError` 4xx                its own
    `APIStatusError` >= 500 or 3xx            502
    `APITimeoutError`                         504
    `APIConnectionError`, `StreamError`,      502
    `DecodeError`, `APIError`
    ========================================  ==================================

    The upstream request id, when known, is in the body (``request_id``) and in
    the ``x-request-id`` header. Errors raised before any request (such as
    `ConfigurationError`) are left alone: they are the application's bugs.

    Args:
        app: The FastAPI (or Starlette) application.
    """
    app.add_exception_handler(APIError, _handle_api_error)


def _event(data: bytes) -> bytes:
    # A line feed in the data (JSON whitespace) starts another ``data:`` line, so
    # the receiver joins the same data back.
    return b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"


def _events(batch: list[bytes]) -> bytes:
    """The events of ``batch``, each as `_event` frames it."""
    if b"".join(batch).find(b"\n") >= 0:
        return b"".join([_event(data) for data in batch])
    return b"".join((b"data: ", b"\n\ndata: ".join(batch), b"\n\n"))


async def _relay(stream: Stream[Any], *, typed: bool) -> AsyncIterator[bytes]:
    """Each chunk as an SSE event, then ``[DONE]`` or an in-band error event."""
    try:
        if typed:
            async for chunk in stream:
                yield _event(msgspec.json.encode(chunk))
        else:
            # One write per read of the upstream, as the bytes arrived together.
            async for batch in stream.iter_data_batches():
                yield _events(batch)
    except APIError as exc:
        error = error_body(exc)["error"]
        del error["param"]
        yield _event(msgspec.json.encode({"error": error}))
        return
    finally:
        await stream.aclose()
    yield _DONE


class EventSourceResponse(StreamingResponse):
    r"""Relay a library stream to the browser as Server-Sent Events.

    Each chunk is sent as ``data: <json>\n\n``, then ``data: [DONE]\n\n``. By
    default ``<json>`` is the chunk's JSON exactly as the proxy sent it: checked
    to report no error, not parsed otherwise, so fields the library's models do
    not know reach the client too; the chunks that arrived in one read of the
    upstream go out in one write (`Stream.iter_data_batches`). With
    ``typed=True`` each chunk is decoded and re-encoded with msgspec: only the
    models' fields, in their canonical form, and a chunk that is not the
    expected JSON ends the stream with an error event.

    An error after the headers went out is sent in band as
    ``data: {"error": {"message", "type", "code"}}\n\n``, with no ``[DONE]``
    after it. The headers are ``text/event-stream``, ``Cache-Control: no-cache``,
    ``X-Accel-Buffering: no`` and the upstream ``x-request-id`` when known.

    The upstream stream is closed (its connection released) as soon as the
    response ends, fails, or is cancelled because the client disconnected.

    Args:
        stream: The stream from ``create(..., stream=True)``.
        typed: Relay the decoded chunks re-encoded, not the bytes received.
        status_code: The response status.
        headers: Extra headers.
        background: A task to run after the response.

    Examples:
        >>> @app.post("/stream")
        ... async def relay(prompt: str, client: EnkryptClientDep) -> Response:
        ...     stream = await client.completions.create(prompt=prompt, stream=True)
        ...     return EventSourceResponse(stream)
    """

    def __init__(
        self,
        stream: Stream[Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        *,
        typed: bool = False,
    ) -> None:
        merged = dict(_SSE_HEADERS)
        if stream.request_id is not None:
            merged["x-request-id"] = stream.request_id
        merged.update(headers or {})
        super().__init__(
            _relay(stream, typed=typed),
            status_code=status_code,
            headers=merged,
            media_type="text/event-stream",
            background=background,
        )
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response; close the upstream stream however it ends."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Idempotent, and it awaits nothing: safe in a cancelled task.
            await self.stream.aclose()

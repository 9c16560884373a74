"""The request pipeline every resource shares, and the client's lifecycle.

`BaseClient` owns the settings, the aiohttp session (opened on first use, closed by
`BaseClient.aclose` or with its event loop) and the pipeline: `BaseClient._request`
for a whole answer and `BaseClient._stream` for a stream. Both go through
`BaseClient._send`: a call's `RequestOptions` merged over the client's settings, the
JSON body encoded once, retries with backoff, error statuses read and typed, and the
one boundary where aiohttp's errors become ours.

This module imports no resource; the resources import it, and `EnkryptClient`
(``_client.py``) puts them on the client.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import enum
import functools
import inspect
import logging
import random
import ssl
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from functools import cached_property
from types import TracebackType
from typing import Final, TypedDict, TypeVar, cast

import aiohttp
import msgspec

from ._config import (
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_LIMIT,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    USE_CLIENT_DEFAULT,
    Settings,
    Timeout,
    UseClientDefault,
    check_headers,
    join_tags,
    refresh_cache_value,
    set_headers,
    setup_logging,
)
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    ClientClosedError,
    ConfigurationError,
    GuardrailsBlockedError,
    map_exceptions,
    redacted,
)
from ._hooks import EventHooks, HookRequest, HookResponse, check_event_hooks
from ._models._base import Answer
from ._raw_response import RAW_OPTION, RawResponse
from ._responses import (
    check_no_error,
    decode_answer,
    request_id_of,
    status_error,
)
from ._retry import RETRY_STATUSES, retry_delay
from ._transport import (
    TRANSPORT_ERRORS,
    aiohttp_timeout,
    keepalive_socket,
    never_processed,
    read_body,
    release,
)
from ._version import __version__

__all__ = ["BaseClient", "RequestOptions", "build_body"]

logger: Final = logging.getLogger("enkrypt_async")

USER_AGENT: Final = f"enkrypt-async/{__version__} aiohttp/{aiohttp.__version__}"

#: Error bodies are read for diagnosis only; anything longer is cut.
MAX_ERROR_BODY: Final = 1024 * 1024

_encoder: Final = msgspec.json.Encoder()

A = TypeVar("A", bound=Answer)
S = TypeVar("S")
T = TypeVar("T")
_C = TypeVar("_C", bound="BaseClient")


class RequestOptions(TypedDict, total=False):
    """Per-request overrides of the client's settings, taken by every ``create()``.

    A key left out, or set to `USE_CLIENT_DEFAULT`, keeps the client's setting;
    ``None`` switches an option off.

    Attributes:
        deployment: ``X-Enkrypt-Deployment`` for this request.
        tags: ``X-Enkrypt-Tags`` for this request (``None``: no tags).
        refresh_cache: ``X-Enkrypt-Refresh-Cache`` for this request (``None``: omit).
        timeout: Timeouts for this request, replacing the client's as a whole: a
            `Timeout`, a number (the read timeout), or ``None`` (no limits).
        max_retries: Retries for this request.
        extra_headers: Headers added to this request, replacing any of the same
            name.
    """

    deployment: str | UseClientDefault
    tags: str | Sequence[str] | UseClientDefault | None
    refresh_cache: bool | UseClientDefault | None
    timeout: float | Timeout | UseClientDefault | None
    max_retries: int | UseClientDefault
    extra_headers: Mapping[str, str] | None


_OPTION_NAMES: Final = frozenset(RequestOptions.__annotations__)


def build_body(
    params: Mapping[str, object], extra_body: Mapping[str, object] | None
) -> dict[str, object]:
    """A request's JSON body: the parameters given, then ``extra_body`` over them.

    Parameters left at `NOT_GIVEN` are left out; tuples and ranges become lists.
    """
    body = {
        name: list(value) if isinstance(value, (tuple, range)) else value
        for name, value in params.items()
        if value is not NOT_GIVEN
    }
    if extra_body:
        body.update(extra_body)
    return body


async def _close_with_loop(
    session: aiohttp.ClientSession,
) -> AsyncGenerator[None, None]:
    """Close ``session`` when its loop shuts down, or when closed (`aclose`)."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


async def _call(hook: Callable[[T], object], argument: T) -> None:
    """Call a hook; await what it returns when it is awaitable (an async hook)."""
    result = hook(argument)
    if inspect.isawaitable(result):
        await result


def _take_raw(options: RequestOptions) -> bool:
    """Whether the call asked for its raw response; the option is removed."""
    return bool(options and cast(dict[str, object], options).pop(RAW_OPTION, False))


def _raw(
    response: aiohttp.ClientResponse,
    started: float,
    request_id: str | None,
    parse: Callable[[], S],
    content: bytes | None = None,
) -> RawResponse[S]:
    return RawResponse(
        status_code=response.status,
        headers=response.headers,
        request_id=request_id,
        elapsed=datetime.timedelta(seconds=time.monotonic() - started),
        url=str(response.url),
        parse=parse,
        content=content,
    )


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def _check_retries(max_retries: object) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise ConfigurationError(f"max_retries must be an int, not {max_retries!r}")
    if max_retries < 0:
        raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
    return max_retries


def _encode(body: Mapping[str, object]) -> bytes:
    try:
        return _encoder.encode(body)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        # ValueError: a lone surrogate (UnicodeEncodeError); RecursionError: a
        # structure that contains itself.
        raise ConfigurationError(
            f"The request body cannot be encoded as JSON: {exc}"
        ) from exc


class BaseClient:
    """The settings, the session and the request pipeline of `EnkryptClient`.

    Not used directly: `EnkryptClient` adds the resources. Its arguments are
    documented there.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        deployment: str | None = None,
        base_url: str | None = None,
        tags: str | Sequence[str] | None = None,
        refresh_cache: bool | None = None,
        timeout: float | Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        pool_limit: int = DEFAULT_POOL_LIMIT,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        allow_insecure_http: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        event_hooks: EventHooks | None = None,
    ) -> None:
        self._settings = Settings.resolve(
            api_key=api_key,
            deployment=deployment,
            base_url=base_url,
            allow_insecure_http=allow_insecure_http,
        )
        setup_logging(self._settings.log_level)
        self._timeout = Timeout.coerce(timeout)
        self._aiohttp_timeout = aiohttp_timeout(self._timeout)
        self._max_retries = _check_retries(max_retries)
        if pool_limit < 0:
            raise ConfigurationError("pool_limit must be >= 0 (0: no limit)")
        if max_event_size <= 0 or max_response_size <= 0:
            raise ConfigurationError("max_event_size and max_response_size must be > 0")
        if ssl_context is not None and session is not None:
            raise ConfigurationError(
                "ssl_context applies to the client's own connections: configure "
                "the connector of the session you pass instead"
            )
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._pool_limit = pool_limit
        self.max_event_size = max_event_size
        self.max_response_size = max_response_size
        self._headers = self._build_headers(tags, refresh_cache, default_headers)
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_guard: AsyncGenerator[None, None] | None = None
        self._state = _State.UNOPENED
        self._rng = random.Random()
        self._request_hooks, self._response_hooks = check_event_hooks(event_hooks)
        # The client whose session a `with_options` variant uses; None: its own.
        self._parent: BaseClient | None = None

    def _build_headers(
        self,
        tags: str | Sequence[str] | None,
        refresh_cache: bool | None,
        default_headers: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "apikey": self._settings.api_key,
        }
        if self._settings.deployment is not None:
            headers["X-Enkrypt-Deployment"] = self._settings.deployment
        joined = join_tags(tags)
        if joined is not None:
            headers["X-Enkrypt-Tags"] = joined
        refresh = refresh_cache_value(refresh_cache)
        if refresh is not None:
            headers["X-Enkrypt-Refresh-Cache"] = refresh
        set_headers(headers, check_headers(default_headers, "default_headers"))
        return headers

    @property
    def base_url(self) -> str:
        """The proxy base URL requests go to (no trailing slash)."""
        return self._settings.base_url

    @property
    def deployment(self) -> str | None:
        """The default deployment name."""
        return self._settings.deployment

    @property
    def timeout(self) -> Timeout:
        """The default timeouts."""
        return self._timeout

    @property
    def max_retries(self) -> int:
        """The default number of retries."""
        return self._max_retries

    @property
    def is_closed(self) -> bool:
        """True once `aclose` was called (on this client or on its parent)."""
        parent = self._parent
        return self._state is _State.CLOSED or (parent is not None and parent.is_closed)

    def with_options(
        self: _C,
        *,
        deployment: str | UseClientDefault = USE_CLIENT_DEFAULT,
        tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT,
        refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT,
        timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        default_headers: Mapping[str, str] | None = None,
        event_hooks: EventHooks | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> _C:
        """A client with some settings changed, sharing this client's connections.

        The variant sends through this client's session and pool: it opens no
        connection of its own, and closing it (or leaving its ``async with``)
        leaves this client open; closing this client closes the variant too.
        Settings left at `USE_CLIENT_DEFAULT` are this client's; ``None``
        switches ``tags``, ``refresh_cache``, ``timeout`` or ``event_hooks`` off.

        Args:
            deployment: The deployment of the variant's requests.
            tags: ``X-Enkrypt-Tags``, replacing this client's.
            refresh_cache: ``X-Enkrypt-Refresh-Cache``, replacing this client's.
            timeout: A `Timeout`, a number (the read timeout), or None.
            max_retries: Retries of the variant's requests.
            default_headers: Headers added to this client's, replacing those
                of the same name.
            event_hooks: Event hooks replacing this client's.

        Returns:
            A client of the same class.

        Raises:
            ConfigurationError: A malformed setting.

        Examples:
            >>> fast = client.with_options(max_retries=0, timeout=5)
            >>> completion = await fast.completions.create(prompt="Hi")
        """
        headers = dict(self._headers)
        limits, retries = self._apply(
            {
                "deployment": deployment,
                "tags": tags,
                "refresh_cache": refresh_cache,
                "timeout": timeout,
                "max_retries": max_retries,
                "extra_headers": default_headers,
            },
            headers,
        )
        variant = copy.copy(self)
        # Resources are bound to the client that made them: the variant makes its
        # own on first use.
        for name in list(vars(variant)):
            if isinstance(
                inspect.getattr_static(type(self), name, None), cached_property
            ):
                del variant.__dict__[name]
        variant._headers = headers
        variant._aiohttp_timeout, variant._max_retries = limits, retries
        if not isinstance(timeout, UseClientDefault):
            variant._timeout = Timeout.coerce(timeout)
        if not isinstance(deployment, UseClientDefault):
            variant._settings = dataclasses.replace(
                self._settings, deployment=deployment
            )
        if not isinstance(event_hooks, UseClientDefault):
            hooks = check_event_hooks(event_hooks)
            variant._request_hooks, variant._response_hooks = hooks
        variant._parent = self._parent or self
        variant._session = variant._loop = variant._loop_guard = None
        variant._owns_session = False
        variant._state = _State.UNOPENED
        return variant

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base_url={self.base_url!r} "
            f"deployment={self.deployment!r} state={self._state.name.lower()}>"
        )

    async def __aenter__(self: _C) -> _C:
        if self._state is _State.CLOSED:
            raise ClientClosedError("Cannot reopen an EnkryptClient after aclose()")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and the session it created (idempotent).

        A caller-owned session is left open.
        """
        self._state = _State.CLOSED
        guard, self._loop_guard = self._loop_guard, None
        self._session = None
        if guard is not None:
            await guard.aclose()  # closes the session we created

    def __del__(self) -> None:
        session = getattr(self, "_session", None)
        if (
            getattr(self, "_owns_session", False)
            and session is not None
            and not session.closed
        ):
            warnings.warn(
                f"Unclosed {self!r}: use 'async with EnkryptClient()' or "
                "'await client.aclose()'",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    async def _open_session(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise ClientClosedError("This EnkryptClient was closed by aclose()")
        if self._parent is not None:
            shared = await self._parent._open_session()
            self._state = _State.OPENED
            return shared
        loop = asyncio.get_running_loop()
        session = self._session
        if self._loop is not None and self._loop is not loop:
            session = self._leave_loop(session)
        if session is None:
            # Created inside the running loop, on first use, and closed with that
            # loop: `asyncio.run` closes live async generators before the loop.
            connector = aiohttp.TCPConnector(
                limit=self._pool_limit, socket_factory=keepalive_socket, ssl=self._ssl
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._aiohttp_timeout,
                raise_for_status=False,
            )
            self._loop_guard = _close_with_loop(session)
            await self._loop_guard.asend(None)
        elif session.closed:
            raise ClientClosedError(
                "The aiohttp session given to EnkryptClient is closed"
            )
        self._loop = loop
        self._state = _State.OPENED
        return session

    def _leave_loop(
        self, session: aiohttp.ClientSession | None
    ) -> aiohttp.ClientSession | None:
        """The session to use from a new event loop: None to open a new one."""
        old = self._loop
        if self._owns_session and (
            session is None or session.closed or old is None or old.is_closed()
        ):
            # The loop the session belonged to is gone (a second asyncio.run):
            # its connections went with it, so start afresh in this loop.
            self._session = self._loop_guard = None
            return None
        raise ClientClosedError(
            "This EnkryptClient belongs to another event loop (a thread or an "
            "earlier asyncio.run); create one client per event loop, for example "
            "with 'async with EnkryptClient() as client:' inside the coroutine"
        )

    def _prepare(
        self, options: RequestOptions, *, stream: bool
    ) -> tuple[dict[str, str], aiohttp.ClientTimeout, int]:
        """The headers, the aiohttp timeouts and the retries of one request."""
        headers = dict(self._headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        limits, retries = self._aiohttp_timeout, self._max_retries
        if options:
            limits, retries = self._apply(options, headers)
        if "X-Enkrypt-Deployment" not in headers:
            raise ConfigurationError(
                "No deployment: pass deployment=... or set $ENKRYPT_DEPLOYMENT"
            )
        return headers, limits, retries

    def _apply(
        self, options: RequestOptions, headers: dict[str, str]
    ) -> tuple[aiohttp.ClientTimeout, int]:
        """Apply a call's options to its ``headers``; its timeouts and retries."""
        unknown = options.keys() - _OPTION_NAMES
        if unknown:
            raise ConfigurationError(
                f"Unknown request option {', '.join(map(repr, sorted(unknown)))}; "
                f"the options are {', '.join(sorted(_OPTION_NAMES))}"
            )
        deployment = options.get("deployment", USE_CLIENT_DEFAULT)
        if not isinstance(deployment, UseClientDefault):
            set_headers(
                headers,
                check_headers({"X-Enkrypt-Deployment": deployment}, "deployment"),
            )
        tags = options.get("tags", USE_CLIENT_DEFAULT)
        if not isinstance(tags, UseClientDefault):
            set_headers(headers, {"X-Enkrypt-Tags": join_tags(tags)})
        refresh_cache = options.get("refresh_cache", USE_CLIENT_DEFAULT)
        if not isinstance(refresh_cache, UseClientDefault):
            refresh = refresh_cache_value(refresh_cache)
            set_headers(headers, {"X-Enkrypt-Refresh-Cache": refresh})
        set_headers(
            headers, check_headers(options.get("extra_headers"), "extra_headers")
        )
        timeout = options.get("timeout", USE_CLIENT_DEFAULT)
        limits = (
            self._aiohttp_timeout
            if isinstance(timeout, UseClientDefault)
            else aiohttp_timeout(Timeout.coerce(timeout))
        )
        retries = options.get("max_retries", USE_CLIENT_DEFAULT)
        if isinstance(retries, UseClientDefault):
            return limits, self._max_retries
        return limits, _check_retries(retries)

    async def _request(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        decoder: msgspec.json.Decoder[A],
    ) -> A:
        """POST and decode the whole JSON answer into ``decoder``'s type.

        A call made through ``with_raw_response`` (`RAW_OPTION`) gets its
        `RawResponse` instead, which decodes on ``parse()``.
        """
        raw = _take_raw(options)
        started = time.monotonic() if raw else 0.0
        response = await self._send(path, body, options, stream=False)
        try:
            data = await read_body(response, self.max_response_size)
        finally:
            release(response)
        request_id = request_id_of(response.headers)
        if raw:
            # As a stream checks its chunks: an answer reporting an error raises
            # here, so `RawResponse.content` is never the body of an error.
            check_no_error(data, request_id, stream=False)
            return _raw(  # type: ignore[return-value]  # see raw_response_wrapper
                response,
                started,
                request_id,
                functools.partial(decode_answer, decoder, data, request_id),
                data,
            )
        return decode_answer(decoder, data, request_id)

    async def _stream(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        decoder: msgspec.json.Decoder[A],
        stream_class: Callable[..., S],
    ) -> S:
        """POST asking for Server-Sent Events; a ``stream_class`` of its chunks.

        A call made through ``with_raw_response`` gets its `RawResponse`, whose
        ``parse()`` returns the stream.
        """
        raw = _take_raw(options)
        started = time.monotonic() if raw else 0.0
        response = await self._send(path, body, options, stream=True)
        stream = stream_class(
            response,
            decoder,
            max_event_size=self.max_event_size,
            max_response_size=self.max_response_size,
        )
        if raw:
            request_id = request_id_of(response.headers)
            return _raw(  # type: ignore[return-value]  # see raw_response_wrapper
                response, started, request_id, lambda: stream
            )
        return stream

    async def _send(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        *,
        stream: bool,
    ) -> aiohttp.ClientResponse:
        """Send one request, retrying as configured, and return the response.

        The returned response has a success status and an unread body; the caller
        must release it. Error statuses are read, released and raised here.
        """
        headers, timeout, retries = self._prepare(options, stream=stream)
        payload = _encode(body)
        session = await self._open_session()
        url = self._settings.base_url + path
        attempt = 0
        while True:
            try:
                return await self._attempt(session, url, payload, headers, timeout)
            except (APIConnectionError, APIStatusError) as exc:
                delay = self._retry_delay(exc, attempt, retries)
                if delay is None:
                    raise
                attempt += 1
                logger.info(
                    "POST %s failed (%s); retry %d of %d in %.2fs",
                    path,
                    exc,
                    attempt,
                    retries,
                    delay,
                )
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        debug = logger.isEnabledFor(logging.DEBUG)
        hooked: HookRequest | None = None
        if self._request_hooks or self._response_hooks:
            hooked, headers = await self._run_request_hooks(url, payload, headers)
        if debug or hooked is not None:
            started = time.monotonic()
        if debug:
            logger.debug("POST %s headers=%s", url, redacted(headers))
        with map_exceptions(TRANSPORT_ERRORS):
            # raise_for_status=False even if a caller-owned session says True:
            # error statuses are read and typed here, never raised by aiohttp.
            # No redirect is followed: it would carry the key and the prompt to
            # wherever the answer points, and the proxy API has none.
            response = await session.post(
                url,
                data=payload,
                headers=headers,
                timeout=timeout,
                raise_for_status=False,
                allow_redirects=False,
            )
        if hooked is not None and self._response_hooks:
            await self._run_response_hooks(hooked, response, started)
        if response.status >= 300:
            raise await self._read_error(response)
        if debug:
            logger.debug(
                "POST %s -> %d in %.3fs (request id %s)",
                response.url.path,
                response.status,
                time.monotonic() - started,
                request_id_of(response.headers),
            )
        return response

    async def _run_request_hooks(
        self, url: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[HookRequest, dict[str, str]]:
        """Run the request hooks; the request they saw and the headers to send."""
        # A copy without the key: the caller's headers serve every attempt.
        key = {
            name: value for name, value in headers.items() if name.lower() == "apikey"
        }
        visible = {name: value for name, value in headers.items() if name not in key}
        request = HookRequest("POST", url, visible, payload)
        for hook in self._request_hooks:
            await _call(hook, request)
        checked = check_headers(request.headers, "a request hook's headers")
        # After the hooks, and in place of any key a hook set: they never see it.
        set_headers(checked, key)
        return request, checked

    async def _run_response_hooks(
        self, request: HookRequest, response: aiohttp.ClientResponse, started: float
    ) -> None:
        """Run the response hooks; a hook that fails releases the response."""
        seen = HookResponse(
            request,
            response.status,
            response.headers,
            request_id_of(response.headers),
            datetime.timedelta(seconds=time.monotonic() - started),
        )
        try:
            for hook in self._response_hooks:
                await _call(hook, seen)
        except BaseException:
            release(response)
            raise

    def _retry_delay(
        self, error: APIConnectionError | APIStatusError, attempt: int, retries: int
    ) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it."""
        if attempt >= retries:
            return None
        headers: Mapping[str, str] | None = None
        if isinstance(error, APIConnectionError):
            # Sending again is safe only if the upstream never got the request.
            if not never_processed(error.__cause__):
                return None
        elif isinstance(error, APIStatusError):
            # A guardrails block is a verdict on the prompt: asking again gives
            # the same answer, whatever status carried it.
            if error.status_code not in RETRY_STATUSES or isinstance(
                error, GuardrailsBlockedError
            ):
                return None
            headers = error.headers
        return retry_delay(attempt, headers, now=time.time(), jitter=self._rng.random())

    async def _read_error(self, response: aiohttp.ClientResponse) -> APIStatusError:
        try:
            raw = await read_body(response, MAX_ERROR_BODY, truncate=True)
        except APIConnectionError:
            raw = b""  # the status alone still says what happened
        finally:
            release(response)
        return status_error(response.status, response.reason, response.headers, raw)

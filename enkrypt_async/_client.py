"""`EnkryptClient`: the session's lifecycle and the one request pipeline.

Every endpoint goes through `EnkryptClient._post`: headers and timeouts merged with
per-request overrides, the JSON body sent buffered, retries with backoff, and the
single boundary where aiohttp errors become ours.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import ssl
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar

import aiohttp
import msgspec

from ._config import (
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_LIMIT,
    DEFAULT_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Settings,
    Timeout,
    UseClientDefault,
    check_headers,
    join_tags,
    refresh_cache_value,
    setup_logging,
)
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ClientClosedError,
    ConfigurationError,
    GuardrailsBlockedError,
    map_exceptions,
    redacted,
)
from ._responses import (
    decode_body,
    error_details,
    error_in,
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

if TYPE_CHECKING:
    from ._completions import Completions

__all__ = ["EnkryptClient", "RequestOptions"]

logger: Final = logging.getLogger("enkrypt_async")

USER_AGENT: Final = f"enkrypt-async/{__version__} aiohttp/{aiohttp.__version__}"

#: Error bodies are read for diagnosis only; anything longer is cut.
MAX_ERROR_BODY: Final = 1024 * 1024

_encoder: Final = msgspec.json.Encoder()

T = TypeVar("T")
S = TypeVar("S")


async def _close_with_loop(
    session: aiohttp.ClientSession,
) -> AsyncGenerator[None, None]:
    """Close ``session`` when its loop shuts down, or when closed (`aclose`)."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Per-request overrides of the client's settings (`USE_CLIENT_DEFAULT` keeps)."""

    deployment: str | UseClientDefault = USE_CLIENT_DEFAULT
    tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT
    refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT
    timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT
    max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT
    extra_headers: Mapping[str, str] | None = None

    @classmethod
    def build(
        cls,
        *,
        deployment: str | UseClientDefault,
        tags: str | Sequence[str] | UseClientDefault | None,
        refresh_cache: bool | UseClientDefault | None,
        timeout: float | Timeout | UseClientDefault | None,
        max_retries: int | UseClientDefault,
        extra_headers: Mapping[str, str] | None,
    ) -> RequestOptions:
        """The options of one call; the shared all-defaults instance when unset."""
        if (
            deployment is USE_CLIENT_DEFAULT
            and tags is USE_CLIENT_DEFAULT
            and refresh_cache is USE_CLIENT_DEFAULT
            and timeout is USE_CLIENT_DEFAULT
            and max_retries is USE_CLIENT_DEFAULT
            and extra_headers is None
        ):
            return _CLIENT_DEFAULTS  # the usual case; building one costs ~1 us
        return cls(
            deployment=deployment,
            tags=tags,
            refresh_cache=refresh_cache,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
        )


_CLIENT_DEFAULTS: Final = RequestOptions()


def _check_retries(max_retries: int) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise ConfigurationError(f"max_retries must be an int, not {max_retries!r}")
    if max_retries < 0:
        raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
    return max_retries


class EnkryptClient:
    """An asyncio client for Enkrypt AI's guardrailed AI proxy.

    One ``aiohttp.ClientSession`` is opened lazily on the first request and reused
    for every request (keep-alive pooling); it is closed by `aclose` only if the
    client created it. Use it as ``async with`` or call `aclose` yourself.

    Args:
        api_key: Enkrypt API key; default ``$ENKRYPT_API_KEY``.
        deployment: Deployment name for ``X-Enkrypt-Deployment``; default
            ``$ENKRYPT_DEPLOYMENT``.
        base_url: Proxy base URL; default ``$ENKRYPT_BASE_URL``, else
            ``https://api.enkryptai.com/ai-proxy``.
        tags: Tags for ``X-Enkrypt-Tags`` (a string or a sequence, comma-joined).
        refresh_cache: ``X-Enkrypt-Refresh-Cache``; None leaves the header out.
        timeout: A `Timeout`, a number (the read timeout), or None for no limits.
        max_retries: Retries after a connection error, timeout or retryable status.
        default_headers: Extra headers sent with every request.
        session: A caller-owned ``aiohttp.ClientSession``: used, never closed.
        pool_limit: Connections our own pool may open at once.
        max_event_size: Largest single streamed event accepted, in bytes.
        max_response_size: Largest whole (decompressed) response body accepted.
        allow_insecure_http: Allow a plain ``http://`` base URL to a host other
            than loopback (the API key would travel in clear text).
        ssl_context: The TLS settings of the client's own connections (a private
            CA, a client certificate); default: verify the server against the
            system's trusted CAs. Not with ``session`` (configure its connector).

    Raises:
        ConfigurationError: No API key, or a malformed setting.

    Examples:
        >>> async def main() -> None:
        ...     async with EnkryptClient(deployment="my-deployment") as client:
        ...         completion = await client.completions.create(prompt="Hi")
        ...         print(completion.choices[0].text)
    """

    completions: Completions

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
    ) -> None:
        from ._completions import Completions

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
        # `_request_headers` for the default options, by ``stream``.
        self._default_headers: dict[bool, dict[str, str]] = {}
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_guard: AsyncGenerator[None, None] | None = None
        self._state = _State.UNOPENED
        self._rng = random.Random()
        self.completions = Completions(self)

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
        headers.update(check_headers(default_headers, "default_headers"))
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
        """True once `aclose` was called."""
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        return (
            f"<EnkryptClient base_url={self.base_url!r} "
            f"deployment={self.deployment!r} state={self._state.name.lower()}>"
        )

    async def __aenter__(self) -> EnkryptClient:
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

    def resolve_timeout(self, options: RequestOptions) -> Timeout:
        """The timeouts in force for a request: its own, else the client's."""
        if isinstance(options.timeout, UseClientDefault):
            return self._timeout
        return Timeout.coerce(options.timeout)

    def _request_headers(
        self, options: RequestOptions, *, stream: bool
    ) -> dict[str, str]:
        """The headers of one request; built once per kind for default options.

        The returned dict is shared: it must not be changed.
        """
        default = options is _CLIENT_DEFAULTS
        if default:
            cached = self._default_headers.get(stream)
            if cached is not None:
                return cached
        headers = dict(self._headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        if not isinstance(options.deployment, UseClientDefault):
            headers["X-Enkrypt-Deployment"] = check_headers(
                {"X-Enkrypt-Deployment": options.deployment}, "deployment"
            )["X-Enkrypt-Deployment"]
        if not isinstance(options.tags, UseClientDefault):
            joined = join_tags(options.tags)
            headers.pop("X-Enkrypt-Tags", None)
            if joined is not None:
                headers["X-Enkrypt-Tags"] = joined
        if not isinstance(options.refresh_cache, UseClientDefault):
            refresh = refresh_cache_value(options.refresh_cache)
            headers.pop("X-Enkrypt-Refresh-Cache", None)
            if refresh is not None:
                headers["X-Enkrypt-Refresh-Cache"] = refresh
        headers.update(check_headers(options.extra_headers, "extra_headers"))
        if "X-Enkrypt-Deployment" not in headers:
            raise ConfigurationError(
                "No deployment: pass deployment=... or set $ENKRYPT_DEPLOYMENT"
            )
        if default:
            self._default_headers[stream] = headers
        return headers

    async def _post(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        *,
        stream: bool,
        timeout: Timeout,
    ) -> aiohttp.ClientResponse:
        """Send one request, retrying as configured, and return the response.

        The returned response has a success status and an unread body; the caller
        must release it. Error statuses are read, released and raised here.
        ``timeout`` is the request's, from `resolve_timeout`.
        """
        headers = self._request_headers(options, stream=stream)
        limits = (
            self._aiohttp_timeout
            if timeout is self._timeout
            else aiohttp_timeout(timeout)
        )
        retries = self._max_retries
        if not isinstance(options.max_retries, UseClientDefault):
            retries = _check_retries(options.max_retries)
        try:
            payload = _encoder.encode(body)
        except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
            # ValueError: a lone surrogate (UnicodeEncodeError); RecursionError:
            # a structure that contains itself.
            raise ConfigurationError(
                f"The request body cannot be encoded as JSON: {exc}"
            ) from exc
        session = await self._open_session()
        url = self._settings.base_url + path
        attempt = 0
        while True:
            try:
                return await self._attempt(session, url, payload, headers, limits)
            except (APIConnectionError, APIStatusError) as exc:
                delay = self._retry_delay(exc, attempt, retries)
                if delay is None:
                    raise
                attempt += 1
                logger.info(
                    "POST %s failed (%s); retry %d of %d in %.2fs",
                    path,
                    exc.message,
                    attempt,
                    retries,
                    delay,
                )
            await asyncio.sleep(delay)

    async def _request(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        decoder: msgspec.json.Decoder[T],
    ) -> T:
        """POST and decode the whole JSON answer into ``decoder``'s type."""
        timeout = self.resolve_timeout(options)
        response = await self._post(path, body, options, stream=False, timeout=timeout)
        try:
            data = await read_body(response, self.max_response_size)
        finally:
            release(response)
        request_id = request_id_of(response.headers)
        error = error_in(data)
        if error is not None:
            message, _, _ = error_details(error)
            raise APIError(
                f"The proxy answered {response.status} with an error: {message}",
                request_id=request_id,
            )
        return decode_body(decoder, data, request_id)

    async def _stream(
        self,
        path: str,
        body: Mapping[str, object],
        options: RequestOptions,
        decoder: msgspec.json.Decoder[T],
        stream_class: Callable[..., S],
    ) -> S:
        """POST asking for Server-Sent Events; a ``stream_class`` of its chunks."""
        timeout = self.resolve_timeout(options)
        response = await self._post(path, body, options, stream=True, timeout=timeout)
        return stream_class(
            response,
            decoder,
            max_event_size=self.max_event_size,
            max_response_size=self.max_response_size,
            read_timeout=timeout.read,
        )

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            started = time.monotonic()
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

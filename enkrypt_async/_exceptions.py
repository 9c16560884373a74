"""The errors raised by enkrypt_async.

Every exception the library raises on purpose derives from `EnkryptError`, so one
``except enkrypt_async.EnkryptError`` catches them all; misuse of an argument also
raises `ValueError` (through `ConfigurationError`, which is both)::

    EnkryptError
    ├── ConfigurationError       (also ValueError): missing key, bad header value
    ├── ClientClosedError        (also RuntimeError): the client was closed
    ├── StreamConsumedError      (also RuntimeError): a finished stream re-iterated
    └── APIError                 anything that went wrong talking to the proxy
        ├── APIStatusError       an HTTP error status: status_code, body, request_id
        │   ├── BadRequestError              400
        │   ├── AuthenticationError          401
        │   ├── PermissionDeniedError        403
        │   ├── NotFoundError                404
        │   ├── ConflictError                409
        │   ├── UnprocessableEntityError     422
        │   ├── RateLimitError               429
        │   ├── InternalServerError          >= 500
        │   └── GuardrailsBlockedError       error status + enkrypt_policy_detections
        ├── APIConnectionError   the request never got an answer
        │   └── APITimeoutError  (also TimeoutError)
        ├── StreamError          malformed, truncated, or an error inside the stream
        └── DecodeError          a body that is not the expected JSON

A `GuardrailsBlockedError` raised for a status is also an instance of that status's
own class, so ``except BadRequestError`` still catches a blocked prompt answered 400.

Transport errors (aiohttp) and decoding errors (msgspec) are turned into these at a
single boundary with `map_exceptions`; none escapes raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from ._models import PolicyDetections

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DecodeError",
    "EnkryptError",
    "GuardrailsBlockedError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "StreamConsumedError",
    "StreamError",
    "UnprocessableEntityError",
    "map_exceptions",
    "status_error_class",
]


class EnkryptError(Exception):
    """Base class of every error raised by enkrypt_async."""


class ConfigurationError(EnkryptError, ValueError):
    """The client or a request was configured wrongly (missing key, bad header...)."""


class ClientClosedError(EnkryptError, RuntimeError):
    """The client was used after `EnkryptClient.aclose`."""


class StreamConsumedError(EnkryptError, RuntimeError):
    """A stream that was consumed or closed was iterated again."""


class APIError(EnkryptError):
    """Something went wrong while talking to the proxy.

    Attributes:
        message: A human-readable description.
        request_id: The proxy's id for the request, when one is known.
    """

    message: str
    request_id: str | None

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class APIStatusError(APIError):
    """The proxy answered with an HTTP error status (>= 400).

    Attributes:
        status_code: The HTTP status.
        body: The decoded JSON body when it was JSON, else its text.
        headers: The response headers (case-insensitive mapping).
        request_id: From ``x-request-id`` / ``x-kong-request-id`` or the body.
    """

    status_code: int
    body: object
    headers: Mapping[str, str]

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object,
        headers: Mapping[str, str],
        request_id: str | None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status_code = status_code
        self.body = body
        self.headers = headers


class BadRequestError(APIStatusError):
    """HTTP 400: the request was malformed or refused."""


class AuthenticationError(APIStatusError):
    """HTTP 401: no API key, or a wrong one."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key may not use this deployment."""


class NotFoundError(APIStatusError):
    """HTTP 404: unknown path or deployment."""


class ConflictError(APIStatusError):
    """HTTP 409: conflicting request."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the body failed validation."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests; see ``headers["Retry-After"]``."""


class InternalServerError(APIStatusError):
    """HTTP 5xx: the proxy or the model behind it failed."""


class GuardrailsBlockedError(APIStatusError):
    """A guardrail blocked the request; the error body carried the detections.

    Raised for any error status whose body holds ``enkrypt_policy_detections``. The
    instance is also of the status's own class (for example `BadRequestError`).

    Attributes:
        detections: The decoded guardrail report that explains the block.
    """

    detections: PolicyDetections

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object,
        headers: Mapping[str, str],
        request_id: str | None,
        detections: PolicyDetections,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            body=body,
            headers=headers,
            request_id=request_id,
        )
        self.detections = detections

    @property
    def flagged(self) -> dict[str, list[str]]:
        """The detectors that fired, by side (``"input"`` / ``"output"``)."""
        return self.detections.flagged


class APIConnectionError(APIError):
    """The request could not be sent or its answer not received."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """A connect, read or total timeout expired."""


class StreamError(APIError):
    """A streamed answer was malformed, truncated, or reported an error.

    Attributes:
        code: The ``code`` of an error event sent inside the stream, if any.
        type: The ``type`` of an error event sent inside the stream, if any.
    """

    code: object
    type: str | None

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        code: object = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.code = code
        self.type = type


class DecodeError(APIError):
    """A response body was not the JSON this library expected.

    Attributes:
        excerpt: The first bytes of what came back, for diagnosis.
    """

    excerpt: str

    def __init__(
        self, message: str, *, excerpt: str = "", request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.excerpt = excerpt


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """Return the error class for an HTTP error status (the one table)."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)


class _BlockedMixin:
    """Marks the per-status subclasses of `GuardrailsBlockedError`."""

    status_class: ClassVar[type[APIStatusError]]


def _blocked_class(base: type[APIStatusError]) -> type[GuardrailsBlockedError]:
    name = "GuardrailsBlocked" + base.__name__.removesuffix("Error") + "Error"
    namespace: dict[str, Any] = {
        "__module__": "enkrypt_async",
        "__qualname__": name,
        "__doc__": f"A guardrails block answered with {base.__name__}'s status.",
        "status_class": base,
    }
    return type(name, (GuardrailsBlockedError, base, _BlockedMixin), namespace)


_BLOCKED_ERRORS: dict[type[APIStatusError], type[GuardrailsBlockedError]] = {
    base: _blocked_class(base)
    for base in (*_STATUS_ERRORS.values(), InternalServerError)
}


def blocked_error_class(status_code: int) -> type[GuardrailsBlockedError]:
    """Return the `GuardrailsBlockedError` subclass that also is the status's class."""
    return _BLOCKED_ERRORS.get(status_error_class(status_code), GuardrailsBlockedError)


class map_exceptions:
    """Re-raise the first matching exception of ``mapping`` as our own type.

    The first entry whose key matches wins, so list subclasses before their bases.
    The original exception is kept as ``__cause__``. A class rather than a
    ``contextlib.contextmanager`` generator: it runs on every request, and
    entering and leaving it costs ~0.3 us instead of ~1.3 us.

    Args:
        mapping: Foreign exception type to the `EnkryptError` subclass to raise.
        **kwargs: Extra keyword arguments for the raised error's constructor.
    """

    __slots__ = ("_kwargs", "_mapping")

    def __init__(
        self,
        mapping: Mapping[type[BaseException], type[EnkryptError]],
        **kwargs: Any,
    ) -> None:
        self._mapping = mapping
        self._kwargs = kwargs

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if not isinstance(exc, Exception):
            return False  # no exception, or cancellation and exits: untouched
        for from_exc, to_exc in self._mapping.items():
            if isinstance(exc, from_exc):
                message = str(exc) or type(exc).__name__
                raise to_exc(message, **self._kwargs) from exc
        return False

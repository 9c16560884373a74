"""The errors raised by enkrypt_async.

Every exception the library raises on purpose derives from `EnkryptError`, so one
``except enkrypt_async.EnkryptError`` catches them all; misuse of an argument also
raises `ValueError` (through `ConfigurationError`, which is both)::

    EnkryptError
    ├── ConfigurationError       (also ValueError): missing key, bad header value
    ├── ClientClosedError        (also RuntimeError): the client was closed
    ├── StreamConsumedError      (also RuntimeError): a finished stream re-iterated
    ├── StreamBusyError          (also RuntimeError): two tasks reading one stream
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
own class (`GuardrailsBlockedBadRequestError` for a 400, and so on), so
``except BadRequestError`` still catches a blocked prompt answered 400.

Every error pickles with its fields (``__cause__`` is not pickled), and a message
never holds a control character: server-controlled text is escaped, so it cannot
forge a log line.

Transport errors (aiohttp) and decoding errors (msgspec) are turned into these at a
single boundary with `map_exceptions`; none escapes raw.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

import msgspec
from multidict import CIMultiDict

if TYPE_CHECKING:
    from ._models.guardrails import PolicyDetections

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
    "GuardrailsBlockedAuthenticationError",
    "GuardrailsBlockedBadRequestError",
    "GuardrailsBlockedConflictError",
    "GuardrailsBlockedError",
    "GuardrailsBlockedInternalServerError",
    "GuardrailsBlockedNotFoundError",
    "GuardrailsBlockedPermissionDeniedError",
    "GuardrailsBlockedRateLimitError",
    "GuardrailsBlockedUnprocessableEntityError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "StreamBusyError",
    "StreamConsumedError",
    "StreamError",
    "UnprocessableEntityError",
    "map_exceptions",
    "raise_mapped",
    "redacted",
    "scrub",
    "status_error_class",
    "upstream_message",
]


def escape_controls(text: str) -> str:
    r"""``text`` with control characters escaped (``"\n"`` becomes ``"\\n"``).

    Server-controlled text (error bodies, reason phrases) reaches messages through
    this, so it cannot start a new log line or send terminal escape codes.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text
    )


#: Header names whose values never reach a log line or an error message.
SENSITIVE_HEADERS: Final = frozenset({"apikey", "authorization", "proxy-authorization"})


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` safe to log: secrets replaced by ``<redacted>``."""
    return {
        name: "<redacted>" if name.lower() in SENSITIVE_HEADERS else value
        for name, value in headers.items()
    }


def scrub(error: BaseException) -> BaseException:
    """Redact the request headers carried anywhere in ``error``'s chain; return it.

    aiohttp's response errors hold ``request_info`` (in an attribute and in
    ``args``) with every request header, the API key included, and show it in
    their ``repr``: an error we chain to one must not carry the key with it.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        info: Any = getattr(current, "request_info", None)
        headers = getattr(info, "headers", None)
        if isinstance(headers, Mapping):
            clean = info._replace(headers=redacted(headers))
            current.request_info = clean  # type: ignore[attr-defined]
            current.args = tuple(clean if arg is info else arg for arg in current.args)
        pending.extend(
            link for link in (current.__cause__, current.__context__) if link
        )
    return error


def _text(value: object) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def upstream_message(body: object) -> str | None:
    """The message an error body gives for people, whatever its shape.

    OpenAI's ``{"error": {"message": ...}}`` first (else the error's ``type``,
    ``code`` or the whole object), then ``{"error": "...", "message": ...}``,
    a top-level ``message`` or ``detail``, or the start of a text body.
    """
    if isinstance(body, str):
        return body[:200] or None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    detail: object = None
    if isinstance(error, dict):
        detail = error.get("message") or error.get("type") or error.get("code")
        detail = detail or error
    elif isinstance(error, str):
        detail = body.get("message") or error
    elif error is not None:
        detail = error
    if detail is None or detail == "":
        detail = body.get("message") or body.get("detail")
    return None if detail is None or detail == "" else _text(detail)


def _restore(
    cls: type[EnkryptError], args: tuple[object, ...], state: dict[str, object]
) -> EnkryptError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class EnkryptError(Exception):
    """Base class of every error raised by enkrypt_async."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors cannot be replayed from ``args``: rebuild
        # the instance and its fields directly.
        return (_restore, (type(self), self.args, self.__dict__))


class ConfigurationError(EnkryptError, ValueError):
    """The client or a request was configured wrongly (missing key, bad header...)."""


class ClientClosedError(EnkryptError, RuntimeError):
    """The client was used after `EnkryptClient.aclose`."""


class StreamConsumedError(EnkryptError, RuntimeError):
    """A stream that was consumed or closed was iterated again."""


class StreamBusyError(EnkryptError, RuntimeError):
    """A second task read a stream while another task was reading it."""


class APIError(EnkryptError):
    """Something went wrong while talking to the proxy.

    Attributes:
        message: A human-readable description.
        request_id: The proxy's id for the request, when one is known.
    """

    message: str
    request_id: str | None

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        message = escape_controls(message)
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class APIStatusError(APIError):
    """The proxy answered with an HTTP error status (>= 400).

    ``str(error)`` names the status and the reason; `message` is what the
    upstream said, fit to show a user.

    Attributes:
        message: The upstream's own message, read from the body whatever its
            shape (OpenAI's ``error.message``, a top-level ``message`` or
            ``detail``...); the whole description when the body has none.
        status_code: The HTTP status.
        body: The decoded JSON body when it was JSON, else its text.
        headers: The response headers (case-insensitive mapping).
        request_id: From ``x-request-id`` / ``x-kong-request-id`` or the body.
        code: ``error.code`` of an OpenAI-style error object in the body
            (``{"error": {"code": ...}}``), a string or a number, else None.
        type: ``error.type`` of that error object (``"invalid_request_error"``,
            ``"guardrails_error"``...), else None.
        param: ``error.param`` of that error object, the request parameter at
            fault, else None.
    """

    status_code: int
    body: object
    headers: Mapping[str, str]
    code: str | int | None
    type: str | None
    param: str | None

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
        self.message = escape_controls(upstream_message(body) or self.message)
        self.status_code = status_code
        self.body = body
        # A copy: aiohttp's read-only view of the response headers cannot be
        # pickled, and an error must cross process boundaries.
        self.headers = CIMultiDict(headers)
        error = body.get("error") if isinstance(body, dict) else None
        fields: Mapping[str, object] = error if isinstance(error, dict) else {}
        code, kind, param = fields.get("code"), fields.get("type"), fields.get("param")
        self.code = code if isinstance(code, str | int) else None
        self.type = kind if isinstance(kind, str) else None
        self.param = param if isinstance(param, str) else None


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


class GuardrailsBlockedBadRequestError(GuardrailsBlockedError, BadRequestError):
    """A guardrails block answered with HTTP 400."""


class GuardrailsBlockedAuthenticationError(GuardrailsBlockedError, AuthenticationError):
    """A guardrails block answered with HTTP 401."""


class GuardrailsBlockedPermissionDeniedError(
    GuardrailsBlockedError, PermissionDeniedError
):
    """A guardrails block answered with HTTP 403."""


class GuardrailsBlockedNotFoundError(GuardrailsBlockedError, NotFoundError):
    """A guardrails block answered with HTTP 404."""


class GuardrailsBlockedConflictError(GuardrailsBlockedError, ConflictError):
    """A guardrails block answered with HTTP 409."""


class GuardrailsBlockedUnprocessableEntityError(
    GuardrailsBlockedError, UnprocessableEntityError
):
    """A guardrails block answered with HTTP 422."""


class GuardrailsBlockedRateLimitError(GuardrailsBlockedError, RateLimitError):
    """A guardrails block answered with HTTP 429."""


class GuardrailsBlockedInternalServerError(GuardrailsBlockedError, InternalServerError):
    """A guardrails block answered with HTTP 5xx."""


_BLOCKED_ERRORS: dict[type[APIStatusError], type[GuardrailsBlockedError]] = {
    BadRequestError: GuardrailsBlockedBadRequestError,
    AuthenticationError: GuardrailsBlockedAuthenticationError,
    PermissionDeniedError: GuardrailsBlockedPermissionDeniedError,
    NotFoundError: GuardrailsBlockedNotFoundError,
    ConflictError: GuardrailsBlockedConflictError,
    UnprocessableEntityError: GuardrailsBlockedUnprocessableEntityError,
    RateLimitError: GuardrailsBlockedRateLimitError,
    InternalServerError: GuardrailsBlockedInternalServerError,
}


def blocked_error_class(status_code: int) -> type[GuardrailsBlockedError]:
    """Return the `GuardrailsBlockedError` subclass that also is the status's class."""
    return _BLOCKED_ERRORS.get(status_error_class(status_code), GuardrailsBlockedError)


def raise_mapped(
    error: Exception,
    mapping: Mapping[type[BaseException], type[EnkryptError]],
    **kwargs: Any,
) -> NoReturn:
    """Raise our error for a foreign ``error``, or ``error`` itself if none maps.

    The first entry of ``mapping`` whose key matches wins, so list subclasses
    before their bases. The original is kept as ``__cause__``, with the request
    headers it carries redacted (`scrub`).

    Args:
        error: The exception being handled.
        mapping: Foreign exception type to the `EnkryptError` subclass to raise.
        **kwargs: Extra keyword arguments for the raised error's constructor.
    """
    for from_exc, to_exc in mapping.items():
        if isinstance(error, from_exc):
            raise to_exc(str(error) or type(error).__name__, **kwargs) from scrub(error)
    raise error


@contextlib.contextmanager
def map_exceptions(
    mapping: Mapping[type[BaseException], type[EnkryptError]], **kwargs: Any
) -> Iterator[None]:
    """Re-raise the first matching exception of ``mapping`` as our own type.

    See `raise_mapped`; cancellation and exits pass untouched.

    Args:
        mapping: Foreign exception type to the `EnkryptError` subclass to raise.
        **kwargs: Extra keyword arguments for the raised error's constructor.
    """
    try:
        yield
    except Exception as exc:
        raise_mapped(exc, mapping, **kwargs)

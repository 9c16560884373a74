"""Reading what the proxy answered: success bodies, error bodies, request ids.

Pure functions over bytes and header mappings (no I/O, no aiohttp), shared by the
request pipeline and the streams, and fuzzed in tests/test_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

import msgspec

from ._exceptions import (
    APIError,
    APIStatusError,
    DecodeError,
    StreamError,
    blocked_error_class,
    status_error_class,
    upstream_message,
)
from ._models._base import Answer
from ._models.errors import error_envelope_decoder
from ._models.guardrails import PolicyDetections, convert_detections

__all__ = [
    "DECODE_ERRORS",
    "check_no_error",
    "decode_answer",
    "error_details",
    "error_in",
    "excerpt",
    "may_report_error",
    "reported_error",
    "request_id_of",
    "status_error",
]

#: Everything msgspec can raise on hostile bytes: malformed or wrongly shaped JSON
#: (ValidationError is a DecodeError), invalid UTF-8 inside a string, and nesting
#: deep enough to exhaust the recursion limit.
DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

A = TypeVar("A", bound=Answer)


def excerpt(data: str | bytes, size: int = 200) -> str:
    """The start of a body, as text, for error messages."""
    text = (
        data if isinstance(data, str) else data[: size * 4].decode("utf-8", "replace")
    )
    return text if len(text) <= size else text[:size] + "..."


def error_in(data: str | bytes) -> object:
    """The non-null top-level ``error`` member of a JSON object, else None.

    For a body that did not decode as its answer model: the error it reports may
    be why. (An answer that decodes carries the member itself, `Answer`.)
    """
    try:
        return error_envelope_decoder.decode(data)._error
    except DECODE_ERRORS:
        return None


def error_details(error: object) -> tuple[str, object, str | None]:
    """The best message, the ``code`` and the ``type`` an ``error`` value holds."""
    message = upstream_message({"error": error}) or "no message"
    if not isinstance(error, dict):
        return message, None, None
    kind = error.get("type")
    return message, error.get("code"), kind if isinstance(kind, str) else None


def reported_error(error: object, request_id: str | None, *, stream: bool) -> APIError:
    """The error to raise for an ``error`` member of a success answer."""
    message, code, kind = error_details(error)
    text = f"The proxy reported an error: {message}"
    if stream:
        return StreamError(text, request_id=request_id, code=code, type=kind)
    return APIError(text, request_id=request_id)


def decode_answer(
    decoder: msgspec.json.Decoder[A],
    data: str | bytes,
    request_id: str | None,
    *,
    stream: bool = False,
    chunk: bool = False,
) -> A:
    """Decode a success answer, raising the error it reports, whatever its shape.

    Args:
        decoder: The decoder of the answer's model.
        data: A whole body, or one stream event's data (``chunk``).
        request_id: For the errors raised.
        stream: The answer came to a stream request.
        chunk: ``data`` is one event of a stream.

    Raises:
        APIError: The answer has a top-level ``error`` (`StreamError` when
            ``stream``).
        DecodeError: A whole body is not the expected JSON.
        StreamError: A chunk is not the expected JSON.
    """
    try:
        answer = decoder.decode(data)
    except DECODE_ERRORS as exc:
        error = error_in(data)
        if error is not None:
            raise reported_error(error, request_id, stream=stream) from exc
        if chunk:
            raise StreamError(
                f"Malformed chunk in stream ({exc}): {excerpt(data)!r}",
                request_id=request_id,
            ) from exc
        raise DecodeError(
            f"Response is not the expected JSON ({exc}): {excerpt(data)!r}",
            excerpt=excerpt(data),
            request_id=request_id,
        ) from exc
    if answer._error is not None:
        raise reported_error(answer._error, request_id, stream=stream)
    return answer


#: In JSON with a top-level ``error`` member, the key is written as is, or with
#: some of its letters (U+0065, U+0072, U+006F) as ``\u00XX`` escapes: JSON's
#: only escape that can stand for a letter.
_ERROR_KEY: Final = b'"error"'
_ESCAPE: Final = b"\\u00"


def may_report_error(data: bytes) -> bool:
    r"""False when ``data`` cannot be JSON with a top-level ``error`` member.

    Two scans of the bytes, no parsing: True only when ``"error"`` or a
    ``\u00`` escape occurs anywhere; then `check_no_error` decodes it.
    """
    return data.find(_ERROR_KEY) >= 0 or data.find(_ESCAPE) >= 0


def check_no_error(data: bytes, request_id: str | None, *, stream: bool) -> bytes:
    """An answer or a stream event's data, checked to report no error.

    Not parsed otherwise: only data that `may_report_error` is decoded, for its
    top-level ``error``, and data that is not JSON is returned as it is.

    Raises:
        APIError: ``data`` is a JSON object with a non-null ``error``
            (`StreamError` when ``stream``).
    """
    if may_report_error(data):
        error = error_in(data)
        if error is not None:
            raise reported_error(error, request_id, stream=stream)
    return data


def request_id_of(headers: Mapping[str, str], body: object = None) -> str | None:
    """The proxy's id for a request, from the headers or an error body."""
    found = headers.get("x-request-id") or headers.get("x-kong-request-id")
    if found is None and isinstance(body, dict):
        value = body.get("request_id")
        if isinstance(value, str):
            found = value
    return found


def _error_message(
    status: int, reason: str | None, headers: Mapping[str, str], body: object
) -> str:
    if 300 <= status < 400:
        text: str | None = (
            f"redirect to {headers.get('Location', '(no Location)')!r} not followed: "
            "the proxy API has no redirects, so base_url is probably wrong"
        )
    else:
        text = upstream_message(body)
    return f"HTTP {status} {reason or ''}".rstrip() + (f": {text}" if text else "")


def status_error(
    status: int, reason: str | None, headers: Mapping[str, str], raw: bytes
) -> APIStatusError:
    """Build the typed error for an HTTP error status (the one table)."""
    try:
        body: object = msgspec.json.decode(raw)
    except DECODE_ERRORS:
        body = raw.decode("utf-8", "replace")
    request_id = request_id_of(headers, body)
    message = _error_message(status, reason, headers, body)
    if isinstance(body, dict) and isinstance(
        body.get("enkrypt_policy_detections"), dict
    ):
        try:
            detections = convert_detections(body["enkrypt_policy_detections"])
        except msgspec.ValidationError:
            pass  # a shape we cannot read: still an error of the status's class
        else:
            blocked = f" (guardrails: {', '.join(_flagged_names(detections))})"
            return blocked_error_class(status)(
                message + blocked,
                status_code=status,
                body=body,
                headers=headers,
                request_id=request_id,
                detections=detections,
            )
    return status_error_class(status)(
        message, status_code=status, body=body, headers=headers, request_id=request_id
    )


def _flagged_names(detections: PolicyDetections) -> list[str]:
    flagged = detections.flagged
    names = [f"{side}:{name}" for side, found in flagged.items() for name in found]
    return names or ["none flagged"]

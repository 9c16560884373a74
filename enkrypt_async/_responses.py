"""Reading what the proxy answered: success bodies, error bodies, request ids.

Pure functions over bytes and header mappings (no I/O, no aiohttp), shared by the
request pipeline and the streams, and fuzzed in tests/test_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

import msgspec

from ._exceptions import (
    APIStatusError,
    DecodeError,
    blocked_error_class,
    status_error_class,
)
from ._models import (
    ErrorInfo,
    PolicyDetections,
    convert_detections,
    error_envelope_decoder,
)

__all__ = [
    "DECODE_ERRORS",
    "decode_body",
    "error_in",
    "excerpt",
    "request_id_of",
    "status_error",
]

#: Everything msgspec can raise on hostile bytes: malformed or wrongly shaped JSON
#: (ValidationError is a DecodeError), invalid UTF-8 inside a string, and nesting
#: deep enough to exhaust the recursion limit.
DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

T = TypeVar("T")


def excerpt(data: str | bytes, size: int = 200) -> str:
    """The start of a body, as text, for error messages."""
    text = (
        data if isinstance(data, str) else data[: size * 4].decode("utf-8", "replace")
    )
    return text if len(text) <= size else text[:size] + "..."


def error_in(data: str | bytes) -> ErrorInfo | str | None:
    """The top-level ``error`` a 200 body or a stream event carries, if any."""
    # Cheap pre-filter: '"error"' escaped inside a JSON string cannot match.
    if ('"error"' if isinstance(data, str) else b'"error"') not in data:  # type: ignore[operator]
        return None
    try:
        return error_envelope_decoder.decode(data).error
    except DECODE_ERRORS:
        return None  # not an error envelope; the body's own decoder will judge


def decode_body(
    decoder: msgspec.json.Decoder[T], data: str | bytes, request_id: str | None
) -> T:
    """Decode a success body, turning msgspec's errors into `DecodeError`."""
    try:
        return decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise DecodeError(
            f"Response is not the expected JSON ({exc}): {excerpt(data)!r}",
            excerpt=excerpt(data),
            request_id=request_id,
        ) from exc


def request_id_of(headers: Mapping[str, str], body: object = None) -> str | None:
    """The proxy's id for a request, from the headers or an error body."""
    found = headers.get("x-request-id") or headers.get("x-kong-request-id")
    if found is None and isinstance(body, dict):
        value = body.get("request_id")
        if isinstance(value, str):
            found = value
    return found


def _error_message(status: int, reason: str | None, body: object) -> str:
    detail: object = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = error.get("message")
        elif isinstance(error, str):
            detail = body.get("message") or error
        if detail is None:
            detail = body.get("message") or body.get("detail")
    elif isinstance(body, str):
        detail = body[:200]
    text = detail if isinstance(detail, str) else msgspec.json.encode(detail).decode()
    return f"HTTP {status} {reason or ''}".rstrip() + (f": {text}" if detail else "")


def status_error(
    status: int, reason: str | None, headers: Mapping[str, str], raw: bytes
) -> APIStatusError:
    """Build the typed error for an HTTP error status (the one table)."""
    try:
        body: object = msgspec.json.decode(raw)
    except DECODE_ERRORS:
        body = raw.decode("utf-8", "replace")
    request_id = request_id_of(headers, body)
    message = _error_message(status, reason, body)
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

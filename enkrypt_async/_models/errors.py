"""Errors the proxy or the provider report in a body or inside a stream."""

from __future__ import annotations

import msgspec

from ._base import Answer, Model

__all__ = ["ErrorInfo", "error_envelope_decoder"]


class ErrorInfo(Model, kw_only=True, frozen=True):
    """An error reported by the proxy or the provider (OpenAI's error object).

    Attributes:
        message: What went wrong.
        type: The error's kind (``"invalid_request_error"``...).
        code: A code, string or number.
        param: The request parameter at fault.
    """

    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class _ErrorEnvelope(Answer, kw_only=True, frozen=True):
    """Any JSON object, read for its top-level ``error`` member only."""


error_envelope_decoder: msgspec.json.Decoder[_ErrorEnvelope] = msgspec.json.Decoder(
    _ErrorEnvelope, strict=False
)
"""Reads the top-level ``error`` of a body or a stream event, whatever its shape."""

"""The base of every model: keyword-only, immutable, lenient when decoding.

Decoders built from these models are lax (``strict=False``): where the declared type
is not ``str``, strings holding numbers decode to ``int``/``float`` (the proxy sends
``"0.998087"``; ``"nan"`` and ``"inf"`` pass too), integral floats up to ``2**53``
to ``int``, ``"true"``/``"false"``/``"1"``/``"0"``/``1``/``0`` to ``bool``, and the
string ``"null"`` to ``None``. Every field is optional and unknown keys are ignored
at every level, so one shape serves a whole answer and each streamed chunk.

Integers stay exact up to CPython's 4300-digit limit (beyond, a
`msgspec.ValidationError`), so a ``seed`` above ``2**63`` survives.
"""

from __future__ import annotations

import msgspec

__all__ = ["Answer", "Model"]


class Model(
    msgspec.Struct,
    kw_only=True,
    frozen=True,
    omit_defaults=True,
    repr_omit_defaults=True,
):
    """Keyword-only, immutable, compact when re-encoded and when shown.

    msgspec passes these options down to subclasses, mypy does not: subclasses
    repeat ``kw_only`` and ``frozen`` for the type checker.
    """


class Answer(Model, kw_only=True, frozen=True):
    """A top-level answer: a whole one, or one streamed chunk.

    It also reads the answer's top-level ``error`` member, whatever its shape and
    however its key is spelled, in the same pass as everything else, so that an
    error sent with a success status is never taken for an empty answer: the
    pipeline and the streams raise it. Never set on an answer you receive.
    """

    _error: object = msgspec.field(default=None, name="error")

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

from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        """This model as plain JSON values: dicts, lists, strings, numbers, None.

        Fields at their default (``None``, an empty list) are left out, as
        `to_json` leaves them out; ``msgspec.convert(data, type(model))`` gives
        the model back.

        Examples:
            >>> Usage(prompt_tokens=3, total_tokens=5).to_dict()
            {'prompt_tokens': 3, 'total_tokens': 5}
        """
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    def to_json(self, *, indent: int = 0) -> str:
        """This model as JSON text, encoded by msgspec.

        Fields at their default are left out. The text decodes back to an
        equal model: ``msgspec.json.decode(text, type=type(model))``.

        Args:
            indent: Spaces per level for a pretty-printed text; 0 for compact.

        Examples:
            >>> Usage(prompt_tokens=3, total_tokens=5).to_json()
            '{"prompt_tokens":3,"total_tokens":5}'
        """
        data = msgspec.json.encode(self)
        if indent:
            data = msgspec.json.format(data, indent=indent)
        return data.decode()


class Answer(Model, kw_only=True, frozen=True):
    """A top-level answer: a whole one, or one streamed chunk.

    It also reads the answer's top-level ``error`` member, whatever its shape and
    however its key is spelled, in the same pass as everything else, so that an
    error sent with a success status is never taken for an empty answer: the
    pipeline and the streams raise it. Never set on an answer you receive.
    """

    _error: object = msgspec.field(default=None, name="error")

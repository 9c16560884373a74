"""Token counts, shared by every kind of answer."""

from __future__ import annotations

from ._base import Model

__all__ = ["Usage"]


class Usage(Model, kw_only=True, frozen=True):
    """Token counts.

    Attributes:
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens generated.
        total_tokens: Both.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

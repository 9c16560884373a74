"""Token counts, shared by every kind of answer."""

from __future__ import annotations

from ._base import Model

__all__ = ["CompletionTokensDetails", "PromptTokensDetails", "Usage"]


class PromptTokensDetails(Model, kw_only=True, frozen=True):
    """What the prompt's tokens were.

    Attributes:
        cached_tokens: Tokens read from the provider's prompt cache.
        audio_tokens: Tokens of audio input.
    """

    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(Model, kw_only=True, frozen=True):
    """What the generated tokens were.

    Attributes:
        reasoning_tokens: Tokens spent reasoning, not shown in the answer.
        audio_tokens: Tokens of audio output.
        accepted_prediction_tokens: Predicted tokens that appeared in the answer.
        rejected_prediction_tokens: Predicted tokens that did not.
    """

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(Model, kw_only=True, frozen=True):
    """Token counts.

    Attributes:
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens generated.
        total_tokens: Both.
        prompt_tokens_details: A breakdown of the prompt's tokens, where sent.
        completion_tokens_details: A breakdown of the generated tokens, where sent.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

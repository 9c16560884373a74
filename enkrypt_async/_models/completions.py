"""The answer of ``POST /completions``: a whole completion or one streamed chunk."""

from __future__ import annotations

import builtins

import msgspec

from ._base import Answer, Model
from .guardrails import PolicyDetections
from .usage import Usage

__all__ = [
    "Completion",
    "CompletionChoice",
    "Logprobs",
    "completion_decoder",
]


class Logprobs(Model, kw_only=True, frozen=True):
    """OpenAI's legacy log probabilities of a choice.

    Attributes:
        tokens: The tokens.
        token_logprobs: The log probability of each token (``None`` for the first
            token of an echoed prompt).
        top_logprobs: The most likely alternatives at each position.
        text_offset: Character offset of each token in the text.
    """

    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(Model, kw_only=True, frozen=True, omit_defaults=False):
    """One generated completion, or a piece of it in a streamed chunk.

    Re-encoded in full (``index``, ``finish_reason: null``...), as OpenAI-style
    consumers of a chunk expect.

    Attributes:
        text: The generated text.
        index: The choice's position (chunks of several choices interleave).
        finish_reason: Why generation stopped (``"stop"``, ``"length"``, ``"eos"``,
            ``"content_filter"``...); ``None`` until the last chunk.
        logprobs: Log probabilities, when asked for.
        seed: The seed used, exact even above ``2**64``.
    """

    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    logprobs: Logprobs | None = None
    seed: int | None = None


class Completion(Answer, kw_only=True, frozen=True):
    """A completion, or one streamed chunk of it (the shapes are the same).

    Attributes:
        id: The completion's id.
        object: ``"text_completion"`` (OpenAI) or ``"text.completion"`` (Together).
        created: Unix time of creation, in seconds.
        model: The model that answered.
        prompt: The prompt as the provider echoed it, if at all (Together sends
            ``[]``): a string or a list of arbitrary JSON values.
        choices: The completions.
        usage: Token counts; often absent from streamed chunks.
        system_fingerprint: The backend configuration, where sent.
        enkrypt_policy_detections: What Enkrypt's guardrails found.
    """

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    # `builtins.` because the field `object` shadows the builtin in this class.
    prompt: str | list[builtins.object] | None = None
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


completion_decoder: msgspec.json.Decoder[Completion] = msgspec.json.Decoder(
    Completion, strict=False
)
"""Decodes a response body or one stream event's data into a `Completion`."""

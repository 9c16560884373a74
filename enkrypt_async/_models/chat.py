"""The answer of ``POST /chat/completions``: a whole chat completion or one chunk.

A whole answer carries each choice's ``message``; a streamed chunk carries each
choice's ``delta``, the part of the message that is new in it. Tool calls arrive as
fragments keyed by ``index`` in the chunks, whole in the answer.
"""

from __future__ import annotations

import builtins

import msgspec

from ._base import Answer, Model
from .guardrails import PolicyDetections
from .usage import Usage

__all__ = [
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionChunkChoice",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatLogprobs",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "TokenLogprob",
    "ToolCallFunction",
    "TopLogprob",
    "chat_completion_chunk_decoder",
    "chat_completion_decoder",
]


class TopLogprob(Model, kw_only=True, frozen=True):
    """One of the most likely tokens at a position.

    Attributes:
        token: The token.
        logprob: Its log probability.
        bytes: Its UTF-8 bytes, where sent.
    """

    token: str = ""
    logprob: float | None = None
    bytes: list[int] | None = None


class TokenLogprob(Model, kw_only=True, frozen=True):
    """A generated token with its log probability.

    Attributes:
        token: The token.
        logprob: Its log probability.
        bytes: Its UTF-8 bytes, where sent.
        top_logprobs: The most likely tokens at this position.
    """

    token: str = ""
    logprob: float | None = None
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChatLogprobs(Model, kw_only=True, frozen=True):
    """Log probabilities of a choice's content and refusal tokens.

    Attributes:
        content: One entry per content token.
        refusal: One entry per refusal token.
    """

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ToolCallFunction(Model, kw_only=True, frozen=True):
    """The function a tool call invokes.

    Attributes:
        name: The function's name.
        arguments: Its arguments, a JSON object as text (the model wrote it: it
            may not parse).
    """

    name: str = ""
    arguments: str = ""


class ChatCompletionMessageToolCall(Model, kw_only=True, frozen=True):
    """A tool call made by the model.

    Attributes:
        id: The call's id, quoted by the ``tool`` message that answers it.
        type: ``"function"``.
        function: The function and its arguments.
    """

    id: str = ""
    type: str = "function"
    function: ToolCallFunction = msgspec.field(default_factory=ToolCallFunction)


class ChatCompletionMessage(Model, kw_only=True, frozen=True):
    """The message a choice of a whole answer holds.

    Attributes:
        role: ``"assistant"``.
        content: The text, or None (a tool call, a refusal).
        refusal: The model's refusal, when it refused.
        tool_calls: The tools the model calls, in order.
        annotations: Annotations of the content (URL citations...), as sent.
    """

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    annotations: list[builtins.object] | None = None


class ChatCompletionChoice(Model, kw_only=True, frozen=True):
    """One generated message.

    Attributes:
        index: The choice's position.
        message: The message.
        finish_reason: Why generation stopped (``"stop"``, ``"length"``,
            ``"tool_calls"``, ``"content_filter"``...).
        logprobs: Log probabilities, when asked for.
    """

    index: int = 0
    message: ChatCompletionMessage = msgspec.field(
        default_factory=ChatCompletionMessage
    )
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletion(Answer, kw_only=True, frozen=True):
    """A whole chat completion.

    Attributes:
        id: The completion's id.
        object: ``"chat.completion"``.
        created: Unix time of creation, in seconds.
        model: The model that answered.
        choices: The generated messages.
        usage: Token counts.
        system_fingerprint: The backend configuration, where sent.
        service_tier: The provider's service tier, where sent.
        enkrypt_policy_detections: What Enkrypt's guardrails found.
    """

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[ChatCompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


class ChoiceDeltaToolCallFunction(Model, kw_only=True, frozen=True):
    """A fragment of a tool call's function.

    Attributes:
        name: The function's name (in the first fragment).
        arguments: The next piece of the arguments' text.
    """

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(Model, kw_only=True, frozen=True):
    """A fragment of a tool call; the fragments of one call share ``index``.

    Attributes:
        index: Which tool call of the choice this fragment belongs to.
        id: The call's id (in the first fragment).
        type: ``"function"`` (in the first fragment).
        function: The fragment of the function.
    """

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(Model, kw_only=True, frozen=True):
    """What a chunk adds to a choice's message.

    Attributes:
        role: The role, in the first chunk of a choice.
        content: The next piece of the text.
        refusal: The next piece of a refusal.
        tool_calls: Fragments of tool calls.
    """

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChatCompletionChunkChoice(Model, kw_only=True, frozen=True):
    """One choice's part of a chunk.

    Attributes:
        index: The choice's position (chunks of several choices interleave).
        delta: What this chunk adds to the choice's message.
        finish_reason: Why generation stopped; ``None`` until the last chunk.
        logprobs: Log probabilities of this chunk's tokens, when asked for.
    """

    index: int = 0
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(Answer, kw_only=True, frozen=True):
    """One streamed chunk of a chat completion.

    Attributes:
        id: The completion's id (the same in every chunk).
        object: ``"chat.completion.chunk"``.
        created: Unix time of creation, in seconds.
        model: The model that answers.
        choices: What this chunk adds, per choice; empty in a usage chunk.
        usage: Token counts, in the last chunk when asked for
            (``stream_options={"include_usage": True}``).
        system_fingerprint: The backend configuration, where sent.
        service_tier: The provider's service tier, where sent.
        enkrypt_policy_detections: What Enkrypt's guardrails found, in the chunk
            that carries them.
    """

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[ChatCompletionChunkChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


chat_completion_decoder: msgspec.json.Decoder[ChatCompletion] = msgspec.json.Decoder(
    ChatCompletion, strict=False
)
"""Decodes a whole chat completion."""

chat_completion_chunk_decoder: msgspec.json.Decoder[ChatCompletionChunk] = (
    msgspec.json.Decoder(ChatCompletionChunk, strict=False)
)
"""Decodes one stream event's data into a `ChatCompletionChunk`."""

"""The shapes of request parameters: TypedDicts, so plain dicts type-check.

Written as OpenAI's, so that code written for the ``openai`` package ports
unchanged: ``messages=[{"role": "user", "content": "hi"}]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, TypeAlias, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Required

__all__ = [
    "ChatCompletionAssistantMessageParam",
    "ChatCompletionContentPartImageParam",
    "ChatCompletionContentPartParam",
    "ChatCompletionContentPartTextParam",
    "ChatCompletionDeveloperMessageParam",
    "ChatCompletionMessageParam",
    "ChatCompletionMessageToolCallParam",
    "ChatCompletionNamedToolChoiceParam",
    "ChatCompletionSystemMessageParam",
    "ChatCompletionToolChoiceOptionParam",
    "ChatCompletionToolMessageParam",
    "ChatCompletionToolParam",
    "ChatCompletionUserMessageParam",
    "FunctionCallParam",
    "FunctionDefinition",
    "ImageURL",
    "StreamOptions",
]


class StreamOptions(TypedDict, total=False):
    """``stream_options`` of a streamed request.

    Attributes:
        include_usage: Send a last chunk with ``choices: []`` and the whole
            ``usage`` just before ``[DONE]``.
    """

    include_usage: bool


class ChatCompletionContentPartTextParam(TypedDict):
    """A text part of a message: ``{"type": "text", "text": "..."}``."""

    type: Literal["text"]
    text: str


class ImageURL(TypedDict, total=False):
    """An image, by URL or as a ``data:`` URL.

    Attributes:
        url: The image's URL.
        detail: How closely the model looks at it.
    """

    url: Required[str]
    detail: Literal["auto", "low", "high"]


class ChatCompletionContentPartImageParam(TypedDict):
    """An image part of a user message: ``{"type": "image_url", ...}``."""

    type: Literal["image_url"]
    image_url: ImageURL


ChatCompletionContentPartParam: TypeAlias = (
    ChatCompletionContentPartTextParam | ChatCompletionContentPartImageParam
)
"""A part of a user message's content."""


class ChatCompletionSystemMessageParam(TypedDict, total=False):
    """Instructions for the model: ``{"role": "system", "content": "..."}``."""

    role: Required[Literal["system"]]
    content: Required[str | Iterable[ChatCompletionContentPartTextParam]]
    name: str


class ChatCompletionDeveloperMessageParam(TypedDict, total=False):
    """Instructions for reasoning models: ``{"role": "developer", ...}``."""

    role: Required[Literal["developer"]]
    content: Required[str | Iterable[ChatCompletionContentPartTextParam]]
    name: str


class ChatCompletionUserMessageParam(TypedDict, total=False):
    """What the user says: text, or a list of text and image parts."""

    role: Required[Literal["user"]]
    content: Required[str | Iterable[ChatCompletionContentPartParam]]
    name: str


class FunctionCallParam(TypedDict):
    """The function of a tool call the model made earlier."""

    name: str
    arguments: str


class ChatCompletionMessageToolCallParam(TypedDict):
    """A tool call the model made earlier, sent back in its assistant message."""

    id: str
    type: Literal["function"]
    function: FunctionCallParam


class ChatCompletionAssistantMessageParam(TypedDict, total=False):
    """An earlier answer of the model, with the tool calls it made."""

    role: Required[Literal["assistant"]]
    content: str | Iterable[ChatCompletionContentPartTextParam] | None
    refusal: str | None
    name: str
    tool_calls: Iterable[ChatCompletionMessageToolCallParam]


class ChatCompletionToolMessageParam(TypedDict):
    """A tool's result, answering the call ``tool_call_id``."""

    role: Literal["tool"]
    content: str | Iterable[ChatCompletionContentPartTextParam]
    tool_call_id: str


ChatCompletionMessageParam: TypeAlias = (
    ChatCompletionDeveloperMessageParam
    | ChatCompletionSystemMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam
    | ChatCompletionToolMessageParam
)
"""One message of a conversation, by role."""


class FunctionDefinition(TypedDict, total=False):
    """A function the model may call.

    Attributes:
        name: The function's name.
        description: What it does, for the model.
        parameters: A JSON Schema of its arguments.
        strict: Ask the model to follow the schema exactly.
    """

    name: Required[str]
    description: str
    parameters: Mapping[str, object]
    strict: bool | None


class ChatCompletionToolParam(TypedDict):
    """A tool: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"]
    function: FunctionDefinition


class _NamedFunction(TypedDict):
    name: str


class ChatCompletionNamedToolChoiceParam(TypedDict):
    """Make the model call this function."""

    type: Literal["function"]
    function: _NamedFunction


ChatCompletionToolChoiceOptionParam: TypeAlias = (
    Literal["none", "auto", "required"] | ChatCompletionNamedToolChoiceParam
)
"""Whether and which tool the model calls."""

"""Chat completion requests: OpenAI's validation, and the job they describe.

Refused bodies get OpenAI's 400 `error` objects (messages, params and codes).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._generate import (
    InvalidRequestError,
    _is_int,
    _is_number,
    _strs,
)

__all__ = ["ROLES", "ChatJob", "content_text", "parse_chat_request"]

#: The message roles the endpoint accepts.
ROLES: Final = ("system", "developer", "user", "assistant", "tool")
_NEEDS_CONTENT: Final = frozenset({"system", "developer", "user", "tool"})
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_CHOICES: Final = ("none", "auto", "required")


def content_text(content: object) -> str:
    """Return the text of a message's `content`.

    A string is its own text; of a list of content parts, the `text` of the
    `"text"` parts joined by newlines (images and other parts carry none).
    """
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(
        str(part["text"])
        for part in parts
        if isinstance(part, dict) and part.get("type") == "text" and "text" in part
    )


@dataclass
class ChatJob:
    """A validated chat completion request, ready to answer.

    Attributes:
        messages: The conversation, as sent.
        model: Model named in the answer.
        prompt: The conversation, one `role: text` line per message: it seeds
            the reply, and its words are the prompt's tokens.
        user_text: Text of the last user message ("" if none): what input
            guardrails check and tool call arguments are made of.
        n: Choices to generate.
        max_tokens: Word limit of a reply (None: no limit).
        stop: Stop sequences.
        seed: The request's seed.
        include_usage: End a stream with a usage chunk.
        tool: The `function` object of the tool to call, if any.
        completion_id: The answer's `id`.
        created: The answer's `created` timestamp.
    """

    messages: list[dict[str, object]]
    model: str
    prompt: str = ""
    user_text: str = ""
    n: int = 1
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    include_usage: bool = False
    tool: Mapping[str, object] | None = None
    completion_id: str = field(
        default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}"
    )
    created: int = field(default_factory=lambda: int(time.time()))


# --- validation (OpenAI's messages and codes) --------------------------------------


def _kind(value: object) -> str:
    """Name a JSON value's type as OpenAI's error messages do."""
    names: tuple[tuple[type, str], ...] = (
        *((bool, "a boolean"), (int, "an integer"), (float, "a decimal")),
        *((str, "a string"), (list, "an array"), (dict, "an object")),
    )
    return next((name for kind, name in names if isinstance(value, kind)), "null")


def _missing(param: str) -> InvalidRequestError:
    message = f"Missing required parameter: '{param}'."
    return InvalidRequestError(message, param=param, code="missing_required_parameter")


def _wrong_value(
    param: str, value: object, allowed: Sequence[str]
) -> InvalidRequestError:
    names = [f"'{name}'" for name in allowed]
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    message = f"Invalid value: '{value}'. Supported values are: {listed}."
    return InvalidRequestError(message, param=param, code="invalid_value")


def _empty(param: str) -> InvalidRequestError:
    message = (
        f"Invalid '{param}': empty array. Expected an array with minimum length 1,"
        " but got an empty array instead."
    )
    return InvalidRequestError(message, param=param, code="empty_array")


# A type's check, and its name in error messages.
_TYPES: Final[dict[str, tuple[Callable[[object], bool], str]]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (_is_int, "an integer"),
    "decimal": (_is_number, "a number"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "objects": (lambda v: isinstance(v, list), "an array of objects"),
    "content": (
        lambda v: isinstance(v, (str, list)),
        "one of a string or array of objects",
    ),
    "stop": (
        lambda v: (
            isinstance(v, str)
            or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        ),
        "one of a string or array of strings",
    ),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "one of a string or object"),
}


def _typed(value: object, param: str, kind: str, *, required: bool = True) -> Any:
    """Return `value`, refusing it if missing (when `required`) or mistyped."""
    if value is None:
        if required:
            raise _missing(param)
        return None
    check, expected = _TYPES[kind]
    if not check(value):
        message = (
            f"Invalid type for '{param}': expected {expected},"
            f" but got {_kind(value)} instead."
        )
        raise InvalidRequestError(message, param=param, code="invalid_type")
    return value


def _get(
    obj: Mapping[str, object], key: str, where: str, kind: str, *, required: bool = True
) -> Any:
    """Return `obj[key]` checked by `_typed` (`where` prefixes the param)."""
    param = f"{where}.{key}" if where else key
    return _typed(obj.get(key), param, kind, required=required)


def _check_message(message: object, where: str) -> dict[str, object]:
    checked: dict[str, object] = _typed(message, where, "object")
    role = _get(checked, "role", where, "string")
    if role not in ROLES:
        raise _wrong_value(f"{where}.role", role, ROLES)
    needed = role in _NEEDS_CONTENT
    content = _get(checked, "content", where, "content", required=needed)
    if needed and content == []:
        raise _empty(f"{where}.content")
    for number, part in enumerate(content if isinstance(content, list) else ()):
        at = f"{where}.content[{number}]"
        if _get(_typed(part, at, "object"), "type", at, "string") == "text":
            _get(part, "text", at, "string")
    if role == "tool":
        _get(checked, "tool_call_id", where, "string")
    return checked


# name -> (type, minimum, maximum); unknown fields are ignored, null is "not given".
_SCALARS: Final[dict[str, tuple[str, float | None, float | None]]] = {
    "model": ("string", None, None),
    "user": ("string", None, None),
    "n": ("integer", 1, 128),
    "max_tokens": ("integer", 1, None),
    "max_completion_tokens": ("integer", 1, None),
    "seed": ("integer", None, None),
    "temperature": ("decimal", 0, 2),
    "top_p": ("decimal", 0, 1),
    "frequency_penalty": ("decimal", -2, 2),
    "presence_penalty": ("decimal", -2, 2),
    "stream": ("boolean", None, None),
    "logprobs": ("boolean", None, None),
    "parallel_tool_calls": ("boolean", None, None),
    "stream_options": ("object", None, None),
    "stop": ("stop", None, None),
}


def _check_scalars(body: Mapping[str, object]) -> None:
    for name, (kind, low, high) in _SCALARS.items():
        value = _get(body, name, "", kind, required=False)
        if not _is_number(value):
            continue
        if low is not None and value < low:
            side, sign, bound = "below minimum", ">=", low
        elif high is not None and value > high:
            side, sign, bound = "above maximum", "<=", high
        else:
            continue
        message = (
            f"Invalid '{name}': {kind} {side} value."
            f" Expected a value {sign} {bound}, but got {value} instead."
        )
        code = f"{kind}_{side.replace('imum', '').replace(' ', '_')}_value"
        raise InvalidRequestError(message, param=name, code=code)
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        message = (
            "Invalid 'stop': array too long. Expected an array with maximum"
            f" length 4, but got an array with length {len(stop)} instead."
        )
        raise InvalidRequestError(message, param="stop", code="array_above_max_length")
    options = body.get("stream_options")
    if isinstance(options, dict):
        _get(options, "include_usage", "stream_options", "boolean", required=False)
        if body.get("stream") is not True:
            message = (
                "The 'stream_options' parameter is only allowed"
                " when 'stream' is enabled."
            )
            raise InvalidRequestError(message, param="stream_options")


def _check_tool(tool: object, where: str) -> Mapping[str, object]:
    checked: dict[str, object] = _typed(tool, where, "object")
    kind = _get(checked, "type", where, "string")
    if kind != "function":
        raise _wrong_value(f"{where}.type", kind, ("function",))
    function: dict[str, object] = _get(checked, "function", where, "object")
    where = f"{where}.function"
    if not _TOOL_NAME.fullmatch(_get(function, "name", where, "string")):
        message = (
            f"Invalid '{where}.name': string does not match pattern."
            " Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'."
        )
        raise InvalidRequestError(message, param=f"{where}.name", code="invalid_value")
    _get(function, "parameters", where, "object", required=False)
    return function


def _chosen_tool(body: Mapping[str, object]) -> Mapping[str, object] | None:
    """Validate `tools` and `tool_choice`; return the function to call, if any."""
    tools = _get(body, "tools", "", "objects", required=False)
    if tools == []:
        raise _empty("tools")
    functions = [_check_tool(t, f"tools[{i}]") for i, t in enumerate(tools or ())]
    choice = _get(body, "tool_choice", "", "tool_choice", required=False)
    if choice is None:
        return functions[0] if functions else None
    if not functions:
        message = (
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed"
            " when 'tools' are specified."
        )
        raise InvalidRequestError(message, param="tool_choice")
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _wrong_value("tool_choice", choice, _TOOL_CHOICES)
        return None if choice == "none" else functions[0]
    kind = _get(choice, "type", "tool_choice", "string")
    if kind != "function":
        raise _wrong_value("tool_choice.type", kind, ("function",))
    named = _get(choice, "function", "tool_choice", "object")
    name = _get(named, "name", "tool_choice.function", "string")
    for function in functions:
        if function.get("name") == name:
            return function
    message = f"Invalid value for 'tool_choice': no function named '{name}' in 'tools'."
    raise InvalidRequestError(message, param="tool_choice", code="invalid_value")


def parse_chat_request(body: Mapping[str, object], *, default_model: str) -> ChatJob:
    """Validate a decoded chat completions body into a job.

    Args:
        body: The decoded JSON object.
        default_model: Model answered when the body names none.

    Returns:
        The job to answer.

    Raises:
        InvalidRequestError: The body is refused (400, with OpenAI's codes).
    """
    messages = _typed(body.get("messages"), "messages", "objects")
    if not messages:
        raise _empty("messages")
    messages = [_check_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    _check_scalars(body)
    tool = _chosen_tool(body)
    users = [m for m in messages if m["role"] == "user"]
    lines = (f"{m['role']}: {content_text(m.get('content'))}" for m in messages)
    limit = body.get("max_completion_tokens")
    limit = body.get("max_tokens") if limit is None else limit
    model, seed, n = body.get("model"), body.get("seed"), body.get("n")
    options = body.get("stream_options")
    return ChatJob(
        messages=messages,
        model=model if isinstance(model, str) else default_model,
        prompt="\n".join(lines),
        user_text=content_text(users[-1].get("content")) if users else "",
        n=n if isinstance(n, int) else 1,
        max_tokens=limit if isinstance(limit, int) else None,
        stop=tuple(_strs(body.get("stop"))),
        seed=seed if isinstance(seed, int) else None,
        include_usage=isinstance(options, dict)
        and options.get("include_usage") is True,
        tool=tool,
    )

"""The chat resource: ``client.chat.completions.create(...)``.

With its stream, `ChatCompletionStream`, and the accumulator that merges the
stream's chunks into one `ChatCompletion`: content and refusal joined, tool calls
assembled from their fragments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Literal, overload

from .._base_client import BaseClient, RequestOptions, build_body
from .._config import NOT_GIVEN, NotGiven
from .._exceptions import ConfigurationError
from .._models.chat import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatLogprobs,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    TokenLogprob,
    ToolCallFunction,
    chat_completion_chunk_decoder,
    chat_completion_decoder,
)
from .._models.guardrails import PolicyDetections
from .._models.usage import Usage
from .._params import (
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolParam,
    StreamOptions,
)
from .._raw_response import raw_response_wrapper
from .._responses import decode_answer
from .._streaming import Stream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Chat",
    "ChatCompletionAccumulator",
    "ChatCompletionStream",
    "ChatCompletions",
    "ChatCompletionsWithRawResponse",
]

_PATH = "/chat/completions"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


class Chat:
    """``client.chat``: the chat endpoints; ``client.chat.completions`` today."""

    def __init__(self, client: BaseClient) -> None:
        self.completions = ChatCompletions(client)


def _check_messages(
    messages: Iterable[ChatCompletionMessageParam],
) -> list[ChatCompletionMessageParam]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(
        messages, Iterable
    ):
        raise ConfigurationError(
            f"messages must be a list of message dicts, not {type(messages).__name__}"
        )
    checked = list(messages)
    if not checked:
        raise ConfigurationError("messages must hold at least one message")
    for message in checked:
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _ROLES:
            raise ConfigurationError(
                f"each message must be a dict with a role among {sorted(_ROLES)}, "
                f"not {message!r:.80}"
            )
    return checked


class ChatCompletions:
    """``POST /chat/completions``: chat completions with guardrail reports.

    Reached as ``client.chat.completions``; not built directly.
    """

    def __init__(self, client: BaseClient) -> None:
        self._client = client

    @cached_property
    def with_raw_response(self) -> ChatCompletionsWithRawResponse:
        """``create`` returning the call's `RawResponse` (status, headers, request id).

        Examples:
            >>> create = client.chat.completions.with_raw_response.create
            >>> raw = await create(messages=[{"role": "user", "content": "Hi"}])
            >>> answer = raw.parse()
        """
        return ChatCompletionsWithRawResponse(self)

    @overload
    async def create(
        self,
        *,
        messages: Iterable[ChatCompletionMessageParam],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        max_completion_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        logprobs: bool | NotGiven = NOT_GIVEN,
        top_logprobs: int | NotGiven = NOT_GIVEN,
        tools: Iterable[ChatCompletionToolParam] | NotGiven = NOT_GIVEN,
        tool_choice: ChatCompletionToolChoiceOptionParam | NotGiven = NOT_GIVEN,
        parallel_tool_calls: bool | NotGiven = NOT_GIVEN,
        response_format: Mapping[str, object] | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream: Literal[False] = False,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        messages: Iterable[ChatCompletionMessageParam],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        max_completion_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        logprobs: bool | NotGiven = NOT_GIVEN,
        top_logprobs: int | NotGiven = NOT_GIVEN,
        tools: Iterable[ChatCompletionToolParam] | NotGiven = NOT_GIVEN,
        tool_choice: ChatCompletionToolChoiceOptionParam | NotGiven = NOT_GIVEN,
        parallel_tool_calls: bool | NotGiven = NOT_GIVEN,
        response_format: Mapping[str, object] | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream: Literal[True],
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> ChatCompletionStream: ...

    @overload
    async def create(
        self,
        *,
        messages: Iterable[ChatCompletionMessageParam],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        max_completion_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        logprobs: bool | NotGiven = NOT_GIVEN,
        top_logprobs: int | NotGiven = NOT_GIVEN,
        tools: Iterable[ChatCompletionToolParam] | NotGiven = NOT_GIVEN,
        tool_choice: ChatCompletionToolChoiceOptionParam | NotGiven = NOT_GIVEN,
        parallel_tool_calls: bool | NotGiven = NOT_GIVEN,
        response_format: Mapping[str, object] | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream: bool,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> ChatCompletion | ChatCompletionStream: ...

    async def create(
        self,
        *,
        messages: Iterable[ChatCompletionMessageParam],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        max_completion_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        logprobs: bool | NotGiven = NOT_GIVEN,
        top_logprobs: int | NotGiven = NOT_GIVEN,
        tools: Iterable[ChatCompletionToolParam] | NotGiven = NOT_GIVEN,
        tool_choice: ChatCompletionToolChoiceOptionParam | NotGiven = NOT_GIVEN,
        parallel_tool_calls: bool | NotGiven = NOT_GIVEN,
        response_format: Mapping[str, object] | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream: bool = False,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> ChatCompletion | ChatCompletionStream:
        """Create a chat completion, optionally streamed, through the guardrails.

        Messages are plain dicts, as for the ``openai`` package. Parameters left
        at `NOT_GIVEN` are left out of the JSON body. The per-request options are
        those of `RequestOptions` (``deployment``, ``tags``, ``refresh_cache``,
        ``timeout``, ``max_retries``, ``extra_headers``): each defaults to the
        client's setting, and ``None`` switches one off.

        Args:
            messages: The conversation so far: ``system``, ``developer``,
                ``user``, ``assistant`` and ``tool`` messages.
            model: Model name; usually fixed by the deployment.
            max_tokens: Longest answer, in tokens (older models).
            max_completion_tokens: Longest answer, reasoning included.
            temperature: Sampling temperature.
            top_p: Nucleus sampling mass.
            n: Choices to generate.
            stop: A stop sequence or a list of them.
            seed: Seed for reproducible sampling.
            frequency_penalty: Penalty for frequent tokens.
            presence_penalty: Penalty for tokens already present.
            logit_bias: Token id to bias.
            logprobs: Return the log probabilities of the tokens.
            top_logprobs: How many likely tokens to return at each position.
            tools: Functions the model may call.
            tool_choice: ``"none"``, ``"auto"``, ``"required"``, or one function.
            parallel_tool_calls: Let the model call several tools at once.
            response_format: ``{"type": "json_object"}`` or a JSON schema.
            stream_options: ``{"include_usage": True}`` adds a final usage chunk.
            enkrypt_context: Context for relevancy and hallucination checks.
            user: End-user identifier.
            stream: Return a `ChatCompletionStream` of chunks instead.
            extra_body: Fields merged into the JSON body, last.
            **options: The per-request options of `RequestOptions`.

        Returns:
            A `ChatCompletion`, or a `ChatCompletionStream` when ``stream=True``.

        Raises:
            APIStatusError: The proxy answered an error status (a subclass per
                status; `GuardrailsBlockedError` when a guardrail blocked).
            APIConnectionError: The proxy could not be reached (or timed out).
            DecodeError: The answer was not the expected JSON.
            ConfigurationError: An argument or setting is malformed.

        Examples:
            >>> chat = await client.chat.completions.create(
            ...     messages=[{"role": "user", "content": "hi"}]
            ... )
            >>> chat.choices[0].message.content
        """
        body = build_body(
            {
                "messages": _check_messages(messages),
                "model": model,
                "max_tokens": max_tokens,
                "max_completion_tokens": max_completion_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "n": n,
                "stop": stop,
                "seed": seed,
                "frequency_penalty": frequency_penalty,
                "presence_penalty": presence_penalty,
                "logit_bias": logit_bias,
                "logprobs": logprobs,
                "top_logprobs": top_logprobs,
                "tools": tools if isinstance(tools, NotGiven) else list(tools),
                "tool_choice": tool_choice,
                "parallel_tool_calls": parallel_tool_calls,
                "response_format": response_format,
                "stream": True if stream else NOT_GIVEN,
                "stream_options": stream_options,
                "enkrypt_context": enkrypt_context,
                "user": user,
            },
            extra_body,
        )
        if stream:
            return await self._client._stream(
                _PATH,
                body,
                options,
                chat_completion_chunk_decoder,
                ChatCompletionStream,
            )
        return await self._client._request(
            _PATH, body, options, chat_completion_decoder
        )


class ChatCompletionsWithRawResponse:
    """``client.chat.completions.with_raw_response``: ``create`` -> `RawResponse`."""

    def __init__(self, resource: ChatCompletions) -> None:
        self.create = raw_response_wrapper(resource.create)


class ChatCompletionStream(Stream[ChatCompletionChunk]):
    """A stream of `ChatCompletionChunk`, as ``create(..., stream=True)`` returns.

    Examples:
        >>> async def main(client: EnkryptClient) -> None:
        ...     stream = await client.chat.completions.create(
        ...         messages=[{"role": "user", "content": "Hi"}], stream=True
        ...     )
        ...     async with stream:
        ...         async for chunk in stream:
        ...             for choice in chunk.choices:
        ...                 print(choice.delta.content or "", end="")
    """

    def _answer_as_chunk(
        self,
    ) -> Callable[[bytes, str | None], ChatCompletionChunk] | None:
        return _chunk_of_answer

    async def collect(self) -> ChatCompletion:
        """Consume the rest of the stream and merge it into one `ChatCompletion`.

        See `ChatCompletionAccumulator` for how. Chunks already taken with
        ``async for`` are not included.

        Raises:
            StreamError: The stream was truncated or reported an error.
        """
        accumulator = ChatCompletionAccumulator()
        async with self:
            async for chunk in self:
                accumulator.add(chunk)
        return accumulator.result()


def _chunk_of_answer(data: bytes, request_id: str | None) -> ChatCompletionChunk:
    """A whole chat completion, sent to a stream request, as its one chunk."""
    answer = decode_answer(chat_completion_decoder, data, request_id, stream=True)
    return ChatCompletionChunk(
        id=answer.id,
        object=answer.object,
        created=answer.created,
        model=answer.model,
        choices=[
            ChatCompletionChunkChoice(
                index=choice.index,
                delta=ChoiceDelta(
                    role=choice.message.role,
                    content=choice.message.content,
                    refusal=choice.message.refusal,
                    tool_calls=[
                        ChoiceDeltaToolCall(
                            index=index,
                            id=call.id,
                            type=call.type,
                            function=ChoiceDeltaToolCallFunction(
                                name=call.function.name,
                                arguments=call.function.arguments,
                            ),
                        )
                        for index, call in enumerate(choice.message.tool_calls)
                    ]
                    if choice.message.tool_calls
                    else None,
                ),
                finish_reason=choice.finish_reason,
                logprobs=choice.logprobs,
            )
            for choice in answer.choices
        ],
        usage=answer.usage,
        system_fingerprint=answer.system_fingerprint,
        service_tier=answer.service_tier,
        enkrypt_policy_detections=answer.enkrypt_policy_detections,
    )


class _ToolCallParts:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class _MessageParts:
    __slots__ = (
        "content",
        "content_logprobs",
        "finish_reason",
        "refusal",
        "refusal_logprobs",
        "role",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None
        self.content_logprobs: list[TokenLogprob] | None = None
        self.refusal_logprobs: list[TokenLogprob] | None = None


class ChatCompletionAccumulator:
    """Folds streamed `ChatCompletionChunk`s into one `ChatCompletion`.

    Per choice index: the role from the first delta that has one; content and
    refusal joined in arrival order; tool calls assembled per ``index``, the id,
    type and function name from the first fragment that has them and the
    arguments concatenated; the last ``finish_reason``; log probabilities
    joined. ``usage`` and ``enkrypt_policy_detections`` come from the last chunk
    that carried them; ``id``, ``model`` and the rest from the first chunk.
    Linear in the size of the stream.

    What `ChatCompletionStream.collect` uses; for a caller who forwards the chunks
    elsewhere and still wants the whole answer at the end.

    Examples:
        >>> accumulator = ChatCompletionAccumulator()
        >>> async for chunk in stream:  # doctest: +SKIP
        ...     accumulator.add(chunk)
        ...     await forward(chunk)
        >>> message = accumulator.result().choices[0].message  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._first: ChatCompletionChunk | None = None
        self._choices: dict[int, _MessageParts] = {}
        self._usage: Usage | None = None
        self._detections: PolicyDetections | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Take the next chunk, in the order the stream gave them."""
        if self._first is None:
            self._first = chunk
        for choice in chunk.choices:
            parts = self._choices.get(choice.index)
            if parts is None:
                parts = self._choices[choice.index] = _MessageParts()
            delta = choice.delta
            if parts.role is None and delta.role:
                parts.role = delta.role
            if delta.content:
                parts.content.append(delta.content)
            if delta.refusal:
                parts.refusal.append(delta.refusal)
            for fragment in delta.tool_calls or ():
                call = parts.tool_calls.get(fragment.index)
                if call is None:
                    call = parts.tool_calls[fragment.index] = _ToolCallParts()
                call.id = call.id or fragment.id
                call.type = call.type or fragment.type
                function = fragment.function
                if function is not None:
                    call.name = call.name or function.name
                    if function.arguments:
                        call.arguments.append(function.arguments)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
            logprobs = choice.logprobs
            if logprobs is not None and logprobs.content is not None:
                if parts.content_logprobs is None:
                    parts.content_logprobs = []
                parts.content_logprobs.extend(logprobs.content)
            if logprobs is not None and logprobs.refusal is not None:
                if parts.refusal_logprobs is None:
                    parts.refusal_logprobs = []
                parts.refusal_logprobs.extend(logprobs.refusal)
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.enkrypt_policy_detections is not None:
            self._detections = chunk.enkrypt_policy_detections

    def result(self) -> ChatCompletion:
        """The merged chat completion of the chunks taken so far."""
        first = self._first or ChatCompletionChunk()
        return ChatCompletion(
            id=first.id,
            object="chat.completion",
            created=first.created,
            model=first.model,
            choices=[
                _choice(index, parts) for index, parts in sorted(self._choices.items())
            ],
            usage=self._usage,
            system_fingerprint=first.system_fingerprint,
            service_tier=first.service_tier,
            enkrypt_policy_detections=self._detections,
        )


def _choice(index: int, parts: _MessageParts) -> ChatCompletionChoice:
    tool_calls = [
        ChatCompletionMessageToolCall(
            id=call.id or "",
            type=call.type or "function",
            function=ToolCallFunction(
                name=call.name or "", arguments="".join(call.arguments)
            ),
        )
        for _, call in sorted(parts.tool_calls.items())
    ]
    logprobs = None
    if parts.content_logprobs is not None or parts.refusal_logprobs is not None:
        logprobs = ChatLogprobs(
            content=parts.content_logprobs, refusal=parts.refusal_logprobs
        )
    return ChatCompletionChoice(
        index=index,
        message=ChatCompletionMessage(
            role=parts.role or "assistant",
            content="".join(parts.content) if parts.content else None,
            refusal="".join(parts.refusal) if parts.refusal else None,
            tool_calls=tool_calls or None,
        ),
        finish_reason=parts.finish_reason,
        logprobs=logprobs,
    )

"""The completions resource: ``client.completions.create(...)``.

With its stream, `CompletionStream`, and the accumulator that merges the stream's
chunks into one `Completion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Literal, overload

import msgspec

from .._base_client import BaseClient, RequestOptions, build_body
from .._config import NOT_GIVEN, NotGiven
from .._exceptions import ConfigurationError
from .._models.completions import (
    Completion,
    CompletionChoice,
    Logprobs,
    completion_decoder,
)
from .._models.guardrails import PolicyDetections
from .._models.usage import Usage
from .._params import StreamOptions
from .._raw_response import raw_response_wrapper
from .._streaming import Stream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CompletionAccumulator",
    "CompletionStream",
    "Completions",
    "CompletionsWithRawResponse",
]


_PATH = "/completions"


class Completions:
    """``POST /completions``: text completions with guardrail reports.

    Reached as ``client.completions``; not built directly.
    """

    def __init__(self, client: BaseClient) -> None:
        self._client = client

    @cached_property
    def with_raw_response(self) -> CompletionsWithRawResponse:
        """``create`` returning the call's `RawResponse` (status, headers, request id).

        Examples:
            >>> raw = await client.completions.with_raw_response.create(prompt="Hi")
            >>> answer = raw.parse()
        """
        return CompletionsWithRawResponse(self)

    @overload
    async def create(
        self,
        *,
        prompt: str | Sequence[str],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        echo: bool | NotGiven = NOT_GIVEN,
        logprobs: int | NotGiven = NOT_GIVEN,
        best_of: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        suffix: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        stream: Literal[False] = False,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Completion: ...

    @overload
    async def create(
        self,
        *,
        prompt: str | Sequence[str],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        echo: bool | NotGiven = NOT_GIVEN,
        logprobs: int | NotGiven = NOT_GIVEN,
        best_of: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        suffix: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        stream: Literal[True],
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> CompletionStream: ...

    @overload
    async def create(
        self,
        *,
        prompt: str | Sequence[str],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        echo: bool | NotGiven = NOT_GIVEN,
        logprobs: int | NotGiven = NOT_GIVEN,
        best_of: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        suffix: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        stream: bool,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Completion | CompletionStream: ...

    async def create(
        self,
        *,
        prompt: str | Sequence[str],
        model: str | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        n: int | NotGiven = NOT_GIVEN,
        stop: str | Sequence[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        echo: bool | NotGiven = NOT_GIVEN,
        logprobs: int | NotGiven = NOT_GIVEN,
        best_of: int | NotGiven = NOT_GIVEN,
        frequency_penalty: float | NotGiven = NOT_GIVEN,
        presence_penalty: float | NotGiven = NOT_GIVEN,
        logit_bias: Mapping[str, int] | NotGiven = NOT_GIVEN,
        suffix: str | NotGiven = NOT_GIVEN,
        user: str | NotGiven = NOT_GIVEN,
        stream_options: StreamOptions | NotGiven = NOT_GIVEN,
        enkrypt_context: str | NotGiven = NOT_GIVEN,
        stream: bool = False,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Completion | CompletionStream:
        """Create a completion, optionally streamed, through the guardrails.

        Parameters left at `NOT_GIVEN` are left out of the JSON body, so a request
        carries exactly what was asked for. The per-request options are those of
        `RequestOptions` (``deployment``, ``tags``, ``refresh_cache``,
        ``timeout``, ``max_retries``, ``extra_headers``): each defaults to the
        client's setting, and ``None`` switches one off.

        Args:
            prompt: The prompt, or a list of prompts.
            model: Model name; usually fixed by the deployment.
            max_tokens: Longest completion, in tokens.
            temperature: Sampling temperature.
            top_p: Nucleus sampling mass.
            n: Completions per prompt.
            stop: A stop sequence or a list of them.
            seed: Seed for reproducible sampling.
            echo: Echo the prompt before the completion.
            logprobs: Number of log probabilities to return per token.
            best_of: Server-side candidates per completion (not with streaming).
            frequency_penalty: Penalty for frequent tokens.
            presence_penalty: Penalty for tokens already present.
            logit_bias: Token id to bias.
            suffix: Text after the completion.
            user: End-user identifier.
            stream_options: ``{"include_usage": True}`` adds a final usage chunk.
            enkrypt_context: Context for relevancy and hallucination checks.
            stream: Return a `CompletionStream` of chunks instead of one answer.
            extra_body: Fields merged into the JSON body, last.
            **options: The per-request options of `RequestOptions`.

        Returns:
            A `Completion`, or a `CompletionStream` when ``stream=True``.

        Raises:
            APIStatusError: The proxy answered an error status (a subclass per
                status; `GuardrailsBlockedError` when a guardrail blocked).
            APIConnectionError: The proxy could not be reached (or timed out).
            DecodeError: The answer was not the expected JSON.
            ConfigurationError: An argument or setting is malformed.

        Examples:
            >>> completion = await client.completions.create(
            ...     prompt="give me a good family joke", max_tokens=64
            ... )
        """
        if not isinstance(prompt, str) and not (
            isinstance(prompt, Sequence) and all(isinstance(p, str) for p in prompt)
        ):
            raise ConfigurationError("prompt must be a string or a sequence of strings")
        body = build_body(
            {
                "prompt": prompt,
                "model": model,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "n": n,
                "stop": stop,
                "seed": seed,
                "echo": echo,
                "logprobs": logprobs,
                "best_of": best_of,
                "frequency_penalty": frequency_penalty,
                "presence_penalty": presence_penalty,
                "logit_bias": logit_bias,
                "suffix": suffix,
                "user": user,
                "stream": True if stream else NOT_GIVEN,
                "stream_options": stream_options,
                "enkrypt_context": enkrypt_context,
            },
            extra_body,
        )
        if stream:
            return await self._client._stream(
                _PATH, body, options, completion_decoder, CompletionStream
            )
        return await self._client._request(_PATH, body, options, completion_decoder)


class CompletionsWithRawResponse:
    """``client.completions.with_raw_response``: ``create`` returning `RawResponse`."""

    def __init__(self, resource: Completions) -> None:
        self.create = raw_response_wrapper(resource.create)


class CompletionStream(Stream[Completion]):
    """A stream of `Completion` chunks, as returned by ``create(..., stream=True)``.

    Examples:
        >>> async def main(client: EnkryptClient) -> None:
        ...     stream = await client.completions.create(prompt="Hi", stream=True)
        ...     async with stream:
        ...         async for chunk in stream:
        ...             print(chunk.choices[0].text, end="")
    """

    async def collect(self) -> Completion:
        """Consume the rest of the stream and merge it into one `Completion`.

        Text is joined per choice index in arrival order; each choice keeps its
        last ``finish_reason``; ``usage`` and ``enkrypt_policy_detections`` come
        from whichever chunk carried them (the last one wins). Chunks already taken
        with ``async for`` are not included.

        Raises:
            StreamError: The stream was truncated or reported an error.
        """
        accumulator = CompletionAccumulator()
        async with self:
            async for chunk in self:
                accumulator.add(chunk)
        return accumulator.result()


class _ChoiceParts:
    __slots__ = ("finish_reason", "logprobs", "seed", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.finish_reason: str | None = None
        self.seed: int | None = None
        self.logprobs: list[Logprobs] = []


class CompletionAccumulator:
    """Folds streamed `Completion` chunks into one `Completion`.

    What `CompletionStream.collect` uses; for a caller who forwards the chunks
    elsewhere and still wants the whole answer at the end.

    Examples:
        >>> accumulator = CompletionAccumulator()
        >>> async for chunk in stream:  # doctest: +SKIP
        ...     accumulator.add(chunk)
        ...     await forward(chunk)
        >>> completion = accumulator.result()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._first: Completion | None = None
        self._choices: dict[int, _ChoiceParts] = {}
        self._usage: Usage | None = None
        self._detections: PolicyDetections | None = None

    def add(self, chunk: Completion) -> None:
        """Take the next chunk, in the order the stream gave them."""
        if self._first is None:
            self._first = chunk
        for choice in chunk.choices:
            parts = self._choices.get(choice.index)
            if parts is None:
                parts = self._choices[choice.index] = _ChoiceParts()
            parts.texts.append(choice.text)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
            if choice.seed is not None:
                parts.seed = choice.seed
            if choice.logprobs is not None:
                parts.logprobs.append(choice.logprobs)
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.enkrypt_policy_detections is not None:
            self._detections = chunk.enkrypt_policy_detections

    def result(self) -> Completion:
        """The merged completion of the chunks taken so far.

        Text is joined per choice index; each choice keeps its last
        ``finish_reason``, seed and joined log probabilities; ``usage`` and
        ``enkrypt_policy_detections`` come from the last chunk that carried them;
        ``id``, ``model`` and the rest from the first chunk.
        """
        first = self._first or Completion()
        choices = [
            CompletionChoice(
                text="".join(parts.texts),
                index=index,
                finish_reason=parts.finish_reason,
                seed=parts.seed,
                logprobs=_merge_logprobs(parts.logprobs),
            )
            for index, parts in sorted(self._choices.items())
        ]
        return msgspec.structs.replace(
            first,
            choices=choices,
            usage=self._usage,
            enkrypt_policy_detections=self._detections,
        )


def _merge_logprobs(pieces: list[Logprobs]) -> Logprobs | None:
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    merged: dict[str, list[object]] = {}
    for field in msgspec.structs.fields(Logprobs):
        values: list[object] = []
        for piece in pieces:
            value = getattr(piece, field.name)
            if isinstance(value, list):
                values.extend(value)
        merged[field.name] = values
    return msgspec.convert(merged, Logprobs)

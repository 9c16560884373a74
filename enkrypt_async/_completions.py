"""The completions resource: ``client.completions.create(...)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict, overload

from ._client import RequestOptions
from ._config import NOT_GIVEN, USE_CLIENT_DEFAULT, NotGiven, Timeout, UseClientDefault
from ._exceptions import ConfigurationError
from ._models import Completion, completion_decoder
from ._streaming import CompletionStream

if TYPE_CHECKING:
    from ._client import EnkryptClient

__all__ = ["Completions", "StreamOptions"]


class StreamOptions(TypedDict, total=False):
    """``stream_options`` of a streamed request.

    Attributes:
        include_usage: Send a last chunk with ``choices: []`` and the whole
            ``usage`` just before ``[DONE]``.
    """

    include_usage: bool


_PATH = "/completions"


def _body(
    params: Mapping[str, object], extra_body: Mapping[str, object] | None
) -> dict[str, object]:
    body = {
        name: list(value) if isinstance(value, (tuple, range)) else value
        for name, value in params.items()
        if value is not NOT_GIVEN
    }
    if extra_body:
        body.update(extra_body)
    return body


class Completions:
    """``POST /completions``: text completions with guardrail reports.

    Reached as ``client.completions``; not built directly.
    """

    def __init__(self, client: EnkryptClient) -> None:
        self._client = client

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
        deployment: str | UseClientDefault = USE_CLIENT_DEFAULT,
        tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT,
        refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT,
        timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
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
        deployment: str | UseClientDefault = USE_CLIENT_DEFAULT,
        tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT,
        refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT,
        timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
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
        deployment: str | UseClientDefault = USE_CLIENT_DEFAULT,
        tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT,
        refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT,
        timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
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
        deployment: str | UseClientDefault = USE_CLIENT_DEFAULT,
        tags: str | Sequence[str] | UseClientDefault | None = USE_CLIENT_DEFAULT,
        refresh_cache: bool | UseClientDefault | None = USE_CLIENT_DEFAULT,
        timeout: float | Timeout | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, object] | None = None,
    ) -> Completion | CompletionStream:
        """Create a completion, optionally streamed, through the guardrails.

        Parameters left at `NOT_GIVEN` are left out of the JSON body, so a request
        carries exactly what was asked for. The per-request options (deployment to
        max_retries) default to the client's settings; ``None`` switches one off.

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
            deployment: ``X-Enkrypt-Deployment`` for this request.
            tags: ``X-Enkrypt-Tags`` for this request (None: none).
            refresh_cache: ``X-Enkrypt-Refresh-Cache`` for this request (None: omit).
            timeout: Timeouts for this request.
            max_retries: Retries for this request.
            extra_headers: Headers added to (or overriding) this request's.
            extra_body: Fields merged into the JSON body, last.

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
        body = _body(
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
        options = RequestOptions.build(
            deployment=deployment,
            tags=tags,
            refresh_cache=refresh_cache,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
        )
        if stream:
            return await self._client._stream(
                _PATH, body, options, completion_decoder, CompletionStream
            )
        return await self._client._request(_PATH, body, options, completion_decoder)

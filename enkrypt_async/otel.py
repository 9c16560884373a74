"""OpenTelemetry instrumentation: one span per call, as the GenAI conventions say.

Install the extra with ``pip install "enkrypt-async[otel]"`` (it brings
``opentelemetry-api`` only). Nothing in the core imports this module: ``import
enkrypt_async`` never imports OpenTelemetry, and until `EnkryptInstrumentor.instrument`
is called the client runs exactly as without it.

While instrumented, every ``create()`` of every client records one ``CLIENT`` span
named ``"{gen_ai.operation.name} {gen_ai.request.model}"``, retries included; a
stream's span lasts until the stream ends, fails or is closed. It carries the
request's parameters, the answer's id, model, finish reasons and token counts, the
time to the first chunk of a stream, the proxy's request id, the deployment, the
HTTP status, and the guardrails' verdicts (which detectors fired on the input and
on the output, and whether the request was blocked). The prompt, the answer and
the API key are never recorded, unless ``capture_content=True`` adds the messages.

It works by wrapping the client's private request pipeline at class level while
instrumented (the pipeline keeps no hook for it), and restores it on
`EnkryptInstrumentor.uninstrument`.

Examples:
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from enkrypt_async.otel import EnkryptInstrumentor
    >>> EnkryptInstrumentor().instrument(tracer_provider=TracerProvider())
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import traceback
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from enkrypt_async import (
    APIError,
    APIStatusError,
    ChatCompletion,
    ChatCompletionAccumulator,
    ChatCompletionChunk,
    ChatCompletionStream,
    Completion,
    CompletionAccumulator,
    CompletionStream,
    DecodeError,
    GuardrailsBlockedError,
    PolicyDetections,
    RawResponse,
    Stream,
    StreamError,
    Usage,
    __version__,
)
from enkrypt_async._base_client import BaseClient
from enkrypt_async._responses import DECODE_ERRORS, request_id_of

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["EnkryptInstrumentor"]

#: ``gen_ai.provider.name`` of every span.
_PROVIDER_NAME: Final = "enkrypt_ai"

# The GenAI semantic conventions' names, spelled out so that only
# opentelemetry-api is needed (opentelemetry-semantic-conventions is not).
_OPERATION: Final = "gen_ai.operation.name"
_PROVIDER: Final = "gen_ai.provider.name"
_REQUEST_MODEL: Final = "gen_ai.request.model"
_RESPONSE_ID: Final = "gen_ai.response.id"
_RESPONSE_MODEL: Final = "gen_ai.response.model"
_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
_INPUT_MESSAGES: Final = "gen_ai.input.messages"
_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
_ERROR_TYPE: Final = "error.type"

#: Operation names of the paths the resources post to.
_OPERATIONS: Final = {"/chat/completions": "chat", "/completions": "text_completion"}

#: Request parameters recorded, by body key: (attribute, whether an integer).
_PARAMETERS: Final = {
    "max_tokens": ("gen_ai.request.max_tokens", True),
    "max_completion_tokens": ("gen_ai.request.max_tokens", True),
    "temperature": ("gen_ai.request.temperature", False),
    "top_p": ("gen_ai.request.top_p", False),
    "seed": ("gen_ai.request.seed", True),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", False),
    "presence_penalty": ("gen_ai.request.presence_penalty", False),
    "n": ("gen_ai.request.choice.count", True),
}
_INT64: Final = range(-(2**63), 2**63)
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_DEPLOYMENT_HEADER: Final = "x-enkrypt-deployment"
#: Where a stream keeps its recorder (a stream has no slots; the core never reads it).
_RECORDER: Final = "_enkrypt_otel_recorder"


class _Choice(msgspec.Struct):
    index: int = 0
    finish_reason: str | None = None


class _Outcome(msgspec.Struct):
    """What a span records of an answer or of one chunk: no text at all."""

    id: str | None = None
    model: str | None = None
    choices: list[_Choice] = []
    usage: Usage | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


_outcome_decoder: Final = msgspec.json.Decoder(_Outcome, strict=False)

#: With the content captured, a stream's chunks are decoded whole and merged, as
#: ``collect()`` does: (chunk decoder, accumulator) by stream class.
_ACCUMULATE: Final[dict[type[Any], tuple[msgspec.json.Decoder[Any], type[Any]]]] = {
    ChatCompletionStream: (
        msgspec.json.Decoder(ChatCompletionChunk, strict=False),
        ChatCompletionAccumulator,
    ),
    CompletionStream: (
        msgspec.json.Decoder(Completion, strict=False),
        CompletionAccumulator,
    ),
}

#: The call the running task is making: where `_attempt` reports what it saw.
_CALL: Final[contextvars.ContextVar[_Call | None]] = contextvars.ContextVar(
    "enkrypt_otel_call", default=None
)


@functools.lru_cache(maxsize=64)
def _server(base_url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(base_url)
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _text_part(text: object) -> dict[str, object]:
    return {"type": "text", "content": text}


def _chat_message(message: Mapping[str, object]) -> dict[str, object]:
    """A chat message in the conventions' shape: a role and its parts."""
    content = message.get("content")
    parts: list[object] = []
    if message.get("role") == "tool":
        parts.append(
            {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": content,
            }
        )
    elif isinstance(content, str):
        parts.append(_text_part(content))
    elif isinstance(content, list):
        parts.extend(
            _text_part(part.get("text"))
            if isinstance(part, Mapping) and part.get("type") == "text"
            else part
            for part in content
        )
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return {"role": message.get("role"), "parts": parts}


def _input_messages(body: Mapping[str, object]) -> list[dict[str, object]]:
    messages = body.get("messages")
    if isinstance(messages, list):
        return [_chat_message(m) for m in messages if isinstance(m, Mapping)]
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list):
        return []
    return [{"role": "user", "parts": [_text_part(p)]} for p in prompts]


def _output_messages(answer: object) -> list[dict[str, object]]:
    """A whole answer's choices in the conventions' shape; [] for other types."""
    if isinstance(answer, Completion):
        return [
            {
                "role": "assistant",
                "parts": [_text_part(choice.text)],
                "finish_reason": choice.finish_reason or "",
            }
            for choice in answer.choices
        ]
    if isinstance(answer, ChatCompletion):
        return [
            {
                **_chat_message(msgspec.to_builtins(choice.message)),
                "finish_reason": choice.finish_reason or "",
            }
            for choice in answer.choices
        ]
    return []


def _request_attributes(body: Mapping[str, object]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for key, (name, integer) in _PARAMETERS.items():
        value = body.get(key)
        if isinstance(value, bool) or name in attributes:
            continue
        if (isinstance(value, int) and value in _INT64) or (
            isinstance(value, float) and not integer
        ):
            attributes[name] = value
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if isinstance(stops, list) and all(isinstance(s, str) for s in stops):
        attributes["gen_ai.request.stop_sequences"] = stops
    return attributes


def _outcome_attributes(outcome: _Outcome) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if outcome.id:
        attributes[_RESPONSE_ID] = outcome.id
    if outcome.model:
        attributes[_RESPONSE_MODEL] = outcome.model
    reasons = [
        choice.finish_reason
        for choice in sorted(outcome.choices, key=lambda choice: choice.index)
        if choice.finish_reason
    ]
    if reasons:
        attributes[_FINISH_REASONS] = reasons
    usage = outcome.usage
    if usage is not None:
        prompt, completion = (
            usage.prompt_tokens_details,
            usage.completion_tokens_details,
        )
        counts = {
            _INPUT_TOKENS: usage.prompt_tokens,
            _OUTPUT_TOKENS: usage.completion_tokens,
            _CACHE_READ_TOKENS: prompt.cached_tokens if prompt else None,
            _REASONING_TOKENS: completion.reasoning_tokens if completion else None,
        }
        attributes.update({k: v for k, v in counts.items() if v is not None})
    if outcome.enkrypt_policy_detections is not None:
        attributes.update(_verdicts(outcome.enkrypt_policy_detections))
    return attributes


def _verdicts(detections: PolicyDetections) -> dict[str, AttributeValue]:
    """``enkrypt.guardrails.{input,output}.flagged`` of the sides reported."""
    sides = {
        "input": detections.input_guardrails,
        "output": detections.output_guardrails,
    }
    return {
        f"enkrypt.guardrails.{side}.flagged": report.flagged
        for side, report in sides.items()
        if report is not None
    }


class _Call:
    """One instrumented call: its span, and what the pipeline reported on the way."""

    __slots__ = (
        "blocked",
        "capture",
        "deployment",
        "ended",
        "request_id",
        "span",
        "started",
        "status_code",
    )

    def __init__(self, span: Span, *, capture: bool) -> None:
        self.span = span
        self.capture = capture
        self.started = time.monotonic()
        self.ended = False
        self.deployment: str | None = None
        self.status_code: int | None = None
        self.request_id: str | None = None
        self.blocked: bool | None = None

    def attempting(self, headers: Mapping[str, str]) -> None:
        """An attempt is about to be sent with ``headers``."""
        self.status_code = self.request_id = None
        self.deployment = next(
            (v for k, v in headers.items() if k.lower() == _DEPLOYMENT_HEADER), None
        )

    def responded(
        self, status_code: int, request_id: str | None, sent: Mapping[str, str]
    ) -> None:
        """An attempt was answered; ``sent``: the request headers as sent."""
        self.status_code, self.request_id = status_code, request_id
        self.deployment = sent.get("X-Enkrypt-Deployment", self.deployment)
        if status_code < 300:
            self.blocked = False

    def answered(self, outcome: _Outcome, output: list[dict[str, object]]) -> None:
        self.span.set_attributes(_outcome_attributes(outcome))
        if self.capture and output:
            self.span.set_attribute(_OUTPUT_MESSAGES, _json(output))

    def end(self, error: BaseException | None = None) -> None:
        """End the span (once); with ``error``, as failed."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        if isinstance(error, APIError) and error.request_id:
            self.request_id = error.request_id
        if isinstance(error, APIStatusError):
            self.status_code = error.status_code
        if isinstance(error, GuardrailsBlockedError):
            self.blocked = True
            span.set_attributes(_verdicts(error.detections))
        reported = {
            "http.response.status_code": self.status_code,
            "enkrypt.request_id": self.request_id,
            "enkrypt.deployment": self.deployment,
            "enkrypt.guardrails.blocked": self.blocked,
        }
        span.set_attributes({k: v for k, v in reported.items() if v is not None})
        if error is not None:
            self._fail(error)
        span.end()

    def _fail(self, error: BaseException) -> None:
        span = self.span
        span.set_attribute(_ERROR_TYPE, type(error).__qualname__)
        attributes: dict[str, AttributeValue] | None = None
        description = str(error)
        if not self.capture and isinstance(error, (DecodeError, StreamError)):
            # Their messages quote the body they could not use: part of an answer.
            description = (
                f"{type(error).__name__} (its message quotes the response; "
                "recorded with capture_content=True)"
            )
            stack = "".join(traceback.format_tb(error.__traceback__))
            attributes = {
                "exception.message": description,
                "exception.stacktrace": stack,
            }
        span.set_status(Status(StatusCode.ERROR, description))
        span.record_exception(error, attributes=attributes)


class _Fold:
    """A stream's chunks folded as ``collect()`` folds them, without their text.

    The first id and model; per choice the last finish reason; the last usage and
    detections sent.
    """

    __slots__ = ("detections", "id", "model", "reasons", "usage")

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.reasons: dict[int, str] = {}
        self.usage: Usage | None = None
        self.detections: PolicyDetections | None = None

    def add(self, item: object) -> None:
        if isinstance(item, bytes):
            chunk = _outcome_decoder.decode(item)
        else:
            chunk = msgspec.convert(item, _Outcome, from_attributes=True)
        self.id = self.id or chunk.id
        self.model = self.model or chunk.model
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self.reasons[choice.index] = choice.finish_reason
        self.usage = chunk.usage or self.usage
        self.detections = chunk.enkrypt_policy_detections or self.detections

    def result(self) -> tuple[_Outcome, list[dict[str, object]]]:
        choices = [_Choice(index=i, finish_reason=r) for i, r in self.reasons.items()]
        outcome = _Outcome(
            id=self.id,
            model=self.model,
            choices=choices,
            usage=self.usage,
            enkrypt_policy_detections=self.detections,
        )
        return outcome, []


class _Merge:
    """A stream's chunks decoded whole and merged into its answer (content kept)."""

    __slots__ = ("accumulator", "decoder")

    def __init__(self, decoder: msgspec.json.Decoder[Any], accumulator: Any) -> None:
        self.decoder = decoder
        self.accumulator = accumulator

    def add(self, item: object) -> None:
        chunk = self.decoder.decode(item) if isinstance(item, bytes) else item
        self.accumulator.add(chunk)

    def result(self) -> tuple[_Outcome, list[dict[str, object]]]:
        answer = self.accumulator.result()
        outcome = msgspec.convert(answer, _Outcome, from_attributes=True)
        return outcome, _output_messages(answer)


class _StreamRecorder:
    """Sees a stream's items as they are read, and ends its call's span."""

    __slots__ = ("call", "chunks", "seen")

    def __init__(self, call: _Call, chunks: _Fold | _Merge) -> None:
        self.call = call
        self.chunks = chunks
        self.seen = False

    def add(self, item: object) -> None:
        if not self.seen:
            self.seen = True
            elapsed = time.monotonic() - self.call.started
            self.call.span.set_attribute(_TIME_TO_FIRST_CHUNK, elapsed)
        # A chunk that does not decode: the stream raises it when it decodes it.
        with contextlib.suppress(*DECODE_ERRORS):
            self.chunks.add(item)

    def finish(self, error: BaseException | None = None) -> None:
        if self.call.ended:
            return
        if self.seen:
            self.call.answered(*self.chunks.result())
        self.call.end(error)


async def _observe(
    items: AsyncGenerator[Any, None], recorder: _StreamRecorder
) -> AsyncGenerator[Any, None]:
    """A stream's chunks, read by read, each shown to ``recorder``; ends the span."""
    try:
        async for batch in items:
            for item in batch:
                recorder.add(item)
            yield batch
    except GeneratorExit:
        recorder.finish()
        await items.aclose()  # release the response now, not when collected
        raise
    except BaseException as exc:
        recorder.finish(exc)
        raise
    recorder.finish()


def _outcome_of(answer: object) -> _Outcome | None:
    try:
        return msgspec.convert(answer, _Outcome, from_attributes=True)
    except msgspec.ValidationError:
        return None


class _Tracing:
    """The tracer and the settings the wrapped pipeline records with."""

    def __init__(self, tracer: Tracer, *, capture: bool) -> None:
        self.tracer = tracer
        self.capture = capture

    def start(self, client: BaseClient, path: str, body: Mapping[str, object]) -> _Call:
        operation = _OPERATIONS.get(path) or path.rstrip("/").rpartition("/")[2]
        attributes: dict[str, AttributeValue] = {
            _OPERATION: operation,
            _PROVIDER: _PROVIDER_NAME,
        }
        model = body.get("model")
        if isinstance(model, str):
            attributes[_REQUEST_MODEL] = model
        address, port = _server(client.base_url)
        if address:
            attributes["server.address"] = address
        if port:
            attributes["server.port"] = port
        attributes.update(_request_attributes(body))
        if self.capture:
            attributes[_INPUT_MESSAGES] = _json(_input_messages(body))
        name = f"{operation} {model}" if isinstance(model, str) else operation
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return _Call(span, capture=self.capture)

    def finish_answer(self, call: _Call, result: object) -> None:
        """A whole answer (or its raw response) came back: record it, end."""
        answer = result
        if isinstance(result, RawResponse):
            try:
                answer = result.parse()  # parsed once: the caller gets this object
            except APIError as exc:
                call.end(exc)
                return
        outcome = _outcome_of(answer)
        if outcome is not None:
            call.answered(outcome, _output_messages(answer) if self.capture else [])
        call.end()

    def follow_stream(self, call: _Call, result: object) -> None:
        """A stream came back: its span ends when the stream does."""
        stream = result.parse() if isinstance(result, RawResponse) else result
        if not isinstance(stream, Stream):
            call.end()
            return
        content = _ACCUMULATE.get(type(stream)) if self.capture else None
        chunks = _Fold() if content is None else _Merge(content[0], content[1]())
        recorder = _StreamRecorder(call, chunks)
        stream._items = _observe(stream._items, recorder)
        vars(stream)[_RECORDER] = recorder


def _calling(
    tracing: _Tracing, original: Callable[..., Any], *, stream: bool
) -> Callable[..., Any]:
    """``BaseClient._request`` or ``_stream``, in a span of its own."""

    @functools.wraps(original)
    async def call(
        self: BaseClient,
        path: str,
        body: Mapping[str, object],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        current = tracing.start(self, path, body)
        token = _CALL.set(current)
        try:
            with trace.use_span(
                current.span,
                end_on_exit=False,
                record_exception=False,
                set_status_on_exception=False,
            ):
                result = await original(self, path, body, *args, **kwargs)
        except BaseException as exc:
            current.end(exc)
            raise
        finally:
            _CALL.reset(token)
        if stream:
            tracing.follow_stream(current, result)
        else:
            tracing.finish_answer(current, result)
        return result

    return call


def _attempting(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseClient._attempt``, telling the current call what each attempt got."""

    @functools.wraps(original)
    async def attempt(
        self: BaseClient,
        session: Any,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        call = _CALL.get()
        if call is None:
            return await original(self, session, url, payload, headers, *args, **kwargs)
        call.attempting(headers)
        try:
            response = await original(
                self, session, url, payload, headers, *args, **kwargs
            )
        except APIStatusError as exc:
            call.responded(exc.status_code, exc.request_id, {})
            raise
        # The headers as sent: request hooks may have changed them.
        sent = response.request_info.headers
        call.responded(response.status, request_id_of(response.headers), sent)
        return response

    return attempt


def _closing(original: Callable[[Stream[Any]], None]) -> Callable[[Stream[Any]], None]:
    """``Stream._close``: closing a stream early ends its span too."""

    @functools.wraps(original)
    def close(self: Stream[Any]) -> None:
        original(self)
        recorder = vars(self).get(_RECORDER)
        if recorder is not None:
            recorder.finish()

    return close


class EnkryptInstrumentor:
    """Records an OpenTelemetry span for every call of every `EnkryptClient`.

    There is one instrumentor per process: ``EnkryptInstrumentor()`` always
    returns the same object, and instrumenting twice records each call once.

    Examples:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> instrumentor = EnkryptInstrumentor()
        >>> instrumentor.instrument(tracer_provider=TracerProvider())
        >>> instrumentor.uninstrument()
    """

    _instance: ClassVar[EnkryptInstrumentor | None] = None
    _originals: dict[tuple[type[Any], str], Any]

    def __new__(cls) -> EnkryptInstrumentor:
        """The one instrumentor of the process."""
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._originals = {}
            cls._instance = instance
        return cls._instance

    @property
    def is_instrumented(self) -> bool:
        """True between `instrument` and `uninstrument`."""
        return bool(self._originals)

    def instrument(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        capture_content: bool = False,
    ) -> None:
        """Start recording a span per call, in every client, existing or new.

        A second call while instrumented changes nothing: `uninstrument` first
        to change the provider or the content setting. Call it at startup,
        before the calls to trace.

        Args:
            tracer_provider: Where the spans go; None: the global provider
                (``opentelemetry.trace.set_tracer_provider``).
            capture_content: Also record the prompt or messages sent
                (``gen_ai.input.messages``) and the answer's messages
                (``gen_ai.output.messages``), as JSON; off by default, as they
                may hold personal data.
        """
        if self._originals:
            return
        tracer = trace.get_tracer(
            "enkrypt_async", __version__, tracer_provider=tracer_provider
        )
        tracing = _Tracing(tracer, capture=capture_content)
        originals: dict[tuple[type[Any], str], Any] = {
            (BaseClient, "_request"): BaseClient.__dict__["_request"],
            (BaseClient, "_stream"): BaseClient.__dict__["_stream"],
            (BaseClient, "_attempt"): BaseClient.__dict__["_attempt"],
            (Stream, "_close"): Stream.__dict__["_close"],
        }
        wrappers: Mapping[str, Callable[..., Any]] = {
            "_request": _calling(
                tracing, originals[BaseClient, "_request"], stream=False
            ),
            "_stream": _calling(tracing, originals[BaseClient, "_stream"], stream=True),
            "_attempt": _attempting(originals[BaseClient, "_attempt"]),
            "_close": _closing(originals[Stream, "_close"]),
        }
        self._originals = originals
        for owner, name in originals:
            setattr(owner, name, wrappers[name])

    def uninstrument(self) -> None:
        """Stop recording and restore the client as it was (idempotent).

        A stream already open keeps its span until it ends or is collected.
        """
        originals, self._originals = self._originals, {}
        for (owner, name), original in originals.items():
            setattr(owner, name, original)

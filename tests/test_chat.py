"""What only chat completions have: messages, tools, deltas and their assembly.

Everything chat shares with completions (errors, blocks, retries, timeouts,
release, secret hygiene) is tested for both resources through the ``resource``
fixture; here, the request body chat sends, the refusal of malformed ``messages``,
the decoding of a whole answer, and the assembly of streamed deltas by `collect`
and by a caller's own `ChatCompletionAccumulator`. Real aiohttp.web servers on
127.0.0.1 record what they receive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from enkrypt_async import (
    NOT_GIVEN,
    ChatCompletion,
    ChatCompletionAccumulator,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionStream,
    ConfigurationError,
    EnkryptClient,
    ToolCallFunction,
)

from .conftest import (
    CHAT,
    REFERENCE,
    ClientFactory,
    ServerFactory,
    checked_out,
    json_response,
)

DONE = b"data: [DONE]\n\n"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather and time in Paris?"},
]
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
DETECTIONS: dict[str, Any] = REFERENCE["enkrypt_policy_detections"]
USAGE: dict[str, Any] = {
    "prompt_tokens": 40,
    "completion_tokens": 25,
    "total_tokens": 65,
    "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
}


# --- a recording proxy ------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]
    body: dict[str, Any]


class Recorder:
    """A chat proxy that records each request and answers "hi", whole or streamed."""

    def __init__(self) -> None:
        self.requests: list[Received] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(request.path, CIMultiDict(request.headers), body))
        if not body.get("stream"):
            return json_response(CHAT.body("hi"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + CHAT.chunk("hi") + b"\n\n" + DONE)
        await response.write_eof()
        return response


async def send(
    make_server: ServerFactory, make_client: ClientFactory, **kwargs: Any
) -> Received:
    """What the proxy received for one ``chat.completions.create(**kwargs)``."""
    recorder = Recorder()
    client = make_client(base_url=await make_server(recorder.handle))
    answer = await client.chat.completions.create(**kwargs)
    if isinstance(answer, ChatCompletionStream):
        answer = await answer.collect()
    assert answer.choices[0].message.content == "hi"
    [received] = recorder.requests
    assert received.path == "/ai-proxy/chat/completions"
    return received


# --- 1. The request body ------------------------------------------------------------


async def test_only_the_messages_are_sent_when_nothing_else_is_given(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    received = await send(make_server, make_client, messages=MESSAGES)
    assert received.body == {"messages": MESSAGES}
    assert received.headers["Accept"] == "application/json"


#: Each case: parameters given to create(), and so the body fields besides messages.
WIRE_CASES: dict[str, dict[str, Any]] = {
    "model": {"model": "gpt-4o"},
    "max_tokens": {"max_tokens": 16},
    "max_completion_tokens": {"max_completion_tokens": 64},
    "temperature-zero": {"temperature": 0},
    "top_p": {"top_p": 0.9},
    "n": {"n": 2},
    "stop-string": {"stop": "END"},
    "stop-list": {"stop": ["a", "b"]},
    "seed": {"seed": 42},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "presence_penalty": {"presence_penalty": -0.5},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "logprobs-false": {"logprobs": False},
    "logprobs-top_logprobs": {"logprobs": True, "top_logprobs": 3},
    "tools": {"tools": [TOOL]},
    "tool_choice-required": {"tool_choice": "required"},
    "tool_choice-named": {
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    },
    "parallel_tool_calls-false": {"parallel_tool_calls": False},
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        }
    },
    "enkrypt_context": {"enkrypt_context": "Paris is in France."},
    "user": {"user": "user-7"},
}
PARAMETERS = [pytest.param(case, id=name) for name, case in WIRE_CASES.items()]


@pytest.mark.parametrize("parameters", PARAMETERS)
async def test_each_parameter_is_sent_under_its_wire_name_and_nothing_else(
    make_server: ServerFactory, make_client: ClientFactory, parameters: dict[str, Any]
) -> None:
    received = await send(make_server, make_client, messages=MESSAGES, **parameters)
    assert received.body == {"messages": MESSAGES, **parameters}


async def test_every_parameter_at_once_with_a_stream(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    parameters: dict[str, Any] = {}
    for case in WIRE_CASES.values():
        parameters.update(case)  # a later case of the same field wins
    received = await send(
        make_server,
        make_client,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **parameters,
    )
    assert received.body == {
        "messages": MESSAGES,
        **parameters,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert received.headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize(
    "container",
    [
        pytest.param(list, id="list"),
        pytest.param(tuple, id="tuple"),
        pytest.param(lambda items: (item for item in items), id="generator"),
    ],
)
async def test_tuples_and_generators_are_sent_as_lists(
    make_server: ServerFactory,
    make_client: ClientFactory,
    container: Any,
) -> None:
    received = await send(
        make_server,
        make_client,
        messages=container(MESSAGES),
        tools=container([TOOL]),
        stop=("a", "b"),
    )
    assert received.body == {"messages": MESSAGES, "tools": [TOOL], "stop": ["a", "b"]}


async def test_not_given_is_left_out_and_extra_body_is_merged_last(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    received = await send(
        make_server,
        make_client,
        messages=MESSAGES,
        model=NOT_GIVEN,
        temperature=0.2,
        extra_body={"temperature": 1.0, "metadata": {"k": "v"}, "user": None},
    )
    assert received.body == {
        "messages": MESSAGES,
        "temperature": 1.0,
        "metadata": {"k": "v"},
        "user": None,
    }


async def test_per_request_options_are_headers_never_body_fields(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    recorder = Recorder()
    client = make_client(
        base_url=await make_server(recorder.handle), tags="client-tag", max_retries=2
    )
    await client.chat.completions.create(
        messages=MESSAGES,
        deployment="other-deployment",
        tags=["r1", "r2"],
        refresh_cache=True,
        extra_headers={"X-Trace": "t1"},
        timeout=5.0,
        max_retries=0,
    )
    [received] = recorder.requests
    assert received.body == {"messages": MESSAGES}
    assert received.headers["X-Enkrypt-Deployment"] == "other-deployment"
    assert received.headers["X-Enkrypt-Tags"] == "r1,r2"
    assert received.headers["X-Enkrypt-Refresh-Cache"] == "true"
    assert received.headers["X-Trace"] == "t1"


# --- 2. Malformed messages are refused before anything is sent ----------------------

INVALID_MESSAGES = [
    pytest.param([], id="empty-list"),
    pytest.param((), id="empty-tuple"),
    pytest.param("Hello", id="a-string"),
    pytest.param(b"Hello", id="bytes"),
    pytest.param({"role": "user", "content": "Hello"}, id="a-dict"),
    pytest.param(None, id="none"),
    pytest.param(42, id="a-number"),
    pytest.param(["Hello"], id="a-string-message"),
    pytest.param([{"content": "Hello"}], id="no-role"),
    pytest.param([{"role": None, "content": "Hello"}], id="null-role"),
    pytest.param([{"role": "robot", "content": "Hello"}], id="unknown-role"),
    pytest.param([{"role": "USER", "content": "Hello"}], id="role-in-capitals"),
    pytest.param([("role", "user")], id="a-pair-not-a-dict"),
    pytest.param([{"role": "user", "content": "Hello"}, None], id="a-later-none"),
]


@pytest.mark.parametrize(
    "stream", [pytest.param(False, id="whole"), pytest.param(True, id="stream")]
)
@pytest.mark.parametrize("messages", INVALID_MESSAGES)
async def test_malformed_messages_raise_configuration_error_before_sending(
    make_server: ServerFactory, make_client: ClientFactory, messages: Any, stream: bool
) -> None:
    recorder = Recorder()
    client = make_client(base_url=await make_server(recorder.handle))
    with pytest.raises(ConfigurationError, match="message"):
        await client.chat.completions.create(messages=messages, stream=stream)
    assert recorder.requests == []


# --- 3. A whole answer decodes field for field --------------------------------------

WHOLE: dict[str, Any] = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_2f57f81c11",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris"}',
                        },
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                    },
                ],
                "refusal": None,
                "annotations": [],
                "a_future_message_field": {"x": 1},
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": "I can't help with that.",
            },
            "finish_reason": "stop",
        },
        {
            "index": 2,
            "message": {
                "role": "assistant",
                "content": "See [1].",
                "annotations": [
                    {
                        "type": "url_citation",
                        "url_citation": {"url": "https://example.com", "title": "Ex"},
                    }
                ],
            },
            "finish_reason": "stop",
            "logprobs": {
                "content": [
                    {
                        "token": "See",
                        "logprob": -0.01,
                        "bytes": [83, 101, 101],
                        "top_logprobs": [
                            {"token": "See", "logprob": -0.01, "bytes": [83, 101, 101]},
                            {"token": "Look", "logprob": -4.6, "bytes": None},
                        ],
                    }
                ],
                "refusal": None,
            },
            "a_future_choice_field": [1, 2],
        },
    ],
    "usage": {**USAGE, "a_future_usage_field": 3},
    "enkrypt_policy_detections": DETECTIONS,
    "a_future_top_level_field": {"nested": [1, {"deep": True}]},
}


async def test_a_whole_answer_decodes_tool_calls_refusal_logprobs_and_usage_details(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(WHOLE)

    client = make_client(base_url=await make_server(handler))
    chat = await client.chat.completions.create(messages=MESSAGES)
    assert isinstance(chat, ChatCompletion)
    assert (chat.id, chat.object, chat.created, chat.model) == (
        "chatcmpl-9",
        "chat.completion",
        1_700_000_000,
        "gpt-4o-2024-08-06",
    )
    assert chat.system_fingerprint == "fp_2f57f81c11"
    assert chat.service_tier == "default"
    tools, refused, cited = chat.choices
    assert [c.index for c in chat.choices] == [0, 1, 2]

    assert tools.finish_reason == "tool_calls"
    assert tools.message.content is None
    assert tools.message.tool_calls == [
        ChatCompletionMessageToolCall(
            id="call_a",
            type="function",
            function=ToolCallFunction(
                name="get_weather", arguments='{"city": "Paris"}'
            ),
        ),
        ChatCompletionMessageToolCall(
            id="call_b",
            type="function",
            function=ToolCallFunction(name="get_time", arguments='{"tz": "CET"}'),
        ),
    ]
    assert tools.message.annotations == []

    assert refused.message.refusal == "I can't help with that."
    assert refused.message.content is None
    assert refused.message.tool_calls is None

    assert cited.message.content == "See [1]."
    assert cited.message.annotations == WHOLE["choices"][2]["message"]["annotations"]
    assert cited.logprobs is not None
    assert cited.logprobs.refusal is None
    assert cited.logprobs.content is not None
    [token] = cited.logprobs.content
    assert (token.token, token.logprob, token.bytes) == ("See", -0.01, [83, 101, 101])
    assert [(t.token, t.logprob, t.bytes) for t in token.top_logprobs] == [
        ("See", -0.01, [83, 101, 101]),
        ("Look", -4.6, None),
    ]

    usage = chat.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        40,
        25,
        65,
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 32
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 12
    assert chat.enkrypt_policy_detections is not None
    assert chat.enkrypt_policy_detections.flagged == {"input": ["nsfw"], "output": []}


# --- 4. Streamed deltas and their assembly ------------------------------------------


def chunk(*choices: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A chunk with ``choices`` (none: a usage chunk) and other top-level fields."""
    return {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "system_fingerprint": "fp_2f57f81c11",
        "choices": list(choices),
        **fields,
    }


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    """One choice of a chunk: ``fields`` are its delta."""
    return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}


def fragment(index: int, arguments: str, **first: str) -> dict[str, Any]:
    """A tool-call fragment; ``first`` holds id, type and name where sent."""
    function = {"arguments": arguments}
    if "name" in first:
        function["name"] = first.pop("name")
    return {"index": index, **first, "function": function}


#: Content, then two tool calls whose fragments interleave; the finish reason and
#: the detections in one chunk, the usage alone in the last.
TOOL_STREAM = [
    chunk(delta(role="assistant", content="")),
    chunk(delta(content="Checking ")),
    chunk(delta(content="both.")),
    chunk(
        delta(
            tool_calls=[
                fragment(0, "", id="call_a", type="function", name="get_weather")
            ]
        )
    ),
    chunk(delta(tool_calls=[fragment(0, '{"city": ')])),
    chunk(
        delta(
            tool_calls=[
                fragment(1, '{"tz"', id="call_b", type="function", name="get_time")
            ]
        )
    ),
    chunk(delta(tool_calls=[fragment(0, '"Paris"}')])),
    # Some providers repeat the first fragment's fields empty: the first ones stay.
    chunk(delta(tool_calls=[fragment(1, ': "CET"}', id="", type="", name="")])),
    chunk(delta(finish="tool_calls"), enkrypt_policy_detections=DETECTIONS),
    chunk(usage=USAGE),
]


async def sse_server(
    make_server: ServerFactory, chunks: Sequence[dict[str, Any]]
) -> str:
    """Serve ``chunks`` as one event stream ended by ``[DONE]``, in one write."""
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body + DONE)
        await response.write_eof()
        return response

    return await make_server(handler)


async def open_stream(client: EnkryptClient) -> ChatCompletionStream:
    stream = await client.chat.completions.create(messages=MESSAGES, stream=True)
    assert isinstance(stream, ChatCompletionStream)
    return stream


async def test_a_stream_yields_the_role_first_then_content_and_tool_call_fragments(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    client = make_client(base_url=await sse_server(make_server, TOOL_STREAM))
    stream = await open_stream(client)
    async with stream:
        chunks = [item async for item in stream]
    assert all(isinstance(item, ChatCompletionChunk) for item in chunks)
    assert len(chunks) == len(TOOL_STREAM)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.role for c in chunks[1:-1]] == [None] * 8
    assert [c.choices[0].delta.content for c in chunks[:3]] == [
        "",
        "Checking ",
        "both.",
    ]
    fragments = [
        (f.index, f.id, f.type, f.function.name, f.function.arguments)
        for item in chunks
        for choice in item.choices
        for f in choice.delta.tool_calls or ()
        if f.function is not None
    ]
    assert fragments == [
        (0, "call_a", "function", "get_weather", ""),
        (0, None, None, None, '{"city": '),
        (1, "call_b", "function", "get_time", '{"tz"'),
        (0, None, None, None, '"Paris"}'),
        (1, "", "", "", ': "CET"}'),
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 65
    assert checked_out(client) == 0


async def test_collect_assembles_tool_calls_content_role_finish_usage_and_detections(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    client = make_client(base_url=await sse_server(make_server, TOOL_STREAM))
    stream = await open_stream(client)
    chat = await stream.collect()
    assert stream.closed
    assert checked_out(client) == 0
    assert isinstance(chat, ChatCompletion)
    assert (chat.id, chat.object, chat.created, chat.model) == (
        "chatcmpl-7",
        "chat.completion",
        1_700_000_000,
        "gpt-4o",
    )
    assert chat.system_fingerprint == "fp_2f57f81c11"
    [choice] = chat.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Checking both."
    assert choice.message.refusal is None
    assert choice.message.tool_calls == [
        ChatCompletionMessageToolCall(
            id="call_a",
            type="function",
            function=ToolCallFunction(
                name="get_weather", arguments='{"city": "Paris"}'
            ),
        ),
        ChatCompletionMessageToolCall(
            id="call_b",
            type="function",
            function=ToolCallFunction(name="get_time", arguments='{"tz": "CET"}'),
        ),
    ]
    assert choice.finish_reason == "tool_calls"
    assert chat.usage is not None
    assert chat.usage.prompt_tokens_details is not None
    assert chat.usage.prompt_tokens_details.cached_tokens == 32
    assert chat.enkrypt_policy_detections is not None
    assert chat.enkrypt_policy_detections.flagged == {"input": ["nsfw"], "output": []}


async def test_collect_merges_two_interleaved_choices_each_on_its_own(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    chunks = [
        chunk(
            delta(0, role="assistant", content=""), enkrypt_policy_detections=DETECTIONS
        ),
        chunk(delta(1, role="assistant", content="")),
        chunk(delta(1, refusal="I can't ")),
        chunk(delta(0, content="A1 ")),
        chunk(delta(1, refusal="help.")),
        chunk(delta(1, finish="stop")),
        chunk(delta(0, content="A2")),
        chunk(delta(0, finish="length")),
        chunk(usage=USAGE),
    ]
    client = make_client(base_url=await sse_server(make_server, chunks))
    chat = await (await open_stream(client)).collect()
    assert [
        (c.index, c.message.role, c.message.content, c.message.refusal, c.finish_reason)
        for c in chat.choices
    ] == [
        (0, "assistant", "A1 A2", None, "length"),
        (1, "assistant", None, "I can't help.", "stop"),
    ]
    # Each from whichever chunk carried it: the first and the last here.
    assert chat.enkrypt_policy_detections is not None
    assert chat.enkrypt_policy_detections.flagged["input"] == ["nsfw"]
    assert chat.usage is not None
    assert chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == 12


async def test_a_caller_forwarding_chunks_builds_the_same_answer_with_the_accumulator(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    client = make_client(base_url=await sse_server(make_server, TOOL_STREAM))
    forwarded: list[ChatCompletionChunk] = []
    partial: list[ChatCompletion] = []
    accumulator = ChatCompletionAccumulator()
    stream = await open_stream(client)
    async with stream:
        async for item in stream:
            forwarded.append(item)  # e.g. to a browser, as it arrives
            accumulator.add(item)
            if len(forwarded) == 5:
                partial.append(accumulator.result())
    assert len(forwarded) == len(TOOL_STREAM)
    # The answer so far, at any point: here half of the first call's arguments.
    [so_far] = partial
    assert so_far.choices[0].message.content == "Checking both."
    assert so_far.choices[0].message.tool_calls is not None
    assert so_far.choices[0].message.tool_calls[0].function.arguments == '{"city": '
    # At the end, exactly what collect() gives for the same stream.
    assert accumulator.result() == await (await open_stream(client)).collect()


def test_an_accumulator_that_took_nothing_gives_an_empty_chat_completion() -> None:
    chat = ChatCompletionAccumulator().result()
    assert isinstance(chat, ChatCompletion)
    assert chat.object == "chat.completion"
    assert chat.choices == []
    assert chat.usage is None


def tool_call_stream(count: int) -> list[dict[str, Any]]:
    """``count`` chunks: a role, two tool calls' fragments in turn, a finish."""
    pieces = count - 4
    return [
        chunk(delta(role="assistant")),
        chunk(
            delta(
                tool_calls=[fragment(0, '{"a": "', id="c0", type="function", name="f")]
            )
        ),
        chunk(
            delta(
                tool_calls=[fragment(1, '{"b": "', id="c1", type="function", name="g")]
            )
        ),
        *(
            chunk(delta(tool_calls=[fragment(i % 2, "0123456789")]))
            for i in range(pieces)
        ),
        chunk(
            delta(
                finish="tool_calls", tool_calls=[fragment(0, '"}'), fragment(1, '"}')]
            )
        ),
    ]


async def test_collect_of_a_two_thousand_chunk_tool_call_stream_assembles_every_piece(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    # The accumulator keeps the fragments in lists and joins them once: the work
    # is linear in the number of chunks (no timing is asserted here).
    chunks = tool_call_stream(2_000)
    assert len(chunks) == 2_000
    client = make_client(base_url=await sse_server(make_server, chunks))
    chat = await (await open_stream(client)).collect()
    calls = chat.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name) for c in calls] == [("c0", "f"), ("c1", "g")]
    pieces_each = (2_000 - 4) // 2
    assert json.loads(calls[0].function.arguments) == {"a": "0123456789" * pieces_each}
    assert json.loads(calls[1].function.arguments) == {"b": "0123456789" * pieces_each}
    assert chat.choices[0].finish_reason == "tool_calls"

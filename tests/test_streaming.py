"""Streams against real aiohttp.web servers on 127.0.0.1.

Tests taking ``resource`` hold for `CompletionStream` and `ChatCompletionStream`
alike; the others are about completion chunks (their fields, `collect`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from aiohttp import web

from enkrypt_async import (
    APIConnectionError,
    APITimeoutError,
    Completion,
    CompletionStream,
    DecodeError,
    GuardrailsBlockedError,
    RateLimitError,
    StreamConsumedError,
    StreamError,
    Timeout,
)

from .conftest import (
    COMPLETIONS,
    REFERENCE,
    AnyStream,
    ClientFactory,
    Handler,
    Resource,
    ServerFactory,
    checked_out,
    hold_until_gone,
    json_response,
)

DONE = b"data: [DONE]\n\n"


def chunk(text: str, index: int = 0, finish: str | None = None, **extra: Any) -> bytes:
    """The JSON of one streamed completion chunk."""
    body = {
        "id": "cmpl-1",
        "object": "text.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"text": text, "index": index, "finish_reason": finish, "logprobs": None}
        ],
    }
    body.update(extra)
    return json.dumps(body).encode()


def event(data: bytes, eol: bytes = b"\n") -> bytes:
    return b"data: " + data + eol + eol


async def sse_server(
    make_server: ServerFactory,
    pieces: Sequence[bytes],
    *,
    pause: float = 0.0,
    headers: dict[str, str] | None = None,
) -> str:
    """Serve ``pieces`` as one text/event-stream body, one write each."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **(headers or {})}
        )
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            if pause:
                await asyncio.sleep(pause)
        await response.write_eof()
        return response

    return await make_server(handler)


def one_chunk_then_silence(resource: Resource) -> Handler:
    """A stream handler that sends one chunk, then nothing until the client leaves."""
    return chunks_then_silence(resource, ["a"])


def chunks_then_silence(
    resource: Resource, texts: Sequence[str], pause: float = 0.0
) -> Handler:
    """A stream handler sending a chunk of each text, ``pause`` seconds apart, then
    nothing until the client leaves."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for text in texts:
            await response.write(event(resource.chunk(text)))
            await asyncio.sleep(pause)
        await hold_until_gone(request)
        return response

    return handler


async def stream_of(
    make_client: ClientFactory, base_url: str, **kwargs: Any
) -> CompletionStream:
    client = make_client(base_url=base_url)
    stream = await client.completions.create(prompt="hi", stream=True, **kwargs)
    assert isinstance(stream, CompletionStream)
    return stream


async def open_stream(
    resource: Resource, make_client: ClientFactory, base_url: str, **kwargs: Any
) -> AnyStream:
    client = make_client(base_url=base_url)
    return await resource.create(client, "hi", stream=True, **kwargs)


async def read_into(resource: Resource, stream: AnyStream, seen: list[str]) -> None:
    """Append each chunk's text to ``seen`` as it arrives (kept if it fails)."""
    async with stream:
        async for item in stream:
            seen.append(resource.chunk_text(item))  # noqa: PERF401 - partial on error


async def texts(resource: Resource, stream: AnyStream) -> list[str]:
    async with stream:
        return [resource.chunk_text(c) async for c in stream]


async def test_stream_yields_completion_chunks_until_done(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    pieces = [
        event(chunk("Why ")),
        event(chunk("did ")),
        event(chunk("it", finish="length")),
    ]
    base_url = await sse_server(
        make_server, [*pieces, DONE], headers={"x-request-id": "req-s1"}
    )
    stream = await stream_of(make_client, base_url)
    assert stream.request_id == "req-s1"
    assert stream.response_headers["Content-Type"] == "text/event-stream"
    chunks: list[Completion] = []
    async with stream:
        async for item in stream:
            assert isinstance(item, Completion)
            chunks.append(item)
    assert [c.choices[0].text for c in chunks] == ["Why ", "did ", "it"]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert stream.closed


@pytest.mark.parametrize(
    "eol",
    [
        pytest.param(b"\n", id="LF"),
        pytest.param(b"\r\n", id="CRLF"),
        pytest.param(b"\r", id="CR"),
    ],
)
async def test_every_line_ending_framing_works(
    make_server: ServerFactory,
    make_client: ClientFactory,
    eol: bytes,
    resource: Resource,
) -> None:
    body = (
        event(resource.chunk("a"), eol)
        + event(resource.chunk("b"), eol)
        + b"data: [DONE]"
        + eol
        + eol
    )
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    assert await texts(resource, stream) == ["a", "b"]


async def test_comments_ids_and_retry_fields_between_events_are_skipped(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = (
        b": keep-alive\n\n"
        + b"id: 1\nretry: 3000\n"
        + event(resource.chunk("a"))
        + b": ping\n\nevent: ping\n\n"
        + b"id: 2\n"
        + event(resource.chunk("b"))
        + b"data:\n\n"
        + DONE
    )
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    assert await texts(resource, stream) == ["a", "b"]


async def test_unknown_event_types_are_ignored(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = b"event: heartbeat\ndata: {}\n\n" + event(resource.chunk("a")) + DONE
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    assert await texts(resource, stream) == ["a"]


async def test_events_split_at_every_byte_arrive_intact(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = event(resource.chunk("héllo wörld ✓ 🎉")) + event(resource.chunk("ß")) + DONE
    pieces = [body[i : i + 1] for i in range(len(body))]
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, pieces, pause=0.0005)
    )
    assert await texts(resource, stream) == ["héllo wörld ✓ 🎉", "ß"]


@pytest.mark.parametrize("split", [1, 7, 20, 41, 42, 43, 60])
async def test_a_split_inside_a_multibyte_character_is_rejoined(
    make_server: ServerFactory, make_client: ClientFactory, split: int
) -> None:
    body = event(
        json.dumps({"choices": [{"text": "ü✓🎉"}]}, ensure_ascii=False).encode()
    )
    body += DONE
    pieces = [body[:split], body[split:]]
    stream = await stream_of(
        make_client, await sse_server(make_server, pieces, pause=0.01)
    )
    assert await texts(COMPLETIONS, stream) == ["ü✓🎉"]


async def test_json_split_over_several_data_lines_is_joined(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    # The chunk's JSON cut into three data lines after its commas.
    lines = resource.chunk("joined").replace(b", ", b",\ndata: ")
    body = b"data: " + lines + b"\n\n" + DONE
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    assert await texts(resource, stream) == ["joined"]


async def test_interleaved_choices_collect_into_one_completion(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    pieces = [
        event(chunk("A1 ", 0)),
        event(chunk("B1 ", 1)),
        event(chunk("B2", 1, "stop")),
        event(chunk("A2", 0, "length")),
        DONE,
    ]
    stream = await stream_of(make_client, await sse_server(make_server, pieces))
    merged = await stream.collect()
    assert [(c.index, c.text, c.finish_reason) for c in merged.choices] == [
        (0, "A1 A2", "length"),
        (1, "B1 B2", "stop"),
    ]
    assert merged.id == "cmpl-1"
    assert stream.closed


async def test_include_usage_chunk_and_detections_are_kept_by_collect(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    detections = REFERENCE["enkrypt_policy_detections"]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    usage_chunk = json.dumps({"id": "cmpl-1", "choices": [], "usage": usage}).encode()
    pieces = [
        event(chunk("a")),
        event(chunk("b", finish="stop", enkrypt_policy_detections=detections)),
        event(usage_chunk),
        DONE,
    ]
    stream = await stream_of(
        make_client,
        await sse_server(make_server, pieces),
        stream_options={"include_usage": True},
    )
    merged = await stream.collect()
    assert merged.choices[0].text == "ab"
    assert merged.usage is not None
    assert merged.usage.total_tokens == 5
    assert merged.enkrypt_policy_detections is not None
    assert merged.enkrypt_policy_detections.flagged == {"input": ["nsfw"], "output": []}


async def test_collect_on_a_partly_consumed_stream_merges_the_rest(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    pieces = [
        event(chunk("a")),
        event(chunk("b")),
        event(chunk("c", finish="stop")),
        DONE,
    ]
    stream = await stream_of(make_client, await sse_server(make_server, pieces))
    first = await stream.__anext__()
    assert first.choices[0].text == "a"
    merged = await stream.collect()
    assert merged.choices[0].text == "bc"
    assert merged.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("payload", "message", "code", "kind"),
    [
        pytest.param(
            {"error": {"message": "output blocked", "type": "guardrails", "code": 451}},
            "output blocked",
            451,
            "guardrails",
            id="object",
        ),
        pytest.param(
            {"error": "plain failure"}, "plain failure", None, None, id="string"
        ),
    ],
)
async def test_error_event_in_stream_raises_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    payload: dict[str, Any],
    message: str,
    code: object,
    kind: str | None,
    resource: Resource,
) -> None:
    pieces = [event(resource.chunk("a")), event(json.dumps(payload).encode()), DONE]
    client = make_client(base_url=await sse_server(make_server, pieces))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    with pytest.raises(StreamError, match=message) as info:
        await read_into(resource, stream, seen)
    assert seen == ["a"]
    assert info.value.code == code
    assert info.value.type == kind
    assert checked_out(client) == 0


async def test_sse_error_event_type_raises_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = b"event: error\ndata: upstream went away\n\n"
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    with pytest.raises(StreamError, match="upstream went away"):
        await texts(resource, stream)


#: What may follow the last chunk of a stream that never sends ``[DONE]``.
TRUNCATIONS = [
    pytest.param(lambda resource: b"", id="clean-end"),
    pytest.param(lambda resource: b"data: [DO", id="partial-done"),
    pytest.param(
        lambda resource: b"data: " + resource.chunk("lost") + b"\n",
        id="unterminated",
    ),
]


@pytest.mark.parametrize("tail", TRUNCATIONS)
async def test_stream_ending_without_done_raises_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    tail: Callable[[Resource], bytes],
    resource: Resource,
) -> None:
    pieces = [event(resource.chunk("a")), tail(resource)]
    client = make_client(base_url=await sse_server(make_server, pieces))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    with pytest.raises(StreamError, match="truncated"):
        await read_into(resource, stream, seen)
    assert seen == ["a"]
    assert checked_out(client) == 0


async def test_malformed_chunk_raises_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    pieces = [event(resource.chunk("a")[:-3]), DONE]  # the JSON cut short
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, pieces)
    )
    with pytest.raises(StreamError, match="Malformed chunk"):
        await texts(resource, stream)


async def test_event_over_max_event_size_raises_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    pieces = [event(resource.chunk("x" * 5000)), DONE]
    client = make_client(
        base_url=await sse_server(make_server, pieces), max_event_size=1024
    )
    stream = await resource.create(client, "hi", stream=True)
    with pytest.raises(StreamError, match="1024"):
        await texts(resource, stream)
    assert checked_out(client) == 0


async def test_http_error_raises_at_await_before_any_chunk(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response({"error": {"message": "slow down"}}, 429)

    client = make_client(base_url=await make_server(handler))
    with pytest.raises(RateLimitError, match="slow down"):
        await resource.create(client, "hi", stream=True)
    assert checked_out(client) == 0


async def test_guardrails_block_on_a_stream_raises_at_await(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = {
        "error": {"message": "blocked"},
        "enkrypt_policy_detections": {
            "input_guardrails": {"summary": {"injection_attack": 1}}
        },
    }

    async def handler(request: web.Request) -> web.Response:
        return json_response(body, 400)

    client = make_client(base_url=await make_server(handler))
    with pytest.raises(GuardrailsBlockedError) as info:
        await resource.create(client, "hi", stream=True)
    assert info.value.detections.flagged["input"] == ["injection_attack"]


async def test_json_answer_to_a_stream_request_is_one_chunk(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(resource.body("whole"))

    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    assert await texts(resource, stream) == ["whole"]
    assert checked_out(client) == 0


async def test_malformed_json_answer_to_a_stream_request_raises_decode_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(b"{oops")

    stream = await open_stream(resource, make_client, await make_server(handler))
    with pytest.raises(DecodeError):
        await texts(resource, stream)


async def test_iterating_a_consumed_stream_raises_stream_consumed_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    stream = await open_stream(
        resource,
        make_client,
        await sse_server(make_server, [event(resource.chunk("a")), DONE]),
    )
    assert await texts(resource, stream) == ["a"]
    with pytest.raises(StreamConsumedError, match="already consumed"):
        async for _ in stream:
            pass
    with pytest.raises(StreamConsumedError):
        await stream.collect()


async def test_stalled_server_hits_the_idle_read_timeout(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    handler = one_chunk_then_silence(resource)
    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=0.3))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    with pytest.raises(APITimeoutError, match="Timeout on reading"):
        await read_into(resource, stream, seen)
    assert seen == ["a"]
    assert checked_out(client) == 0


async def test_slow_but_steady_stream_is_not_cut_by_the_read_timeout(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    pieces = [event(resource.chunk(str(i))) for i in range(6)] + [DONE]
    client = make_client(
        base_url=await sse_server(make_server, pieces, pause=0.1),
        timeout=Timeout(read=0.5),
    )
    stream = await resource.create(client, "hi", stream=True)
    assert await texts(resource, stream) == [str(i) for i in range(6)]


async def test_a_stream_silent_after_steady_chunks_hits_the_read_timeout(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    # Steady for longer than the timeout, then silent: the silence alone counts.
    steady = [str(i) for i in range(8)]
    handler = chunks_then_silence(resource, steady, pause=0.1)
    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=0.5))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    with pytest.raises(APITimeoutError, match="Timeout on reading"):
        await read_into(resource, stream, seen)
    assert seen == steady
    assert checked_out(client) == 0


async def test_a_per_call_read_timeout_governs_its_stream(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    handler = one_chunk_then_silence(resource)
    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=60))
    stream = await resource.create(client, "hi", stream=True, timeout=0.3)
    seen: list[str] = []
    # Within seconds: the client's own 60 s would raise the same error, late.
    with pytest.raises(APITimeoutError):
        await asyncio.wait_for(read_into(resource, stream, seen), 5)
    assert seen == ["a"]


async def test_connection_reset_mid_stream_raises_our_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event(resource.chunk("a")))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    with pytest.raises((StreamError, APIConnectionError)) as info:
        await texts(resource, stream)
    assert info.value.__cause__ is not None
    assert checked_out(client) == 0


async def test_aclose_from_another_task_stops_the_reader_with_stream_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    handler = one_chunk_then_silence(resource)
    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    assert resource.chunk_text(await stream.__anext__()) == "a"
    reader = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0.05)
    await stream.aclose()
    await stream.aclose()  # idempotent
    with pytest.raises(StreamError, match="closed while"):
        await reader
    assert checked_out(client) == 0


async def test_completed_stream_returns_its_connection_to_the_pool(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    peers: set[object] = set()

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event(resource.chunk("a")))
        await response.write(DONE)
        await response.write_eof()
        return response

    client = make_client(base_url=await make_server(handler))
    for _ in range(5):
        stream = await resource.create(client, "hi", stream=True)
        assert await texts(resource, stream) == ["a"]
    assert len(peers) == 1, "the keep-alive connection is reused"
    assert checked_out(client) == 0


async def test_ten_thousand_chunks_stream_in_flat_memory(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    one = event(resource.chunk("token "))

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(one * 100)
        await response.write(DONE)
        return response

    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    count = 0
    checkpoints: list[int] = []
    tracemalloc.start()
    try:
        async with stream:
            async for _ in stream:
                count += 1
                if count % 2_000 == 0:
                    checkpoints.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert count == 10_000
    # Memory in use (the server in this process included) does not grow with the
    # number of chunks: 10,000 retained chunks would add over five megabytes.
    assert max(checkpoints) < 1024 * 1024, checkpoints
    assert checkpoints[-1] - checkpoints[0] < 256 * 1024, checkpoints


@pytest.mark.parametrize("cut", [3, 5, 8, 10])
async def test_error_event_split_across_reads_after_plain_chunks_still_raises(
    make_server: ServerFactory,
    make_client: ClientFactory,
    cut: int,
    resource: Resource,
) -> None:
    error = event(json.dumps({"error": {"message": "cut in two"}}).encode())
    body = event(resource.chunk("a")) + event(resource.chunk("b")) + error + DONE
    split = body.index(b'"error"') + cut - 3  # inside or around the key
    stream = await open_stream(
        resource,
        make_client,
        await sse_server(make_server, [body[:split], body[split:]], pause=0.05),
    )
    seen: list[str] = []
    with pytest.raises(StreamError, match="cut in two"):
        await read_into(resource, stream, seen)
    assert seen == ["a", "b"]


async def test_plain_chunks_on_the_fast_path_keep_order_across_partial_reads(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = b"".join(event(resource.chunk(f"{i:04d}")) for i in range(600)) + DONE
    # Writes cut at odd places, so reads end inside events and lines.
    cuts = [*list(range(0, len(body), 7919)), len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(cuts)]
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, pieces, pause=0.002)
    )
    assert await texts(resource, stream) == [f"{i:04d}" for i in range(600)]


async def test_a_malformed_chunk_on_the_fast_path_raises_after_the_good_ones(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = (
        event(resource.chunk("a"))
        + event(resource.chunk("b"))
        + event(b"{broken")
        + DONE
    )
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    seen: list[str] = []
    with pytest.raises(StreamError, match="Malformed chunk"):
        await read_into(resource, stream, seen)
    assert seen == ["a", "b"]


async def test_the_event_size_cap_holds_on_the_fast_path(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    small = event(resource.chunk("s"))
    body = small * 3 + event(resource.chunk("x" * 3000)) + DONE
    client = make_client(
        base_url=await sse_server(make_server, [small, body[len(small) :]], pause=0.05),
        max_event_size=2048,
    )
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    with pytest.raises(StreamError, match="2048"):
        await read_into(resource, stream, seen)
    assert seen == ["s", "s", "s"]


async def test_a_connection_reused_after_a_stream_keeps_the_read_timeout(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) == 1:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(event(resource.chunk("a")) + DONE)
            await response.write_eof()
            return response
        await hold_until_gone(request)  # the plain request that follows: no answer
        return json_response(resource.body("too late"))

    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=0.3))
    stream = await resource.create(client, "hi", stream=True)
    assert await texts(resource, stream) == ["a"]
    with pytest.raises(APITimeoutError):
        await resource.create(client, "hi")
    assert checked_out(client) == 0


async def test_a_read_of_many_chunks_is_decoded_one_chunk_at_a_time(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    # Decoding a whole read up front would keep hundreds of structs alive at once
    # and wake the garbage collector; only the chunk in hand should exist.
    body = b"".join(event(chunk(f"{i}")) for i in range(500)) + DONE
    stream = await stream_of(make_client, await sse_server(make_server, [body]))

    def completions() -> int:
        return sum(isinstance(o, Completion) for o in gc.get_objects())

    before = completions()
    alive: list[int] = []
    async with stream:
        async for item in stream:
            if item.choices[0].text in ("1", "250"):
                alive.append(completions() - before)
            del item
    assert alive == [1, 1]


async def test_plain_chunks_around_an_empty_data_event_and_after_done(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = (
        event(resource.chunk("a"))
        + b"data: \n\n"  # an empty event is skipped, like a keep-alive
        + event(resource.chunk("b"))
        + DONE
        + event(resource.chunk("after the end"))
    )
    stream = await open_stream(
        resource,
        make_client,
        await sse_server(make_server, [event(resource.chunk("0")), body]),
    )
    assert await texts(resource, stream) == ["0", "a", "b"]


async def test_a_loop_broken_off_is_resumed_by_the_next_one_without_a_gap(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    body = b"".join(event(resource.chunk(f"{i}")) for i in range(6)) + DONE
    stream = await open_stream(
        resource, make_client, await sse_server(make_server, [body])
    )
    seen: list[str] = []
    async with stream:
        async for item in stream:
            seen.append(resource.chunk_text(item))
            if len(seen) == 2:
                break
        seen.append(resource.chunk_text(await anext(stream)))
        iterator = aiter(stream)
        seen.append(resource.chunk_text(await anext(iterator)))
        seen += [resource.chunk_text(item) async for item in stream]
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)
    assert seen == [f"{i}" for i in range(6)]


async def test_a_consumer_slower_than_the_read_timeout_is_not_cut(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
) -> None:
    # The timeout is for the server's silences, not for the caller's own pace.
    body = event(resource.chunk("a")) + event(resource.chunk("b"))
    client = make_client(
        base_url=await sse_server(make_server, [body, DONE], pause=0.05),
        timeout=Timeout(read=0.2),
    )
    stream = await resource.create(client, "hi", stream=True)
    seen: list[str] = []
    async with stream:
        async for item in stream:
            seen.append(resource.chunk_text(item))
            await asyncio.sleep(0.3)
    assert seen == ["a", "b"]

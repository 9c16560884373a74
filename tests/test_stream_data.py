"""`Stream.iter_data`: each chunk's JSON bytes as received, against real servers.

The same stream ends, fails and releases its connection as it does with
``async for``; only the decoding is left out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from aiohttp import web

from enkrypt_async import (
    APITimeoutError,
    DecodeError,
    StreamBusyError,
    StreamConsumedError,
    StreamError,
    Timeout,
)

from .conftest import (
    AnyStream,
    ClientFactory,
    Resource,
    ServerFactory,
    checked_out,
    hold_until_gone,
    json_response,
)
from .test_streaming import (
    DONE,
    TRUNCATIONS,
    event,
    one_chunk_then_silence,
    sse_server,
)

#: A chunk as a provider may send it: spacing, key order and a field no model has.
ODD = (
    b'{ "choices" : [{"index":0, "text":"a", "delta":{"content":"a"}}],"x_vendor":[1]}'
)


async def read_data(stream: AnyStream, seen: list[bytes]) -> None:
    """Append each chunk's data to ``seen`` as it arrives (kept if it fails)."""
    async with stream:
        async for data in stream.iter_data():
            seen.append(data)  # noqa: PERF401 - partial on error


async def data_of(
    resource: Resource, make_client: ClientFactory, base_url: str
) -> list[bytes]:
    client = make_client(base_url=base_url)
    stream = await resource.create(client, "hi", stream=True)
    async with stream:
        found = [data async for data in stream.iter_data()]
    assert stream.closed
    assert checked_out(client) == 0
    return found


async def test_each_chunk_is_yielded_byte_for_byte_until_done(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    pieces = [
        event(ODD),
        b": a comment\n\ndata:\n\n",  # a comment and a keep-alive: no chunks
        event(resource.chunk("b"), b"\r\n"),
        DONE,
        event(resource.chunk("after done")),
    ]
    found = await data_of(resource, make_client, await sse_server(make_server, pieces))
    assert found == [ODD, resource.chunk("b")]


async def test_a_chunk_sent_as_several_data_lines_keeps_its_line_feeds(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    pieces = [b'data: {"choices":\ndata: []}\n\n', DONE]
    found = await data_of(resource, make_client, await sse_server(make_server, pieces))
    assert found == [b'{"choices":\n[]}']


async def test_chunks_split_across_reads_arrive_whole(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    body = event(resource.chunk("one")) + event(resource.chunk("two")) + DONE
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    base_url = await sse_server(make_server, pieces, pause=0.001)
    found = await data_of(resource, make_client, base_url)
    assert found == [resource.chunk("one"), resource.chunk("two")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(
            b'{"error": {"message": "quota", "code": 42}}', "quota", id="error-object"
        ),
        pytest.param(b'{"error": "went away"}', "went away", id="error-string"),
        pytest.param(
            b'{"id": "c", "choices": [], "error": {"message": "late"}}',
            "late",
            id="error-last",
        ),
        # JSON's \u escapes spell the same key: a parser reads "error".
        pytest.param(b'{"\\u0065rror": "escaped"}', "escaped", id="escaped-key"),
        pytest.param(b'{"err\\u006Fr": "upper hex"}', "upper hex", id="upper-hex"),
    ],
)
@pytest.mark.parametrize("together", [False, True], ids=["own-reads", "one-read"])
async def test_a_chunk_reporting_an_error_raises_after_the_good_ones(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
    bad: bytes,
    message: str,
    together: bool,
) -> None:
    pieces = [event(resource.chunk("a")), event(bad), DONE]
    if together:
        pieces = [b"".join(pieces)]
    client = make_client(base_url=await sse_server(make_server, pieces))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[bytes] = []
    with pytest.raises(StreamError, match=message):
        await read_data(stream, seen)
    assert seen == [resource.chunk("a")]
    assert checked_out(client) == 0


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(b'{"choices": [', id="cut-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"error": null, "choices": []}', id="null-error"),
        pytest.param(b'{"choices": [{"text": "an \\"error\\""}]}', id="error-in-text"),
        pytest.param(b'{"type": "error", "choices": []}', id="error-as-value"),
        pytest.param(b'{"choices": [{"text": "caf\\u00e9"}]}', id="escape-in-text"),
        pytest.param(b'{"choices": [], "error": ', id="cut-at-error"),
    ],
)
async def test_chunks_are_relayed_as_received_unless_they_report_an_error(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
    chunk: bytes,
) -> None:
    # The data is not parsed: only a chunk whose JSON has a non-null top-level
    # "error" is refused; `async for` is the way to have every chunk decoded.
    pieces = [event(resource.chunk("a")), event(chunk), DONE]
    for reads in (pieces, [b"".join(pieces)]):
        found = await data_of(
            resource, make_client, await sse_server(make_server, reads)
        )
        assert found == [resource.chunk("a"), chunk]


@pytest.mark.parametrize("tail", TRUNCATIONS)
async def test_a_stream_that_does_not_end_with_done_raises(
    make_server: ServerFactory,
    make_client: ClientFactory,
    resource: Resource,
    tail: Callable[[Resource], bytes],
) -> None:
    pieces = [event(resource.chunk("a")), tail(resource)]
    with pytest.raises(StreamError, match="truncated"):
        await data_of(resource, make_client, await sse_server(make_server, pieces))


async def test_an_error_event_raises(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    pieces = [b"event: error\ndata: upstream went away\n\n"]
    with pytest.raises(StreamError, match="went away"):
        await data_of(resource, make_client, await sse_server(make_server, pieces))


async def test_a_stalled_stream_hits_the_read_timeout(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    handler = one_chunk_then_silence(resource)
    client = make_client(base_url=await make_server(handler), timeout=Timeout(read=0.2))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[bytes] = []
    with pytest.raises(APITimeoutError):
        await read_data(stream, seen)
    assert seen == [resource.chunk("a")]
    assert checked_out(client) == 0


async def test_a_json_answer_is_one_chunk_in_the_chunk_shape(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(resource.body("whole"))

    [data] = await data_of(resource, make_client, await make_server(handler))
    choice = json.loads(data)["choices"][0]
    if resource.name == "chat":
        assert choice["delta"] == {"role": "assistant", "content": "whole"}
    else:
        assert choice["text"] == "whole"


async def test_a_malformed_json_answer_raises_decode_error(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return json_response(b"{oops")

    with pytest.raises(DecodeError):
        await data_of(resource, make_client, await make_server(handler))


async def test_decoded_and_raw_reading_share_one_stream(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    texts = ["a", "b", "c", "d"]
    pieces = [*(event(resource.chunk(text)) for text in texts), DONE]
    client = make_client(base_url=await sse_server(make_server, pieces))
    stream = await resource.create(client, "hi", stream=True)
    async with stream:
        first = resource.chunk_text(await stream.__anext__())
        rest = stream.iter_data()
        second = await rest.__anext__()
        third = resource.chunk_text(await stream.__anext__())
        last = [data async for data in rest]
    assert [first, third] == ["a", "c"]
    assert [second, *last] == [resource.chunk("b"), resource.chunk("d")]


async def test_breaking_off_releases_the_connection_and_a_closed_stream_refuses(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    handler = one_chunk_then_silence(resource)
    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    async with stream:
        async for _ in stream.iter_data():
            break
    assert checked_out(client) == 0
    with pytest.raises(StreamConsumedError):
        async for _ in stream.iter_data():
            pass


async def test_a_second_reader_is_refused_while_the_first_waits(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await hold_until_gone(request)
        return response

    client = make_client(base_url=await make_server(handler))
    stream = await resource.create(client, "hi", stream=True)
    async with stream:
        first = asyncio.ensure_future(stream.iter_data().__anext__())
        await asyncio.sleep(0.05)
        with pytest.raises(StreamBusyError):
            await stream.iter_data().__anext__()
        with pytest.raises(StreamBusyError):
            await stream.__anext__()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert checked_out(client) == 0


async def test_batches_hold_the_chunks_of_each_read_together(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    first = (
        event(resource.chunk("a")) + b": keep-alive\n\n" + event(resource.chunk("b"))
    )
    second = event(resource.chunk("c")) + DONE
    client = make_client(
        base_url=await sse_server(make_server, [first, second], pause=0.1)
    )
    stream = await resource.create(client, "hi", stream=True)
    async with stream:
        batches = [batch async for batch in stream.iter_data_batches()]
    assert batches == [
        [resource.chunk("a"), resource.chunk("b")],
        [resource.chunk("c")],
    ]
    assert checked_out(client) == 0


async def test_a_batch_yields_the_chunks_before_a_bad_one_then_raises(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    body = event(resource.chunk("a")) + event(b'{"error": "gone"}') + DONE
    client = make_client(base_url=await sse_server(make_server, [body]))
    stream = await resource.create(client, "hi", stream=True)
    seen: list[list[bytes]] = []
    with pytest.raises(StreamError, match="gone"):
        await read_batches(stream, seen)
    assert seen == [[resource.chunk("a")]]
    assert checked_out(client) == 0


async def read_batches(stream: AnyStream, seen: list[list[bytes]]) -> None:
    async with stream:
        async for batch in stream.iter_data_batches():
            seen.append(batch)  # noqa: PERF401 - partial on error

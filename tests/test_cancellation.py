"""Streams abandoned or cancelled anywhere never leave a connection checked out.

In the spirit of httpcore's tests/test_cancellations.py: many streams through a
pool of a few connections are broken off at random points (early break, an
exception in the consumer, task cancellation before or during the response,
plain abandonment), then the same client must still work and its pool be empty.
Every test runs for completions and for chat completions.
"""

from __future__ import annotations

import asyncio
import gc
import random

from aiohttp import web

from enkrypt_async import EnkryptClient

from .conftest import AnyStream, ClientFactory, Resource, ServerFactory, checked_out

POOL = 3
STREAMS = 200
CHUNKS = 12


def _event(resource: Resource, i: int) -> bytes:
    return b"data: " + resource.chunk(f"t{i} ") + b"\n\n"


async def _server(make_server: ServerFactory, resource: Resource) -> str:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.path == "/ai-proxy" + resource.path
        await asyncio.sleep(random.uniform(0, 0.003))  # cancel before the headers too
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(CHUNKS):
                await response.write(_event(resource, i))
                await asyncio.sleep(0.001)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            pass  # the client went away: expected here
        return response

    return await make_server(handler)


class Boom(Exception):
    pass


async def _consume(
    client: EnkryptClient, resource: Resource, rng: random.Random
) -> str:
    """Read one stream and break it off the way ``rng`` picks."""
    how = rng.choice(["break", "raise", "full", "abandon", "aclose", "collect"])
    stop_after = rng.randrange(CHUNKS)
    stream: AnyStream = await resource.create(client, "x", stream=True)
    if how == "collect":
        await stream.collect()
        return how
    if how == "abandon":
        async for _ in stream:
            break
        del stream  # never closed by the caller
        return how
    if how == "aclose":
        await stream.__anext__()
        await stream.aclose()
        return how
    try:
        async with stream:
            count = 0
            async for _ in stream:
                count += 1
                if count > stop_after and how == "break":
                    break
                if count > stop_after and how == "raise":
                    raise Boom
    except Boom:
        pass
    return how


async def test_random_breaks_and_cancellations_leave_the_pool_usable(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    rng = random.Random(20261125)
    client = make_client(base_url=await _server(make_server, resource), pool_limit=POOL)
    outcomes: dict[str, int] = {}
    for batch in range(STREAMS // 10):
        tasks = [
            asyncio.create_task(_consume(client, resource, rng)) for _ in range(10)
        ]
        # Cancel some of them at a random moment: waiting for a pooled
        # connection, waiting for headers, or in the middle of the body.
        await asyncio.sleep(rng.uniform(0, 0.02))
        for task in tasks:
            if rng.random() < 0.4:
                task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            key = "cancelled" if isinstance(result, asyncio.CancelledError) else result
            assert isinstance(key, str), f"batch {batch}: {key!r}"
            outcomes[key] = outcomes.get(key, 0) + 1
        gc.collect()  # abandoned streams are closed when collected
        assert checked_out(client) == 0, f"leak after batch {batch}: {outcomes}"
    assert sum(outcomes.values()) == STREAMS
    assert outcomes.get("cancelled", 0) > 20, outcomes

    # The same client, pool of three, still serves full streams at once.
    async def full() -> str:
        stream = await resource.create(client, "x", stream=True)
        return resource.text(await stream.collect())

    texts = await asyncio.gather(*(full() for _ in range(POOL * 3)))
    assert all(t == "".join(f"t{i} " for i in range(CHUNKS)) for t in texts)
    assert checked_out(client) == 0


async def test_cancelling_the_consumer_inside_async_with_closes_at_once(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    client = make_client(base_url=await _server(make_server, resource), pool_limit=1)
    reading = asyncio.Event()

    async def consumer() -> None:
        stream = await resource.create(client, "x", stream=True)
        async with stream:
            async for _ in stream:
                reading.set()

    task = asyncio.create_task(consumer())
    await reading.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert checked_out(client) == 0
    # With a pool of one, this would hang if the connection had been kept.
    stream = await asyncio.wait_for(
        resource.create(client, "x", stream=True), timeout=5
    )
    assert resource.text(await stream.collect()).startswith("t0 ")


async def test_abandoned_stream_is_closed_when_collected(
    make_server: ServerFactory, make_client: ClientFactory, resource: Resource
) -> None:
    client = make_client(base_url=await _server(make_server, resource), pool_limit=1)
    stream = await resource.create(client, "x", stream=True)
    await stream.__anext__()
    assert checked_out(client) == 1
    del stream
    gc.collect()
    assert checked_out(client) == 0

"""The four clients, each driven by one load in a fresh process.

``python -m benchmarks._clients KIND SCENARIO --port N ...`` prints one JSON line:

- ``request``: non-streamed completions from ``--concurrency`` tasks for
  ``--duration`` seconds (after a warm-up): count, wall and process CPU time;
- ``stream``: the same with 2,048-chunk streams: chunks, CPU, time to first chunk;
- ``paced``: the same with 256-chunk streams sent one event at a time, 0.5 ms apart;
- ``chat``: the same with 2,048-chunk chat completion streams;
- ``idle``: ``--count`` streams held open after their first chunk: RSS growth;
- ``phases``: fixed loads for ``_instructions``, each ended by ``os.sched_yield()``
  (where callgrind dumps the instructions counted so far); ``--phase-scale``
  shrinks them for slow clients.

Each library is imported inside its client's constructor, so a process loads only
what it measures. CPU is `time.process_time` of this (client) process only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._payloads import (
    API_KEY,
    DEPLOYMENT,
    IDLE_MARKER,
    PACED_CHUNKS,
    PACED_MARKER,
    PROMPT,
    STREAM_CHUNKS,
)

KINDS = ("bare", "enkrypt", "openai", "openai-aiohttp")
POOL_LIMIT = 1000
Closer = Callable[[], Awaitable[None]]


class Client(Protocol):
    async def request(self) -> object: ...
    async def stream(self, prompt: str = PROMPT) -> tuple[int, float, object]: ...
    async def chat_stream(self) -> tuple[int, float, object]: ...
    async def open_idle(self) -> Closer: ...
    async def aclose(self) -> None: ...


class BareClient:
    """The floor: one session, post, read, one reused typed decoder."""

    def __init__(self, base_url: str) -> None:
        import aiohttp
        import msgspec

        from ._floor import chat_chunk_decoder, decoder

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT)
        )
        self._url = base_url + "/completions"
        self._chat_url = base_url + "/chat/completions"
        self._headers = {
            "apikey": API_KEY,
            "X-Enkrypt-Deployment": DEPLOYMENT,
            "Content-Type": "application/json",
        }
        self._encode = msgspec.json.encode
        self._decode = decoder.decode
        self._decode_chat = chat_chunk_decoder.decode

    async def request(self) -> object:
        data = self._encode({"prompt": PROMPT})
        async with self._session.post(
            self._url, data=data, headers=self._headers
        ) as response:
            body = await response.read()
        return self._decode(body)

    async def stream(self, prompt: str = PROMPT) -> tuple[int, float, object]:
        started = time.perf_counter()
        data = self._encode({"prompt": prompt, "stream": True})
        return await self._events(started, self._url, data, self._decode)

    async def chat_stream(self) -> tuple[int, float, object]:
        started = time.perf_counter()
        messages = [{"role": "user", "content": PROMPT}]
        data = self._encode({"messages": messages, "stream": True})
        return await self._events(started, self._chat_url, data, self._decode_chat)

    async def _events(
        self, started: float, url: str, data: bytes, decode: Callable[[bytes], object]
    ) -> tuple[int, float, object]:
        """Post, split the body on blank lines, decode each ``data:`` payload."""
        first = 0.0
        count = 0
        last: object = None
        rest = b""
        async with self._session.post(
            url, data=data, headers=self._headers
        ) as response:
            async for piece in response.content.iter_any():
                blocks = (rest + piece).split(b"\n\n")
                rest = blocks.pop()
                for block in blocks:
                    if block.startswith(b"data: ") and block != b"data: [DONE]":
                        last = decode(block[6:])
                        if not count:
                            first = time.perf_counter() - started
                        count += 1
        return count, first, last

    async def open_idle(self) -> Closer:
        data = self._encode({"prompt": IDLE_MARKER, "stream": True})
        response = await self._session.post(self._url, data=data, headers=self._headers)
        rest = b""
        while b"\n\n" not in rest:
            rest += await response.content.readany()

        async def close() -> None:
            response.close()

        return close

    async def aclose(self) -> None:
        await self._session.close()


async def _count_chunks(started: float, stream: Any) -> tuple[int, float, object]:
    """Read a library's stream to the end: chunks, time to the first, the last."""
    first = 0.0
    count = 0
    last: object = None
    async with stream:
        async for chunk in stream:
            if not count:
                first = time.perf_counter() - started
            count += 1
            last = chunk
    return count, first, last


class EnkryptAsyncClient:
    def __init__(self, base_url: str) -> None:
        from enkrypt_async import EnkryptClient

        self._client = EnkryptClient(
            api_key=API_KEY,
            deployment=DEPLOYMENT,
            base_url=base_url,
            max_retries=0,
            pool_limit=POOL_LIMIT,
        )

    async def request(self) -> object:
        return await self._client.completions.create(prompt=PROMPT)

    async def stream(self, prompt: str = PROMPT) -> tuple[int, float, object]:
        started = time.perf_counter()
        stream = await self._client.completions.create(prompt=prompt, stream=True)
        return await _count_chunks(started, stream)

    async def chat_stream(self) -> tuple[int, float, object]:
        started = time.perf_counter()
        stream = await self._client.chat.completions.create(
            messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        return await _count_chunks(started, stream)

    async def open_idle(self) -> Closer:
        stream = await self._client.completions.create(prompt=IDLE_MARKER, stream=True)
        await stream.__anext__()
        return stream.aclose

    async def aclose(self) -> None:
        await self._client.aclose()


class OpenAIClient:
    def __init__(self, base_url: str, *, aiohttp_backend: bool) -> None:
        import openai

        http_client = openai.DefaultAioHttpClient() if aiohttp_backend else None
        self._client = openai.AsyncOpenAI(
            api_key=API_KEY,
            base_url=base_url,
            default_headers={"apikey": API_KEY, "X-Enkrypt-Deployment": DEPLOYMENT},
            max_retries=0,
            http_client=http_client,
        )

    async def request(self) -> object:
        return await self._client.completions.create(model="m", prompt=PROMPT)

    async def stream(self, prompt: str = PROMPT) -> tuple[int, float, object]:
        started = time.perf_counter()
        stream = await self._client.completions.create(
            model="m", prompt=prompt, stream=True
        )
        return await _count_chunks(started, stream)

    async def chat_stream(self) -> tuple[int, float, object]:
        started = time.perf_counter()
        stream = await self._client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        return await _count_chunks(started, stream)

    async def open_idle(self) -> Closer:
        stream = await self._client.completions.create(
            model="m", prompt=IDLE_MARKER, stream=True
        )
        await stream.__anext__()
        return stream.close

    async def aclose(self) -> None:
        await self._client.close()


def make_client(kind: str, base_url: str) -> Client:
    if kind == "bare":
        return BareClient(base_url)
    if kind == "enkrypt":
        return EnkryptAsyncClient(base_url)
    if kind in ("openai", "openai-aiohttp"):
        return OpenAIClient(base_url, aiohttp_backend=kind == "openai-aiohttp")
    raise ValueError(f"unknown client {kind!r}")


def aiohttp_backend_available() -> bool:
    try:
        import openai

        openai.DefaultAioHttpClient()
    except (ImportError, RuntimeError):
        return False
    return True


def _check(result: object) -> None:
    # Every client must really have decoded the detections, or it did less work;
    # and the choice, or a stream's last chunk was taken for another kind.
    detections = getattr(result, "enkrypt_policy_detections", None)
    if detections is None:
        raise AssertionError(f"no detections decoded in {type(result)!r}")
    choices = getattr(result, "choices", None)
    if not choices or choices[0].finish_reason is None:
        raise AssertionError(f"no finish reason decoded in {type(result)!r}")


async def _load(
    call: Callable[[], Awaitable[int]], concurrency: int, duration: float
) -> tuple[int, float, float]:
    """Run ``call`` from ``concurrency`` tasks until ``duration`` has passed."""
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> int:
        units = 0
        while time.perf_counter() < deadline:
            units += await call()
        return units

    counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return sum(counts), wall, time.process_time() - cpu


async def run_requests(
    client: Client, concurrency: int, duration: float
) -> dict[str, Any]:
    _check(await client.request())

    async def call() -> int:
        await client.request()
        return 1

    await _load(call, concurrency, min(0.5, duration / 4))
    count, wall, cpu = await _load(call, concurrency, duration)
    return {
        "requests": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "rps": count / wall,
        "cpu_per_request_us": cpu / count * 1e6,
    }


def _opener(
    client: Client, scenario: str
) -> tuple[Callable[[], Awaitable[tuple[int, float, object]]], int]:
    """How a stream load opens and reads one stream, and the chunks it must give."""
    if scenario == "chat":
        return client.chat_stream, STREAM_CHUNKS
    if scenario == "paced":
        return lambda: client.stream(PACED_MARKER), PACED_CHUNKS
    return client.stream, STREAM_CHUNKS


async def run_streams(
    client: Client, concurrency: int, duration: float, scenario: str = "stream"
) -> dict[str, Any]:
    """A stream load: ``stream`` (completions), ``paced`` or ``chat``."""
    read, expected = _opener(client, scenario)
    count, _, last = await read()
    if count != expected:
        raise AssertionError(f"{count} chunks, expected {expected}")
    _check(last)
    firsts: list[float] = []

    async def call() -> int:
        chunks, first, _ = await read()
        firsts.append(first)
        return chunks

    # No concurrent warm-up: a round of 32 openai streams takes seconds, and the
    # connections it would open cost nothing next to 2,048 chunks each.
    chunks, wall, cpu = await _load(call, concurrency, duration)
    return {
        "streams": len(firsts),
        "chunks": chunks,
        "wall_s": wall,
        "cpu_s": cpu,
        "chunks_per_s": chunks / wall,
        "cpu_per_1000_chunks_ms": cpu / chunks * 1e6,
        "cpu_per_chunk_us": cpu / chunks * 1e6,
        "ttfc_ms": statistics.median(firsts) * 1e3,
    }


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


async def run_idle(client: Client, count: int) -> dict[str, Any]:
    await client.request()
    await client.stream()
    await (await client.open_idle())()
    gc.collect()
    await asyncio.sleep(0.05)
    before = _status_kb("VmRSS")
    closers = await asyncio.gather(*(client.open_idle() for _ in range(count)))
    gc.collect()
    after = _status_kb("VmRSS")
    peak = _status_kb("VmHWM")
    for close in closers:
        await close()
    return {
        "streams": count,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "peak_rss_mb": peak / 1024,
        "kb_per_stream": (after - before) / count,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{args.port}/ai-proxy"
    client = make_client(args.kind, base_url)
    try:
        if args.scenario == "request":
            result = await run_requests(client, args.concurrency, args.duration)
        elif args.scenario in ("stream", "paced", "chat"):
            result = await run_streams(
                client, args.concurrency, args.duration, args.scenario
            )
        elif args.scenario == "phases":
            result = await run_phases(client, args.phase_scale)
        else:
            result = await run_idle(client, args.count)
    finally:
        await client.aclose()
    return {"kind": args.kind, "scenario": args.scenario, **result}


#: (name, what a unit is, units at scale 1): the loads `run_phases` measures.
PHASES: tuple[tuple[str, str, int], ...] = (
    ("request_c1", "request", 300),
    ("request_c64", "request", 1280),
    ("stream_1", "chunk", 3),
    ("stream_32", "chunk", 32),
    ("chat_1", "chunk", 3),
)


async def run_phases(client: Client, scale: float) -> dict[str, Any]:
    """Run each of `PHASES` once, with ``os.sched_yield()`` between them.

    Under ``valgrind --tool=callgrind --dump-before=sched_yield`` each phase is
    then one dump file holding exactly its instructions; start-up, warm-up (which
    opens the connections the loads use) and tear-down fall in other dumps.
    Returns ``parts``: per dump, in order, the phase name and its units (a name
    of None for the dumps that are not a phase).
    """
    units = {name: max(1, round(count * scale)) for name, _, count in PHASES}
    if scale < 1:
        del units["stream_32"]  # 65,536 chunks: minutes for a slow client
    concurrent = units.get("stream_32", 1)

    async def streams(count: int, chat: bool = False) -> int:
        read = client.chat_stream if chat else client.stream
        results = await asyncio.gather(*(read() for _ in range(count)))
        if any(chunks != STREAM_CHUNKS for chunks, _, _ in results):
            raise AssertionError(f"a stream did not yield {STREAM_CHUNKS} chunks")
        _check(results[-1][2])
        return count * STREAM_CHUNKS

    async def requests(count: int) -> int:
        results = await asyncio.gather(*(client.request() for _ in range(count)))
        _check(results[-1])
        return count

    async def repeat(call: Callable[[], Awaitable[int]], times: int) -> int:
        return sum([await call() for _ in range(times)])

    loads: dict[str, Callable[[], Awaitable[int]]] = {
        "request_c1": lambda: repeat(lambda: requests(1), units["request_c1"]),
        "request_c64": lambda: repeat(
            lambda: requests(64), max(1, units["request_c64"] // 64)
        ),
        "stream_1": lambda: repeat(lambda: streams(1), units["stream_1"]),
        "stream_32": lambda: streams(concurrent),
        "chat_1": lambda: repeat(lambda: streams(1, chat=True), units["chat_1"]),
    }
    await requests(64)
    await streams(concurrent)
    await streams(1, chat=True)
    # A full collection costs in proportion to the whole heap, an accident of this
    # process; frozen, it cannot land on whichever phase happens to trigger it.
    # Collections of the objects each load allocates still count.
    gc.collect()
    gc.freeze()
    parts: list[tuple[str | None, int]] = [(None, 0)]
    for name in units:
        os.sched_yield()
        parts.append((name, await loads[name]()))
    os.sched_yield()
    parts.append((None, 0))
    return {"parts": parts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._clients")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument(
        "scenario", choices=("request", "stream", "paced", "chat", "idle", "phases")
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--phase-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()

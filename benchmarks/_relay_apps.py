"""The three gateways of the relay benchmark, each served by uvicorn in its own process.

``python -m benchmarks._relay_apps KIND --upstream-port N`` binds 127.0.0.1 on a
free port, prints ``PORT <n>`` and serves, until SIGTERM, an OpenAI-compatible
``POST /v1/completions`` and ``POST /v1/chat/completions`` forwarding to the
benchmark server (`benchmarks._server`) on port N:

- ``floor``: a bare Starlette app. It reads the request body, looks at
  ``stream``, posts the body unchanged with a plain ``aiohttp.ClientSession`` and
  answers with a ``StreamingResponse`` re-emitting the raw bytes of each read, or
  a ``Response`` with the whole body: what any gateway pays at least.
- ``enkrypt``: the example app, ``examples.fastapi_app.create_app``, unchanged.
- ``openai``: FastAPI with ``openai.AsyncOpenAI``: streams relayed from
  ``with_streaming_response`` (``iter_bytes``), whole answers from
  ``with_raw_response`` (the raw body, not parsed).

Every app is wrapped by `instrumented`, which answers ``GET /_bench/...`` itself
(the driver's probes of this process's CPU time and callgrind's dump points) and
hands every other request to the app; with ``--profile STEM`` it also profiles
the measured load under pyinstrument into ``STEM.html`` and ``STEM.txt``.
uvicorn runs pinned to its ``asyncio`` loop and ``h11`` protocol, access log
off, the same for the three.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from ._payloads import API_KEY, DEPLOYMENT

KINDS = ("floor", "enkrypt", "openai")
POOL_LIMIT = 1000
HEADERS = {
    "apikey": API_KEY,
    "X-Enkrypt-Deployment": DEPLOYMENT,
    "Content-Type": "application/json",
}
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def floor_app(upstream: str) -> Any:
    """The bare gateway: one aiohttp session, bytes relayed as read."""
    import aiohttp
    import msgspec
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    sessions: list[aiohttp.ClientSession] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT)
        )
        sessions.append(session)
        try:
            yield
        finally:
            await session.close()

    def route(path: str) -> Route:
        url = upstream + path

        async def forward(request: Request) -> Response:
            body = await request.body()
            stream = msgspec.json.decode(body).get("stream") is True
            response = await sessions[0].post(url, data=body, headers=HEADERS)
            if not stream:
                try:
                    data = await response.read()
                finally:
                    response.release()
                return Response(data, media_type="application/json")

            async def release() -> None:
                # A coroutine: Starlette would run a plain function in a thread.
                response.release()

            return StreamingResponse(
                response.content.iter_any(),
                media_type="text/event-stream",
                background=BackgroundTask(release),
            )

        return Route("/v1" + path, forward, methods=["POST"])

    return Starlette(
        routes=[route("/completions"), route("/chat/completions")],
        lifespan=lifespan,
    )


def enkrypt_app(upstream: str) -> Any:
    """The example gateway, as shipped, with the client's settings as arguments."""
    from examples.fastapi_app import create_app

    return create_app(
        api_key=API_KEY,
        deployment=DEPLOYMENT,
        base_url=upstream,
        max_retries=0,
        pool_limit=POOL_LIMIT,
    )


def openai_app(upstream: str) -> Any:
    """The same gateway written with ``openai.AsyncOpenAI``, relaying raw bytes.

    FastAPI resolves the handlers' annotations in this module's globals: hence
    the module-level ``Request``.
    """
    import openai
    from fastapi import FastAPI
    from starlette.background import BackgroundTask
    from starlette.responses import Response, StreamingResponse

    clients: list[openai.AsyncOpenAI] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = openai.AsyncOpenAI(
            api_key=API_KEY,
            base_url=upstream,
            default_headers={"apikey": API_KEY, "X-Enkrypt-Deployment": DEPLOYMENT},
            max_retries=0,
        )
        clients.append(client)
        try:
            yield
        finally:
            await client.close()

    app = FastAPI(lifespan=lifespan)

    async def relay(resource: Any, required: str, request: Request) -> Response:
        body = await request.json()
        stream = body.pop("stream", False) is True
        named = {"model": body.pop("model"), required: body.pop(required)}
        extra = body or None
        if not stream:
            raw = await resource.with_raw_response.create(**named, extra_body=extra)
            return Response(raw.content, media_type="application/json")
        exits = contextlib.AsyncExitStack()
        upstream_response = await exits.enter_async_context(
            resource.with_streaming_response.create(
                **named, stream=True, extra_body=extra
            )
        )
        return StreamingResponse(
            upstream_response.iter_bytes(),
            media_type="text/event-stream",
            background=BackgroundTask(exits.aclose),
        )

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await relay(clients[0].completions, "prompt", request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await relay(clients[0].chat.completions, "messages", request)

    return app


class _Profile:
    """A pyinstrument profile of the measured load, written to ``stem``."""

    def __init__(self, stem: Path) -> None:
        from pyinstrument import Profiler

        self._stem = stem
        self._profiler = Profiler(interval=0.0002, async_mode="disabled")

    def start(self) -> None:
        self._profiler.start()

    def stop(self) -> None:
        if self._profiler.is_running:
            self._profiler.stop()
            html = self._profiler.output_html()
            self._stem.with_suffix(".html").write_text(html)
            self._stem.with_suffix(".txt").write_text(
                self._profiler.output_text(unicode=True, color=False, show_all=True)
            )


def instrumented(app: ASGIApp, profile: _Profile | None = None) -> ASGIApp:
    """``app``, with ``GET /_bench/<probe>`` answered by this process.

    - ``start``: a full collection, then this process's CPU time (seconds);
      with ``profile``, the profiler starts;
    - ``cpu``: this process's CPU time; the profiler, if running, stops and
      writes its profile;
    - ``freeze``: a full collection, then ``gc.freeze()``, so a collection whose
      cost depends on the whole heap cannot land on a measured load by chance;
    - ``yield``: ``os.sched_yield()``, where ``--dump-before=sched_yield`` makes
      callgrind write the instructions counted so far.
    """

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/_bench/"):
            await app(scope, receive, send)
            return
        probe = scope["path"][len("/_bench/") :]
        if probe in ("start", "freeze"):
            gc.collect()
        if probe == "freeze":
            gc.freeze()
        elif probe == "yield":
            os.sched_yield()
        elif profile is not None and probe == "cpu":
            profile.stop()
        body = repr(time.process_time()).encode()
        if profile is not None and probe == "start":
            profile.start()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return wrapper


def make_app(kind: str, upstream_port: int, profile: Path | None = None) -> ASGIApp:
    """The ``kind`` gateway to the server on ``upstream_port``, instrumented.

    With ``profile``, a path without suffix, the measured load is profiled into
    ``<profile>.html`` and ``<profile>.txt``.
    """
    upstream = f"http://127.0.0.1:{upstream_port}/ai-proxy"
    factory = {"floor": floor_app, "enkrypt": enkrypt_app, "openai": openai_app}
    return instrumented(
        factory[kind](upstream), None if profile is None else _Profile(profile)
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks._relay_apps")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--profile", type=Path, help="profile into PROFILE.html")
    args = parser.parse_args(argv)
    app = make_app(args.kind, args.upstream_port, args.profile)
    # With the protocol named, asyncio sets TCP_NODELAY on the accepted
    # connections, as on those of a server uvicorn binds itself.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        loop="asyncio",
        http="h11",
        lifespan="on",
        log_level="warning",
        access_log=False,
        # The driver's connection stays open across a slow callgrind run.
        timeout_keep_alive=600,
    )
    # The socket listens already: connections wait in its backlog until the
    # application has started.
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

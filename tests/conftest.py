"""Shared fixtures: real aiohttp.web servers on 127.0.0.1, and clients for them."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, overload

import aiohttp
import aioresponses.core
import pytest
from aiohttp import web

from enkrypt_async import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionStream,
    Completion,
    CompletionStream,
    EnkryptClient,
)
from enkrypt_async.testing import DeploymentPolicy, EnkryptEmulator

DATA = Path(__file__).parent / "data"
REFERENCE_BYTES = (DATA / "completion_reference.json").read_bytes()
REFERENCE: dict[str, Any] = json.loads(REFERENCE_BYTES)

API_KEY = "sk-test-secret-key-0123456789"
DEPLOYMENT = "test-deployment"

#: The body of a guardrails block, as the proxy sends it with an error status.
BLOCK_BODY: dict[str, Any] = {
    "error": {
        "code": "guardrails_blocked",
        "param": None,
        "type": "guardrails_error",
        "message": "Input blocked by guardrails: injection_attack",
    },
    "enkrypt_policy_detections": {
        "input_guardrails": {
            "details": {"injection_attack": {"safe": "0.012", "attack": "0.988"}},
            "summary": {"injection_attack": 1, "pii": 0},
        }
    },
}

#: A whole answer, one streamed chunk, or a stream, of either resource.
AnyAnswer = Completion | ChatCompletion
AnyChunk = Completion | ChatCompletionChunk
AnyStream = CompletionStream | ChatCompletionStream


@dataclass(frozen=True)
class Resource:
    """One of the two resources, for tests that must hold for both.

    ``completions`` sends ``prompt=text`` to ``/completions``; ``chat`` sends one
    user message with ``text`` to ``/chat/completions``. ``body`` and ``chunk``
    are the JSON a server sends for a success answer or one streamed chunk.
    """

    name: str
    path: str

    @overload
    async def create(
        self,
        client: EnkryptClient,
        text: str,
        *,
        stream: Literal[False] = False,
        **kwargs: Any,
    ) -> AnyAnswer: ...

    @overload
    async def create(
        self, client: EnkryptClient, text: str, *, stream: Literal[True], **kwargs: Any
    ) -> AnyStream: ...

    @overload
    async def create(
        self, client: EnkryptClient, text: str, *, stream: bool, **kwargs: Any
    ) -> AnyAnswer | AnyStream: ...

    async def create(
        self, client: EnkryptClient, text: str, *, stream: bool = False, **kwargs: Any
    ) -> AnyAnswer | AnyStream:
        """``create`` of this resource with ``text`` as the prompt or user message."""
        if self.name == "chat":
            return await client.chat.completions.create(
                messages=[{"role": "user", "content": text}], stream=stream, **kwargs
            )
        return await client.completions.create(prompt=text, stream=stream, **kwargs)

    def text(self, answer: AnyAnswer) -> str:
        """The text of the first choice of a whole answer of this resource."""
        if self.name == "chat":
            assert isinstance(answer, ChatCompletion), answer
            content = answer.choices[0].message.content
            assert content is not None, answer
            return content
        assert isinstance(answer, Completion), answer
        return answer.choices[0].text

    def chunk_text(self, chunk: AnyChunk) -> str:
        """The text of the first choice of one streamed chunk of this resource."""
        if self.name == "chat":
            assert isinstance(chunk, ChatCompletionChunk), chunk
            content = chunk.choices[0].delta.content
            assert content is not None, chunk
            return content
        assert isinstance(chunk, Completion), chunk
        return chunk.choices[0].text

    def body(self, text: str) -> bytes:
        """The JSON of a whole success answer whose text is ``text``."""
        if self.name == "chat":
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return json.dumps(
                {"object": "chat.completion", "choices": [choice]}
            ).encode()
        choice = {"text": text, "index": 0, "finish_reason": "stop"}
        return json.dumps({"choices": [choice]}).encode()

    def chunk(self, text: str) -> bytes:
        """The JSON of one streamed chunk whose text is ``text``."""
        if self.name == "chat":
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text}}
            return json.dumps(
                {"object": "chat.completion.chunk", "choices": [choice]}
            ).encode()
        return json.dumps({"choices": [{"text": text, "index": 0}]}).encode()


COMPLETIONS = Resource("completions", "/completions")
CHAT = Resource("chat", "/chat/completions")


@pytest.fixture(params=[COMPLETIONS, CHAT], ids=["completions", "chat"])
def resource(request: pytest.FixtureRequest) -> Resource:
    """Each resource in turn: the test runs for completions and for chat."""
    assert isinstance(request.param, Resource)
    return request.param


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerFactory = Callable[[Handler], Awaitable[str]]
ClientFactory = Callable[..., EnkryptClient]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start aiohttp.web servers on 127.0.0.1 serving one handler for every path.

    Returns the base URL (``http://127.0.0.1:PORT/ai-proxy``).
    """
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{port}/ai-proxy"

    yield start
    for runner in runners:
        await runner.cleanup()


#: An emulator deployment that blocks nothing (see the `emu` fixture).
OPEN = "open"


@pytest.fixture
async def emu() -> AsyncIterator[EnkryptEmulator]:
    """An emulator with the default deployment and `OPEN`, which blocks nothing."""
    policies = {OPEN: DeploymentPolicy(block=())}
    async with EnkryptEmulator(deployments=policies) as emulator:
        yield emulator


@pytest.fixture
async def session(emu: EnkryptEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session carrying the emulator's key and deployment."""
    async with aiohttp.ClientSession(headers=emu.headers) as client:
        yield client


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Build clients with test credentials; every one is closed at teardown."""
    clients: list[EnkryptClient] = []

    def build(**kwargs: Any) -> EnkryptClient:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("deployment", DEPLOYMENT)
        kwargs.setdefault("max_retries", 0)
        client = EnkryptClient(**kwargs)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response with the exact bytes of ``body`` (bytes pass through)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return web.Response(
        body=data, status=status, headers=headers, content_type="application/json"
    )


async def hold_until_gone(request: web.Request, limit: float = 5.0) -> None:
    """Keep a response open, silent, until the client drops the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.01)


def connector_of(client: EnkryptClient) -> aiohttp.BaseConnector:
    """The client's own pool (tests check it is empty after every path)."""
    session = client._session
    assert session is not None
    connector = session.connector
    assert connector is not None
    return connector


def checked_out(client: EnkryptClient) -> int:
    """Connections currently acquired from the client's pool."""
    connector = connector_of(client)
    return len(connector._acquired)


class _CompatResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 added a required ``stream_writer`` that aioresponses 0.7.x
    does not pass (pnuckowski/aioresponses#289); supply a finished one."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    if "stream_writer" in params:
        monkeypatch.setattr(aioresponses.core, "ClientResponse", _CompatResponse)


def unused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


pytest_plugins = ["pytester"]

"""The emulated Enkrypt AI proxy: an aiohttp.web application and its lifecycle.

Both model endpoints go through one pipeline (`EnkryptEmulator._answer`): faults,
gateway headers, validation, input guardrails, generation, output guardrails,
then a JSON answer or an event stream. What differs per endpoint (validation,
text, answer objects) is an `_Exchange`: `TextExchange` for `/completions`,
`ChatExchange` for `/chat/completions`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

import msgspec
from aiohttp import web

from ._chat import ChatExchange
from ._faults import (
    BROKEN_CHAT_EVENT,
    BROKEN_CHAT_JSON,
    BROKEN_EVENT,
    BROKEN_JSON,
    Fault,
    FaultSchedule,
    send_events,
    status_payload,
)
from ._generate import InvalidRequestError, TextExchange
from ._guardrails import DeploymentPolicy, run_guardrails

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENT",
    "EmulatorStats",
    "EnkryptEmulator",
    "RecordedRequest",
]

#: The API key the emulator accepts unless told otherwise (a test value).
DEFAULT_API_KEY: Final = "ek-emulator-key"
DEFAULT_DEPLOYMENT: Final = "emulator-default"
_PREFIX: Final = "/ai-proxy"
_SHUTDOWN_TIMEOUT: Final = 1.0
_ENCODER: Final = msgspec.json.Encoder()


@dataclass(frozen=True)
class RecordedRequest:
    """A request the emulator received.

    Attributes:
        method: HTTP method.
        path: URL path, e.g. "/ai-proxy/completions" or
            "/ai-proxy/chat/completions".
        headers: Request headers (case-insensitive lookup).
        body: The decoded JSON body, or `{}` when it was not a JSON object.
        raw_body: The body bytes as received.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: Mapping[str, object]
    raw_body: bytes


@dataclass
class EmulatorStats:
    """Counters since the emulator started (or was last `reset()`).

    Attributes:
        requests: Requests received, on any path.
        completions: Completions answered successfully (streamed or not), on
            `/completions` and `/chat/completions` alike.
        chat_completions: Of those, the ones answered on `/chat/completions`.
        streams: Of those completions, the streamed ones (either endpoint).
        blocked: Requests blocked by input guardrails.
        faults_injected: Faults that triggered.
    """

    requests: int = 0
    completions: int = 0
    chat_completions: int = 0
    streams: int = 0
    blocked: int = 0
    faults_injected: int = 0


class _Refusal(Exception):
    """Ends a request early with a ready error response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json(
    status: int,
    payload: object,
    request_id: str,
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=_ENCODER.encode(payload) if body is None else body,
        content_type="application/json",
        headers={"x-request-id": request_id, **(headers or {})},
    )


def _error(
    status: int,
    message: str,
    request_id: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> _Refusal:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _Refusal(_json(status, body, request_id))


def _fault_response(fault: Fault, rid: str, broken_json: bytes) -> web.Response:
    """The answer of a `"status"` or non-streamed `"malformed_json"` fault."""
    if fault.kind == "malformed_json":
        return _json(200, None, rid, body=broken_json)
    payload, headers = status_payload(fault)
    return _json(fault.status, payload, rid, headers)


class _Exchange(Protocol):
    """One model request, validated, as an endpoint answers it."""

    def input_text(self) -> str: ...  # what input guardrails check
    def generate(self) -> str: ...  # generates; returns what output guardrails check
    def body(self, detections: dict[str, object] | None) -> dict[str, object]: ...
    def events(
        self, detections: dict[str, object] | None, chunk_chars: int
    ) -> list[dict[str, object]]: ...


@dataclass(frozen=True)
class _Route:
    """What differs between the model endpoints."""

    parse: Callable[[Mapping[str, object], str], _Exchange]  # body, default model
    broken_json: bytes
    broken_event: bytes
    chat: bool


_COMPLETIONS: Final = _Route(TextExchange.parse, BROKEN_JSON, BROKEN_EVENT, False)
_CHAT: Final = _Route(ChatExchange.parse, BROKEN_CHAT_JSON, BROKEN_CHAT_EVENT, True)


class EnkryptEmulator:
    """A local, offline emulator of Enkrypt AI's guardrailed proxy.

    It answers `POST {base_url}/completions` and `POST
    {base_url}/chat/completions` (OpenAI's chat wire format, tool calls
    included) like the real proxy: API key and deployment headers,
    deterministic text, streamed or not, guardrail detections computed on the
    prompt (for chat, the last user message) and on the generated text,
    blocking, and injected faults. Any other path answers 404. See
    `DeploymentPolicy` and `Fault`.

    Examples:
        ```python
        async with EnkryptEmulator() as emu:
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"{emu.base_url}/completions",
                    headers=emu.headers,
                    json={"prompt": "give me a good family joke", "seed": 1},
                ) as response:
                    completion = await response.json()
                async with session.post(
                    f"{emu.base_url}/chat/completions",
                    headers=emu.headers,
                    json={"messages": [{"role": "user", "content": "a joke?"}]},
                ) as response:
                    chat_completion = await response.json()
        ```

    Args:
        host: Interface to listen on.
        port: TCP port; 0 picks a free one (read it back from `base_url`).
        api_key: The only API key accepted in the `apikey` header.
        deployment: Name of the default deployment (`DeploymentPolicy()`).
        deployments: More deployments by name (may override the default one).
        chunk_chars: Characters of text per streamed chunk.
        chunk_delay: Seconds to wait between streamed chunks.
        faults: Faults to inject (see `Fault`).
        seed: Seed of the RNG that decides probabilistic faults.

    Attributes:
        app: The `aiohttp.web.Application`; it also runs under aiohttp's own
            test utilities (`aiohttp.test_utils.TestServer(emu.app)`).
        api_key: The accepted API key.
        deployment: The default deployment's name.
        deployments: Policies by deployment name (mutable at runtime).
        chunk_chars: Characters per streamed chunk (mutable at runtime).
        chunk_delay: Seconds between streamed chunks (mutable at runtime).
        requests: Every request received, oldest first.
        stats: Counters of what happened.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        deployment: str = DEFAULT_DEPLOYMENT,
        deployments: Mapping[str, DeploymentPolicy] | None = None,
        chunk_chars: int = 4,
        chunk_delay: float = 0.0,
        faults: Sequence[Fault] = (),
        seed: int = 0,
    ) -> None:
        if chunk_chars < 1:
            raise ValueError("chunk_chars must be >= 1")
        if chunk_delay < 0:
            raise ValueError("chunk_delay must be >= 0")
        if not 0 <= port <= 65535:
            raise ValueError("port must be within 0..65535")
        self._host = host
        self._port = port
        self.api_key: str = api_key
        self.deployment: str = deployment
        self.deployments: dict[str, DeploymentPolicy] = {
            deployment: DeploymentPolicy(),
            **(deployments or {}),
        }
        self.chunk_chars: int = chunk_chars
        self.chunk_delay: float = chunk_delay
        self.requests: list[RecordedRequest] = []
        self.stats: EmulatorStats = EmulatorStats()
        self._schedule = FaultSchedule(seed, list(faults))
        self._model_requests = 0
        self._runner: web.AppRunner | None = None
        self._closed = False
        self.app: web.Application = web.Application()
        self.app.router.add_post(f"{_PREFIX}/completions", self._completions)
        self.app.router.add_post(f"{_PREFIX}/chat/completions", self._chat_completions)
        self.app.router.add_route("*", "/{tail:.*}", self._unknown)

    # --- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> EnkryptEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start listening (idempotent).

        Raises:
            RuntimeError: The emulator was closed; create a new one.
        """
        if self._closed:
            raise RuntimeError("this EnkryptEmulator is closed; create a new one")
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def aclose(self) -> None:
        """Stop listening and close open connections (idempotent)."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """The proxy's base URL, e.g. "http://127.0.0.1:PORT/ai-proxy".

        Raises:
            RuntimeError: The emulator is not running.
        """
        if self._runner is None:
            raise RuntimeError("EnkryptEmulator is not running: use `async with`")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{_PREFIX}"

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate a request to the default deployment."""
        return {"apikey": self.api_key, "X-Enkrypt-Deployment": self.deployment}

    # --- runtime controls -----------------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The configured faults."""
        return tuple(self._schedule.faults)

    def add_fault(self, *faults: Fault) -> None:
        """Inject more faults from the next request on."""
        self._schedule.add(faults)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._schedule.clear()

    def reset(self) -> None:
        """Forget recorded requests, counters and fault trigger counts.

        Request numbering (`Fault.on_requests`) restarts at 1 and the fault RNG is
        reseeded; configured faults and deployments stay.
        """
        self.requests.clear()
        self.stats = EmulatorStats()
        self._model_requests = 0
        self._schedule.reset()

    # --- handlers -------------------------------------------------------------------

    async def _record(self, request: web.Request) -> tuple[Mapping[str, object], str]:
        raw = await request.read()
        body: Mapping[str, object] = {}
        problem = ""
        try:
            decoded = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError as exc:
            problem = f"Invalid JSON body: {exc}"
        else:
            if isinstance(decoded, dict):
                body = decoded
            else:
                problem = "The request body must be a JSON object"
        recorded = RecordedRequest(
            request.method, request.path, request.headers.copy(), body, raw
        )
        self.requests.append(recorded)
        self.stats.requests += 1
        return body, problem

    async def _unknown(self, request: web.Request) -> web.Response:
        await self._record(request)
        rid = str(uuid.uuid4())
        message = f"No route for {request.method} {request.path}"
        return _error(404, message, rid, type_="not_found_error").response

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, _COMPLETIONS)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, _CHAT)

    async def _answer(self, request: web.Request, route: _Route) -> web.StreamResponse:
        """Answer a model request: faults, gateway, validation, guardrails, text."""
        body, problem = await self._record(request)
        self._model_requests += 1
        stream = body.get("stream") is True
        plan = self._schedule.plan(self._model_requests, stream=stream)
        self.stats.faults_injected += plan.injected
        rid = str(uuid.uuid4())
        if plan.first_byte_delay:
            await asyncio.sleep(plan.first_byte_delay)
        action = plan.action
        if action is not None and action.kind == "reset_before_response":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never sent: the transport is gone
        if action is not None and (action.kind == "status" or not stream):
            return _fault_response(action, rid, route.broken_json)
        try:
            policy = self._admit(request, rid)
            exchange = self._check_body(body, problem, policy, rid, route)
        except _Refusal as refusal:
            return refusal.response
        detections: dict[str, object] = {}
        if policy.input_detectors:
            found = run_guardrails(
                exchange.input_text(), policy.input_detectors, policy
            )
            detections["input_guardrails"] = found.report
            blocked = [name for name in found.fired if name in policy.block]
            if blocked:
                self.stats.blocked += 1
                message = "Input blocked by guardrails: " + ", ".join(blocked)
                error = {
                    "code": "guardrails_blocked",
                    "param": None,
                    "type": "guardrails_error",
                    "message": message,
                }
                payload = {"error": error, "enkrypt_policy_detections": detections}
                return _json(policy.block_status, payload, rid)
        reply = exchange.generate()
        if policy.output_detectors:
            found = run_guardrails(reply, policy.output_detectors, policy)
            detections["output_guardrails"] = found.report
        self.stats.completions += 1
        self.stats.chat_completions += route.chat
        if stream:
            self.stats.streams += 1
            events = exchange.events(detections or None, self.chunk_chars)
            delay = self.chunk_delay + plan.chunk_delay
            headers = {"x-request-id": rid}
            return await send_events(
                request, events, plan, delay, route.broken_event, headers
            )
        return _json(200, exchange.body(detections or None), rid)

    def _admit(self, request: web.Request, rid: str) -> DeploymentPolicy:
        """Check the gateway headers; return the deployment's policy."""
        key = request.headers.get("apikey")
        if not key:
            message = "No API key found in request"
            raise _Refusal(_json(401, {"message": message}, rid))
        if key != self.api_key:
            raise _Refusal(_json(401, {"message": "Unauthorized"}, rid))
        name = request.headers.get("X-Enkrypt-Deployment")
        header = "X-Enkrypt-Deployment"
        if not name:
            message = "Missing required header: X-Enkrypt-Deployment"
            raise _error(400, message, rid, param=header, code="missing_deployment")
        refresh = request.headers.get("X-Enkrypt-Refresh-Cache")
        if refresh is not None and refresh.lower() not in ("true", "false"):
            message = "X-Enkrypt-Refresh-Cache must be true or false"
            raise _error(400, message, rid, param="X-Enkrypt-Refresh-Cache")
        policy = self.deployments.get(name)
        if policy is None:
            message = f"Deployment {name!r} not found"
            code = "deployment_not_found"
            raise _error(
                404, message, rid, type_="not_found_error", param=header, code=code
            )
        return policy

    @staticmethod
    def _check_body(
        body: Mapping[str, object],
        problem: str,
        policy: DeploymentPolicy,
        rid: str,
        route: _Route,
    ) -> _Exchange:
        if problem:
            raise _error(400, problem, rid, code="invalid_json")
        try:
            return route.parse(body, policy.model)
        except InvalidRequestError as exc:
            if exc.detail:
                raise _Refusal(_json(422, {"detail": exc.detail}, rid)) from None
            raise _error(
                400, exc.message, rid, param=exc.param, code=exc.code
            ) from None

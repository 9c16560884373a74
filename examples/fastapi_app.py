"""An OpenAI-compatible gateway that sends every request through Enkrypt's guardrails.

Point any OpenAI client at it (``base_url="http://127.0.0.1:8000/v1"``): it serves
``POST /v1/completions`` and ``POST /v1/chat/completions``, streamed or not, and
``GET /healthz``. The deployment, not the request's ``model``, picks the model.

Run it::

    pip install ".[fastapi]" uvicorn
    ENKRYPT_API_KEY=... ENKRYPT_DEPLOYMENT=... uvicorn examples.fastapi_app:app

Settings come from the ``ENKRYPT_*`` environment variables (``ENKRYPT_BASE_URL``
too); `create_app` takes any other `EnkryptClient` argument, such as ``timeout``.
A blocked prompt is answered 400 with ``enkrypt_policy_detections``, an upstream
429 keeps its status and ``Retry-After``, a timeout is a 504 and any other upstream
failure a 502.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from starlette.responses import Response

from enkrypt_async import ConfigurationError, EnkryptClient, RawResponse
from enkrypt_async.fastapi import (
    EnkryptJSONResponse,
    EventSourceResponse,
    enkrypt_lifespan,
    get_enkrypt_client,
    install_exception_handlers,
)


def _invalid_request(message: str, param: str | None = None) -> Response:
    """A 400 in OpenAI's error format."""
    error = {"message": message, "type": "invalid_request_error", "param": param}
    return EnkryptJSONResponse({"error": {**error, "code": None}}, status_code=400)


async def _bad_arguments(request: Request, exc: Exception) -> Response:
    return _invalid_request(str(exc))


def _named_parameters(create: Callable[..., Any]) -> frozenset[str]:
    """The keyword-only parameters of a resource's ``create``."""
    parameters = inspect.signature(create).parameters.values()
    named = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    return frozenset(named - {"extra_body"})


def _gateway(
    create_of: Callable[[EnkryptClient], Callable[..., Awaitable[RawResponse[Any]]]],
    required: str,
) -> Callable[[Request], Awaitable[Response]]:
    """A handler sending the request's OpenAI body through a resource's ``create``.

    ``create_of`` picks the resource's ``with_raw_response.create`` from the
    client. The parameters it knows are passed by name, the others in
    ``extra_body``; ``model`` is dropped, since the deployment decides it. The
    answer goes back as the proxy sent it, with its request id: the library
    raised the error it may report.
    """
    known: frozenset[str] = frozenset()

    async def forward(request: Request) -> Response:
        nonlocal known
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            return _invalid_request("The body must be a JSON object")
        if required not in body:
            return _invalid_request(f"Missing required parameter: {required}", required)
        create = create_of(await get_enkrypt_client(request))
        known = known or _named_parameters(create)
        body.pop("model", None)
        stream = body.pop("stream", False) is True
        named = {key: value for key, value in body.items() if key in known}
        extra = {key: value for key, value in body.items() if key not in known}
        raw = await create(**named, stream=stream, extra_body=extra or None)
        if stream:
            return EventSourceResponse(raw.parse())
        headers = {"x-request-id": raw.request_id} if raw.request_id else None
        return Response(raw.content, media_type="application/json", headers=headers)

    return forward


def create_app(**client_settings: Any) -> FastAPI:
    """The gateway, with one `EnkryptClient` built from ``client_settings``.

    Args:
        **client_settings: Arguments of `EnkryptClient`; what is left out comes
            from the ``ENKRYPT_*`` environment variables.

    Returns:
        The FastAPI application.
    """
    # No /docs or /openapi.json: the gateway's API is OpenAI's, documented there.
    app = FastAPI(
        title="Enkrypt guarded gateway",
        lifespan=enkrypt_lifespan(**client_settings),
        openapi_url=None,
    )
    install_exception_handlers(app)
    app.add_exception_handler(ConfigurationError, _bad_arguments)

    # Plain routes: the body is relayed as it is, so FastAPI's parameter parsing
    # and dependency resolution would only add work to every request.
    app.add_route(
        "/v1/completions",
        _gateway(lambda client: client.completions.with_raw_response.create, "prompt"),
        methods=["POST"],
    )
    app.add_route(
        "/v1/chat/completions",
        _gateway(
            lambda client: client.chat.completions.with_raw_response.create, "messages"
        ),
        methods=["POST"],
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()

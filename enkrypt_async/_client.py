"""`EnkryptClient`: the pipeline of `BaseClient` with the proxy's resources on it."""

from __future__ import annotations

from functools import cached_property

from ._base_client import BaseClient
from ._resources.chat import Chat
from ._resources.completions import Completions

__all__ = ["EnkryptClient"]


class EnkryptClient(BaseClient):
    """An asyncio client for Enkrypt AI's guardrailed AI proxy.

    One ``aiohttp.ClientSession`` is opened lazily on the first request and reused
    for every request (keep-alive pooling); it is closed by `aclose` only if the
    client created it. Use it as ``async with`` or call `aclose` yourself.

    Args:
        api_key: Enkrypt API key; default ``$ENKRYPT_API_KEY``.
        deployment: Deployment name for ``X-Enkrypt-Deployment``; default
            ``$ENKRYPT_DEPLOYMENT``.
        base_url: Proxy base URL; default ``$ENKRYPT_BASE_URL``, else
            ``https://api.enkryptai.com/ai-proxy``.
        tags: Tags for ``X-Enkrypt-Tags`` (a string or a sequence, comma-joined).
        refresh_cache: ``X-Enkrypt-Refresh-Cache``; None leaves the header out.
        timeout: A `Timeout`, a number (the read timeout), or None for no limits.
        max_retries: Retries after a connection error, timeout or retryable status.
        default_headers: Extra headers sent with every request.
        session: A caller-owned ``aiohttp.ClientSession``: used, never closed.
        pool_limit: Connections our own pool may open at once.
        max_event_size: Largest single streamed event accepted, in bytes.
        max_response_size: Largest whole (decompressed) response body accepted.
        allow_insecure_http: Allow a plain ``http://`` base URL to a host other
            than loopback (the API key would travel in clear text).
        ssl_context: The TLS settings of the client's own connections (a private
            CA, a client certificate); default: verify the server against the
            system's trusted CAs. Not with ``session`` (configure its connector).
        event_hooks: ``{"request": [...], "response": [...]}``: async callables
            given a `HookRequest` before each attempt is sent (they may change its
            headers; they never see the API key) or a `HookResponse` when its
            status and headers arrive. An exception a hook raises reaches the
            caller as it is.

    Raises:
        ConfigurationError: No API key, or a malformed setting.

    Examples:
        >>> async def main() -> None:
        ...     async with EnkryptClient(deployment="my-deployment") as client:
        ...         completion = await client.completions.create(prompt="Hi")
        ...         print(completion.choices[0].text)
    """

    @cached_property
    def chat(self) -> Chat:
        """``POST /chat/completions``: chat completions (`ChatCompletions.create`)."""
        return Chat(self)

    @cached_property
    def completions(self) -> Completions:
        """``POST /completions``: text completions (`Completions.create`)."""
        return Completions(self)

"""The aiohttp side of the pipeline: sockets, timeouts, reading bodies, errors.

The one place, with `EnkryptClient`'s request loop and the streams, where aiohttp is
touched; its exceptions become ours here (`TRANSPORT_ERRORS`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Final

import aiohttp
from aiohttp import hdrs

from ._config import Timeout
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigurationError,
    EnkryptError,
    map_exceptions,
)
from ._responses import request_id_of

__all__ = [
    "TRANSPORT_ERRORS",
    "aiohttp_timeout",
    "keepalive_socket",
    "never_processed",
    "read_body",
    "release",
]

#: aiohttp's errors, mapped to ours; the first match wins, so subclasses come first.
TRANSPORT_ERRORS: Final[Mapping[type[BaseException], type[EnkryptError]]] = {
    asyncio.TimeoutError: APITimeoutError,
    TimeoutError: APITimeoutError,
    aiohttp.InvalidURL: ConfigurationError,
    aiohttp.ClientError: APIConnectionError,
    OSError: APIConnectionError,
}


def aiohttp_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    """The aiohttp timeouts for one of ours."""
    # aiohttp's ``connect`` spans the wait for a pooled connection, the name
    # lookup and the handshakes, so it gets the budgets of both that are set;
    # ``sock_connect`` bounds each TCP (and TLS) handshake alone, ``sock_read``
    # each read.
    budgets = [limit for limit in (timeout.pool, timeout.connect) if limit is not None]
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=sum(budgets) if budgets else None,
        sock_connect=timeout.connect,
        sock_read=timeout.read,
    )


def never_processed(error: BaseException | None) -> bool:
    """True when a failed attempt provably never reached the upstream's work.

    Only then may it be sent again: no connection was made (refused, name
    lookup, TLS handshake, connect or pool timeout), so nothing was sent. Once
    the request may have been written, any failure may have run the model and
    billed it, even a connection closed before any byte of an answer: a server
    that dropped an idle pooled connection cannot be told apart from one that
    read the request, sent a 1xx interim answer and failed.
    """
    return isinstance(
        error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
    )


#: TCP keepalive probes: first after a minute of silence, then every 10 s, 5 tries.
#: A slow LLM call can be silent for minutes; without probes, NAT gateways and load
#: balancers drop the idle connection and the answer never arrives.
_KEEPALIVE_OPTIONS: Final = (
    ("TCP_KEEPIDLE", 60),
    ("TCP_KEEPINTVL", 10),
    ("TCP_KEEPCNT", 5),
)


def keepalive_socket(addr_info: aiohttp.connector.AddrInfoType) -> socket.socket:
    """Create the connector's sockets with TCP keepalive switched on."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE_OPTIONS:
        option = getattr(socket, name, None)  # not every platform has them all
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return sock


def release(response: aiohttp.ClientResponse) -> None:
    """Give the connection back: to the pool if the body was read, else close it."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


async def read_body(
    response: aiohttp.ClientResponse, limit: int, *, truncate: bool = False
) -> bytes:
    """Read a whole body, at most ``limit`` bytes (after decompression).

    Raises:
        APIError: The body is larger than ``limit`` (unless ``truncate``).
        APIConnectionError: The connection failed or timed out while reading.
    """
    length = response.content_length
    if (
        length is not None
        and length <= limit
        and hdrs.CONTENT_ENCODING not in response.headers
    ):
        # aiohttp reads exactly Content-Length bytes of an unencoded body (and
        # refuses Content-Length beside Transfer-Encoding), so the limit holds
        # without counting: one read.
        with map_exceptions(TRANSPORT_ERRORS):
            return await response.content.read()
    chunks: list[bytes] = []
    size = 0
    with map_exceptions(TRANSPORT_ERRORS):
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (size - limit)])
                    break
                raise APIError(
                    f"Response body exceeds the {limit}-byte limit (max_response_size)",
                    request_id=request_id_of(response.headers),
                )
            chunks.append(chunk)
    return b"".join(chunks)

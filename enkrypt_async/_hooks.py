"""Event hooks: async callables run for every request sent and response received.

``EnkryptClient(event_hooks={"request": [...], "response": [...]})``, as in httpx.
A request hook gets a `HookRequest` before each attempt is sent (retries
included) and may change its headers; a response hook gets a `HookResponse` as
soon as the status and headers arrive, before an error status is raised and
before a stream's body is read. The API key is never shown to a hook.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._exceptions import ConfigurationError

__all__ = ["EventHooks", "HookRequest", "HookResponse", "check_event_hooks"]


@dataclass(eq=False)
class HookRequest:
    """A request about to be sent, as a request hook sees it.

    Attributes:
        method: The HTTP method (``"POST"``).
        url: The full URL.
        headers: The headers to send, without the API key. A hook may add,
            change or remove headers here (a trace context, say); the changes
            are checked as ``extra_headers`` are, and then sent.
        content: The JSON body, encoded (read-only).
    """

    method: str
    url: str
    headers: dict[str, str]
    content: bytes = field(repr=False)


@dataclass(frozen=True, eq=False)
class HookResponse:
    """A response whose status and headers arrived, as a response hook sees it.

    Attributes:
        request: The request it answers.
        status_code: The HTTP status (an error status is raised after the hooks).
        headers: The response headers (a case-insensitive mapping).
        request_id: The proxy's id for the request, when it sent one.
        elapsed: From sending this attempt to the response headers.
    """

    request: HookRequest
    status_code: int
    headers: Mapping[str, str]
    request_id: str | None
    elapsed: datetime.timedelta


RequestHook: TypeAlias = Callable[[HookRequest], Awaitable[object]]
ResponseHook: TypeAlias = Callable[[HookResponse], Awaitable[object]]
#: What ``event_hooks=`` takes: ``{"request": [...], "response": [...]}``.
EventHooks: TypeAlias = Mapping[str, Sequence[Callable[..., Awaitable[object]]]]

_KINDS: Final = ("request", "response")


def check_event_hooks(
    event_hooks: EventHooks | None,
) -> tuple[tuple[RequestHook, ...], tuple[ResponseHook, ...]]:
    """The request hooks and the response hooks of ``event_hooks``, checked."""
    if event_hooks is None:
        return (), ()
    if not isinstance(event_hooks, Mapping):
        raise ConfigurationError(
            'event_hooks must be a dict: {"request": [...], "response": [...]}'
        )
    unknown = set(event_hooks) - set(_KINDS)
    if unknown:
        raise ConfigurationError(
            f"Unknown event hook kind {', '.join(map(repr, sorted(unknown)))}; "
            "the kinds are 'request' and 'response'"
        )
    found: list[tuple[Callable[..., Awaitable[object]], ...]] = []
    for kind in _KINDS:
        hooks: object = event_hooks.get(kind, ())
        if isinstance(hooks, str) or not isinstance(hooks, Sequence):
            raise ConfigurationError(f"event_hooks[{kind!r}] must be a list")
        for hook in hooks:
            if not callable(hook):
                raise ConfigurationError(
                    f"event_hooks[{kind!r}] holds {hook!r}, which is not callable"
                )
        found.append(tuple(hooks))
    return found[0], found[1]

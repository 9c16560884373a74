"""pytest plugin: the ``enkrypt_emulator`` and ``enkrypt_client`` fixtures.

Registered through the ``pytest11`` entry point, so installing enkrypt_async makes
the fixtures available; they need pytest-asyncio (the ``testing`` extra brings it).
Two markers configure them:

- ``@pytest.mark.enkrypt_emulator(**kwargs)``: keyword arguments of the test's
  `EnkryptEmulator`, such as ``faults=[Fault(...)]``, ``deployments=`` or ``seed=``.
- ``@pytest.mark.enkrypt_client(**kwargs)``: keyword arguments of the test's
  `EnkryptClient`, such as ``max_retries=0``, ``timeout=`` or ``tags=``, over the
  fixture's own (the emulator's key, default deployment and base URL).

A marker may decorate the test, its class or its module (``pytestmark``). When
several apply, their keywords merge and, keyword by keyword, the one closest to the
test wins: the function's over the class's over the module's. Positional arguments,
a keyword the constructor does not take or a value it rejects fail the test with one
line naming the marker::

    @pytest.mark.asyncio
    @pytest.mark.enkrypt_emulator(faults=[Fault("status", status=503, on_requests={1})])
    @pytest.mark.enkrypt_client(max_retries=0)
    async def test_my_service_sees_the_outage(enkrypt_client):
        with pytest.raises(InternalServerError):
            await enkrypt_client.completions.create(prompt="hi")

Importing this module loads enkrypt_async and its emulator, so aiohttp and msgspec,
besides pytest and pytest-asyncio: nothing that the ``testing`` extra does not install.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from .._client import EnkryptClient
from ._emulator import EnkryptEmulator

#: The fixtures are coroutines: without pytest-asyncio they fail with a clear message
#: instead of breaking every pytest run where enkrypt_async is installed.
HAS_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None

__all__ = ["enkrypt_client", "enkrypt_emulator"]

_T = TypeVar("_T")

_EMULATOR_MARKER = "enkrypt_emulator"
_CLIENT_MARKER = "enkrypt_client"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``enkrypt_emulator`` and ``enkrypt_client`` markers."""
    config.addinivalue_line(
        "markers",
        f"{_EMULATOR_MARKER}(**kwargs): keyword arguments for the EnkryptEmulator of "
        "this test (faults=, deployments=, seed=, ...); the closest marker wins",
    )
    config.addinivalue_line(
        "markers",
        f"{_CLIENT_MARKER}(**kwargs): keyword arguments for the EnkryptClient of the "
        "enkrypt_client fixture (max_retries=, timeout=, tags=, ...), over the "
        "emulator's key, deployment and base_url; the closest marker wins",
    )


def _marker_kwargs(
    request: pytest.FixtureRequest, name: str, target: Callable[..., object]
) -> dict[str, Any]:
    """The keywords of every ``name`` marker of the test, the closest one winning.

    Fails the test (without a traceback) on positional arguments or on a keyword
    that ``target`` does not take.
    """
    kwargs: dict[str, Any] = {}
    # iter_markers yields the closest first (function, class, module): applying them
    # in reverse lets a closer marker overwrite a farther one's keywords.
    for marker in reversed(list(request.node.iter_markers(name))):
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{name} takes keyword arguments only, "
                f"got {marker.args!r}",
                pytrace=False,
            )
        kwargs.update(marker.kwargs)
    accepted = inspect.signature(target).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        pytest.fail(
            f"@pytest.mark.{name}: unknown keyword(s) {', '.join(unknown)}; "
            f"{getattr(target, '__name__', target)} takes {', '.join(accepted)}",
            pytrace=False,
        )
    return kwargs


def _build(
    name: str,
    target: Callable[..., _T],
    defaults: dict[str, Any],
    marked: dict[str, Any],
) -> _T:
    """``target(**defaults, **marked)``; a rejected marker fails the test, named."""
    try:
        return target(**{**defaults, **marked})
    except (TypeError, ValueError) as exc:
        if not marked:
            raise
        error = exc
    # Failing outside the except block keeps the constructor's traceback out of the
    # report: the message says all.
    settings = ", ".join(f"{key}={value!r}" for key, value in marked.items())
    pytest.fail(
        f"@pytest.mark.{name}({settings}): {type(error).__name__}: {error}",
        pytrace=False,
    )


if HAS_PYTEST_ASYNCIO:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def enkrypt_emulator(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[EnkryptEmulator]:
        """A fresh EnkryptEmulator; @pytest.mark.enkrypt_emulator(faults=[Fault(...)]).

        A running `EnkryptEmulator` on 127.0.0.1, a new one for each test, stopped
        after it. ``@pytest.mark.enkrypt_emulator(**kwargs)`` configures it with the
        keyword arguments of `EnkryptEmulator` (``faults``, ``deployments``,
        ``seed``, ``chunk_chars``, ``chunk_delay``, ...).

        Fault injection: ``Fault`` (from ``enkrypt_async.testing``) makes the emulator
        misbehave on the requests you choose, e.g. a 503 on the first request only::

            @pytest.mark.enkrypt_emulator(
                faults=[Fault("status", status=503, on_requests={1})]
            )

        or, from inside the test, ``enkrypt_emulator.add_fault(Fault(...))`` (from
        the next request on) and ``enkrypt_emulator.clear_faults()``. Kinds:
        ``status``, ``reset_before_response``, ``slow_first_byte``,
        ``malformed_json``, and for streams ``reset_mid_stream``, ``slow_chunks``,
        ``truncate_stream``, ``stream_error_event``. ``enkrypt_emulator.requests``
        and ``.stats`` record what your code sent and what was injected.
        """
        emulator = _build(
            _EMULATOR_MARKER,
            EnkryptEmulator,
            {},
            _marker_kwargs(request, _EMULATOR_MARKER, EnkryptEmulator),
        )
        async with emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def enkrypt_client(
        request: pytest.FixtureRequest, enkrypt_emulator: EnkryptEmulator
    ) -> AsyncIterator[EnkryptClient]:
        """An EnkryptClient to the emulator; @pytest.mark.enkrypt_client(max_retries=0).

        An `EnkryptClient` connected to ``enkrypt_emulator``, closed after the test,
        with the emulator's key, default deployment and base URL, and the client's
        defaults otherwise (so ``max_retries=2``).
        ``@pytest.mark.enkrypt_client(**kwargs)`` overrides any keyword of
        `EnkryptClient`, e.g. ``max_retries=0`` to see the first failure,
        ``timeout=Timeout(read=0.5)`` (or a number of seconds) to hit a slow
        answer, ``tags=``, ``default_headers=`` or ``deployment=``.

        Fault injection: configure the emulator's faults with
        ``@pytest.mark.enkrypt_emulator(faults=[Fault(...)])`` or
        ``enkrypt_emulator.add_fault(Fault(...))`` (see the ``enkrypt_emulator``
        fixture); this client then meets them, e.g.::

            @pytest.mark.enkrypt_emulator(faults=[Fault("slow_first_byte", delay=2)])
            @pytest.mark.enkrypt_client(timeout=0.5, max_retries=0)
            async def test_times_out(enkrypt_client):
                with pytest.raises(APITimeoutError):
                    await enkrypt_client.completions.create(prompt="hi")
        """
        defaults = {
            "api_key": enkrypt_emulator.api_key,
            "deployment": enkrypt_emulator.deployment,
            "base_url": enkrypt_emulator.base_url,
        }
        marked = _marker_kwargs(request, _CLIENT_MARKER, EnkryptClient)
        client = _build(_CLIENT_MARKER, EnkryptClient, defaults, marked)
        async with client:
            yield client

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture
    def enkrypt_emulator() -> None:
        """Unavailable: the emulator fixtures need pytest-asyncio."""
        pytest.fail("the enkrypt_emulator fixture needs pytest-asyncio installed")

    @pytest.fixture
    def enkrypt_client() -> None:
        """Unavailable: the emulator fixtures need pytest-asyncio."""
        pytest.fail("the enkrypt_client fixture needs pytest-asyncio installed")

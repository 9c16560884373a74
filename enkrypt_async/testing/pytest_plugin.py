"""pytest plugin: an ``enkrypt_emulator`` fixture (and ``enkrypt_client``).

Registered through the ``pytest11`` entry point, so installing enkrypt_async makes
the fixtures available; they need pytest-asyncio. Configure the emulator of one
test with the ``enkrypt_emulator`` marker, whose keyword arguments go to
`EnkryptEmulator`::

    @pytest.mark.asyncio
    @pytest.mark.enkrypt_emulator(faults=[Fault("status", status=503, on_requests={1})])
    async def test_my_service_retries(enkrypt_client):
        completion = await enkrypt_client.completions.create(prompt="hi")
        assert completion.choices[0].text

Importing this module is cheap: aiohttp and the emulator load on first use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._client import EnkryptClient
    from ._emulator import EnkryptEmulator

#: The fixtures are coroutines: without pytest-asyncio they fail with a clear message
#: instead of breaking every pytest run where enkrypt_async is installed.
HAS_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None

__all__ = ["enkrypt_client", "enkrypt_emulator"]

_MARKER = "enkrypt_emulator"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``enkrypt_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**kwargs): keyword arguments for the EnkryptEmulator of this test",
    )


def _emulator_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
    return dict(marker.kwargs)


if HAS_PYTEST_ASYNCIO:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def enkrypt_emulator(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[EnkryptEmulator]:
        """A running `EnkryptEmulator` on 127.0.0.1, stopped after the test."""
        from ._emulator import EnkryptEmulator

        async with EnkryptEmulator(**_emulator_kwargs(request)) as emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def enkrypt_client(
        enkrypt_emulator: EnkryptEmulator,
    ) -> AsyncIterator[EnkryptClient]:
        """An `EnkryptClient` connected to ``enkrypt_emulator``, closed after."""
        from .._client import EnkryptClient

        async with EnkryptClient(
            api_key=enkrypt_emulator.api_key,
            deployment=enkrypt_emulator.deployment,
            base_url=enkrypt_emulator.base_url,
        ) as client:
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

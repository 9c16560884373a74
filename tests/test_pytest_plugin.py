"""The pytest plugin, as users meet it: fixtures in a test suite of their own."""

from __future__ import annotations

import pytest

from enkrypt_async import EnkryptClient
from enkrypt_async.testing import EnkryptEmulator, Fault

USER_TESTS = """
import pytest
from enkrypt_async import RateLimitError
from enkrypt_async.testing import Fault


@pytest.mark.asyncio
async def test_completion(enkrypt_client, enkrypt_emulator):
    completion = await enkrypt_client.completions.create(prompt="hello", seed=1)
    assert completion.choices[0].text
    assert enkrypt_emulator.requests[0].body == {"prompt": "hello", "seed": 1}


@pytest.mark.asyncio
@pytest.mark.enkrypt_emulator(faults=[Fault("status", status=429, on_requests={1})])
async def test_rate_limited(enkrypt_client):
    with pytest.raises(RateLimitError):
        await enkrypt_client.completions.create(prompt="hello", max_retries=0)


@pytest.mark.asyncio
@pytest.mark.enkrypt_emulator(chunk_chars=1)
async def test_streaming(enkrypt_client):
    stream = await enkrypt_client.completions.create(prompt="hi", stream=True)
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert all(len(c.choices[0].text) <= 1 for c in chunks if c.choices)
"""


@pytest.fixture(autouse=True)
def _user_ini(request: pytest.FixtureRequest) -> None:
    if "pytester" in request.fixturenames:
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_fixtures_work_in_a_users_suite(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-W", "error", "-o", f"asyncio_mode={mode}", "-q")
    result.assert_outcomes(passed=3)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*enkrypt_emulator(**kwargs)*"])


def test_marker_rejects_positional_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.asyncio
@pytest.mark.enkrypt_emulator(5)
async def test_x(enkrypt_emulator):
    pass
"""
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


async def test_fixture_gives_a_running_emulator(
    enkrypt_emulator: EnkryptEmulator, enkrypt_client: EnkryptClient
) -> None:
    assert enkrypt_emulator.base_url.startswith("http://127.0.0.1:")
    assert enkrypt_client.base_url == enkrypt_emulator.base_url
    completion = await enkrypt_client.completions.create(prompt="hi")
    assert completion.enkrypt_policy_detections is not None


@pytest.mark.enkrypt_emulator(faults=[Fault("status", status=503, on_requests={1})])
async def test_marker_configures_the_emulator(
    enkrypt_emulator: EnkryptEmulator,
) -> None:
    assert len(enkrypt_emulator.faults) == 1

"""The pytest plugin, as users meet it: fixtures in a test suite of their own."""

from __future__ import annotations

import glob
import importlib.metadata
import json
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from enkrypt_async import EnkryptClient, Timeout
from enkrypt_async.testing import DeploymentPolicy, EnkryptEmulator, Fault

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


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["*enkrypt_emulator(**kwargs)*", "*enkrypt_client(**kwargs)*"]
    )


def _lines_containing(*texts: str) -> list[str]:
    """fnmatch patterns for lines that contain each text, in this order."""
    return [f"*{glob.escape(text)}*" for text in texts]


def test_fixture_docs_point_to_the_markers_and_fault_injection(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        _lines_containing(
            "enkrypt_emulator -- ",
            "@pytest.mark.enkrypt_emulator(faults=[Fault(...)])",
            "enkrypt_client -- ",
            "@pytest.mark.enkrypt_client(max_retries=0)",
        )
    )
    result = pytester.runpytest("--fixtures", "-v")
    result.stdout.fnmatch_lines(
        _lines_containing(
            "enkrypt_emulator -- ",
            "@pytest.mark.enkrypt_emulator(**kwargs)",
            "Fault injection",
            'faults=[Fault("status", status=503, on_requests={1})]',
            "enkrypt_emulator.add_fault(Fault(...))",
            "enkrypt_client -- ",
            "@pytest.mark.enkrypt_client(**kwargs)",
            "Fault injection",
            "@pytest.mark.enkrypt_client(timeout=0.5, max_retries=0)",
        )
    )


CLIENT_MARKER_TESTS = """
import pytest
from enkrypt_async import APITimeoutError, InternalServerError, Timeout
from enkrypt_async.testing import Fault

pytestmark = pytest.mark.asyncio

OUTAGE = Fault("status", status=503, retry_after=0, on_requests={1})
STALL = Fault("slow_first_byte", delay=30)


@pytest.mark.enkrypt_emulator(faults=[OUTAGE])
@pytest.mark.enkrypt_client(max_retries=0)
async def test_without_retries_the_outage_shows(enkrypt_client, enkrypt_emulator):
    with pytest.raises(InternalServerError):
        await enkrypt_client.completions.create(prompt="hi")
    assert len(enkrypt_emulator.requests) == 1


@pytest.mark.enkrypt_emulator(faults=[OUTAGE])
async def test_by_default_a_retry_hides_the_outage(enkrypt_client, enkrypt_emulator):
    completion = await enkrypt_client.completions.create(prompt="hi")
    assert completion.choices[0].text
    assert len(enkrypt_emulator.requests) == 2


@pytest.mark.enkrypt_emulator(faults=[STALL])
@pytest.mark.enkrypt_client(max_retries=0)
@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(timeout, marks=pytest.mark.enkrypt_client(timeout=timeout))
        for timeout in (0.2, Timeout(read=0.2))
    ],
    ids=["seconds", "Timeout"],
)
async def test_the_read_timeout_reaches_the_client(timeout, enkrypt_client):
    assert enkrypt_client.timeout == Timeout.coerce(timeout)
    with pytest.raises(APITimeoutError):
        await enkrypt_client.completions.create(prompt="hi")
"""


def test_client_marker_settings_reach_the_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CLIENT_MARKER_TESTS)
    result = pytester.runpytest("-W", "error", "--strict-markers", "-q")
    result.assert_outcomes(passed=4)


CLOSEST_MARKER_TESTS = """
import pytest

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.enkrypt_client(max_retries=0, tags="module"),
]


async def tags_sent(client, emulator):
    await client.completions.create(prompt="hi")
    return emulator.requests[-1].headers["X-Enkrypt-Tags"]


@pytest.mark.enkrypt_client(tags="class", timeout=3.0)
class TestClass:
    @pytest.mark.enkrypt_client(tags="far")
    @pytest.mark.enkrypt_client(tags="function")
    async def test_the_function_marker_wins(self, enkrypt_client, enkrypt_emulator):
        assert await tags_sent(enkrypt_client, enkrypt_emulator) == "function"
        assert enkrypt_client.timeout.read == 3.0  # from the class
        assert enkrypt_client.max_retries == 0  # from the module

    async def test_the_class_marker_wins(self, enkrypt_client, enkrypt_emulator):
        assert await tags_sent(enkrypt_client, enkrypt_emulator) == "class"
        assert enkrypt_client.timeout.read == 3.0


async def test_the_module_marker_applies(enkrypt_client, enkrypt_emulator):
    assert await tags_sent(enkrypt_client, enkrypt_emulator) == "module"
    assert enkrypt_client.max_retries == 0
    assert enkrypt_client.timeout.read == 600.0  # the client's default
    assert enkrypt_client.deployment == enkrypt_emulator.deployment
"""


def test_the_closest_marker_wins_keyword_by_keyword(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CLOSEST_MARKER_TESTS)
    result = pytester.runpytest("-W", "error", "--strict-markers", "-q")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("marker", "fixture", "message"),
    [
        pytest.param(
            "enkrypt_emulator(5)",
            "enkrypt_emulator",
            "@pytest.mark.enkrypt_emulator takes keyword arguments only, got (5,)",
            id="emulator-positional",
        ),
        pytest.param(
            "enkrypt_client(0)",
            "enkrypt_client",
            "@pytest.mark.enkrypt_client takes keyword arguments only, got (0,)",
            id="client-positional",
        ),
        pytest.param(
            "enkrypt_client(retries=0, max_retries=0)",
            "enkrypt_client",
            "@pytest.mark.enkrypt_client: unknown keyword(s) retries; "
            "EnkryptClient takes api_key, deployment, *",
            id="client-unknown-keyword",
        ),
        pytest.param(
            "enkrypt_emulator(fault=[])",
            "enkrypt_emulator",
            "@pytest.mark.enkrypt_emulator: unknown keyword(s) fault; "
            "EnkryptEmulator takes host, port, *",
            id="emulator-unknown-keyword",
        ),
        pytest.param(
            "enkrypt_client(max_retries=-1)",
            "enkrypt_client",
            "@pytest.mark.enkrypt_client(max_retries=-1): ConfigurationError: *",
            id="client-bad-value",
        ),
    ],
)
def test_a_bad_marker_fails_the_test_with_a_message_naming_it(
    pytester: pytest.Pytester, marker: str, fixture: str, message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
import pytest

@pytest.mark.asyncio
@pytest.mark.{marker}
async def test_x({fixture}):
    pass
"""
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*another exception occurred*")


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


@pytest.mark.enkrypt_emulator(
    deployments={"strict": DeploymentPolicy(block={"pii"})},
)
@pytest.mark.enkrypt_client(deployment="strict", timeout=Timeout(read=5.0))
async def test_client_marker_overrides_the_fixtures_defaults(
    enkrypt_emulator: EnkryptEmulator, enkrypt_client: EnkryptClient
) -> None:
    assert enkrypt_client.base_url == enkrypt_emulator.base_url
    assert enkrypt_client.deployment == "strict"
    assert enkrypt_client.timeout == Timeout(read=5.0)
    await enkrypt_client.completions.create(prompt="hi")
    [sent] = enkrypt_emulator.requests
    assert sent.headers["X-Enkrypt-Deployment"] == "strict"
    assert sent.headers["apikey"] == enkrypt_emulator.api_key


#: What the ``testing`` extra must not need: the heavier test tools of this project.
NOT_IN_THE_TESTING_EXTRA = {
    "aioresponses",
    "fastapi",
    "httpx",
    "hypothesis",
    "openai",
    "starlette",
}


def _requirements_closure(name: str, extra: str) -> set[str]:
    """The distributions ``name[extra]`` installs, itself included, canonicalized."""
    closure: set[str] = set()
    pending = [(name, frozenset({extra}))]
    while pending:
        distribution, extras = pending.pop()
        closure.add(canonicalize_name(distribution))
        try:
            specs = importlib.metadata.requires(distribution) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here, so it cannot have been imported
        for spec in specs:
            requirement = Requirement(spec)
            needed = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": e}) for e in extras | {""}
            )
            if needed and canonicalize_name(requirement.name) not in closure:
                pending.append((requirement.name, frozenset(requirement.extras)))
    return closure


def test_the_plugin_imports_only_what_the_testing_extra_installs() -> None:
    program = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import enkrypt_async.testing.pytest_plugin\n"
        "new = {m.partition('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    imported = set(json.loads(output)) - set(sys.stdlib_module_names)
    assert {"aiohttp", "msgspec", "pytest", "pytest_asyncio"} <= imported
    assert not imported & NOT_IN_THE_TESTING_EXTRA
    allowed = _requirements_closure("enkrypt-async", "testing")
    owners = importlib.metadata.packages_distributions()
    outside = {
        module: owners[module]
        for module in imported
        if module in owners
        and not {canonicalize_name(d) for d in owners[module]} & allowed
    }
    assert not outside, (
        f"imported, but not installed by enkrypt-async[testing]: {outside}"
    )

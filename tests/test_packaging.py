"""The documentation agrees with pyproject.toml and the code; one version, one place.

- Every ``name>=version`` and "Python 3.x or newer" in README.md and docs/*.md is
  what pyproject.toml requires.
- Every documented program (a sample that calls ``asyncio.run``) passes
  ``mypy --strict``, and the README's "Use" program prints text, not reprs.
- The version is written once, in ``enkrypt_async/_version.py``.

The build itself (the sdist's and the wheel's contents, the wheel run from a fresh
environment) is checked by ``nox -s build``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import enkrypt_async
from enkrypt_async.cli import main as cli_main
from enkrypt_async.testing import EnkryptEmulator

from .test_docs_samples import DOC_FILES, SAMPLES, Sample

ROOT = Path(__file__).resolve().parent.parent

REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=(?P<min>[\w.]+)")
MENTIONED_REQUIREMENT = re.compile(
    r"(?<![\w-])(?P<name>[A-Za-z][\w.-]*)(?:\[[^\]]*\])?>=(?P<min>\d(?:[\w.]*\d)?)"
)
MENTIONED_PYTHON = re.compile(r"Python \(?(?P<min>3\.\d+) or newer")
#: A repr of an object (``PolicyDetections(input=...)``, ``<Foo object at 0x..>``).
REPR = re.compile(r"\b[A-Z]\w*\(\w+=|<\w[\w.]* object at 0x")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib arrived in Python 3.11")
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return data


def _minimums(project: dict[str, Any]) -> dict[str, set[str]]:
    """Each requirement's lower bounds, over the dependencies and every extra."""
    minimums: dict[str, set[str]] = defaultdict(set)
    extras = project["optional-dependencies"].values()
    for spec in [*project["dependencies"], *(s for extra in extras for s in extra)]:
        if match := REQUIREMENT.match(spec):
            minimums[match["name"].lower()].add(match["min"])
    return minimums


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, re.Match[str]]]:
    return [
        (f"{file.relative_to(ROOT).as_posix()}:{number}", match)
        for file in DOC_FILES
        for number, line in enumerate(file.read_text("utf-8").splitlines(), 1)
        for match in pattern.finditer(line)
    ]


def test_documented_requirements_match_pyproject(pyproject: dict[str, Any]) -> None:
    minimums = _minimums(pyproject["project"])
    mentions = _mentions(MENTIONED_REQUIREMENT)
    for where, match in mentions:
        name = match["name"].lower()
        assert match["min"] in minimums.get(name, set()), (
            f"{where}: {match[0]}, but pyproject.toml says {sorted(minimums[name])}"
        )
    mentioned = {match["name"].lower() for _, match in mentions}
    assert {"aiohttp", "msgspec"} <= mentioned


def test_documented_python_matches_pyproject(pyproject: dict[str, Any]) -> None:
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    mentions = _mentions(MENTIONED_PYTHON)
    assert mentions
    for where, match in mentions:
        assert match["min"] == minimum, f"{where}: {match[0]}, not {minimum}"
    classified = [
        c.rsplit(" :: ", 1)[1]
        for c in pyproject["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert min(classified, key=lambda v: int(v.split(".")[1])) == minimum


def _programs() -> list[Sample]:
    """The samples that are whole programs: they call ``asyncio.run``."""
    return [s for s in SAMPLES if s.mode == "run" and "asyncio.run(" in s.source]


def _readme_use_sample() -> Sample:
    """The first python block under the README's "Use" heading."""
    readme = (ROOT / "README.md").read_text("utf-8").splitlines()
    use = readme.index("## Use") + 1
    return next(s for s in SAMPLES if s.path == "README.md" and s.line > use)


def test_documented_programs_pass_mypy_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it comes with the `test` extra)")
    programs = _programs()
    assert _readme_use_sample() in programs, "the README's Use sample is a program"
    files = []
    for sample in programs:
        file = tmp_path / (re.sub(r"\W", "_", sample.id) + ".py")
        file.write_text(sample.source, encoding="utf-8")
        files.append(str(file))
    config = ["--config-file", str(ROOT / "pyproject.toml")]
    cache = ["--cache-dir", os.devnull]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *config, *cache, *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_readme_use_program_prints_text_not_reprs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    program = _readme_use_sample()
    async with EnkryptEmulator() as emu:
        monkeypatch.setenv("ENKRYPT_API_KEY", emu.api_key)
        monkeypatch.setenv("ENKRYPT_DEPLOYMENT", emu.deployment)
        monkeypatch.setenv("ENKRYPT_BASE_URL", emu.base_url)
        code = compile(program.source, program.id, "exec")
        await asyncio.to_thread(exec, code, {"__name__": "__main__"})
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert len(lines) >= 4, printed
    assert not REPR.search(printed), printed
    assert "None" not in lines, printed
    assert lines[-1].startswith("400 {'input': ["), printed


def test_pyproject_takes_the_version_from_the_package(
    pyproject: dict[str, Any],
) -> None:
    assert "version" in pyproject["project"]["dynamic"]
    assert "version" not in pyproject["project"]
    version_file = pyproject["tool"]["hatch"]["version"]["path"]
    assert version_file == "enkrypt_async/_version.py"


def test_version_is_written_only_in_version_py(
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = enkrypt_async.__version__
    # docs/performance.md records the versions a benchmark ran with: a record.
    docs = [f for f in DOC_FILES if f.name != "performance.md"]
    sources = [*(ROOT / "enkrypt_async").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    holders = [
        path.relative_to(ROOT).as_posix()
        for path in [*sources, *docs, ROOT / "mkdocs.yml"]
        if version in path.read_text("utf-8")
    ]
    assert holders == ["enkrypt_async/_version.py"]
    with pytest.raises(SystemExit) as exited:
        cli_main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == version

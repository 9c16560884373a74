"""Task runner: the same commands for people and CI (``nox -s tests lint ...``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

SOURCES = [
    "enkrypt_async",
    "tests",
    "examples",
    "fuzz",
    "benchmarks",
    "tools",
    "noxfile.py",
]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (warnings are errors, see pyproject.toml)."""
    session.install("-e", ".[test]")
    args = session.posargs or ["-q"]
    session.run("pytest", *args, env={"PYTHONDEVMODE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[test,lint,fastapi]")
    session.run("mypy", "--strict", "enkrypt_async", "tests", "examples")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", ".[docs]")
    # mkdocstrings formats the signatures with ruff (separate_signature in mkdocs.yml).
    session.install("ruff>=0.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; writes benchmarks/results/ (a table and a chart)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/, check them, and run the wheel."""
    session.install("build>=1.2", "twine>=6.1")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "--strict", *map(str, Path("dist").iterdir()))
    session.run("python", "tools/check_dist.py", "dist")


@nox.session(name="format")
def format_(session: nox.Session) -> None:
    """Apply ruff's fixes and formatting (not part of CI)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "--fix", *SOURCES)
    session.run("ruff", "format", *SOURCES)


if os.environ.get("CI"):
    nox.options.reuse_existing_virtualenvs = False

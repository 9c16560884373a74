"""Check the built sdist and wheel, then run the wheel outside the checkout.

Usage: ``python tools/check_dist.py DIST_DIR`` (``nox -s build`` runs it). The wheel
must hold only the package (with ``py.typed``) and its ``.dist-info``; the sdist the
package, every file of ``tests/``, ``docs/`` and ``examples/``, and the project files.
The wheel is then installed into a fresh virtual environment in a temporary
directory, which is also the working directory, so the checkout cannot be imported:
the installed library completes and streams against its own emulator, and the
installed command answers ``--version`` with the wheel's version.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "enkrypt_async"
SDIST_DIRS = ("enkrypt_async", "tests", "docs", "examples", "tools")
SDIST_FILES = {
    "PKG-INFO",
    ".gitignore",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "mkdocs.yml",
    "noxfile.py",
}

SMOKE = """\
import asyncio, sys
import enkrypt_async
from enkrypt_async import EnkryptClient
from enkrypt_async.testing import EnkryptEmulator

assert enkrypt_async.__file__.startswith(sys.prefix), enkrypt_async.__file__
assert enkrypt_async.__version__ == sys.argv[1], enkrypt_async.__version__

async def main() -> None:
    async with EnkryptEmulator() as emu, EnkryptClient(
        api_key=emu.api_key, deployment=emu.deployment, base_url=emu.base_url
    ) as client:
        chat = await client.chat.completions.create(
            messages=[{"role": "user", "content": "give me a good family joke"}]
        )
        assert chat.choices[0].message.content, chat
        stream = await client.completions.create(prompt="Once upon a time", stream=True)
        async with stream:
            completion = await stream.collect()
        assert completion.choices[0].text, completion
        print("completed against the emulator:", chat.choices[0].message.content[:40])

asyncio.run(main())
"""


def _source_files(directory: str) -> set[str]:
    """Files under a directory of the checkout, bytecode caches left out."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / directory).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def check_wheel(wheel: Path, version: str) -> None:
    """The wheel holds the package, its py.typed and its metadata, nothing else."""
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"{PACKAGE}-{version}.dist-info/"
    strays = [n for n in names if not n.startswith((f"{PACKAGE}/", dist_info))]
    assert not strays, f"{wheel.name} holds {strays}"
    assert f"{PACKAGE}/py.typed" in names, f"{wheel.name} has no py.typed"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert set(_source_files(PACKAGE)) <= set(names), "package files are missing"


def check_sdist(sdist: Path) -> None:
    """The sdist holds the package, tests, docs, examples and the project files."""
    with tarfile.open(sdist) as archive:
        top = sdist.name.removesuffix(".tar.gz") + "/"
        names = {m.name.removeprefix(top) for m in archive.getmembers() if m.isfile()}
    expected = SDIST_FILES.union(*(_source_files(d) for d in SDIST_DIRS))
    assert expected <= names, f"{sdist.name} misses {sorted(expected - names)}"
    assert names <= expected, f"{sdist.name} also holds {sorted(names - expected)}"


def run_wheel(wheel: Path, version: str) -> None:
    """Install the wheel into a fresh environment and use it from outside the tree."""
    with tempfile.TemporaryDirectory(prefix="enkrypt-dist-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")

        def run(*args: str) -> str:
            print("$", *(a if "\n" not in a else "<script>" for a in args), flush=True)
            done = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"exit status {done.returncode}\n{done.stderr}")
            return done.stdout

        run(python, "-m", "pip", "install", "--quiet", str(wheel.resolve()))
        print(run(python, "-c", SMOKE, version), end="")
        reported = run(str(env_dir / "bin" / "enkrypt-async"), "--version").strip()
        assert reported == version, f"enkrypt-async --version says {reported}"
        answer = run(python, "-m", PACKAGE, "complete", "--emulator", "hello there")
        assert answer.strip(), "`complete` printed nothing"


def main(dist: Path) -> None:
    """Check the one sdist and the one wheel found in ``dist``."""
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    version = wheel.name.split("-")[1]
    assert sdist.name == f"{PACKAGE}-{version}.tar.gz", sdist.name
    check_wheel(wheel, version)
    check_sdist(sdist)
    run_wheel(wheel, version)
    print(f"{sdist.name} and {wheel.name}: contents as expected; the wheel runs")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

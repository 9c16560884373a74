"""``python -m benchmarks --profile``: the hot paths under pyinstrument.

Each (client, load) is profiled in a fresh process; enkrypt_async and the bare
floor side by side, so the time beyond the floor stands out. Writes
``profile-<client>-<load>.html`` and ``.txt`` into the results directory.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import subprocess
import sys
from pathlib import Path

from ._clients import make_client, run_requests, run_streams
from ._payloads import ROOT, child_env

_LIBRARIES = {
    "bare": ("aiohttp", "msgspec", "benchmarks._floor"),
    "enkrypt": ("enkrypt_async",),
    "openai": ("openai",),
    "openai-aiohttp": ("openai",),
}
PROFILED = (
    ("enkrypt", "request", 64),
    ("bare", "request", 64),
    ("enkrypt", "stream", 32),
    ("bare", "stream", 32),
)


async def _load(
    kind: str, scenario: str, port: int, concurrency: int, duration: float
) -> None:
    client = make_client(kind, f"http://127.0.0.1:{port}/ai-proxy")
    try:
        if scenario == "request":
            await run_requests(client, concurrency, duration)
        else:
            await run_streams(client, concurrency, duration)
    finally:
        await client.aclose()


def profile(args: argparse.Namespace) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit("--profile needs pyinstrument: pip install pyinstrument")
    # Import the client's libraries first: their import is not the hot path.
    for module in _LIBRARIES[args.kind]:
        importlib.import_module(module)
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    asyncio.run(
        _load(args.kind, args.scenario, args.port, args.concurrency, args.duration)
    )
    profiler.stop()
    stem = args.output / f"profile-{args.kind}-{args.scenario}"
    stem.with_suffix(".html").write_text(profiler.output_html())
    stem.with_suffix(".txt").write_text(
        profiler.output_text(unicode=True, color=False, show_all=False)
    )


def run_all(port: int, duration: float, output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kind, scenario, concurrency in PROFILED:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks._profile",
                kind,
                scenario,
                f"--port={port}",
                f"--concurrency={concurrency}",
                f"--duration={duration}",
                f"--output={output}",
            ],
            check=True,
            cwd=ROOT,
            env=child_env(),
        )
        stem = output / f"profile-{kind}-{scenario}"
        written += [stem.with_suffix(".html"), stem.with_suffix(".txt")]
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._profile")
    parser.add_argument("kind")
    parser.add_argument("scenario", choices=("request", "stream"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--output", type=Path, required=True)
    profile(parser.parse_args(argv))


if __name__ == "__main__":
    main()

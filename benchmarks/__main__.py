"""``python -m benchmarks``: run every benchmark and write ``benchmarks/results/``.

The loopback server runs in its own process for the whole run; every
(client, load, repeat) runs in a fresh client process, clients alternating in
rotating order so drift on a noisy machine is spread over all of them. Then each
client runs once more under callgrind, whose instruction counts do not drift.
Then the relay benchmark (`_relay`) measures three FastAPI gateways in between a
driver and the same server, the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import _imports, _instructions, _machine, _relay, _relay_report, _report
from ._clients import KINDS, aiohttp_backend_available
from ._payloads import RESULTS, ROOT, child_env

#: (scenario, concurrency); concurrency 0 is the open-idle-streams memory load.
LOADS = (
    ("request", 1),
    ("request", 64),
    ("stream", 1),
    ("stream", 32),
    ("paced", 1),
    ("chat", 1),
    ("idle", 0),
)


@contextlib.contextmanager
def serving(command: Sequence[str], what: str) -> Iterator[tuple[int, Any]]:
    """Run ``command``, a server printing ``PORT <n>``; yield the port, the process.

    The process is terminated on exit; its stderr is shown if it failed.
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{what} did not start: {line!r}")
        yield int(line.split()[1]), process
    finally:
        process.terminate()
        try:
            # Under callgrind, the last dump is written at exit: it takes a while.
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if process.returncode not in (0, -signal.SIGTERM):
            print(stderr, file=sys.stderr)


@contextlib.contextmanager
def server() -> Iterator[int]:
    """Start the loopback server in its own process; yield its port."""
    command = [sys.executable, "-m", "benchmarks._server", "--port", "0"]
    with serving(command, "the benchmark server") as (port, _):
        yield port


def _python(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _describe(run: dict[str, Any]) -> str:
    if run["scenario"] == "request":
        return f"{run['rps']:8,.0f} req/s {run['cpu_per_request_us']:8.0f} us CPU/req"
    if run["scenario"] in ("stream", "paced", "chat"):
        return (
            f"{run['chunks_per_s']:8,.0f} chunks/s "
            f"{run['cpu_per_chunk_us']:7.2f} us CPU/chunk "
            f"first chunk {run['ttfc_ms']:.2f} ms"
        )
    return f"{run['kb_per_stream']:.1f} KB/stream, peak {run['peak_rss_mb']:.0f} MB"


def run_clients(
    port: int, kinds: Sequence[str], repeats: int, duration: float, idle: int
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for number, (scenario, concurrency) in enumerate(LOADS):
            shift = (repeat + number) % len(kinds)
            for kind in [*kinds[shift:], *kinds[:shift]]:
                run = _python(
                    "benchmarks._clients",
                    kind,
                    scenario,
                    f"--port={port}",
                    f"--concurrency={max(concurrency, 1)}",
                    f"--duration={duration}",
                    f"--count={idle}",
                )
                run.update(repeat=repeat, concurrency=concurrency)
                runs.append(run)
                print(
                    f"[{repeat + 1}/{repeats}] {scenario:7} c={concurrency:<3} "
                    f"{kind:15} {_describe(run)}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark enkrypt_async against aiohttp + msgspec and openai.",
    )
    parser.add_argument("--repeats", type=int, default=3, help="default: 3")
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per load (default: 2)"
    )
    parser.add_argument("--idle-streams", type=int, default=500)
    parser.add_argument("--import-repeats", type=int, default=15)
    parser.add_argument(
        "--clients", nargs="+", choices=KINDS, default=list(KINDS), metavar="CLIENT"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a ~1-minute smoke run: 1 short repeat, openai's aiohttp backend and "
        "the instruction counts skipped",
    )
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="skip the instruction counts (callgrind; several minutes)",
    )
    parser.add_argument(
        "--no-relay",
        dest="relay",
        action="store_false",
        help="skip the relay benchmark (FastAPI gateways; ~1 min per repeat)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile enkrypt_async (and the floor) under pyinstrument",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kinds = [k for k in KINDS if k in args.clients]
    if args.quick:
        args.repeats, args.duration, args.import_repeats = 1, 0.5, 3
        args.instructions = False
        if "openai-aiohttp" in kinds:
            kinds.remove("openai-aiohttp")  # a round of 32 streams takes ~10 s
    if "openai-aiohttp" in kinds and not aiohttp_backend_available():
        print("openai's aiohttp backend is not installed: skipped", file=sys.stderr)
        kinds.remove("openai-aiohttp")
    for needed in ("bare", "enkrypt"):
        if needed not in kinds:
            kinds.insert(0, needed)
    if args.profile:
        from . import _profile

        with server() as port:
            for path in _profile.run_all(port, args.duration, args.output):
                print(path)
        return 0
    started = time.perf_counter()
    if args.instructions and not _instructions.available():
        print("valgrind is not installed: instruction counts skipped", file=sys.stderr)
        args.instructions = False
    with server() as port:
        runs = run_clients(port, kinds, args.repeats, args.duration, args.idle_streams)
        instructions = (
            _instructions.measure(port, kinds, sys.stderr) if args.instructions else {}
        )
        relay = (
            _relay_report.complete(
                _relay.measure(
                    port, args.repeats, args.duration, args.instructions, sys.stderr
                )
            )
            if args.relay
            else None
        )
    print("decoding...", file=sys.stderr, flush=True)
    decode = _python("benchmarks._decode", f"--repeats={3 if args.quick else 7}")
    print("collecting a tool-call stream...", file=sys.stderr, flush=True)
    collect = _python("benchmarks._collect", f"--repeats={3 if args.quick else 7}")
    print("import time...", file=sys.stderr, flush=True)
    imports = _imports.measure(args.import_repeats)
    command = "python -m benchmarks " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    data: dict[str, Any] = {
        "machine": _machine.describe(),
        "config": {
            "command": command.strip(),
            "repeats": args.repeats,
            "duration": args.duration,
            "idle_streams": args.idle_streams,
            "import_repeats": args.import_repeats,
            "clients": kinds,
            "relay": args.relay,
        },
        "summary": _report.summarise(runs),
        "decode": decode,
        "collect": collect,
        "imports": imports,
        "runs": runs,
        "instructions": instructions,
        "relay": relay,
        "wall_s": time.perf_counter() - started,
    }
    _report.write(data, args.output)
    print((args.output / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

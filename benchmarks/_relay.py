"""The relay benchmark: the gateway's CPU per relayed chunk and per relayed request.

Each gateway of `benchmarks._relay_apps` (``floor``, ``enkrypt``, ``openai``) runs
in its own uvicorn process between this driver (plain aiohttp, one request at a
time) and the benchmark server. Only the gateway is measured:

- CPU time: for each (repeat, load), gateways in rotating order, each in a fresh
  process: a warm-up, then ``--duration`` seconds of the load; the gateway reports
  its own ``time.process_time()`` before (after a full collection) and after.
- Instructions: each gateway once more under ``valgrind --tool=callgrind
  --dump-before=sched_yield``, running fixed loads after a warm-up; the driver
  asks the gateway for ``os.sched_yield()`` between them (``GET /_bench/yield``),
  so each load is one dump, and its total divided by its chunks or requests is
  the figure. Each dump also holds one probe request (under 1% of any load).
  The paced chunks come 5 ms apart there (`benchmarks._relay_upstream`), so
  that each still arrives in a read of its own; the driver counts the HTTP
  chunks of every relayed stream (the gateway's writes) to show it.

Every relayed answer is checked whole: a stream must end with ``data: [DONE]``
after the right number of events, the last carrying the detections; a whole
answer must carry the detections and the finish reason.

``python -m benchmarks._relay [--repeats N] [--no-instructions] [--json FILE]``
runs this benchmark alone (with its own server) and prints its section of
results.md; ``python -m benchmarks`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._instructions import _TOTALS, _part
from ._payloads import (
    PACED_CHUNKS,
    PACED_MARKER,
    PROMPT,
    STREAM_CHUNKS,
)
from ._relay_apps import KINDS

#: (load, what a unit is): ``stream`` the 2,048-chunk completions stream,
#: ``paced`` the 256-chunk stream written one chunk every 0.5 ms, ``chat`` the
#: 2,048-chunk chat stream, ``request`` whole completions; all one at a time.
LOADS = (
    ("stream", "chunk"),
    ("paced", "chunk"),
    ("chat", "chunk"),
    ("request", "request"),
)
#: Streams or requests per load under callgrind: about a minute per gateway.
PHASES = {
    "floor": {"stream": 4, "paced": 4, "chat": 4, "request": 300},
    "enkrypt": {"stream": 2, "paced": 4, "chat": 2, "request": 200},
    "openai": {"stream": 1, "paced": 2, "chat": 1, "request": 60},
}
#: The paced stream's gap under callgrind: a gateway runs ~50x slower there, and
#: each chunk must still arrive in a read of its own, as it does live; the shorter
#: the gap, the less of the server's idle housekeeping falls on each chunk.
CALLGRIND_PACED_GAP_S = 0.005
_DONE = b"data: [DONE]\n\n"
_DETECTIONS = b'"enkrypt_policy_detections"'


class Driver:
    """Sends the loads to one gateway and checks every answer."""

    def __init__(self, port: int) -> None:
        import aiohttp

        self._base = f"http://127.0.0.1:{port}"
        #: HTTP chunks received so far: the gateway's writes of a stream's body.
        self.writes = 0
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._bodies = {
            "stream": json.dumps({"model": "m", "prompt": PROMPT, "stream": True}),
            "paced": json.dumps({"model": "m", "prompt": PACED_MARKER, "stream": True}),
            "chat": json.dumps(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": PROMPT}],
                    "stream": True,
                }
            ),
            "request": json.dumps({"model": "m", "prompt": PROMPT}),
        }

    async def probe(self, name: str) -> float:
        """The gateway's CPU time after the probe ``name`` (see `instrumented`)."""
        async with self._session.get(f"{self._base}/_bench/{name}") as response:
            return float(await response.read())

    async def _post(self, load: str) -> bytes:
        path = "/v1/chat/completions" if load == "chat" else "/v1/completions"
        parts: list[bytes] = []
        async with self._session.post(
            self._base + path,
            data=self._bodies[load],
            headers={"Content-Type": "application/json"},
        ) as response:
            async for data, end_of_http_chunk in response.content.iter_chunks():
                parts.append(data)
                self.writes += end_of_http_chunk
            body = b"".join(parts)
            if response.status != 200:
                raise AssertionError(
                    f"{load}: status {response.status}: {body[:200]!r}"
                )
        return body

    async def one(self, load: str) -> int:
        """Relay one stream or request through the gateway; its chunks (or 1)."""
        body = await self._post(load)
        if load == "request":
            answer = json.loads(body)
            if "enkrypt_policy_detections" not in answer:
                raise AssertionError("a relayed answer lost its detections")
            if answer["choices"][0]["finish_reason"] is None:
                raise AssertionError("a relayed answer lost its finish reason")
            return 1
        expected = PACED_CHUNKS if load == "paced" else STREAM_CHUNKS
        events = body.count(b"data: ") - 1
        last = body.rfind(b"data: ", 0, len(body) - len(_DONE))
        if not body.endswith(_DONE) or events != expected:
            raise AssertionError(f"{load}: {events} events relayed, not {expected}")
        if _DETECTIONS not in body[last:]:
            raise AssertionError(f"{load}: the last event lost its detections")
        return expected

    async def aclose(self) -> None:
        await self._session.close()


@contextlib.contextmanager
def gateway(
    kind: str, upstream_port: int, wrapper: Sequence[str] = (), *options: str
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start the ``kind`` gateway (under ``wrapper``, if any); yield its port."""
    from .__main__ import serving  # which imports this module

    command = [
        *wrapper,
        sys.executable,
        "-m",
        "benchmarks._relay_apps",
        kind,
        f"--upstream-port={upstream_port}",
        *options,
    ]
    with serving(command, f"the {kind} gateway") as started:
        yield started


async def _timed(driver: Driver, load: str, duration: float) -> dict[str, Any]:
    """Warm up, then run ``load`` for ``duration`` seconds: the gateway's CPU."""
    await driver.one(load)
    if load == "request":
        await _for(driver, load, min(0.5, duration / 4))
    cpu = await driver.probe("start")
    writes = driver.writes
    started = time.perf_counter()
    units, answers = await _for(driver, load, duration)
    wall = time.perf_counter() - started
    cpu = await driver.probe("cpu") - cpu
    per = "request" if load == "request" else "chunk"
    return {
        f"{per}s": units,
        "answers": answers,
        "writes_per_answer": (driver.writes - writes) / answers,
        "wall_s": wall,
        "cpu_s": cpu,
        f"{per}s_per_s": units / wall,
        f"cpu_per_{per}_us": cpu / units * 1e6,
    }


async def _for(driver: Driver, load: str, duration: float) -> tuple[int, int]:
    """Relay ``load`` until ``duration`` has passed: units, answers."""
    deadline = time.perf_counter() + duration
    units = answers = 0
    while time.perf_counter() < deadline:
        units += await driver.one(load)
        answers += 1
    return units, answers


async def _drive(port: int, work: Callable[[Driver], Awaitable[Any]]) -> Any:
    """Run ``work`` against the gateway on ``port``.

    Its socket listens before its application starts, so the first request waits
    in the backlog until the gateway is ready (a minute under callgrind).
    """
    driver = Driver(port)
    try:
        return await work(driver)
    finally:
        await driver.aclose()


def run_gateways(
    upstream_port: int, repeats: int, duration: float, log: Any
) -> list[dict[str, Any]]:
    """Every (repeat, load, gateway) once, gateways in rotating order."""
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for number, (load, unit) in enumerate(LOADS):
            shift = (repeat + number) % len(KINDS)
            for kind in [*KINDS[shift:], *KINDS[:shift]]:
                with gateway(kind, upstream_port) as (port, _):
                    run = asyncio.run(
                        _drive(
                            port,
                            functools.partial(_timed, load=load, duration=duration),
                        )
                    )
                run.update(kind=kind, scenario=load, repeat=repeat)
                runs.append(run)
                print(
                    f"[{repeat + 1}/{repeats}] relay {load:7} {kind:8} "
                    f"{run[f'cpu_per_{unit}_us']:9.2f} us gateway CPU/{unit}",
                    file=log,
                    flush=True,
                )
    return runs


async def _phases(driver: Driver, counts: dict[str, int]) -> list[list[Any]]:
    """The fixed loads, one per dump: per dump, [load, units, writes per answer].

    A load of None marks the dumps that are not a load (start-up and warm-up,
    tear-down).
    """
    for load, _ in LOADS:
        await driver.one(load)  # warm-up: connections, first-call imports
    await driver.probe("freeze")
    parts: list[list[Any]] = [[None, 0, 0]]
    for load, _ in LOADS:
        await driver.probe("yield")
        writes = driver.writes
        units = sum([await driver.one(load) for _ in range(counts[load])])
        parts.append([load, units, (driver.writes - writes) / counts[load]])
    await driver.probe("yield")
    parts.append([None, 0, 0])
    return parts


def count(upstream_port: int, kind: str) -> tuple[dict[str, float], dict[str, float]]:
    """Instructions per relayed unit of each load, and writes per answer."""
    with tempfile.TemporaryDirectory(prefix="enkrypt-relay-callgrind-") as tmp:
        valgrind = (
            "valgrind",
            "--tool=callgrind",
            "--dump-before=sched_yield",
            "--dump-instr=no",
            f"--callgrind-out-file={tmp}/cg.%p",
        )
        with gateway(kind, upstream_port, valgrind) as (port, process):
            parts = asyncio.run(_drive(port, lambda d: _phases(d, PHASES[kind])))
        if process.returncode not in (0, -15):
            raise RuntimeError(f"callgrind run of the {kind} gateway failed")
        dumps = sorted(Path(tmp).glob("cg.*"), key=_part)
        if len(dumps) != len(parts):
            raise RuntimeError(
                f"{kind} gateway: {len(dumps)} callgrind dumps for {len(parts)} parts"
            )
        result: dict[str, float] = {}
        writes: dict[str, float] = {}
        for (name, units, per_answer), dump in zip(parts, dumps, strict=True):
            if name is not None:
                match = _TOTALS.search(dump.read_bytes())
                if match is None:
                    raise RuntimeError(f"no totals in {dump.name}")
                result[name] = int(match.group(1)) / units
                if name != "request":
                    writes[name] = per_answer
        return result, writes


def measure_instructions(
    log: Any,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Instructions per relayed unit for every gateway, and its writes per stream.

    The gateways forward to a server of their own, whose paced chunks come
    `CALLGRIND_PACED_GAP_S` apart (`benchmarks._relay_upstream`).
    """
    from .__main__ import serving  # which imports this module

    counts: dict[str, dict[str, float]] = {}
    writes: dict[str, dict[str, float]] = {}
    command = [
        sys.executable,
        "-m",
        "benchmarks._relay_upstream",
        f"--gap={CALLGRIND_PACED_GAP_S}",
        "--port=0",
    ]
    with serving(command, "the paced server") as (upstream_port, _):
        for kind in KINDS:
            print(f"callgrind: relay through {kind}...", file=log, flush=True)
            counts[kind], writes[kind] = count(upstream_port, kind)
            print(
                "  "
                + ", ".join(
                    f"{load} {counts[kind][load]:,.0f} per {unit}"
                    for load, unit in LOADS
                ),
                file=log,
                flush=True,
            )
    return counts, writes


def measure(
    upstream_port: int, repeats: int, duration: float, instructions: bool, log: Any
) -> dict[str, Any]:
    """The relay benchmark's data: every run, and the instruction counts.

    ``instruction_writes``: the gateway's writes per stream (HTTP chunks) while
    counted, against ``writes_per_answer`` in each run.
    """
    runs = run_gateways(upstream_port, repeats, duration, log)
    counts, writes = measure_instructions(log) if instructions else ({}, {})
    return {"runs": runs, "instructions": counts, "instruction_writes": writes}


def profile(upstream_port: int, duration: float, output: Path) -> list[Path]:
    """Profile every gateway on every load: ``profile-relay-<kind>-<load>``."""
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for load, _ in LOADS:
        for kind in KINDS:
            stem = output / f"profile-relay-{kind}-{load}"
            with gateway(kind, upstream_port, (), f"--profile={stem}") as (port, _):
                asyncio.run(
                    _drive(
                        port, functools.partial(_timed, load=load, duration=duration)
                    )
                )
            written += [stem.with_suffix(".html"), stem.with_suffix(".txt")]
    return written


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median gateway CPU per unit, per gateway and load."""
    summary: dict[str, dict[str, float]] = {}
    for load, unit in LOADS:
        for kind in KINDS:
            values = [
                run[f"cpu_per_{unit}_us"]
                for run in runs
                if run["kind"] == kind and run["scenario"] == load
            ]
            if values:
                summary.setdefault(kind, {})[load] = statistics.median(values)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    from . import _instructions, _relay_report
    from .__main__ import server

    parser = argparse.ArgumentParser(prog="python -m benchmarks._relay")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--no-instructions", dest="instructions", action="store_false")
    parser.add_argument("--json", type=Path, help="also write the data there")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="only profile each gateway and load under pyinstrument, into DIR",
    )
    args = parser.parse_args(argv)
    if args.profile:
        with server() as port:
            for path in profile(port, args.duration, args.profile):
                print(path)
        return
    with server() as port:
        data = measure(
            port,
            args.repeats,
            args.duration,
            args.instructions and _instructions.available(),
            sys.stderr,
        )
    _relay_report.complete(data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(_relay_report.markdown(data)))


if __name__ == "__main__":
    main()

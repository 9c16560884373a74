"""Instructions per request and per chunk, counted by callgrind.

CPU time on a shared 2-core virtual machine moves by a quarter from one run to the
next; instruction counts do not: the same program on the same input executes the
same instructions whatever else the machine does. Each client runs
``python -m benchmarks._clients KIND phases`` under
``valgrind --tool=callgrind --dump-before=sched_yield``: the client calls
``os.sched_yield()`` between its loads, so each load is one dump file, and its
``totals:`` line divided by its units is the figure.

They count user-space instructions only: the kernel's side of the socket calls,
the same for every client doing the same I/O, is not in them. Under valgrind a
client runs ~50x slower, so the server has always sent everything: reads are
larger than in a live run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._clients import PHASES
from ._payloads import ROOT, child_env

_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)
#: Slow clients run fewer units (and not the 32 streams): minutes otherwise.
SCALES = {"bare": 1.0, "enkrypt": 1.0, "openai": 0.2, "openai-aiohttp": 0.2}


def available() -> bool:
    return shutil.which("valgrind") is not None


def _part(path: Path) -> int:
    # cg.<pid>.<n>; the dump at exit has no number after the first dump: last.
    suffix = path.name.rsplit(".", 2)
    return int(suffix[-1]) if len(suffix) == 3 else sys.maxsize


def count(port: int, kind: str) -> dict[str, float]:
    """Instructions per unit (request or chunk) of each load, for one client."""
    with tempfile.TemporaryDirectory(prefix="enkrypt-callgrind-") as tmp:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=sched_yield",
                "--dump-instr=no",
                f"--callgrind-out-file={tmp}/cg.%p",
                sys.executable,
                "-m",
                "benchmarks._clients",
                kind,
                "phases",
                f"--port={port}",
                f"--phase-scale={SCALES[kind]}",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=1800,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"callgrind run of {kind} failed:\n{done.stderr}")
        parts = json.loads(done.stdout.strip().splitlines()[-1])["parts"]
        dumps = sorted(Path(tmp).glob("cg.*"), key=_part)
        if len(dumps) != len(parts):
            raise RuntimeError(
                f"{kind}: {len(dumps)} callgrind dumps for {len(parts)} parts"
            )
        result: dict[str, float] = {}
        for (name, units), dump in zip(parts, dumps, strict=True):
            if name is not None:
                match = _TOTALS.search(dump.read_bytes())
                if match is None:
                    raise RuntimeError(f"no totals in {dump.name}")
                result[name] = int(match.group(1)) / units
        return result


def measure(port: int, kinds: Sequence[str], log: Any) -> dict[str, dict[str, float]]:
    """Instructions per unit for every client; the server must be running."""
    counts: dict[str, dict[str, float]] = {}
    for kind in kinds:
        print(f"callgrind: {kind}...", file=log, flush=True)
        counts[kind] = count(port, kind)
        print(
            "  "
            + ", ".join(
                f"{name} {counts[kind][name]:,.0f} per {unit}"
                for name, unit, _ in PHASES
                if name in counts[kind]
            ),
            file=log,
            flush=True,
        )
    return counts

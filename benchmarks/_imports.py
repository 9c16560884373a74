"""Import time, each sample a fresh interpreter, targets alternating."""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Final

TARGETS: Final = {
    "aiohttp, msgspec": "import aiohttp, msgspec",
    "enkrypt_async": "import enkrypt_async",
    "openai": "import openai",
}

_TIMED: Final = (
    "import time; t, c = time.perf_counter(), time.process_time(); {stmt}; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)


def _once(stmt: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(stmt=stmt)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall, cpu = out.split()
    return float(wall), float(cpu)


def measure(repeats: int) -> dict[str, dict[str, float | list[float]]]:
    """Median wall and CPU time per import, after one untimed run of each."""
    for stmt in TARGETS.values():
        _once(stmt)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in TARGETS}
    names = list(TARGETS)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            samples[name].append(_once(TARGETS[name]))
    return {
        name: {
            "median_ms": statistics.median(wall for wall, _ in values) * 1e3,
            "median_cpu_ms": statistics.median(cpu for _, cpu in values) * 1e3,
            "samples_s": [wall for wall, _ in values],
        }
        for name, values in samples.items()
    }

"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = (
    "enkrypt-async",
    "aiohttp",
    "msgspec",
    "openai",
    "httpx",
    "httpx2",
    "pydantic",
    "pydantic-core",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    versions = {name: _version(name) for name in PACKAGES}
    if versions["enkrypt-async"] is None:  # run from a checkout, not installed
        from enkrypt_async import __version__

        versions["enkrypt-async"] = __version__
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: v for name, v in versions.items() if v is not None},
    }

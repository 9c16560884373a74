"""The relay benchmark's medians, ratios, targets and its section of results.md."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from ._payloads import PACED_CHUNKS
from ._relay import LOADS, summarise
from ._relay_apps import KINDS
from ._report import Target

LABELS = {"floor": "floor (Starlette + aiohttp)", "enkrypt": "enkrypt_async"}
LABELS["openai"] = "openai (httpx)"
HEADINGS = {
    "stream": "chunk, 2,048-chunk stream",
    "paced": "chunk, paced 256-chunk stream",
    "chat": "chunk, 2,048-chunk chat stream",
    "request": "request, c=1",
}
#: Ours at most this many times the floor's cost, per relayed chunk or request.
FLOOR_GOAL = 1.2
#: openai's gateway at least this many times ours.
OPENAI_GOAL = 3.0


def _paired(runs: list[dict[str, Any]], load: str, top: str, bottom: str) -> float:
    """Median over repeats of top/bottom, both measured in the same repeat."""
    unit = dict(LOADS)[load]
    cost = {
        (run["repeat"], run["kind"]): run[f"cpu_per_{unit}_us"]
        for run in runs
        if run["scenario"] == load
    }
    repeats = {repeat for repeat, _ in cost}
    return float(statistics.median(cost[r, top] / cost[r, bottom] for r in repeats))


def same_io(relay: dict[str, Any], load: str) -> bool:
    """Whether every gateway wrote a stream of ``load`` under callgrind as live.

    If a gateway wrote fewer, larger pieces there (chunks waiting for it in one
    read), its instructions per chunk are not those of the live run, and CPU
    time decides instead. A write more or less per stream is the size of the
    reads of a stream written at once, which varies. Whole requests are one
    write each.
    """
    counted = relay.get("instruction_writes") or {}
    live = relay["writes"]
    return all(
        load not in live[kind] or counted[kind][load] >= 0.98 * live[kind][load] - 1
        for kind in counted
    )


def targets(relay: dict[str, Any]) -> list[Target]:
    """Per load: ours vs the floor, and openai vs ours.

    Instructions decide where counted and `same_io`, CPU time elsewhere.
    """
    summary = relay["summary"]
    counts = relay.get("instructions") or {}
    found: list[Target] = []
    for load, unit in LOADS:
        for top, bottom, goal, at_most in (
            ("enkrypt", "floor", FLOOR_GOAL, True),
            ("openai", "enkrypt", OPENAI_GOAL, False),
        ):
            ratio = summary[top][load] / summary[bottom][load]
            counted = (
                counts[top][load] / counts[bottom][load]
                if top in counts and bottom in counts and same_io(relay, load)
                else None
            )
            decisive = ratio if counted is None else counted
            what = HEADINGS[load].replace(f"{unit}, ", "")
            name = (
                f"gateway CPU/{unit} vs floor, {what}"
                if bottom == "floor"
                else f"gateway CPU/{unit}, openai / ours, {what}"
            )
            found.append(
                Target(
                    name,
                    ratio,
                    f"{'<=' if at_most else '>='} {goal:g}x",
                    decisive <= goal if at_most else decisive >= goal,
                    _paired(relay["runs"], load, top, bottom),
                    counted,
                )
            )
    return found


def _writes(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median writes per stream (HTTP chunks sent), per gateway and stream load."""
    return {
        kind: {
            load: statistics.median(
                run["writes_per_answer"]
                for run in runs
                if run["kind"] == kind and run["scenario"] == load
            )
            for load, unit in LOADS
            if unit == "chunk"
        }
        for kind in KINDS
    }


def complete(relay: dict[str, Any]) -> dict[str, Any]:
    """``relay`` (runs and instruction counts) with its medians and targets."""
    relay["summary"] = summarise(relay["runs"])
    relay["writes"] = _writes(relay["runs"])
    relay["targets"] = [asdict(target) for target in targets(relay)]
    return relay


def _rows(values: dict[str, dict[str, float]], fmt: str) -> list[str]:
    lines = [
        "| per | " + " | ".join(LABELS[k] for k in KINDS) + " | ours / floor "
        "| openai / ours |",
        "|---|" + "---:|" * (len(KINDS) + 2),
    ]
    for load, _ in LOADS:
        cells = [fmt.format(values[kind][load]) for kind in KINDS]
        ours = values["enkrypt"][load]
        lines.append(
            f"| {HEADINGS[load]} | "
            + " | ".join(cells)
            + f" | {ours / values['floor'][load]:.2f}x"
            + f" | {values['openai'][load] / ours:.2f}x |"
        )
    return lines


def _writes_note(relay: dict[str, Any]) -> list[str]:
    def each(writes: dict[str, dict[str, float]]) -> str:
        return "; ".join(
            f"{LABELS[kind]} "
            + ", ".join(f"{load} {n:,.0f}" for load, n in writes[kind].items())
            for kind in KINDS
        )

    counted = relay.get("instruction_writes") or {}
    return [
        "Writes per stream (HTTP chunks the gateway sent, median): "
        + each(relay["writes"])
        + (f". Under callgrind: {each(counted)}" if counted else "")
        + ". The upstream writes a 2,048-chunk stream at once, so a gateway "
        "relaying each read as it comes sends it in a few large writes; the paced "
        f"stream's {PACED_CHUNKS} chunks come one every 0.5 ms, each in a read of "
        "its own when the gateway keeps up: the realistic case.",
    ]


def markdown(relay: dict[str, Any]) -> list[str]:
    """The "Relay" section of results.md."""
    counts = relay.get("instructions") or {}
    lines = [
        "",
        "## Relay through a FastAPI gateway",
        "",
        "The gateway is measured, not a client: `examples/fastapi_app.py` "
        "(enkrypt_async) against a bare Starlette app re-emitting the raw bytes "
        "of each aiohttp read (the floor) and the same gateway written with "
        "`openai.AsyncOpenAI` (`with_streaming_response`, `iter_bytes`; "
        "`with_raw_response` for whole answers). Each runs under uvicorn (h11, "
        "asyncio loop, no access log) in its own process between a driver and "
        "the loopback server; one request at a time, every relayed body checked "
        "whole. CPU is the gateway process's own, us per relayed chunk or request "
        "(median over repeats, gateways in rotating order, each in a fresh "
        "process).",
        "",
        *_rows(relay["summary"], "{:,.2f}"),
    ]
    if counts:
        lines += [
            "",
            "Instructions per relayed unit, the gateway under callgrind (fixed "
            "loads after a warm-up, one dump per load):",
            "",
            *_rows(counts, "{:,.0f}"),
        ]
    lines += ["", *_writes_note(relay)]
    lines += [
        "",
        "Targets: ours at most "
        f"{FLOOR_GOAL:g}x the floor, openai's at least {OPENAI_GOAL:g}x ours; "
        + (
            "instructions decide, except where a gateway wrote a stream in fewer "
            "pieces under callgrind than live (no instruction ratio shown): CPU "
            "time decides there."
            if counts
            else "instructions were not counted, so CPU time decides."
        ),
        "",
        "| target | CPU time | paired | instructions | goal | |",
        "|---|---:|---:|---:|---|---|",
    ]
    for t in relay["targets"]:
        counted = "" if t["instructions"] is None else f"{t['instructions']:.2f}x"
        lines.append(
            f"| {t['name']} | {t['value']:.2f}x | {t['paired']:.2f}x | {counted} "
            f"| {t['goal']} | {'met' if t['met'] else '**missed**'} |"
        )
    return lines

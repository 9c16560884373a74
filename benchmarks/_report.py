"""Medians, ratios and targets; results.md, results.json and chart.png."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LABELS = {
    "bare": "bare aiohttp + msgspec (floor)",
    "enkrypt": "enkrypt_async",
    "openai": "openai (httpx)",
    "openai-aiohttp": "openai (aiohttp backend)",
}

#: (metric, scenario, concurrency, field, heading, format)
METRICS: tuple[tuple[str, str, int, str, str, str], ...] = (
    ("rps_c1", "request", 1, "rps", "req/s, c=1", "{:,.0f}"),
    ("cpu_req_c1", "request", 1, "cpu_per_request_us", "CPU us/req, c=1", "{:,.0f}"),
    ("rps_c64", "request", 64, "rps", "req/s, c=64", "{:,.0f}"),
    ("cpu_req_c64", "request", 64, "cpu_per_request_us", "CPU us/req, c=64", "{:,.0f}"),
    ("cps_1", "stream", 1, "chunks_per_s", "chunks/s, 1 stream", "{:,.0f}"),
    (
        "cpu_1k_1",
        "stream",
        1,
        "cpu_per_1000_chunks_ms",
        "CPU ms/1k chunks, 1",
        "{:.2f}",
    ),
    ("cps_32", "stream", 32, "chunks_per_s", "chunks/s, 32 streams", "{:,.0f}"),
    (
        "cpu_1k_32",
        "stream",
        32,
        "cpu_per_1000_chunks_ms",
        "CPU ms/1k chunks, 32",
        "{:.2f}",
    ),
    ("cps_chat", "chat", 1, "chunks_per_s", "chunks/s, chat stream", "{:,.0f}"),
    (
        "cpu_1k_chat",
        "chat",
        1,
        "cpu_per_1000_chunks_ms",
        "CPU ms/1k chunks, chat",
        "{:.2f}",
    ),
    (
        "cpu_1k_paced",
        "paced",
        1,
        "cpu_per_1000_chunks_ms",
        "CPU ms/1k chunks, paced",
        "{:.2f}",
    ),
    ("ttfc_ms", "stream", 1, "ttfc_ms", "first chunk ms", "{:.2f}"),
    ("kb_stream", "idle", 0, "kb_per_stream", "KB/idle stream", "{:.1f}"),
    ("peak_mb", "idle", 0, "peak_rss_mb", "peak RSS MB, 500 streams", "{:.0f}"),
)


@dataclass
class Target:
    name: str
    value: float
    goal: str
    met: bool
    #: Median over repeats of the ratio within each repeat (the two clients ran
    #: back to back), which cancels the machine's slow drifts; None when unpaired.
    paired: float | None = None
    #: The same ratio of instructions counted by callgrind, when counted. It does
    #: not drift with the machine's load, so it decides ``met`` when present.
    instructions: float | None = None


#: The CPU metric of each load, and the name of its instruction count.
INSTRUCTION_LOADS = {
    "cpu_req_c1": "request_c1",
    "cpu_req_c64": "request_c64",
    "cpu_1k_1": "stream_1",
    "cpu_1k_32": "stream_32",
    "cpu_1k_chat": "chat_1",
}


def instruction_ratio(
    counts: dict[str, dict[str, float]], metric: str, numerator: str, denominator: str
) -> float | None:
    load = INSTRUCTION_LOADS[metric]
    top = counts.get(numerator, {}).get(load)
    bottom = counts.get(denominator, {}).get(load)
    return top / bottom if top is not None and bottom else None


def paired_ratio(
    runs: list[dict[str, Any]], metric: str, numerator: str, denominator: str
) -> float | None:
    """Median over repeats of numerator/denominator measured in the same repeat."""
    _, scenario, concurrency, field, _, _ = next(m for m in METRICS if m[0] == metric)
    by_repeat: dict[tuple[int, str], float] = {
        (run["repeat"], run["kind"]): run[field]
        for run in runs
        if run["scenario"] == scenario and run["concurrency"] == concurrency
    }
    ratios = [
        by_repeat[(repeat, numerator)] / by_repeat[(repeat, denominator)]
        for repeat, kind in by_repeat
        if kind == denominator and (repeat, numerator) in by_repeat
    ]
    return statistics.median(ratios) if ratios else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for metric, scenario, concurrency, field, _, _ in METRICS:
        for kind in LABELS:
            values = [
                run[field]
                for run in runs
                if run["kind"] == kind
                and run["scenario"] == scenario
                and run["concurrency"] == concurrency
            ]
            if values:
                summary.setdefault(kind, {})[metric] = statistics.median(values)
    return summary


#: (metric, target, numerator, denominator, goal, the ratio must be at most goal)
RATIO_TARGETS: tuple[tuple[str, str, str, str, float, bool], ...] = (
    ("cpu_req_c1", "CPU/request vs floor, c=1", "enkrypt", "bare", 1.15, True),
    ("cpu_req_c64", "CPU/request vs floor, c=64", "enkrypt", "bare", 1.15, True),
    ("cpu_1k_1", "CPU/chunk vs floor, 1 stream", "enkrypt", "bare", 1.15, True),
    ("cpu_1k_32", "CPU/chunk vs floor, 32 streams", "enkrypt", "bare", 1.15, True),
    ("cpu_1k_chat", "CPU/chunk vs floor, chat stream", "enkrypt", "bare", 1.15, True),
    *(
        (
            metric,
            f"CPU/{unit}, openai (httpx) / ours, {load}",
            "openai",
            "enkrypt",
            goal,
            False,
        )
        for metric, unit, load, goal in (
            ("cpu_req_c1", "request", "c=1", 5.0),
            ("cpu_req_c64", "request", "c=64", 5.0),
            ("cpu_1k_1", "chunk", "1 stream", 15.0),
            ("cpu_1k_32", "chunk", "32 streams", 15.0),
            ("cpu_1k_chat", "chunk", "chat stream", 15.0),
        )
    ),
)


def targets(
    summary: dict[str, dict[str, float]],
    decode: dict[str, dict[str, float]],
    imports: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    counts: dict[str, dict[str, float]],
) -> list[Target]:
    ours = summary["enkrypt"]
    found: list[Target] = []
    for metric, what, top, bottom, goal, at_most in RATIO_TARGETS:
        if metric not in summary.get(top, {}):
            continue  # a client left out of this run
        ratio = summary[top][metric] / summary[bottom][metric]
        counted = instruction_ratio(counts, metric, top, bottom)
        decisive = counted if counted is not None else ratio
        found.append(
            Target(
                what,
                ratio,
                f"{'<=' if at_most else '>='} {goal:g}x",
                decisive <= goal if at_most else decisive >= goal,
                paired_ratio(runs, metric, top, bottom),
                counted,
            )
        )
    ratio = (
        imports["enkrypt_async"]["median_ms"] / imports["aiohttp, msgspec"]["median_ms"]
    )
    found.append(
        Target(
            "import enkrypt_async / import aiohttp, msgspec",
            ratio,
            "<= 1.2x",
            ratio <= 1.2,
        )
    )
    ratio = decode["response"]["pydantic"] / decode["response"]["enkrypt_async"]
    found.append(
        Target("whole-response decode, pydantic / ours", ratio, ">= 2x", ratio >= 2)
    )
    kb = ours["kb_stream"]
    found.append(Target("KB per open idle stream", kb, "< 50 KB", kb < 50))
    return found


def _table(summary: dict[str, dict[str, float]]) -> list[str]:
    kinds = [kind for kind in LABELS if kind in summary]
    lines = [
        "| metric | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for metric, _, _, _, heading, fmt in METRICS:
        cells = [
            fmt.format(summary[k][metric]) if metric in summary[k] else "n/a"
            for k in kinds
        ]
        lines.append(f"| {heading} | " + " | ".join(cells) + " |")
    return lines


def _paced_note(summary: dict[str, dict[str, float]]) -> list[str]:
    ours = summary.get("enkrypt", {}).get("cpu_1k_paced")
    floor = summary.get("bare", {}).get("cpu_1k_paced")
    oai = summary.get("openai", {}).get("cpu_1k_paced")
    if ours is None or floor is None:
        return []
    against = f", openai (httpx) / ours {oai / ours:.2f}x" if oai else ""
    return [
        "",
        "Paced: 256 chunks, one written every 0.5 ms, so each arrives in a read of "
        "its own, as an LLM's tokens do; the event loop's wake-ups dominate. CPU "
        f"per chunk, ours / floor {ours / floor:.2f}x{against} (no target).",
    ]


def _instruction_table(counts: dict[str, dict[str, float]]) -> list[str]:
    if not counts:
        return []
    kinds = [kind for kind in LABELS if kind in counts]
    lines = [
        "",
        "## Instructions (callgrind)",
        "",
        "Each client once more, in a fresh process under `valgrind --tool=callgrind`: "
        "300 requests one at a time, 20 rounds of 64 at once, 3 streams one at a time "
        "and 32 at once, 3 chat streams one at a time (openai: 60 requests, 4 "
        "rounds of 64, one stream and one chat stream; its 32 streams would take "
        "an hour), each after a warm-up that opens its connections. "
        "User-space instructions only (the kernel's side of the socket calls is "
        "the same for every client), so they show the libraries' own work. A "
        "client runs ~50x slower under valgrind, so its reads find more bytes "
        "waiting than in a live run.",
        "",
        "| instructions per | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for metric, load in INSTRUCTION_LOADS.items():
        heading = next(m[4] for m in METRICS if m[0] == metric)
        heading = heading.replace("CPU us/req", "request").replace(
            "CPU ms/1k chunks", "chunk"
        )
        cells = [
            f"{counts[k][load]:,.0f}" if load in counts[k] else "n/a" for k in kinds
        ]
        lines.append(f"| {heading} | " + " | ".join(cells) + " |")
    return lines


def _collect_note(collect: dict[str, Any] | None) -> list[str]:
    if not collect:
        return []
    sizes = ", ".join(
        f"{int(size):,} chunks {us / 1000:.2f} ms ({collect['per_chunk_us'][size]:.2f} "
        "us per chunk)"
        for size, us in collect["collect_us"].items()
    )
    return [
        "",
        "## Collecting a tool-call stream (median, in one process)",
        "",
        "`ChatCompletionAccumulator` (what `ChatCompletionStream.collect` uses), "
        "`add` of every chunk then `result()`, over one tool call whose arguments "
        f"come in 4-5 character fragments: {sizes}. Twice the chunks, "
        f"{collect['ratio']:.2f}x the time (linear: 2x; no target).",
    ]


def markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    config = data["config"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['implementation']} {machine['python']}; {packages}.",
        f"Run: `{config['command']}` (repeats: {config['repeats']}, "
        f"{config['duration']} s per load), wall time {data['wall_s']:.0f} s. "
        "Every figure is the median over the repeats; every ratio is computed from "
        "those medians.",
        "",
        "## Clients against the loopback server",
        "",
        "- The server is a separate process on 127.0.0.1 answering with pre-built "
        "bytes: the 9 KB reference completion, or 2,048 SSE chunks (one HTTP chunk "
        "each, the last carrying the detections).",
        "- Chat: `POST /chat/completions` streamed, 2,048 `chat.completion.chunk` "
        "events in OpenAI's format (a role delta, 2,046 content deltas of 4 "
        "characters, a last one with the finish reason, usage and detections), one "
        "stream at a time; `chat.completions.create(..., stream=True)` in the "
        "libraries, the same loop as the completions stream with Structs mirroring "
        "`ChatCompletionChunk` in the floor.",
        "- Each client and load runs in a fresh process, clients alternating. CPU is "
        "the client process's own (`time.process_time`), us = microseconds; "
        "c = concurrent requests.",
        "- First chunk: from calling `create` to the first chunk, one stream at a "
        "time. KB per idle stream: RSS growth with 500 streams held open after "
        "their first chunk, divided by 500.",
        "",
        *_table(data["summary"]),
        *_paced_note(data["summary"]),
        "",
        "## Targets",
        "",
        "CPU time: the ratio of the medians. Paired: the median of the ratios "
        "within each repeat, where the two clients ran back to back; it cancels "
        "the machine's slow drifts. "
        + (
            "Instructions: the ratio of instructions counted by callgrind (see "
            "below); they do not drift with the machine's load, so they decide met "
            "or missed where counted, CPU time elsewhere."
            if data.get("instructions")
            else "Instructions were not counted in this run, so CPU time decides."
        ),
        "",
        "| target | CPU time | paired | instructions | goal | |",
        "|---|---:|---:|---:|---|---|",
    ]
    for t in data["targets"]:
        unit = " KB" if t["name"].startswith("KB") else "x"
        verdict = "met" if t["met"] else "**missed**"
        paired = "" if t.get("paired") is None else f"{t['paired']:.2f}x"
        counted = "" if t.get("instructions") is None else f"{t['instructions']:.2f}x"
        lines.append(
            f"| {t['name']} | {t['value']:.2f}{unit} | {paired} | {counted} "
            f"| {t['goal']} | {verdict} |"
        )
    lines += _instruction_table(data.get("instructions") or {})
    if data.get("relay"):
        # Imported here: `_relay_report` builds on this module's `Target`.
        from ._relay_report import markdown as relay_markdown

        lines += relay_markdown(data["relay"])
    lines += ["", "## Decoding (median us per call)", ""]
    decode = data["decode"]
    names = list(decode["response"])
    lines += [
        "| body | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(
            f"| {body} | " + " | ".join(f"{decode[body][n]:.2f}" for n in names) + " |"
            for body in ("response", "chunk")
        ),
        "",
        "SSE framing alone, per event (2,049 events fed in 64 KB pieces): "
        + ", ".join(f"{n} {v:.2f} us" for n, v in decode["sse_event"].items())
        + ".",
        *_collect_note(data.get("collect")),
        "",
        "## Import time (fresh interpreters, median)",
        "",
        "| import | wall ms | CPU ms |",
        "|---|---:|---:|",
        *(
            f"| `import {name}` | {v['median_ms']:.0f} | {v['median_cpu_ms']:.0f} |"
            for name, v in data["imports"].items()
        ),
        "",
        "![chart](chart.png)",
        "",
    ]
    return "\n".join(lines)


#: One colour per client (and per decoder / import, by what it stands for).
COLORS = {
    "bare": "#8c8c8c",
    "enkrypt": "#ff7f0e",
    "openai": "#1f77b4",
    "openai-aiohttp": "#9ecae1",
    "enkrypt_async": "#ff7f0e",
    "floor msgspec": "#8c8c8c",
    "json.loads": "#2ca02c",
    "pydantic": "#9467bd",
    "aiohttp, msgspec": "#8c8c8c",
}

Series = dict[str, tuple[str, list[float]]]  # label -> (colour, one value per group)


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _bars(ax: Any, groups: list[str], series: Series, title: str, log: bool) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, (color, values)) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width, label=name, color=color)
        ax.bar_label(bars, fmt=_short, fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = data["summary"]
    kinds = [kind for kind in LABELS if kind in summary]

    def clients(*metrics: str) -> Series:
        return {
            LABELS[k]: (COLORS[k], [summary[k].get(m, 0.0) for m in metrics])
            for k in kinds
        }

    decode = data["decode"]
    imports = data["imports"]
    panels: list[tuple[list[str], Series, str, bool]] = [
        (
            ["c=1", "c=64"],
            clients("cpu_req_c1", "cpu_req_c64"),
            "CPU us per request (log)",
            True,
        ),
        (
            ["1 stream", "32 streams", "chat, 1 stream", "paced (1 per read)"],
            clients("cpu_1k_1", "cpu_1k_32", "cpu_1k_chat", "cpu_1k_paced"),
            "CPU ms per 1,000 chunks (log)",
            True,
        ),
        (["c=1", "c=64"], clients("rps_c1", "rps_c64"), "requests/s", False),
        (
            ["1 stream", "32 streams", "chat, 1 stream"],
            clients("cps_1", "cps_32", "cps_chat"),
            "chunks/s",
            False,
        ),
        (["one stream at a time"], clients("ttfc_ms"), "ms to first chunk", False),
        (
            ["500 idle streams"],
            clients("kb_stream"),
            "KB of RSS per open idle stream",
            False,
        ),
        (
            ["9 KB response", "one chunk"],
            {
                n: (
                    COLORS.get(n, "#d62728"),
                    [decode["response"][n], decode["chunk"][n]],
                )
                for n in decode["response"]
            },
            "decode us per call (log)",
            True,
        ),
        (
            ["fresh interpreter"],
            {
                f"import {n}": (COLORS.get(n, "#1f77b4"), [v["median_ms"]])
                for n, v in imports.items()
            },
            "import time, ms",
            False,
        ),
    ]
    relay = (data.get("relay") or {}).get("instructions")
    if relay:
        # Imported here: `_relay_report` builds on this module's `Target`.
        from ._relay_report import LABELS as GATEWAYS

        def gateways(*loads: str) -> Series:
            colours = {"floor": COLORS["bare"], "enkrypt": COLORS["enkrypt"]}
            return {
                GATEWAYS[k]: (colours.get(k, COLORS["openai"]), [v[n] for n in loads])
                for k, v in relay.items()
            }

        panels += [
            (
                ["2,048-chunk stream", "paced (1 per read)", "chat stream"],
                gateways("stream", "paced", "chat"),
                "relay gateway: instructions per chunk (log)",
                True,
            ),
            (
                ["whole answer"],
                gateways("request"),
                "relay gateway: instructions per request (log)",
                True,
            ),
        ]
    rows = len(panels) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.75 * rows))
    for number, (ax, (groups, values, title, log)) in enumerate(
        zip(axes.flat, panels, strict=True)
    ):
        _bars(ax, groups, values, title, log)
        if number >= 6:  # the client panels share the figure's legend
            ax.legend(fontsize=7, loc="upper left")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle("enkrypt_async benchmarks (medians; lower CPU is better)", y=0.995)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(labels),
        fontsize=9,
        bbox_to_anchor=(0.5, 0.975),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(data: dict[str, Any], directory: Path) -> None:
    data["targets"] = [
        asdict(t)
        for t in targets(
            data["summary"],
            data["decode"],
            data["imports"],
            data["runs"],
            data.get("instructions") or {},
        )
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (directory / "results.md").write_text(markdown(data))
    chart(data, directory / "chart.png")

"""The model of a 2-hour 4K HEVC film run as windows on Lambda (docs/LONG_TASKS.md, "Numbers").

    .venv/bin/python bench/window_model.py            # the rates measured (medians, below)
    .venv/bin/python bench/window_model.py --last-run # rates from bench/out/windows*.json
    .venv/bin/python bench/window_model.py --max-cpu 300

Measured numbers (CPU seconds per second of video, fixed costs) come from ``bench/windows.py``'s
last run when its JSON is there, else the values it gave on the benchmark machine (the defaults
below); everything about AWS is an assumption, named and commented where it is set. Prints the
Markdown tables of the doc.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"

# -- the film ---------------------------------------------------------------------------------------
FILM_S = 7200  # 2 hours
GOP_S = 2.0  # a keyframe every 2 s (streaming encodes; the 4K clip measured has the same)
BITRATE_MB_S = 2.0  # 16 Mbit/s, as the measured clip: 14.4 GB for the film

# -- measured here (bench/windows.py, 4K HEVC 10-bit with film grain, 16 Mbit/s; CPU s per s of video)
# (medians of three or four runs on shared cores; single runs vary by ±10-15 %).
RATES = {
    "dhash every 1 s": 1.23,  # m_dhash, samples between keyframes (from 0.5 s): the average sample
    "every frame decoded": 1.9,  # the upper bound of "decode ~all frames"
    "storyboard every 2 s": 0.77,  # 160×90 tiles, 10×10 sheets, tiles between keyframes (from 1 s)
}
#: Opening a video (container, index, a 4K HEVC decoder): 0.19 s for the 4K clip, 0.03-0.05 s for
#: the 10-minute 1080p one (18,000 frames); the film's index has 172,800 frames and comes from S3:
#: +0.3 s assumed.
OPEN_S = 0.5
#: Planning decodes each window's first keyframe: 0.19 s per cut on the 4K clip (0.36 CPU s, two
#: threads), + one ranged GET of ~0.5 MB from S3 (assumed 0.06 s).
PLAN_PER_CUT_S = 0.25
#: Extra CPU per additional window, measured on the 10-minute 1080p exact-every-2-s task
#: ((ΣCPU(8) − CPU(1)) / 7): 0.86 s in one run, none in another (noise on shared cores); at most
#: ~1.5 of its GOPs (8.3 s) decoded in full. Priced at that bound: 1.5 GOPs at the film's
#: every-frame rate.
EDGE_GOPS = 1.5
#: merge_windows over 8 windows × 300 outputs (ms): the merge is reading the windows' results.
MERGE_MS = 0.05

# -- assumed (AWS) ----------------------------------------------------------------------------------
COLD_START_S = 1.5  # Lambda cold start with the layer (Python, PyAV's FFmpeg libraries): 1-2 s
S3_MB_S = 90.0  # one invocation's sequential ranged GETs of the source
#: Distributed Map starting a wave of child executions and Lambda scaling to them (a function
#: scales by 1,000 execution environments every 10 s): 2 s + 10 ms per window of the wave.
MAP_START_S = 2.0
MAP_PER_ITEM_S = 0.01
MERGE_S = 3.0  # the merge invocation: cold start + reading the windows' results (S3 result files)
#: Cores one window keeps busy: 3008 MB has ~1.7 vCPU (1 vCPU per 1,769 MB), and 2 decoding threads
#: give 1.6-1.8× one here (docs/PERFORMANCE.md, "Several cores"); 10,240 MB has 6 vCPU but the
#: engine runs at most 4 decoders: 3 is a guess, not measured.
MEMORIES = {3008: 1.5, 10240: 3.0}
PRICE_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_REQUEST = 0.20 / 1e6
PRICE_TRANSITION = 0.025 / 1000
#: State transitions: the parent (Plan, Map, Merge, notify, end) and per window one child execution
#: of Standard type whose one Task state is a transition, and its start another.
PARENT_TRANSITIONS = 5
CHILD_TRANSITIONS = 2


@dataclass(frozen=True)
class Plan:
    """One way to run the film: ``windows`` windows, ``concurrency`` at once, at ``memory`` MB."""

    work: str
    rate: float
    windows: int
    concurrency: int
    memory: int


#: The rows of bench/windows.py's rates that RATES stands for.
SOURCES = {
    "dhash every 1 s": "dhash every 1 s, from 0.5 s",
    "every frame decoded": "every frame decoded",
    "storyboard every 2 s": "storyboard every 2 s, from 1 s",
}


def measured() -> dict[str, Any]:
    """The rates and fixed costs of bench/windows.py's JSON, where it has them."""
    got: dict[str, Any] = {}
    for name in ("windows-rates.json", "windows.json"):
        path = OUT / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for row in data.get("rates", []):
            if "grain" in row["video"] and "4K" in row["video"]:
                got.setdefault(row["work"], row["cpu_per_s"])
    return {ours: got[theirs] for ours, theirs in SOURCES.items() if theirs in got}


def window_costs(p: Plan, max_cpu: float) -> dict[str, float]:
    """One plan's window length, CPU, wall time and cost."""
    cores = MEMORIES[p.memory]
    length = FILM_S / p.windows
    edge = EDGE_GOPS * GOP_S * RATES["every frame decoded"] if p.windows > 1 else 0.0
    cpu = p.rate * length + edge
    wall = COLD_START_S + OPEN_S + length * BITRATE_MB_S / S3_MB_S + cpu / cores
    waves = math.ceil(p.windows / p.concurrency)
    plan_s = COLD_START_S + OPEN_S + PLAN_PER_CUT_S * (p.windows - 1)
    start = MAP_START_S + MAP_PER_ITEM_S * min(p.windows, p.concurrency)
    total = plan_s + waves * (start + wall) + MERGE_S
    # Were each window to find its own first keyframe (the cuts' decoding spread over the windows):
    spread = total - PLAN_PER_CUT_S * (p.windows - 1) + PLAN_PER_CUT_S
    billed = p.windows * wall + plan_s + MERGE_S
    gb = p.memory / 1024
    transitions = PARENT_TRANSITIONS + CHILD_TRANSITIONS * p.windows
    fixed = transitions * PRICE_TRANSITION + (p.windows + 2) * PRICE_REQUEST
    return dict(
        length=length,
        cpu=cpu,
        fits=cpu <= max_cpu,
        wall=wall,
        plan=plan_s,
        total=total,
        spread=spread,
        gb_s=billed * gb,
        x86=billed * gb * PRICE_GB_S["x86_64"] + fixed,
        arm=billed * gb * PRICE_GB_S["arm64"] + fixed,
        sfn=transitions * PRICE_TRANSITION,
        transitions=transitions,
    )


def main() -> int:
    """Print the model's tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-cpu", type=float, default=300.0, help="CPU seconds of one window at most")
    parser.add_argument("--last-run", action="store_true", help="rates of bench/windows.py's last run")
    args = parser.parse_args()
    if args.last_run:
        RATES.update(measured())
    print(f"| work | CPU s per s | total CPU (s) | video s per {args.max_cpu:.0f} CPU s | windows at least |")
    print("|---|---:|---:|---:|---:|")
    for work, rate in RATES.items():
        per = args.max_cpu / rate
        print(f"| {work} | {rate:.2f} | {rate * FILM_S:,.0f} | {per:.0f} | {math.ceil(FILM_S / per)} |")
    print()
    print(
        "| work | MB | concurrency | windows × length (s) | CPU/window (s) | wall/window (s) | plan (s) "
        "| wall, total (s) | (cuts by windows) | GB-s | Step Functions $ | $ x86 | $ arm64 |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for work, rate in RATES.items():
        least = math.ceil(rate * FILM_S / args.max_cpu)
        for memory in MEMORIES:
            for concurrency, windows in ((100, least), (100, 100), (1000, 1000)):
                if windows > concurrency or (concurrency == 100 and windows == least and least == 100):
                    continue
                c = window_costs(Plan(work, rate, windows, concurrency, memory), args.max_cpu)
                print(
                    f"| {work} | {memory:,} | {concurrency:,} | {windows:,} × {c['length']:.1f} "
                    f"| {c['cpu']:.1f} | {c['wall']:.1f} | {c['plan']:.0f} | {c['total']:.0f} "
                    f"| {c['spread']:.0f} | {c['gb_s']:,.0f} | {c['sfn']:.4f} "
                    f"| {c['x86']:.2f} | {c['arm']:.2f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

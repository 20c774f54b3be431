"""Benchmark: a long task split into N windows run by N processes, against one pass and ffmpeg.

    .venv/bin/python bench/windows.py                 # 10-minute 1080p (bench/run.py's media) + 4K HEVC rates
    .venv/bin/python bench/windows.py --quick         # a 20 s 1080p clip, no 4K: a smoke run (< 1 minute)
    .venv/bin/python bench/windows.py --media PATH --windows 1,2,4,8

Each window runs in its own process (multiprocessing, spawn: a fresh interpreter, like a cold
invocation) that opens the video itself and calls ``engine.run_window`` with the task and its window
handed over as JSON (``Task.plain``/``Window.plain``): the code path of a Distributed Map item. The
windows write files into one temporary folder; ``merge_windows`` joins their outcomes, which must
equal the one pass (``engine.run_task``, also in its own process) in keys, bytes and TimeMs.

Two tasks on the 10-minute 1080p video (GOP 250 = 8.3 s, 3 B-frames, 14 Mbit/s):

- exact frames every 2 s: decoding-bound (each frame needs the reference chain up to it), the kind of
  task that outgrows one invocation and that windows speed up;
- the keyframe at or before every 1 s (MPS ``FrameType: intra``): one keyframe decoded per GOP, so
  the fixed costs of a window (interpreter, opening the container, reading its index) are most of
  its time: the case that shows what splitting costs where it cannot pay.

The second part measures the CPU seconds per second of video of 4K HEVC 10-bit (a synthesised 12 s
clip, and the same clip re-encoded with film grain at 16 Mbit/s: real footage decodes like the
latter) for a dhash every 1 s, exact frames every 1 s, a storyboard every 2 s (also started between
keyframes) and a plain decode of every frame; and 1080p: every frame of the 10-minute video, and of
a 20 s clip with film grain (every frame, and exact frames every 2 s). bench/window_model.py turns
these into the model of a 2-hour 4K film on Lambda of docs/LONG_TASKS.md ("Numbers"). Needs
``ffmpeg`` on PATH (a benchmark: the product never does).
Timings are reported, never asserted; this machine's cores are shared with whatever else runs.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import run  # bench/run.py, beside this script: its media and machine description

MEDIA: Path = run.MEDIA

#: The windowed tasks on the 1080p video: (name, process string, intra, ffmpeg arguments).
TASKS: list[tuple[str, str, bool, list[str]]] = [
    (
        "exact frame every 2 s",
        "video/snapshots,f_jpg,inter_2000",
        False,
        ["-i", "{V}", "-vf", "fps=1/2", "{O}/o%05d.jpg"],
    ),
    (
        "keyframe at or before every 1 s (intra)",
        "video/snapshots,f_jpg,inter_1000",
        True,
        # Like for like: only keyframes decoded, one picture a second (ffmpeg repeats a keyframe
        # where vidsnap writes it once: it writes ~8 times the files).
        ["-skip_frame", "nokey", "-i", "{V}", "-vf", "fps=1", "{O}/o%05d.jpg"],
    ),
]

#: The per-rate tasks on the 4K clips (one pass each): a dhash every 1 s, exact frames every 1 s,
#: and a storyboard (exact frame every 2 s, 160 px, 10×10 sheets).
RATE_TASKS: list[tuple[str, str]] = [
    ("dhash every 1 s", "video/snapshots,f_jpg,m_dhash,inter_1000,thr_30"),
    ("exact frame every 1 s", "video/snapshots,f_jpg,inter_1000"),
    ("storyboard every 2 s", "video/sprite,inter_2000,w_160,h_90,tw_10,th_10,pad_0,margin_0,f_jpg"),
    # The clip's keyframes are 2 s apart, so the rows above hit a keyframe with every (dhash) or
    # every other (exact) sample, and the storyboard only keyframes: a film's keyframes fall where
    # its encoder put them. Starting mid-GOP prices the average sample (half a GOP's reference
    # frames decoded before it).
    ("dhash every 1 s, from 0.5 s", "video/snapshots,f_jpg,m_dhash,ss_500,inter_1000,thr_30"),
    (
        "storyboard every 2 s, from 1 s",
        "video/sprite,ss_1000,inter_2000,w_160,h_90,tw_10,th_10,pad_0,margin_0,f_jpg",
    ),
]

#: The 4K HEVC 10-bit clip: 12 s at 24 fps, a keyframe every 2 s (a streaming film's GOP), 3 B-frames.
UHD = dict(duration_s=12, fps=24, width=3840, height=2160, gop=48, bframes=3, scene_cuts=[4.0, 8.0])
#: Film grain and bitrate of the re-encoded 4K clip (a 4K HEVC film streams at ~15-25 Mbit/s).
UHD_BITRATE = "16M"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def make_task(process: str, intra: bool, folder: str) -> Any:
    """A one-job task writing ``folder/{index}.jpg``; ``intra``: the keyframe at or before each
    planned time (MPS ``FrameType: intra``, which a process string cannot say)."""
    from vidsnap.core.lang import parse_process
    from vidsnap.core.plan import Task

    ext = "{autoext}"
    parsed = parse_process(f"{process}|sys/saveas,o_{_b64(folder + '/{index}.' + ext)}")
    assert isinstance(parsed, Task)
    if not intra:
        return parsed
    jobs = tuple(
        dataclasses.replace(j, selection=dataclasses.replace(j.selection, exact=False)) for j in parsed.jobs
    )
    return dataclasses.replace(parsed, jobs=jobs)


def _cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(item: dict[str, Any], results: Queue[Any]) -> None:
    """One process: a window (or, ``item["window"]`` None, the whole task) from its JSON hand-over
    (``item``: task and window as JSON text, the task's totals, the video, the output folder, and
    when the process was started)."""
    entered = time.time()
    from vidsnap.aws.storage import LocalSink
    from vidsnap.core.engine import run_task, run_window
    from vidsnap.core.plan import Task
    from vidsnap.core.windows import Window

    task = Task.from_plain(json.loads(item["task"]))
    sink = LocalSink(item["out"])
    started, cpu_started = time.time(), _cpu()
    if item["window"] is None:
        outcomes = [run_task(task, item["video"], sink)]
        index = -1
    else:
        window = Window.from_plain(json.loads(item["window"]))
        outcomes = run_window(task, item["video"], sink, window, totals=item["totals"])
        index = window.index
    results.put(
        dict(
            index=index,
            start_s=entered - item["spawned"],  # interpreter start + this module's imports
            import_s=started - entered,
            wall_s=time.time() - started,
            cpu_s=_cpu() - cpu_started,
            cpu_total_s=_cpu(),
            outcomes=outcomes,
        )
    )


def run_processes(
    video: Path, task: Any, windows: Sequence[Any] | None, totals: Sequence[int], out: str
) -> dict[str, Any]:
    """The windows (None: the whole task) in one spawned process each, all at once; wall time and
    each process's numbers."""
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Any] = ctx.Queue()
    task_json = json.dumps(task.plain())
    items: list[str | None] = [None] if windows is None else [json.dumps(w.plain()) for w in windows]
    began = time.time()
    hand_over = dict(task=task_json, totals=list(totals), video=str(video), out=out)
    procs = [
        ctx.Process(target=worker, args=({**hand_over, "window": item, "spawned": time.time()}, results))
        for item in items
    ]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a window process failed ({p.exitcode})")
    wall = time.time() - began
    got.sort(key=lambda r: r["index"])
    return dict(wall_s=wall, procs=got)


def _digest(folder: str, outcome: Any, warnings: bool = True) -> tuple[Any, ...]:
    """Keys (relative to the folder), sizes, TimeMs, geometry and file bytes of an outcome."""
    root = Path(folder).resolve()
    rows = []
    for o in outcome.outputs:
        path = Path(o.uri)
        rows.append(
            (
                str(path.relative_to(root)),
                o.time_ms,
                o.width,
                o.height,
                o.size,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        )
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return (rows, files, outcome.warnings if warnings else None)


def ffmpeg_time(video: Path, args: list[str]) -> tuple[float, float, int]:
    """Wall time, CPU seconds and files written of one ffmpeg CLI run."""
    with tempfile.TemporaryDirectory() as out:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
        cmd += [a.replace("{V}", str(video)).replace("{O}", out) for a in args]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"ffmpeg failed: {proc.stderr.read().decode() if proc.stderr else ''}")
        return wall, usage.ru_utime + usage.ru_stime, len(list(Path(out).iterdir()))


def windows_rows(video: Path, counts: Sequence[int], log: list[str]) -> dict[str, Any]:
    """Both 1080p tasks: one pass, then N windows for each N; and ffmpeg once."""
    from vidsnap.core.engine import open_video
    from vidsnap.core.windows import merge_windows, plan_windows

    def say(line: str) -> None:
        print(line, flush=True)
        log.append(line)

    with open_video(video, bulk=True) as v:
        duration_s = float(v.description.duration_ms) / 1000
    results: dict[str, Any] = {"video": video.name, "duration_s": duration_s, "tasks": []}
    for name, process, intra, ff_args in TASKS:
        task = make_task(process, intra, "out")
        say(f"\n## {name} ({process}{', intra' if intra else ''}) on {video.name}, {duration_s:.0f} s")
        with tempfile.TemporaryDirectory() as one_dir:
            one = run_processes(video, task, None, [], one_dir)
            single = one["procs"][0]
            reference = _digest(one_dir, single["outcomes"][0])
        one_wall, one_cpu = one["wall_s"], single["cpu_s"]
        frames = len(reference[0])
        say(
            f"one pass: {frames} frames; wall {one_wall:.2f} s (process start {single['start_s']:.2f} s, "
            f"run {single['wall_s']:.2f} s); CPU {one_cpu:.2f} s = {one_cpu / duration_s:.4f} CPU s "
            "per s of video"
        )
        ff_wall, ff_cpu, ff_files = ffmpeg_time(video, ff_args)
        say(f"ffmpeg CLI ({' '.join(ff_args)}): wall {ff_wall:.2f} s, CPU {ff_cpu:.2f} s, {ff_files} files")
        say(
            "| N | windows | wall (s) | Σ window CPU (s) | longest window (s) | open+plan (s) | merge (ms) "
            "| speedup | same as one pass |"
        )
        say("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        rows = []
        end_ms = Fraction(duration_s * 1000)
        for n in counts:
            began = time.perf_counter()
            with open_video(video, bulk=True) as v:
                opened = time.perf_counter()
                plan = plan_windows(v, task, count=n)
            planned = time.perf_counter()
            with tempfile.TemporaryDirectory() as many_dir:
                ran = run_processes(video, task, plan.windows, plan.totals, many_dir)
                outcomes = [p["outcomes"] for p in ran["procs"]]
                m0 = time.perf_counter()
                merged = merge_windows(outcomes)
                merge_s = time.perf_counter() - m0
                same = _digest(many_dir, merged) == reference
            plan_s = planned - began
            procs = ran["procs"]
            cpu = sum(p["cpu_s"] for p in procs)
            longest = max(p["start_s"] + p["import_s"] + p["wall_s"] for p in procs)
            row = dict(
                n=n,
                windows=len(plan.windows),
                wall_s=ran["wall_s"],
                cpu_s=cpu,
                cpu_start_s=sum(p["cpu_total_s"] - p["cpu_s"] for p in procs),
                longest_s=longest,
                open_s=opened - began,
                plan_s=plan_s,
                merge_s=merge_s,
                speedup=one_wall / ran["wall_s"],
                same=same,
                window_cpu_s=[p["cpu_s"] for p in procs],
                window_run_s=[p["wall_s"] for p in procs],
                window_start_s=[p["start_s"] + p["import_s"] for p in procs],
                window_len_s=[float(((w.end_ms or end_ms) - w.start_ms) / 1000) for w in plan.windows],
            )
            rows.append(row)
            say(
                f"| {n} | {row['windows']} | {row['wall_s']:.2f} | {cpu:.2f} | {longest:.2f} | "
                f"{row['open_s']:.2f}+{row['plan_s'] - row['open_s']:.2f} | {merge_s * 1000:.2f} | "
                f"{row['speedup']:.2f} | {'OK' if same else 'DIFF'} |"
            )
        best = min(rows, key=lambda r: r["wall_s"])
        last = rows[-1]
        say(
            f"per-window CPU (s), N={last['n']}: {' / '.join(f'{c:.2f}' for c in last['window_cpu_s'])}; "
            f"process start + imports per window: {statistics.mean(last['window_start_s']):.2f} s"
        )
        say(
            f"vidsnap (best N={best['n']}, wall {best['wall_s']:.2f} s) / ffmpeg CLI ({ff_wall:.2f} s) = "
            f"{best['wall_s'] / ff_wall:.3f}; one pass / ffmpeg = {one_wall / ff_wall:.3f}"
        )
        say(
            f"This machine has {os.cpu_count()} cores: past N={os.cpu_count()} windows only share them "
            "(wall time stops improving); the sum of CPU shows what each extra window costs."
        )
        results["tasks"].append(
            dict(
                name=name,
                process=process,
                intra=intra,
                frames=frames,
                one_wall_s=one_wall,
                one_cpu_s=one_cpu,
                one_start_s=single["start_s"] + single["import_s"],
                ffmpeg_wall_s=ff_wall,
                ffmpeg_cpu_s=ff_cpu,
                rows=rows,
            )
        )
    return results


def decode_all(video: str, seconds: float | None = None) -> dict[str, float]:
    """Decode every frame (PyAV, the decoder's own threads: AUTO), or the first ``seconds``; CPU
    and wall per second of video."""
    import av

    began, cpu0 = time.perf_counter(), _cpu()
    last = 0.0
    with av.open(video) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for frame in c.decode(s):
            last = float(frame.time or 0)
            if seconds is not None and last >= seconds:
                break
    span = last + 1 / float(s.average_rate or 25)
    wall, cpu = time.perf_counter() - began, _cpu() - cpu0
    return dict(video_s=span, wall_s=wall, cpu_s=cpu, cpu_per_s=cpu / span, wall_per_s=wall / span)


def _rate_worker(kind: str, arg: str, video: str, results: Queue[Any]) -> None:
    """One rate measurement in a fresh process: ``decode`` (``arg``: seconds or ""), or a task."""
    if kind == "decode":
        results.put(decode_all(video, float(arg) if arg else None))
        return
    from vidsnap.aws.storage import LocalSink
    from vidsnap.core.engine import open_video, run_task

    task = make_task(arg, False, "out")
    with open_video(video, bulk=True) as v:
        span = float(v.description.duration_ms) / 1000
    with tempfile.TemporaryDirectory() as out:
        began, cpu0 = time.perf_counter(), _cpu()
        outcome = run_task(task, video, LocalSink(out))
        wall, cpu = time.perf_counter() - began, _cpu() - cpu0
    results.put(
        dict(
            video_s=span,
            wall_s=wall,
            cpu_s=cpu,
            cpu_per_s=cpu / span,
            wall_per_s=wall / span,
            outputs=len(outcome.outputs) + len(outcome.compositions),
        )
    )


def rate(kind: str, arg: str, video: Path) -> dict[str, Any]:
    """A rate measured in its own spawned process (nothing cached from another measurement)."""
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Any] = ctx.Queue()
    p = ctx.Process(target=_rate_worker, args=(kind, arg, str(video), results))
    p.start()
    got: dict[str, Any] = results.get()
    p.join()
    return got


def make_uhd() -> dict[str, Path]:
    """The 4K HEVC 10-bit clips (cached under bench/media): synthesised with PyAV's libx265, and the
    same re-encoded by the ffmpeg CLI with temporal film grain at UHD_BITRATE (the smooth synthetic
    picture decodes several times faster than camera footage; grain gives the residuals their cost)."""
    from vidsnap.local.synth import make_video

    MEDIA.mkdir(parents=True, exist_ok=True)
    synth = MEDIA / f"uhd_hevc10_{UHD['duration_s']}s_synth.mp4"
    grain = MEDIA / f"uhd_hevc10_{UHD['duration_s']}s_grain.mp4"
    if not synth.exists():
        print(f"synthesising {synth.name} (4K HEVC 10-bit, ~2 minutes) ...", file=sys.stderr, flush=True)
        tmp = synth.with_suffix(".part.mp4")
        make_video(tmp, codec="libx265", pix_fmt="yuv420p10le", **UHD)  # type: ignore[arg-type]
        tmp.rename(synth)
    if not grain.exists():
        print(
            f"re-encoding {grain.name} with film grain (~6 minutes on 2 cores) ...",
            file=sys.stderr,
            flush=True,
        )
        tmp = grain.with_suffix(".part.mp4")
        gop, bframes = UHD["gop"], UHD["bframes"]
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:open-gop=0:log-level=error"
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(synth), "-map", "0:v:0"]
        cmd += [
            "-vf",
            "noise=alls=12:allf=t+u",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
        ]
        cmd += ["-b:v", UHD_BITRATE, "-maxrate", UHD_BITRATE, "-bufsize", UHD_BITRATE, "-x265-params", params]
        cmd += ["-movflags", "+faststart", "-f", "mp4", str(tmp)]
        subprocess.run(cmd, check=True)
        tmp.rename(grain)
    return {"4K HEVC 10-bit, synthetic": synth, "4K HEVC 10-bit, film grain 16 Mbit/s": grain}


def quick_clip() -> Path:
    """A 20 s 1080p H.264 clip (cached under bench/media), synthesised."""
    from vidsnap.local.synth import make_video

    MEDIA.mkdir(parents=True, exist_ok=True)
    video = MEDIA / "windows_quick_20s.mp4"
    if not video.exists():
        spec = dict(duration_s=20, fps=30, width=1920, height=1080, gop=60, bframes=3, scene_cuts=[10.0])
        tmp = video.with_suffix(".part.mp4")
        make_video(tmp, **spec)  # type: ignore[arg-type]
        tmp.rename(video)
    return video


def grain_1080() -> Path:
    """The 20 s 1080p clip re-encoded by the ffmpeg CLI with film grain at 14 Mbit/s (x264, GOP 250
    and 3 B-frames as the 10-minute video): what decoding costs on a picture like camera footage
    (the smooth synthetic one decodes several times faster)."""
    src = quick_clip()
    dst = src.with_name(src.stem + "_grain.mp4")
    if not dst.exists():
        tmp = dst.with_suffix(".part.mp4")
        params = "keyint=250:min-keyint=250:scenecut=0:bframes=3:b-adapt=0"
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-map", "0:v:0"]
        cmd += ["-vf", "noise=alls=12:allf=t+u", "-c:v", "libx264", "-preset", "veryfast"]
        cmd += ["-b:v", "14M", "-maxrate", "14M", "-bufsize", "14M", "-x264-params", params]
        cmd += ["-movflags", "+faststart", "-f", "mp4", str(tmp)]
        subprocess.run(cmd, check=True)
        tmp.rename(dst)
    return dst


def rates(video_1080: Path, uhd: dict[str, Path], log: list[str]) -> list[dict[str, Any]]:
    """CPU seconds per second of video: 1080p every frame; 4K: every frame and the rate tasks."""
    rows = []

    def say(line: str) -> None:
        print(line, flush=True)
        log.append(line)

    say("\n## Decoding rates (one process each; CPU = all threads)")
    say("| video | work | video (s) | wall (s) | CPU (s) | CPU s per s of video | video s per 300 CPU s |")
    say("|---|---|---:|---:|---:|---:|---:|")
    measures: list[tuple[str, Path, str, str, str]] = [
        (f"1080p H.264 ({video_1080.name})", video_1080, "every frame decoded (first 60 s)", "decode", "60")
    ]
    grain = grain_1080()
    measures.append(("1080p H.264, film grain 14 Mbit/s", grain, "every frame decoded", "decode", ""))
    measures.append(
        ("1080p H.264, film grain 14 Mbit/s", grain, "exact frame every 2 s", "task", TASKS[0][1])
    )
    for label, path in uhd.items():
        measures.append((label, path, "every frame decoded", "decode", ""))
        measures += [(label, path, name, "task", process) for name, process in RATE_TASKS]
    for label, path, work, kind, arg in measures:
        got = rate(kind, arg, path)
        row = dict(video=label, work=work, **got)
        rows.append(row)
        say(
            f"| {label} | {work} | {got['video_s']:.1f} | {got['wall_s']:.2f} | {got['cpu_s']:.2f} | "
            f"{got['cpu_per_s']:.3f} | {300 / got['cpu_per_s']:.0f} |"
        )
    return rows


def main() -> int:
    """Run the benchmark, print its tables and save them (bench/out/windows.json, .md)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 20 s 1080p clip and no 4K part: a smoke run")
    parser.add_argument(
        "--media", type=Path, help="the 1080p H.264 video (default: bench/run.py's 10-min one)"
    )
    parser.add_argument("--windows", default="1,2,4,8", help="window counts, comma-separated")
    parser.add_argument("--rates-only", action="store_true", help="only the decoding rates")
    parser.add_argument("--no-rates", action="store_true", help="skip the decoding rates (and the 4K clips)")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        print("ffmpeg is not on PATH (Debian: apt-get install ffmpeg)", file=sys.stderr)
        return 2
    if args.media:
        video = args.media
    elif args.quick:
        video = quick_clip()
    else:
        video = run.make_media(quick=False)["long"]
    counts = [int(n) for n in args.windows.split(",")]
    log = [f"# Windows (bench/windows.py) on {run.machine()}"]
    print(log[0], flush=True)
    results = {} if args.rates_only else windows_rows(video, counts, log)
    if not (args.quick or args.no_rates):
        results["rates"] = rates(video, make_uhd(), log)
    out = run.ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    suffix += "-rates" if args.rates_only else ""
    (out / f"windows{suffix}.json").write_text(json.dumps(results, indent=2, default=str))
    (out / f"windows{suffix}.md").write_text("\n".join(log) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

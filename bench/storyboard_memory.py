"""Peak memory of a long storyboard: a 2-hour video, one tile every 2 s (3,600 tiles, 36 sheets).

    .venv/bin/python bench/storyboard_memory.py     # alone (also run by bench/run.py)

A storyboard composes its tiles sheet by sheet (README: Compositions), so its memory must not
grow with the video's length: this runs the vidsnap CLI on a synthesised 2-hour video and reports
the child process's peak RSS (goal ≤ 500 MB). The video is small and cheap to make (320×180, 5 fps,
a keyframe every 10 s, x264 ultrafast: ~1 minute, ~25 MB, cached under bench/media); what is
measured is what grows with the tile count (tiles, sheets, the track of times), not decoding a
large picture, which the 1080p rows of bench/run.py already cover.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MEDIA = Path(__file__).resolve().parent / "media"
DURATION_S = 7200
FPS = 5
#: One tile every 2 s, 160 px wide (the source's 16:9: 160×90), 10×10 tiles a sheet.
PROCESS = "video/sprite,inter_2000,w_160,h_90,tw_10,th_10,pad_0,margin_0,f_jpg"
TILES = DURATION_S // 2
#: Peak RSS goal of the storyboard process (MB).
GOAL_MB = 500

Timed = Callable[[list[str], dict[str, str] | None], tuple[float, int]]


def two_hour_video() -> Path:
    """The 2-hour video (synthesised once, cached under bench/media)."""
    from vidsnap.local.synth import make_video

    MEDIA.mkdir(parents=True, exist_ok=True)
    path = MEDIA / f"storyboard_{DURATION_S}s_320x180.mp4"
    if not path.exists():
        started = time.monotonic()
        print(f"synthesising {path.name} ...", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".part.mp4")
        make_video(
            tmp,
            duration_s=DURATION_S,
            fps=FPS,
            width=320,
            height=180,
            gop=10 * FPS,
            bframes=0,
            preset="ultrafast",
            scene_cuts=[float(s) for s in range(300, DURATION_S, 300)],
        )
        tmp.rename(path)
        size_mb = path.stat().st_size / 1e6
        print(f"  {size_mb:.0f} MB in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return path


def measure(timed: Timed, env: dict[str, str], runs: int = 2) -> dict[str, Any]:
    """Run the storyboard ``runs`` times (a whole ``vidsnap run`` process each); times, peaks, sheets."""
    video = two_hour_video()
    cmd = [sys.executable, "-m", "vidsnap", "run", str(video), PROCESS, "--no-progress"]
    cmd += ["--max-frames", str(TILES)]
    times: list[float] = []
    peaks: list[float] = []
    sheets = 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            elapsed, peak_kib = timed([*cmd, "--out", out], env)
            sheets = sum(1 for _ in Path(out).rglob("*.jpg"))
        times.append(elapsed)
        peaks.append(peak_kib / 1024)
        print(
            f"  storyboard of 2 h ({TILES} tiles): {elapsed:.1f} s, peak RSS {peak_kib / 1024:.0f} MB, "
            f"{sheets} sheets",
            file=sys.stderr,
            flush=True,
        )
    # The same process stopped after its first sheet: what the 35 other sheets add, if anything.
    with tempfile.TemporaryDirectory() as out:
        _, one_kib = timed([*cmd[:5], f"{PROCESS},num_100", "--no-progress", "--out", out], env)
    print(f"  first sheet only (num_100): peak RSS {one_kib / 1024:.0f} MB", file=sys.stderr, flush=True)
    return dict(
        video=video.name,
        one_sheet_peak_mb=one_kib / 1024,
        size_mb=video.stat().st_size / 1e6,
        tiles=TILES,
        sheets=sheets,
        times_s=times,
        peaks_mb=peaks,
        peak_mb=max(peaks),
        median_s=statistics.median(times),
        goal_mb=GOAL_MB,
    )


def main() -> int:
    """Measure alone, with bench/run.py's process helper."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run

    run.timed(["true"])  # start the helper while this process is small
    result = measure(run.timed, run.installed_like_env())
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Posters, scenes and HDR: vidsnap's picks and costs against ffmpeg's ``thumbnail`` and PySceneDetect.

    .venv/bin/python bench/posters.py                  # 1080p; pictures and report in bench/out/posters/
    .venv/bin/python bench/posters.py --size 640x360   # smaller and quicker
    .venv/bin/python bench/posters.py --scenedetect /path/to/python   # a Python with scenedetect

Synthesises (vidsnap.local.synthposters) three poster clips (3 s of black and a fade-in; a
motion-blurred pan with a sharp second; a detailed picture with flashes), a six-shot clip and PQ/HLG
HDR clips. For each poster clip it writes vidsnap's ``t_auto`` pick and ffmpeg's ``thumbnail``
pick over the same 6 s window (``-vf thumbnail=<frames in 6 s>``, ffmpeg CLI needed: a benchmark,
not a test) and times ``t_auto`` against a plain ``t_0``. Scenes: ``m_scene`` against ``m_dhash``
and PySceneDetect's ContentDetector (run in the given interpreter, if any). HDR: the cost of tone
mapping per thumbnail. The report (Markdown) is printed and written to ``bench/out/posters/report.md``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from PIL import Image

from vidsnap.core import imaging
from vidsnap.core.engine import run_task, snapshot
from vidsnap.core.lang import parse_sync
from vidsnap.core.lang.oss import parse_async
from vidsnap.core.plan import SnapshotRequest
from vidsnap.core.select import POSTER_WINDOW_MS
from vidsnap.local import synthposters as sp

OUT = Path(__file__).parent / "out" / "posters"


class _Sink:
    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        del bucket, data, content_type  # only the count and times of the outputs matter here
        return key


def _best_ms(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def _ffmpeg_thumbnail(clip: sp.Clip, out: Path) -> float | None:
    """ffmpeg's ``thumbnail`` pick among the frames of the poster window; its time in s."""
    if shutil.which("ffmpeg") is None:
        return None
    frames = int(POSTER_WINDOW_MS / 1000 * clip.fps)
    cmd = ["ffmpeg", "-v", "info", "-y", "-i", clip.path, "-vf", f"thumbnail={frames},showinfo"]
    proc = subprocess.run([*cmd, "-frames:v", "1", str(out)], capture_output=True, text=True, check=True)
    found = re.findall(r"pts_time:([0-9.]+)", proc.stderr)
    return float(found[-1]) if found else None


def _inside(t: float, clip: sp.Clip) -> str:
    return "good" if any(lo <= t < hi for lo, hi in clip.good) else "BAD"


def posters(size: tuple[int, int], lines: list[str]) -> None:
    lines += [
        "## Posters (t_auto) against ffmpeg's thumbnail filter",
        "",
        f"Clips {size[0]}x{size[1]}, 25 fps, 1 s GOP; window {int(POSTER_WINDOW_MS)} ms from the start.",
        "",
        "| clip | vidsnap t_auto | ffmpeg thumbnail | t_auto ms | t_0 ms |",
        "|---|---|---|---|---|",
    ]
    makers = {"fade": sp.make_fade_clip, "blur": sp.make_blur_clip, "flash": sp.make_flash_clip}
    for name, make in makers.items():
        clip = make(OUT / f"{name}.mp4", size=size)
        auto = parse_sync("video/snapshot,t_auto,f_jpg")
        rendered = snapshot(clip.path, auto)
        (OUT / f"{name}-vidsnap.jpg").write_bytes(rendered.data)
        t_auto = float(rendered.time_ms) / 1000
        ff = _ffmpeg_thumbnail(clip, OUT / f"{name}-ffmpeg.jpg")
        ff_text = "no ffmpeg" if ff is None else f"{ff:.2f} s ({_inside(ff, clip)})"
        cost = _best_ms(functools.partial(snapshot, clip.path, auto))
        plain = _best_ms(functools.partial(snapshot, clip.path, parse_sync("video/snapshot,t_0,f_jpg")))
        lines.append(
            f"| {name} | {t_auto:.2f} s ({_inside(t_auto, clip)}) | {ff_text} | {cost:.0f} | {plain:.0f} |"
        )
    lines.append("")


def _pyscenedetect(python: str | None, path: str) -> str:
    if not python:
        return "not run (no --scenedetect interpreter)"
    code = (
        "import json,sys\nfrom scenedetect import detect, ContentDetector\n"
        "print(json.dumps([round(s.seconds, 3) for s, _ in detect(sys.argv[1], ContentDetector())]))"
    )
    proc = subprocess.run([python, "-c", code, path], capture_output=True, text=True, check=False)
    if proc.returncode:
        return f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    return ", ".join(f"{t:g}" for t in json.loads(proc.stdout))


def scenes(size: tuple[int, int], python: str | None, lines: list[str]) -> None:
    shots = sp.make_shots_clip(OUT / "shots.mp4", size=size)
    fade = sp.make_fade_clip(OUT / "fade.mp4", size=size)
    lines += [
        "## Scenes: m_scene, m_dhash, PySceneDetect",
        "",
        f"Six shots, cuts at {', '.join(f'{c:g}' for c in shots.cuts)} s; "
        "the fade clip: one shot fading in from 3 s.",
        "",
        "| clip | process | shot starts (s) | ms |",
        "|---|---|---|---|",
    ]
    for clip, label in ((shots, "shots"), (fade, "fade")):
        for process in (
            "video/snapshots,f_jpg,m_scene",
            "video/snapshots,f_jpg,m_scene,best_1",
            "video/snapshots,f_jpg,m_dhash",
            "video/snapshots,f_jpg,m_dhash,thr_30",
        ):
            task = parse_async(process)
            started = time.perf_counter()
            outcome = run_task(task, clip.path, _Sink())
            ms = (time.perf_counter() - started) * 1000
            found = ", ".join(f"{float(o.time_ms) / 1000:g}" for o in outcome.outputs)
            lines.append(f"| {label} | `{process.split(',', 2)[2]}` | {found} | {ms:.0f} |")
        lines.append(f"| {label} | PySceneDetect ContentDetector | {_pyscenedetect(python, clip.path)} | |")
    lines.append("")


def hdr(size: tuple[int, int], lines: list[str]) -> None:
    lines += [
        "## HDR to SDR: the cost of tone mapping per thumbnail",
        "",
        f"10-bit HEVC {size[0]}x{size[1]}; best of 7 of render (swscale + tone map + JPEG), "
        "the frame decoded once.",
        "",
        "| transfer | output | tone-mapped ms | untouched ms | extra ms |",
        "|---|---|---|---|---|",
    ]
    import av

    for transfer in ("pq", "hlg"):
        clip = sp.make_hdr_clip(OUT / f"hdr-{transfer}.mp4", transfer=transfer, size=size)
        with av.open(clip.path) as container:
            frame = next(container.decode(video=0))
        for width in (320, size[0]):
            req = parse_sync(f"video/snapshot,t_0,w_{width}")
            assert isinstance(req, SnapshotRequest)
            spec = req.image
            geometry = imaging.plan_geometry(frame.width, frame.height, Fraction(1), 0, spec)
            mapped = _best_ms(functools.partial(imaging.render, frame, geometry, "jpg"), 7)
            real = imaging._hdr_transfer
            imaging._hdr_transfer = lambda _f: None  # type: ignore[assignment]
            try:
                plain = _best_ms(functools.partial(imaging.render, frame, geometry, "jpg"), 7)
            finally:
                imaging._hdr_transfer = real  # type: ignore[assignment]
            lines.append(
                f"| {transfer} | {geometry.width}x{geometry.height} | {mapped:.1f} | {plain:.1f} | "
                f"{mapped - plain:.1f} |"
            )
        data = snapshot(clip.path, parse_sync("video/snapshot,t_0,f_png")).data
        Image.open(io.BytesIO(data)).save(OUT / f"hdr-{transfer}.png")
    lines.append("")


def main() -> None:
    """Run the three comparisons and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="1920x1080", help="clip size WxH (default 1920x1080)")
    parser.add_argument("--scenedetect", help="a Python interpreter with scenedetect installed")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Posters, scenes and HDR (bench/posters.py)", ""]
    posters((w, h), lines)
    scenes((w, h), args.scenedetect, lines)
    hdr((w, h), lines)
    report = "\n".join(lines)
    (OUT / "report.md").write_text(report + "\n")
    sys.stdout.write(report + "\n")


if __name__ == "__main__":
    main()

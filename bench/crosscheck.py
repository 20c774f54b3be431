"""Cross-check: vidsnap's CLI against a sequential decode of real-world media made by other encoders.

    .venv/bin/python bench/crosscheck.py                 # all media kinds
    .venv/bin/python bench/crosscheck.py --only h264     # kinds whose name contains "h264"
    .venv/bin/python bench/crosscheck.py --keep /tmp/cc  # keep media and outputs there

Needs the ffmpeg CLI (``/usr/bin/ffmpeg``, any 5.x+) to *make* the media from lavfi sources with
encoders PyAV does not bundle or drive the same way (x264 open GOP / interlaced, x265, libvpx
alt-ref, AV1, MPEG-2 TS with a PTS wrap, packed/unpacked MPEG-4 AVI, ProRes, FLV, 3GP, edit lists,
moov at the end, rotation, SAR, VFR, odd sizes, stills, cover art, broken files). The product and
its tests never need it: this is a script, not a test.

The reference for "the frame shown at t" (README) is a *sequential* PyAV decode of the whole
file: the last frame in presentation order with ``pts <= start + t / 1000 / time_base`` (exact
rationals; ``start`` = the first decoded frame's pts), converted with ``to_ndarray("rgb24")`` and
rotated into display orientation. Each ``vidsnap run FILE video/snapshot,t_T,f_png`` output is
compared with it (mean absolute difference; colour-conversion noise stays ≲ 3), and with its
neighbours, reporting which frame index matched best. The asynchronous modes ``inter_500``,
``m_key`` and ``m_avg,num_7`` are checked for their ``TimeMs`` lists and each output's pixels.
ffprobe's frame count (``-count_frames``, ffmpeg's own decode) is compared with the PyAV count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
VIDSNAP = ROOT / ".venv" / "bin" / "vidsnap"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
TIMEOUT_S = 60
SLOW_S = 5.0
MAD_OK = 6.0

NOISE = "noise=alls=20:allf=t+u"


def src(
    size: str = "320x240", rate: str = "25", dur: float = 4, kind: str = "testsrc2", noise: bool = True
) -> list[str]:
    graph = f"{kind}=size={size}:rate={rate}" + (f":duration={dur}" if kind == "testsrc2" else "")
    if kind == "mandelbrot":
        graph += f",trim=duration={dur}"
    if noise:
        graph += "," + NOISE
    return ["-f", "lavfi", "-i", graph]


X264 = ["-c:v", "libx264", "-preset", "veryfast"]


@dataclass
class Kind:
    name: str
    ext: str
    args: list[str]  # ffmpeg arguments after "-y -hide_banner" (inputs and codec options)
    derive: Callable[[Path, Path], None] | None = None  # post-processing of the made file
    base: str | None = None  # derive from this kind's file instead of running ffmpeg
    broken: bool = False
    notes: str = ""


def _truncate(path: Path, out: Path) -> None:
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 2])


def _garbage(path: Path, out: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    mid = len(data) // 2
    data[mid : mid + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))


def _zero(_path: Path, out: Path) -> None:
    out.write_bytes(b"")


def _rotate(degrees: int) -> Callable[[Path, Path], None]:
    """Write a display matrix into every ``tkhd`` (ffmpeg 5's CLI no longer turns the ``rotate``
    tag into one; 6.0+ has ``-display_rotation``). ``degrees`` clockwise, as the old tag meant."""

    one, w30 = 1 << 16, 1 << 30
    mats = {
        90: (0, one, 0, -one, 0, 0, 0, 0, w30),
        180: (-one, 0, 0, 0, -one, 0, 0, 0, w30),
        270: (0, -one, 0, one, 0, 0, 0, 0, w30),
    }

    def run(path: Path, out: Path) -> None:
        data = bytearray(path.read_bytes())
        pos = 0
        while (pos := data.find(b"tkhd", pos + 1)) > 0:
            version = data[pos + 4]
            off = pos + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
            data[off : off + 36] = b"".join(v.to_bytes(4, "big", signed=True) for v in mats[degrees])
        out.write_bytes(bytes(data))

    return run


def _concat_sizes(_path: Path, out: Path) -> None:
    """An MPEG-TS whose picture size changes mid-stream (broadcast ad insertion): two encodes
    of different sizes, byte-concatenated."""
    a, b = out.with_suffix(".a.ts"), out.with_suffix(".b.ts")
    ff([*src(dur=2), *X264, "-bf", "2", "-g", "25", str(a)])
    ff([*src(size="480x270", dur=2), *X264, "-bf", "2", "-g", "25", "-output_ts_offset", "2.1", str(b)])
    out.write_bytes(a.read_bytes() + b.read_bytes())


def _cut(ss: str) -> Callable[[Path, Path], None]:
    def run(path: Path, out: Path) -> None:
        ff(["-ss", ss, "-i", str(path), "-c", "copy", "-map", "0", str(out)])

    return run


def kinds() -> list[Kind]:
    k: list[Kind] = []
    add = k.append
    add(Kind("h264_bf3", "mp4", src() + X264 + ["-bf", "3", "-x264opts", "b-pyramid=none", "-g", "50"]))
    add(Kind("h264_bpyramid", "mp4", src() + X264 + ["-bf", "3", "-x264opts", "b-pyramid=normal:keyint=48"]))
    add(Kind("h264_faststart", "mp4", src() + X264 + ["-bf", "2", "-g", "30", "-movflags", "+faststart"]))
    add(
        Kind(
            "h264_opengop",
            "mp4",
            src() + X264 + ["-bf", "3", "-x264opts", "open-gop=1:keyint=30:min-keyint=30"],
        )
    )
    add(
        Kind(
            "h264_opengop_mkv",
            "mkv",
            src() + X264 + ["-bf", "3", "-x264opts", "open-gop=1:keyint=30:min-keyint=30"],
        )
    )
    add(
        Kind(
            "h264_opengop_ts",
            "ts",
            src() + X264 + ["-bf", "3", "-x264opts", "open-gop=1:keyint=30:min-keyint=30"],
        )
    )
    add(Kind("h264_mbaff", "mp4", src() + X264 + ["-flags", "+ildct+ilme", "-x264opts", "tff=1", "-g", "25"]))
    add(
        Kind(
            "h264_interlaced_ts",
            "ts",
            src(size="720x576")
            + X264
            + ["-flags", "+ildct+ilme", "-x264opts", "tff=1:keyint=25", "-bf", "2"],
        )
    )
    add(Kind("h264_422", "mp4", src() + X264 + ["-pix_fmt", "yuv422p", "-profile:v", "high422", "-g", "40"]))
    add(Kind("h264_444", "mkv", src() + X264 + ["-pix_fmt", "yuv444p", "-profile:v", "high444", "-g", "40"]))
    add(
        Kind(
            "h264_10bit",
            "mp4",
            src() + X264 + ["-pix_fmt", "yuv420p10le", "-profile:v", "high10", "-g", "40"],
        )
    )
    add(Kind("h264_cavlc", "mp4", src() + X264 + ["-coder", "0", "-profile:v", "baseline", "-g", "30"]))
    add(Kind("h264_mandel", "mp4", src(kind="mandelbrot") + X264 + ["-bf", "3", "-g", "60"]))
    add(
        Kind(
            "hevc",
            "mp4",
            [
                *src(),
                "-c:v",
                "libx265",
                "-preset",
                "fast",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "keyint=40:log-level=error",
            ],
        )
    )
    add(
        Kind(
            "hevc_10bit",
            "mkv",
            [
                *src(),
                "-c:v",
                "libx265",
                "-preset",
                "fast",
                "-pix_fmt",
                "yuv420p10le",
                "-x265-params",
                "keyint=40:log-level=error",
            ],
        )
    )
    add(
        Kind(
            "hevc_ts",
            "ts",
            [*src(), "-c:v", "libx265", "-preset", "fast", "-x265-params", "keyint=40:log-level=error"],
        )
    )
    add(
        Kind(
            "vp8_altref",
            "webm",
            [
                *src(),
                "-c:v",
                "libvpx",
                "-auto-alt-ref",
                "1",
                "-lag-in-frames",
                "16",
                "-g",
                "40",
                "-b:v",
                "500k",
                "-deadline",
                "good",
                "-cpu-used",
                "8",
            ],
        )
    )
    add(
        Kind(
            "vp9_altref",
            "webm",
            [
                *src(),
                "-c:v",
                "libvpx-vp9",
                "-auto-alt-ref",
                "1",
                "-lag-in-frames",
                "25",
                "-g",
                "40",
                "-b:v",
                "500k",
                "-deadline",
                "good",
                "-cpu-used",
                "8",
                "-row-mt",
                "1",
            ],
        )
    )
    add(
        Kind(
            "av1_aom",
            "mp4",
            [*src(dur=2), "-c:v", "libaom-av1", "-cpu-used", "8", "-g", "20", "-b:v", "300k", "-row-mt", "1"],
        )
    )
    add(Kind("av1_svt", "mkv", [*src(), "-c:v", "libsvtav1", "-preset", "12", "-g", "40"]))
    add(Kind("av1_rav1e", "webm", [*src(dur=2), "-c:v", "librav1e", "-speed", "10", "-g", "20"]))
    add(
        Kind(
            "mpeg2_ts_offset",
            "ts",
            [*src(), "-c:v", "mpeg2video", "-bf", "2", "-g", "15", "-b:v", "2M", "-output_ts_offset", "10"],
        )
    )
    add(
        Kind(
            "mpeg2_ts_wrap",
            "ts",
            [
                *src(),
                "-c:v",
                "mpeg2video",
                "-bf",
                "2",
                "-g",
                "15",
                "-b:v",
                "2M",
                "-output_ts_offset",
                "95442",
            ],
        )
    )
    add(Kind("h264_ts_wrap", "ts", src() + X264 + ["-bf", "3", "-g", "30", "-output_ts_offset", "95442.5"]))
    add(
        Kind(
            "mpeg4_avi_bf",
            "avi",
            [*src(), "-c:v", "mpeg4", "-bf", "2", "-g", "30", "-q:v", "4", "-vtag", "XVID"],
        )
    )
    add(Kind("xvid_avi_packed", "avi", [*src(), "-c:v", "libxvid", "-bf", "2", "-g", "30", "-q:v", "4"]))
    add(Kind("h264_avi_bf", "avi", [*src(), *X264, "-bf", "2", "-g", "30"]))
    add(Kind("mjpeg_avi", "avi", [*src(), "-c:v", "mjpeg", "-q:v", "4"]))
    add(Kind("prores_mov", "mov", [*src(dur=2), "-c:v", "prores_ks", "-profile:v", "2"]))
    add(Kind("flv_h263", "flv", [*src(), "-c:v", "flv", "-g", "30", "-q:v", "4"]))
    add(Kind("flv_h264", "flv", src() + X264 + ["-bf", "2", "-g", "30"]))
    add(Kind("h263_3gp", "3gp", [*src(size="352x288"), "-c:v", "h263", "-g", "30", "-q:v", "4"]))
    add(
        Kind(
            "h264_3gp_aac",
            "3gp",
            [
                *src(),
                "-f",
                "lavfi",
                "-i",
                "sine=d=4",
                "-map",
                "0:v",
                "-map",
                "1:a",
                *X264,
                "-bf",
                "2",
                "-g",
                "30",
                "-c:a",
                "aac",
            ],
        )
    )
    add(Kind("mkv_cut", "mkv", [], derive=_cut("1.3"), base="h264_opengop_mkv"))
    add(Kind("mp4_cut_editlist", "mp4", [], derive=_cut("1.3"), base="h264_bf3"))
    add(Kind("mp4_cut_bpyr", "mp4", [], derive=_cut("2.17"), base="h264_bpyramid"))
    add(Kind("hevc_cut_mp4", "mp4", [], derive=_cut("1.1"), base="hevc"))
    add(Kind("rot_base", "mov", src() + X264 + ["-bf", "2", "-g", "30"]))
    add(Kind("rotate90", "mp4", [], derive=_rotate(90), base="h264_faststart"))
    add(Kind("rotate270_mov", "mov", [], derive=_rotate(270), base="rot_base"))
    add(Kind("rotate180", "mp4", [], derive=_rotate(180), base="h264_bf3"))
    add(Kind("anamorphic", "mp4", [*src(size="480x360"), "-vf", "setsar=4/3", *X264, "-g", "30"]))
    add(
        Kind(
            "vfr_mp4",
            "mp4",
            [
                *src(rate="30"),
                "-vf",
                "setpts='(N+0.45*random(0))/30/TB'",
                "-fps_mode",
                "passthrough",
                *X264,
                "-bf",
                "2",
                "-g",
                "30",
                "-video_track_timescale",
                "90000",
            ],
        )
    )
    add(
        Kind(
            "vfr_mkv",
            "mkv",
            [
                *src(rate="30"),
                "-vf",
                "setpts='(N+0.45*random(0))/30/TB'",
                "-fps_mode",
                "passthrough",
                *X264,
                "-bf",
                "2",
                "-g",
                "30",
            ],
        )
    )
    add(Kind("odd_642x362", "mp4", src(size="642x362") + X264 + ["-bf", "2", "-g", "30"]))
    add(Kind("odd_641x361_444", "mp4", src(size="641x361") + X264 + ["-pix_fmt", "yuv444p", "-g", "30"]))
    add(
        Kind(
            "tiny_1x16_mjpeg",
            "avi",
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=16x16:rate=25:duration=1,crop=1:16:5:0," + NOISE,
                "-c:v",
                "mjpeg",
                "-pix_fmt",
                "yuvj444p",
            ],
        )
    )
    add(Kind("tiny_2x2_h264", "mp4", src(size="2x2", dur=1) + X264))
    add(Kind("one_frame", "mp4", [*src(), *X264, "-frames:v", "1"]))
    add(Kind("still_png", "png", [*src(noise=False), "-frames:v", "1"]))
    add(Kind("still_jpg", "jpg", [*src(noise=False), "-frames:v", "1"]))
    add(Kind("mjpeg_1frame_avi", "avi", [*src(), "-c:v", "mjpeg", "-frames:v", "1"]))
    add(
        Kind(
            "mp3_cover",
            "mp3",
            [
                "-f",
                "lavfi",
                "-i",
                "sine=d=3",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=300x300:rate=1:duration=1",
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:a",
                "libmp3lame",
                "-c:v",
                "mjpeg",
                "-frames:v",
                "1",
                "-disposition:v",
                "attached_pic",
                "-id3v2_version",
                "3",
            ],
        )
    )
    add(
        Kind(
            "m4a_cover",
            "m4a",
            [
                "-f",
                "lavfi",
                "-i",
                "sine=d=3",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=300x300:rate=1:duration=1",
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:a",
                "aac",
                "-c:v",
                "png",
                "-frames:v",
                "1",
                "-disposition:v",
                "attached_pic",
            ],
        )
    )
    add(Kind("h264_raw_annexb", "h264", src() + X264 + ["-bf", "2", "-g", "30"]))
    add(
        Kind(
            "hevc_raw",
            "hevc",
            [*src(), "-c:v", "libx265", "-preset", "fast", "-x265-params", "keyint=40:log-level=error"],
        )
    )
    add(
        Kind(
            "mpeg2_ps_vob",
            "mpg",
            [*src(), "-c:v", "mpeg2video", "-bf", "2", "-g", "15", "-b:v", "2M", "-f", "vob"],
        )
    )
    add(Kind("mpeg1_mpg", "mpg", [*src(), "-c:v", "mpeg1video", "-bf", "2", "-g", "15", "-b:v", "2M"]))
    add(Kind("wmv2_asf", "wmv", [*src(), "-c:v", "wmv2", "-g", "30", "-b:v", "1M"]))
    add(Kind("msmpeg4v3_avi", "avi", [*src(), "-c:v", "msmpeg4", "-g", "30", "-b:v", "1M"]))
    add(Kind("theora_ogv", "ogv", [*src(), "-c:v", "libtheora", "-g", "30", "-q:v", "6"]))
    add(
        Kind(
            "vp8_ogg_free",
            "mkv",
            [*src(), "-c:v", "libvpx", "-g", "40", "-b:v", "500k", "-deadline", "realtime"],
        )
    )
    add(
        Kind(
            "mxf_mpeg2",
            "mxf",
            [
                *src(size="720x576"),
                "-c:v",
                "mpeg2video",
                "-bf",
                "2",
                "-g",
                "12",
                "-b:v",
                "8M",
                "-pix_fmt",
                "yuv422p",
            ],
        )
    )
    add(
        Kind(
            "dnxhd_mov",
            "mov",
            [*src(size="1280x720", dur=1), "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p"],
        )
    )
    add(Kind("ffv1_mkv", "mkv", [*src(dur=2), "-c:v", "ffv1"]))
    add(Kind("y4m_raw", "y4m", src(dur=1)))
    add(Kind("gif", "gif", src(size="160x120", dur=2, noise=False)))
    add(Kind("h264_yuvj_fullrange", "mp4", src() + X264 + ["-pix_fmt", "yuvj420p", "-g", "30"]))
    add(
        Kind(
            "h264_bt709_tv",
            "mp4",
            [
                *src(),
                "-vf",
                "scale=out_color_matrix=bt709",
                *X264,
                "-colorspace",
                "bt709",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-g",
                "30",
            ],
        )
    )
    add(Kind("h264_res_change_ts", "ts", [], derive=_concat_sizes, base="h264_opengop_ts"))
    add(Kind("trunc_mp4_faststart", "mp4", [], derive=_truncate, base="h264_faststart", broken=True))
    add(Kind("trunc_mp4_moovend", "mp4", [], derive=_truncate, base="h264_bf3", broken=True))
    add(Kind("trunc_mkv", "mkv", [], derive=_truncate, base="h264_opengop_mkv", broken=True))
    add(Kind("trunc_ts", "ts", [], derive=_truncate, base="h264_opengop_ts", broken=True))
    add(Kind("trunc_webm_vp9", "webm", [], derive=_truncate, base="vp9_altref", broken=True))
    add(Kind("garbage_mp4", "mp4", [], derive=_garbage, base="h264_faststart", broken=True))
    add(Kind("garbage_mkv", "mkv", [], derive=_garbage, base="h264_opengop_mkv", broken=True))
    add(Kind("garbage_ts", "ts", [], derive=_garbage, base="mpeg2_ts_wrap", broken=True))
    add(Kind("garbage_avi", "avi", [], derive=_garbage, base="mpeg4_avi_bf", broken=True))
    add(Kind("zero_size", "mp4", [], derive=_zero, base="h264_bf3", broken=True))
    return k


def ff(args: list[str]) -> None:
    cmd = [FFMPEG, "-y", "-hide_banner", "-loglevel", "error", *args]
    subprocess.run(cmd, check=True, timeout=300, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------- reference decode


@dataclass
class Ref:
    pts: list[int] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)
    corrupt: list[bool] = field(default_factory=list)
    rgb: list[np.ndarray] = field(default_factory=list)
    time_base: Fraction = Fraction(1)
    start: int = 0
    stream_start: int | None = None
    duration_ms: Fraction = Fraction(0)
    error: str | None = None
    cover: bool = False

    def ms(self, i: int) -> Fraction:
        return (self.pts[i] - self.start) * self.time_base * 1000

    def index_at(self, t_ms: Fraction) -> int:
        target = self.start + Fraction(t_ms) / 1000 / self.time_base
        best = 0
        for i, p in enumerate(self.pts):
            if p <= target:
                best = i
        return best


def _display(frame: av.VideoFrame) -> np.ndarray:
    arr = frame.to_ndarray(format="rgb24")
    rot = (round(float(frame.rotation or 0) / 90) * 90) % 360
    if rot:
        arr = np.ascontiguousarray(np.rot90(arr, k=rot // 90))  # CCW, PyAV's convention
    return arr


def reference(path: Path) -> Ref:
    ref = Ref()
    try:
        container = av.open(str(path))
    except Exception as exc:
        ref.error = f"open: {type(exc).__name__}: {exc}"
        return ref
    with container:
        videos = list(container.streams.video)
        if not videos:
            ref.error = "no video stream"
            return ref
        moving = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
        stream = moving[0] if moving else videos[0]
        ref.cover = not moving
        ref.time_base = Fraction(stream.time_base or Fraction(1, 90000))
        ref.stream_start = stream.start_time
        frames: list[av.VideoFrame] = []
        last = None
        try:
            for packet in container.demux(stream):
                try:
                    got = packet.decode()
                except av.error.EOFError:
                    break
                except Exception:
                    continue
                frames.extend(got)
        except Exception as exc:
            ref.error = f"demux: {type(exc).__name__}: {exc}"
        # AVI has no presentation times: with reordered frames (H.264 in AVI, packed MPEG-4 B-frames)
        # FFmpeg 8 labels frames with their decode positions (2, 4, 3, 6, 5 …) while their DTS
        # advance; ffmpeg 5.1's CLI/ffprobe shows no pts for them and best_effort_timestamp = DTS.
        pts_seq = [f.pts for f in frames if f.pts is not None]
        dts_seq = [f.dts for f in frames if f.dts is not None]
        if sorted(pts_seq) != pts_seq and sorted(set(dts_seq)) == dts_seq and len(dts_seq) > len(frames) - 3:
            prev_dts = None
            for fr in frames:
                fr.pts = fr.dts if fr.dts is not None else (prev_dts + 1 if prev_dts is not None else 0)
                prev_dts = fr.pts
            ref.error = (ref.error or "") + " (pts from DTS: reordered AVI)"
        for fr in frames:
            if fr.pts is None:
                # No timestamps (raw elementary streams): number frames at the nominal rate, as
                # ffmpeg's CLI does.
                rate = stream.average_rate or stream.guessed_rate or 25
                step = max(1, round(1 / Fraction(rate) / ref.time_base))
                fr.pts = fr.dts if fr.dts is not None else (last + step if last is not None else 0)
            last = fr.pts
            ref.pts.append(int(fr.pts))
            ref.key.append(bool(fr.key_frame))
            ref.corrupt.append(bool(fr.is_corrupt))
            ref.rgb.append(_display(fr))
        if ref.pts:
            ref.start = ref.pts[0]
        # Program streams and raw elementary streams only estimate their duration (from PES
        # timestamps near the end, or the bit rate): vidsnap finds the real one, like this.
        fmt = container.format
        estimated = fmt.name in ("mpeg", "vob", "mpegvideo") or bool(fmt.flags & 0x80)  # NOTIMESTAMPS
        if stream.duration and not estimated:
            ref.duration_ms = Fraction(stream.duration) * ref.time_base * 1000
        elif container.duration and not estimated:
            c_start = Fraction(container.start_time or 0, 1_000_000)
            end_s = c_start + Fraction(container.duration, 1_000_000)
            ref.duration_ms = max(Fraction(0), (end_s - ref.start * ref.time_base) * 1000)
        if not ref.duration_ms and ref.pts:
            # no declared duration (raw streams, stills) or an estimate: up to the last frame's end
            last_dur = frames[-1].duration or round(1 / Fraction(stream.guessed_rate or 25) / ref.time_base)
            ref.duration_ms = (ref.pts[-1] - ref.start + int(last_dur)) * ref.time_base * 1000
    return ref


def ffprobe_count(path: Path) -> int | None:
    try:
        out = (
            subprocess.run(
                [
                    FFPROBE,
                    "-v",
                    "error",
                    "-select_streams",
                    "v:0",
                    "-count_frames",
                    "-show_entries",
                    "stream=nb_read_frames",
                    "-of",
                    "csv=p=0",
                    str(path),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            .stdout.strip()
            .splitlines()
        )
        return int(out[0].strip().rstrip(",")) if out and out[0].strip().rstrip(",").isdigit() else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


# ---------------------------------------------------------------------------- times and comparison


def pick_times(ref: Ref) -> list[int]:
    n = len(ref.pts)
    if n == 0:
        return [0, 1000]
    times: set[int] = {0}
    ms = [ref.ms(i) for i in range(n)]
    keys = [i for i in range(n) if ref.key[i]]
    for ki in keys[1:3]:
        t = ms[ki]
        times.update({math.ceil(t), math.ceil(t) - 1, math.floor(t) - 1})
        mid = (ki + (keys[keys.index(ki) - 1])) // 2
        times.add(math.ceil(ms[mid]))
    for frac in (0.23, 0.61):
        i = min(n - 1, max(1, int(n * frac)))
        t = ms[i]
        times.update({math.ceil(t), math.ceil(t) - 1, math.ceil(t) + 1})
    last = ms[-1]
    times.update({math.floor(last), math.ceil(last), math.ceil(ref.duration_ms) + 1000})
    return sorted(x for x in times if x >= 0)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        img = Image.fromarray(b).resize((a.shape[1], a.shape[0]), Image.BILINEAR)
        b = np.asarray(img)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def load_png(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def best_match(out: np.ndarray, ref: Ref, expect: int, radius: int = 3) -> tuple[int, float, float]:
    """(index of the best-matching frame near ``expect``, its MAD, MAD against ``expect``)."""
    lo, hi = max(0, expect - radius), min(len(ref.pts), expect + radius + 1)
    scores = {i: mad(out, ref.rgb[i]) for i in range(lo, hi)}
    best = min(scores, key=lambda i: scores[i])
    return best, scores[best], scores[expect]


def run_cli(path: Path, process: str, out: Path) -> tuple[dict[str, Any] | None, str, float]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(VIDSNAP), "run", str(path), process, "--out", str(out), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "HANG (timeout)", time.perf_counter() - t0
    dt = time.perf_counter() - t0
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None, f"rc={proc.returncode} {proc.stderr.strip()[-200:]}", dt
    if doc.get("Status") != "Succeeded":
        return doc, f"{doc.get('Code')}: {doc.get('Message', '')[:120]}", dt
    return doc, "", dt


def report_ms(t: Fraction) -> float:
    return float(int(t)) if t.denominator == 1 else round(float(t), 3)


@dataclass
class Result:
    kind: str
    lines: list[str] = field(default_factory=list)
    bad: int = 0
    checks: int = 0
    slow: list[str] = field(default_factory=list)
    summary: str = ""


def check_kind(kind: Kind, path: Path, work: Path) -> Result:
    res = Result(kind.name)
    ref = reference(path)
    count = ffprobe_count(path) if path.stat().st_size else None
    meta = (
        f"frames={len(ref.pts)} ffprobe={count} tb={ref.time_base} start={ref.start} "
        f"stream.start_time={ref.stream_start} dur={float(ref.duration_ms):.1f}ms keys={sum(ref.key)} "
        f"corrupt={sum(ref.corrupt)}" + (f" ref-error={ref.error}" if ref.error else "")
    )
    res.lines.append(meta)
    if count is not None and len(ref.pts) != count and not ref.cover:
        res.lines.append(f"  NOTE: PyAV sequential decode gives {len(ref.pts)} frames, ffprobe {count}")
    if ref.pts and sorted(ref.pts) != ref.pts:
        res.lines.append("  NOTE: sequential decode pts not monotonic")
    # --- single frames
    for t in pick_times(ref):
        out = work / f"{kind.name}_snap_{t}"
        doc, err, dt = run_cli(path, f"video/snapshot,t_{t},f_png", out)
        res.checks += 1
        if dt > SLOW_S:
            res.slow.append(f"snapshot t={t}: {dt:.1f}s")
        if err:
            tag = "ERR" if not ref.pts or kind.broken else "FAIL"
            if tag == "FAIL":
                res.bad += 1
            res.lines.append(f"  t={t:>6}: {tag} {err} ({dt:.2f}s)")
            continue
        assert doc is not None
        o = doc["Outputs"][0]
        img = load_png(o["URI"])
        if not ref.pts:
            res.lines.append(f"  t={t:>6}: output {img.shape} but the reference decoded nothing")
            res.bad += 1
            continue
        exp = ref.index_at(Fraction(t))
        if ref.cover:
            exp = 0
        best, best_mad, exp_mad = best_match(img, ref, exp)
        exp_ms = report_ms(ref.ms(exp)) if not ref.cover else 0
        ok_time = ref.cover or math.isclose(float(o["TimeMs"]), exp_ms, abs_tol=0.0011)
        ok = exp_mad <= MAD_OK and (best == exp or abs(best_mad - exp_mad) < 0.5) and ok_time
        if not ok:
            res.bad += 1
        res.lines.append(
            f"  t={t:>6}: {'ok ' if ok else 'BAD'} exp#{exp} ({exp_ms}ms) got TimeMs={o['TimeMs']} "
            f"mad={exp_mad:.2f} best#{best} ({best_mad:.2f}) {img.shape[1]}x{img.shape[0]} {dt:.2f}s"
        )
    # --- m_fast: the keyframe at or before t
    if ref.pts and not ref.cover and not kind.broken:
        n = len(ref.pts)
        for t in sorted({0, math.ceil(ref.ms(n // 2)), math.ceil(ref.ms(min(n - 1, 3 * n // 4))) + 1}):
            out = work / f"{kind.name}_fast_{t}"
            doc, err, dt = run_cli(path, f"video/snapshot,t_{t},m_fast,f_png", out)
            res.checks += 1
            if dt > SLOW_S:
                res.slow.append(f"m_fast t={t}: {dt:.1f}s")
            if err or doc is None:
                res.bad += 1
                res.lines.append(f"  fast t={t:>6}: FAIL {err} ({dt:.2f}s)")
                continue
            o = doc["Outputs"][0]
            target = ref.start + Fraction(t) / 1000 / ref.time_base
            keys = [i for i in range(n) if ref.key[i] and ref.pts[i] <= target]
            exp = max(keys, key=lambda i: ref.pts[i]) if keys else 0
            img = load_png(o["URI"])
            best, best_mad, exp_mad = best_match(img, ref, exp)
            exp_ms = report_ms(ref.ms(exp))
            ok = exp_mad <= MAD_OK and math.isclose(float(o["TimeMs"]), exp_ms, abs_tol=0.0011)
            if not ok:
                res.bad += 1
            res.lines.append(
                f"  fast t={t:>6}: {'ok ' if ok else 'BAD'} exp key#{exp} ({exp_ms}ms) "
                f"got TimeMs={o['TimeMs']} mad={exp_mad:.2f} best#{best} ({best_mad:.2f}) {dt:.2f}s"
            )
    # --- async modes
    if ref.pts and not ref.cover:
        for proc_s in (
            "video/snapshots,f_png,inter_500",
            "video/snapshots,f_png,m_key",
            "video/snapshots,f_png,m_avg,num_7",
        ):
            out = work / f"{kind.name}_async_{proc_s.split(',')[-1]}"
            doc, err, dt = run_cli(path, proc_s, out)
            res.checks += 1
            if dt > SLOW_S:
                res.slow.append(f"{proc_s}: {dt:.1f}s")
            if err:
                if not kind.broken:
                    res.bad += 1
                res.lines.append(f"  {proc_s}: {'ERR' if kind.broken else 'FAIL'} {err} ({dt:.2f}s)")
                continue
            assert doc is not None
            got = [float(o["TimeMs"]) for o in doc["Outputs"]]
            exp_idx = expected_async(ref, proc_s)
            exp = [report_ms(ref.ms(i)) for i in exp_idx]
            pix_bad = []
            for o in doc["Outputs"]:
                # pixels: the output must be the frame its TimeMs names
                cands = [
                    i
                    for i in range(len(ref.pts))
                    if math.isclose(report_ms(ref.ms(i)), float(o["TimeMs"]), abs_tol=0.0011)
                ]
                if not cands:
                    pix_bad.append(f"{o['TimeMs']}:no-such-frame")
                    continue
                img = load_png(o["URI"])
                b, bm, em = best_match(img, ref, cands[0])
                if em > MAD_OK or (b != cands[0] and abs(bm - em) >= 0.5):
                    pix_bad.append(f"{o['TimeMs']}:mad={em:.1f},best#{b}")
            same = got == exp
            # a difference only in the last item can come from the duration's definition
            tail = not same and (got[:-1] == exp[:-1] or got == exp[:-1] or got[:-1] == exp)
            ok = (same or tail) and not pix_bad
            if not ok:
                res.bad += 1
            res.lines.append(
                f"  {proc_s.split(',', 2)[-1]}: {'ok ' if ok else 'BAD'}{' (tail differs)' if tail else ''} "
                f"n={len(got)} exp_n={len(exp)} {dt:.2f}s"
                + ("" if same else f"\n      got={got[:14]}\n      exp={exp[:14]}")
                + (f" pixels: {pix_bad[:5]}" if pix_bad else "")
            )
    res.summary = "ok" if res.bad == 0 else f"{res.bad}/{res.checks} BAD"
    if kind.broken:
        res.summary = ("handled" if res.bad == 0 else f"{res.bad}/{res.checks} BAD") + " (broken input)"
    return res


def expected_async(ref: Ref, proc: str) -> list[int]:
    n = len(ref.pts)
    idx: list[int] = []
    if "m_key" in proc:
        idx = [i for i in range(n) if ref.key[i]]
    elif "inter_500" in proc:
        t = Fraction(0)
        while t < ref.duration_ms:
            idx.append(ref.index_at(t))
            t += 500
    elif "m_avg" in proc:
        idx = [ref.index_at(i * ref.duration_ms / 7) for i in range(7)]
    out: list[int] = []
    for i in idx:
        if not out or ref.pts[out[-1]] != ref.pts[i]:
            out.append(i)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run kinds whose name contains this")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if not Path(FFMPEG).exists():
        print("ffmpeg CLI not found: this cross-check needs it to make media", file=sys.stderr)
        return 2
    all_kinds = kinds()
    if args.list:
        print("\n".join(k.name for k in all_kinds))
        return 0
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vidsnap-cc-"))
    media = work / "media"
    media.mkdir(parents=True, exist_ok=True)
    by_name = {k.name: k for k in all_kinds}
    chosen = [k for k in all_kinds if not args.only or any(o in k.name for o in args.only)]
    results: list[Result] = []
    for kind in chosen:
        path = media / f"{kind.name}.{kind.ext}"
        try:
            if not path.exists():
                if kind.base:
                    base = by_name[kind.base]
                    bpath = media / f"{base.name}.{base.ext}"
                    if not bpath.exists():
                        ff([*base.args, str(bpath)])
                    assert kind.derive is not None
                    kind.derive(bpath, path)
                else:
                    ff([*kind.args, str(path)])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            r = Result(kind.name, summary=f"SKIPPED (ffmpeg could not make it: {exc})")
            results.append(r)
            print(f"== {kind.name}: {r.summary}", flush=True)
            continue
        r = check_kind(kind, path, work / "out")
        results.append(r)
        print(f"== {kind.name} ({path.stat().st_size} B): {r.summary}", flush=True)
        for line in r.lines:
            print(line, flush=True)
        for s in r.slow:
            print(f"  SLOW {s}", flush=True)
    print("\n== matrix")
    for r in results:
        print(f"{r.kind:<22} {r.summary}{'  SLOW: ' + '; '.join(r.slow) if r.slow else ''}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r.bad for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

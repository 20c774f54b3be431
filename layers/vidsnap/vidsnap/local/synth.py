"""Synthesise test, demo and benchmark media with PyAV (no ffmpeg CLI needed).

Every video frame is identifiable by its pixels: the frame index is drawn as 16 big binary blocks
(two rows of eight) across the top of the picture, in luma levels far apart (16 / 235) so that the
index survives lossy coding; :func:`read_counter` reads it back from a decoded frame. Below the
counter a sawtooth gradient scrolls sideways (moving content, so a difference hash sees change), and
each "scene" (see ``scene_cuts``) uses a different base pattern and tint, so a cut changes the
picture abruptly.

Frames are generated cheaply: the base pattern of each scene is precomputed at twice the width and
a frame is a slice of it plus sixteen block fills, so a 10-minute 1080p file costs about what the
encoder costs (``preset=ultrafast`` by default for big pictures).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "COUNTER_BITS",
    "SynthInfo",
    "make_audio_only",
    "make_audio_with_cover",
    "make_video",
    "read_counter",
]

#: Number of bits of the frame counter drawn into each frame (frames 0..65535 are identifiable).
COUNTER_BITS = 16
_COLS = 8
_ROWS = COUNTER_BITS // _COLS
_LO, _HI = 16, 235

_FORMATS_BY_SUFFIX = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".m4a": "ipod",
    ".mka": "matroska",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".avi": "avi",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".opus": "ogg",
    ".wav": "wav",
    ".flv": "flv",
    ".m1v": "mpeg1video",
    ".m2v": "mpeg2video",
    ".mpv": "mpeg2video",
    ".mpg": "mpeg",
    ".vob": "vob",
}


@dataclass
class SynthInfo:
    """What :func:`make_video` wrote: enough for a test to know the truth without decoding."""

    path: str
    codec: str
    container: str
    width: int
    height: int
    fps: Fraction
    #: Presentation time of each frame, seconds, relative to the first frame (index = counter value).
    times_s: list[Fraction]
    #: Presentation time of each keyframe packet (seconds, relative to the first frame).
    keyframe_times_s: list[Fraction]
    #: Absolute presentation time of the first frame, seconds (``start_time_s`` as encoded).
    start_time_s: Fraction
    rotation: int
    scene_cuts_s: list[float] = field(default_factory=list)
    has_audio: bool = False
    pix_fmt: str = "yuv420p"

    @property
    def frame_count(self) -> int:
        """Number of video frames written."""
        return len(self.times_s)

    @property
    def duration_s(self) -> Fraction:
        """Presentation duration: last frame time plus one nominal frame interval."""
        return self.times_s[-1] + 1 / self.fps if self.times_s else Fraction(0)


def _container_format(path: str, container: str | None) -> str:
    if container:
        return container
    suffix = Path(path).suffix.lower()
    try:
        return _FORMATS_BY_SUFFIX[suffix]
    except KeyError:
        raise ValueError(f"cannot infer a container from {suffix!r}; pass container=") from None


def _base_patterns(width: int, height: int, scenes: int) -> list[npt.NDArray[np.uint8]]:
    """One luma pattern per scene, twice the width so a frame is a horizontal slice of it."""
    x = np.arange(2 * width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    saw = (x % width) / width  # 0..1 sawtooth, one period per frame width
    out = []
    for k in range(scenes):
        kind = k % 4
        if kind == 0:  # rising ramp left to right
            img = np.broadcast_to(saw, (height, 2 * width))
        elif kind == 1:  # falling ramp: every dhash bit flips relative to kind 0
            img = np.broadcast_to(1.0 - saw, (height, 2 * width))
        elif kind == 2:  # one smooth hill across the width
            img = np.broadcast_to(0.5 - 0.5 * np.cos(x * (2 * math.pi / width)), (height, 2 * width))
        else:  # a smooth valley, darker towards the bottom
            img = (0.5 + 0.5 * np.cos(x * (2 * math.pi / width)))[None, :] * (1 - 0.5 * y / height)
        out.append(np.ascontiguousarray((_LO + img * (_HI - _LO)).astype(np.uint8)))
    return out


def _counter_geometry(width: int, height: int) -> tuple[int, int]:
    """(block width, block height) of the counter blocks for a picture size."""
    return width // _COLS, max(4, height // 8)


def _draw_counter(luma: npt.NDArray[np.uint8], index: int, bw: int, bh: int) -> None:
    for bit in range(COUNTER_BITS):
        r, c = divmod(bit, _COLS)
        luma[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = _HI if (index >> bit) & 1 else _LO


def read_counter(frame: av.VideoFrame) -> int:
    """Read back the frame index that :func:`make_video` drew into a (coded, unrotated) frame."""
    gray = frame.to_ndarray(format="gray")
    h, w = gray.shape
    bw, bh = _counter_geometry(w, h)
    value = 0
    for bit in range(COUNTER_BITS):
        r, c = divmod(bit, _COLS)
        # The block centre: away from edges where coding ringing and chroma bleed live.
        block = gray[r * bh + bh // 4 : (r + 1) * bh - bh // 4, c * bw + bw // 4 : (c + 1) * bw - bw // 4]
        if float(block.mean()) > (_LO + _HI) / 2:
            value |= 1 << bit
    return value


def _frame_durations(n: int, vfr: bool) -> list[int]:
    """Frame durations in units of 1/6 nominal frame interval (VFR cycles through uneven values)."""
    if not vfr:
        return [6] * n
    cycle = [6, 3, 12, 6, 9, 2, 18]  # 1, 0.5, 2, 1, 1.5, 1/3, 3 frame intervals
    return [cycle[i % len(cycle)] for i in range(n)]


def _codec_options(
    codec: str, *, gop: int, bframes: int, open_gop: bool, big: bool, preset: str | None
) -> dict[str, str]:
    opts: dict[str, str] = {}
    if codec in ("libx264", "h264"):
        opts["preset"] = preset or ("ultrafast" if big else "veryfast")
        if bframes:
            # ultrafast disables B-frames; keep them (and CABAC off is fine) when asked for.
            opts["bframes"] = str(bframes)
        params = [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if bframes:
            params.append(f"bframes={bframes}")
        if open_gop:
            params.append("open-gop=1")
        opts["x264-params"] = ":".join(params)
    elif codec in ("libx265", "hevc"):
        opts["preset"] = preset or "ultrafast"
        params = [
            f"keyint={gop}",
            f"min-keyint={gop}",
            "scenecut=0",
            f"bframes={bframes}",
            f"open-gop={1 if open_gop else 0}",
            "log-level=error",
        ]
        opts["x265-params"] = ":".join(params)
    elif codec in ("libvpx-vp9", "libvpx"):
        opts.update({"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "row-mt": "1"})
        opts["crf"] = "30"
        opts["b"] = "0"
    elif codec in ("mpeg4", "libxvid"):
        opts["qscale"] = "3"
    elif codec == "cinepak":
        opts["g"] = str(gop)  # its keyframe interval comes from the option, not gop_size
    return opts


def _open_output(path: str, fmt: str, faststart: bool) -> av.container.OutputContainer:
    options: dict[str, str] = {}
    if faststart and fmt in ("mp4", "mov", "ipod"):
        options["movflags"] = "+faststart"
    return av.open(path, mode="w", format=fmt, options=options)


def make_video(
    path: str | os.PathLike[str],
    *,
    codec: str = "libx264",
    container: str | None = None,
    duration_s: float | Fraction = 2.0,
    fps: int | Fraction = 25,
    width: int = 320,
    height: int = 180,
    gop: int = 25,
    bframes: int = 2,
    pix_fmt: str | None = None,
    rotation: int = 0,
    start_time_s: float | Fraction = 0,
    vfr: bool = False,
    open_gop: bool = False,
    audio: bool = False,
    faststart: bool = True,
    pattern: str = "counter",
    scene_cuts: Sequence[float] = (),
    preset: str | None = None,
) -> SynthInfo:
    """Write a synthetic video whose every frame carries its index in pixels.

    ``container`` defaults from the file suffix. ``rotation`` (CCW degrees) is written as a display
    matrix. ``start_time_s`` offsets all timestamps. ``vfr`` gives frames uneven durations (the
    average rate stays near ``fps``). ``open_gop`` asks x264/x265 for open GOPs (recovery-point
    I-frames that leading B-frames reference across). ``faststart=False`` leaves the MP4/MOV moov
    atom at the end (the default layout of the muxer). ``scene_cuts`` are times (s) at which the
    base picture changes abruptly. ``pattern`` is reserved: only ``"counter"`` exists.
    """
    if pattern != "counter":
        raise ValueError(f"unknown pattern {pattern!r}")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (4:2:0 chroma)")
    path = os.fspath(path)
    fmt = _container_format(path, container)
    fps = Fraction(fps)
    nominal = 1 / fps
    # 1/90000 represents the nominal interval and sixths of it exactly for common rates; MPEG-4
    # Part 2 forbids time base denominators above 65535, so it counts sixths of frames directly.
    tb = Fraction(1, 90000)
    if fmt == "avi":
        # AVI stores no timestamps, only a chunk per time-base tick: a fine time base would
        # write empty chunks between frames. One tick per frame; no VFR in AVI.
        if vfr:
            raise ValueError("AVI cannot carry variable frame durations")
        tb = nominal
    elif fmt == "ogg":
        # Ogg stores a video frame's time as a frame count (granule): one tick per frame.
        if vfr:
            raise ValueError("Ogg video cannot carry variable frame durations")
        tb = nominal
    elif codec in ("mpeg1video", "mpeg2video"):
        # MPEG-1/2 video codes only the standard frame rates: its time base is one frame.
        if vfr:
            raise ValueError("MPEG-1/2 video cannot carry variable frame durations")
        tb = nominal
    elif codec in ("mpeg4", "libxvid") or (nominal / 6) % tb:
        tb = nominal / 6
        if tb.numerator != 1:
            tb = Fraction(1, math.ceil(1 / tb))
    sixth = nominal / 6 / tb  # ticks per sixth of a frame interval (a fraction only for AVI)
    start_ticks = round(Fraction(start_time_s) / tb)

    total = Fraction(duration_s)
    # Frame count: frames until the accumulated duration reaches the requested duration.
    durations: list[int] = []
    acc = Fraction(0)
    cycle_source = _frame_durations(max(1, math.ceil(total * fps * 3) + 8), vfr)
    for d in cycle_source:
        if acc >= total:
            break
        durations.append(d)
        acc += d * nominal / 6
    n = len(durations)
    pts: list[int] = []
    t = 0
    for d in durations:
        pts.append(start_ticks + round(t * sixth))
        t += d

    out = _open_output(path, fmt, faststart)
    try:
        big = width * height >= 1280 * 720
        vopts = _codec_options(codec, gop=gop, bframes=bframes, open_gop=open_gop, big=big, preset=preset)
        vs = out.add_stream(codec, rate=fps, options=vopts)
        assert isinstance(vs, av.VideoStream)
        vs.width = width
        vs.height = height
        if pix_fmt:
            vs.pix_fmt = pix_fmt
        elif codec in (
            "libx264",
            "libx265",
            "libvpx-vp9",
            "mpeg4",
            "h264",
            "hevc",
            "mpeg1video",
            "mpeg2video",
        ):
            vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = tb
        vs.codec_context.framerate = fps
        vs.gop_size = gop
        vs.max_b_frames = bframes
        if rotation % 360:
            vs.set_display_rotation(float(rotation % 360))
        astream: Any = None
        if audio:
            acodec = "libopus" if fmt in ("webm", "ogg") else ("mp3" if fmt == "avi" else "aac")
            astream = out.add_stream(acodec, rate=48000)
            astream.layout = "stereo"
        scene_cuts = sorted(float(s) for s in scene_cuts)
        # Decimal seconds as exact rationals: 3.2 s means 16/5, not the binary float above it.
        cut_times = [Fraction(str(c)) for c in scene_cuts]
        bases = _base_patterns(width, height, len(scene_cuts) + 1)
        tints = [(128 + 40 * math.cos(k * 2.1), 128 + 40 * math.sin(k * 2.1)) for k in range(len(bases))]
        chroma = []
        for u, v in tints:
            cu = np.full((height // 2) * (width // 2), int(u), dtype=np.uint8)
            cv = np.full((height // 2) * (width // 2), int(v), dtype=np.uint8)
            chroma.append(np.concatenate([cu, cv]).reshape(height // 2, width))
        bw, bh = _counter_geometry(width, height)
        speed = max(1, width // 100)
        buf = np.empty((height * 3 // 2, width), dtype=np.uint8)
        key_times: list[Fraction] = []
        audio_pts = 0
        a_frame_samples = 960 if astream is not None and astream.codec_context.name == "libopus" else 1024
        phase = 0.0

        def mux(packets: list[Any]) -> None:
            for p in packets:
                if p.stream is vs and p.is_keyframe and p.pts is not None and p.time_base is not None:
                    key_times.append(p.pts * p.time_base - start_ticks * tb)
            out.mux(packets)

        for i in range(n):
            rel = (pts[i] - start_ticks) * tb
            scene = sum(1 for c in cut_times if rel >= c)
            off = (i * speed) % width
            buf[:height] = bases[scene][:, off : off + width]
            buf[height:] = chroma[scene]
            _draw_counter(buf[:height], i, bw, bh)
            frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            frame.pts = pts[i]
            frame.time_base = tb
            mux(vs.encode(frame))
            if astream is not None:
                # Keep audio up to the video time so the muxer can interleave without buffering all.
                until = (rel + nominal) * 48000
                while audio_pts < until:
                    t_idx = np.arange(a_frame_samples) + audio_pts
                    tone = (0.2 * np.sin(2 * math.pi * 440 * t_idx / 48000 + phase)).astype(np.float32)
                    samples = np.stack([tone, tone])
                    af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                    af.sample_rate = 48000
                    af.pts = audio_pts + round(Fraction(start_ticks) * tb * 48000)
                    af.time_base = Fraction(1, 48000)
                    out.mux(astream.encode(af))
                    audio_pts += a_frame_samples
        mux(vs.encode(None))
        if astream is not None:
            out.mux(astream.encode(None))
    finally:
        out.close()

    times = [(p - start_ticks) * tb for p in pts]
    return SynthInfo(
        path=path,
        codec=codec,
        container=fmt,
        width=width,
        height=height,
        fps=fps,
        times_s=times,
        keyframe_times_s=sorted(key_times),
        start_time_s=start_ticks * tb,
        rotation=rotation % 360,
        scene_cuts_s=list(scene_cuts),
        has_audio=audio,
        pix_fmt=pix_fmt or "yuv420p",
    )


def remux(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, format: str | None = None) -> str:
    """Copy the first video stream of ``src`` into another container (``format``, or guessed from
    ``dst``'s extension) without re-encoding, as ``ffmpeg -c copy`` does: an MPEG-TS or a raw
    elementary stream of the same pictures, as recorders and remuxers write them. Returns ``dst``."""
    with av.open(os.fspath(src)) as inp, av.open(os.fspath(dst), "w", format=format) as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        for packet in inp.demux(s_in):
            if packet.size:
                packet.stream = s_out
                out.mux(packet)
    return os.fspath(dst)


def _write_tone(out: av.container.OutputContainer, codec: str, seconds: float, stream: Any = None) -> None:
    if stream is None:
        stream = out.add_stream(codec, rate=44100)
        stream.layout = "stereo"
    samples_per = 1152 if codec in ("mp3", "libmp3lame") else 1024
    total = int(seconds * 44100)
    pos = 0
    while pos < total:
        t_idx = np.arange(samples_per) + pos
        tone = (0.2 * np.sin(2 * math.pi * 330 * t_idx / 44100)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        af.sample_rate = 44100
        af.pts = pos
        af.time_base = Fraction(1, 44100)
        out.mux(stream.encode(af))
        pos += samples_per
    out.mux(stream.encode(None))


def _audio_codec_for(fmt: str) -> str:
    return {"mp3": "libmp3lame", "ogg": "libopus", "wav": "pcm_s16le"}.get(fmt, "aac")


def make_audio_only(path: str | os.PathLike[str], *, seconds: float = 1.0) -> str:
    """Write an audio-only file (format from the suffix: .m4a/.mp4 AAC, .mp3, .ogg, .wav)."""
    path = os.fspath(path)
    fmt = _container_format(path, None)
    out = av.open(path, mode="w", format=fmt)
    try:
        codec = _audio_codec_for(fmt)
        if codec == "libmp3lame" and "libmp3lame" not in av.codecs_available:
            codec = "mp3"
        _write_tone(out, codec, seconds)
    finally:
        out.close()
    return path


def _cover_bytes(width: int, height: int, fmt: str) -> bytes:
    """A recognisable cover image (diagonal split, magenta over green) encoded as PNG or JPEG."""
    yy, xx = np.mgrid[0:height, 0:width]
    upper = xx * height > yy * width
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[upper] = (220, 40, 200)
    rgb[~upper] = (30, 200, 60)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def make_audio_with_cover(
    path: str | os.PathLike[str], *, seconds: float = 1.0, cover_size: tuple[int, int] = (200, 200)
) -> str:
    """Write an audio file (.m4a/.mp4 AAC or .mp3) with an attached picture (cover art).

    The cover is a second stream, added with ``add_mux_stream`` (no encoder: the image bytes are
    muxed as its one packet) and the ``attached_pic`` disposition; FFmpeg writes it as an MP4
    ``covr`` atom (PNG) or an ID3v2 ``APIC`` frame (JPEG). The muxers need the picture's
    dimensions on the stream. Matroska is not supported here: FFmpeg's Matroska muxer does not turn
    an attached-pic stream into an attachment. Returns the path.
    """
    path = os.fspath(path)
    fmt = _container_format(path, None)
    if fmt == "ipod":
        fmt = "mp4"  # the ipod muxer refuses image codecs; .m4a from the mp4 muxer is fine
    if fmt not in ("mp4", "mov", "mp3"):
        raise ValueError(f"cover art is supported for .m4a/.mp4/.mov/.mp3, not {fmt!r}")
    options = {"id3v2_version": "3"} if fmt == "mp3" else {}
    out = av.open(path, mode="w", format=fmt, options=options)
    try:
        w, h = cover_size
        pic_codec = "mjpeg" if fmt == "mp3" else "png"
        data = _cover_bytes(w, h, "JPEG" if pic_codec == "mjpeg" else "PNG")
        codec = _audio_codec_for(fmt)
        if codec == "libmp3lame" and "libmp3lame" not in av.codecs_available:
            codec = "mp3"
        audio: Any = out.add_stream(codec, rate=44100)
        audio.layout = "stereo"
        cover = out.add_mux_stream(pic_codec, width=w, height=h)
        cover.disposition = av.stream.Disposition.attached_pic
        cover.time_base = Fraction(1, 90000)
        out.start_encoding()
        packet = av.Packet(data)
        packet.stream = cover
        packet.pts = packet.dts = 0
        packet.time_base = Fraction(1, 90000)
        out.mux(packet)
        _write_tone(out, codec, seconds, stream=audio)
    finally:
        out.close()
    return path

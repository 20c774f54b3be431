"""Regressions found by bench/crosscheck.py (real-world media from other encoders), re-made with PyAV.

Each test synthesises the smallest media that shows the problem (vidsnap.local.synth or PyAV directly;
never the ffmpeg CLI) and checks vidsnap's answer against a plain sequential decode.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidsnap.core.decode import Video
from vidsnap.core.plan import Selection
from vidsnap.core.select import select_frames
from vidsnap.local import synth


def _sequential(path: Path) -> tuple[list[int], list[int], Fraction, int]:
    """(pts of every frame, pts of the keyframes, time base, start pts) from a plain decode."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(int(f.pts), bool(f.key_frame)) for f in c.decode(s)]
        tb = Fraction(s.time_base)
    pts = [p for p, _ in frames]
    return pts, [p for p, k in frames if k], tb, pts[0]


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_open_gop_h264_keyframes_in_order(tmp_path: Path, suffix: str) -> None:
    """x264 open GOP: recovery-point I-frames, POC not reset between them.

    Decoding only keyframes, FFmpeg's H.264 decoder cannot infer the order-count MSBs and returned
    them reversed (and dropped the last): m_key gave one frame, m_fast the wrong keyframe.
    """
    info = synth.make_video(
        tmp_path / f"open{suffix}", open_gop=True, gop=25, bframes=2, duration_s=3, width=160, height=90
    )
    _, keys, tb, start = _sequential(info.path)
    assert len(keys) >= 3  # recovery points are keyframes for the decoder
    with Video(info.path, bulk=True) as v:
        assert [p.pts for p in v.keyframes()] == keys
    for t_ms in (0, 500, 1100, 2100, 2900):
        target = start + Fraction(t_ms, 1000) / tb
        expected = max(k for k in keys if k <= target)
        with Video(info.path) as v:
            assert v.frame_at(t_ms, exact=False).pts == expected, t_ms
    # ascending fast requests on one Video (frames_at) too
    with Video(info.path) as v:
        got = [p.pts for p in v.frames_at([Fraction(t) for t in (0, 500, 1100, 2100, 2900)], exact=False)]
    assert got == [
        max(k for k in keys if k <= start + Fraction(t, 1000) / tb) for t in (0, 500, 1100, 2100, 2900)
    ]


def _still(path: Path, codec: str) -> Path:
    """One picture in an image file (FFmpeg's image2 muxer), as cameras and users upload them."""
    fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, fmt
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, :32] = (200, 30, 30)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=fmt)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize(("name", "codec"), [("still.jpg", "mjpeg"), ("still.png", "png")])
def test_still_image_every_mode(tmp_path: Path, name: str, codec: str) -> None:
    """A JPEG still returned nothing after a seek (image2 cannot seek back): m_fast and m_key failed.
    A PNG still has no duration: interval and average selections found nothing ("past the end")."""
    path = _still(tmp_path / name, codec)
    with Video(path) as v:
        assert v.frame_at(0).pts == 0
        assert v.frame_at(0, exact=False).pts == 0
        assert v.frame_at(5000, exact=False).pts == 0
        assert v.duration_ms > 0
    with open(path, "rb") as fh, Video(fh, bulk=True) as v:  # a file object reopens too
        assert [p.pts for p in v.keyframes()] == [0]
    for sel in (
        Selection(mode="inter", interval_ms=Fraction(500)),
        Selection(mode="avg", num=7),
        Selection(mode="key"),
        Selection(mode="inter", interval_ms=Fraction(500), exact=False),
    ):
        with Video(path, bulk=True) as v:
            picks = list(select_frames(v, sel, max_frames=10, warnings=[]))
        assert [p.pts for p in picks] == [0], sel


def _raw_annexb(tmp_path: Path, codec: str) -> tuple[Path, synth.SynthInfo]:
    """The same clip as a raw elementary stream (no container: no timestamps, no index, no
    duration, no seeking), as cameras, recorders and RTSP dumps write them."""
    info = synth.make_video(
        tmp_path / "src.mkv", codec=codec, gop=12, bframes=2, duration_s=2, width=160, height=90
    )
    raw = tmp_path / f"clip.{'h264' if codec == 'libx264' else 'hevc'}"
    synth.remux(info.path, raw, format=raw.suffix[1:])
    return raw, info


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_raw_elementary_stream(tmp_path: Path, codec: str) -> None:
    """Raw H.264/HEVC: seeking failed with EPERM (m_fast, m_key, any backwards request), the
    duration was unknown (interval/average selections found nothing), and keyframes decoded alone
    were numbered 0, 40, 80 ms … by the nominal-rate numbering."""
    raw, info = _raw_annexb(tmp_path, codec)
    n = info.frame_count  # 25 fps: frame i is shown from 40·i ms
    keys = [round(t * 25) for t in info.keyframe_times_s]
    with Video(raw) as v:
        assert v.duration_ms == 40 * n
        for t in (1000, 400, 0, 1999, 5000):  # backwards too
            p = v.frame_at(t)
            assert synth.read_counter(p.frame) == min(t // 40, n - 1), t
            assert p.time_ms == 40 * min(t // 40, n - 1)
        for t in (1000, 100):
            p = v.frame_at(t, exact=False)
            assert synth.read_counter(p.frame) == max(k for k in keys if k <= t // 40)
    with Video(raw, bulk=True) as v:
        got = [(p.time_ms, synth.read_counter(p.frame)) for p in v.keyframes()]
    assert got == [(40 * k, k) for k in keys]
    with Video(raw, bulk=True) as v:
        picks = list(
            select_frames(v, Selection(mode="inter", interval_ms=Fraction(500)), max_frames=10, warnings=[])
        )
    assert [synth.read_counter(p.frame) for p in picks] == [0, 12, 25, 37]


def test_avi_with_b_frames_uses_dts(tmp_path: Path) -> None:
    """AVI stores no presentation times: with B-frames (H.264 in AVI here; MPEG-4 with packed
    B-frames, DivX/Xvid, behaves the same) FFmpeg 8 labels decoded frames with their decode
    positions (pts 1, 2, 3, 5, 4, 7 …), so the frame at t was often its neighbour. Their DTS advance
    one per displayed frame (FFmpeg's best-effort timestamp, what the ffmpeg CLI shows)."""
    info = synth.make_video(
        tmp_path / "b.avi", codec="libx264", bframes=2, gop=12, duration_s=2, width=160, height=90
    )
    n = info.frame_count
    times = (0, 40, 119, 120, 160, 200, 480, 1000, 1999, 5000)
    with Video(info.path) as v:
        got = [(synth.read_counter(p.frame), p.time_ms) for p in (v.frame_at(t) for t in times)]
    assert got == [(min(t // 40, n - 1), 40 * min(t // 40, n - 1)) for t in times]
    with Video(info.path) as v:  # backwards, and keyframes
        assert [synth.read_counter(v.frame_at(t).frame) for t in (1999, 520, 80)] == [n - 1, 13, 2]
        assert [synth.read_counter(v.frame_at(t, exact=False).frame) for t in (1999, 520, 80)] == [48, 12, 0]
    with Video(info.path, bulk=True) as v:
        assert [(p.time_ms, synth.read_counter(p.frame)) for p in v.keyframes()] == [
            (40 * k, k) for k in range(0, n, 12)
        ]
    with Video(info.path, bulk=True) as v:
        assert [synth.read_counter(p.frame) for p in v.every_frame()] == list(range(n))


def test_fast_frame_when_edit_list_hides_the_keyframe(tmp_path: Path) -> None:
    """An MP4 cut without re-encoding (``ffmpeg -ss … -c copy``) keeps the GOP from its keyframe and
    hides the frames before the cut with an edit list: no keyframe is shown at or before t = 0, and
    m_fast answered the next keyframe (480 ms for t = 0): a frame after t."""
    info = synth.make_video(tmp_path / "src.mp4", gop=25, bframes=2, duration_s=2, width=160, height=90)
    cut = tmp_path / "cut.mp4"
    with av.open(info.path) as src, av.open(str(cut), "w") as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        shift = round(Fraction(1, 2) / Fraction(s_in.time_base))  # negative pts → an edit list
        for packet in src.demux(s_in):
            if packet.dts is None or packet.pts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = s_out
            dst.mux(packet)
    pts, keys, tb, start = _sequential(cut)
    assert start not in keys  # the presentation starts mid-GOP
    with Video(cut) as v:
        first = v.frame_at(0)
        fast = v.frame_at(0, exact=False)
        assert fast.pts == first.pts == pts[0]
        assert synth.read_counter(fast.frame) == synth.read_counter(first.frame)
        later = v.frame_at(1500, exact=False)  # a shown keyframe is still preferred
        assert later.pts == max(k for k in keys if k <= start + Fraction(1500, 1000) / tb)

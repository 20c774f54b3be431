"""vidsnap.local.synth: the test media are what they claim to be (checked with plain PyAV)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest

from vidsnap.local import synth


def decode_all(path: str) -> tuple[list[int], list[int], av.VideoStream, list[bool]]:
    with av.open(path) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return (
            [int(f.pts or 0) for f in frames],
            [synth.read_counter(f) for f in frames],
            s,
            [f.key_frame for f in frames],
        )


@pytest.mark.parametrize(
    "name", ["mp4_h264", "mkv", "webm_vp9", "ts_open_gop", "avi_mpeg4", "mp4_hevc10", "mp4_vfr"]
)
def test_every_frame_carries_its_index(name: str, make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media(name)
    pts, counters, _, _ = decode_all(info.path)
    assert counters == list(range(info.frame_count))
    assert pts == sorted(pts)


def test_timing_and_layout(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("mp4_h264")
    assert info.frame_count == 75
    assert info.times_s[:3] == [0, Fraction(1, 25), Fraction(2, 25)]
    assert info.keyframe_times_s == [0, 1, 2]
    with av.open(info.path) as c:
        s = c.streams.video[0]
        assert s.codec_context.has_b_frames
    # faststart puts moov before mdat; without it the muxer's default leaves moov at the end.
    fast = Path(info.path).read_bytes()
    assert fast.index(b"moov") < fast.index(b"mdat")
    slow = Path(make_media("mp4_moov_end").path).read_bytes()
    assert slow.index(b"mdat") < slow.index(b"moov")


def test_offset_open_gop_ts(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("ts_open_gop")
    pts, _, s, _ = decode_all(info.path)
    assert s.start_time is not None
    assert s.time_base is not None
    assert s.start_time * s.time_base == Fraction(14, 10)
    assert pts[0] == s.start_time
    with av.open(info.path) as c:
        assert c.streams.audio  # an audio track rides along
    assert len(info.keyframe_times_s) >= 6  # GOP 12 at 25 fps over 3 s


def test_vfr_durations_vary(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("mp4_vfr")
    steps = {b - a for a, b in zip(info.times_s, info.times_s[1:], strict=False)}
    assert len(steps) >= 4
    pts, _, s, _ = decode_all(info.path)
    assert s.time_base is not None
    assert [(p - pts[0]) * s.time_base for p in pts] == info.times_s


def test_hevc_10bit_and_rotation(make_media: Callable[[str], synth.SynthInfo]) -> None:
    with av.open(make_media("mp4_hevc10").path) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "hevc"
        assert s.codec_context.pix_fmt == "yuv420p10le"
    for name, expected in (("mp4_rot90", 90), ("mp4_rot270", 270)):
        with av.open(make_media(name).path) as c:
            frame = next(c.decode(video=0))
            assert frame.rotation % 360 == expected


def test_scene_cuts_change_the_picture(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("mp4_cuts")
    assert info.scene_cuts_s == [1.5, 2.5, 3.2]


def test_audio_helpers(tmp_path: Path) -> None:
    for name in ("c.m4a", "c.mp3"):
        path = synth.make_audio_with_cover(tmp_path / name)
        with av.open(path) as c:
            pics = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
            assert len(pics) == 1
            assert c.streams.audio
    path = synth.make_audio_only(tmp_path / "a.m4a")
    with av.open(path) as c:
        assert not c.streams.video
        assert c.streams.audio
    with pytest.raises(ValueError, match="cover"):
        synth.make_audio_with_cover(tmp_path / "x.wav")


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="container"):
        synth.make_video(tmp_path / "x.unknown")
    with pytest.raises(ValueError, match="even"):
        synth.make_video(tmp_path / "x.mp4", width=161)
    with pytest.raises(ValueError, match="AVI"):
        synth.make_video(tmp_path / "x.avi", codec="mpeg4", vfr=True)

"""Kinds of real-world media that broke keyframe mode, durations and reported times.

Each kind is made with PyAV (vidsnap.local.synth) at a small size and checked against a plain sequential
decode of the same file, the way bench/crosscheck.py and test_realworld.py do: exact frames
pixel-equal, with the time the sequential decode gives them, at several times incl. past the end;
``m_fast`` (the keyframe at or before t, at its own time); the ``m_key`` list; interval, average
and dhash selections over the whole length.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import MemoryBlockReader

from vidsnap.core.decode import Video
from vidsnap.core.errors import Throttled, UndecodableMedia
from vidsnap.core.plan import Selection
from vidsnap.core.select import select_frames
from vidsnap.local import synth


@dataclass
class Truth:
    """What a sequential decode shows: per frame counter, its time (ms) and pixels."""

    times: dict[int, Fraction]  # counter -> time (ms from the first frame)
    pixels: dict[int, Any]  # counter -> luma array
    keys: list[int]  # counters of the keyframes (packets the container marks as keyframes)
    interval_ms: Fraction

    @property
    def order(self) -> list[int]:
        return sorted(self.times, key=lambda k: self.times[k])

    @property
    def duration_ms(self) -> Fraction:
        return max(self.times.values()) + self.interval_ms

    def shown_at(self, t: Fraction) -> int:
        """The counter of the frame shown at t (the last one at or before it; past the end, the last)."""
        before = [k for k in self.order if self.times[k] <= t]
        return before[-1] if before else self.order[0]

    def key_at(self, t: Fraction) -> int:
        before = [k for k in self.keys if self.times[k] <= t]
        return max(before, key=lambda k: self.times[k]) if before else self.keys[0]


def _sequential(info: synth.SynthInfo) -> Truth:
    with av.open(info.path) as c:
        s = c.streams.video[0]
        frames = [(int(f.pts), synth.read_counter(f), f.to_ndarray(format="gray")) for f in c.decode(s)]
        tb = Fraction(s.time_base)
    start = frames[0][0]
    times = {k: (pts - start) * tb * 1000 for pts, k, _ in frames}
    assert sorted(times) == list(range(info.frame_count))  # every frame decodes once
    keys = sorted({round(t * info.fps) for t in info.keyframe_times_s})
    return Truth(times, {k: px for _, k, px in frames}, keys, 1000 / info.fps)


def _make(tmp_path: Path, kind: str) -> synth.SynthInfo:
    small: dict[str, Any] = {"width": 160, "height": 96}
    if kind == "h264_one_key.mp4":  # a single keyframe in a 5 s clip
        return synth.make_video(tmp_path / kind, gop=300, duration_s=5, **small)
    if kind == "h264_gop150.ts":  # an MPEG-TS remux of sparse keyframes (every 6 s; 5 s after the last)
        src = synth.make_video(tmp_path / "src.mp4", gop=150, duration_s=17, bframes=2, **small)
        src.path = synth.remux(src.path, tmp_path / kind, format="mpegts")
        return src
    if kind == "cinepak.avi":  # Cinepak's decoder flags only the file's first picture as a keyframe
        return synth.make_video(
            tmp_path / kind, codec="cinepak", pix_fmt="rgb24", gop=300, bframes=0, duration_s=2, **small
        )
    if kind == "vp8.ogg":  # Ogg (as Theora files are): seeks by granule, one keyframe in 5 s
        return synth.make_video(tmp_path / kind, codec="libvpx", gop=300, bframes=0, duration_s=5, **small)
    if kind in ("mpeg1.m1v", "mpeg2.m2v"):  # elementary streams: no pack layer, no timestamps
        codec = "mpeg1video" if kind.startswith("mpeg1") else "mpeg2video"
        return synth.make_video(tmp_path / kind, codec=codec, gop=18, duration_s=4, **small)
    if kind in ("mpeg1.mpg", "mpeg2.vob", "mpeg2_1s.vob"):  # program streams, small pictures
        codec = "mpeg1video" if kind.startswith("mpeg1") else "mpeg2video"
        dur = 1 if "_1s" in kind else 4
        return synth.make_video(tmp_path / kind, codec=codec, gop=12, duration_s=dur, **small)
    raise AssertionError(kind)


KINDS = [
    "h264_one_key.mp4",
    "h264_gop150.ts",
    "cinepak.avi",
    "vp8.ogg",
    "mpeg1.m1v",
    "mpeg2.m2v",
    "mpeg1.mpg",
    "mpeg2.vob",
    "mpeg2_1s.vob",
]


@pytest.fixture(scope="module", params=KINDS)
def media(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[synth.SynthInfo, Truth]:
    info = _make(tmp_path_factory.mktemp("kinds"), request.param)
    return info, _sequential(info)


def _times(truth: Truth) -> list[Fraction]:
    end = truth.duration_ms
    ts = [Fraction(0), Fraction(100), Fraction(1000), end / 2, end * 3 / 4, end - truth.interval_ms]
    ts += [end - 1, end + 500, Fraction(10**6)]  # the end and past it
    ts += [truth.times[k] for k in truth.keys] + [truth.times[k] + truth.interval_ms / 2 for k in truth.keys]
    return sorted({t for t in ts if t >= 0})


def test_exact_frames(media: tuple[synth.SynthInfo, Truth]) -> None:
    """Pixel-equal with the sequential decode, at the time it gives the frame; each request on a
    fresh Video (a seek) and all of them in turn on one Video (forwards and back)."""
    info, truth = media
    times = _times(truth)
    with Video(info.path) as shared:
        for t in [*times, *reversed(times)]:
            k = truth.shown_at(t)
            with Video(info.path) as fresh:
                for v in (fresh, shared):
                    p = v.frame_at(t)
                    assert (synth.read_counter(p.frame), p.time_ms) == (k, truth.times[k]), (info.path, t)
                    assert np.array_equal(p.frame.to_ndarray(format="gray"), truth.pixels[k]), (info.path, t)


def test_fast_frames(media: tuple[synth.SynthInfo, Truth]) -> None:
    """m_fast: the keyframe at or before t at its own time, however far t is after it (a single
    keyframe in 5 s, 5 s after the last of a TS) and past the end; never "the video ends early"."""
    info, truth = media
    times = _times(truth)
    with Video(info.path) as shared:
        for t in times:
            k = truth.key_at(t)
            with Video(info.path) as fresh:
                for v in (fresh, shared):
                    p = v.frame_at(t, exact=False)
                    assert (synth.read_counter(p.frame), p.time_ms) == (k, truth.times[k]), (info.path, t)
        got = [synth.read_counter(p.frame) for p in shared.frames_at(times, exact=False)]
    assert got == [truth.key_at(t) for t in times]


def test_keyframe_list(media: tuple[synth.SynthInfo, Truth]) -> None:
    info, truth = media
    with Video(info.path, bulk=True) as v:
        got = [(p.time_ms, synth.read_counter(p.frame)) for p in v.keyframes()]
    assert got == [(truth.times[k], k) for k in truth.keys]
    with Video(info.path, bulk=True) as v:
        picks = list(select_frames(v, Selection(mode="key"), max_frames=100, warnings=[]))
    assert [synth.read_counter(p.frame) for p in picks] == truth.keys


def test_selections_cover_the_whole_video(media: tuple[synth.SynthInfo, Truth]) -> None:
    """The duration is the real one (an MPEG-1 elementary stream claimed 1 ms, a program stream
    of small pictures lost its last 11 frames), so interval, average and dhash selections cover the
    whole video, each frame the one shown at its planned time."""
    info, truth = media
    with Video(info.path) as v:
        assert v.duration_ms == truth.duration_ms
        assert v.duration_note is None
    step = Fraction(500)
    planned = [i * step for i in range(math.ceil(truth.duration_ms / step))]
    cases = [
        (Selection(mode="inter", interval_ms=step), planned),
        (Selection(mode="avg", num=7), [i * truth.duration_ms / 7 for i in range(7)]),
        (Selection(mode="dhash", interval_ms=step, threshold=-1), planned),
    ]
    for sel, times in cases:
        warnings: list[str] = []
        with Video(info.path, bulk=True) as v:
            got = [
                (p.time_ms, synth.read_counter(p.frame))
                for p in select_frames(v, sel, max_frames=100, warnings=warnings)
            ]
        want = [truth.shown_at(t) for t in times]
        want = [k for i, k in enumerate(want) if i == 0 or k != want[i - 1]]
        assert got == [(truth.times[k], k) for k in want], (info.path, sel.mode)
        assert warnings == []


def test_truncated_file_is_still_refused_in_keyframe_mode(tmp_path: Path) -> None:
    """Judging truncation by what the demuxer read must not let a cut file through: the frames
    past the cut are missing whatever the mode."""
    info = synth.make_video(tmp_path / "full.mp4", gop=25, duration_s=4, width=160, height=96)
    data = Path(info.path).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov first: the index promises 4 s
    with Video(cut) as v:
        assert synth.read_counter(v.frame_at(0, exact=False).frame) == 0
    for t in (3500, 10**6):
        with Video(cut) as v, pytest.raises(UndecodableMedia, match="ends early"):
            v.frame_at(t, exact=False)
    # A single-keyframe file cut in half: the keyframe decodes, the data after it is gone.
    one = synth.make_video(tmp_path / "one.mp4", gop=300, duration_s=5, width=160, height=96)
    data = Path(one.path).read_bytes()
    cut_one = tmp_path / "cut_one.mp4"
    cut_one.write_bytes(data[: len(data) // 2])
    with Video(cut_one) as v, pytest.raises(UndecodableMedia, match="ends early"):
        v.frame_at(4500, exact=False)


def test_duration_note_is_a_warning(tmp_path: Path) -> None:
    """A duration that may be short (counted up to a read error, an estimate kept): the selections
    that plan over it say they may stop early."""
    info = synth.make_video(
        tmp_path / "es.m2v", codec="mpeg2video", gop=18, duration_s=2, width=160, height=96
    )
    with Video(info.path) as v:
        # The description is frozen: the Video's cursor is given one with a note.
        note = "the source could not be read to its end (test)"
        v._cursor.description = dataclasses.replace(v.description, duration_note=note)
        warnings: list[str] = []
        list(select_frames(v, Selection(mode="avg", num=3), max_frames=10, warnings=warnings))
    assert len(warnings) == 1
    assert "may end before the video does" in warnings[0]


@pytest.mark.parametrize("kind", ["mpeg1.m1v", "mpeg2.m2v"])
def test_a_transient_read_failure_while_rewinding_stays_transient(tmp_path: Path, kind: str) -> None:
    """A raw elementary stream rewinds by reopening the source: a source that stops answering then
    (throttled S3) is a 503 to retry, never an undecodable file (422)."""

    class StopsAnswering(MemoryBlockReader):
        failing = False

        def read(self, size: int | None = -1) -> bytes:
            if self.failing:
                raise Throttled("SlowDown")
            return super().read(size)

    data = Path(_make(tmp_path, kind).path).read_bytes()
    reader = StopsAnswering(data, block_size=4096, cache_blocks=2)
    with Video(reader) as video:
        video.frame_at(3000)
        reader.failing = True
        with pytest.raises(Throttled) as info:
            video.frame_at(0)  # backwards: a rewind
    assert info.value.transient
    assert info.value.status == 503

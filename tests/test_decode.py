"""vidsnap.core.decode: exact frames by pts, checked by pixels against a plain sequential decode."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import CONTAINERS

from vidsnap.core.decode import Video
from vidsnap.core.decode import cursor as decode_cursor
from vidsnap.core.errors import UndecodableMedia, UnsupportedMedia
from vidsnap.local import synth


@dataclass
class Ref:
    """All frames of a clip from a sequential decode from the start (no seeking)."""

    time_base: Fraction
    pts: list[int]
    pixels: list[np.ndarray]
    keys: list[bool]

    @property
    def start(self) -> int:
        return self.pts[0]

    def index_at(self, time_ms: Fraction, *, key: bool = False) -> int:
        """Index of the last frame (keyframe) with pts ≤ start + t: the definition, by brute force."""
        target = self.start + Fraction(time_ms) / 1000 / self.time_base
        best = 0
        for i, p in enumerate(self.pts):
            if p <= target and (not key or self.keys[i]):
                best = i
        return best

    def time_ms(self, i: int) -> Fraction:
        return (self.pts[i] - self.start) * self.time_base * 1000


_REFS: dict[str, Ref] = {}


def reference(path: str) -> Ref:
    """Decode every frame with plain PyAV, in presentation order (cached per file)."""
    if path not in _REFS:
        with av.open(path) as c:
            s = c.streams.video[0]
            frames = [(int(f.pts or 0), f.to_ndarray(), f.key_frame) for f in c.decode(s)]
            assert s.time_base is not None
            tb = Fraction(s.time_base)
        frames.sort(key=lambda x: x[0])
        _REFS[path] = Ref(tb, [f[0] for f in frames], [f[1] for f in frames], [f[2] for f in frames])
    return _REFS[path]


def probe_times(ref: Ref) -> list[Fraction]:
    """0, mid-GOP, just before and exactly at each keyframe, the last frame, past the end."""
    times = [Fraction(0), Fraction(1)]
    key_idx = [i for i, k in enumerate(ref.keys) if k]
    for a, b in zip(key_idx, [*key_idx[1:], len(ref.pts) - 1], strict=True):
        times += [ref.time_ms((a + b) // 2), ref.time_ms(a) - Fraction(1, 1000), ref.time_ms(a)]
        times.append(ref.time_ms(a) + Fraction(1, 2))
    times += [ref.time_ms(len(ref.pts) - 1), ref.time_ms(len(ref.pts) - 1) + 1000, Fraction(10**7)]
    return sorted(t for t in times if t >= 0)


@pytest.mark.parametrize("name", CONTAINERS)
def test_exact_and_fast_frames_match_sequential_decode(
    name: str, make_media: Callable[[str], synth.SynthInfo]
) -> None:
    info = make_media(name)
    ref = reference(info.path)
    times = probe_times(ref)
    # One Video per request (the sync path) and one Video for all, in an order that seeks back.
    with Video(info.path) as shared:
        assert shared.start_pts == ref.start
        for t in [*times, *reversed(times)]:
            want = ref.index_at(t)
            got = shared.frame_at(t)
            assert got.pts == ref.pts[want], (name, t)
            assert np.array_equal(got.frame.to_ndarray(), ref.pixels[want]), (name, t)
            assert got.time_ms == ref.time_ms(want)
            fast = shared.frame_at(t, exact=False)
            assert fast.pts == ref.pts[ref.index_at(t, key=True)], (name, t)
            assert fast.key_frame
            assert np.array_equal(fast.frame.to_ndarray(), ref.pixels[ref.index_at(t, key=True)])
    for t in times[::3]:
        with Video(info.path) as single:
            assert single.frame_at(t).pts == ref.pts[ref.index_at(t)], (name, t)
    # The counter drawn by synth agrees with the reference's frame order (pixels are the truth).
    with Video(info.path) as v:
        mid = v.frame_at(Fraction(1000))
        assert synth.read_counter(mid.frame) == ref.index_at(Fraction(1000))


@pytest.mark.parametrize("name", CONTAINERS)
def test_frames_at_every_frame_and_keyframes(name: str, make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media(name)
    ref = reference(info.path)
    times = [Fraction(x, 3) for x in range(0, 13000, 97)]
    with Video(info.path, bulk=True) as v:
        got = list(v.frames_at(times))
        assert [p.pts for p in got] == [ref.pts[ref.index_at(t)] for t in times]
        for p, t in zip(got[::5], times[::5], strict=True):
            assert np.array_equal(p.frame.to_ndarray(), ref.pixels[ref.index_at(t)])
        fast = list(v.frames_at(times, exact=False))
        assert [p.pts for p in fast] == [ref.pts[ref.index_at(t, key=True)] for t in times]
        every = list(v.every_frame())
        assert [p.pts for p in every] == ref.pts
        assert all(np.array_equal(p.frame.to_ndarray(), px) for p, px in zip(every, ref.pixels, strict=True))
        keys = [p.pts for p in v.keyframes()]
        assert keys == [p for p, k in zip(ref.pts, ref.keys, strict=True) if k]
        later = ref.time_ms(len(ref.pts) // 2)
        assert [p.pts for p in v.keyframes(later)] == [
            p for p, k in zip(ref.pts, ref.keys, strict=True) if k and p >= ref.pts[len(ref.pts) // 2]
        ]
        assert [p.pts for p in v.every_frame(later)] == ref.pts[len(ref.pts) // 2 :]


@pytest.mark.parametrize("hop_min", [1, 10**9])
def test_long_gop_keyframes_hopping_or_sequential(
    hop_min: int, make_media: Callable[[str], synth.SynthInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyframes() hopping through the index (long GOPs) and decoding NONKEY give the same frames."""
    monkeypatch.setattr(decode_cursor, "_HOP_MIN_GOP_PACKETS", hop_min)
    info = make_media("mp4_long_gop")
    ref = reference(info.path)
    key_pts = [p for p, k in zip(ref.pts, ref.keys, strict=True) if k]
    with Video(info.path) as v:
        got = list(v.keyframes())
        assert [p.pts for p in got] == key_pts
        for p in got:
            assert np.array_equal(p.frame.to_ndarray(), ref.pixels[ref.pts.index(p.pts)])
        assert [p.pts for p in v.keyframes(Fraction(1))] == key_pts[1:]
        # The decoder is usable for exact frames afterwards.
        assert v.frame_at(Fraction(2500)).pts == ref.pts[ref.index_at(Fraction(2500))]


def test_metadata(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("mp4_h264")
    with Video(info.path) as v:
        assert (v.coded_width, v.coded_height) == (160, 90)
        assert (v.display_width, v.display_height) == (160, 90)
        assert v.rotation == 0
        assert v.frame_interval_ms == 40
        assert v.duration_ms == 3000
        assert v.sample_aspect_ratio == 1
        assert not v.is_cover_art
    with Video(make_media("mp4_offset").path) as v:
        assert v.start_pts * v.time_base == Fraction(1, 2)
        assert v.frame_at(0).time_ms == 0
        assert synth.read_counter(v.frame_at(0).frame) == 0
    with Video(make_media("ts_open_gop").path) as v:
        assert v.start_pts * v.time_base == Fraction(14, 10)
        assert synth.read_counter(v.frame_at(0).frame) == 0


@pytest.mark.parametrize(
    ("name", "rotation", "size"), [("mp4_rot90", 90, (90, 160)), ("mp4_rot270", 270, (180, 320))]
)
def test_rotation(
    name: str, rotation: int, size: tuple[int, int], make_media: Callable[[str], synth.SynthInfo]
) -> None:
    with Video(make_media(name).path) as v:
        assert v.rotation == rotation
        assert (v.display_width, v.display_height) == size
        assert (v.frame_at(0).frame.width, v.frame_at(0).frame.height) == (size[1], size[0])  # coded


def test_file_objects(make_media: Callable[[str], synth.SynthInfo]) -> None:
    info = make_media("mp4_moov_end")
    ref = reference(info.path)
    data = Path(info.path).read_bytes()
    with open(info.path, "rb") as fh, Video(fh) as v:
        assert v.frame_at(Fraction(1500)).pts == ref.pts[ref.index_at(Fraction(1500))]
    with Video(io.BytesIO(data)) as v:
        assert v.frame_at(Fraction(2222)).pts == ref.pts[ref.index_at(Fraction(2222))]


def test_cover_art(cover_m4a: Path, cover_mp3: Path) -> None:
    for path in (cover_m4a, cover_mp3):
        with Video(path) as v:
            assert v.is_cover_art
            assert (v.display_width, v.display_height) == (200, 200)
            for t in (0, 500, 10**6):
                p = v.frame_at(t)
                assert p.time_ms == 0
                assert (p.frame.width, p.frame.height) == (200, 200)
            assert len(list(v.every_frame())) == 1
            assert len(list(v.keyframes())) == 1


def test_audio_only_is_unsupported(audio_only: Path) -> None:
    with pytest.raises(UnsupportedMedia, match="audio"):
        Video(audio_only)


def test_not_media(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(7).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mov"
    text.write_text("hello, this is not a video\n" * 100)
    for path in (empty, noise, text):
        with pytest.raises(UnsupportedMedia):
            Video(path)
    with pytest.raises(UnsupportedMedia):
        Video(io.BytesIO(b"\x00" * 1000))
    with pytest.raises(UnsupportedMedia):
        Video(tmp_path / "missing.mp4")


def test_truncated(tmp_path: Path, make_media: Callable[[str], synth.SynthInfo]) -> None:
    # moov first, mdat cut in half: the start decodes, the end does not (never a wrong frame).
    data = Path(make_media("mp4_h264").path).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with Video(half) as v:
        assert synth.read_counter(v.frame_at(0).frame) == 0
        with pytest.raises(UndecodableMedia):
            v.frame_at(2900)
        with pytest.raises(UndecodableMedia):
            v.frame_at(10**6)
    # moov at the end, cut: no index at all.
    data = Path(make_media("mp4_moov_end").path).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UndecodableMedia):
        Video(cut)
    # Only a header.
    head = tmp_path / "head.mkv"
    head.write_bytes(Path(make_media("mkv").path).read_bytes()[:300])
    with pytest.raises((UndecodableMedia, UnsupportedMedia)):
        Video(head)


def test_decode_errors_never_leak(tmp_path: Path, make_media: Callable[[str], synth.SynthInfo]) -> None:
    """Corrupt bytes in the middle of the data: answers or a vidsnap error, never an av exception."""
    data = bytearray(Path(make_media("mp4_h264").path).read_bytes())
    rng = np.random.default_rng(3)
    for pos in rng.integers(len(data) // 4, len(data), 40):
        data[int(pos)] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    try:
        with Video(bad) as v:
            for t in (0, 700, 1500, 2999, 5000):
                with contextlib.suppress(UndecodableMedia):
                    v.frame_at(t)
    except (UndecodableMedia, UnsupportedMedia):
        pass


def test_close_is_idempotent(make_media: Callable[[str], synth.SynthInfo]) -> None:
    v = Video(os.fspath(make_media("mp4_h264").path))
    v.close()
    v.close()


#: Cursor attributes a clone takes from its original on purpose: the shared description and
#: settings, the seek hints (about the demuxer, not the position), and its own source/container.
_NOT_POSITION = {"description", "settings", "hints", "source", "_guard", "container", "stream", "codec"}


def _position(video: Video) -> dict[str, object]:
    """Everything else a Video's cursor holds: what decoding changes (any attribute added later too)."""
    return {k: v for k, v in vars(video._cursor).items() if k not in _NOT_POSITION}


def test_a_clone_is_a_new_cursor_over_the_same_description(
    make_media: Callable[[str], synth.SynthInfo],
) -> None:
    info = make_media("mp4_long_gop")
    ref = reference(info.path)
    with Video(info.path, bulk=True) as v:
        assert set(vars(v)) == {"_cursor"}  # a Video is its cursor, nothing else to copy
        fresh = v.clone()
        assert fresh is not None
        with fresh:
            # Move the original: exact frames, a run of frames, then keyframe mode.
            v.frame_at(Fraction(2500))
            list(itertools.islice(v.every_frame(Fraction(1000)), 5))
            next(v.keyframes(Fraction(2000)))
            assert _position(v) != _position(fresh)
            late = v.clone(threads=1)
            assert late is not None
            with late:
                assert late.description is v.description is fresh.description
                assert _position(late) == _position(fresh)  # nothing of v's decoding came along
                assert late._cursor.hints == v._cursor.hints
                assert late._cursor.settings.threads == 1
                assert late._cursor.container is not v._cursor.container
                for t in (Fraction(3000), Fraction(500), Fraction(1700)):
                    want = ref.pts[ref.index_at(t)]
                    assert late.frame_at(t).pts == want
                    assert v.frame_at(t).pts == want
                    assert fresh.frame_at(t).pts == want
                # Decoding in the clone moves the clone only.
                assert _position(late) != _position(fresh)
                assert late.description is v.description


def test_the_stream_description_is_frozen(make_media: Callable[[str], synth.SynthInfo]) -> None:
    with Video(make_media("mp4_h264").path) as v:
        description = v.description
        with pytest.raises(dataclasses.FrozenInstanceError):
            description.start_pts = 5  # type: ignore[misc]
        with pytest.raises(AttributeError):
            v.duration_ms = Fraction(1)  # type: ignore[misc]
        assert isinstance(description.key_ts, tuple)  # no mutable part either
        v.frame_at(Fraction(2000))
        assert v.description is description  # decoding does not touch it

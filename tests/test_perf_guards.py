"""Cheap guards for the performance work (counters, never wall-clock time).

Each test pins one lever measured in docs/PERFORMANCE.md, so that a change undoing it fails here
instead of silently slowing the benchmark: frames that cannot be the answer are skipped, a seek
lands on the keyframe at a keyframe's time, keyframe hopping reads only keyframes, a warm request
reuses the open video, and the faster dhash gives the same bits as the plain numpy one.
"""

from __future__ import annotations

import io
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import pytest
from conftest import MemoryBlockReader

from vidsnap.core import engine
from vidsnap.core.blockio import BlockReader
from vidsnap.core.decode import Video
from vidsnap.core.decode import cursor as decode_cursor
from vidsnap.core.decode.cursor import Cursor
from vidsnap.core.engine import OpenVideos, snapshot
from vidsnap.core.errors import UndecodableMedia
from vidsnap.core.plan import SnapshotRequest
from vidsnap.core.select import dhash
from vidsnap.local import synth

FPS = 25
GOP = 50


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s, 25 fps, GOP 50 (keyframes every 2 s), 3 B-frames: the shape of the benchmark video."""
    path = tmp_path_factory.mktemp("perf") / "clip.mp4"
    synth.make_video(path, duration_s=8, fps=FPS, width=160, height=96, gop=GOP, bframes=3)
    return path


class CountingReader(io.RawIOBase, BinaryIO):  # type: ignore[misc]
    """A seekable file that counts the bytes read through it."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb")
        self.bytes_read = 0
        self.closed_by_owner = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        self.closed_by_owner = True
        self._f.close()
        super().close()


@pytest.fixture
def pulled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the frames the decoder hands out (skipped frames never come out)."""
    count = [0]
    original = Cursor.pull

    def counting(self: Cursor) -> av.VideoFrame | None:
        frame = original(self)
        if frame is not None:
            count[0] += 1
        return frame

    monkeypatch.setattr(Cursor, "pull", counting)
    return count


def test_frames_that_cannot_be_the_answer_are_not_decoded(clip: Path, pulled: list[int]) -> None:
    # 1.96 s is the 49th frame of the first GOP: about half of the 49 frames before it are
    # non-reference B-frames, which the decoder drops.
    with Video(clip) as v:
        pulled[0] = 0
        picked = v.frame_at(Fraction(1960))
        assert synth.read_counter(picked.frame) == 49
        assert pulled[0] <= 35, pulled[0]


def test_a_keyframe_time_seeks_to_that_keyframe(clip: Path, pulled: list[int]) -> None:
    # MP4 seeks by presentation time: aiming at the keyframe's own time must not land a GOP early.
    with Video(clip) as v:
        pulled[0] = 0
        picked = v.frame_at(Fraction(6000))
        assert picked.key_frame
        assert synth.read_counter(picked.frame) == 150
        assert pulled[0] <= 6, pulled[0]


def test_keyframe_hopping_reads_only_keyframes(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_cursor, "_HOP_MIN_GOP_PACKETS", 1)
    reader = CountingReader(clip)
    with Video(reader) as v:
        start = reader.bytes_read
        keys = [synth.read_counter(p.frame) for p in v.keyframes()]
        hopped = reader.bytes_read - start
    assert keys == list(range(0, 200, GOP))
    # Keyframes are the biggest packets, but 4 of 200 frames are far from the whole file.
    assert hopped < clip.stat().st_size // 2, (hopped, clip.stat().st_size)


def test_open_videos_reuse_the_open_video_for_the_same_version(clip: Path) -> None:
    req = SnapshotRequest(time_ms=5000)
    cold = snapshot(str(clip), req)
    cache = OpenVideos(capacity=1)
    readers: list[CountingReader] = []

    def opener() -> CountingReader:
        readers.append(CountingReader(clip))
        return readers[-1]

    first, read_first = cache.snapshot(("clip", "v1"), opener, req)
    again, read_again = cache.snapshot(("clip", "v1"), opener, req)
    later, _ = cache.snapshot(("clip", "v1"), opener, SnapshotRequest(time_ms=5400))
    assert len(readers) == 1
    assert first.data == again.data == cold.data
    assert read_first > 0
    assert read_again == 0  # nothing read again: same frame, container and blocks already there
    assert later.time_ms == 5400
    # Another version opens its own source; the least recently used one is closed.
    cache.snapshot(("clip", "v2"), opener, req)
    assert len(readers) == 2
    assert readers[0].closed_by_owner
    assert not readers[1].closed_by_owner
    cache.close()
    assert readers[1].closed_by_owner


def test_open_videos_drop_a_video_after_a_failure(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = OpenVideos()
    readers: list[CountingReader] = []

    def opener() -> CountingReader:
        readers.append(CountingReader(clip))
        return readers[-1]

    cache.snapshot("v", opener, SnapshotRequest(time_ms=1000))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise UndecodableMedia("boom")

    monkeypatch.setattr(engine, "_snapshot_of", broken)
    with pytest.raises(UndecodableMedia):
        cache.snapshot("v", opener, SnapshotRequest(time_ms=1000))
    assert readers[0].closed_by_owner
    monkeypatch.undo()
    cache.snapshot("v", opener, SnapshotRequest(time_ms=1000))
    assert len(readers) == 2
    cache.close()


def _dhash_numpy(frame: av.VideoFrame) -> int:
    gray = frame.to_ndarray(format="gray", width=9, height=8, interpolation="AREA")
    value = 0
    for bit in (gray[:, :-1] > gray[:, 1:]).flatten():
        value = (value << 1) | int(bit)
    return value


def test_dhash_without_numpy_gives_the_same_bits(clip: Path) -> None:
    with av.open(str(clip)) as c:
        frames = [f for i, f in enumerate(c.decode(video=0)) if i % 7 == 0]
    rng = np.random.default_rng(5)
    for fmt, (h, w) in [("yuv420p10le", (37, 53)), ("rgb24", (8, 9)), ("nv12", (90, 160)), ("gray", (2, 2))]:
        picture = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        frames.append(av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=fmt))
    for frame in frames:
        assert dhash(frame) == _dhash_numpy(frame)


@pytest.fixture(scope="module")
def grainy(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """6 s of noise at 25 fps, GOP 50, 2 B-frames: frames of ~10-20 KB, so a GOP spans many blocks."""
    path = tmp_path_factory.mktemp("grain") / "grain.mp4"
    rng = np.random.default_rng(5)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 192, 108, "yuv420p"
        params = "keyint=50:min-keyint=50:bframes=2"
        stream.options = {"crf": "12", "preset": "ultrafast", "x264-params": params}
        for _ in range(150):
            pixels = rng.integers(0, 256, (108, 192, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(stream.encode(None))
    return path.read_bytes()


def test_a_seek_fetches_its_span_in_one_request(grainy: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def requests_for(t_ms: int) -> tuple[int, int, bytes]:
        reader = MemoryBlockReader(grainy, block_size=16 * 1024, cache_blocks=256)
        with Video(reader) as video:
            before = reader.requests
            frame = video.frame_at(t_ms).frame
            return reader.requests - before, reader.bytes_read, bytes(frame.planes[0])

    with_hint = requests_for(3900)  # 1.9 s into the GOP that starts at 2 s
    monkeypatch.setattr(BlockReader, "prefetch", None)
    without = requests_for(3900)
    assert with_hint[2] == without[2]
    assert with_hint[0] <= 2 < without[0]
    assert with_hint[1] <= without[1] + 2 * 16 * 1024


def test_prefetch_is_capped_at_half_the_cache_and_ignores_empty_spans() -> None:
    reader = MemoryBlockReader(bytes(range(256)) * 4096, block_size=16 * 1024, cache_blocks=256)  # 64 blocks
    reader.cache_blocks = 8
    reader.prefetch(10, 5)
    reader.prefetch(-5, 10)
    reader.prefetch(2 << 20, 3 << 20)
    assert reader.requests == 0
    reader.prefetch(0, 1 << 20)
    assert (reader.requests, reader.bytes_read) == (1, 4 * 16 * 1024)
    reader.prefetch(0, 1 << 20)  # cached now: nothing to fetch
    assert reader.requests == 1
    reader.seek(3 * 16 * 1024)
    assert reader.read(16) == bytes(range(16))
    assert reader.requests == 1


def test_a_local_run_loads_neither_aws_sdk_nor_numpy(clip: Path, tmp_path: Path) -> None:
    """Start-up is most of a one-snapshot run: botocore (~9 ms), boto3 (~120 ms) and numpy (~100 ms)
    are imported only by the paths that use them."""
    code = (
        "import sys, vidsnap.local.cli\n"
        f"rc = vidsnap.local.cli.main(['run', {str(clip)!r}, sys.argv[1], '--out', {str(tmp_path)!r}])\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'numpy') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    for process in ("video/snapshot,t_1500,f_jpg", "video/snapshots,f_jpg,inter_2000"):
        result = subprocess.run(
            [sys.executable, "-c", code, process], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]"

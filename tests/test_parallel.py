"""Several decoders serving a job's planned times (vidsnap.core.parallel): same frames, same order, same
errors as one decoder; clean shutdown; shared block cache for range-read sources."""

from __future__ import annotations

import io
import itertools
import random
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import MEDIA, MemoryBlockReader, MemorySink
from moto import mock_aws

from vidsnap.aws.s3io import open_s3
from vidsnap.aws.settings import Settings
from vidsnap.core import engine, parallel
from vidsnap.core.decode import Picked, Video
from vidsnap.core.errors import UndecodableMedia, VidsnapError
from vidsnap.core.lang import parse_process
from vidsnap.local import synth

Media = Callable[[str], synth.SynthInfo]


def _fingerprint(p: Picked) -> tuple[int, Fraction, bytes]:
    return p.pts, p.time_ms, b"".join(bytes(plane) for plane in p.frame.planes)


def _sequential(path: str, times: list[Fraction], exact: bool = True) -> list[tuple[int, Fraction, bytes]]:
    with Video(path, bulk=True) as v:
        return [_fingerprint(p) for p in v.frames_at(times, exact=exact)]


def _parallel(source: Any, times: list[Fraction], decoders: int, exact: bool = True) -> list[Any]:
    with Video(source, bulk=True) as v:
        return [_fingerprint(p) for p in parallel.frames_at(v, times, exact=exact, decoders=decoders)]


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vidsnap-decode")]


@pytest.mark.parametrize("name", sorted(MEDIA))
@pytest.mark.parametrize("decoders", [2, 3])
def test_same_frames_as_one_decoder(make_media: Media, name: str, decoders: int) -> None:
    info = make_media(name)
    duration_ms = int(info.times_s[-1] * 1000)
    rng = random.Random(decoders)
    ascending = [Fraction(t) for t in range(0, duration_ms + 200, 170)]
    shuffled = [Fraction(rng.randrange(0, duration_ms + 100)) for _ in range(25)]
    for times in (ascending, shuffled, shuffled[:3] * 2):
        assert _parallel(info.path, times, decoders) == _sequential(info.path, times)
    assert _parallel(info.path, ascending, decoders, exact=False) == _sequential(
        info.path, ascending, exact=False
    )
    assert not _decode_threads()


def test_runs_follow_keyframes(make_media: Media) -> None:
    info = make_media("mp4_long_gop")  # 30 fps, a keyframe every 50 frames (1.667 s)
    with Video(info.path) as v:
        times = [Fraction(t) for t in (0, 500, 1000, 1700, 2000, 3400, 100)]
        runs = v.runs(times)
        # One run per GOP touched, and a new run where the times go backwards.
        assert [list(r) for r in runs] == [[0, 1, 2], [3, 4], [5], [6]]
        assert v.run_cost(times[3:5]) > v.run_cost(times[3:4]) > 0
        assert v.runs([]) == []
        assert v.runs(times[:1]) == [range(1)]


def test_media_without_index_is_one_run(make_media: Media) -> None:
    info = make_media("ts_open_gop")  # MPEG-TS: no keyframe index
    with Video(info.path) as v:
        assert v.runs([Fraction(0), Fraction(1000), Fraction(2000)]) == [range(3)]
    times = [Fraction(t) for t in (0, 900, 1800, 2700)]
    assert _parallel(info.path, times, 2) == _sequential(info.path, times)


def test_sources_that_cannot_be_opened_twice_use_one_decoder(make_media: Media) -> None:
    info = make_media("mp4_long_gop")
    data = Path(info.path).read_bytes()
    times = [Fraction(t) for t in range(0, 3900, 400)]
    with Video(io.BytesIO(data), bulk=True) as v:
        assert not v.can_clone
        assert v.clone() is None
        got = []
        for p in parallel.frames_at(v, times, decoders=4):
            got.append(_fingerprint(p))
            assert not _decode_threads()  # served on the caller's thread
    assert got == _sequential(info.path, times)


def test_block_reader_clones_share_cache_and_counters(make_media: Media) -> None:
    info = make_media("mp4_long_gop")
    data = Path(info.path).read_bytes()
    # Small blocks and cache: the decoders keep fetching while they run.
    reader = MemoryBlockReader(data, block_size=512, cache_blocks=2)
    times = [Fraction(t) for t in range(0, 3900, 300)]
    assert _parallel(reader, times, 2) == _sequential(info.path, times)
    assert "vidsnap-decode-1" in reader.threads  # the clone fetched on its own thread
    assert reader.bytes_read > 0
    clone = reader.clone()
    assert clone.tell() == 0
    assert clone.bytes_read == reader.bytes_read
    reader.seek(1030)
    assert reader.read(10) == data[1030:1040]
    before = reader.requests
    clone.seek(1100)
    assert clone.read(100) == data[1100:1200]  # the block the original just fetched: shared cache
    assert reader.requests == clone.requests == before
    clone.seek(len(data) - 10)
    clone.read(10)  # a block nobody fetched yet: counted once, on both
    assert reader.requests == clone.requests == before + 1
    before += 1
    clone.close()  # the original and the shared cache still work
    reader.seek(1030)
    assert reader.read(10) == data[1030:1040]
    assert reader.requests == before
    reader.close()


def test_closing_early_stops_the_workers(make_media: Media) -> None:
    info = make_media("mp4_long_gop")
    times = [Fraction(t) for t in range(0, 3900, 100)]
    with Video(info.path, bulk=True) as v:
        frames = parallel.frames_at(v, times, decoders=3)
        assert next(frames).pts == v.start_pts
        frames.close()
        assert not _decode_threads()
        # The job's own video is still usable afterwards (another job of the task).
        assert synth.read_counter(v.frame_at(2000).frame) == 60


def test_an_error_surfaces_after_the_frames_before_it(tmp_path: Path, make_media: Media) -> None:
    data = Path(make_media("mp4_4s").path).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])  # moov first, the second half of the frames gone
    times = [Fraction(t) for t in range(0, 4000, 250)]

    def collect(decoders: int) -> tuple[list[int], type[BaseException] | None]:
        got: list[int] = []
        with Video(half, bulk=True) as v:
            try:
                for p in parallel.frames_at(v, times, decoders=decoders):
                    got.append(p.pts)
            except UndecodableMedia as exc:
                return got, type(exc)
        return got, None

    one, err_one = collect(1)
    two, err_two = collect(2)
    # The truncation error (SourceEndsEarly, an UndecodableMedia), the same with one decoder or two.
    assert err_one is not None
    assert issubclass(err_one, UndecodableMedia)
    assert err_two is err_one
    assert two == one
    assert 0 < len(one) < len(times)
    assert not _decode_threads()


def test_a_failing_clone_is_an_error_not_a_hang(make_media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    info = make_media("mp4_long_gop")
    monkeypatch.setattr(Video, "clone", lambda *_, **__: None)
    times = [Fraction(t) for t in range(0, 3900, 400)]
    with Video(info.path, bulk=True) as v, pytest.raises(UndecodableMedia, match="second time"):
        list(parallel.frames_at(v, times, decoders=2))
    assert not _decode_threads()


@pytest.mark.parametrize(
    "process",
    [
        "video/snapshots,f_png,inter_300",
        "video/snapshots,f_jpg,m_avg,num_7",
        "video/snapshots,f_jpg,m_dhash,inter_100,thr_5",
        "video/snapshots,f_jpg,m_dhash,inter_100,num_3",
    ],
)
def test_task_outputs_do_not_depend_on_decoders(make_media: Media, process: str) -> None:
    info = make_media("mp4_cuts")
    task = parse_process(process)
    outputs = []
    for decoders in (1, 2):
        sink = MemorySink()
        outcome = engine.run_task(task, info.path, sink, limits=engine.Limits(decoders=decoders))
        outputs.append((sink.objects, [(o.uri, o.time_ms) for o in outcome.outputs], outcome.warnings))
    assert outputs[0] == outputs[1]
    assert outputs[0][0]


@pytest.fixture
def s3_clip(make_media: Media) -> Iterator[tuple[Any, synth.SynthInfo]]:
    info = make_media("mp4_long_gop")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="media")
        client.put_object(Bucket="media", Key="clip.mp4", Body=Path(info.path).read_bytes())
        yield client, info


def test_s3_reader_clones_fetch_in_parallel(s3_clip: tuple[Any, synth.SynthInfo]) -> None:
    client, info = s3_clip
    times = [Fraction(t) for t in range(0, 3900, 300)]
    reader = open_s3(client, "media", "clip.mp4", block_size=1024, cache_blocks=2)
    with reader:
        assert _parallel(reader, times, 2) == _sequential(info.path, times)
        size = Path(info.path).stat().st_size
        assert reader.bytes_read >= size  # everything once at least (tiny cache: some twice)
        assert reader.requests > 1


def test_decoders_setting() -> None:
    assert Settings.from_env({}).limits.decoders is None
    assert Settings.from_env({"DECODERS": "2"}).limits.decoders == 2
    with pytest.raises(ValueError, match="DECODERS"):
        Settings.from_env({"DECODERS": "0"})
    with pytest.raises(ValueError, match="DECODERS"):
        Settings.from_env({"DECODERS": "many"})
    assert parallel.available_cores() >= 1


def test_a_failing_sink_stops_the_decoders_before_the_video_closes(make_media: Media) -> None:
    class FailingSink(MemorySink):
        def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
            if len(self.objects) == 2:
                raise VidsnapError("the sink is full")
            return super().put(bucket, key, data, content_type)

    info = make_media("mp4_long_gop")
    task = parse_process("video/snapshots,f_jpg,inter_100")
    sink = FailingSink()
    with pytest.raises(VidsnapError, match="the sink is full"):
        engine.run_task(task, info.path, sink, limits=engine.Limits(decoders=3))
    assert len(sink.objects) == 2
    assert not _decode_threads()


def test_corrupt_media_gives_frames_or_vidsnap_errors(tmp_path: Path, make_media: Media) -> None:
    data = bytearray(Path(make_media("mp4_4s").path).read_bytes())
    rng = random.Random(11)
    for _ in range(40):
        pos = rng.randrange(len(data) // 4, len(data))
        data[pos] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    times = [Fraction(t) for t in range(0, 4000, 130)]
    try:
        with Video(bad, bulk=True) as v:
            got = list(parallel.frames_at(v, times, decoders=3))
        assert len(got) == len(times)
    except VidsnapError:
        pass
    assert not _decode_threads()


class _CyclicCosts:
    """A video stand-in whose runs cost 6, 5, 4, 3, 2, 1, 6, 5, … (the targets' places in the GOPs
    repeating every 6 GOPs, as on the benchmark's 10-minute video)."""

    def run_cost(self, times: list[Fraction]) -> int:
        return 6 - int(times[0]) % 6


def test_runs_are_shared_side_by_side_in_time_order() -> None:
    """The caller takes frames in time order and a worker holds only a few ahead: the workers must
    advance through the video together. Sharing longest runs first gave worker 0 runs 0-5, 12-17, …
    and worker 1 runs 6-11, …, and the two decoders took turns (as slow as one)."""
    from vidsnap.core.parallel import _AHEAD, _Pool

    times = [Fraction(i) for i in range(72)]
    runs = [range(i, i + 1) for i in range(72)]
    pool = _Pool(_CyclicCosts(), times, runs, 2, True)  # type: ignore[arg-type]
    for share in pool.shares:
        starts = [run.start for run in share]
        assert starts == sorted(starts)
    # No worker is ever more than a couple of runs ahead of the other in the video.
    owners = pool.owner
    longest = max(len(list(group)) for _, group in itertools.groupby(owners))
    assert longest <= 2, owners
    assert _AHEAD >= 4

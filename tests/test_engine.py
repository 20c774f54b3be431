"""The engine end to end on synthesised media: plans in, images and outputs out (no AWS)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import MemorySink
from PIL import Image

from vidsnap.core.engine import Limits, run_task, snapshot
from vidsnap.core.errors import BadRequest, UndecodableMedia, UnsupportedMedia
from vidsnap.core.lang import parse_process, parse_sync, parse_task
from vidsnap.core.plan import SourceRef, report_ms
from vidsnap.local.synth import make_audio_only, make_audio_with_cover, make_video


@pytest.fixture(scope="module")
def clip60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60 s 1280×720 clip like the OSS documentation's example (5 fps keeps it cheap)."""
    path = tmp_path_factory.mktemp("engine") / "clip60.mp4"
    make_video(path, duration_s=60, fps=5, width=1280, height=720, gop=25, bframes=2)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "small.mp4"
    make_video(path, duration_s=4, fps=25, width=320, height=180, gop=25, bframes=2)
    return path


def test_seed_example_snapshots(clip60: Path) -> None:
    task = parse_process("video/snapshots,ss_11000,f_png,pw_50,ph_50,num_5,inter_4000")
    assert not isinstance(task, type(parse_sync("video/snapshot,t_0")))
    sink = MemorySink()
    outcome = run_task(task, clip60, sink, source_ref=SourceRef(key="videos/clip60.mp4"))
    assert [report_ms(o.time_ms) for o in outcome.outputs] == [11000, 15000, 19000, 23000, 27000]
    assert [(o.width, o.height) for o in outcome.outputs] == [(640, 360)] * 5
    assert [key for _, key in sink.objects] == [f"clip60/{i}.png" for i in range(1, 6)]
    for data, content_type in sink.objects.values():
        assert content_type == "image/png"
        assert Image.open(io.BytesIO(data)).size == (640, 360)


def test_seed_example_snapshot(clip60: Path) -> None:
    rendered = snapshot(clip60, parse_sync("video/snapshot,t_7000,f_jpg,w_800,h_600"))
    assert (rendered.width, rendered.height) == (800, 600)
    assert rendered.time_ms == 7000
    assert rendered.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(rendered.data)).size == (800, 600)


def test_snapshot_keeps_aspect_when_one_side_given(small: Path) -> None:
    rendered = snapshot(small, parse_sync("video/snapshot,t_1000,w_160"))
    assert (rendered.width, rendered.height) == (160, 90)


def test_snapshot_past_end_returns_last_frame(small: Path) -> None:
    rendered = snapshot(small, parse_sync("video/snapshot,t_99000,f_png"))
    assert rendered.time_ms == 3960  # frame 99 of 100 at 25 fps


def test_fast_mode_returns_keyframe(small: Path) -> None:
    rendered = snapshot(small, parse_sync("video/snapshot,t_1900,m_fast"))
    assert rendered.time_ms == 1000  # GOP of 25 frames: keyframes at 0, 1000, 2000 ms


def test_template_without_index_warns(small: Path) -> None:
    task = parse_task(
        {"Bucket": "b", "Key": "k.mp4", "Process": "video/snapshots,f_jpg,inter_1000|sys/saveas,o_b3V0LmpwZw"}
    )
    sink = MemorySink()
    outcome = run_task(task, small, sink)
    assert len(outcome.outputs) == 4
    assert list(sink.objects) == [(None, "out.jpg")]
    assert any("only the last one remains" in w for w in outcome.warnings)


def test_num_above_limit_is_rejected_before_decoding(tmp_path: Path) -> None:
    task = parse_process("video/snapshots,f_jpg,num_50")
    with pytest.raises(BadRequest, match="num 50"):
        run_task(task, tmp_path / "never-opened.mp4", MemorySink(), limits=Limits(max_frames=10))


def test_num_zero_stops_at_limit_with_warning(small: Path) -> None:
    outcome = run_task(
        parse_process("video/snapshots,f_jpg"), small, MemorySink(), limits=Limits(max_frames=7)
    )
    assert len(outcome.outputs) == 7
    assert outcome.warnings


def test_start_past_end_is_an_error(small: Path) -> None:
    with pytest.raises(UndecodableMedia, match="past the end"):
        run_task(parse_process("video/snapshots,ss_60000,f_jpg,inter_1000"), small, MemorySink())


def test_progress_reaches_one(small: Path) -> None:
    seen: list[float] = []
    run_task(parse_process("video/snapshots,f_jpg,inter_1000"), small, MemorySink(), progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 1.0


def test_cover_art_is_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "song.m4a"
    make_audio_with_cover(path)
    rendered = snapshot(path, parse_sync("video/snapshot,t_5000,f_png"))
    assert rendered.width > 0
    assert rendered.height > 0


def test_audio_only_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "tone.mp3"
    make_audio_only(path)
    with pytest.raises(UnsupportedMedia):
        snapshot(path, parse_sync("video/snapshot,t_0"))


def test_failure_after_outputs_fails_the_task(small: Path) -> None:
    """The error that stopped the task is raised as it is; what was written went through the sink."""

    class FailingSink(MemorySink):
        def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
            if len(self.objects) == 2:
                raise BadRequest("refused")
            return super().put(bucket, key, data, content_type)

    sink = FailingSink()
    with pytest.raises(BadRequest) as info:
        run_task(parse_process("video/snapshots,f_jpg,inter_500"), small, sink)
    assert str(info.value) == "refused"
    assert info.value.status == 400
    assert len(sink.objects) == 2


def test_report_ms() -> None:
    assert report_ms(Fraction(11000)) == 11000
    assert isinstance(report_ms(Fraction(11000)), int)
    assert report_ms(Fraction(100, 3)) == 33.333

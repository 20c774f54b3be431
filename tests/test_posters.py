"""Posters people want: MPS BlackLevel / PixelBlackThreshold, ``t_auto`` and ``"Time": "auto"``
(README: Request languages, posters). Parsing, the pure scoring, and the picks on synthesised clips."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MemorySink

from vidsnap.core import poster
from vidsnap.core.engine import run_task, snapshot
from vidsnap.core.errors import EC_TIME, BadRequest
from vidsnap.core.lang import parse_sync, parse_task
from vidsnap.core.plan import FirstFrame, SnapshotRequest
from vidsnap.local.synthposters import Clip, make_blur_clip, make_fade_clip, make_flash_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    d = tmp_path_factory.mktemp("posters")
    return {
        "fade": make_fade_clip(d / "fade.mp4"),
        "blur": make_blur_clip(d / "blur.mp4"),
        "flash": make_flash_clip(d / "flash.mp4"),
    }


def _mps(**config: Any) -> str:
    return json.dumps({"Input": {"Bucket": "b", "Object": "v.mp4"}, "SnapshotConfig": config})


def _imm(**snap: Any) -> str:
    snap.setdefault("Format", "jpg")
    return json.dumps({"Sources": [{"URI": "s3://b/v.mp4"}], "Targets": [{"Image": {"Snapshots": [snap]}}]})


# ---------------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    ("text", "time_ms", "auto"),
    [
        ("video/snapshot,t_auto", 0, True),
        ("video/snapshot,t_AUTO,w_320", 0, True),
        ("video/snapshot,t_auto_5000", 5000, True),
        ("video/snapshot,t_auto_0", 0, True),
        ("video/snapshot,t_7000", 7000, False),
    ],
)
def test_sync_t_auto(text: str, time_ms: int, auto: bool) -> None:
    req = parse_sync(text)
    assert (req.time_ms, req.auto) == (time_ms, auto)


@pytest.mark.parametrize("value", ["auto_", "auto_x", "autox", "auto_-1", "auto_99999999999", "auto_5_6"])
def test_sync_t_auto_errors_name_t(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_sync(f"video/snapshot,t_{value}")
    assert info.value.param == "t"
    assert info.value.ec == EC_TIME


def test_mps_black_level_parsing() -> None:
    sel = parse_task(_mps(Num=5, BlackLevel=90)).jobs[0].selection
    assert sel.first == FirstFrame("skip_black", 90, 70)
    sel = parse_task(_mps(Num="5", BlackLevel="40", PixelBlackThreshold="30")).jobs[0].selection
    assert sel.first == FirstFrame("skip_black", 40, 30)
    # Num > 1 without BlackLevel: nothing skipped; Num 1: always (default level 98).
    assert parse_task(_mps(Num=5)).jobs[0].selection.first is None
    assert parse_task(_mps(Num=1)).jobs[0].selection.first == FirstFrame("skip_black", 98, 70)
    assert parse_task(_mps(Num=1, PixelBlackThreshold=20)).jobs[0].selection.first == FirstFrame(
        "skip_black", 98, 20
    )
    # Only with Time 0.
    assert parse_task(_mps(Num=5, Time=1000, BlackLevel=90)).jobs[0].selection.first is None
    assert parse_task(_mps(Num=1, Time=1000)).jobs[0].selection.first is None


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"BlackLevel": 29}, "BlackLevel"),
        ({"BlackLevel": 101}, "BlackLevel"),
        ({"BlackLevel": 50.5}, "BlackLevel"),
        ({"BlackLevel": True}, "BlackLevel"),
        ({"PixelBlackThreshold": 256}, "PixelBlackThreshold"),
        ({"PixelBlackThreshold": -1}, "PixelBlackThreshold"),
        ({"PixelBlackThreshold": "dark"}, "PixelBlackThreshold"),
        ({"Time": "soon"}, "Time"),
    ],
)
def test_mps_poster_errors_name_the_field(config: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_task(_mps(Num=2, **config))
    assert info.value.param == param
    assert f"SnapshotConfig.{param}" in str(info.value)


def test_time_auto_parsing() -> None:
    sel = parse_task(_mps(Time="auto", Num=3)).jobs[0].selection
    assert (sel.start_ms, sel.first, sel.mode) == (Fraction(0), FirstFrame("poster"), "avg")
    sel = parse_task(_mps(Time="Auto")).jobs[0].selection
    assert (sel.num, sel.first) == (1, FirstFrame("poster"))
    sel = parse_task(_imm(StartTime="auto", Mode="interval", Interval=2)).jobs[0].selection
    assert (sel.start_ms, sel.first, sel.interval_ms) == (Fraction(0), FirstFrame("poster"), Fraction(2000))
    assert parse_task(_imm(StartTime=1.5)).jobs[0].selection.first is None


@pytest.mark.parametrize(
    ("snap", "param"),
    [
        ({"StartTime": "auto", "Mode": "dhash"}, "StartTime"),
        ({"StartTime": "soon"}, "StartTime"),
        ({"StartTime": "auto", "Mode": "scene"}, "StartTime"),
    ],
)
def test_imm_start_time_auto_errors(snap: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_task(_imm(**snap))
    assert info.value.param == param


# ---------------------------------------------------------------------------------------------------
# the pure scoring


def _detail(seed: int = 1, size: tuple[int, int] = (90, 160)) -> poster.Gray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 220, size, dtype=np.uint8)


def test_black_fraction_and_level() -> None:
    gray = np.zeros((10, 10), np.uint8)
    gray[:, :1] = 200  # 10 % bright
    assert poster.black_fraction(gray, 70) == pytest.approx(0.9)
    assert poster.is_black(gray, 89, 70)
    assert not poster.is_black(gray, 90, 70)  # "more than" 90 %
    assert not poster.is_black(gray, 30, 0)  # nothing is darker than 0


def test_sharpness_sees_blur() -> None:
    sharp = _detail()
    wide = sharp.astype(np.uint16)
    blurred = ((wide[:, :-3] + wide[:, 1:-2] + wide[:, 2:-1] + wide[:, 3:]) // 4).astype(np.uint8)
    assert poster.sharpness(sharp) > 4 * poster.sharpness(blurred)
    assert poster.sharpness(np.full((20, 20), 128, np.uint8)) == 0


def test_best_rejects_black_flat_and_transitions() -> None:
    black = np.zeros((90, 160), np.uint8)
    flat = np.full((90, 160), 128, np.uint8)
    good = _detail(2)
    assert poster.best_index([black, flat, good, good]) == 2  # ties: the earlier
    # A fade: a dimmed copy between black and the picture differs from both neighbours.
    half = (good // 2).astype(np.uint8)
    values = poster.scores([black, half, good, good])
    assert values[1] < values[2]
    # Deterministic, and one candidate is its own best.
    assert poster.scores([good, half]) == poster.scores([good, half])
    assert poster.best_index([black]) == 0
    with pytest.raises(ValueError, match="at least one"):
        poster.best_index([])


# ---------------------------------------------------------------------------------------------------
# picks on clips


def _inside(t_ms: Fraction, clip: Clip) -> bool:
    t = float(t_ms) / 1000
    return any(lo <= t < hi for lo, hi in clip.good)


@pytest.mark.parametrize("name", ["fade", "blur", "flash"])
def test_t_auto_picks_a_good_frame(clips: dict[str, Clip], name: str) -> None:
    clip = clips[name]
    rendered = snapshot(clip.path, parse_sync("video/snapshot,t_auto,w_160"))
    assert _inside(rendered.time_ms, clip), (name, rendered.time_ms)
    # Deterministic.
    again = snapshot(clip.path, parse_sync("video/snapshot,t_auto,w_160"))
    assert (again.time_ms, again.data) == (rendered.time_ms, rendered.data)


def test_t_auto_near_a_time(clips: dict[str, Clip]) -> None:
    clip = clips["fade"]
    rendered = snapshot(clip.path, SnapshotRequest(time_ms=6000, auto=True))
    assert 3000 <= rendered.time_ms < 8000
    assert _inside(rendered.time_ms, clip)
    fast = snapshot(clip.path, SnapshotRequest(time_ms=0, exact=False, auto=True))
    assert fast.time_ms % 1000 == 0  # keyframes only (one a second)
    assert _inside(fast.time_ms, clip)


def test_mps_black_level_skips_the_black_start(clips: dict[str, Clip]) -> None:
    clip = clips["fade"]
    task = parse_task(_mps(Num=3, BlackLevel=90, FrameType="normal"))
    times = [o.time_ms for o in run_task(task, clip.path, MemorySink()).outputs]
    assert 3000 < times[0] < 4000  # the first frame of the fade-in that is not black
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    # Without BlackLevel, Num > 1 starts at the black frame 0.
    plain = parse_task(_mps(Num=3, FrameType="normal"))
    assert run_task(plain, clip.path, MemorySink()).outputs[0].time_ms == 0


def test_mps_single_snapshot_always_skips_black(clips: dict[str, Clip]) -> None:
    clip = clips["fade"]
    exact = run_task(parse_task(_mps(Num=1, FrameType="normal")), clip.path, MemorySink()).outputs
    assert len(exact) == 1
    assert 3000 < exact[0].time_ms < 4000
    # FrameType intra (the default): keyframes only; the one at 3 s is black, 4 s is not.
    intra = run_task(parse_task(_mps(Num=1)), clip.path, MemorySink()).outputs
    assert [o.time_ms for o in intra] == [4000]
    # All black within 5 s (threshold 255: every pixel is darker): back to frame 0.
    dark = run_task(parse_task(_mps(Num=1, PixelBlackThreshold=255)), clip.path, MemorySink()).outputs
    assert [o.time_ms for o in dark] == [0]


def test_time_auto_task(clips: dict[str, Clip]) -> None:
    clip = clips["fade"]
    task = parse_task(_mps(Time="auto", Num=3, FrameType="normal"))
    outputs = run_task(task, clip.path, MemorySink()).outputs
    assert _inside(outputs[0].time_ms, clip)
    times = [o.time_ms for o in outputs]
    assert times == sorted(times)
    assert len(set(times)) == len(times)


def test_sdr_first_frame_untouched_by_black_check(tmp_path: Path) -> None:
    """A clip that is not black at 0: Num 1 at Time 0 still gives frame 0."""
    clip = make_blur_clip(tmp_path / "b.mp4")
    outputs = run_task(parse_task(_mps(Num=1, FrameType="normal")), clip.path, MemorySink()).outputs
    assert [o.time_ms for o in outputs] == [0]


def test_t_auto_exact_candidates_on_long_gops(tmp_path: Path) -> None:
    """With keyframes 4 s apart the candidates are exact frames (one forward decode)."""
    clip = make_fade_clip(tmp_path / "long-gop.mp4", gop=100)
    rendered = snapshot(clip.path, parse_sync("video/snapshot,t_auto,w_160"))
    assert _inside(rendered.time_ms, clip)
    assert rendered.time_ms % 1000 != 0  # not a keyframe: candidates lie at 250 + 500·k ms

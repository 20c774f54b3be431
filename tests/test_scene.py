"""The ``scene`` selection mode (README: Request languages, ``m_scene``): parsing, the pure content
measure, and shots found on synthesised clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MemorySink

from vidsnap.core import scene
from vidsnap.core.engine import run_task
from vidsnap.core.errors import BadRequest
from vidsnap.core.lang import parse_process, parse_task
from vidsnap.core.lang.oss import parse_async
from vidsnap.local.synthposters import Clip, make_fade_clip, make_shots_clip, write_rgb


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_shots_clip(tmp_path_factory.mktemp("scene") / "shots.mp4")


@pytest.fixture(scope="module")
def fade(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_fade_clip(tmp_path_factory.mktemp("scene") / "fade.mp4")


def _imm(**snap: Any) -> str:
    snap.setdefault("Format", "jpg")
    return json.dumps({"Sources": [{"URI": "s3://b/v.mp4"}], "Targets": [{"Image": {"Snapshots": [snap]}}]})


def _times(process: str, clip: Clip) -> list[float]:
    outcome = run_task(parse_async(process), clip.path, MemorySink())
    return [float(o.time_ms) / 1000 for o in outcome.outputs]


# ---------------------------------------------------------------------------------------------------
# parsing


def test_parse_scene() -> None:
    sel = (
        parse_task(json.dumps({"Key": "v.mp4", "Process": "video/snapshots,f_jpg,m_SCENE,best_1"}))
        .jobs[0]
        .selection
    )
    assert (sel.mode, sel.pick_best) == ("scene", True)
    sel = (
        parse_task(json.dumps({"Key": "v.mp4", "Process": "video/snapshots,f_jpg,m_scene,best_0"}))
        .jobs[0]
        .selection
    )
    assert (sel.mode, sel.pick_best) == ("scene", False)
    sel = parse_task(_imm(Mode="scene", PickBest=True, Threshold=40, Number=3)).jobs[0].selection
    assert (sel.mode, sel.pick_best, sel.threshold, sel.num) == ("scene", True, 40, 3)
    assert parse_task(_imm(Mode="interval", PickBest=False)).jobs[0].selection.pick_best is False


@pytest.mark.parametrize(
    "process",
    [
        "video/snapshots,f_jpg,m_dhash,best_1",
        "video/snapshots,f_jpg,best_1",
        "video/snapshots,f_jpg,m_scene,best_2",
    ],
)
def test_best_errors_name_best(process: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_process(process)
    assert info.value.param == "best"


@pytest.mark.parametrize(
    ("snap", "param"),
    [
        ({"Mode": "dhash", "PickBest": True}, "PickBest"),
        ({"Mode": "scene", "PickBest": 1}, "PickBest"),
        ({"Mode": "cuts"}, "Mode"),
    ],
)
def test_imm_scene_errors(snap: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_task(_imm(**snap))
    assert info.value.param == param


# ---------------------------------------------------------------------------------------------------
# the pure measure


def test_hsv_matches_opencv_convention() -> None:
    rgb = np.array(
        [[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [128, 128, 128], [0, 0, 0]]], np.uint8
    )
    h, s, v = scene.hsv(rgb)
    assert h[0].tolist() == pytest.approx([0, 60, 120, 30, 0, 0])
    assert s[0].tolist() == pytest.approx([255, 255, 255, 255, 0, 0])
    assert v[0].tolist() == pytest.approx([255, 255, 255, 255, 128, 0])


def test_content_change_and_shot_starts() -> None:
    red = scene.hsv(np.full((4, 4, 3), (200, 0, 0), np.uint8))
    navy = scene.hsv(np.full((4, 4, 3), (0, 0, 128), np.uint8))
    assert scene.content_change(red, red) == 0
    assert scene.content_change(red, navy) == scene.content_change(navy, red) > 27
    assert scene.is_dark(scene.hsv(np.full((4, 4, 3), 8, np.uint8)))
    assert not scene.is_dark(navy)
    samples = [
        scene.Sample(None, True),  # opens dark
        scene.Sample(5, False),  # fade-in: the first shot
        scene.Sample(3, False),
        scene.Sample(80, False),  # a cut
        scene.Sample(60, True),  # a cut to black: no shot
        scene.Sample(2, False),  # out of black: a shot
        scene.Sample(20, False),  # below the threshold
    ]
    assert scene.shot_starts(samples, 27) == [
        (1, scene.FIRST_SCORE, "first"),
        (3, 80, "cut"),
        (5, scene.FADE_SCORE, "fade"),
    ]


# ---------------------------------------------------------------------------------------------------
# on clips


def test_every_cut_and_no_false_one(shots: Clip) -> None:
    assert _times("video/snapshots,f_jpg,m_scene", shots) == [0.0, *shots.cuts]
    # Sampled every second or every frame: the same shots, each found to its first frame.
    assert _times("video/snapshots,f_jpg,m_scene,inter_1000", shots) == [0.0, *shots.cuts]
    assert _times("video/snapshots,f_jpg,m_scene,inter_40", shots) == [0.0, *shots.cuts]


def test_dhash_is_not_enough(shots: Clip) -> None:
    """dhash either misses cuts (a colour change with a like gray layout) or reports motion."""
    for thr in (0, 10, 30):
        found = _times(f"video/snapshots,f_jpg,m_dhash,thr_{thr}", shots)
        assert found != [0.0, *shots.cuts]


def test_scene_num_and_pick_best(shots: Clip) -> None:
    three = _times("video/snapshots,f_jpg,m_scene,num_3", shots)
    assert len(three) == 3
    assert three[0] == 0
    assert set(three) <= {0.0, *shots.cuts}
    best = _times("video/snapshots,f_jpg,m_scene,best_1", shots)
    bounds = [0.0, *shots.cuts, 12.0]
    assert len(best) == 6
    for t, lo, hi in zip(best, bounds, bounds[1:], strict=False):
        assert lo <= t < hi


def test_fade_in_starts_a_shot(fade: Clip) -> None:
    found = _times("video/snapshots,f_jpg,m_scene", fade)
    assert len(found) == 1  # black, then one panning shot: the pan is no cut
    assert 3.0 < found[0] < 3.3


def test_all_dark_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "black.mp4"
    write_rgb(path, iter([np.zeros((64, 64, 3), np.uint8)] * 10), size=(64, 64), fps=10, gop=10)
    outcome = run_task(parse_async("video/snapshots,f_jpg,m_scene"), path, MemorySink())
    assert outcome.outputs == []
    assert any("no shot" in w for w in outcome.warnings)

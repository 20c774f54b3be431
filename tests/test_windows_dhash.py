"""Unranked dhash across windows: a count pass per window, the counts settled into the plan, then
each window run on its chosen frames; merged, the same keys, bytes, ``{index}``, TimeMs and
warnings as one pass (also across window edges right after a cut, where the sample before the
window decides)."""

from __future__ import annotations

import dataclasses
import json
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conftest import CountingSink, plan_of, saved_as

from vidsnap.core.engine import Outcome, count_window, run_task, run_window
from vidsnap.core.errors import BadRequest, NotSupportedYet
from vidsnap.core.plan import Limits, Task
from vidsnap.core.windows import Counted, Window, WindowPlan, merge_windows, settle
from vidsnap.local import synth


def summary(outcome: Outcome) -> tuple[Any, ...]:
    return ([(o.uri, o.time_ms, o.width, o.height, o.size) for o in outcome.outputs], outcome.warnings)


def json_round(data: Any) -> Any:
    return json.loads(json.dumps(data))


@pytest.fixture(scope="module")
def cut_at_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s, a keyframe every second, cuts at 1 s and 3 s: windows start right after a cut (1 s,
    3 s) and where nothing changes (2 s, 4 s)."""
    path = tmp_path_factory.mktemp("dhash") / "cut_at_keys.mp4"
    synth.make_video(path, duration_s=5, gop=25, bframes=2, width=160, height=90, scene_cuts=[1.0, 3.0])
    return path


@pytest.fixture(scope="module", params=["mp4_cuts", "gops", "mp4_long_gop", "mp4_vfr", "cut_at_keys"])
def clip(request: pytest.FixtureRequest, gops: Path, cut_at_keys: Path, make_media: Any) -> Path:
    if request.param == "gops":
        return gops
    if request.param == "cut_at_keys":
        return cut_at_keys
    return Path(make_media(request.param).path)


def settled(task: Task, source: Path, plan: WindowPlan, limits: Limits | None = None) -> WindowPlan:
    """The count pass over every window (each on its own video), handed over as JSON, settled."""
    limits = limits or Limits()
    assert plan.needs_count
    counts = []
    for window in plan.windows:
        counted = count_window(task, source, window, limits=limits)
        plain = json_round([None if c is None else c.plain() for c in counted])
        counts.append([None if c is None else Counted.from_plain(c) for c in plain])
    result = settle(plan, counts, task, max_frames=limits.max_frames)
    assert not result.needs_count
    again = WindowPlan.from_plain(json_round(result.plain()))
    assert again == result
    return again


def run_windows(
    task: Task, source: Path, plan: WindowPlan, sink: CountingSink, limits: Limits | None = None
) -> Outcome:
    task = Task.from_plain(json_round(task.plain()))
    windows = [Window.from_plain(json_round(w.plain())) for w in plan.windows]
    assert windows == list(plan.windows)
    outcomes = [run_window(task, source, sink, w, totals=plan.totals, limits=limits) for w in windows]
    return merge_windows(outcomes)


def check_one_pass(task: Task, source: Path, count: int, limits: Limits | None = None) -> WindowPlan:
    one = CountingSink()
    single = run_task(task, source, one, limits=limits)
    plan = plan_of(task, source, count=count, **({"max_frames": limits.max_frames} if limits else {}))
    ready = settled(task, source, plan, limits)
    assert sum(ready.totals) == len(single.outputs)
    many = CountingSink()
    merged = run_windows(task, source, ready, many, limits)
    assert summary(merged) == summary(single)
    assert many.objects == one.objects
    assert sorted(many.puts) == sorted(one.puts)  # no frame is written by two windows
    return ready


@pytest.mark.parametrize("thr", [0, 5, 30])
@pytest.mark.parametrize("count", [2, 3, 5])
def test_dhash_windows_merged_write_what_one_pass_writes(clip: Path, thr: int, count: int) -> None:
    task = saved_as((f"video/snapshots,f_jpg,m_dhash,inter_100,thr_{thr}", "d/{index}.{autoext}"))
    plan = check_one_pass(task, clip, count)
    if clip.name in ("gops.mp4", "cut_at_keys.mp4"):
        assert len(plan.windows) == count


@pytest.mark.parametrize(
    "process", ["m_dhash,thr_20", "m_dhash,ss_700,inter_300,thr_10", "m_dhash,inter_250,thr_5"]
)
def test_dhash_windows_of_other_samplings(clip: Path, process: str) -> None:
    """The default step (1 s), a start, and MPS intra frames (the keyframe at or before each sample)."""
    task = saved_as((f"video/snapshots,f_jpg,{process}", "d/{index}.{autoext}"))
    if process.endswith("thr_5"):
        task = Task(
            jobs=tuple(
                dataclasses.replace(j, selection=dataclasses.replace(j.selection, exact=False))
                for j in task.jobs
            )
        )
    check_one_pass(task, clip, 3)


def test_the_sample_before_a_window_scores_its_first_sample(cut_at_keys: Path) -> None:
    """Windows start at the cuts (1 s, 3 s) and between them (2 s, 4 s): the first sample of a
    window after a cut is selected, the first of a window where nothing changes is not."""
    task = saved_as(("video/snapshots,f_jpg,m_dhash,inter_100,thr_30", "d/{index}.{autoext}"))
    plan = check_one_pass(task, cut_at_keys, 5)
    starts = {int(w.start_ms): w.chosen[0] for w in plan.windows}
    assert set(starts) == {0, 1000, 2000, 3000, 4000}
    assert starts[1000] is not None
    assert starts[1000][:1] == (Fraction(1000),)
    assert starts[3000] is not None
    assert starts[3000][:1] == (Fraction(3000),)
    assert starts[2000] == starts[4000] == ()


@pytest.mark.parametrize("count", [2, 3, 5])
def test_mixed_tasks_of_dhash_and_interval_jobs(gops: Path, make_media: Any, count: int) -> None:
    task = saved_as(
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/snapshots,f_jpg,m_dhash,inter_100,thr_5", "d/{index}.{autoext}"),
        ("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),
    )
    for source in (gops, Path(make_media("mp4_cuts").path)):
        plan = check_one_pass(task, source, count)
        assert [c is None for c in plan.windows[0].chosen] == [True, False, True]


def test_a_dhash_window_run_twice_writes_the_same_keys(gops: Path) -> None:
    task = saved_as(("video/snapshots,f_jpg,m_dhash,inter_100,thr_0", "d/{index}.{autoext}"))
    plan = settled(task, gops, plan_of(task, gops, count=3))
    window = plan.windows[1]
    first, again = CountingSink(), CountingSink()
    a = run_window(task, gops, first, window, totals=plan.totals)
    b = run_window(task, gops, again, window, totals=plan.totals)
    assert first.puts == again.puts
    assert first.objects == again.objects
    assert summary(a[0]) == summary(b[0])
    assert first.puts[0] == f"d/{window.before[0] + 1}.jpg"


def test_a_dhash_plan_runs_only_once_counted(gops: Path) -> None:
    task = saved_as(("video/snapshots,f_jpg,m_dhash,inter_100,thr_5", "d/{index}.{autoext}"))
    plan = plan_of(task, gops, count=2)
    assert plan.needs_count
    assert plan.totals == (0,)
    with pytest.raises(ValueError, match="count pass"):
        run_window(task, gops, CountingSink(), plan.windows[1], totals=plan.totals)
    assert not plan_of(
        saved_as(("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}")), gops, count=2
    ).needs_count


@pytest.mark.parametrize(("max_frames", "thr"), [(7, 0), (40, 0), (59, 0), (60, 0), (3, 30)])
@pytest.mark.parametrize("count", [2, 5])
def test_a_dhash_job_above_the_frame_limit_is_cut_as_one_pass_cuts_it(
    gops: Path, max_frames: int, thr: int, count: int
) -> None:
    """inter_100 over 6 s: 60 samples, all selected at thr 0; the warning comes from the last window."""
    task = saved_as((f"video/snapshots,f_jpg,m_dhash,inter_100,thr_{thr}", "d/{index}.{autoext}"))
    limits = Limits(max_frames=max_frames)
    plan = check_one_pass(task, gops, count, limits)
    assert plan.totals[0] <= max_frames


def test_jobs_after_a_dhash_job_share_the_frame_limit_as_one_pass(gops: Path) -> None:
    limits = Limits(max_frames=30)
    # Skipped: the dhash job takes every frame left; the num job keeps what it set aside.
    task = saved_as(
        ("video/snapshots,f_jpg,m_dhash,inter_100,thr_0", "d/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_700,num_3", "n/{index}.{autoext}"),
    )
    plan = check_one_pass(task, gops, 3, limits)
    assert plan.totals == (27, 0, 3)
    # Cut where the dhash counts decide: refused.
    few = saved_as(
        ("video/snapshots,f_jpg,m_dhash,inter_100,thr_30", "d/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_200", "a/{index}.{autoext}"),
    )
    with pytest.raises(NotSupportedYet, match="MAX_FRAMES"):
        settled(few, gops, plan_of(few, gops, count=3, max_frames=30), limits)


@pytest.mark.parametrize(
    ("process", "param"),
    [("video/snapshots,f_jpg,m_dhash,inter_100,thr_5,num_3", "num"), ("video/snapshots,f_jpg,m_scene", "m")],
)
def test_ranked_dhash_and_scene_are_refused(gops: Path, process: str, param: str) -> None:
    with pytest.raises(NotSupportedYet) as raised:
        plan_of(saved_as((process, "x/{index}.{autoext}")), gops, count=2)
    assert raised.value.param == param


def test_counts_that_do_not_fit_the_plan_are_a_bad_request(gops: Path) -> None:
    task = saved_as(("video/snapshots,f_jpg,m_dhash,inter_100,thr_5", "d/{index}.{autoext}"))
    plan = plan_of(task, gops, count=2)
    with pytest.raises(BadRequest):
        settle(plan, [[Counted(())]], task)
    with pytest.raises(BadRequest):
        settle(plan, [[None], [None]], task)
    for bad in (
        None,
        {"Times": ["2", "1"], "Ended": False},
        {"Times": ["-1"], "Ended": False},
        {"Times": [1], "Ended": False},
        {"Times": [], "Ended": 0},
    ):
        with pytest.raises(BadRequest):
            Counted.from_plain(bad)
    with pytest.raises(BadRequest):
        Window.from_plain({**plan.windows[0].plain(), "Chosen": [["1"], None]})
    with pytest.raises(BadRequest):
        WindowPlan.from_plain({"Windows": [], "Totals": []})


def test_a_stream_ending_before_its_claimed_duration_warns_as_one_pass(tmp_path: Path) -> None:
    """2 s of video whose Matroska header claims 6 s: the window where the stream ends is scored
    again (not decoded from its chosen times), so that it says so as one pass does."""
    real = tmp_path / "real.mkv"
    synth.make_video(real, duration_s=2, width=64, height=64, gop=10, bframes=0)
    data = real.read_bytes()
    i = data.find(b"\x44\x89\x88")  # Segment Info Duration: an 8-byte float in ms
    assert i > 0
    path = tmp_path / "claims.mkv"
    path.write_bytes(data[: i + 3] + struct.pack(">d", 6000.0) + data[i + 11 :])
    task = saved_as(("video/snapshots,f_jpg,m_dhash,inter_100,thr_5", "d/{index}.{autoext}"))
    plan = check_one_pass(task, path, 3)
    assert plan.windows[-1].chosen == (None,)
    single = run_task(task, path, CountingSink())
    assert any("header claims" in w for w in single.warnings)

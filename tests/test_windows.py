"""Windows of a long task: cut at keyframes, run separately, merged into the single-pass outcome.

Each window runs on its own opened video (as a separate invocation would); merged, the windows
write the same keys and bytes, with the same ``{index}`` numbers, TimeMs and warnings, as one pass.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conftest import CountingSink, handed_over, plan_of

from vidsnap.core.engine import Outcome, open_video, run_task, run_window
from vidsnap.core.errors import BadRequest, NotSupportedYet
from vidsnap.core.lang import parse_process
from vidsnap.core.plan import Limits, Task
from vidsnap.core.windows import Window, WindowPlan, merge_windows, plan_windows


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def task_of(*parts: tuple[str, str], intra: bool = False) -> Task:
    """A task of (process, key template) jobs; ``intra``: the keyframe at or before each planned
    time (MPS ``FrameType`` intra)."""
    jobs = tuple(
        j
        for process, template in parts
        for j in parse_process(f"{process}|sys/saveas,o_{b64(template)}").jobs
    )
    if intra:
        jobs = tuple(
            dataclasses.replace(j, selection=dataclasses.replace(j.selection, exact=False)) for j in jobs
        )
    return Task(jobs=jobs)


def summary(outcome: Outcome) -> tuple[Any, ...]:
    return ([(o.uri, o.time_ms, o.width, o.height, o.size) for o in outcome.outputs], outcome.warnings)


@pytest.fixture(scope="module", params=["gops", "mp4_long_gop", "mp4_cuts", "mp4_vfr", "mp4_offset"])
def clip(request: pytest.FixtureRequest, gops: Path, make_media: Any) -> Path:
    if request.param == "gops":
        return gops
    return Path(make_media(request.param).path)


CASES = {
    "inter": (("video/snapshots,f_jpg,inter_200", "a/{index}.{autoext}"),),
    "inter_ss_num": (("video/snapshots,f_jpg,ss_700,inter_300,num_9", "a/{index}.{autoext}"),),
    "intra": (("video/snapshots,f_jpg,inter_250", "i/{index}.{autoext}"),),
    "intra_avg": (("video/snapshots,f_jpg,m_avg,num_12", "j/{index}.{autoext}"),),
    "avg": (("video/snapshots,f_jpg,m_avg,num_13", "v/{index}.{autoext}"),),
    "key": (("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),),
    "key_ss": (("video/snapshots,f_jpg,ss_900,m_key", "q/{index}.{autoext}"),),
    "jobs_ss": (
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/snapshots,f_jpg,ss_900,m_key", "q/{index}.{autoext}"),
    ),
    "inter_exact": (("video/snapshots,f_jpg,inter_250,m_inter", "e/{index}.{autoext}"),),
    "overwrite": (("video/snapshots,f_jpg,inter_500", "same.{autoext}"),),
    "jobs": (
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_700,num_3", "n/{index}.{autoext}"),
        ("video/snapshots,f_jpg,m_avg", "v/{index}.{autoext}"),
    ),
}
#: Cases run with MPS intra frames.
INTRA = {"intra", "intra_avg"}


def case(name: str) -> Task:
    return task_of(*CASES[name], intra=name in INTRA)


def run_windows(task: Task, source: Path, plan: WindowPlan, sink: CountingSink) -> Outcome:
    """Every window on its own video (as its own invocation would), merged."""
    # Handed over as an invocation gets them: as JSON.
    task, windows = handed_over(task, plan)
    outcomes = [run_window(task, source, sink, w, totals=plan.totals) for w in windows]
    return merge_windows(outcomes)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("count", [2, 3, 5])
def test_windows_merged_write_what_one_pass_writes(clip: Path, name: str, count: int) -> None:
    task = case(name)
    one = CountingSink()
    single = run_task(task, clip, one)
    assert single.outputs
    assert single.warnings or name != "overwrite"
    plan = plan_of(task, clip, count=count)
    # Fewer windows when the index has fewer keyframes or the frames lie in fewer GOPs.
    assert 1 <= len(plan.windows) <= count
    if clip.name == "gops.mp4" and name in ("inter", "key", "jobs"):
        assert len(plan.windows) == count
    assert sum(plan.totals) == len(single.outputs)
    many = CountingSink()
    merged = run_windows(task, clip, plan, many)
    assert summary(merged) == summary(single)
    assert many.objects == one.objects
    assert sorted(many.puts) == sorted(one.puts)  # no frame is written by two windows


def test_a_window_run_twice_writes_the_same_keys(gops: Path) -> None:
    task = task_of(*CASES["inter"])
    plan = plan_of(task, gops, count=3)
    window = plan.windows[1]
    first, again = CountingSink(), CountingSink()
    a = run_window(task, gops, first, window, totals=plan.totals)
    b = run_window(task, gops, again, window, totals=plan.totals)
    assert first.puts == again.puts
    assert first.objects == again.objects
    assert summary(a[0]) == summary(b[0])
    assert a[0].stopped is not None  # the job goes on in the next window
    assert not a[0].warnings


@pytest.mark.parametrize("name", list(CASES))
def test_windows_cover_the_video_and_start_at_keyframes(clip: Path, name: str) -> None:
    task = case(name)
    with open_video(clip, bulk=True) as video:
        keyframes = {p.pts: p.time_ms for p in video.keyframes()}
        for count in (2, 3, 5, 50):
            plan = plan_windows(video, task, count=count)
            windows = plan.windows
            assert windows[0].start_ms == 0
            assert windows[-1].end_ms is None
            for w, following in itertools.pairwise(windows):
                assert w.end_ms == following.start_ms
                assert w.start_ms < following.start_ms
            for w in windows[1:]:
                assert keyframes.get(w.start_pts) == w.start_ms
            assert [w.index for w in windows] == list(range(len(windows)))
            assert sum(w.cost for w in windows) == plan.cost > 0


def test_windows_by_cost_stay_under_the_cost_given(gops: Path) -> None:
    task = task_of(*CASES["inter"])
    whole = plan_of(task, gops, count=1)
    assert len(whole.windows) == 1
    plan = plan_of(task, gops, max_cost=whole.cost // 3)
    assert len(plan.windows) >= 3
    assert all(w.cost <= whole.cost // 3 for w in plan.windows)
    assert plan.cost == whole.cost
    sink, one = CountingSink(), CountingSink()
    assert summary(run_windows(task, gops, plan, sink)) == summary(run_task(task, gops, one))
    assert sink.objects == one.objects


@pytest.mark.parametrize(
    ("process", "param"),
    [
        ("video/snapshots,f_jpg,m_dhash,inter_100,thr_5,num_3", "num"),
        ("video/snapshots,f_jpg,m_scene", "m"),
        ("video/snapshots,f_jpg,inter_0", "inter"),
    ],
)
def test_what_is_not_windowed_is_refused_with_a_reason(gops: Path, process: str, param: str) -> None:
    task = task_of((process, "x/{index}.{autoext}"))
    with pytest.raises(NotSupportedYet) as raised:
        plan_of(task, gops, count=2)
    assert raised.value.param == param


def test_a_task_reaching_the_frame_limit_is_not_windowed(gops: Path) -> None:
    task = task_of(*CASES["inter"])
    with pytest.raises(NotSupportedYet, match="MAX_FRAMES"):
        plan_of(task, gops, count=2, max_frames=Limits(max_frames=10).max_frames)


def test_a_window_of_the_middle_writes_the_frames_of_its_span_only(gops: Path) -> None:
    task = task_of(*CASES["inter"])
    plan = plan_of(task, gops, count=3)
    window = plan.windows[1]
    assert window.end_ms is not None
    outcome = run_window(task, gops, CountingSink(), window, totals=plan.totals)[0]
    assert outcome.outputs
    assert all(window.start_ms <= o.time_ms < window.end_ms for o in outcome.outputs)
    first = outcome.outputs[0].uri.rsplit("/", 1)[1]
    assert first == f"{window.before[0] + 1}.jpg"
    assert window.start_ms > Fraction(0)


@pytest.mark.parametrize("media", ["ts_open_gop", "mkv"])
def test_media_without_keyframes_in_its_index_is_one_window(make_media: Any, media: str) -> None:
    """MPEG-TS has no index; this Matroska file has one cue (its first keyframe)."""
    source = Path(make_media(media).path)
    task = case("inter")
    plan = plan_of(task, source, count=3)
    assert len(plan.windows) == 1
    one, sink = CountingSink(), CountingSink()
    assert summary(run_windows(task, source, plan, sink)) == summary(run_task(task, source, one))
    assert sink.objects == one.objects


def test_a_job_with_no_frame_before_a_window_after_its_start_resumes_there(gops: Path) -> None:
    task = case("jobs_ss")
    plan = plan_of(task, gops, count=5)
    resumed = [w for w in plan.windows if w.before[1] == 0 and w.start_ms > 900]
    assert resumed  # the key job starts at 900 ms; its first keyframe is at 1200 ms
    position = resumed[0].starts(task)[1]
    assert position is not None
    assert position.count == 0


@pytest.mark.parametrize(
    "plain",
    [
        None,
        [],
        {"Index": 0},
        {"Index": "0", "StartMs": "0", "EndMs": None, "StartPts": 0, "Before": [], "Cost": 1},
        {"Index": 1, "StartMs": "1/0", "EndMs": None, "StartPts": 0, "Before": [], "Cost": 1},
        {"Index": 1, "StartMs": "x", "EndMs": None, "StartPts": 0, "Before": [], "Cost": 1},
        {"Index": -1, "StartMs": "0", "EndMs": None, "StartPts": 0, "Before": [], "Cost": 1},
        {"Index": 1, "StartMs": "0", "EndMs": None, "StartPts": 0, "Before": [-2], "Cost": 1},
        {"Index": 1, "StartMs": "0", "EndMs": None, "StartPts": 0, "Before": [True], "Cost": 1},
    ],
)
def test_a_window_that_is_not_one_is_a_bad_request(plain: Any) -> None:
    with pytest.raises(BadRequest) as err:
        Window.from_plain(plain)
    assert err.value.param == "window"

"""A window that runs out of time stops between frames and the next attempt resumes it there: the
attempts at every window, joined and merged, write what one pass writes, and no frame twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CountingSink, handed_over, plan_of, saved_as, stop_every

from vidsnap.core.engine import Outcome, Position, count_window, run_task, run_window_part
from vidsnap.core.plan import Task, from_plain, to_plain
from vidsnap.core.windows import Window, WindowPlan, joined, merge_windows, settle

CASES = {
    "inter": (("video/snapshots,f_jpg,inter_200", "a/{index}.{autoext}"),),
    "key": (("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),),
    "jobs": (
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/sprite,inter_300,w_64,h_36,tw_2,th_2,f_jpg", "s/{index}.{autoext}"),
        ("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),
        ("video/snapshots,f_jpg,m_avg,num_7", "v/{index}.{autoext}"),
    ),
    "dhash": (("video/snapshots,f_jpg,m_dhash,inter_120,thr_3", "d/{index}.{autoext}"),),
}


def in_attempts(  # noqa: PLR0913 (the window, where it runs, and how often it stops)
    task: Task, source: Path, sink: CountingSink, window: Window, *, totals: Any, every: int
) -> tuple[list[Outcome], int]:
    """Every attempt at ``window`` until it is done, each stopped after about ``every`` frames; the
    joined outcomes (through JSON, as a window's item keeps them) and the number of attempts."""
    earlier: list[Outcome] = []
    resume: Position | None = None
    for attempt in range(1, 200):
        part = run_window_part(
            task, source, sink, window, totals=totals, resume=resume, should_stop=stop_every(every)
        )
        first = resume.job if resume is not None else 0
        outcomes = joined(earlier, part.outcomes, first)
        earlier = [from_plain(Outcome, json.loads(json.dumps(to_plain(o)))) for o in outcomes]
        if part.stopped is None:
            return earlier, attempt
        assert part.stopped != resume, "an attempt made no progress"
        resume = from_plain(Position, json.loads(json.dumps(to_plain(part.stopped))))
    raise AssertionError("the window never finished")


def settled(task: Task, source: Path, plan: WindowPlan) -> WindowPlan:
    if not plan.needs_count:
        return plan
    counts = [count_window(task, source, w) for w in plan.windows]
    return settle(plan, counts, task)


@pytest.fixture(scope="module")
def cuts(make_media: Any) -> Path:
    return Path(make_media("mp4_cuts").path)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("every", [2, 5])
def test_windows_stopped_and_resumed_write_what_one_pass_writes(
    gops: Path, cuts: Path, name: str, every: int
) -> None:
    source = cuts if name == "dhash" else gops
    task = saved_as(*CASES[name])
    one = CountingSink()
    single = run_task(task, source, one)
    plan = settled(task, source, plan_of(task, source, count=3))
    assert len(plan.windows) >= 2
    task, windows = handed_over(task, plan)
    many = CountingSink()
    attempts = 0
    outcomes = []
    for window in windows:
        joined_outcomes, n = in_attempts(task, source, many, window, totals=plan.totals, every=every)
        outcomes.append(joined_outcomes)
        attempts += n
    if name != "key":  # a keyframe or two per window: nothing to stop between
        assert attempts > len(windows)  # some windows did stop and resume
    merged = merge_windows(outcomes)
    assert [(o.uri, o.time_ms, o.size) for o in merged.outputs] == [
        (o.uri, o.time_ms, o.size) for o in single.outputs
    ]
    assert [(c.uri, c.times_ms) for c in merged.compositions] == [
        (c.uri, c.times_ms) for c in single.compositions
    ]
    assert merged.warnings == single.warnings
    assert many.objects == one.objects
    if name != "jobs":  # a sheet in progress is composed again by the attempt that resumes it
        assert sorted(many.puts) == sorted(one.puts)  # no frame written twice


def test_a_window_that_is_never_asked_to_stop_is_one_attempt(gops: Path) -> None:
    task = saved_as(*CASES["inter"])
    plan = plan_of(task, gops, count=2)
    part = run_window_part(task, gops, CountingSink(), plan.windows[0], totals=plan.totals)
    assert part.stopped is None
    assert part.outcomes[0].outputs

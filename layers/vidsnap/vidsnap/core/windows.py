"""Windows of a long task (docs/LONG_TASKS.md, windows): the video cut at keyframes into spans that
separate invocations run side by side, and their outcomes merged into the single-pass outcome.

A window is ``[start_ms, end_ms)`` starting at a keyframe. A frame belongs to the window its planned
time falls in: the frame shown at a time before a keyframe is before it (exact frames and the
keyframe at or before a time alike), so no frame is in two windows. A window knows how many frames
each job writes before it from the planned times alone (no decoding), which is what makes its
``{index}`` numbers those of one pass; that holds for ``inter`` (a step of at least one frame, exact
or intra), ``avg`` and ``key``. The cost of a window is the one that decides seeks
(:meth:`Video.runs`, :meth:`Video.run_cost`) over the planned times inside it.

Unranked ``dhash`` (``num`` 0) is windowed in two passes, because which samples it selects is known
only by decoding them. Its selection is local (each sample is scored against the sample before it,
so a window needs only the sample before its start), but how many frames the windows before a
window select is not. A plan holding such jobs :attr:`~WindowPlan.needs_count`: each window is
first counted (:func:`vidsnap.core.engine.count_window`: the planned times of the samples it
selects, nothing rendered), then :func:`settle` sums the counts into every window's ``before`` and
the totals, and hands each window its chosen times, so that running it
(:func:`vidsnap.core.engine.run_window`) decodes only those frames instead of scoring every sample
again. ``MAX_FRAMES`` holds over the whole task: a dhash job selecting more is cut short as one pass
cuts it, with the same warning (see :func:`settle`).

Compositions are windowed too. No window splits a sprite sheet or an animation: a cut moves on
from its keyframe to the first place where every job's frames before it fill whole sheets and
none or all of an animation's; that is a keyframe, or the frame of the first tile of a sheet,
where the window starts inside a GOP (it decodes from the keyframe before). A window then writes
whole sheets numbered as one pass numbers them, and an animation whose frames are all in it.
Thumbnail tracks list all the frames of their job: :func:`finish` writes them from the windows'
outcomes as it merges them.

Not windowed (refused with :class:`NotSupportedYet`): ranked ``dhash`` (``num`` > 0) and ``scene``
(ranking and shots need every sample), ``dhash`` jobs that compose (their sheets would need the
counts before the cut is placed), every frame (``inter`` below one frame interval), a first frame
chosen by ``BlackLevel`` / ``t_auto``, and tasks that reach ``MAX_FRAMES`` through other jobs than
dhash.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from vidsnap.core.decode import Picked, Video
from vidsnap.core.decode.stream import StreamDescription
from vidsnap.core.errors import BadRequest, NotSupportedYet
from vidsnap.core.naming import output_key
from vidsnap.core.plan import DEFAULT_MAX_FRAMES, Selection, SnapshotJob, SourceRef, Task
from vidsnap.core.writer import Composition, Outcome, Output, Position, Sink, write_track

__all__ = ["Counted", "Window", "WindowPlan", "finish", "joined", "merge_windows", "plan_windows", "settle"]

#: ``avg`` without ``num`` (as :data:`vidsnap.core.select.DEFAULT_AVG_NUM`; not imported: select
#: pulls the decoders' thread pool in).
_DEFAULT_AVG_NUM = 10
#: ``dhash`` without ``inter`` (as :data:`vidsnap.core.select.DEFAULT_DHASH_INTERVAL_MS`).
_DEFAULT_DHASH_INTERVAL_MS = Fraction(1000)


@dataclass(frozen=True)
class Window:
    """One window of a task: ``[start_ms, end_ms)`` (``end_ms`` None: to the end of the video).

    It starts at the keyframe of pts ``start_pts`` (the first window: at 0), or, for a task with
    sprite sheets, possibly at the frame of pts ``start_pts`` that is a sheet's first tile (decoding
    from the keyframe before it); ``before`` says, per
    job, how many frames one pass writes before it (its first frame is ``{index}`` before + 1).
    ``cost``: decoding work inside it, in ticks of presentation time (:meth:`Video.run_cost`).

    ``chosen``: empty until :func:`settle` (a plan with dhash jobs is not run before); then per job
    the planned times of the frames a dhash job takes in this window (decoded without scoring the
    samples again), or None (not a dhash job; or a dhash window whose samples are scored again).
    """

    index: int
    start_ms: Fraction
    end_ms: Fraction | None
    start_pts: int
    before: tuple[int, ...]
    cost: int
    chosen: tuple[tuple[Fraction, ...] | None, ...] = ()

    def plain(self) -> dict[str, Any]:
        """The window as JSON types (times as exact ``"num/den"`` text), to hand it to the
        invocation that runs it; :meth:`from_plain` reverses it."""
        plain: dict[str, Any] = {
            "Index": self.index,
            "StartMs": str(self.start_ms),
            "EndMs": None if self.end_ms is None else str(self.end_ms),
            "StartPts": self.start_pts,
            "Before": list(self.before),
            "Cost": self.cost,
        }
        if self.chosen:
            plain["Chosen"] = [_times_plain(times) for times in self.chosen]
        return plain

    @classmethod
    def from_plain(cls, data: Any) -> Window:
        """The window :meth:`plain` rendered; :class:`BadRequest` for anything else."""
        try:
            end = data["EndMs"]
            window = cls(
                _integer(data["Index"]),
                Fraction(str(data["StartMs"])),
                None if end is None else Fraction(str(end)),
                _integer(data["StartPts"]),
                tuple(_integer(n) for n in data["Before"]),
                _integer(data["Cost"]),
                tuple(_times_from_plain(times) for times in data.get("Chosen", ())),
            )
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise BadRequest(f"not a window of a task: {exc}", param="window") from exc
        if window.index < 0 or window.start_ms < 0 or any(n < 0 for n in window.before):
            raise BadRequest("not a window of a task: negative index, time or count", param="window")
        if window.chosen and len(window.chosen) != len(window.before):
            raise BadRequest(
                "not a window of a task: chosen times for another number of jobs", param="window"
            )
        return window

    def starts(self, task: Task) -> tuple[Position | None, ...]:
        """Where each job of ``task`` resumes to run this window (None: from its beginning).

        A resumed job goes on after a frame that one pass wrote before the window (``count`` of
        them); the pts just before the window's first frame stands for it, so the first frame
        taken is the first of the window."""
        if self.index == 0:
            return tuple(None for _ in task.jobs)
        return tuple(
            None
            if count == 0 and self.start_ms <= job.selection.start_ms
            else Position(number, count=count, pts=self.start_pts - 1, time_ms=self.start_ms)
            for number, (job, count) in enumerate(zip(task.jobs, self.before, strict=True))
        )


@dataclass(frozen=True)
class WindowPlan:
    """The windows of a task, in time order, and the frames each job writes in all.

    ``counted``: the jobs (by number) whose frames only decoding tells (unranked dhash): until
    :func:`settle` fills them in (and empties ``counted``), their ``before`` and totals are 0 and
    the windows cannot run."""

    windows: tuple[Window, ...]
    totals: tuple[int, ...]
    counted: tuple[int, ...] = ()
    #: The video's duration: where a thumbnail track's last cue ends (:func:`finish`).
    duration_ms: Fraction = Fraction(0)

    @property
    def cost(self) -> int:
        """The decoding work of the whole task (the windows' costs summed)."""
        return sum(w.cost for w in self.windows)

    @property
    def needs_count(self) -> bool:
        """True when the windows must be counted (:func:`vidsnap.core.engine.count_window`, then
        :func:`settle`) before they run."""
        return bool(self.counted)

    def plain(self) -> dict[str, Any]:
        """The plan as JSON types (its windows as :meth:`Window.plain`), to hand it to the steps that
        settle, merge and finish the windows; :meth:`from_plain` reverses it."""
        return {
            "Windows": [w.plain() for w in self.windows],
            "Totals": list(self.totals),
            "Counted": list(self.counted),
            "DurationMs": str(self.duration_ms),
        }

    @classmethod
    def from_plain(cls, data: Any) -> WindowPlan:
        """The plan :meth:`plain` rendered; :class:`BadRequest` for anything else."""
        try:
            windows = tuple(Window.from_plain(w) for w in data["Windows"])
            totals = tuple(_integer(n) for n in data["Totals"])
            counted = tuple(_integer(n) for n in data.get("Counted", ()))
            duration = Fraction(str(data["DurationMs"]))
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise BadRequest(f"not a plan of windows: {exc}", param="window") from exc
        if not windows or any(len(w.before) != len(totals) for w in windows):
            raise BadRequest("not a plan of windows: no window, or windows of other jobs", param="window")
        if any(n < 0 for n in totals) or duration < 0:
            raise BadRequest("not a plan of windows: a negative count or duration", param="window")
        return cls(windows, totals, counted, duration)


@dataclass(frozen=True)
class Counted:
    """What the count pass found in one window for one dhash job: the planned times of the samples
    it selects there, in order (at most ``MAX_FRAMES`` + 1: no task takes more); ``ended``: the
    stream ended early in the window (its header claims more), which one pass warns about, so that
    window's samples are scored again when it runs rather than decoded from ``times``."""

    times: tuple[Fraction, ...]
    ended: bool = False

    def plain(self) -> dict[str, Any]:
        """As JSON types (times as exact ``"num/den"`` text); :meth:`from_plain` reverses it."""
        return {"Times": _times_plain(self.times), "Ended": self.ended}

    @classmethod
    def from_plain(cls, data: Any) -> Counted:
        """The count :meth:`plain` rendered; :class:`BadRequest` for anything else."""
        try:
            times = _times_from_plain(data["Times"])
            ended = data["Ended"]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise BadRequest(f"not a count of a window: {exc}", param="window") from exc
        if times is None or type(ended) is not bool:
            raise BadRequest("not a count of a window: no times, or Ended not a boolean", param="window")
        return cls(times, ended)


@dataclass(frozen=True)
class _JobPlan:
    """A job's planned times and the frame each shows (a key: equal keys are one frame), and the
    times its decoding is costed on (intra and ``key``: each keyframe once)."""

    times: list[Fraction]
    frames: list[int]
    num: int
    costed: list[Fraction]
    #: ``key``: the frames are the index's keyframes; ``intra``: the keyframe at or before each time
    #: (both known by the pts the index places them at); ``exact``: places on the frame grid.
    kind: Literal["key", "intra", "exact"]


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _times_plain(times: Sequence[Fraction] | None) -> list[str] | None:
    return None if times is None else [str(t) for t in times]


def _times_from_plain(data: Any) -> tuple[Fraction, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise TypeError(f"expected a list of times, got {data!r}")
    times = tuple(Fraction(t) for t in data)
    if any(t < 0 for t in times) or any(a >= b for a, b in itertools.pairwise(times)):
        raise ValueError("times must be ascending and not negative")
    return times


def _refuse(job: SnapshotJob, video: Video, number: int) -> None:
    sel = job.selection
    what = f"job {number + 1}"
    if sel.mode == "scene" or (sel.mode == "dhash" and sel.num > 0):
        raise NotSupportedYet(
            f"{what}: m_{sel.mode}"
            + (" with num" if sel.mode == "dhash" else "")
            + " is not split into windows (its ranking needs every sample's score)",
            param="num" if sel.mode == "dhash" else "m",
        )
    if sel.mode == "dhash" and job.composes:
        raise NotSupportedYet(
            f"{what}: m_dhash with compositions is not split into windows (where its sheets start is "
            "known only once the windows are counted)",
            param="m",
        )
    if sel.first is not None:
        raise NotSupportedYet(f"{what}: a searched first frame is not split into windows", param="ss")
    interval = video.frame_interval_ms
    if sel.mode == "inter" and (sel.interval_ms <= 0 or interval is None or sel.interval_ms < interval):
        raise NotSupportedYet(
            f"{what}: every frame (inter below one frame) is not split into windows", param="inter"
        )


def _steps(start: Fraction, step: Fraction, end: Fraction) -> Iterator[Fraction]:
    t = start
    while t < end:
        yield t
        t += step


def _key_pts(desc: StreamDescription) -> list[int]:
    """The keyframes' pts from the container's index (ascending)."""
    return [k + desc.dts_shift for k in desc.key_ts]


def _planned(desc: StreamDescription, sel: Selection, max_frames: int) -> _JobPlan:
    """The planned times of a selection as :mod:`vidsnap.core.select` makes them, each with the
    frame it shows: a keyframe's pts (``key``, intra), or the frame's place on the nominal frame
    grid (exact frames of a constant-rate video)."""
    duration = desc.duration_ms
    times: Iterator[Fraction]
    if sel.mode == "key":
        keys = [p for p in _key_pts(desc) if desc.time_ms(p) >= sel.start_ms]
        times_of_keys = [desc.time_ms(p) for p in keys]
        return _JobPlan(times_of_keys, keys, sel.num, times_of_keys, "key")
    if sel.mode == "avg":
        n = sel.num or _DEFAULT_AVG_NUM
        span = max(Fraction(0), duration - sel.start_ms)
        times = (sel.start_ms + i * span / n for i in range(n))
    elif sel.mode == "dhash":
        # The samples scored: which of them are selected only decoding tells (see settle).
        step = sel.interval_ms if sel.interval_ms > 0 else _DEFAULT_DHASH_INTERVAL_MS
        times = _steps(sel.start_ms, step, duration)
    else:
        times = _steps(sel.start_ms, sel.interval_ms, duration)
    ticks = max(1, desc.interval_ticks)
    planned: list[Fraction] = []
    frames: list[int] = []
    distinct = 0
    for t in times:
        target = desc.target(t)
        key = desc.keyframe_before(target) if not sel.exact else None
        frame = key if key is not None else (target - desc.start_pts) // ticks
        if not frames or frames[-1] != frame:
            if 0 < sel.num <= distinct:
                break  # select caps the job at num: nothing after is decoded
            distinct += 1
            if distinct > max_frames and sel.mode != "dhash":
                raise NotSupportedYet("a task that reaches MAX_FRAMES is not split into windows", param="num")
        planned.append(t)
        frames.append(frame)
    if sel.exact:
        return _JobPlan(planned, frames, sel.num, planned, "exact")
    return _JobPlan(
        planned, frames, sel.num, [desc.time_ms(k) for k, _ in itertools.groupby(frames)], "intra"
    )


def _distinct(frames: Sequence[int], num: int) -> int:
    count = sum(1 for _ in itertools.groupby(frames))
    return min(count, num) if num > 0 else count


def _gop_costs(video: Video, keys: Sequence[int], jobs: Sequence[_JobPlan]) -> list[int]:
    """The decoding work of each GOP (from keyframe ``keys[g]`` to the next) over all jobs."""
    desc = video.description
    costs = [0] * max(1, len(keys))
    for job in jobs:
        gops = [max(0, bisect.bisect_right(keys, desc.target(t)) - 1) for t in job.costed]
        for g, group in itertools.groupby(zip(gops, job.costed, strict=True), key=lambda x: x[0]):
            times = [t for _, t in group]
            costs[g] += sum(video.run_cost(times[r.start : r.stop]) for r in video.runs(times))
    return costs


def _cuts(costs: Sequence[int], count: int | None, max_cost: int | None) -> list[int]:
    """The GOPs that start a window (GOP 0 always): ``count`` windows of about equal cost, or
    windows of at most ``max_cost`` each (a GOP above it alone)."""
    total = sum(costs)
    cuts = [0]
    acc = 0  # cost of the GOPs before g
    current = 0  # cost of the window under way
    for g, cost in enumerate(costs):
        if count is not None:
            # Cut where the k-th share of the cost falls nearest: in the first half of GOP g.
            due = len(cuts) < count and acc > 0 and (2 * acc + cost) * count >= 2 * len(cuts) * total
        else:
            due = max_cost is not None and current > 0 and current + cost > max_cost
        if g > 0 and due:
            cuts.append(g)
            current = 0
        acc += cost
        current += cost
    return cuts


def plan_windows(
    video: Video,
    task: Task,
    *,
    count: int | None = None,
    max_cost: int | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> WindowPlan:
    """Cut ``task`` on ``video`` into windows aligned to keyframes: ``count`` windows of about equal
    decoding cost, or as few as keep each at or below ``max_cost`` (ticks of presentation time, as
    :meth:`Video.run_cost`). Fewer windows when the video has fewer keyframes; one when it has no
    keyframe index. Raises :class:`NotSupportedYet` for what cannot be windowed (module docstring).
    ``max_frames``: the task's ``MAX_FRAMES`` (a task reaching it is refused: the cut depends on
    the jobs' order)."""
    if (count is None) == (max_cost is None):
        raise ValueError("give a number of windows or a maximal cost per window")
    for number, job in enumerate(task.jobs):
        _refuse(job, video, number)
    desc = video.description
    jobs = [_planned(desc, job.selection, max_frames) for job in task.jobs]
    counted = tuple(n for n, job in enumerate(task.jobs) if job.selection.mode == "dhash")
    # dhash jobs count 0 until settled.
    totals = tuple(0 if n in counted else _distinct(j.frames, j.num) for n, j in enumerate(jobs))
    if sum(totals) > max_frames:
        raise NotSupportedYet("a task that reaches MAX_FRAMES is not split into windows", param="num")
    indexed = desc.key_ts and not desc.is_cover_art and not desc.numbered_in_order
    keys = sorted({p for p in _key_pts(desc) if p > desc.start_pts}) if indexed else []
    keys = [desc.start_pts, *keys]
    costs = _gop_costs(video, keys, jobs)
    cuts = _cuts(costs, count, max_cost)
    if any(_composes(job) for job in task.jobs):
        composed = _composed_windows(video, task, jobs, keys=keys, cuts=cuts, costs=costs)
        return WindowPlan(tuple(composed), totals, counted, desc.duration_ms)
    found = _starts(video, [keys[g] for g in cuts[1:]], keys)
    index = _key_pts(desc)  # the places intra frames are known by
    bounds = [cuts[0], *(g for g, start in zip(cuts[1:], found, strict=True) if start is not None)]
    starts = [(desc.start_pts, Fraction(0), desc.start_pts), *(start for start in found if start is not None)]
    windows: list[Window] = []
    for i, (g, (pts, start_ms, key)) in enumerate(zip(bounds, starts, strict=True)):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(costs)
        end_ms = starts[i + 1][1] if i + 1 < len(starts) else None
        previous = index[max(0, bisect.bisect_left(index, key) - 1)] if index else key
        before = tuple(0 if n in counted else _before(j, start_ms, key, previous) for n, j in enumerate(jobs))
        windows.append(Window(i, start_ms, end_ms, pts, before, sum(costs[g:end])))
    return WindowPlan(tuple(windows), totals, counted, desc.duration_ms)


def _before(job: _JobPlan, start_ms: Fraction, key: int, previous: int) -> int:
    """The frames ``job`` writes before a window starting at ``start_ms``, at the keyframe the index
    places at ``key`` (``previous``: the keyframe before it): keyframes of ``key`` mode by their
    place in the index, other frames by their planned times (the frame shown at a time before a
    keyframe is before it)."""
    if job.kind == "key":
        return _distinct([f for f in job.frames if f < key], job.num)
    frames = [f for t, f in zip(job.times, job.frames, strict=True) if t < start_ms]
    if job.kind == "intra":
        # A time just before the window's keyframe shows the keyframe before it, also where the
        # index places that keyframe before the time.
        frames = [previous if f >= key else f for f in frames]
    return _distinct(frames, job.num)


def _first_keyframe(video: Video, t: Fraction) -> Picked | None:
    """The first keyframe at or after ``t``, decoded (None: there is none)."""
    frames = video.keyframes(t)
    try:
        return next(frames, None)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _starts(video: Video, cuts: Sequence[int], keys: Sequence[int]) -> list[tuple[int, Fraction, int] | None]:
    """(pts, time, index pts) of the keyframe each window starts at. The index places keyframes
    only approximately (DTS + the first keyframe's reorder delay; off by a frame or two where the
    delay varies), so the first keyframe at or after the index's place is decoded (one frame each)
    for its real pts; ``keys`` (the index's places) tell which one it is. None for a keyframe at
    or before the one before it."""
    desc = video.description
    starts: list[tuple[int, Fraction, int] | None] = []
    last = desc.start_pts
    for key in cuts:
        picked = _first_keyframe(video, desc.time_ms(key))
        if picked is None or picked.pts <= last or picked.time_ms <= 0:
            starts.append(None)
            continue
        last = picked.pts
        starts.append((picked.pts, picked.time_ms, min(keys, key=lambda k: abs(k - picked.pts))))
    return starts


def settle(
    plan: WindowPlan,
    counts: Sequence[Sequence[Counted | None]],
    task: Task,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> WindowPlan:
    """The plan ready to run, from the count pass of each of its windows (in window order; per job,
    :func:`vidsnap.core.engine.count_window`'s answer): each dhash job's ``before`` in every window
    is the sum of what the windows before it select, its total the sum of all, and each window gets
    the planned times of the frames it takes (``Window.chosen``).

    ``MAX_FRAMES`` (``max_frames``, as given to :func:`plan_windows`) holds over the whole task, with
    each job's share as one pass gives it (``num`` of later jobs set aside, earlier jobs' frames
    spent). A dhash job selecting more than its share is cut short as one pass cuts it: the frame
    past the cut is listed where it falls and in the last window too, so that the window writing
    it, and the last window (whose warnings are the job's), stop there with one pass's warning. A
    job after it that is left fewer frames than it plans but some is refused (:class:`NotSupportedYet`:
    where it stops depends on the dhash counts, not planned); one left none is skipped, with one
    pass's warning, by every window."""
    if len(counts) != len(plan.windows) or any(len(c) != len(task.jobs) for c in counts):
        raise BadRequest("the counts do not match the windows and jobs of the task", param="window")
    for number, job in enumerate(task.jobs):
        dhash = number in plan.counted
        if any((c[number] is None) == dhash for c in counts):
            raise BadRequest(
                f"job {number + 1}: counts given for other jobs than the dhash ones", param="window"
            )
        if dhash != (job.selection.mode == "dhash") and plan.counted:
            raise BadRequest("the plan is not one of this task", param="window")
    if not plan.counted:
        return plan
    found = {n: [t for c in counts for t in _counted(c[n]).times] for n in plan.counted}
    totals = _totals(plan, found, task, max_frames)
    cut = {n for n, times in found.items() if len(times) > totals[n] > 0}
    windows: list[Window] = []
    offsets = dict.fromkeys(found, 0)  # frames the dhash jobs select before the window
    last = len(plan.windows) - 1
    for w, (window, count) in enumerate(zip(plan.windows, counts, strict=True)):
        before = list(window.before)
        chosen: list[tuple[Fraction, ...] | None] = [None] * len(task.jobs)
        for number, times in found.items():
            counted = _counted(count[number])
            offset = offsets[number]
            before[number] = min(offset, totals[number])
            # The frames the window takes, and the one that tells a cut job it is cut.
            mine = counted.times[: max(0, totals[number] + 1 - offset)]
            if number in cut and w == last and offset > totals[number]:
                mine = (times[totals[number]],)
            if counted.ended and number not in cut:
                chosen[number] = None  # scored again: the window warns where the stream ends
            else:
                chosen[number] = tuple(mine)
            offsets[number] = offset + len(counted.times)
        windows.append(dataclasses.replace(window, before=tuple(before), chosen=tuple(chosen)))
    return WindowPlan(tuple(windows), tuple(totals), (), plan.duration_ms)


def _totals(plan: WindowPlan, found: dict[int, list[Fraction]], task: Task, max_frames: int) -> list[int]:
    """The frames each job writes in all, as one pass shares ``max_frames`` (the engine's
    FrameBudget): a job without num may use what neither earlier jobs wrote nor later jobs asked
    for; ``found``: the dhash jobs' selected times."""
    totals = list(plan.totals)
    for number, job in enumerate(task.jobs):
        later = sum(max(0, j.selection.num) for j in task.jobs[number + 1 :])
        allowed = max_frames - sum(totals[:number]) - later
        if job.selection.num > 0:
            allowed = min(job.selection.num, allowed)
        if number in found:
            totals[number] = max(0, min(len(found[number]), allowed))
        elif allowed <= 0:
            totals[number] = 0  # skipped in every window, as one pass skips it
        elif totals[number] > allowed:
            raise NotSupportedYet(
                f"job {number + 1}: a task whose dhash jobs leave a later job fewer frames than it plans "
                "(MAX_FRAMES) is not split into windows",
                param="num",
            )
    return totals


def _counted(count: Counted | None) -> Counted:
    assert count is not None  # checked by settle
    return count


def joined(earlier: Sequence[Outcome], later: Sequence[Outcome], first: int) -> list[Outcome]:
    """One window's outcomes from two attempts at it (:func:`vidsnap.core.engine.run_window_part`):
    ``earlier`` (its jobs up to the one it stopped in), then ``later`` (which began at job
    ``first``). Per job, the outputs, compositions and warnings of both in order; where the job
    goes on after the window, as the later attempt says for the jobs it ran."""
    outcomes: list[Outcome] = []
    for number, new in enumerate(later):
        old = earlier[number] if number < len(earlier) else Outcome()
        outcomes.append(
            Outcome(
                outputs=old.outputs + new.outputs,
                warnings=old.warnings + new.warnings,
                compositions=old.compositions + new.compositions,
                stopped=new.stopped if number >= first else old.stopped,
            )
        )
    return outcomes


def merge_windows(outcomes: Sequence[Sequence[Outcome]]) -> Outcome:
    """The single-pass outcome of a task from its windows' outcomes (each: one :class:`Outcome`
    per job, as :func:`vidsnap.core.engine.run_window` returns them), given in window order.

    A job's outputs are its windows' in order; its warnings come from the last window (only the
    window that ends a job says what one pass says at its end: earlier windows stop inside it)."""
    merged = Outcome()
    if not outcomes:
        return merged
    for number in range(len(outcomes[0])):
        for window in outcomes:
            merged.outputs += window[number].outputs
            merged.compositions += window[number].compositions
        merged.warnings += outcomes[-1][number].warnings
    return merged


# -- compositions ------------------------------------------------------------------------------------
#
# A sprite sheet is composed in memory and written whole, an animation needs all its frames at once:
# so windows of a task with compositions are cut only where each sheet and animation lies wholly on
# one side. A cut planned at a keyframe moves on to the first place at or after it that is allowed:
# a keyframe, or the frame of the first tile of a sheet (then the window starts inside a GOP: it
# decodes from the keyframe before that frame, and the window before stops just before the frame).
# Thumbnail tracks list every frame of their job: :func:`finish` writes them from the windows' outcomes.


def _composes(job: SnapshotJob) -> bool:
    return job.sprite is not None or job.track is not None or job.animation is not None


def _per_sheet(job: SnapshotJob) -> int:
    return job.sprite.columns * job.sprite.rows if job.sprite is not None else 0


def _whole(job: SnapshotJob, total: int, before: int) -> bool:
    """A window starting after ``before`` of the job's ``total`` frames splits none of its sheets
    and not its animation."""
    if before in (0, total):
        return True
    if job.animation is not None:
        return False
    per = _per_sheet(job)
    return per == 0 or before % per == 0


def _before_inside(job: _JobPlan, start_ms: Fraction, key: int) -> int:
    """The frames ``job`` writes before a window that starts at the frame shown at ``start_ms``,
    inside the GOP of the keyframe the index places at ``key``: exact frames by their planned times
    (a time at or after a frame's own shows it or a later one), keyframes (``key`` mode, intra) up
    to that GOP's (the one shown at the window's first times is before the window)."""
    if job.kind == "exact":
        return _distinct([f for t, f in zip(job.times, job.frames, strict=True) if t < start_ms], job.num)
    return _distinct([f for f in job.frames if f <= key], job.num)


def _candidates(
    desc: StreamDescription, task: Task, jobs: Sequence[_JobPlan], keys: Sequence[int]
) -> list[tuple[Fraction, bool | None]]:
    """Where a window may start, in time order: the keyframes (None) and the planned time of each
    sheet's first tile (with the exactness of its job's frames)."""
    places: set[tuple[Fraction, bool | None]] = {(desc.time_ms(k), None) for k in keys[1:]}
    for job, plan in zip(task.jobs, jobs, strict=True):
        per = _per_sheet(job)
        if per == 0:
            continue
        firsts = [t for i, (t, _) in enumerate(_firsts(plan)) if i and i % per == 0]
        places.update((t, plan.kind == "exact") for t in firsts)
    return sorted(places, key=lambda place: (place[0], place[1] is not None))


def _firsts(plan: _JobPlan) -> list[tuple[Fraction, int]]:
    """(first planned time, frame) of each distinct frame of a job, in order."""
    out: list[tuple[Fraction, int]] = []
    for t, f in zip(plan.times, plan.frames, strict=True):
        if not out or out[-1][1] != f:
            if 0 < plan.num <= len(out):
                break
            out.append((t, f))
    return out


def _nearest(index: Sequence[int], pts: int) -> int:
    return min(index, key=lambda k: abs(k - pts)) if index else pts


def _resolve(
    video: Video, place: tuple[Fraction, bool | None], jobs: Sequence[_JobPlan], index: Sequence[int]
) -> tuple[int, Fraction, tuple[int, ...]] | None:
    """(pts, time, frames before per job) of a window starting at ``place``: the keyframe at or
    after it (None: no keyframe), or the frame shown at a tile's planned time (decoded, with the
    keyframe before it, for their real pts)."""
    t, exact = place
    if exact is None:
        picked = _first_keyframe(video, t)
        if picked is None:
            return None
        key = picked
    else:
        picked = video.frame_at(t, exact=exact)
        key = video.frame_at(picked.time_ms, exact=False) if exact else picked
    at = _nearest(index, key.pts)
    if key.pts == picked.pts:
        previous = index[max(0, bisect.bisect_left(index, at) - 1)] if index else at
        return picked.pts, picked.time_ms, tuple(_before(j, picked.time_ms, at, previous) for j in jobs)
    return picked.pts, picked.time_ms, tuple(_before_inside(j, picked.time_ms, at) for j in jobs)


def _composed_windows(  # noqa: PLR0913
    video: Video,
    task: Task,
    jobs: Sequence[_JobPlan],
    *,
    keys: Sequence[int],
    cuts: Sequence[int],
    costs: Sequence[int],
) -> list[Window]:
    """The windows of a task with compositions: each cut at a keyframe moved on to the first place
    from there (and before the next cut) where no sheet or animation is split (see above)."""
    desc = video.description
    index = _key_pts(desc)
    totals = [_distinct(j.frames, j.num) for j in jobs]

    def allowed(before: Sequence[int]) -> bool:
        return all(_whole(job, total, n) for job, total, n in zip(task.jobs, totals, before, strict=True))

    places = _candidates(desc, task, jobs, keys)
    # The first planned time of each distinct frame: the frames planned before a time, by bisection
    # (tried at every place between two cuts).
    firsts = [[t for t, _ in _firsts(j)] for j in jobs]

    def nominal(start_ms: Fraction) -> list[int]:
        return [bisect.bisect_left(times, start_ms) for times in firsts]

    starts: list[tuple[int, Fraction, tuple[int, ...]]] = [
        (desc.start_pts, Fraction(0), tuple(0 for _ in jobs))
    ]
    limits = [desc.time_ms(keys[g]) for g in cuts[1:]]
    for i, cut_ms in enumerate(limits):
        until = limits[i + 1] if i + 1 < len(limits) else None
        for place in places[bisect.bisect_left(places, cut_ms, key=lambda p: p[0]) :]:
            if until is not None and place[0] >= until:
                break
            if place[0] <= starts[-1][1] or not allowed(nominal(place[0])):
                continue
            start = _resolve(video, place, jobs, index)
            if start is not None and start[1] > starts[-1][1] and allowed(start[2]):
                starts.append(start)
                break
    gops = [max(0, bisect.bisect_right(keys, desc.target(ms)) - 1) for _, ms, _ in starts]
    windows: list[Window] = []
    for i, (pts, start_ms, before) in enumerate(starts):
        last = i + 1 == len(starts)
        end_ms = None if last else starts[i + 1][1]
        cost = sum(costs[gops[i] : len(costs) if last else gops[i + 1]])
        windows.append(Window(i, start_ms, end_ms, pts, before, cost))
    return windows


def finish(
    task: Task, plan: WindowPlan, outcomes: Sequence[Sequence[Outcome]], sink: Sink, *, source_ref: SourceRef
) -> Outcome:
    """The single-pass outcome of ``task`` from its windows' ``outcomes`` (as :func:`merge_windows`
    takes them, which it calls): also writes what no window can, and puts it in its place.

    What it writes: the WebVTT thumbnail track of each job that has one (MPS ``Format: vtt``, with
    or without ``IsSptFrag``), under the key one pass writes it to, with the same bytes: its cues
    are the job's frames at the times the windows wrote them, the last one ending at the video's end
    (``plan.duration_ms``), pointing at the job's images or at its tiles on its sheets (keys from
    the key templates and ``source_ref``, as the windows named them); in the outcome, after the
    job's sheets and before its animation. Nothing else: sheets, images and animations are written
    by the windows. For a task without a track this is :func:`merge_windows`.
    """
    merged = merge_windows(outcomes)
    if not any(job.track is not None for job in task.jobs):
        return merged
    done = Outcome(warnings=merged.warnings, stopped=merged.stopped)
    for number, job in enumerate(task.jobs):
        images = [o for window in outcomes for o in window[number].outputs]
        made = [c for window in outcomes for c in window[number].compositions]
        sheets = [c for c in made if c.kind == "sprite"]
        animation = [c for c in made if c.kind == "animation"]
        done.outputs += images
        done.compositions += sheets
        if job.track is not None and (images or sheets or animation):
            done.compositions.append(
                _track(
                    job,
                    images=images,
                    sheets=sheets,
                    animation=animation,
                    plan=plan,
                    sink=sink,
                    ref=source_ref,
                )
            )
        done.compositions += animation
    return done


def _track(  # noqa: PLR0913
    job: SnapshotJob,
    *,
    images: Sequence[Output],
    sheets: Sequence[Composition],
    animation: Sequence[Composition],
    plan: WindowPlan,
    sink: Sink,
    ref: SourceRef,
) -> Composition:
    """The track of ``job``, written from what its windows wrote."""
    times: Sequence[Fraction]
    if images:
        times = [o.time_ms for o in images]
    elif sheets:
        times = [t for s in sheets for t in s.times_ms]
    else:
        times = [t for a in animation for t in a.times_ms]
    image_keys = [
        output_key(job.output.key_template, index=i, ext=job.image.format, source=ref)
        for i in range(1, len(images) + 1)
    ]
    sprite = job.sprite
    sheet_keys = (
        [
            output_key(sprite.output.key_template, index=n, ext=sprite.format, source=ref)
            for n in range(1, len(sheets) + 1)
        ]
        if sprite is not None
        else []
    )
    tiles = [t for s in sheets for t in s.tiles]
    return write_track(
        job,
        ref,
        sink,
        times=times,
        end_ms=plan.duration_ms,
        image_keys=image_keys,
        sheet_keys=sheet_keys,
        tiles=tiles,
    )

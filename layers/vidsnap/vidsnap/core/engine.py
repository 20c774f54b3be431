"""Execute a normalised plan against a source: the one place where decoding, selection, imaging and
naming meet. No AWS here: outputs go to a :class:`Sink`, sources are paths or seekable file objects.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, BinaryIO

import av

from vidsnap.core.decode import Picked, Video, cpu_cores, decoder_threads
from vidsnap.core.errors import BadRequest, UndecodableMedia
from vidsnap.core.imaging import Geometry, plan_geometry, render
from vidsnap.core.naming import frames_overwrite
from vidsnap.core.plan import (
    CONTENT_TYPES,
    ComposeRequest,
    ImageSpec,
    SnapshotJob,
    SnapshotRequest,
    SourceRef,
    Task,
    report_ms,
)

# Re-exported (explicit aliases, for mypy): callers hand the engine its limits and sink and read
# its outcome.
from vidsnap.core.plan import Limits as Limits  # noqa: PLC0414
from vidsnap.core.writer import JobWriter, RenderedFrame, render_frame
from vidsnap.core.writer import Outcome as Outcome  # noqa: PLC0414
from vidsnap.core.writer import Output as Output  # noqa: PLC0414
from vidsnap.core.writer import Position as Position  # noqa: PLC0414
from vidsnap.core.writer import Sink as Sink  # noqa: PLC0414

if TYPE_CHECKING:
    from concurrent.futures import Future

    from vidsnap.core.windows import Counted, Window

# Imported where used, not here: the one-snapshot path (CLI `run`, function URL) never needs
# selection or the render thread pool, and every millisecond of import is on its clock.

Source = str | os.PathLike[str] | BinaryIO
#: What a synchronous surface answers with one image (or one track, or one animation).
SyncRequest = SnapshotRequest | ComposeRequest
#: Frames decoded ahead of the one being written (each holds a decoded picture and its RGB copy).
_RENDER_AHEAD = 2
Progress = Callable[[float], None]
#: Asked between frames: True when the task should stop now and hand the rest to a later attempt.
ShouldStop = Callable[[], bool]


def open_video(
    source: Source, limits: Limits | None = None, *, bulk: bool = False, threads: int | None = None
) -> Video:
    """A :class:`Video` on ``source`` held to ``limits`` (``threads``: its decoder's own)."""
    limits = limits or Limits()
    return Video(
        source,
        bulk=bulk,
        max_source_pixels=limits.max_source_pixels,
        decode_budget_frames=limits.decode_budget_frames,
        threads=threads,
    )


@dataclass(frozen=True)
class Rendered:
    """One synchronous snapshot: the encoded image and what it shows."""

    data: bytes
    content_type: str
    width: int
    height: int
    time_ms: Fraction


def snapshot(source: Source, req: SyncRequest, *, limits: Limits | None = None) -> Rendered:
    """Render what a synchronous request asks for: the single frame of a ``video/snapshot``, or the
    one sheet, track or animation of a ``video/sprite`` / ``video/animation``."""
    limits = limits or Limits()
    with open_video(source, limits) as video:
        return _snapshot_of(video, req, limits)


def _snapshot_of(video: Video, req: SyncRequest, limits: Limits) -> Rendered:
    if isinstance(req, ComposeRequest):
        return _compose_of(video, req, limits)
    picked = _poster(video, req) if req.auto else video.frame_at(req.time_ms, exact=req.exact)
    geometry = _geometry(video, picked, req.image, limits)
    data = render(picked.frame, geometry, req.image.format)
    return Rendered(data, req.image.content_type, geometry.width, geometry.height, picked.time_ms)


class _MemorySink:
    """Keeps what a synchronous composition writes, to answer it instead of storing it."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:  # noqa: ARG002
        self.data[key] = data
        return key


def _compose_of(video: Video, req: ComposeRequest, limits: Limits) -> Rendered:
    """One sheet (``video/sprite``), its storyboard track (``f_vtt``) or one animation, answered."""
    if req.track:
        from vidsnap.core.storyboard import storyboard_track  # storyboard tracks only

        tile = plan_geometry(
            video.coded_width,
            video.coded_height,
            video.sample_aspect_ratio,
            video.rotation,
            req.job.image,
            max_pixels=limits.max_pixels,
        )
        data = storyboard_track(req, tile, video.duration_ms, max_tiles=limits.max_frames)
        return Rendered(data, CONTENT_TYPES["vtt"], 0, 0, Fraction(0))
    sink = _MemorySink()
    outcome = Outcome()
    budget = FrameBudget(limits.max_frames, reserved=0)
    check_limits(Task(jobs=(req.job,)), limits)
    _run_job(
        video,
        req.job,
        SourceRef(key="sync"),
        sink,
        limits=limits,
        outcome=outcome,
        progress=None,
        part=(0, 1),
        budget=budget,
    )
    if not outcome.compositions:
        raise UndecodableMedia("no frame selected: " + "; ".join(outcome.warnings or ["nothing to compose"]))
    made = outcome.compositions[0]  # a sprite answers its first sheet (the request holds one)
    fmt = (
        req.job.sprite.format if req.job.sprite else req.job.animation.format if req.job.animation else "jpg"
    )
    return Rendered(sink.data[made.uri], CONTENT_TYPES[fmt], made.width, made.height, made.times_ms[0])


def _poster(video: Video, req: SnapshotRequest) -> Picked:
    """``t_auto``: the best poster frame near the start, or near ``t_auto_<ms>``."""
    from vidsnap.core.select import poster_frame, poster_window  # t_auto only

    lo, hi = poster_window(video, Fraction(req.time_ms) if req.time_ms else None)
    return poster_frame(video, lo, hi, keyonly=not req.exact)


@dataclass
class _OpenVideo:
    video: Video
    source: Source
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        self.video.close()
        _close_source(self.source)


class OpenVideos:
    """Videos kept open between requests of a warm process (a Lambda container), per object version.

    A second request for the same object version reuses the opened container: no probing, no
    index to read again, the decoder positioned where the last request left it (the same frame
    again costs nothing, a later one in the same GOP decodes forward) and the source's own block
    cache (an :class:`~vidsnap.aws.s3io.S3RangeReader` keeps the blocks it fetched), so a warm repeat
    reads nothing from S3. ``version`` must change whenever the bytes may have (for S3: bucket,
    key, ETag, version id); the caller gets it from a cheap HEAD. At most ``capacity`` videos stay
    open (least recently used closed first). A video in use by another thread is not shared: that
    request opens its own, closed afterwards. Decoding errors drop the entry.

    Under concurrent requests (the local server runs each in a thread), at most ``max_decodes``
    snapshots decode at once (default: one per core); the others wait for a slot. Decoding is
    CPU-bound, so more at once only multiplies open decoders, their threads and their pictures: 50
    concurrent requests held 50 decoders of FFmpeg's cores + 1 threads each. A video
    opened while others decode gets a share of the cores for its decoder's threads
    (:func:`~vidsnap.core.decode.decoder_threads`), so the threads in use stay about one per core.
    """

    def __init__(self, capacity: int = 1, *, max_decodes: int | None = None) -> None:
        self.capacity = max(1, capacity)
        self.max_decodes = max(1, max_decodes if max_decodes is not None else cpu_cores())
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, _OpenVideo] = collections.OrderedDict()
        self._slots = threading.BoundedSemaphore(self.max_decodes)
        self._decoding = 0  # snapshots holding a slot (guarded by _lock)

    def snapshot(
        self,
        version: Hashable,
        open_source: Callable[[], Source],
        req: SyncRequest,
        *,
        limits: Limits | None = None,
        reuse: Callable[[Source], None] | None = None,
    ) -> tuple[Rendered, int]:
        """:func:`snapshot` on the object ``version``; also returns the source bytes read for it.

        ``open_source`` opens the source when no open video of that version is free. ``reuse``
        readies a kept source for this request before it reads again (a reader of a presigned URL
        takes the request's own URL: the one it was opened with may have expired). The byte count
        is read from the source's ``bytes_read`` counter (0 for sources without one). Waits while
        ``max_decodes`` snapshots are decoding.
        """
        with self._slots:
            with self._lock:
                self._decoding += 1
            try:
                return self._snapshot(version, open_source, req, limits or Limits(), reuse)
            finally:
                with self._lock:
                    self._decoding -= 1

    def _snapshot(
        self,
        version: Hashable,
        open_source: Callable[[], Source],
        req: SyncRequest,
        limits: Limits,
        reuse: Callable[[Source], None] | None,
    ) -> tuple[Rendered, int]:
        with self._lock:
            entry = self._entries.get(version)
            if entry is not None and entry.lock.acquire(blocking=False):
                self._entries.move_to_end(version)
            else:
                entry = None
        if entry is None:
            return self._snapshot_new(version, open_source, req, limits)
        try:
            if reuse is not None:
                reuse(entry.source)
            before = _bytes_read(entry.source)
            rendered = _snapshot_of(entry.video, req, limits)
            return rendered, _bytes_read(entry.source) - before
        except BaseException:
            self._drop(version, entry)
            raise
        finally:
            entry.lock.release()

    def _snapshot_new(
        self, version: Hashable, open_source: Callable[[], Source], req: SyncRequest, limits: Limits
    ) -> tuple[Rendered, int]:
        source = open_source()
        with self._lock:
            sharing = self._decoding
        try:
            video = open_video(source, limits, threads=decoder_threads(sharing))
        except BaseException:
            _close_source(source)
            raise
        entry = _OpenVideo(video, source)
        entry.lock.acquire()
        try:
            rendered = _snapshot_of(video, req, limits)
            read = _bytes_read(source)
        except BaseException:
            entry.close()
            raise
        finally:
            entry.lock.release()
        self._keep(version, entry)
        return rendered, read

    def _keep(self, version: Hashable, entry: _OpenVideo) -> None:
        evicted: list[_OpenVideo] = []
        with self._lock:
            if version in self._entries:
                evicted.append(entry)  # another request kept one meanwhile: keep the older
            else:
                self._entries[version] = entry
                while len(self._entries) > self.capacity:
                    evicted.append(self._entries.popitem(last=False)[1])
        for old in evicted:
            with old.lock:  # wait for a request still using it
                old.close()

    def _drop(self, version: Hashable, entry: _OpenVideo) -> None:
        with self._lock:
            if self._entries.get(version) is entry:
                del self._entries[version]
        entry.close()

    def close(self) -> None:
        """Close every open video (idempotent)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            with entry.lock:
                entry.close()


def _close_source(source: Source) -> None:
    close = getattr(source, "close", None)
    if callable(close) and not isinstance(source, str | os.PathLike):
        close()


def _bytes_read(source: Source) -> int:
    return int(getattr(source, "bytes_read", 0) or 0)


def frames_asked(task: Task) -> int:
    """The frames a task asks for by count: the sum of its jobs' ``num`` (``num`` 0 asks for none)."""
    return sum(max(0, job.selection.num) for job in task.jobs)


def check_limits(task: Task, limits: Limits) -> None:
    """Reject a task that asks for more frames than allowed, before any byte of media is read.

    ``MAX_FRAMES`` is per task: the ``num`` of all its jobs together must fit (20 targets of 5 with
    a limit of 5 are refused, not run as 100 frames).
    """
    nums = [job.selection.num for job in task.jobs if job.selection.num > 0]
    total = sum(nums)
    if total <= limits.max_frames:
        return
    if len(nums) == 1:
        raise BadRequest(
            f"num {total} is above the limit of {limits.max_frames} frames per task (MAX_FRAMES)",
            param="num",
        )
    raise BadRequest(
        f"num: the {len(nums)} jobs of the task ask for {total} frames in all, above the limit of "
        f"{limits.max_frames} frames per task (MAX_FRAMES)",
        param="num",
    )


class FrameBudget:
    """The frames a task may still write: ``MAX_FRAMES`` is shared by all the parts of a task.

    A part is a job (the tiles of its sprite sheets and the frames of its animation are its frames).
    A part that asks for a count (``num`` > 0) has it set aside when the budget is made
    (:meth:`for_task`), so a part that runs earlier cannot take it; parts without a count (``num``
    0: every frame the selection has) share what is left, in order, and stop with a warning when it
    runs out.
    """

    def __init__(self, limit: int, *, reserved: int = 0) -> None:
        self.limit = limit
        self.used = 0
        self.reserved = reserved

    @classmethod
    def for_task(cls, task: Task, limits: Limits) -> FrameBudget:
        """The budget of ``task`` with every job's ``num`` set aside (:func:`check_limits` first)."""
        check_limits(task, limits)
        return cls(limits.max_frames, reserved=frames_asked(task))

    @property
    def remaining(self) -> int:
        """Frames that a part without a count of its own may still write."""
        return max(0, self.limit - self.used - self.reserved)

    def start(self, asked: int) -> int:
        """Begin a part asking for ``asked`` frames (0: as many as there are); the most it may write."""
        if asked > 0:
            mine = min(asked, self.reserved)
            self.reserved -= mine
            return min(asked, self.remaining)
        return self.remaining

    def spend(self, frames: int = 1) -> None:
        """Count ``frames`` written."""
        self.used += frames

    def exhausted_warning(self, part: str, *, skipped: bool = False) -> str:
        """The warning of a part cut short (or ``skipped``) because the task's frames ran out."""
        limit = (
            f"the frame limit of {self.limit} frames per task (MAX_FRAMES, shared by all jobs of the task)"
        )
        if skipped:
            return f"{part} was skipped: earlier jobs used up {limit}"
        return f"{part} stopped at {limit}; the selection has more frames"


class _Stop:
    """When a task may stop early: ``check`` says so, and this attempt has written something (so
    that every attempt moves the task on), and the job running has no composition."""

    def __init__(self, check: ShouldStop | None) -> None:
        self.check = check
        self.progressed = False
        #: ``now`` said so once: the job that asked stopped because of it.
        self.fired = False

    def now(self) -> bool:
        if self.check is not None and self.progressed and self.check():
            self.fired = True
        return self.fired


def _composes(job: SnapshotJob) -> bool:
    """A job whose outputs include a sprite sheet, a track or an animation (never resumed half-way)."""
    return job.sprite is not None or job.track is not None or job.animation is not None


def _replay(task: Task, budget: FrameBudget, resume: Position) -> None:
    """Spend in ``budget`` what the attempts before ``resume`` spent, job by job, as one pass would."""
    for job, count in zip(task.jobs[: resume.job], resume.counts, strict=True):
        budget.start(job.selection.num)
        budget.spend(count)


def run_task(
    task: Task,
    source: Source,
    sink: Sink,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    source_ref: SourceRef | None = None,
    budget: FrameBudget | None = None,
    resume: Position | None = None,
    should_stop: ShouldStop | None = None,
) -> Outcome:
    """Run every job of ``task`` on ``source`` and write the frames to ``sink``.

    ``source_ref`` names the source for output key templates (``{barename}`` …); it defaults to the
    task's own source, then to the path. ``budget`` counts the task's frames across its jobs
    (default: :meth:`FrameBudget.for_task`, ``MAX_FRAMES`` per task).

    A failure raises, also after some outputs were written: the task failed as a whole, and no
    partial result is returned as its outcome. What was written is what went through ``sink``; a
    caller that must not leave it behind records its writes there and undoes them (the worker does).

    Long tasks (docs/LONG_TASKS.md): ``should_stop`` is asked between frames; when it says so (and
    this attempt has written at least one frame), the task stops with ``Outcome.stopped`` saying
    where. A job with compositions is not stopped half-way (only before it starts). ``resume``
    (an earlier attempt's ``stopped``) skips the finished jobs and the frames done of the next one:
    the outputs written from there are exactly those a single pass writes after them (the same
    keys, ``{index}`` and times); the outcome holds only the new ones.
    """
    limits = limits or Limits()
    if budget is None:
        budget = FrameBudget.for_task(task, limits)
    else:
        check_limits(task, limits)
    if resume is not None:
        _replay(task, budget, resume)
    ref = source_ref or task.source or SourceRef(key=_source_name(source))
    outcome = Outcome()
    stop = _Stop(should_stop)
    first = resume.job if resume is not None else 0
    counts = list(resume.counts) if resume is not None else []
    with _task_video(source, limits) as video:
        for number in range(first, len(task.jobs)):
            if stop.now():
                outcome.stopped = Position(number, tuple(counts))
                return outcome
            job = task.jobs[number]
            partial = resume if resume is not None and number == resume.job and resume.count else None
            ran = _run_job(
                video,
                job,
                ref,
                sink,
                limits=limits,
                outcome=outcome,
                progress=progress,
                part=(number, len(task.jobs)),
                budget=budget,
                resume=partial,
                stop=stop,
            )
            if isinstance(ran, Position):
                outcome.stopped = dataclasses.replace(ran, counts=tuple(counts))
                return outcome
            counts.append(ran)
    if progress:
        progress(1.0)
    return outcome


@dataclass
class WindowRun:
    """What one attempt at a window did: ``outcomes`` per job (empty for the jobs an earlier attempt
    finished), and where it ``stopped`` when it ran out of time (None: the window is done). A stop
    at ``Position(job)`` without ``pts``: that job had not begun in the window."""

    outcomes: list[Outcome]
    stopped: Position | None = None


def run_window(
    task: Task,
    source: Source,
    sink: Sink,
    window: Window,
    *,
    totals: Sequence[int],
    limits: Limits | None = None,
    source_ref: SourceRef | None = None,
) -> list[Outcome]:
    """Run ``task`` restricted to ``window`` (planned by :func:`vidsnap.core.windows.plan_windows`,
    whose ``totals`` are the frames each job writes in all): the outputs one pass writes for the
    frames in it, with the same keys, ``{index}``, bytes and times. One outcome per job, for
    :func:`vidsnap.core.windows.merge_windows`; a job that goes on after the window has ``stopped``
    set (only the last window's warnings are the job's: merging takes those). Each job resumes at
    the window's start as an attempt resumes after a stop (:func:`run_task`, ``resume``) and stops
    at its end; running a window again writes the same keys. A task with dhash jobs runs the
    windows of its settled plan (:func:`count_window`, :func:`vidsnap.core.windows.settle`);
    their dhash jobs decode the window's chosen frames (``stopped`` is then not set). Thumbnail
    tracks are left to :func:`vidsnap.core.windows.finish`.
    """
    return run_window_part(
        task, source, sink, window, totals=totals, limits=limits, source_ref=source_ref
    ).outcomes


def run_window_part(
    task: Task,
    source: Source,
    sink: Sink,
    window: Window,
    *,
    totals: Sequence[int],
    limits: Limits | None = None,
    source_ref: SourceRef | None = None,
    resume: Position | None = None,
    should_stop: ShouldStop | None = None,
) -> WindowRun:
    """:func:`run_window` as attempts that may stop early: ``should_stop`` is asked between frames
    (as :func:`run_task` asks it; a job with compositions only between jobs); ``resume`` is an
    earlier attempt's ``stopped``. The outputs of all the attempts at a window, job by job in
    order, are those of one :func:`run_window`."""
    limits = limits or Limits()
    _check_settled(task, window)
    budget = FrameBudget.for_task(task, limits)
    ref = source_ref or task.source or SourceRef(key=_source_name(source))
    outcomes = [Outcome() for _ in task.jobs]
    stop = _Stop(should_stop)
    first = resume.job if resume is not None else 0
    for job, total in zip(task.jobs[:first], totals, strict=False):  # finished by earlier attempts
        budget.start(job.selection.num)
        budget.spend(total)
    starts = window.starts(task)
    with _task_video(source, limits) as video:
        for number in range(first, len(task.jobs)):
            if stop.now():
                return WindowRun(outcomes, Position(number))
            job, start = task.jobs[number], starts[number]
            chosen = window.chosen[number] if window.chosen else None
            if number == first and resume is not None and resume.pts is not None:
                # Resumed after the frames an earlier attempt wrote in this window.
                if chosen is not None:
                    chosen = chosen[resume.count - window.before[number] :]
                start = resume
            ran = _run_job(
                video,
                # A track lists every frame of the job: written once the windows are merged
                # (vidsnap.core.windows.finish), not by the window that ends the job.
                job if job.track is None else dataclasses.replace(job, track=None),
                ref,
                sink,
                limits=limits,
                outcome=outcomes[number],
                progress=None,
                part=(number, len(task.jobs)),
                budget=budget,
                resume=start,
                stop=stop,
                until=window.end_ms,
                chosen=chosen,
            )
            if stop.fired:
                assert isinstance(ran, Position)
                return WindowRun(outcomes, ran)
            if isinstance(ran, Position):
                outcomes[number].stopped = ran
            # The job's frames outside this window count against the frame budget too.
            budget.spend(totals[number] - (ran.count if isinstance(ran, Position) else ran))
    return WindowRun(outcomes)


def _check_settled(task: Task, window: Window) -> None:
    """A window of a task with dhash jobs runs once settled (its frames counted), not before."""
    if not window.chosen and any(job.selection.mode == "dhash" for job in task.jobs):
        raise ValueError("a window of a task with dhash jobs runs after its count pass (windows.settle)")


def count_window(
    task: Task, source: Source, window: Window, *, limits: Limits | None = None
) -> list[Counted | None]:
    """The count pass of ``window`` (:func:`vidsnap.core.windows.settle`): per job, for unranked
    dhash jobs the planned times of the samples it selects in the window (its samples decoded and
    scored, from the sample before the window; nothing rendered or written), None for the others.
    At most ``MAX_FRAMES`` + 1 times per job: no task takes more."""
    from vidsnap.core.select import After, dhash_times  # bulk path only
    from vidsnap.core.windows import Counted

    limits = limits or Limits()
    counts: list[Counted | None] = []
    with _task_video(source, limits) as video:
        for job, start in zip(task.jobs, window.starts(task), strict=True):
            sel = job.selection
            if sel.mode != "dhash":
                counts.append(None)
                continue
            if video.is_cover_art:  # one frame, in the first window (as select_frames)
                counts.append(Counted((Fraction(0),) if window.index == 0 else ()))
                continue
            warnings: list[str] = []
            after = After(start.count, start.pts, start.time_ms) if start and start.pts is not None else None
            times = dhash_times(
                video,
                sel,
                after=after,
                until=window.end_ms,
                limit=limits.max_frames + 1,
                warnings=warnings,
                decoders=limits.decoders,
            )
            ended = bool(warnings)  # sampling warns only where the stream ends early
            counts.append(Counted(tuple(times), ended))
    return counts


@contextlib.contextmanager
def _task_video(source: Source, limits: Limits) -> Iterator[Video]:
    """The video a task (or a window of it) runs on; FFmpeg and I/O failures anywhere in the task
    become :class:`UndecodableMedia` (a failure raises even after outputs were written)."""
    try:
        with open_video(source, limits, bulk=True) as video:
            yield video
    except (av.error.FFmpegError, OSError) as exc:
        raise UndecodableMedia(f"media could not be decoded: {exc}") from exc


def _run_job(
    video: Video,
    job: SnapshotJob,
    ref: SourceRef,
    sink: Sink,
    *,
    limits: Limits,
    outcome: Outcome,
    progress: Progress | None,
    part: tuple[int, int],
    budget: FrameBudget,
    resume: Position | None = None,
    stop: _Stop | None = None,
    until: Fraction | None = None,
    chosen: Sequence[Fraction] | None = None,
) -> int | Position:
    """Run one job, appending its outputs and warnings to ``outcome``; ``part`` is (job, of jobs).

    The job writes at most what ``budget`` allows it; a job without ``num`` that finds the task's
    frames used up by earlier jobs is skipped (or cut short) with a warning, not failed. Returns
    the frames the job wrote, or where it stopped when ``stop`` said so (then the job's warnings
    are taken back out of ``outcome``: the attempt that resumes it gives them again). ``resume``:
    the job's own frames written by earlier attempts. ``until``: frames at or after this time
    are not taken; the job stops before the first of them as if ``stop`` had said so (a window).
    ``chosen``: a settled window's dhash frames (:func:`select_frames`).
    """
    asked = job.selection.num
    allowed = budget.start(asked)
    name = f"job {part[0] + 1} of {part[1]}" if part[1] > 1 else "the job"
    if allowed <= 0:
        outcome.warnings.append(budget.exhausted_warning(name, skipped=True))
        return 0
    done = resume.count if resume is not None else 0
    budget.spend(done)
    warned = len(outcome.warnings)
    stoppable = stop is not None and not _composes(job)
    geometries: dict[tuple[int, int], tuple[Geometry, Geometry | None]] = {}
    duration = video.duration_ms or Fraction(1)
    writer = JobWriter(job, ref, sink, outcome, done=done)
    last: list[Picked] = []  # the last frame written (its pts and time say where a stop was)

    def stopping() -> bool:
        return stoppable and stop is not None and stop.now()

    # Converting and encoding a frame runs on a second thread while the next frame decodes
    # (swscale and Pillow's encoders release the GIL). Outputs are still written in order, on this
    # thread, and a failure surfaces where it did when everything ran in turn: frames before it are
    # written, nothing after it is. At most _RENDER_AHEAD frames wait, which bounds the memory.
    pending: collections.deque[tuple[Future[RenderedFrame], Picked]] = collections.deque()

    def write_oldest() -> None:
        future, picked = pending.popleft()
        writer.add(future.result(), picked.time_ms)
        last[:] = [picked]
        if stop is not None:
            stop.progressed = True
        if progress:
            done = min(Fraction(1), max(Fraction(0), picked.time_ms / duration))
            progress(float((part[0] + done) / part[1]))

    from concurrent.futures import ThreadPoolExecutor  # bulk path only

    from vidsnap.core.select import After, select_frames  # bulk path only

    # A job without num may see one frame past its allowance: that frame is what tells "cut short"
    # (warned here, the one warning about the limit) from "ended exactly at the limit" (no
    # warning). Jobs with num stop at num (select caps them; num fits the budget).
    after = After(resume.count, resume.pts, resume.time_ms) if resume and resume.pts is not None else None
    frames = select_frames(
        video,
        job.selection,
        max_frames=limits.max_frames if asked > 0 else allowed + 1,
        warnings=outcome.warnings,
        decoders=limits.decoders,
        after=after,
        chosen=chosen,
    )
    reached: list[bool] = []  # the selection reached ``until``
    frames = _until(frames, until, reached)
    # Closed on the way out, whatever happens: decoders running ahead on other threads
    # (vidsnap.core.parallel) stop before the caller closes the video they read.
    with (
        contextlib.closing(frames),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidsnap-render") as pool,
    ):
        while not (stopped := stopping()):
            try:
                picked = next(frames, None)
                if picked is None:
                    break
                if writer.count + len(pending) >= allowed:
                    outcome.warnings.append(budget.exhausted_warning(name))
                    break
                shape = (picked.frame.width, picked.frame.height)
                if shape not in geometries:  # the size may change mid-stream; plan once per shape
                    geometries[shape] = _job_geometries(video, picked, job, limits)
            except BaseException:
                # Decoding or planning failed: first write the frames before it, in order, as the
                # one-at-a-time loop did (a render failure among those wins: it came first).
                while pending:
                    write_oldest()
                raise
            budget.spend()
            geometry, tile_geometry = geometries[shape]
            pending.append((pool.submit(render_frame, picked.frame, job, geometry, tile_geometry), picked))
            while len(pending) > _RENDER_AHEAD or (pending and pending[0][0].done()):
                write_oldest()
        while pending:
            write_oldest()
    count = writer.count
    if stopped or reached:
        del outcome.warnings[warned:]
        return _stopped_at(part[0], count, last, resume)
    if count == 0:
        _no_frames(job, video, outcome)
        return 0
    writer.finish(video.duration_ms)
    template = job.output.key_template
    if job.save_frames and count > 1 and frames_overwrite(template):
        outcome.warnings.append(
            f"key template {template!r} has no index variable: each of the {count} frames was written "
            "to the same key, so only the last one remains"
        )
    return count


def _until(
    frames: Generator[Picked, None, None], until: Fraction | None, reached: list[bool]
) -> Generator[Picked, None, None]:
    """The frames before ``until`` (None: all); notes in ``reached`` that one at or after it came."""
    if until is None:
        return frames
    return _before(frames, until, reached)


def _before(
    frames: Generator[Picked, None, None], until: Fraction, reached: list[bool]
) -> Generator[Picked, None, None]:
    with contextlib.closing(frames):
        for picked in frames:
            if picked.time_ms >= until:
                reached.append(True)
                return
            yield picked


def _stopped_at(job: int, count: int, last: list[Picked], resume: Position | None) -> Position:
    """Where job ``job`` stopped: after ``last`` (the frame written last), else where it resumed."""
    if last:
        return Position(job, count=count, pts=last[0].pts, time_ms=last[0].time_ms)
    return resume if resume is not None else Position(job)


def _job_geometries(
    video: Video, picked: Picked, job: SnapshotJob, limits: Limits
) -> tuple[Geometry, Geometry | None]:
    """The geometry of the job's images and, for a sprite, of its tiles (the same when no cell size
    of its own is asked)."""
    geometry = _geometry(video, picked, job.image, limits)
    if job.sprite is None:
        return geometry, None
    if job.sprite.cell is None:
        return geometry, geometry
    return geometry, _geometry(video, picked, job.sprite.cell, limits)


def _no_frames(job: SnapshotJob, video: Video, outcome: Outcome) -> None:
    """A job that selected nothing: fine for dhash and scene (no change, all dark), an error otherwise."""
    sel = job.selection
    if sel.mode == "dhash":
        outcome.warnings.append(f"no sample scored above the dhash threshold {sel.threshold}")
        return
    if sel.mode == "scene":
        outcome.warnings.append("no shot found: every sample is dark")
        return
    raise UndecodableMedia(
        f"no frame selected: start {report_ms(sel.start_ms)} ms is at or past the end of the video "
        f"({report_ms(video.duration_ms)} ms)"
    )


def _geometry(video: Video, picked: Picked, spec: ImageSpec, limits: Limits) -> Geometry:
    # Plan from the decoded frame's own size (it can differ from the stream header after a
    # resolution change) and the stream's aspect ratio and display matrix.
    frame = picked.frame
    return plan_geometry(
        frame.width,
        frame.height,
        video.sample_aspect_ratio,
        video.rotation,
        spec,
        max_pixels=limits.max_pixels,
    )


def _source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "source"))

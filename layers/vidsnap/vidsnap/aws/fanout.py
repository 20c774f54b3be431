"""Long tasks on Step Functions (docs/LONG_TASKS.md, fan-out): a task too long for one invocation is
cut into windows that the state machine of template.yaml runs side by side, then merged.

The worker (:meth:`Fanout.start`) estimates a task's decoding from the container's index, with the
planning that decides seeks (:func:`vidsnap.core.windows.plan_windows`). Above
``FANOUT_THRESHOLD_SECONDS`` it records the execution in the task record and starts it instead of
running the task; what cannot be windowed runs in the worker as before (resumable, docs/LONG_TASKS.md).
The state machine then calls this module's steps through the fan-out function:

- ``window`` (:meth:`Fanout.window`, one per Distributed Map item): runs one window
  (:func:`vidsnap.core.engine.run_window`) and stores its outcome in an item of its own in the task
  table; the task record's ``WindowsDone`` (a set, so a window run twice counts once) and
  ``Progress`` show how far the windows are.
- ``merge`` (:meth:`Fanout.merge`): the windows' outcomes merged
  (:func:`vidsnap.core.windows.merge_windows`) into what one pass makes; the one notification is
  sent and the record finished, as the worker does for a task it ran itself.
- ``fail`` (:meth:`Fanout.fail`, the state machine's catch): the outputs the windows wrote are
  deleted and the task ends Failed, with one notification.

Every step first checks that the task record still names its execution: an execution that lost the
task to another (a worker that crashed after starting one, whose message was delivered again) does
nothing. Windows write deterministic keys, so a window run again (a retry, a redelivery) writes
the same objects again and stores the same outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, Protocol

from vidsnap.aws.attempt import Attempt, Checkpoint, RecordingSink, TaskRunning, short_of_time
from vidsnap.aws.errors import map_client_error
from vidsnap.aws.notify import Notification, rfc3339
from vidsnap.aws.observe import MetricUnit, emit, logger
from vidsnap.aws.settings import Fanout as FanoutSettings
from vidsnap.core.errors import BadRequest, InternalError, SourceChanged, VidsnapError
from vidsnap.core.plan import SourceRef, Task, from_plain, to_plain

if TYPE_CHECKING:  # the engine loads PyAV: imported where a window really runs
    from vidsnap.aws.clients import Clients
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.taskstore import TaskStore
    from vidsnap.core.decode import Video
    from vidsnap.core.engine import Sink
    from vidsnap.core.windows import Window, WindowPlan
    from vidsnap.core.writer import Outcome

#: How long the record of a task handed to the state machine stays claimed (seconds): a message of
#: the task delivered again meanwhile finds it running on the state machine and does not start it
#: twice. Far above a window's 15 minutes times the rounds of windows a task needs.
FANOUT_LEASE_S = 24 * 3600
#: Step Functions' limit on an execution's input and state is 256 KiB; the windows' list travels in
#: it (and grows with dhash's chosen frames when settled): a task whose input leaves less than
#: 64 KiB of room runs in the worker instead (1,000 windows take ~120 KiB).
MAX_INPUT_BYTES = 192 * 1024


class Runner(Protocol):
    """What the fan-out needs of the worker (:class:`vidsnap.aws.worker.Worker`): its settings,
    clients, sink and task table, opening a source, and ending a task with its one notification."""

    settings: Settings
    clients: Clients
    sink: Sink
    tasks: TaskStore | None

    def check_source_bucket(self, source: SourceRef) -> None: ...

    def open_source(self, source: SourceRef) -> BinaryIO: ...

    def conclude(self, attempt: Attempt, note: Notification, *, notify: bool = True) -> Notification: ...

    def fail(
        self, attempt: Attempt, error: VidsnapError, *, notify: bool = True, left: list[str] | None = None
    ) -> Notification: ...


class RetryWindow(Exception):
    """A step failed for a reason that may pass (throttling, a timeout): the state machine retries it."""


class WindowFailed(Exception):
    """A step failed for good (bad media, a refused write): the task fails."""


@dataclass(frozen=True)
class Run:
    """What every step of one execution is handed (the execution's input ``Run``): the task, on
    which version of which source, the request it came from and the execution running it."""

    task_id: str
    execution: str
    task: Task
    source: SourceRef
    etag: str | None
    request_id: str
    start: str
    windows: int
    totals: tuple[int, ...]

    def plain(self) -> dict[str, Any]:
        """The run as JSON types (:meth:`from_plain` reverses it)."""
        return to_plain(self)

    @classmethod
    def from_plain(cls, data: Any) -> Run:
        """The run :meth:`plain` rendered; :class:`BadRequest` for anything else, or for a run whose
        task id is not that of its task and source (the id names the record every step writes)."""
        try:
            run = from_plain(cls, data)
            datetime.fromisoformat(run.start)
        except ValueError as exc:
            raise BadRequest(f"not a run of a task: {exc}", param="run") from exc
        if run.attempt().task_id != run.task_id:
            raise BadRequest("not a run of a task: its TaskId is not its task's", param="run")
        return run

    def attempt(self) -> Attempt:
        """The attempt this run continues (its notification starts when the task was received)."""
        return Attempt(
            self.task, self.source, self.request_id, etag=self.etag, start=datetime.fromisoformat(self.start)
        )


def estimate_seconds(video: Video, cost: int, decode_mpx_per_second: float) -> float:
    """Seconds of one invocation that decoding ``cost`` (ticks of presentation time decoded,
    :meth:`Video.run_cost`) takes on ``video``, at ``decode_mpx_per_second`` megapixels a second."""
    desc = video.description
    frames = cost / max(1, desc.interval_ticks)
    return frames * desc.coded_width * desc.coded_height / (decode_mpx_per_second * 1e6)


def window_cost(video: Video, seconds: float, decode_mpx_per_second: float) -> int:
    """The cost (ticks) that :func:`estimate_seconds` puts at ``seconds``."""
    desc = video.description
    pixels = max(1, desc.coded_width * desc.coded_height)
    return max(1, int(seconds * decode_mpx_per_second * 1e6 / pixels * max(1, desc.interval_ticks)))


def plan_fanout(video: Video, task: Task, settings: FanoutSettings, max_frames: int) -> WindowPlan | None:
    """The windows of ``task`` when it is estimated above the threshold, else None (also when it
    cannot be windowed: it then runs in one invocation, resumable)."""
    from vidsnap.core.errors import NotSupportedYet
    from vidsnap.core.windows import plan_windows

    rate = settings.decode_mpx_per_second
    try:
        plan = plan_windows(
            video, task, max_cost=window_cost(video, settings.window_seconds, rate), max_frames=max_frames
        )
    except NotSupportedYet as exc:
        logger.info("task not split into windows", extra={"reason": exc.message})
        return None
    seconds = estimate_seconds(video, plan.cost, rate)
    logger.info("task estimated", extra={"seconds": round(seconds, 1), "windows": len(plan.windows)})
    if seconds <= settings.threshold_seconds or len(plan.windows) < 2:
        return None
    if len(plan.windows) > settings.max_windows:
        plan = plan_windows(video, task, count=settings.max_windows, max_frames=max_frames)
    return plan


def _execution_input(run: Run, plan: WindowPlan, max_concurrency: int) -> dict[str, Any]:
    """The state machine's input: the run, the map's concurrency and the windows."""
    return {
        "Run": run.plain(),
        "MaxConcurrency": max_concurrency,
        "Windows": [w.plain() for w in plan.windows],
        # Unranked dhash jobs: the windows are counted, then settled, before they run.
        "Count": plan.needs_count,
        "Counted": list(plan.counted),
        # Where a thumbnail track's last cue ends (the merge writes the tracks).
        "DurationMs": str(plan.duration_ms),
    }


def _outcome_plain(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    return [to_plain(outcome) for outcome in outcomes]


def _uris(outcome: Outcome) -> list[str]:
    """Every object ``outcome`` lists: its images and its compositions."""
    return [o.uri for o in outcome.outputs] + [c.uri for c in outcome.compositions]


def _outcomes(plain: Any) -> list[Outcome]:
    from vidsnap.core.writer import Outcome

    return [from_plain(Outcome, job) for job in plain]


class Fanout:
    """The worker's side of long tasks: starting an execution, and the state machine's steps."""

    def __init__(self, worker: Runner) -> None:
        self.worker = worker
        self.settings = worker.settings.fanout
        #: Seconds the invocation running a step has left (from its Lambda context; None: unknown).
        self.time_left: Callable[[], float] | None = None

    # -- the worker: start -------------------------------------------------------------------

    def start(self, attempt: Attempt, reader: BinaryIO) -> Notification | None:
        """Hand ``attempt`` (claimed, its source open on ``reader``) to the state machine when it is
        long enough; None when it runs here. Raises transient errors (the message is retried)."""
        from vidsnap.core import engine

        tasks = self.worker.tasks
        if self.settings.state_machine is None or tasks is None:
            return None
        limits = self.worker.settings.limits
        try:
            with engine.open_video(reader, limits, bulk=True) as video:
                plan = plan_fanout(video, attempt.task, self.settings, limits.max_frames)
        except Exception as exc:  # the task runs here and meets the same error where it is reported
            logger.info("task not planned for windows", extra={"error": str(exc)})
            return None
        if plan is None:
            return None
        execution = f"{attempt.task_id}-{uuid.uuid4().hex[:12]}"
        run = Run(
            attempt.task_id,
            execution,
            attempt.task,
            attempt.source,
            attempt.etag,
            attempt.request_id,
            attempt.start.isoformat(),
            len(plan.windows),
            plan.totals,
        )
        document = json.dumps(_execution_input(run, plan, self.settings.max_concurrency))
        if len(document.encode()) > MAX_INPUT_BYTES:
            logger.info(
                "task runs here: its windows do not fit an execution's input", extra={"bytes": len(document)}
            )
            return None
        # Recorded before it starts: a step of an execution the record does not name does nothing.
        if not tasks.fan_out(attempt.task_id, execution, len(plan.windows), lease_seconds=FANOUT_LEASE_S):
            raise TaskRunning(f"task {attempt.task_id} was taken over by another invocation")
        arn = self._start_execution(run, document)
        emit({"TasksFannedOut": (MetricUnit.Count, 1), "Windows": (MetricUnit.Count, len(plan.windows))})
        logger.info(
            "task handed to the state machine", extra={"execution": arn, "windows": len(plan.windows)}
        )
        return Notification(
            task_id=attempt.task_id,
            status="Running",
            code="FannedOut",
            message=f"split into {len(plan.windows)} windows, run by {arn}",
            request_id=attempt.request_id,
            start_time=rfc3339(attempt.start),
            end_time="",
            sources=(attempt.source.uri,),
            user_data=attempt.task.user_data,
        )

    def _start_execution(self, run: Run, document: str) -> str:
        machine = self.settings.state_machine
        assert machine is not None
        arn = machine.replace(":stateMachine:", ":execution:") + ":" + run.execution
        try:
            self.worker.clients.stepfunctions.start_execution(
                stateMachineArn=machine, name=run.execution, input=document
            )
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return arn  # started by this very hand-over before (the name is unique to it)
            error = map_client_error(exc, f"states start-execution {machine}")
            if error.transient and self.worker.tasks is not None:
                self.worker.tasks.release(run.task_id, error.code, error.message)
            raise error from exc
        return arn

    # -- the state machine's steps -----------------------------------------------------------

    def handle(
        self, event: Mapping[str, Any], *, time_left: Callable[[], float] | None = None
    ) -> dict[str, Any]:
        """One step of the state machine: ``{"Action": "window" | "count" | "settle" | "merge" |
        "fail", "Run": …}``. Whatever goes wrong leaves as one of the two errors the state machine
        knows: :class:`RetryWindow` when it may pass (throttling, a timeout: in the step's own
        reads and writes too, not only in decoding) and :class:`WindowFailed` otherwise.
        ``time_left``: seconds the invocation has left (a window stops and resumes in the retry)."""
        self.time_left = time_left
        try:
            return self._handle(event)
        except (RetryWindow, WindowFailed):
            raise
        except Exception as exc:
            error = map_client_error(exc)
            if not isinstance(exc, VidsnapError):
                logger.exception("a step failed unexpectedly")
            if error.transient:
                raise RetryWindow(f"{error.code}: {error.message}") from exc
            raise WindowFailed(f"{error.code}: {error.message}") from exc

    def _handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        action = event.get("Action") if isinstance(event, Mapping) else None
        try:
            run = Run.from_plain(event.get("Run") if isinstance(event, Mapping) else None)
        except BadRequest as exc:
            raise WindowFailed(exc.message) from exc
        logger.append_keys(task_id=run.task_id, execution=run.execution)
        if action in ("window", "count"):
            from vidsnap.core.windows import Window

            try:
                window = Window.from_plain(event.get("Window"))
            except BadRequest as exc:
                raise WindowFailed(exc.message) from exc
            return self.window(run, window) if action == "window" else self.count(run, window)
        if action == "settle":
            return self.settle(run, event)
        if action == "merge":
            return self.merge(run, event)
        if action == "fail":
            return self.fail(run, event.get("Error"))
        raise WindowFailed(f"unknown action {action!r}")

    def _current(self, run: Run) -> bool:
        """Whether the task record names this run's execution and is still Running."""
        tasks = self.worker.tasks
        assert tasks is not None  # the fan-out function always has its table
        record = tasks.get(run.task_id)
        if record is None or record.get("Execution") != run.execution or record.get("Status") != "Running":
            logger.info(
                "step skipped: the task is not running on this execution",
                extra={"status": (record or {}).get("Status"), "recorded": (record or {}).get("Execution")},
            )
            return False
        return True

    def window(self, run: Run, window: Window) -> dict[str, Any]:
        """Run one window and store its outcome. Raises :class:`RetryWindow` (transient, or out of
        time: what it did is stored and the retry goes on from there) or :class:`WindowFailed`
        (the task fails; what the window wrote is deleted first)."""
        from vidsnap.core import engine
        from vidsnap.core.windows import joined
        from vidsnap.core.writer import Position

        tasks = self.worker.tasks
        assert tasks is not None
        if not self._current(run):
            return {"Window": window.index, "Skipped": True}
        stored = tasks.window_result(run.execution, window.index)
        if stored is not None and "Outcomes" in stored:
            # Delivered again (a retry after a lost answer): done already, nothing is written again.
            tasks.count_window(run.task_id, run.execution, window.index, run.windows)
            frames = sum(len(job.outputs) for job in _outcomes(stored["Outcomes"]))
            return {"Window": window.index, "Outputs": frames, "Again": True}
        # An earlier attempt ran out of time in this window: go on from where it stopped.
        partial = stored.get("Partial") if stored is not None else None
        earlier = _outcomes(partial["Outcomes"]) if partial else []
        resume = from_plain(Position, partial["Stopped"]) if partial else None
        sink = RecordingSink(self.worker.sink, earlier=[u for o in earlier for u in _uris(o)])
        try:
            reader = self._open(run)
            with contextlib.closing(reader):
                part = engine.run_window_part(
                    run.task,
                    reader,
                    sink,
                    window,
                    totals=run.totals,
                    limits=self.worker.settings.limits,
                    resume=resume,
                    should_stop=self._should_stop(),
                )
        except Exception as exc:
            # Nothing of a window that fails for good is left; a retry after a transient error
            # goes on from the last stop, so only this attempt's writes are taken back.
            sink.undo(earlier=not map_client_error(exc).transient)
            self._failed(run, window, exc)
        outcomes = joined(earlier, part.outcomes, resume.job if resume is not None else 0)
        if part.stopped is not None:
            tasks.window_partial(
                run.execution, window.index, _outcome_plain(outcomes), to_plain(part.stopped)
            )
            emit({"WindowsResumed": (MetricUnit.Count, 1)})
            raise RetryWindow(
                f"OutOfTime: window {window.index + 1} of {run.windows} ran out of time after "
                f"{sum(len(o.outputs) for o in outcomes)} output(s); it resumes there"
            )
        tasks.window_done(run.task_id, run.execution, window.index, _outcome_plain(outcomes), run.windows)
        frames = sum(len(o.outputs) for o in outcomes)
        emit({"WindowsRun": (MetricUnit.Count, 1), "FramesWritten": (MetricUnit.Count, frames)})
        return {"Window": window.index, "Outputs": frames}

    def _should_stop(self) -> Callable[[], bool] | None:
        """A window stops between frames when its invocation has less than
        ``RESUME_MARGIN_SECONDS`` left (None: no clock, or a margin of 0)."""
        return short_of_time(self.time_left, self.worker.settings.resume_margin_seconds)

    def count(self, run: Run, window: Window) -> dict[str, Any]:
        """The count pass of one window (unranked dhash: which samples it selects), stored for
        :meth:`settle`. Raises :class:`RetryWindow` or :class:`WindowFailed` as :meth:`window`."""
        from vidsnap.core import engine

        tasks = self.worker.tasks
        assert tasks is not None
        if not self._current(run):
            return {"Window": window.index, "Skipped": True}
        if tasks.window_result(run.execution, window.index, "count") is not None:
            return {"Window": window.index, "Again": True}  # counted already (delivered again)
        try:
            reader = self._open(run)
            with contextlib.closing(reader):
                counts = engine.count_window(run.task, reader, window, limits=self.worker.settings.limits)
        except Exception as exc:
            self._failed(run, window, exc)
        tasks.window_counted(run.execution, window.index, [c.plain() if c else None for c in counts])
        return {"Window": window.index, "Counted": sum(len(c.times) for c in counts if c)}

    def settle(self, run: Run, state: Mapping[str, Any]) -> dict[str, Any]:
        """The execution's state with its windows settled from their counts
        (:func:`vidsnap.core.windows.settle`): the frames each job writes before every window,
        the totals, and each window's chosen frames. Raises :class:`WindowFailed` when a window's
        count is missing or the counts cannot be settled exactly."""
        from vidsnap.core.windows import Counted, settle

        tasks = self.worker.tasks
        assert tasks is not None
        state = {k: v for k, v in state.items() if k != "Action"}
        if not self._current(run):
            return {**state, "Windows": [], "Count": False}
        stored = tasks.window_results(run.execution, run.windows, "count")
        try:
            plan = _plan_of(run, state)
            counts = []
            for index, item in enumerate(stored):
                if item is None or not isinstance(item.get("Counts"), list):
                    raise WindowFailed(f"window {index + 1} of {run.windows} was not counted")
                counts.append([None if c is None else Counted.from_plain(c) for c in item["Counts"]])
            settled = settle(plan, counts, run.task, max_frames=self.worker.settings.max_frames)
        except VidsnapError as exc:
            raise WindowFailed(f"{exc.code}: {exc.message}") from exc
        settled_run = dataclasses.replace(run, totals=settled.totals)
        return {
            **state,
            "Run": settled_run.plain(),
            "Windows": [w.plain() for w in settled.windows],
            "Count": False,
            "Counted": [],
        }

    def _failed(self, run: Run, window: Window, exc: Exception) -> NoReturn:
        """A window's step failed: :class:`RetryWindow` when it may pass, else the error stored
        for the task's failure and :class:`WindowFailed`."""
        error = map_client_error(exc)
        if not isinstance(exc, VidsnapError):
            logger.exception("a window's step failed unexpectedly", extra={"window": window.index})
        if error.transient:
            raise RetryWindow(f"{error.code}: {error.message}") from exc
        assert self.worker.tasks is not None
        self.worker.tasks.window_failed(run.execution, window.index, error.code, error.message)
        raise WindowFailed(
            f"{error.code}: window {window.index + 1} of {run.windows}: {error.message}"
        ) from exc

    def _open(self, run: Run) -> BinaryIO:
        self.worker.check_source_bucket(run.source)  # the worker checked it too: not trusted here
        reader = self.worker.open_source(run.source)
        seen = getattr(reader, "etag", None)
        if run.etag and seen and run.etag.strip('"') != seen:
            reader.close()
            raise SourceChanged(f"{run.source.uri} was replaced while its windows ran (ETag changed)")
        return reader

    def merge(self, run: Run, state: Mapping[str, Any]) -> dict[str, Any]:
        """Merge the windows' outcomes and write what no window can (thumbnail tracks,
        :func:`vidsnap.core.windows.finish`), send the one notification and finish the record."""
        from vidsnap.core.windows import finish

        tasks = self.worker.tasks
        assert tasks is not None
        if not self._current(run):
            return {"Status": "Skipped"}
        results = tasks.window_results(run.execution, run.windows)
        missing = [i for i, r in enumerate(results) if r is None or "Outcomes" not in r]
        if missing:
            return self.fail(run, None)
        windows = [_outcomes(r["Outcomes"]) for r in results if r is not None]
        try:
            plan = _plan_of(run, state)
            outcome = finish(run.task, plan, windows, self.worker.sink, source_ref=run.source)
        except Exception as exc:
            error = map_client_error(exc)
            if error.transient:
                raise RetryWindow(f"{error.code}: {error.message}") from exc
            raise WindowFailed(f"{error.code}: merging the windows: {error.message}") from exc
        outcome.warnings += _count_check(run, windows)
        done = Checkpoint().then(outcome)
        attempt = run.attempt()
        note = self.worker.conclude(attempt, attempt.succeeded(done))
        logger.info("windows merged", extra={"windows": run.windows, "frames": len(done.outputs)})
        return {"Status": note.status, "Outputs": len(note.outputs)}

    def fail(self, run: Run, error: Any) -> dict[str, Any]:
        """End the task Failed (the state machine's catch, or a merge missing a window): delete what
        the windows wrote, one notification naming the first window's error."""

        tasks = self.worker.tasks
        assert tasks is not None
        if not self._current(run):
            return {"Status": "Skipped"}
        results = tasks.window_results(run.execution, run.windows)
        written = [
            uri
            for r in results
            if r is not None
            for stored in (r.get("Outcomes"), (r.get("Partial") or {}).get("Outcomes"))
            if stored
            for job in _outcomes(stored)
            for uri in _uris(job)
        ]
        left = RecordingSink(self.worker.sink, earlier=written).undo()
        note = self.worker.fail(run.attempt(), _error_of(run, results, error), left=left)
        return {"Status": note.status, "Code": note.code}


def _plan_of(run: Run, state: Mapping[str, Any]) -> WindowPlan:
    """The plan of windows the execution's state holds (:class:`BadRequest` when it holds none)."""
    from vidsnap.core.windows import WindowPlan

    return WindowPlan.from_plain(
        {
            "Windows": state.get("Windows"),
            "Totals": list(run.totals),
            "Counted": state.get("Counted", []),
            "DurationMs": state.get("DurationMs"),
        }
    )


def _count_check(run: Run, windows: Sequence[Sequence[Outcome]]) -> list[str]:
    """Warnings for jobs whose windows wrote another number of frames than the plan counted (the
    plan numbers ``{index}`` by that count; it is exact on constant-rate video)."""
    warnings = []
    for number, (job, total) in enumerate(zip(run.task.jobs, run.totals, strict=True)):
        if not job.save_frames or job.composes:
            continue
        written = sum(len(w[number].outputs) for w in windows)
        if written != total:
            warnings.append(
                f"job {number + 1}: the windows wrote {written} frames where the plan counted {total}; "
                "their {index} numbers may have gaps or repeats"
            )
    return warnings


def _error_class(code: str) -> type[VidsnapError]:
    """The error class of ``code`` (the first found; :class:`InternalError` when none)."""
    pending: list[type[VidsnapError]] = [VidsnapError]
    while pending:
        kind = pending.pop(0)
        if kind.code == code and not kind.transient:
            return kind
        pending.extend(kind.__subclasses__())
    return InternalError


def _error_of(run: Run, results: Sequence[Mapping[str, Any] | None], caught: Any) -> VidsnapError:
    """The error a failed fan-out reports: the first failed window's, else what the state machine
    caught, else the first window that did not finish."""
    for r in results:
        if r is not None and isinstance(r.get("Error"), Mapping):
            kind = _error_class(str(r["Error"].get("Code", "")))
            return kind(str(r["Error"].get("Message", "")))
    if isinstance(caught, Mapping) and caught.get("Error"):
        cause = str(caught.get("Cause") or "")
        return InternalError(f"the windows of the task failed: {caught['Error']}: {cause[:500]}")
    missing = next((i for i, r in enumerate(results) if r is None), 0)
    return InternalError(f"window {missing + 1} of {run.windows} did not finish")


__all__ = [
    "FANOUT_LEASE_S",
    "Fanout",
    "RetryWindow",
    "Run",
    "Runner",
    "WindowFailed",
    "estimate_seconds",
    "plan_fanout",
    "window_cost",
]

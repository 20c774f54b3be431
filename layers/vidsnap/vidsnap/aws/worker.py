"""The asynchronous worker: uploads and task messages -> engine -> outputs, task record, notification.

Life of a task (:meth:`Worker.execute`):

1. Checks that need no media: the source bucket is ``SOURCE_BUCKET``; the source is opened with a
   HEAD (404/403 are permanent failures, throttling is transient).
2. The task id is derived from the source (bucket, key, version or ETag) and the plan
   (:func:`vidsnap.core.plan.task_id`), and claimed in the task table with one conditional write.
   Already **Succeeded**: the stored result is returned, nothing is rerun or re-notified.
   **Running** in another invocation whose lease has not expired: :class:`TaskRunning` (transient)
   is raised so SQS delivers the message again later. **Failed** before: the task is run again
   (a failure may have come from configuration that has since been fixed; the same input failing
   again costs one more notification, which is the safer side).
3. Checks before any byte of video is decoded: every save-as bucket and the notify target against
   the allow-lists, ``num`` against ``MAX_FRAMES``. A refusal is a permanent failure: nothing is
   written (and no notification when the refused thing is the notify target itself).
4. :func:`vidsnap.core.engine.run_task` writes the frames through the sink; progress goes to the record
   (throttled to one write per ~2 s).
5. Exactly one notification when the task names a target, sent *before* the record is finished:
   if finishing the record fails, the redelivery re-runs and re-notifies (at least once) instead of
   losing the notification.

Long tasks (docs/LONG_TASKS.md): when the invocation has less than ``RESUME_MARGIN_SECONDS`` left,
the engine stops between frames; the worker saves in the record which outputs are done and where
to resume (:meth:`TaskStore.checkpoint`, under its lease), keeps what it wrote, and raises
:class:`OutOfTime` (transient) so that SQS delivers the message again; the next attempt takes the
task over and resumes there. Its notification lists every output, as one pass would.

Failures:

- **Permanent** (a :class:`~vidsnap.core.errors.VidsnapError` that is not transient, and any unexpected
  exception, reported as InternalError): the record becomes Failed, the notification says Failed,
  and :meth:`execute` returns normally, so the SQS message is deleted, not retried.
- **Transient** (throttling, timeouts, connection errors; :attr:`VidsnapError.transient`): the
  record stays **Running** with ``LastCode``/``LastMessage`` and its lease released, so the retry
  can take it over at once; the error is re-raised for SQS to retry it (and, after
  ``maxReceiveCount`` attempts, move it to the dead-letter queue; a DLQ redrive re-runs it).
- **No partial success**: when a task fails after writing some frames, the frames it wrote are
  deleted (best effort; any that could not be deleted are listed in the Message), and the
  notification lists no Outputs.

Loops: an upload rule writing its outputs where uploads are watched must not trigger itself. Three
guards, any of which stops it: keys under ``RESULTS_PREFIX`` are ignored; keys with an image
extension vidsnap writes (``.jpg .jpeg .png .webp .avif .gif .vtt``) are ignored (vidsnap takes videos and
audio files as sources, never its own images); and objects carrying the ``vidsnap-output`` user
metadata that :class:`~vidsnap.aws.storage.S3Sink` writes are ignored after the HEAD.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from vidsnap.aws.attempt import (
    Attempt,
    Checkpoint,
    OutOfTime,
    RecordingSink,
    TaskRunning,
    TimeLeft,
    short_of_time,
)
from vidsnap.aws.clients import Clients
from vidsnap.aws.errors import map_client_error
from vidsnap.aws.events import UploadEvent, classify_message
from vidsnap.aws.notify import (
    Notification,
    Notifier,
)
from vidsnap.aws.observe import MetricUnit, emit, logger
from vidsnap.aws.s3io import open_s3
from vidsnap.aws.settings import Settings
from vidsnap.aws.storage import OUTPUT_MARKER, S3Sink, Store
from vidsnap.aws.taskstore import TaskStore, notification_from_record
from vidsnap.core.errors import BadRequest, NotAllowed, SourceChanged, VidsnapError
from vidsnap.core.plan import SourceRef, Task, resolve_source

if TYPE_CHECKING:  # the engine loads PyAV: imported where a task really runs
    from vidsnap.core.engine import Sink

#: Extensions of images vidsnap writes: never sources, so never worth an upload trigger.
OUTPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".avif", ".gif", ".vtt")
#: A task's lease lasts the invocation's remaining time plus this (seconds): enough for the last
#: record writes after the deadline is read, far below Lambda's first retry of an asynchronous
#: event (~1 minute after a failure), which must be able to take the task over.
LEASE_MARGIN_S = 10.0

#: Seconds before a message handed back after :class:`OutOfTime` is delivered again.
RESUME_DELAY_S = 2

__all__ = [
    "LEASE_MARGIN_S",
    "OUTPUT_EXTENSIONS",
    "RESUME_DELAY_S",
    "Attempt",
    "Checkpoint",
    "OutOfTime",
    "RecordingSink",
    "TaskRunning",
    "Worker",
]


class Worker:
    """Runs tasks for the asynchronous function; all collaborators are injectable.

    Defaults: an :class:`~vidsnap.aws.storage.S3Sink` on ``OUTPUT_BUCKET`` and the allow-list, sources
    opened with :func:`~vidsnap.aws.s3io.open_s3` (``store``: from a :class:`~vidsnap.aws.storage.Store`
    instead, e.g. a local folder standing for ``SOURCE_BUCKET``), a
    :class:`~vidsnap.aws.notify.Notifier`, and a :class:`~vidsnap.aws.taskstore.TaskStore` when
    ``TASK_TABLE`` is set (without one there are no records, no idempotency and no progress).

    ``time_left`` returns the seconds the running invocation has left (each entry point takes the
    invocation's own; this one applies when a call passes none). A task's lease ends then (plus
    :data:`LEASE_MARGIN_S`), so when the invocation dies (a timeout) the retry Lambda sends a minute
    later can take the task over; unknown, leases last ``TASK_LEASE_SECONDS``.
    """

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        *,
        sink: Sink | None = None,
        store: Store | None = None,
        notifier: Notifier | None = None,
        tasks: TaskStore | None = None,
        time_left: TimeLeft | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.time_left = time_left
        self.sink: Sink = sink or S3Sink(clients.s3, settings.output_bucket, settings.allowed_output_buckets)
        self.store = store
        self.notifier = notifier or Notifier(clients, settings)
        if tasks is None and settings.task_table:
            tasks = TaskStore(clients, settings.task_table, lease_seconds=settings.task_lease_seconds)
        self.tasks = tasks

    # -- entry points -------------------------------------------------------------------------

    def hand_back(self, queue_arn: str, receipt_handle: str, *, delay_s: int = RESUME_DELAY_S) -> bool:
        """Deliver an SQS message of ``queue_arn`` again in ``delay_s`` seconds (ChangeMessageVisibility).

        After :class:`OutOfTime` the task's progress is saved: the next attempt should resume it now,
        not after the queue's visibility timeout (an hour and a half). Best effort: False when the
        ARN is not an SQS queue's or SQS refuses; SQS then redelivers at the timeout as before.
        """
        parts = queue_arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs" or not receipt_handle:
            return False
        try:
            url = self.notifier.queue_url(queue_arn, parts[4], parts[5])
            self.clients.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay_s
            )
        except Exception:  # the retry still happens, only later
            logger.warning("could not hand the message back early", extra={"queue": queue_arn}, exc_info=True)
            return False
        return True

    def handle_message(
        self, body: str, request_id: str, *, time_left: TimeLeft | None = None
    ) -> list[dict[str, Any]]:
        """One SQS message body: uploads (S3/SNS/EventBridge shapes) or a task; the results."""
        kind = classify_message(body)
        if isinstance(kind, str):
            return [self.handle_task_message(kind, request_id, time_left=time_left)]
        results = (self.handle_upload(upload, request_id, time_left=time_left) for upload in kind)
        return [result for result in results if result is not None]

    def handle_upload(
        self, upload: UploadEvent, request_id: str, *, time_left: TimeLeft | None = None
    ) -> dict[str, Any] | None:
        """Run the upload rule matching ``upload``; None when no rule applies (logged) or it is ours."""
        key = upload.key
        log = {"bucket": upload.bucket, "key": key}
        if key.startswith(self.settings.results_prefix):
            logger.info("ignoring upload under the results prefix", extra=log)
            return None
        if key.lower().endswith(OUTPUT_EXTENSIONS):
            logger.info("ignoring an image upload (vidsnap output type, never a source)", extra=log)
            return None
        rule = self.settings.rule_for(key)
        if rule is None:
            logger.info("ignoring upload: no UPLOAD_RULES entry matches", extra=log)
            return None
        from vidsnap.core.lang import parse_task

        source = SourceRef(key, upload.bucket, upload.version)
        try:
            task = parse_task(rule.process).with_source(source)
        except VidsnapError as exc:  # rules are validated at cold start; this is belt and braces
            logger.error("upload rule does not parse", extra={**log, "error": exc.message})
            return _failed_without_task(exc, request_id, [source.uri])
        clock = time_left or self.time_left
        result = self._execute(
            Attempt(task, source, request_id, etag=upload.etag, from_upload=True, time_left=clock)
        )
        return None if result is None else result.as_message()

    def handle_task_message(
        self, body: str | Mapping[str, Any], request_id: str, *, time_left: TimeLeft | None = None
    ) -> dict[str, Any]:
        """Parse and run a task message (IMM/MPS/OSS JSON or a process string naming no source fails)."""
        from vidsnap.core.lang import parse_task

        try:
            task = parse_task(body)
            source = resolve_source(task, self.settings.source_bucket)
        except VidsnapError as exc:
            # Nothing to notify (no target could be read) and nothing to record: log and drop.
            logger.error("task message rejected", extra={"code": exc.code, "error": exc.message})
            return _failed_without_task(exc, request_id, [])
        return self.execute(task.with_source(source), source, request_id, time_left=time_left)

    def execute(
        self,
        task: Task,
        source: SourceRef,
        request_id: str,
        *,
        etag: str | None = None,
        time_left: TimeLeft | None = None,
    ) -> dict[str, Any]:
        """Run ``task`` on ``source``; return the notification message (also for failures).

        Raises only transient errors (for SQS to retry). ``etag`` is the one the trigger saw.
        """
        clock = time_left or self.time_left
        result = self._execute(Attempt(task, source, request_id, etag=etag, time_left=clock))
        assert result is not None  # only uploads of our own outputs are skipped
        return result.as_message()

    # -- the task ---------------------------------------------------------------------------

    def _execute(self, attempt: Attempt) -> Notification | None:
        """Open the source, claim the task and run it; None for an upload of our own output."""
        reader: BinaryIO | None = None
        refusal: VidsnapError | None = None  # a permanent failure found before the task is claimed
        try:
            try:
                self.check_source_bucket(attempt.source)
                reader = self.open_source(attempt.source)
            except VidsnapError as exc:
                if exc.transient:
                    raise
                refusal = exc
            if reader is not None:
                seen = getattr(reader, "etag", None)
                if attempt.etag and seen and attempt.etag.strip('"') != seen:
                    refusal = SourceChanged(
                        f"{attempt.source.uri} was replaced after the upload event (ETag changed)"
                    )
                attempt = dataclasses.replace(attempt, etag=attempt.etag or seen)
                if attempt.from_upload and OUTPUT_MARKER in (getattr(reader, "metadata", None) or {}):
                    logger.info("ignoring an upload written by vidsnap", extra={"uri": attempt.source.uri})
                    return None
            logger.append_keys(task_id=attempt.task_id)
            try:
                return self._attempt(attempt, reader, refusal)
            finally:
                logger.remove_keys(["task_id"])
        finally:
            if reader is not None:
                with contextlib.suppress(Exception):  # closing must never mask the task's outcome
                    reader.close()

    def _attempt(
        self, attempt: Attempt, reader: BinaryIO | None, refusal: VidsnapError | None
    ) -> Notification:
        """Claim the task, then fail it (``refusal``, preflight) or run it on ``reader``."""
        claimed = self._claim(attempt)
        if claimed is not None:
            return claimed
        if refusal is not None:
            return self.fail(attempt, refusal)
        assert reader is not None  # nothing refused the source: it is open
        try:
            self._preflight(attempt.task)
        except VidsnapError as exc:
            if exc.transient:
                self._release(attempt, exc)
                raise
            # A refused notify target is not notified.
            notify = not (isinstance(exc, NotAllowed | BadRequest) and exc.param in ("topic", "queue"))
            return self.fail(attempt, exc, notify=notify)
        return self._run(attempt, reader)

    def check_source_bucket(self, source: SourceRef) -> None:
        """:class:`NotAllowed` unless ``source`` is in ``SOURCE_BUCKET``."""
        allowed = self.settings.source_bucket
        if not source.bucket or source.bucket != allowed:
            raise NotAllowed(
                f"source bucket {source.bucket!r} is not the configured SOURCE_BUCKET ({allowed!r})",
                param="bucket",
            )

    def open_source(self, source: SourceRef) -> BinaryIO:
        if self.store is not None:
            return self.store.open(source.key)
        assert source.bucket is not None  # check_source_bucket refuses a source without one
        return open_s3(self.clients.s3, source.bucket, source.key, version_id=source.version)

    def _claim(self, attempt: Attempt) -> Notification | None:
        """Claim the task record; the result when the task must not run again here."""
        if self.tasks is None:
            return None
        tid, task = attempt.task_id, attempt.task
        request = {"Source": attempt.source.uri, "Plan": json.loads(task.canonical()), "Style": task.style}
        lease = self._lease_seconds(attempt)
        state = self.tasks.begin(
            tid,
            request,
            [attempt.source.uri],
            lease_seconds=lease,
            RequestId=attempt.request_id,
            UserData=task.user_data,
        )
        if state == "new":
            return None
        record = self.tasks.get(tid)
        if state == "running":
            if record is not None and record.get("Execution"):
                # Handed to the state machine (docs/LONG_TASKS.md): it ends the task; nothing to retry.
                logger.info("task is running on the state machine", extra={"execution": record["Execution"]})
                return dataclasses.replace(notification_from_record(record), end_time="")
            raise TaskRunning(f"task {tid} is running in another invocation; retry later")
        if state == "succeeded" and record is not None:
            logger.info("task already succeeded: returning the stored result, not re-notifying")
            return notification_from_record(record)
        # Failed before: run it again (see the module docstring); take the record over.
        if not self.tasks.retry(tid, lease_seconds=lease):
            raise TaskRunning(f"task {tid} was claimed by another invocation; retry later")
        return None

    def _lease_seconds(self, attempt: Attempt) -> float:
        """How long a claim lasts: never past the end of this invocation (plus a margin).

        A fixed 15-minute lease outlived an invocation that timed out, so both of Lambda's retries
        of a direct S3 event (~1 and ~3 minutes later) found the task Running and gave up, and the
        record stayed Running for good.
        """
        lease = float(self.settings.task_lease_seconds)
        if attempt.time_left is not None:
            with contextlib.suppress(Exception):  # a broken context must not stop the task
                lease = min(lease, max(0.0, float(attempt.time_left())) + LEASE_MARGIN_S)
        return lease

    def _preflight(self, task: Task) -> None:
        """Allow-lists and limits, before any byte of media is decoded."""
        if task.notify is not None:
            self.notifier.check(task.notify)
        resolve = getattr(self.sink, "resolve_bucket", None)
        if resolve is not None:
            for target in (target for job in task.jobs for target in job.targets):
                resolve(target.bucket)
        # MAX_FRAMES is per task: the num of all jobs together (engine.check_limits says the same;
        # the engine is not imported here, it loads PyAV). Jobs without num share what is left.
        nums = [job.selection.num for job in task.jobs if job.selection.num > 0]
        if sum(nums) > self.settings.max_frames:
            asked = (
                f"num {nums[0]} is"
                if len(nums) == 1
                else f"num: the {len(nums)} jobs of the task ask for {sum(nums)} frames in all,"
            )
            raise BadRequest(
                f"{asked} above the limit of {self.settings.max_frames} frames per task (MAX_FRAMES)",
                param="num",
            )

    def _run(self, attempt: Attempt, reader: BinaryIO) -> Notification:
        # PyAV loads only when a task really runs (not for skipped uploads or refused tasks).
        from vidsnap.core import engine

        tasks = self.tasks
        earlier = Checkpoint.load(tasks.resumes(attempt.task_id) if tasks is not None else None)
        if earlier.position is None and self.settings.fanout.state_machine is not None:
            # A long task runs on the state machine (a resumed one goes on here).
            from vidsnap.aws.fanout import Fanout

            try:
                handed = Fanout(self).start(attempt, reader)
            except VidsnapError as exc:
                if exc.transient:
                    raise
                return self.fail(attempt, exc)
            if handed is not None:
                return handed
        sink = RecordingSink(self.sink, earlier=earlier.uris())

        def progress(fraction: float) -> None:
            if tasks is not None:
                tasks.progress(attempt.task_id, fraction * 100)

        try:
            outcome = engine.run_task(
                attempt.task,
                reader,
                sink,
                limits=self.settings.limits,
                progress=progress,
                resume=earlier.position,
                should_stop=self._should_stop(attempt),
            )
        except Exception as exc:  # every failure ends the task one way or another
            error = map_client_error(exc)
            if not isinstance(exc, VidsnapError):
                logger.exception("task failed unexpectedly", extra=attempt.log_context)
            left = sink.undo(earlier=not error.transient)
            if error.transient:
                self._release(attempt, error)
                if error is exc:
                    raise
                raise error from exc
            return self.fail(attempt, error, left=left)
        done = earlier.then(outcome)
        if outcome.stopped is not None:
            self._hand_back(attempt, done)
        latency_ms = (time.monotonic() - attempt.started) * 1000
        note = self.conclude(attempt, attempt.succeeded(done))
        _emit_metrics(len(outcome.outputs), int(getattr(reader, "bytes_read", 0)), latency_ms)
        logger.info(
            "task succeeded",
            extra={**attempt.log_context, "frames": len(outcome.outputs), "ms": int(latency_ms)},
        )
        return note

    def _should_stop(self, attempt: Attempt) -> Callable[[], bool] | None:
        """When the engine should stop a task to resume it later: less than ``RESUME_MARGIN_SECONDS``
        left. Never without a task table (nothing to resume from) or a clock."""
        if self.tasks is None:
            return None
        return short_of_time(attempt.time_left, self.settings.resume_margin_seconds)

    def _hand_back(self, attempt: Attempt, done: Checkpoint) -> NoReturn:
        """Save ``done`` in the record and let SQS deliver the task again (:class:`OutOfTime`)."""
        assert self.tasks is not None  # see _should_stop
        assert done.position is not None
        position = done.position
        error = OutOfTime(
            f"task {attempt.task_id} ran out of time after {len(done.outputs)} output(s); "
            f"it resumes at job {position.job + 1}, frame {position.count + 1}"
        )
        if not self.tasks.checkpoint(attempt.task_id, done.dump(), error.code, error.message):
            # Not saved (the lease was lost, or the checkpoint is too large): the next attempt
            # resumes from the last checkpoint saved and writes the same keys again.
            self._release(attempt, error)
        extra = {**attempt.log_context, "outputs": len(done.outputs)}
        logger.info("task out of time: checkpointed", extra=extra)
        emit({"TasksResumed": (MetricUnit.Count, 1)})
        raise error

    def fail(
        self, attempt: Attempt, error: VidsnapError, *, notify: bool = True, left: list[str] | None = None
    ) -> Notification:
        """End the task as Failed; ``left``: outputs written before the failure that are still there."""
        text = error.message
        if left:
            text += f" (outputs written before the failure could not be deleted: {', '.join(left[:20])})"
        note = self.conclude(
            attempt, attempt.notification("Failed", code=error.code, message=text), notify=notify
        )
        logger.warning("task failed", extra={"task_id": attempt.task_id, "code": error.code, "error": text})
        return note

    def conclude(self, attempt: Attempt, note: Notification, *, notify: bool = True) -> Notification:
        """Send the one notification (when the task names a target), then finish the record.

        The notification goes first: when finishing the record fails, the redelivery re-runs and
        re-notifies instead of losing it. A transient send failure releases the task and
        propagates; a permanent one (topic deleted, access denied) does not change the task's
        outcome and is added to its warnings.
        """
        target = attempt.task.notify
        notified: str | None = None
        if notify and target is not None:
            try:
                notified = self.notifier.send(target, note)
            except VidsnapError as exc:
                if exc.transient:
                    self._release(attempt, exc)
                    raise
                logger.error("notification failed", extra={"task_id": attempt.task_id, "error": exc.message})
                note = note.with_warning(f"notification failed: {exc.message}")
        if self.tasks is not None:
            self.tasks.finish(note, notified=notified)
        return note

    def _release(self, attempt: Attempt, error: VidsnapError) -> None:
        if self.tasks is not None:
            self.tasks.release(attempt.task_id, error.code, error.message)


def _failed_without_task(error: VidsnapError, request_id: str, sources: list[str]) -> dict[str, Any]:
    """The Failed message of a request that never became a task (not recorded, not notified)."""
    now = datetime.now(UTC)
    return Notification.build(
        "",
        "Failed",
        code=error.code,
        message=error.message,
        request_id=request_id,
        start=now,
        end=now,
        sources=sources,
        outputs=[],
        warnings=[],
        user_data=None,
    ).as_message()


def _emit_metrics(frames: int, bytes_read: int, latency_ms: float) -> None:
    emit(
        {
            "FramesWritten": (MetricUnit.Count, frames),
            "BytesRead": (MetricUnit.Bytes, bytes_read),
            "TaskLatencyMs": (MetricUnit.Milliseconds, latency_ms),
        }
    )

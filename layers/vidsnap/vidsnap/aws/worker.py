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
extension vidsnap writes (``.jpg .jpeg .png .webp .avif``) are ignored (vidsnap takes videos and
audio files as sources, never its own images); and objects carrying the ``vidsnap-output`` user
metadata that :class:`~vidsnap.aws.storage.S3Sink` writes are ignored after the HEAD.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from vidsnap.aws.clients import Clients
from vidsnap.aws.events import UploadEvent, classify_message
from vidsnap.aws.notify import Notifier, build_message
from vidsnap.aws.observe import MetricUnit, emit, logger
from vidsnap.aws.s3io import map_client_error, open_s3
from vidsnap.aws.settings import Settings
from vidsnap.aws.storage import OUTPUT_MARKER, S3Sink
from vidsnap.aws.taskstore import TaskStore, message_from_record
from vidsnap.core.errors import BadRequest, NotAllowed, SourceChanged, Throttled, VidsnapError
from vidsnap.core.plan import SourceRef, Task, resolve_source, task_id

#: Extensions of images vidsnap writes: never sources, so never worth an upload trigger.
OUTPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".avif")
#: A task's lease lasts the invocation's remaining time plus this (seconds): enough for the last
#: record writes after the deadline is read, far below Lambda's first retry of an asynchronous
#: event (~1 minute after a failure), which must be able to take the task over.
LEASE_MARGIN_S = 10.0


class TaskRunning(Throttled):
    """The task is being run by another invocation right now: retry the message later."""

    code = "TaskRunning"


class Sink(Protocol):
    """The engine's sink protocol (``put``); ``delete`` is optional and used to undo partial work."""

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str: ...


class Store(Protocol):
    """Where sources are opened when not straight from S3 (tests, local runs)."""

    def open(self, key: str) -> BinaryIO: ...


@dataclass
class _RecordingSink:
    """Passes writes through to a sink and remembers their URIs so a failed task can undo them."""

    inner: Sink
    written: list[str] = field(default_factory=list)

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        uri = self.inner.put(bucket, key, data, content_type)
        self.written.append(uri)
        return uri

    def undo(self) -> list[str]:
        """Delete what was written; return the URIs that could not be deleted."""
        delete = getattr(self.inner, "delete", None)
        if delete is None:
            return list(dict.fromkeys(self.written))
        left: list[str] = []
        for uri in dict.fromkeys(self.written):  # a template without index writes one key many times
            try:
                delete(uri)
            except Exception as exc:  # cleanup is best effort; what is left is reported
                logger.warning("could not delete partial output", extra={"uri": uri, "error": str(exc)})
                left.append(uri)
        return left


class Worker:
    """Runs tasks for the asynchronous function; all collaborators are injectable for tests.

    Defaults: an :class:`~vidsnap.aws.storage.S3Sink` on ``OUTPUT_BUCKET`` and the allow-list, sources
    opened with :func:`~vidsnap.aws.s3io.open_s3`, a :class:`~vidsnap.aws.notify.Notifier`, and a
    :class:`~vidsnap.aws.taskstore.TaskStore` when ``TASK_TABLE`` is set (without one there are no
    records, no idempotency and no progress). ``time_left`` returns the seconds the running
    invocation has left; a task's lease ends then (plus :data:`LEASE_MARGIN_S`), so when the
    invocation dies (a timeout) the retry Lambda sends a minute later can take the task over.
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
        time_left: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        #: Seconds the current invocation has left (set per invocation by the handler, from
        #: ``context.get_remaining_time_in_millis``); None: unknown, leases last TASK_LEASE_SECONDS.
        self.time_left = time_left
        self.clients = clients
        self.sink: Sink = sink or S3Sink(clients.s3, settings.output_bucket, settings.allowed_output_buckets)
        self.store = store
        self.notifier = notifier or Notifier(clients, settings)
        if tasks is None and settings.task_table:
            tasks = TaskStore(clients, settings.task_table, lease_seconds=settings.task_lease_seconds)
        self.tasks = tasks

    # -- entry points -------------------------------------------------------------------------

    def handle_message(self, body: str, request_id: str) -> list[dict[str, Any]]:
        """One SQS message body: uploads (S3/SNS/EventBridge shapes) or a task; the results."""
        kind = classify_message(body)
        if isinstance(kind, str):
            return [self.handle_task_message(kind, request_id)]
        results = []
        for upload in kind:
            result = self.handle_upload(upload, request_id)
            if result is not None:
                results.append(result)
        return results

    def handle_upload(self, upload: UploadEvent, request_id: str) -> dict[str, Any] | None:
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
            return self._failed_without_task(exc, request_id, [source.uri])
        return self._execute(task, source, request_id, etag=upload.etag, from_upload=True)

    def handle_task_message(self, body: str | Mapping[str, Any], request_id: str) -> dict[str, Any]:
        """Parse and run a task message (IMM/MPS/OSS JSON or a process string naming no source fails)."""
        from vidsnap.core.lang import parse_task

        try:
            task = parse_task(body)
            source = resolve_source(task, self.settings.source_bucket)
        except VidsnapError as exc:
            # Nothing to notify (no target could be read) and nothing to record: log and drop.
            logger.error("task message rejected", extra={"code": exc.code, "error": exc.message})
            return self._failed_without_task(exc, request_id, [])
        return self.execute(task.with_source(source), source, request_id)

    def execute(
        self, task: Task, source: SourceRef, request_id: str, *, etag: str | None = None
    ) -> dict[str, Any]:
        """Run ``task`` on ``source``; return the notification message (also for failures).

        Raises only transient errors (for SQS to retry). ``etag`` is the one the trigger saw.
        """
        result = self._execute(task, source, request_id, etag=etag, from_upload=False)
        assert result is not None  # only uploads of our own outputs are skipped
        return result

    # -- the task ---------------------------------------------------------------------------

    def _execute(
        self, task: Task, source: SourceRef, request_id: str, *, etag: str | None, from_upload: bool
    ) -> dict[str, Any] | None:
        start = datetime.now(UTC)
        started = time.monotonic()
        sources = [source.uri]
        reader: Any = None
        early: VidsnapError | None = None
        try:
            self._check_source_bucket(source)
            reader = self._open(source)
        except VidsnapError as exc:
            if exc.transient:
                raise
            early = exc
        if reader is not None:
            seen = getattr(reader, "etag", None)
            if etag and seen and etag.strip('"') != seen:
                early = SourceChanged(f"{source.uri} was replaced after the upload event (ETag changed)")
            etag = etag or seen
            if from_upload and OUTPUT_MARKER in (getattr(reader, "metadata", None) or {}):
                logger.info("ignoring an upload written by vidsnap", extra={"uri": source.uri})
                _close(reader)
                return None
        try:
            tid = task_id(source, etag, task)
            context = {"task_id": tid, "source": source.uri, "request_id": request_id}
            logger.append_keys(task_id=tid)
            claimed = self._claim(tid, task, source, sources, request_id)
            if claimed is not None:
                return claimed
            if early is not None:
                return self._fail(
                    tid, task, early, request_id=request_id, start=start, sources=sources, notify_ok=True
                )
            notify_ok = True
            try:
                self._preflight(task)
            except VidsnapError as exc:
                if exc.transient:
                    self._release(tid, exc)
                    raise
                notify_ok = not (isinstance(exc, NotAllowed | BadRequest) and exc.param in ("topic", "queue"))
                return self._fail(
                    tid, task, exc, request_id=request_id, start=start, sources=sources, notify_ok=notify_ok
                )
            return self._run(
                tid=tid,
                task=task,
                reader=reader,
                request_id=request_id,
                start=start,
                started=started,
                sources=sources,
                context=context,
            )
        finally:
            logger.remove_keys(["task_id"])
            _close(reader)

    def _check_source_bucket(self, source: SourceRef) -> None:
        if self.store is not None:
            return  # an injected store decides what it serves (local runs, tests)
        allowed = self.settings.source_bucket
        if not source.bucket or source.bucket != allowed:
            raise NotAllowed(
                f"source bucket {source.bucket!r} is not the configured SOURCE_BUCKET ({allowed!r})",
                param="bucket",
            )

    def _open(self, source: SourceRef) -> Any:
        if self.store is not None:
            return self.store.open(source.key)
        assert source.bucket is not None
        return open_s3(self.clients.s3, source.bucket, source.key, version_id=source.version)

    def _claim(
        self, tid: str, task: Task, source: SourceRef, sources: list[str], request_id: str
    ) -> dict[str, Any] | None:
        """Claim the task record; a result dict when the task must not run again here."""
        if self.tasks is None:
            return None
        request = {"Source": source.uri, "Plan": json.loads(task.canonical()), "Style": task.style}
        lease = self._lease_seconds()
        state = self.tasks.begin(
            tid, request, sources, lease_seconds=lease, RequestId=request_id, UserData=task.user_data
        )
        if state == "new":
            return None
        if state == "running":
            raise TaskRunning(f"task {tid} is running in another invocation; retry later")
        record = self.tasks.get(tid)
        if state == "succeeded" and record is not None:
            logger.info("task already succeeded: returning the stored result, not re-notifying")
            return message_from_record(record)
        # Failed before: run it again (see the module docstring); take the record over.
        if not self.tasks.retry(tid, lease_seconds=lease):
            raise TaskRunning(f"task {tid} was claimed by another invocation; retry later")
        return None

    def _lease_seconds(self) -> float:
        """How long a claim lasts: never past the end of this invocation (plus a margin).

        A fixed 15-minute lease outlived an invocation that timed out, so both of Lambda's retries
        of a direct S3 event (~1 and ~3 minutes later) found the task Running and gave up, and the
        record stayed Running for good.
        """
        lease = float(self.settings.task_lease_seconds)
        if self.time_left is not None:
            with contextlib.suppress(Exception):  # a broken context must not stop the task
                lease = min(lease, max(0.0, float(self.time_left())) + LEASE_MARGIN_S)
        return lease

    def _preflight(self, task: Task) -> None:
        """Allow-lists and limits, before any byte of media is decoded."""
        if task.notify is not None:
            self.notifier.check(task.notify)
        resolve = getattr(self.sink, "resolve_bucket", None)
        for job in task.jobs:
            if resolve is not None:
                resolve(job.output.bucket)
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

    def _run(
        self,
        *,
        tid: str,
        task: Task,
        reader: Any,
        request_id: str,
        start: datetime,
        started: float,
        sources: list[str],
        context: dict[str, Any],
    ) -> dict[str, Any]:
        # PyAV loads only when a task really runs (not for skipped uploads or refused tasks).
        from vidsnap.core import engine

        recording = _RecordingSink(self.sink)
        tasks = self.tasks

        def progress(fraction: float) -> None:
            if tasks is not None:
                tasks.progress(tid, fraction * 100)

        try:
            outcome = engine.run_task(task, reader, recording, limits=self.settings.limits, progress=progress)
        except Exception as exc:  # every failure ends the task one way or another
            error = map_client_error(exc)
            if not isinstance(exc, VidsnapError):
                logger.exception("task failed unexpectedly", extra=context)
            left = recording.undo()
            if error.transient:
                self._release(tid, error)
                raise error from exc
            return self._fail(
                tid,
                task,
                error,
                request_id=request_id,
                start=start,
                sources=sources,
                notify_ok=True,
                left=left,
            )
        latency_ms = (time.monotonic() - started) * 1000
        message = build_message(
            tid,
            "Succeeded",
            code="Success",
            message=f"{len(outcome.outputs)} frame(s) written",
            request_id=request_id,
            start=start,
            end=datetime.now(UTC),
            sources=sources,
            outputs=outcome.outputs,
            warnings=outcome.warnings,
            user_data=task.user_data,
        )
        notified = self._notify(tid, task, message)
        self._finish(tid, message, notified)
        _emit_metrics(len(outcome.outputs), int(getattr(reader, "bytes_read", 0)), latency_ms)
        logger.info(
            "task succeeded", extra={**context, "frames": len(outcome.outputs), "ms": int(latency_ms)}
        )
        return message

    def _fail(
        self,
        tid: str,
        task: Task,
        error: VidsnapError,
        *,
        request_id: str,
        start: datetime,
        sources: list[str],
        notify_ok: bool,
        left: list[str] | None = None,
    ) -> dict[str, Any]:
        text = error.message
        if left:
            text += f" (outputs written before the failure could not be deleted: {', '.join(left[:20])})"
        message = build_message(
            tid,
            "Failed",
            code=error.code,
            message=text,
            request_id=request_id,
            start=start,
            end=datetime.now(UTC),
            sources=sources,
            outputs=[],
            warnings=[],
            user_data=task.user_data,
        )
        notified = self._notify(tid, task, message) if notify_ok else None
        self._finish(tid, message, notified)
        logger.warning("task failed", extra={"task_id": tid, "code": error.code, "error": text})
        return message

    def _notify(self, tid: str, task: Task, message: dict[str, Any]) -> str | None:
        """Send the one notification; transient errors release the task and propagate."""
        if task.notify is None:
            return None
        try:
            return self.notifier.send(task.notify, message)
        except VidsnapError as exc:
            if exc.transient:
                self._release(tid, exc)
                raise
            # A permanent notify failure (topic deleted, access denied) does not change the task's
            # outcome; it is recorded in the task's warnings.
            logger.error("notification failed", extra={"task_id": tid, "error": exc.message})
            message["Warnings"] = [*message["Warnings"], f"notification failed: {exc.message}"]
            return None

    def _finish(self, tid: str, message: dict[str, Any], notified: str | None) -> None:
        if self.tasks is None:
            return
        self.tasks.finish(
            tid,
            message["Status"],
            code=message["Code"],
            message=message["Message"],
            outputs=message["Outputs"],
            warnings=message["Warnings"],
            notification=message,
            notified=notified,
        )

    def _release(self, tid: str, error: VidsnapError) -> None:
        if self.tasks is not None:
            self.tasks.release(tid, error.code, error.message)

    def _failed_without_task(
        self, error: VidsnapError, request_id: str, sources: list[str]
    ) -> dict[str, Any]:
        """The Failed message of a request that never became a task (not recorded, not notified)."""
        now = datetime.now(UTC)
        return build_message(
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
        )


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        # Closing a reader must never mask the real outcome of the task.
        with contextlib.suppress(Exception):
            close()


def _emit_metrics(frames: int, bytes_read: int, latency_ms: float) -> None:
    emit(
        {
            "FramesWritten": (MetricUnit.Count, frames),
            "BytesRead": (MetricUnit.Bytes, bytes_read),
            "TaskLatencyMs": (MetricUnit.Milliseconds, latency_ms),
        }
    )

"""One attempt at an asynchronous task and what it carries between invocations: its identity and
clock (:class:`Attempt`), the record of what it wrote (:class:`RecordingSink`), how far it got
(:class:`Checkpoint`), and the transient errors that hand it to a later attempt.

Shared by the worker (:mod:`vidsnap.aws.worker`), which runs tasks, and the fan-out
(:mod:`vidsnap.aws.fanout`), which ends the tasks it ran in windows as the worker ends its own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any

from vidsnap.aws.notify import (
    COMPOSITION_TYPES,
    CompositionLike,
    Notification,
    OutputLike,
    composition_entry,
    output_entry,
)
from vidsnap.aws.observe import logger
from vidsnap.core.errors import Throttled
from vidsnap.core.plan import SourceRef, Task, task_id

if TYPE_CHECKING:  # the engine loads PyAV
    from vidsnap.core.engine import Outcome, Position, Sink

__all__ = [
    "Attempt",
    "Checkpoint",
    "OutOfTime",
    "RecordingSink",
    "TaskRunning",
    "TimeLeft",
    "short_of_time",
    "summary",
]

#: Seconds the running invocation has left (from the Lambda context).
TimeLeft = Callable[[], float]


def short_of_time(clock: TimeLeft | None, margin: float) -> Callable[[], bool] | None:
    """A ``should_stop`` for the engine: True once ``clock`` says less than ``margin`` seconds are
    left (None: no clock, or a margin of 0). A clock that fails never stops anything."""
    if clock is None or margin <= 0:
        return None

    def should_stop() -> bool:
        try:
            return float(clock()) < margin
        except Exception:  # a broken context must not stop the work
            return False

    return should_stop


class TaskRunning(Throttled):
    """The task is being run by another invocation right now: retry the message later."""

    code = "TaskRunning"


class OutOfTime(Throttled):
    """The invocation ran out of time; the task's progress is saved: retry the message to resume."""

    code = "OutOfTime"


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task: what runs on what, for which request, and until when it may hold the task.

    ``etag`` is the one the trigger saw, then (:meth:`Worker._execute`) the one the source's HEAD
    saw; with the source and the task it makes :attr:`task_id`. ``time_left`` is the invocation's
    clock (None: unknown); ``start`` and ``started`` (monotonic) are when the attempt began.
    """

    task: Task
    source: SourceRef
    request_id: str
    etag: str | None = None
    from_upload: bool = False
    time_left: TimeLeft | None = None
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)

    @cached_property
    def task_id(self) -> str:
        """The deterministic task id (:func:`vidsnap.core.plan.task_id`)."""
        return task_id(self.source, self.etag, self.task)

    @property
    def log_context(self) -> dict[str, str]:
        """What every log line about this attempt says."""
        return {"task_id": self.task_id, "source": self.source.uri, "request_id": self.request_id}

    def notification(
        self,
        status: str,
        *,
        code: str,
        message: str,
        outputs: Sequence[OutputLike | Mapping[str, Any]] = (),
        warnings: Sequence[str] = (),
        compositions: Sequence[CompositionLike | Mapping[str, Any]] = (),
    ) -> Notification:
        """The attempt's notification, ending now (``outputs``, ``compositions``: the engine's)."""
        return Notification.build(
            self.task_id,
            status,
            code=code,
            message=message,
            request_id=self.request_id,
            start=self.start,
            end=datetime.now(UTC),
            sources=[self.source.uri],
            outputs=outputs,
            warnings=warnings,
            compositions=compositions,
            user_data=self.task.user_data,
        )

    def succeeded(self, done: Checkpoint) -> Notification:
        """The Succeeded notification of the task once ``done`` holds all its outputs."""
        return self.notification(
            "Succeeded",
            code="Success",
            message=summary(len(done.outputs), done.kinds()),
            outputs=done.outputs,
            warnings=done.warnings,
            compositions=done.compositions,
        )


@dataclass
class RecordingSink:
    """Passes writes through to a sink and remembers their URIs, so a failed task can undo them.

    The one record of a task's partial outputs: the engine raises the error that stopped the task
    as it is, whatever was written before it. ``earlier``: what the attempts before this one
    wrote (a resumed task): undone when the task fails, kept on a transient error (the checkpoint
    that lists them stays).
    """

    inner: Sink
    written: list[str] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        uri = self.inner.put(bucket, key, data, content_type)
        self.written.append(uri)
        return uri

    def undo(self, *, earlier: bool = True) -> list[str]:
        """Delete what was written, each URI once; return the URIs that could not be deleted.

        ``earlier`` False: only what this attempt wrote (and the earlier attempts did not)."""
        kept = set(self.earlier)
        written = list(dict.fromkeys(self.earlier + self.written if earlier else self.written))
        if not earlier:  # a template without index writes one key many times
            written = [uri for uri in written if uri not in kept]
        self.written.clear()
        delete = getattr(self.inner, "delete", None)
        if delete is None:
            return written
        left: list[str] = []
        for uri in written:
            try:
                delete(uri)
            except Exception as exc:  # cleanup is best effort; what is left is reported
                logger.warning("could not delete partial output", extra={"uri": uri, "error": str(exc)})
                left.append(uri)
        return left


@dataclass(frozen=True)
class Checkpoint:
    """What the attempts at a task have done so far (as notification entries) and where the next
    one resumes (``position``; None: from the beginning). Stored in the task record."""

    outputs: tuple[dict[str, Any], ...] = ()
    compositions: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    position: Position | None = None

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> Checkpoint:
        """The checkpoint a record holds (None or unreadable: nothing done)."""
        from vidsnap.core.writer import Position

        if not data:
            return cls()
        try:
            pts = data.get("Pts")
            position = Position(
                int(data["Job"]),
                tuple(int(c) for c in data.get("Counts", [])),
                int(data.get("Count", 0)),
                int(pts) if pts is not None else None,
                Fraction(str(data.get("TimeMs", "0"))),
            )
            return cls(
                tuple(dict(o) for o in data.get("Outputs", [])),
                tuple(dict(c) for c in data.get("Compositions", [])),
                tuple(str(w) for w in data.get("Warnings", [])),
                position,
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            logger.warning("unreadable checkpoint: the task starts over", extra={"error": str(exc)})
            return cls()

    def dump(self) -> dict[str, Any]:
        """The record's ``Checkpoint`` (JSON types; exact times as ``"num/den"`` text)."""
        position = self.position
        assert position is not None
        return {
            "Job": position.job,
            "Counts": list(position.counts),
            "Count": position.count,
            "Pts": position.pts,
            "TimeMs": str(position.time_ms),
            "Outputs": list(self.outputs),
            "Compositions": list(self.compositions),
            "Warnings": list(self.warnings),
        }

    def then(self, outcome: Outcome) -> Checkpoint:
        """This checkpoint followed by an attempt's ``outcome`` (and where it stopped, if it did)."""
        return Checkpoint(
            self.outputs + tuple(output_entry(o) for o in outcome.outputs),
            self.compositions + tuple(composition_entry(c) for c in outcome.compositions),
            self.warnings + tuple(outcome.warnings),
            outcome.stopped,
        )

    def uris(self) -> list[str]:
        """Every object the checkpoint lists (what the earlier attempts wrote)."""
        return [str(e["URI"]) for e in (*self.outputs, *self.compositions) if "URI" in e]

    def kinds(self) -> Counter[str]:
        """How many compositions of each kind (``sprite``, ``track``, ``animation``)."""
        names = {v: k for k, v in COMPOSITION_TYPES.items()}
        return Counter(names.get(str(c.get("Type")), str(c.get("Type"))) for c in self.compositions)


def summary(outputs: int, counts: Counter[str]) -> str:
    """The success message: frames written, and the compositions made of them."""
    text = f"{outputs} frame(s) written"
    made = [f"{n} {kind if kind != 'sprite' else 'sprite sheet'}(s)" for kind, n in counts.items()]
    return f"{text}, {', '.join(made)}" if made else text

"""Execute a normalised plan against a source: the one place where decoding, selection, imaging and
naming meet. No AWS here: outputs go to a :class:`Sink`, sources are paths or seekable file objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO, Protocol

import av

from .decode import Picked, Video
from .errors import BadRequest, UndecodableMedia, VidsnapError
from .imaging import Geometry, plan_geometry, render
from .naming import frames_overwrite, output_key
from .plan import CONTENT_TYPES, ImageSpec, SnapshotJob, SnapshotRequest, SourceRef, Task
from .select import select_frames

Source = str | os.PathLike[str] | BinaryIO
Progress = Callable[[float], None]


class Sink(Protocol):
    """Where outputs are written (a local folder, an S3 bucket)."""

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` (in ``bucket``, None: the default) and return its URI."""
        ...


@dataclass(frozen=True)
class Limits:
    """Per-request limits (SPEC 5): frames per task and output pixels per image."""

    max_frames: int = 1000
    max_pixels: int = 4096 * 4096


@dataclass(frozen=True)
class Rendered:
    """One synchronous snapshot: the encoded image and what it shows."""

    data: bytes
    content_type: str
    width: int
    height: int
    time_ms: Fraction


@dataclass(frozen=True)
class Output:
    """One written output of a task."""

    uri: str
    time_ms: Fraction
    width: int
    height: int
    size: int


@dataclass
class Outcome:
    """What a task produced: its outputs in order, and warnings for the notification."""

    outputs: list[Output] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class TaskFailed(VidsnapError):
    """Wraps the error that stopped a task, with the outputs already written before it stopped.

    The task is Failed as a whole (no partial output is reported as success); callers may delete or
    list ``written`` so that nothing is left unexplained.
    """

    def __init__(self, cause: VidsnapError, written: list[Output]) -> None:
        super().__init__(cause.message, ec=cause.ec, param=cause.param)
        self.cause = cause
        self.written = written
        # Keep the cause's classification so the edges map the status/retry correctly.
        self.status = cause.status  # type: ignore[misc]
        self.code = cause.code  # type: ignore[misc]
        self.transient = cause.transient  # type: ignore[misc]


def report_ms(t: Fraction) -> int | float:
    """A presentation time for people and JSON: an int when whole, else ms rounded to 3 decimals."""
    if t.denominator == 1:
        return int(t)
    return round(float(t), 3)


def snapshot(source: Source, req: SnapshotRequest, *, limits: Limits | None = None) -> Rendered:
    """Render the single frame a synchronous ``video/snapshot`` asks for."""
    limits = limits or Limits()
    with Video(source) as video:
        picked = video.frame_at(req.time_ms, exact=req.exact)
        geometry = _geometry(video, picked, req.image, limits)
        data = render(picked.frame, geometry, req.image.format)
    return Rendered(data, req.image.content_type, geometry.width, geometry.height, picked.time_ms)


def check_limits(task: Task, limits: Limits) -> None:
    """Reject a task that asks for more frames than allowed, before any byte of media is read."""
    for job in task.jobs:
        if job.selection.num > limits.max_frames:
            raise BadRequest(
                f"num {job.selection.num} is above the limit of {limits.max_frames} frames per task",
                param="num",
            )


def run_task(
    task: Task,
    source: Source,
    sink: Sink,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    source_ref: SourceRef | None = None,
) -> Outcome:
    """Run every job of ``task`` on ``source`` and write the frames to ``sink``.

    ``source_ref`` names the source for output key templates (``{barename}`` …); it defaults to the
    task's own source, then to the path. Raises :class:`TaskFailed` when a job fails after some
    outputs were written, so that no partial result is mistaken for success.
    """
    limits = limits or Limits()
    check_limits(task, limits)
    ref = source_ref or task.source or SourceRef(key=_source_name(source))
    outcome = Outcome()
    try:
        with Video(source, bulk=True) as video:
            for number, job in enumerate(task.jobs):
                part = (number, len(task.jobs))
                _run_job(video, job, ref, sink, limits=limits, outcome=outcome, progress=progress, part=part)
    except VidsnapError as exc:
        if outcome.outputs:
            raise TaskFailed(exc, outcome.outputs) from exc
        raise
    except (av.error.FFmpegError, OSError) as exc:
        err = UndecodableMedia(f"media could not be decoded: {exc}")
        raise (TaskFailed(err, outcome.outputs) if outcome.outputs else err) from exc
    if progress:
        progress(1.0)
    return outcome


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
) -> None:
    """Run one job, appending its outputs and warnings to ``outcome``; ``part`` is (job, of jobs)."""
    template = job.output.key_template
    geometries: dict[tuple[int, int], Geometry] = {}
    duration = video.duration_ms or Fraction(1)
    count = 0
    for picked in select_frames(
        video, job.selection, max_frames=limits.max_frames, warnings=outcome.warnings
    ):
        count += 1
        shape = (picked.frame.width, picked.frame.height)
        if shape not in geometries:  # the size may change mid-stream; plan once per shape
            geometries[shape] = _geometry(video, picked, job.image, limits)
        geometry = geometries[shape]
        data = render(picked.frame, geometry, job.image.format)
        key = output_key(template, index=count, ext=job.image.format, source=ref)
        uri = sink.put(job.output.bucket, key, data, CONTENT_TYPES[job.image.format])
        outcome.outputs.append(Output(uri, picked.time_ms, geometry.width, geometry.height, len(data)))
        if progress:
            done = min(Fraction(1), max(Fraction(0), picked.time_ms / duration))
            progress(float((part[0] + done) / part[1]))
    if count == 0:
        _no_frames(job, video, outcome)
    elif count > 1 and frames_overwrite(template):
        outcome.warnings.append(
            f"key template {template!r} has no index variable: each of the {count} frames was written "
            "to the same key, so only the last one remains"
        )


def _no_frames(job: SnapshotJob, video: Video, outcome: Outcome) -> None:
    """A job that selected nothing: fine for dhash (no scene change), an error otherwise."""
    sel = job.selection
    if sel.mode == "dhash":
        outcome.warnings.append(f"no sample scored above the dhash threshold {sel.threshold}")
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

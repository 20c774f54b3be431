"""The normalised, validated plan that every request language is parsed into (README: Request languages).

These are plain frozen dataclasses: the parser (:mod:`vidsnap.core.lang`) builds them, the engine
(:mod:`vidsnap.core.engine`) executes them. Nothing here touches media or AWS. Times are milliseconds
from the start of the presentation (the stream's first frame counts as 0), kept as exact
:class:`~fractions.Fraction` values where a request language allows fractions (IMM ``Interval``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Literal

from vidsnap.core.errors import BadRequest

Format = Literal["jpg", "png", "webp", "avif"]
ScaleType = Literal["stretch", "crop", "fill", "fit"]
Rotate = Literal["auto", "h", "w"]
Mode = Literal["inter", "key", "avg", "dhash", "scene"]
Style = Literal["oss", "imm", "mps"]
AnimationFormat = Literal["gif", "webp"]
#: A sheet's background: an RGB colour, or ``random`` (one colour derived from the sheet's key).
Color = tuple[int, int, int] | Literal["random"]

FORMATS: tuple[Format, ...] = ("jpg", "png", "webp", "avif")
CONTENT_TYPES: dict[str, str] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
    "vtt": "text/vtt; charset=utf-8",
}

#: Default key template when a task has no ``sys/saveas`` (README: Request languages).
DEFAULT_KEY_TEMPLATE = "{barename}/{index}.{autoext}"
#: The limits that guard decoding (README; docs/LIMITS.md), here so that the core and the settings
#: share them. 8192² = 67 Mpx of source picture (decompression bombs are refused above it).
DEFAULT_MAX_SOURCE_PIXELS = 8192 * 8192
#: 1080p frames decoded to reach one frame: at most ~12-18 s of decoding on one Lambda vCPU,
#: well inside the synchronous function's 60 s.
DEFAULT_DECODE_BUDGET_FRAMES = 6000
#: Frames per task (``MAX_FRAMES``) and output pixels per image (``MAX_PIXELS``) by default.
DEFAULT_MAX_FRAMES = 1000
DEFAULT_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Limits:
    """Per-request limits (README: Configuration): frames per task and output pixels per image, the source
    picture's pixels (``MAX_SOURCE_PIXELS``, None: no limit), the frames decoded to reach one
    requested frame (``DECODE_BUDGET_FRAMES``, None: no budget), and how many decoders a job may
    run at once (None: one per core, at most 4; see :mod:`vidsnap.core.parallel`).

    Plain numbers, here so that the settings (:mod:`vidsnap.aws.settings`) build them without loading
    the engine; :func:`vidsnap.core.engine.open_video` opens a video held to them.
    """

    max_frames: int = DEFAULT_MAX_FRAMES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_source_pixels: int | None = DEFAULT_MAX_SOURCE_PIXELS
    decode_budget_frames: int | None = DEFAULT_DECODE_BUDGET_FRAMES
    decoders: int | None = None


@dataclass(frozen=True)
class ImageSpec:
    """How to turn a decoded frame into an image.

    Sizes are *display* sizes (after sample aspect ratio and rotation). ``width``/``height`` 0 mean
    "not set". Rules (shared by sync and async forms):

    - both 0: the size is ``pw``% × ``ph``% of the source display size (100 % by default);
    - one set: the other is derived keeping the display aspect ratio;
    - both set: the frame is fitted to the w×h box according to ``scale_type``.
    """

    format: Format = "jpg"
    width: int = 0
    height: int = 0
    pw: Fraction = Fraction(100)
    ph: Fraction = Fraction(100)
    scale_type: ScaleType = "stretch"
    ar: Rotate = "auto"

    @property
    def content_type(self) -> str:
        """The MIME type of the output format."""
        return CONTENT_TYPES[self.format]


@dataclass(frozen=True)
class SnapshotRequest:
    """A synchronous ``video/snapshot``: one frame, returned to the caller (README: Request languages)."""

    time_ms: int = 0
    #: True: the exact frame shown at ``time_ms``; False (``m_fast``): the keyframe at or before it.
    exact: bool = True
    image: ImageSpec = field(default_factory=ImageSpec)
    #: ``t_auto`` / ``t_auto_<ms>``: the best poster frame near the start (``time_ms`` 0) or near
    #: ``time_ms`` instead of the frame at ``time_ms`` (README: Request languages, posters).
    auto: bool = False


#: How a job's first frame may be replaced (README: Request languages, posters): ``skip_black``
#: (MPS ``BlackLevel``) or ``poster`` (``"Time": "auto"``, ``"StartTime": "auto"``).
FirstKind = Literal["skip_black", "poster"]
#: The black level used when MPS ``Num`` 1 skips black frames without a ``BlackLevel`` of its own:
#: 98 %, the amount ffmpeg's ``blackframe`` filter uses by default.
DEFAULT_BLACK_LEVEL = 98
#: MPS ``PixelBlackThreshold`` default (as in IMS): a pixel darker than 70 of 255 counts as black.
DEFAULT_PIXEL_BLACK_THRESHOLD = 70


@dataclass(frozen=True)
class FirstFrame:
    """A job's first frame, chosen in a bounded window after the start instead of at the start.

    ``skip_black``: the first frame (keyframe, for keyframe jobs) within 5 s in which at most
    ``black_level`` % of the pixels are darker than ``pixel_black_threshold``; the frame at the
    start when there is none. ``poster``: the best poster frame of the window (not black, flat,
    blurred, a fade or mid-cut). Later frames of the job that fall before it are dropped.
    """

    kind: FirstKind
    black_level: int = DEFAULT_BLACK_LEVEL
    pixel_black_threshold: int = DEFAULT_PIXEL_BLACK_THRESHOLD


@dataclass(frozen=True)
class Selection:
    """Which frames an asynchronous job captures (README: Request languages)."""

    mode: Mode = "inter"
    start_ms: Fraction = Fraction(0)
    #: ``inter`` mode: step between times; 0 means every frame. ``dhash``: sampling step (0 → 1000).
    interval_ms: Fraction = Fraction(0)
    #: Maximum number of frames; 0 means no limit (``avg``: 0 means 10).
    num: int = 0
    #: ``dhash`` threshold, 0..100.
    threshold: int = 0
    #: True: exact frames at the planned times; False: the keyframe at or before each time (MPS intra).
    exact: bool = True
    #: How the first frame is chosen; None: the planned one (README: Request languages, posters).
    first: FirstFrame | None = None
    #: ``scene`` mode: the sharpest frame of each shot instead of its first frame.
    pick_best: bool = False


@dataclass(frozen=True)
class OutputTarget:
    """Where a job's frames go: a bucket (None: the configured default) and a key template."""

    bucket: str | None = None
    key_template: str = DEFAULT_KEY_TEMPLATE


@dataclass(frozen=True)
class NotifyTarget:
    """Where the end-of-task notification goes: an SNS topic or an SQS queue (name, ARN or URL)."""

    kind: Literal["sns", "sqs"]
    target: str


@dataclass(frozen=True)
class SourceRef:
    """The source object. ``bucket`` None means a local path (CLI) or the configured source bucket."""

    key: str
    bucket: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` for S3 sources, the plain path otherwise."""
        return f"s3://{self.bucket}/{self.key}" if self.bucket else self.key


@dataclass(frozen=True)
class SpriteSpec:
    """Sprite sheets of a job's frames (README: Compositions): ``columns`` × ``rows`` tiles a sheet,
    ``pad`` px between tiles and ``margin`` px to the edge, on ``color``. ``cell`` sizes a tile (None:
    the job's own image size); ``output`` names the sheets (``{index}``/``{TileCount}`` number them)."""

    columns: int = 6
    rows: int = 6
    pad: int = 2
    margin: int = 2
    color: Color = (0, 0, 0)
    format: Format = "jpg"
    cell: ImageSpec | None = None
    output: OutputTarget = field(default_factory=OutputTarget)


@dataclass(frozen=True)
class TrackSpec:
    """A WebVTT thumbnail track of a job's frames (README: Compositions), beside its images (or in
    ``output`` when given); with ``fragments`` its cues point into the sprite sheets (``#xywh=``)."""

    fragments: bool = False
    output: OutputTarget | None = None


@dataclass(frozen=True)
class AnimationSpec:
    """One looping animated file of a job's frames (README: Compositions), each shown ``frame_ms``
    (None: real time, the job's interval)."""

    format: AnimationFormat = "gif"
    frame_ms: Fraction | None = None
    output: OutputTarget = field(default_factory=OutputTarget)


@dataclass(frozen=True)
class SnapshotJob:
    """One target of a task: what to select, how to image it, where to write it.

    ``save_frames`` False: the frames feed only the compositions (IMM ``Sprites``/``Animations``,
    MPS ``IsKeepCellPic: false``); ``sprite``, ``track`` and ``animation`` compose the same frames.
    """

    selection: Selection
    image: ImageSpec
    output: OutputTarget = field(default_factory=OutputTarget)
    save_frames: bool = True
    sprite: SpriteSpec | None = None
    track: TrackSpec | None = None
    animation: AnimationSpec | None = None

    @property
    def targets(self) -> tuple[OutputTarget, ...]:
        """Every place the job writes to: its images (and a track beside them) and its compositions."""
        found = [self.output]
        for spec in (self.sprite, self.track, self.animation):
            if spec is not None and spec.output is not None:
                found.append(spec.output)
        return tuple(found)

    @property
    def composes(self) -> bool:
        """True when the job makes a sprite sheet, a thumbnail track or an animation."""
        return self.sprite is not None or self.track is not None or self.animation is not None


@dataclass(frozen=True)
class ComposeRequest:
    """A synchronous ``video/sprite`` or ``video/animation`` (README: Compositions): one sheet or one
    animation answered directly. ``params`` are the request's own ``k_v`` pairs in order, so that
    the thumbnail track of a storyboard (``track``: ``f_vtt``) can link each of its sheets."""

    job: SnapshotJob
    action: str
    params: tuple[tuple[str, str], ...] = ()
    track: bool = False


@dataclass(frozen=True)
class Task:
    """An asynchronous task in any request language, normalised (README: Request languages)."""

    jobs: tuple[SnapshotJob, ...]
    #: The source named in the request itself (JSON forms); None when the trigger/CLI supplies it.
    source: SourceRef | None = None
    notify: NotifyTarget | None = None
    user_data: str | None = None
    style: Style = "oss"

    def with_source(self, source: SourceRef) -> Task:
        """This task with its source set (by an upload trigger, the CLI or the HTTP path)."""
        return Task(self.jobs, source, self.notify, self.user_data, self.style)

    def canonical(self) -> str:
        """A stable JSON rendering of the plan, used to derive deterministic task ids."""
        return json.dumps(self.plain(), sort_keys=True, separators=(",", ":"))

    def plain(self) -> dict[str, Any]:
        """The task as JSON types (times as exact ``"num/den"`` text); :meth:`from_plain` reverses it."""
        return to_plain(self)

    @classmethod
    def from_plain(cls, data: Any) -> Task:
        """The task :meth:`plain` rendered (handed from one invocation to another: the windows of a
        long task). Raises :class:`BadRequest` for data that is not such a rendering."""
        try:
            return from_plain(cls, data)
        except ValueError as exc:
            raise BadRequest(f"not a vidsnap task: {exc}", param="task") from exc


def _plain(value: Any) -> Any:
    """Make dataclass dicts JSON-serialisable (Fractions as exact strings)."""
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


T = typing.TypeVar("T")


def to_plain(instance: Any) -> dict[str, Any]:
    """A dataclass instance as JSON types (Fractions as exact ``"num/den"`` text), for
    :func:`from_plain`."""
    plain: dict[str, Any] = _plain(asdict(instance))
    return plain


def from_plain(kind: type[T], value: Any) -> T:
    """The instance of the dataclass ``kind`` that :func:`to_plain` rendered as ``value``, checked
    against ``kind``'s type hints; :class:`ValueError` saying what does not fit."""
    try:
        made = _from_plain(kind, value)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from exc
    return typing.cast("T", made)


def _from_plain(kind: Any, value: Any) -> Any:  # noqa: PLR0911, PLR0912 (a branch per kind of type)
    """``value`` (as :func:`_plain` made it) back as an instance of the type ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise TypeError(f"{kind.__name__}: expected an object")
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        if not set(value) <= names:
            raise ValueError(f"{kind.__name__}: unknown fields {sorted(set(value) - names)}")
        return kind(**{name: _from_plain(hints[name], v) for name, v in value.items()})
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors: list[Exception] = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _from_plain(arm, value)
            except (TypeError, ValueError, KeyError) as exc:
                errors.append(exc)
        raise TypeError(f"no type of {kind} fits {value!r}: {errors}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {args}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected a list for {kind}")
        return [_from_plain(args[0], v) for v in value]
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list for {kind}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items for {kind}")
        return tuple(_from_plain(a, v) for a, v in zip(args, value, strict=True))
    if kind is Fraction:
        if not isinstance(value, str | int):
            raise TypeError("expected an exact time")
        return Fraction(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    raise TypeError(f"expected {kind}, got {value!r}")


#: Prefix of the ids :func:`task_id` gives.
TASK_ID_PREFIX = "vs-"


def task_id(source: SourceRef, etag: str | None, task: Task) -> str:
    """A deterministic id for running ``task`` on one version of ``source``.

    sha256 over the bucket, key, the object version (or, without one, its ETag) and the canonical
    plan, shortened to 128 bits (collisions are not a practical concern) and prefixed ``vs-``. The
    same upload or message processed twice gets the same id; a re-uploaded source (new ETag or
    version) gets a new one.
    """
    import hashlib  # ~4 ms (OpenSSL): not on a snapshot's start-up path

    identity = source.version or (etag.strip('"') if etag else "")
    material = json.dumps(
        [source.bucket or "", source.key, identity, task.canonical()], separators=(",", ":")
    )
    return TASK_ID_PREFIX + hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def report_ms(t: Fraction) -> int | float:
    """A presentation time for people and JSON: an int when whole, else ms rounded to 3 decimals."""
    if t.denominator == 1:
        return int(t)
    return round(float(t), 3)


def resolve_source(task: Task, default_bucket: str | None) -> SourceRef:
    """The source of a task: the task's own, with the bucket defaulting to ``default_bucket``.

    The worker and the HTTP surface both use this rule (with ``SOURCE_BUCKET``), so a TaskId the HTTP
    surface returns is the id the worker computes:
    ``task_id(source, etag_from_HEAD, task.with_source(source))``.
    """
    if task.source is None:
        raise BadRequest("the task names no source object (Bucket/Key, Sources or Input)", param="source")
    src = task.source
    return SourceRef(src.key, src.bucket or default_bucket, src.version)

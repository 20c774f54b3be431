"""IMM JSON tasks (``Sources``/``Targets``; README: Request languages, "IMM JSON").

Exactly one source ``{"URI": "s3://b/k" | "oss://b/k"}``. Each ``Targets[]`` item holds only
``Image``; ``Image`` holds ``Snapshots``, ``Sprites``, ``Animations`` (README: Compositions). One
job per ``Snapshots[]``, ``Sprites[]`` and ``Animations[]`` entry across all targets (at most 100
jobs). Snapshot fields: ``Format`` (required: jpg/jpeg/png/webp/avif), ``StartTime``
and ``Interval`` (seconds, fractions allowed), ``Number`` (0..100000), ``Mode``
(interval/keyframe/average/dhash), ``Threshold`` (0..100), ``ScaleType``, ``Width``/``Height`` (0 or
absent: not set; 0 < v < 1: a ratio of the source, 0.01..<1 → ``pw``/``ph`` percent; ≥ 1: an integer
32..4096 px), ``URI`` (``s3://``/``oss://`` bucket + key template; absent → the default output
location, like a process string without ``sys/saveas``). IMM is a typed API: numeric strings
(``"Number": "5"``) are rejected. ``Notification`` (SNS ``TopicArn`` or SQS ``QueueUrl``) and
``UserData`` are optional; the top-level fields ``ProjectName``, ``Tags`` and ``CredentialConfig``
are accepted and ignored. vidsnap extensions (README: Request languages, posters and scenes):
``"StartTime": "auto"`` (the best poster frame first; modes interval, keyframe, average), ``Mode``
``scene`` and ``PickBest`` (scene only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vidsnap.core.compose import parse_color
from vidsnap.core.errors import BadRequest
from vidsnap.core.lang.fields import (
    FORMATS,
    FORMATS_TEXT,
    MAX_JOBS,
    MAX_NUM,
    MAX_SIDE,
    MIN_ASYNC_SIDE,
    SCALES,
    as_list,
    as_number,
    as_object,
    as_str,
    check_bucket,
    check_fields,
    fail,
    get_choice,
    get_int,
    get_seconds_ms,
    leaf,
    notification,
    opt_str,
    ranged,
    source_key,
    user_data,
)
from vidsnap.core.naming import split_s3_uri, validate_template
from vidsnap.core.plan import (
    AnimationFormat,
    AnimationSpec,
    FirstFrame,
    Format,
    ImageSpec,
    Mode,
    OutputTarget,
    Selection,
    SnapshotJob,
    SourceRef,
    SpriteSpec,
    Task,
)

__all__ = ["parse_body"]

#: Selection modes of ``Snapshots[].Mode``.
MODES: dict[str, Mode] = {
    "interval": "inter",
    "keyframe": "key",
    "average": "avg",
    "dhash": "dhash",
    "scene": "scene",
}

_TOP = {"Sources", "Targets", "Notification", "UserData"}
_IGNORED = frozenset({"ProjectName", "Tags", "CredentialConfig"})
_SNAPSHOT = {
    "Format",
    "StartTime",
    "Interval",
    "Number",
    "Mode",
    "Threshold",
    "ScaleType",
    "Width",
    "Height",
    "URI",
    "PickBest",
}
_SELECTION = {"StartTime", "Interval", "Number", "Mode", "Threshold"}
_SPRITE = {
    *_SELECTION,
    "Format",
    "TileWidth",
    "TileHeight",
    "ScaleWidth",
    "ScaleHeight",
    "Pad",
    "Margin",
    "ScaleType",
    "URI",
}
_ANIMATION = {"Format", "StartTime", "Interval", "Number", "FrameRate", "Width", "Height", "ScaleType", "URI"}
_SPRITE_FORMATS: dict[str, Format] = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}
_ANIMATION_FORMATS: dict[str, AnimationFormat] = {"gif": "gif", "webp": "webp"}
#: Where compositions go without a ``URI`` (the default output location, like snapshots).
SPRITE_TEMPLATE = "{barename}/sprite-{index}.{autoext}"
ANIMATION_TEMPLATE = "{barename}/animation.{autoext}"
#: Tiles per row or column of a sprite sheet.
MAX_TILES = 10_000
#: Pixels between tiles or to the edge of a sheet.
MAX_GAP = 1024
_URI_SCHEMES = ("s3", "oss")


def _s3_uri(value: str, path: str, *, template: bool) -> tuple[str, str]:
    """``s3://bucket/rest`` or ``oss://bucket/rest`` (scheme in any case) → (bucket, rest), checked.

    ``rest`` is a key template (an output ``URI``) or a source key.
    """
    valid = "s3://bucket/key or oss://bucket/key"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in _URI_SCHEMES:
        fail(path, value, valid)
    try:
        bucket, key = split_s3_uri(f"{scheme.lower()}://{rest}")
    except ValueError:  # an empty key, or an empty bucket (which check_bucket names below)
        bucket, _, key = rest.partition("/")
        if not key:
            fail(path, value, valid, why="no object key in")
    check_bucket(path, bucket)
    if template:
        validate_template(key, param=leaf(path))
    else:
        source_key(key, path)
    return bucket, key


@dataclass(frozen=True)
class _Sides:
    """How a pair of IMM size fields reads: a ratio of the source below (or up to) 1, else px."""

    width: str
    height: str
    ratio_to_one: bool  # Sprites: (0, 1]; Snapshots and Animations: below 1
    px: tuple[int, int]


_IMAGE_SIDES = _Sides("Width", "Height", ratio_to_one=False, px=(MIN_ASYNC_SIDE, MAX_SIDE))
_TILE_SIDES = _Sides("ScaleWidth", "ScaleHeight", ratio_to_one=True, px=(2, MAX_SIDE - 1))


def _side(obj: Mapping[str, Any], key: str, path: str, sides: _Sides) -> tuple[int, Fraction]:
    """One size field: (px, percent). 0/absent: not set; a ratio of the source; or an integer px."""
    if obj.get(key) is None:
        return 0, Fraction(100)
    raw = obj[key]
    where = f"{path}.{key}"
    value = as_number(raw, where, strings=False)
    lo, hi = sides.px
    ratio = "a ratio in (0, 1] of the source" if sides.ratio_to_one else "a ratio 0.01..<1 of the source"
    valid = f"{ratio}, or an integer {lo}..{hi} (px)"
    if value == 0 and not sides.ratio_to_one:
        return 0, Fraction(100)
    if 0 < value < 1 or (sides.ratio_to_one and value == 1):
        if value < Fraction(1, 100):
            fail(where, raw, valid, why="value out of range")
        return 0, value * 100
    if value.denominator != 1:
        fail(where, raw, valid, why="not an integer")
    if not lo <= value <= hi:
        fail(where, raw, valid, why="value out of range")
    return int(value), Fraction(100)


def _image(obj: Mapping[str, Any], path: str, fmt: Format, sides: _Sides = _IMAGE_SIDES) -> ImageSpec:
    width, pw = _side(obj, sides.width, path, sides)
    height, ph = _side(obj, sides.height, path, sides)
    return ImageSpec(
        format=fmt,
        width=width,
        height=height,
        pw=pw,
        ph=ph,
        scale_type=get_choice(obj, "ScaleType", path, SCALES, "stretch"),
    )


def _selection(obj: Mapping[str, Any], path: str) -> Selection:
    mode: Mode = get_choice(obj, "Mode", path, MODES, "inter")
    start_ms, first = _start_time(obj, path, mode)
    return Selection(
        mode=mode,
        start_ms=start_ms,
        interval_ms=get_seconds_ms(obj, "Interval", path),
        num=get_int(obj, "Number", path, lo=0, hi=MAX_NUM, default=0),
        threshold=get_int(obj, "Threshold", path, lo=0, hi=100, default=0),
        exact=True,
        first=first,
        pick_best=_pick_best(obj, path, mode),
    )


def _output(obj: Mapping[str, Any], path: str, default: str | None = None) -> OutputTarget:
    uri = opt_str(obj.get("URI"), f"{path}.URI")
    if uri is None:
        return OutputTarget() if default is None else OutputTarget(key_template=default)
    bucket, template = _s3_uri(uri, f"{path}.URI", template=True)
    return OutputTarget(bucket=bucket, key_template=template)


def _start_time(obj: Mapping[str, Any], path: str, mode: Mode) -> tuple[Fraction, FirstFrame | None]:
    """``StartTime`` in seconds, or ``"auto"``: start at 0 with the best poster frame of the first
    seconds as the first frame (modes interval, keyframe, average)."""
    raw = obj.get("StartTime")
    if not (isinstance(raw, str) and raw.lower() == "auto"):
        return get_seconds_ms(obj, "StartTime", path), None
    if mode in ("dhash", "scene"):
        fail(
            f"{path}.StartTime",
            raw,
            "a number of seconds (StartTime auto works with Mode interval, keyframe, average)",
            why=f"StartTime auto does not apply to Mode {mode}, got",
        )
    return Fraction(0), FirstFrame("poster")


def _pick_best(obj: Mapping[str, Any], path: str, mode: Mode) -> bool:
    """``PickBest``: the sharpest frame of each shot instead of its first (``Mode`` scene only)."""
    raw = obj.get("PickBest")
    if raw is None:
        return False
    where = f"{path}.PickBest"
    if not isinstance(raw, bool):
        fail(where, raw, "true or false", why=f"expected a boolean, got {type(raw).__name__}")
    if raw and mode != "scene":
        fail(where, raw, "true only with Mode scene", why="PickBest applies to Mode scene only, got")
    return raw


def _snapshot(raw: Any, path: str) -> SnapshotJob:
    obj = as_object(raw, path)
    check_fields(obj, path, _SNAPSHOT)
    if obj.get("Format") is None:
        raise BadRequest(
            f"{path}.Format: the output format is required; valid: {FORMATS_TEXT}", param="Format"
        )
    image = _image(obj, path, get_choice(obj, "Format", path, FORMATS, "jpg"))
    return SnapshotJob(_selection(obj, path), image, _output(obj, path))


def _sprite(raw: Any, path: str) -> SnapshotJob:
    obj = as_object(raw, path)
    check_fields(obj, path, _SPRITE)
    fmt: Format = get_choice(obj, "Format", path, _SPRITE_FORMATS, "jpg")
    image = _image(obj, path, fmt, _TILE_SIDES)
    sprite = SpriteSpec(
        columns=get_int(obj, "TileWidth", path, lo=1, hi=MAX_TILES, default=6),
        rows=get_int(obj, "TileHeight", path, lo=1, hi=MAX_TILES, default=6),
        pad=get_int(obj, "Pad", path, lo=0, hi=MAX_GAP, default=2, unit=" (px)"),
        margin=get_int(obj, "Margin", path, lo=0, hi=MAX_GAP, default=2, unit=" (px)"),
        color=parse_color("black"),
        format=fmt,
        output=_output(obj, path, SPRITE_TEMPLATE),
    )
    return SnapshotJob(_selection(obj, path), image, save_frames=False, sprite=sprite)


def _animation(raw: Any, path: str) -> SnapshotJob:
    obj = as_object(raw, path)
    check_fields(obj, path, _ANIMATION)
    fmt: AnimationFormat = get_choice(obj, "Format", path, _ANIMATION_FORMATS, "gif")
    interval = get_seconds_ms(obj, "Interval", path)
    if interval <= 0:
        raise BadRequest(
            f"{path}.Interval: an animation needs the time between its frames; valid: seconds > 0",
            param="Interval",
        )
    frame_ms: Fraction | None = None
    if obj.get("FrameRate") is not None:
        raw_rate = obj["FrameRate"]
        rate = as_number(raw_rate, f"{path}.FrameRate", strings=False)
        ranged(
            rate,
            raw_rate,
            f"{path}.FrameRate",
            lo=Fraction(1, 100),
            hi=Fraction(100),
            valid="frames per second, 0.01..100",
            integer=False,
        )
        frame_ms = 1000 / rate
    selection = Selection(
        mode="inter",
        start_ms=get_seconds_ms(obj, "StartTime", path),
        interval_ms=interval,
        num=get_int(obj, "Number", path, lo=0, hi=MAX_NUM, default=0),
    )
    image = _image(obj, path, "png")  # the frames are composed, never saved on their own
    animation = AnimationSpec(format=fmt, frame_ms=frame_ms, output=_output(obj, path, ANIMATION_TEMPLATE))
    return SnapshotJob(selection, image, save_frames=False, animation=animation)


_KINDS = (("Snapshots", _snapshot), ("Sprites", _sprite), ("Animations", _animation))


def parse_body(body: Mapping[str, Any]) -> Task:
    """An IMM task (a decoded JSON object with ``Sources`` and ``Targets``) → :class:`Task`.

    Raises :class:`BadRequest` (and
    :class:`~vidsnap.core.errors.NotAllowed` for an unsafe source key).
    """
    check_fields(body, "", _TOP, _IGNORED)
    sources = as_list(body.get("Sources"), "Sources")
    if len(sources) != 1:
        fail("Sources", sources, "exactly one source", why=f"{len(sources)} sources in")
    src = as_object(sources[0], "Sources[0]")
    check_fields(src, "Sources[0]", {"URI"})
    uri = as_str(src.get("URI"), "Sources[0].URI")
    bucket, key = _s3_uri(uri, "Sources[0].URI", template=False)
    targets = as_list(body.get("Targets"), "Targets")
    jobs: list[SnapshotJob] = []
    for t, raw_target in enumerate(targets):
        tpath = f"Targets[{t}]"
        target = as_object(raw_target, tpath)
        # A transcoding target (Container, Video, Audio, ...) is not frame capture.
        check_fields(target, tpath, {"Image"})
        image = as_object(target.get("Image"), f"{tpath}.Image")
        check_fields(image, f"{tpath}.Image", {"Snapshots", "Sprites", "Animations"})
        for kind, parse in _KINDS:
            if image.get(kind) is None:
                continue
            for s, raw_item in enumerate(as_list(image[kind], f"{tpath}.Image.{kind}")):
                if len(jobs) >= MAX_JOBS:
                    raise BadRequest(
                        f"{kind}: more than {MAX_JOBS} targets in all; valid: 1..{MAX_JOBS}", param=kind
                    )
                jobs.append(parse(raw_item, f"{tpath}.Image.{kind}[{s}]"))
    if not jobs:
        raise BadRequest(
            "Targets: no Image.Snapshots, Sprites or Animations entry; valid: at least one target",
            param="Targets",
        )
    return Task(
        jobs=tuple(jobs),
        source=SourceRef(key=key, bucket=bucket),
        notify=notification(body.get("Notification")),
        user_data=user_data(body),
        style="imm",
    )

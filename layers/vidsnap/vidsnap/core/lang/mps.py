"""MPS JSON tasks (``Input``/``SnapshotConfig``; README: Request languages, "MPS JSON").

``Input`` ``{"Bucket", "Object", "Location"?}``; ``SnapshotConfig``: ``OutputFile`` ``{"Bucket"?,
"Object", "Location"?}`` (absent → default output location), ``Time`` (ms), ``Interval`` (s,
fractions allowed), ``Num`` (0..100000), ``Width``/``Height`` (32..4096 px), ``FrameType``
(``normal`` = exact frames, ``intra`` = keyframe at or before; default ``intra`` as in MPS),
``Format`` (vidsnap extension: default from the ``OutputFile.Object`` extension if it is an image
format, else jpg), ``TileOut`` / ``TileOutputFile`` → NotSupportedYet. As in MPS, object names are
URL-encoded: ``Object`` values are percent-decoded, and numbers may be given as decimal strings (MPS
examples send ``"Num": "10"``).

Selection: ``Num`` 1, or no ``Num`` and no ``Interval`` → one frame at ``Time`` (inter, num 1);
``Interval`` > 0 → inter mode at that step (``Num`` 0/absent: no limit); ``Interval`` 0/absent and
``Num`` > 1 → avg mode with ``Num`` frames. ``Location`` (an OSS region) and top-level
``PipelineId`` are accepted and ignored. ``Notification`` is accepted as in IMM (vidsnap extension).

Posters (README: Request languages, posters): ``BlackLevel`` (30..100) and ``PixelBlackThreshold``
(0..255, default 70) skip black first frames at ``Time`` 0 (``Num`` 1: always, level 98 by
default); ``"Time": "auto"`` (vidsnap extension) makes the first snapshot the best poster frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any
from urllib.parse import unquote

from vidsnap.core.lang.fields import (
    FORMATS,
    MAX_MS,
    MAX_NUM,
    MAX_SIDE,
    MIN_ASYNC_SIDE,
    as_object,
    as_str,
    check_bucket,
    check_fields,
    fail,
    get_choice,
    get_int,
    get_seconds_ms,
    not_supported,
    notification,
    opt_object,
    opt_str,
    source_key,
    user_data,
)
from vidsnap.core.naming import validate_template
from vidsnap.core.plan import (
    DEFAULT_BLACK_LEVEL,
    DEFAULT_PIXEL_BLACK_THRESHOLD,
    FirstFrame,
    Format,
    ImageSpec,
    OutputTarget,
    Selection,
    SnapshotJob,
    SourceRef,
    Task,
)

__all__ = ["parse_body"]

_TOP = {"Input", "SnapshotConfig", "Notification", "UserData"}
_IGNORED = frozenset({"PipelineId"})
_CONFIG = {
    "OutputFile",
    "Time",
    "Interval",
    "Num",
    "Width",
    "Height",
    "FrameType",
    "Format",
    "TileOut",
    "TileOutputFile",
    "BlackLevel",
    "PixelBlackThreshold",
}
#: ``FrameType`` → exact frames (True) or the keyframe at or before (False).
_FRAME_TYPES = {"normal": True, "intra": False}


def _object(obj: Mapping[str, Any], path: str) -> str:
    raw = as_str(obj.get("Object"), f"{path}.Object", limit=4096)
    # MPS documents Object values as URL-encoded UTF-8; plain names pass through unchanged.
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        fail(f"{path}.Object", raw, "a URL-encoded UTF-8 object name", why="value does not decode")


def _location(obj: Mapping[str, Any], path: str) -> tuple[str | None, str]:
    check_fields(obj, path, {"Bucket", "Object", "Location"})
    opt_str(obj.get("Location"), f"{path}.Location", limit=128)
    bucket = opt_str(obj.get("Bucket"), f"{path}.Bucket", limit=255)
    if bucket is not None:
        check_bucket(f"{path}.Bucket", bucket)
    return bucket, _object(obj, path)


def _is_auto(raw: Any) -> bool:
    """``"Time": "auto"`` (vidsnap extension): the best poster frame of the first seconds."""
    return isinstance(raw, str) and raw.strip().lower() == "auto"


def _black_skip(cfg: Mapping[str, Any], path: str, time_ms: int, *, one: bool) -> FirstFrame | None:
    """MPS ``BlackLevel`` (30..100 %) and ``PixelBlackThreshold`` (0..255, default 70).

    Only with ``Time`` 0: ``Num`` > 1 skips black first frames when ``BlackLevel`` is given; a single
    snapshot always skips them (``BlackLevel`` default :data:`~vidsnap.core.plan.DEFAULT_BLACK_LEVEL`).
    """
    level = get_int(cfg, "BlackLevel", path, lo=30, hi=100, default=0, strings=True, unit=" (%)")
    threshold = get_int(
        cfg,
        "PixelBlackThreshold",
        path,
        lo=0,
        hi=255,
        default=DEFAULT_PIXEL_BLACK_THRESHOLD,
        strings=True,
    )
    if time_ms != 0 or not (one or level):
        return None
    return FirstFrame("skip_black", level or DEFAULT_BLACK_LEVEL, threshold)


def parse_body(body: Mapping[str, Any]) -> Task:
    """An MPS task (a decoded JSON object with ``Input`` and ``SnapshotConfig``) → :class:`Task`.

    Raises :class:`~vidsnap.core.errors.BadRequest` / :class:`~vidsnap.core.errors.NotSupportedYet`
    (and :class:`~vidsnap.core.errors.NotAllowed` for an unsafe source key).
    """
    check_fields(body, "", _TOP, _IGNORED)
    inp = as_object(body.get("Input"), "Input")
    in_bucket, in_key = _location(inp, "Input")
    in_key = source_key(in_key, "Input.Object")
    cfg = as_object(body.get("SnapshotConfig"), "SnapshotConfig")
    path = "SnapshotConfig"
    check_fields(cfg, path, _CONFIG)
    not_supported(cfg.get("TileOut"), f"{path}.TileOut", "sprites (TileOut)")
    not_supported(cfg.get("TileOutputFile"), f"{path}.TileOutputFile", "sprites (TileOutputFile)")

    output = OutputTarget()
    out_ext = ""
    out_obj = opt_object(cfg.get("OutputFile"), f"{path}.OutputFile")
    if out_obj is not None:
        bucket, template = _location(out_obj, f"{path}.OutputFile")
        validate_template(template, param="Object")
        output = OutputTarget(bucket=bucket, key_template=template)
        out_ext = template.rsplit(".", 1)[-1].lower() if "." in template.rsplit("/", 1)[-1] else ""
    fmt: Format = get_choice(cfg, "Format", path, FORMATS, FORMATS.get(out_ext, "jpg"))

    auto = _is_auto(cfg.get("Time"))
    time_ms = 0
    if not auto:
        time_ms = get_int(cfg, "Time", path, lo=0, hi=MAX_MS, default=0, strings=True, unit=" (ms)")
    interval_ms = get_seconds_ms(cfg, "Interval", path, strings=True)
    count = get_int(cfg, "Num", path, lo=0, hi=MAX_NUM, default=0, strings=True)
    exact = get_choice(cfg, "FrameType", path, _FRAME_TYPES, False)
    one = count == 1 or (count == 0 and interval_ms == 0)
    first = FirstFrame("poster") if auto else _black_skip(cfg, path, time_ms, one=one)
    if one:
        # MPS: one snapshot at Time (Num 1 ignores Interval).
        selection = Selection(mode="inter", start_ms=Fraction(time_ms), num=1, exact=exact, first=first)
    elif interval_ms > 0:
        selection = Selection(
            mode="inter",
            start_ms=Fraction(time_ms),
            interval_ms=interval_ms,
            num=count,
            exact=exact,
            first=first,
        )
    else:
        # Interval 0 with Num > 1: Num frames evenly spaced from Time to the end.
        selection = Selection(mode="avg", start_ms=Fraction(time_ms), num=count, exact=exact, first=first)
    image = ImageSpec(
        format=fmt,
        width=get_int(
            cfg, "Width", path, lo=MIN_ASYNC_SIDE, hi=MAX_SIDE, default=0, strings=True, unit=" (px)"
        ),
        height=get_int(
            cfg, "Height", path, lo=MIN_ASYNC_SIDE, hi=MAX_SIDE, default=0, strings=True, unit=" (px)"
        ),
    )
    return Task(
        jobs=(SnapshotJob(selection, image, output),),
        source=SourceRef(key=in_key, bucket=in_bucket),
        notify=notification(body.get("Notification")),
        user_data=user_data(body),
        style="mps",
    )

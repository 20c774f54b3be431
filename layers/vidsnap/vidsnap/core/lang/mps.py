"""MPS JSON tasks (``Input``/``SnapshotConfig``; README: Request languages, "MPS JSON").

``Input`` ``{"Bucket", "Object", "Location"?}``; ``SnapshotConfig``: ``OutputFile`` ``{"Bucket"?,
"Object", "Location"?}`` (absent → default output location), ``Time`` (ms), ``Interval`` (s,
fractions allowed), ``Num`` (0..100000), ``Width``/``Height`` (32..4096 px), ``FrameType``
(``normal`` = exact frames, ``intra`` = keyframe at or before; default ``intra`` as in MPS),
``Format`` (vidsnap extension: default from the ``OutputFile.Object`` extension if it is an image
format, else jpg; ``vtt``: a thumbnail track beside the images), ``TileOut`` + ``TileOutputFile``
(sprite sheets) and ``SubOut.IsSptFrag`` (the track's cues point into the sheets), README:
Compositions. As in MPS, object names are
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

from vidsnap.core.compose import parse_color
from vidsnap.core.errors import BadRequest
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
    SpriteSpec,
    Task,
    TrackSpec,
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
    "SubOut",
    "BlackLevel",
    "PixelBlackThreshold",
}
_TILE_OUT = {"Lines", "Columns", "CellWidth", "CellHeight", "Margin", "Padding", "Color", "IsKeepCellPic"}
#: Tiles per row or column, and pixels of margin or padding, at most.
MAX_TILES = 10_000
MAX_GAP = 1024
_BOOLS = {"true": True, "false": False}
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


def _bool(obj: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    """A boolean field: JSON true/false, or (as MPS examples send them) the strings "true"/"false"."""
    raw = obj.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in _BOOLS:
        return _BOOLS[raw.lower()]
    return fail(f"{path}.{key}", raw, "true or false")


def _sprite(cfg: Mapping[str, Any], path: str, image: ImageSpec) -> tuple[SpriteSpec | None, bool]:
    """``TileOut`` + ``TileOutputFile`` → (the sprite, whether the single snapshots are kept)."""
    tile = opt_object(cfg.get("TileOut"), f"{path}.TileOut")
    out = opt_object(cfg.get("TileOutputFile"), f"{path}.TileOutputFile")
    if not tile and not out:
        return None, True
    tile = tile or {}
    tpath = f"{path}.TileOut"
    check_fields(tile, tpath, _TILE_OUT)
    if out is None:
        raise BadRequest(
            f"{path}.TileOutputFile: sprite sheets (TileOut) need an output file; valid: "
            '{"Bucket": .., "Object": "..{TileCount}.jpg"}',
            param="TileOutputFile",
        )
    bucket, template = _location(out, f"{path}.TileOutputFile")
    validate_template(template, param="TileOutputFile")
    ext = template.rsplit(".", 1)[-1].lower() if "." in template.rsplit("/", 1)[-1] else ""
    fmt: Format = FORMATS.get(ext, "jpg") if ext != "avif" else "jpg"

    def cell(key: str) -> int:
        return get_int(
            tile, key, tpath, lo=MIN_ASYNC_SIDE, hi=MAX_SIDE, default=0, strings=True, unit=" (px)"
        )

    cell_w, cell_h = cell("CellWidth"), cell("CellHeight")
    color = tile.get("Color")
    sprite = SpriteSpec(
        columns=get_int(tile, "Columns", tpath, lo=1, hi=MAX_TILES, default=10, strings=True),
        rows=get_int(tile, "Lines", tpath, lo=1, hi=MAX_TILES, default=10, strings=True),
        pad=get_int(tile, "Padding", tpath, lo=0, hi=MAX_GAP, default=0, strings=True, unit=" (px)"),
        margin=get_int(tile, "Margin", tpath, lo=0, hi=MAX_GAP, default=0, strings=True, unit=" (px)"),
        color=parse_color(as_str(color, f"{tpath}.Color", limit=64)) if color is not None else (0, 0, 0),
        format=fmt,
        cell=(
            ImageSpec(format=fmt, width=cell_w or image.width, height=cell_h or image.height)
            if cell_w or cell_h
            else None
        ),
        output=OutputTarget(bucket=bucket, key_template=template),
    )
    return sprite, _bool(tile, "IsKeepCellPic", tpath, True)


def _track(cfg: Mapping[str, Any], path: str, *, vtt: bool, sprite: bool, keep: bool) -> TrackSpec | None:
    """``Format: vtt`` (+ ``SubOut.IsSptFrag``) → the thumbnail track, checked against what it points at."""
    sub = opt_object(cfg.get("SubOut"), f"{path}.SubOut") or {}
    check_fields(sub, f"{path}.SubOut", {"IsSptFrag"})
    fragments = _bool(sub, "IsSptFrag", f"{path}.SubOut", False)
    if not vtt:
        if fragments:
            raise BadRequest(
                f"{path}.SubOut.IsSptFrag: sprite fragments belong to a thumbnail track; "
                'valid: with "Format": "vtt"',
                param="IsSptFrag",
            )
        return None
    if fragments and not sprite:
        raise BadRequest(
            f"{path}.SubOut.IsSptFrag: the cues point into sprite sheets; "
            "valid: with TileOut and TileOutputFile",
            param="IsSptFrag",
        )
    if not fragments and not keep:
        raise BadRequest(
            f"{path}.TileOut.IsKeepCellPic: a thumbnail track without IsSptFrag points at the single "
            "snapshots; valid: true, or SubOut.IsSptFrag true",
            param="IsKeepCellPic",
        )
    return TrackSpec(fragments=fragments)


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

    Raises :class:`~vidsnap.core.errors.BadRequest`
    (and :class:`~vidsnap.core.errors.NotAllowed` for an unsafe source key).
    """
    check_fields(body, "", _TOP, _IGNORED)
    inp = as_object(body.get("Input"), "Input")
    in_bucket, in_key = _location(inp, "Input")
    in_key = source_key(in_key, "Input.Object")
    cfg = as_object(body.get("SnapshotConfig"), "SnapshotConfig")
    path = "SnapshotConfig"
    check_fields(cfg, path, _CONFIG)

    output = OutputTarget()
    out_ext = ""
    out_obj = opt_object(cfg.get("OutputFile"), f"{path}.OutputFile")
    if out_obj is not None:
        bucket, template = _location(out_obj, f"{path}.OutputFile")
        validate_template(template, param="Object")
        output = OutputTarget(bucket=bucket, key_template=template)
        out_ext = template.rsplit(".", 1)[-1].lower() if "." in template.rsplit("/", 1)[-1] else ""
    out_fmt = FORMATS.get(out_ext, "jpg")
    chosen = get_choice(cfg, "Format", path, {**FORMATS, "vtt": "vtt"}, out_fmt)
    vtt = chosen == "vtt"
    fmt: Format = out_fmt if vtt else chosen

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
    sprite, keep = _sprite(cfg, path, image)
    track = _track(cfg, path, vtt=vtt, sprite=sprite is not None, keep=keep)
    job = SnapshotJob(selection, image, output, save_frames=keep, sprite=sprite, track=track)
    return Task(
        jobs=(job,),
        source=SourceRef(key=in_key, bucket=in_bucket),
        notify=notification(body.get("Notification")),
        user_data=user_data(body),
        style="mps",
    )

"""IMM JSON tasks (``Sources``/``Targets``; README: Request languages, "IMM JSON").

Exactly one source ``{"URI": "s3://b/k" | "oss://b/k"}``. Each ``Targets[]`` item holds only
``Image``; ``Image`` holds ``Snapshots``, ``Sprites``, ``Animations``; non-empty
``Sprites``/``Animations`` → NotSupportedYet. One job per ``Snapshots[]`` entry across all targets
(at most 100 jobs). Snapshot fields: ``Format`` (required: jpg/jpeg/png/webp/avif), ``StartTime``
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
from fractions import Fraction
from typing import Any

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
    not_supported,
    notification,
    opt_str,
    source_key,
    user_data,
)
from vidsnap.core.naming import split_s3_uri, validate_template
from vidsnap.core.plan import (
    FirstFrame,
    Format,
    ImageSpec,
    Mode,
    OutputTarget,
    Selection,
    SnapshotJob,
    SourceRef,
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


def _side(obj: Mapping[str, Any], key: str, path: str) -> tuple[int, Fraction]:
    """IMM Width/Height: (px, percent). 0/absent: not set; below 1: a ratio of the source."""
    if obj.get(key) is None:
        return 0, Fraction(100)
    raw = obj[key]
    where = f"{path}.{key}"
    value = as_number(raw, where, strings=False)
    valid = f"a ratio 0.01..<1 of the source, or an integer {MIN_ASYNC_SIDE}..{MAX_SIDE} (px)"
    if value == 0:
        return 0, Fraction(100)
    if value < 1:
        if value < Fraction(1, 100):
            fail(where, raw, valid, why="value out of range")
        return 0, value * 100
    if value.denominator != 1:
        fail(where, raw, valid, why="not an integer")
    if not MIN_ASYNC_SIDE <= value <= MAX_SIDE:
        fail(where, raw, valid, why="value out of range")
    return int(value), Fraction(100)


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
    fmt: Format = get_choice(obj, "Format", path, FORMATS, "jpg")
    width, pw = _side(obj, "Width", path)
    height, ph = _side(obj, "Height", path)
    mode: Mode = get_choice(obj, "Mode", path, MODES, "inter")
    start_ms, first = _start_time(obj, path, mode)
    selection = Selection(
        mode=mode,
        start_ms=start_ms,
        interval_ms=get_seconds_ms(obj, "Interval", path),
        num=get_int(obj, "Number", path, lo=0, hi=MAX_NUM, default=0),
        threshold=get_int(obj, "Threshold", path, lo=0, hi=100, default=0),
        exact=True,
        first=first,
        pick_best=_pick_best(obj, path, mode),
    )
    image = ImageSpec(
        format=fmt,
        width=width,
        height=height,
        pw=pw,
        ph=ph,
        scale_type=get_choice(obj, "ScaleType", path, SCALES, "stretch"),
    )
    output = OutputTarget()
    uri = opt_str(obj.get("URI"), f"{path}.URI")
    if uri is not None:
        bucket, template = _s3_uri(uri, f"{path}.URI", template=True)
        output = OutputTarget(bucket=bucket, key_template=template)
    return SnapshotJob(selection, image, output)


def parse_body(body: Mapping[str, Any]) -> Task:
    """An IMM task (a decoded JSON object with ``Sources`` and ``Targets``) → :class:`Task`.

    Raises :class:`BadRequest` / :class:`~vidsnap.core.errors.NotSupportedYet` (and
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
        not_supported(image.get("Sprites"), f"{tpath}.Image.Sprites", "sprites")
        not_supported(image.get("Animations"), f"{tpath}.Image.Animations", "animations")
        if image.get("Snapshots") is None:
            continue
        for s, raw_snap in enumerate(as_list(image["Snapshots"], f"{tpath}.Image.Snapshots")):
            if len(jobs) >= MAX_JOBS:
                raise BadRequest(
                    f"Snapshots: more than {MAX_JOBS} snapshot targets; valid: 1..{MAX_JOBS}",
                    param="Snapshots",
                )
            jobs.append(_snapshot(raw_snap, f"{tpath}.Image.Snapshots[{s}]"))
    if not jobs:
        raise BadRequest(
            "Targets: no Image.Snapshots entry; valid: at least one snapshot target", param="Targets"
        )
    return Task(
        jobs=tuple(jobs),
        source=SourceRef(key=key, bucket=bucket),
        notify=notification(body.get("Notification")),
        user_data=user_data(body),
        style="imm",
    )

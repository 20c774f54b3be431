"""OSS process strings and the OSS JSON task (README: Request languages, "OSS synchronous", "OSS
asynchronous" and "OSS JSON"; EC codes: README: HTTP API, errors).

Process strings
---------------
``<action>,<k>_<v>,...`` segments separated by ``|``; a ``notify`` segment may also follow the
save-as segment after ``/`` (``sys/saveas,o_..,b_../notify,topic_..``) as the OSS docs write it.
A leading ``x-oss-process=`` / ``x-oss-async-process=`` is ignored, and a string that still holds
``%XX`` escapes (``%2C``, ``%7C``, ``%3D``) is URL-decoded once (``+`` is kept: it is a base64
character). Parameter names are case-sensitive (OSS names are lower case); enumerated values
(``f``, ``m``, ``ar``, ``scaletype``) are accepted in any case. A duplicated parameter, an empty item
(``t_1,,w_2``, a trailing comma), a missing ``_`` and an unknown parameter are errors.

- Integers are ASCII digits only: no sign, no fraction, no exponent, no spaces; leading zeros are
  accepted. Times (``t``, ``ss``, ``inter``) are limited to 0..2147483647 ms (a signed 32-bit int,
  ~24.8 days), so ``t_99999999999999999999`` is rejected as out of range, not wrapped.
- ``num`` has a sanity ceiling of 100000 here; the per-task ``MAX_FRAMES`` limit is the engine's.
- Async ``w``/``h`` are 32..4096 (README); sync ``w``/``h`` are 0..4096 with 0 meaning "derived".
- A sync string takes no further segments (``video/snapshot,...|sys/saveas`` → EC ``0053-00000109``).
- ``sys/saveas``: ``o_`` required, ``b_`` optional (``OutputTarget.bucket`` None → the configured
  output bucket). Values are URL-safe or standard base64, padding optional; the decoded bytes must be
  UTF-8; trailing whitespace/newlines are stripped (docs examples encode ``echo`` output). Bucket
  names must look like S3 bucket names (letters, digits, ``.``, ``-``, ``_``; 1..255); whether the
  bucket is *allowed* is decided later against the allow-list.
- ``notify``: exactly one of ``topic_`` (an SNS topic name or ARN) or ``queue_`` (an SQS queue name,
  ARN or URL), base64 like the save-as values.
- Async errors carry no ``EC`` (the README defines them for sync parameters only).

OSS JSON
--------
``{"Bucket", "Key", "Process", "UserData"}``: ``Process`` must be a ``video/snapshots`` string;
``Bucket`` is optional (None → the configured source bucket).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import unquote

from vidsnap.core.errors import (
    EC_FORMAT,
    EC_HEIGHT,
    EC_MALFORMED,
    EC_MODE,
    EC_ROTATE,
    EC_TIME,
    EC_WIDTH,
    BadRequest,
)
from vidsnap.core.lang.fields import (
    FORMATS,
    FORMATS_TEXT,
    MAX_MS,
    MAX_NUM,
    MAX_PARAM,
    MAX_PROCESS_CHARS,
    MAX_SIDE,
    MIN_ASYNC_SIDE,
    SCALES,
    as_str,
    check_bucket,
    check_fields,
    choice,
    fail,
    int_param,
    malformed,
    opt_str,
    queue_target,
    snip,
    source_key,
    topic_target,
    user_data,
)
from vidsnap.core.naming import validate_template
from vidsnap.core.plan import (
    AnimationFormat,
    AnimationSpec,
    ComposeRequest,
    Format,
    ImageSpec,
    Mode,
    NotifyTarget,
    OutputTarget,
    Rotate,
    ScaleType,
    Selection,
    SnapshotJob,
    SnapshotRequest,
    SourceRef,
    SpriteSpec,
    Task,
)

__all__ = ["parse_async", "parse_body", "parse_process", "parse_sync"]

#: Selection modes of ``video/snapshots`` (``m_``).
MODES: dict[str, Mode] = {"inter": "inter", "key": "key", "avg": "avg", "dhash": "dhash", "scene": "scene"}
#: Rotations of ``video/snapshot`` (``ar_``).
ROTATES: dict[str, Rotate] = {"auto": "auto", "h": "h", "w": "w"}

_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_NOTIFY_SPLIT = re.compile(r"/(?=notify(?:,|$))")
_PREFIXES = ("x-oss-async-process=", "x-oss-process=")

#: The parameters of ``video/snapshot`` and the EC code of each.
_SYNC_EC = {"t": EC_TIME, "w": EC_WIDTH, "h": EC_HEIGHT, "m": EC_MODE, "f": EC_FORMAT, "ar": EC_ROTATE}
#: The parameters of ``video/snapshots`` (no EC codes), and of the composing actions.
_ASYNC_PARAMS: dict[str, str | None] = dict.fromkeys(
    ("ss", "f", "m", "inter", "num", "thr", "w", "h", "pw", "ph", "scaletype", "best")
)
_ACTION_PARAMS: dict[str, dict[str, str | None]] = {
    "video/snapshots": _ASYNC_PARAMS,
    "video/sprite": {**_ASYNC_PARAMS, **dict.fromkeys(("tw", "th", "pad", "margin"))},
    "video/animation": {**_ASYNC_PARAMS, "fps": None},
}
_COMPOSE_ACTIONS = ("video/sprite", "video/animation")
SPRITE_FORMATS: dict[str, Format] = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}
ANIMATION_FORMATS: dict[str, AnimationFormat] = {"gif": "gif", "webp": "webp"}
#: Where compositions go without ``sys/saveas`` (the default output location, like snapshots).
SPRITE_TEMPLATE = "{barename}/sprite-{index}.{autoext}"
ANIMATION_TEMPLATE = "{barename}/animation.{autoext}"
#: Tiles per row or column of a sheet, and pixels of pad or margin, at most.
MAX_TILES = 10_000
MAX_GAP = 1024


# ---------------------------------------------------------------------------------------------------
# the string


def _clean_process(text: object, param: str, ec: str | None) -> str:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            malformed("process string is not UTF-8 text", param=param, ec=ec)
    if not isinstance(text, str):
        malformed(f"process string must be a string, not {type(text).__name__}", param=param, ec=ec)
    if len(text) > MAX_PROCESS_CHARS:
        malformed(
            f"process string is {len(text)} characters long; valid: at most {MAX_PROCESS_CHARS}",
            param=param,
            ec=ec,
        )
    text = text.strip()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    # Percent-decode once when the string arrived URL-encoded (video/snapshot%2Ct_1000...). Base64
    # never contains '%', so a '%' can only be an escape; '+' is kept since base64 uses it.
    if "%" in text:
        # Not decodable: not an encoded string after all; the parameter checks name what is wrong.
        with contextlib.suppress(UnicodeDecodeError):
            text = unquote(text, errors="strict")
    if not text:
        malformed(
            "process string is empty; valid: video/snapshot,... or video/snapshots,...", param=param, ec=ec
        )
    return text


def _split_action(segment: str) -> tuple[str, list[str]]:
    action, comma, rest = segment.partition(",")
    return action, (rest.split(",") if comma else [])


def _pairs(
    items: list[str], where: str, *, ec: str | None, known: Mapping[str, str | None]
) -> dict[str, str]:
    """``k_v`` items → dict, rejecting empty items, missing ``_``, unknown and duplicated names.

    ``known`` maps each accepted name to its EC code (None for async parameters).
    """
    out: dict[str, str] = {}
    names = ", ".join(known)
    for item in items:
        name, sep, value = item.partition("_")
        if not item:
            malformed(
                f"{where}: empty parameter (a doubled or trailing ','); valid: <name>_<value>",
                param=where,
                ec=ec,
            )
        if not sep or not name:
            malformed(
                f"{where}: malformed parameter {snip(item)}; valid: <name>_<value> with name one of {names}",
                param=(name or where)[:MAX_PARAM],
                ec=ec,
            )
        if name not in known:
            malformed(
                f"{where}: unknown parameter {snip(name)} in {snip(item)}; valid: {names}",
                param=name[:MAX_PARAM],
                ec=ec,
            )
        if name in out:
            malformed(
                f"{where}: parameter {name!r} is given twice ({snip(out[name])} and {snip(value)}); "
                "valid: each parameter at most once",
                param=name,
                ec=ec,
            )
        out[name] = value
    return out


def _b64(param: str, value: str) -> str:
    """Decode an OSS base64 parameter value (URL-safe or standard, padding optional) to text."""
    valid = "URL-safe base64 of UTF-8 text"
    if not value or not _B64.fullmatch(value):
        fail(param, value, valid)
    body = value.rstrip("=").replace("+", "-").replace("/", "_")
    if len(body) % 4 == 1:  # no base64 string has this length, whatever the padding
        fail(param, value, valid)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        fail(param, value, valid, why="value does not decode")
    # Docs examples encode `echo` output: drop the trailing newline (and any trailing spaces).
    decoded = decoded.rstrip()
    if not decoded:
        fail(param, value, valid, why="value decodes to empty text")
    return decoded


# ---------------------------------------------------------------------------------------------------
# video/snapshot


def parse_sync(text: str) -> SnapshotRequest | ComposeRequest:
    """Parse a synchronous request: ``video/snapshot,<k>_<v>,...`` (README: Request languages) into a
    :class:`SnapshotRequest`, or ``video/sprite`` / ``video/animation`` (README: Compositions) into a
    :class:`ComposeRequest` answered with one sheet, one track or one animation.

    Raises :class:`BadRequest` with the OSS ``EC`` code of the parameter at fault (``0053-00000101``
    t, ``...104`` w, ``...105`` h, ``...106`` m, ``...107`` f, ``...108`` ar, ``...109`` malformed
    string, unknown or duplicated parameter, other actions).
    """
    text = _clean_process(text, "process", EC_MALFORMED)
    action = text.split("|", 1)[0].split(",", 1)[0]
    if action in _COMPOSE_ACTIONS:
        segments = text.split("|")
        if len(segments) > 1:
            malformed(
                f"process: a synchronous {action} takes no further segments, got "
                f"{snip('|' + '|'.join(segments[1:]))}; valid: {action},<k>_<v>,... (POST it with "
                "sys/saveas to save the result)",
                param="process",
                ec=EC_MALFORMED,
            )
        return _compose_request(action, segments[0])
    return _parse_snapshot(text)


def _parse_snapshot(text: str) -> SnapshotRequest:
    segments = text.split("|")
    action, items = _split_action(segments[0])
    if action != "video/snapshot":
        malformed(
            f"process: unsupported action {snip(action)}; "
            "valid: video/snapshot, video/sprite, video/animation",
            param="process",
            ec=EC_MALFORMED,
        )
    if len(segments) > 1:
        malformed(
            f"process: video/snapshot takes no further segments, got {snip('|' + '|'.join(segments[1:]))}; "
            "valid: video/snapshot,<k>_<v>,... (use video/snapshots with sys/saveas to save frames)",
            param="process",
            ec=EC_MALFORMED,
        )
    params = _pairs(items, "video/snapshot", ec=EC_MALFORMED, known=_SYNC_EC)
    time_ms = 0
    exact = True
    width = height = 0
    fmt: Format = "jpg"
    ar: Rotate = "auto"
    auto = False
    if "t" in params:
        time_ms, auto = _time_param(params["t"])
    if "w" in params:
        width = int_param("w", params["w"], 0, MAX_SIDE, ec=EC_WIDTH, unit=" (px)")
    if "h" in params:
        height = int_param("h", params["h"], 0, MAX_SIDE, ec=EC_HEIGHT, unit=" (px)")
    if "m" in params:
        choice("m", params["m"], {"fast": True}, ec=EC_MODE)
        exact = False
    if "f" in params:
        fmt = choice("f", params["f"], FORMATS, ec=EC_FORMAT)
    if "ar" in params:
        ar = choice("ar", params["ar"], ROTATES, ec=EC_ROTATE)
    return SnapshotRequest(
        time_ms=time_ms,
        exact=exact,
        image=ImageSpec(format=fmt, width=width, height=height, ar=ar),
        auto=auto,
    )


def _time_param(value: str) -> tuple[int, bool]:
    """``t``: ms, or ``auto`` (the best poster near the start) / ``auto_<ms>`` (near that time)."""
    if value.lower() == "auto":
        return 0, True
    head, sep, rest = value.partition("_")
    if sep and head.lower() == "auto":
        valid = f"an integer 0..{MAX_MS} (ms), auto, or auto_<ms>"
        if not rest:
            fail("t", value, valid, ec=EC_TIME)
        return int_param("t", rest, 0, MAX_MS, ec=EC_TIME, unit=" (ms) after auto_"), True
    return int_param("t", value, 0, MAX_MS, ec=EC_TIME, unit=" (ms)"), False


# ---------------------------------------------------------------------------------------------------
# video/snapshots, video/sprite, video/animation |sys/saveas|notify


def _selection_and_image(params: Mapping[str, str], fmt: Format) -> tuple[Selection, ImageSpec]:
    """The ``video/snapshots`` parameters every asynchronous action shares: what to select, what size."""
    mode: Mode = choice("m", params["m"], MODES) if "m" in params else "inter"
    scale: ScaleType = (
        choice("scaletype", params["scaletype"], SCALES) if "scaletype" in params else "stretch"
    )

    def num(name: str, lo: int, hi: int, default: int, unit: str = "") -> int:
        return int_param(name, params[name], lo, hi, unit=unit) if name in params else default

    selection = Selection(
        mode=mode,
        start_ms=Fraction(num("ss", 0, MAX_MS, 0, " (ms)")),
        interval_ms=Fraction(num("inter", 0, MAX_MS, 0, " (ms)")),
        num=num("num", 0, MAX_NUM, 0),
        threshold=num("thr", 0, 100, 0),
        exact=True,
        pick_best=_pick_best(params, mode),
    )
    image = ImageSpec(
        format=fmt,
        width=num("w", MIN_ASYNC_SIDE, MAX_SIDE, 0, " (px)"),
        height=num("h", MIN_ASYNC_SIDE, MAX_SIDE, 0, " (px)"),
        pw=Fraction(num("pw", 1, 200, 100, " (%)")),
        ph=Fraction(num("ph", 1, 200, 100, " (%)")),
        scale_type=scale,
    )
    return selection, image


def _snapshots_job(params: Mapping[str, str], output: OutputTarget) -> SnapshotJob:
    if "f" not in params:
        malformed(
            f"f: the output format is required in video/snapshots; valid: {FORMATS_TEXT}", param="f", ec=None
        )
    selection, image = _selection_and_image(params, choice("f", params["f"], FORMATS))
    return SnapshotJob(selection, image, output)


def _sprite_job(params: Mapping[str, str], output: OutputTarget, *, sync: bool) -> SnapshotJob:
    formats = {**SPRITE_FORMATS, "vtt": "vtt"} if sync else SPRITE_FORMATS
    fmt: Format | Literal["vtt"] = choice("f", params["f"], formats) if "f" in params else "jpg"
    selection, image = _selection_and_image(params, "jpg" if fmt == "vtt" else fmt)

    def num(name: str, lo: int, hi: int, default: int) -> int:
        return (
            int_param(name, params[name], lo, hi, unit=" (px)" if lo == 0 else "")
            if name in params
            else default
        )

    sprite = SpriteSpec(
        columns=num("tw", 1, MAX_TILES, 6),
        rows=num("th", 1, MAX_TILES, 6),
        pad=num("pad", 0, MAX_GAP, 2),
        margin=num("margin", 0, MAX_GAP, 2),
        format=image.format,
        output=output,
    )
    if sync:  # one sheet: the tiles it holds
        per_sheet = sprite.columns * sprite.rows
        selection = replace(selection, num=min(selection.num or per_sheet, per_sheet))
    return SnapshotJob(selection, image, save_frames=False, sprite=sprite)


def _animation_job(params: Mapping[str, str], output: OutputTarget) -> SnapshotJob:
    fmt: AnimationFormat = choice("f", params["f"], ANIMATION_FORMATS) if "f" in params else "gif"
    selection, image = _selection_and_image(params, "png")
    if selection.mode == "inter" and selection.interval_ms <= 0:
        malformed(
            "inter: an animation needs the time between its frames; valid: inter_<ms> with ms > 0",
            param="inter",
            ec=None,
        )
    frame_ms = Fraction(1000, int_param("fps", params["fps"], 1, 100)) if "fps" in params else None
    animation = AnimationSpec(format=fmt, frame_ms=frame_ms, output=output)
    return SnapshotJob(selection, image, save_frames=False, animation=animation)


def _params(action: str, items: list[str], *, sync: bool = False) -> dict[str, str]:
    """The ``k_v`` items of ``action``, checked, in the order given."""
    return _pairs(items, action, ec=EC_MALFORMED if sync else None, known=_ACTION_PARAMS[action])


def _job(
    action: str, params: Mapping[str, str], output: OutputTarget | None, *, sync: bool = False
) -> SnapshotJob:
    if action == "video/sprite":
        return _sprite_job(params, output or OutputTarget(key_template=SPRITE_TEMPLATE), sync=sync)
    if action == "video/animation":
        return _animation_job(params, output or OutputTarget(key_template=ANIMATION_TEMPLATE))
    return _snapshots_job(params, output or OutputTarget())


def _compose_request(action: str, segment: str) -> ComposeRequest:
    _action, items = _split_action(segment)
    params = _params(action, items, sync=True)
    job = _job(action, params, None, sync=True)
    track = params.get("f", "").lower() == "vtt"
    return ComposeRequest(job=job, action=action, params=tuple(params.items()), track=track)


def _save_and_notify(segments: list[str], action: str) -> tuple[OutputTarget | None, NotifyTarget | None]:
    output: OutputTarget | None = None
    notify: NotifyTarget | None = None
    for segment in segments:
        name, items = _split_action(segment)
        if name == "sys/saveas":
            if output is not None:
                malformed(
                    "sys/saveas: given twice; valid: at most one sys/saveas", param="sys/saveas", ec=None
                )
            kv = _pairs(items, "sys/saveas", ec=None, known={"o": None, "b": None})
            if "o" not in kv:
                malformed("o: sys/saveas needs o_<base64 key template>", param="o", ec=None)
            template = _b64("o", kv["o"])
            validate_template(template, param="o")
            bucket = check_bucket("b", _b64("b", kv["b"])) if "b" in kv else None
            output = OutputTarget(bucket=bucket, key_template=template)
        elif name == "notify":
            if notify is not None:
                malformed("notify: given twice; valid: at most one notify", param="notify", ec=None)
            kv = _pairs(items, "notify", ec=None, known={"topic": None, "queue": None})
            if len(kv) != 1:
                malformed(
                    "notify: needs exactly one of topic_<base64> or queue_<base64>", param="notify", ec=None
                )
            if "topic" in kv:
                notify = topic_target("topic", _b64("topic", kv["topic"]))
            else:
                notify = queue_target("queue", _b64("queue", kv["queue"]))
        else:
            malformed(
                f"process: unsupported segment {snip(segment)} after {action}; "
                "valid: sys/saveas,o_..,b_.. and notify,topic_.. | notify,queue_..",
                param="process",
                ec=None,
            )
    return output, notify


def _parse_task(text: str) -> Task:
    segments: list[str] = []
    for segment in text.split("|"):
        # "sys/saveas,...,o_x/notify,topic_y": the OSS docs chain notify with '/' too.
        segments.extend(_NOTIFY_SPLIT.split(segment))
    action, items = _split_action(segments[0])
    output, notify = _save_and_notify(segments[1:], action)
    return Task(jobs=(_job(action, _params(action, items), output),), notify=notify, style="oss")


def _pick_best(params: Mapping[str, str], mode: Mode) -> bool:
    """``best_1``: the sharpest frame of each shot (``m_scene`` only); ``best_0``: its first frame."""
    if "best" not in params:
        return False
    if mode != "scene":
        fail("best", params["best"], "best_0 or best_1 with m_scene", why="best applies to m_scene only, got")
    return bool(int_param("best", params["best"], 0, 1))


# ---------------------------------------------------------------------------------------------------
# entry points


def parse_process(text: str) -> SnapshotRequest | Task:
    """Parse an OSS process string: ``video/snapshot`` → :class:`SnapshotRequest`; ``video/snapshots``,
    ``video/sprite`` and ``video/animation`` (with optional ``sys/saveas`` and ``notify``) → a
    :class:`Task` without a source.

    Raises :class:`BadRequest` for anything else (unknown actions carry EC ``0053-00000109``).
    """
    text = _clean_process(text, "process", EC_MALFORMED)
    action = text.split("|", 1)[0].split(",", 1)[0]
    if action == "video/snapshot":
        return _parse_snapshot(text)
    if action in _ACTION_PARAMS:
        return _parse_task(text)
    raise BadRequest(
        f"process: unsupported action {snip(action)}; valid: video/snapshot, video/snapshots, "
        "video/sprite, video/animation",
        param="process",
        ec=EC_MALFORMED,
    )


def parse_async(process: str) -> Task:
    """Parse a process string that must be a task (``video/snapshots``), not a synchronous request."""
    parsed = parse_process(process)
    if not isinstance(parsed, Task):
        raise BadRequest(
            "process: a task needs video/snapshots (video/snapshot answers synchronously)", param="process"
        )
    return parsed


def parse_body(body: Mapping[str, Any]) -> Task:
    """The OSS JSON task ``{"Bucket"?, "Key", "Process", "UserData"?}`` (a decoded object) → :class:`Task`."""
    check_fields(body, "", {"Bucket", "Key", "Process", "UserData"})
    process = as_str(body.get("Process"), "Process", limit=MAX_PROCESS_CHARS)
    key = source_key(as_str(body.get("Key"), "Key", limit=2048), "Key")
    bucket = opt_str(body.get("Bucket"), "Bucket", limit=255)
    if bucket is not None:
        check_bucket("Bucket", bucket)
    task = parse_async(process)
    return Task(task.jobs, SourceRef(key=key, bucket=bucket), task.notify, user_data(body), "oss")

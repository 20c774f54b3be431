"""The request languages → the normalised plan (README: Request languages; README: HTTP API, errors).

Three entry points:

- :func:`parse_process` — an OSS process string, sync (``video/snapshot,...``) or async
  (``video/snapshots,...|sys/saveas,...|notify,...``);
- :func:`parse_sync` — only ``video/snapshot``; errors carry the OSS ``EC`` codes (README: HTTP API, errors);
- :func:`parse_task` — an asynchronous task: a JSON body in IMM, MPS or OSS style (str, bytes or an
  already decoded mapping) or a raw async process string.

Everything is validated before any media is read. Every failure is a
:class:`~vidsnap.core.errors.BadRequest` (or :class:`~vidsnap.core.errors.NotSupportedYet` for sprites,
animations and ``TileOut``) whose ``param`` names the parameter (the leaf field name for JSON) and
whose message names the parameter (the full JSON path), the offending value (truncated, ``repr``
quoted) and the valid range. Bad output keys from :func:`vidsnap.core.naming.check_key` on a *source*
key are :class:`~vidsnap.core.errors.NotAllowed` (README). No input, however malformed, raises anything
that is not a :class:`~vidsnap.core.errors.VidsnapError`.

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

JSON tasks
----------
Bodies are limited to 256 KiB (the SQS message limit). Duplicate keys, ``NaN``/``Infinity``,
booleans where numbers are expected, lists where objects are expected are errors. Numbers are read
exactly with ``Fraction(str(value))`` (IMM ``Interval`` 0.1 s is exactly 100 ms). ``UserData`` must
be a string of at most 2048 characters.

- IMM (``Sources``/``Targets``): exactly one source ``{"URI": "s3://b/k" | "oss://b/k"}``. Each
  ``Targets[]`` item holds only ``Image``; ``Image`` holds ``Snapshots``, ``Sprites``,
  ``Animations``; non-empty ``Sprites``/``Animations`` → NotSupportedYet. One job per
  ``Snapshots[]`` entry across all targets (at most 100 jobs). Snapshot fields: ``Format``
  (required: jpg/jpeg/png/webp/avif), ``StartTime`` and ``Interval`` (seconds, fractions allowed),
  ``Number`` (0..100000), ``Mode`` (interval/keyframe/average/dhash), ``Threshold`` (0..100),
  ``ScaleType``, ``Width``/``Height`` (0 or absent: not set; 0 < v < 1: a ratio of the source,
  0.01..<1 → ``pw``/``ph`` percent; ≥ 1: an integer 32..4096 px), ``URI`` (``s3://``/``oss://``
  bucket + key template; absent → the default output location, like a process string without
  ``sys/saveas``). IMM is a typed API: numeric strings (``"Number": "5"``) are rejected.
  Ignored top-level IMM fields: ``ProjectName``, ``Tags``, ``CredentialConfig``.
- MPS (``Input``/``SnapshotConfig``): ``Input`` ``{"Bucket", "Object", "Location"?}``;
  ``SnapshotConfig``: ``OutputFile`` ``{"Bucket"?, "Object", "Location"?}`` (absent → default
  output location), ``Time`` (ms), ``Interval`` (s, fractions allowed), ``Num`` (0..100000),
  ``Width``/``Height`` (32..4096 px), ``FrameType`` (``normal`` = exact frames, ``intra`` =
  keyframe at or before; default ``intra`` as in MPS), ``Format`` (vidsnap extension: default from
  the ``OutputFile.Object`` extension if it is an image format, else jpg), ``TileOut`` /
  ``TileOutputFile`` → NotSupportedYet. As in MPS, object names are URL-encoded: ``Object`` values
  are percent-decoded, and numbers may be given as decimal strings (MPS examples send ``"Num": "10"``).
  Selection: ``Num`` 1, or no ``Num`` and no ``Interval`` → one frame at ``Time`` (inter, num 1);
  ``Interval`` > 0 → inter mode at that step (``Num`` 0/absent: no limit); ``Interval`` 0/absent and
  ``Num`` > 1 → avg mode with ``Num`` frames. ``Location`` (an OSS region) and top-level
  ``PipelineId`` are accepted and ignored. ``Notification`` is accepted as in IMM (vidsnap extension).
- OSS (``Bucket``/``Key``/``Process``): ``Process`` must be a ``video/snapshots`` string; ``Bucket``
  optional (None → the configured source bucket).

Source keys of JSON tasks are checked with :func:`vidsnap.core.naming.check_key` (README: Configuration).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, NoReturn
from urllib.parse import unquote

from vidsnap.aws.events import MAX_JSON_DEPTH, JSONTooDeep, load_json
from vidsnap.core.errors import (
    EC_FORMAT,
    EC_HEIGHT,
    EC_MALFORMED,
    EC_MODE,
    EC_ROTATE,
    EC_TIME,
    EC_WIDTH,
    BadRequest,
    NotSupportedYet,
)
from vidsnap.core.naming import check_key, validate_template
from vidsnap.core.plan import (
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
    Task,
)

__all__ = ["parse_process", "parse_sync", "parse_task"]

MAX_PROCESS_CHARS = 8192
MAX_BODY_BYTES = 256 * 1024
MAX_USER_DATA = 2048
MAX_NUM = 100_000
MAX_JOBS = 100
MAX_MS = 2**31 - 1
MAX_SIDE = 4096
#: Parameter names echoed in ``BadRequest.param`` are cut to this length.
MAX_PARAM = 64
MIN_ASYNC_SIDE = 32

_FORMATS: dict[str, Format] = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
_FORMATS_TEXT = "jpg, jpeg, png, webp, avif"
_MODES: dict[str, Mode] = {"inter": "inter", "key": "key", "avg": "avg", "dhash": "dhash"}
_IMM_MODES: dict[str, Mode] = {"interval": "inter", "keyframe": "key", "average": "avg", "dhash": "dhash"}
_SCALES: dict[str, ScaleType] = {"stretch": "stretch", "crop": "crop", "fill": "fill", "fit": "fit"}
_ROTATES: dict[str, Rotate] = {"auto": "auto", "h": "h", "w": "w"}

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_TOPIC_NAME = r"[A-Za-z0-9_-]{1,256}(?:\.fifo)?"
_TOPIC = re.compile(rf"{_TOPIC_NAME}|arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{{12}}:{_TOPIC_NAME}")
_QUEUE_NAME = r"[A-Za-z0-9_-]{1,80}(?:\.fifo)?"
_QUEUE = re.compile(
    rf"{_QUEUE_NAME}|arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{{12}}:{_QUEUE_NAME}"
    rf"|https?://[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?/(?:[A-Za-z0-9_.-]+/)*{_QUEUE_NAME}"
)
_NOTIFY_SPLIT = re.compile(r"/(?=notify(?:,|$))")
_PREFIXES = ("x-oss-async-process=", "x-oss-process=")

_SYNC_EC = {"t": EC_TIME, "w": EC_WIDTH, "h": EC_HEIGHT, "m": EC_MODE, "f": EC_FORMAT, "ar": EC_ROTATE}


# ---------------------------------------------------------------------------------------------------
# errors


def _snip(value: object, limit: int = 64) -> str:
    """A bounded, repr-safe rendering of an offending value (never huge, never control chars)."""
    if isinstance(value, str | bytes):
        text = repr(value[: limit + 1])
        return text if len(value) <= limit else text[:-1] + "…" + text[-1]
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not turn a 400 into a crash
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def _leaf(path: str) -> str:
    """The field name at the end of a JSON path (``Targets[0].Image.Sprites`` → ``Sprites``)."""
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1]) or path


def _fail(
    path: str, value: object, valid: str, *, ec: str | None = None, why: str = "invalid value"
) -> NoReturn:
    raise BadRequest(f"{path}: {why} {_snip(value)}; valid: {valid}", ec=ec, param=_leaf(path))


def _malformed(message: str, *, param: str, ec: str | None) -> NoReturn:
    raise BadRequest(message, ec=ec, param=param)


# ---------------------------------------------------------------------------------------------------
# process strings


def _clean_process(text: object, param: str, ec: str | None) -> str:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            _malformed("process string is not UTF-8 text", param=param, ec=ec)
    if not isinstance(text, str):
        _malformed(f"process string must be a string, not {type(text).__name__}", param=param, ec=ec)
    if len(text) > MAX_PROCESS_CHARS:
        _malformed(
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
        _malformed(
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
            _malformed(
                f"{where}: empty parameter (a doubled or trailing ','); valid: <name>_<value>",
                param=where,
                ec=ec,
            )
        if not sep or not name:
            _malformed(
                f"{where}: malformed parameter {_snip(item)}; valid: <name>_<value> with name one of {names}",
                param=(name or where)[:MAX_PARAM],
                ec=ec,
            )
        if name not in known:
            _malformed(
                f"{where}: unknown parameter {_snip(name)} in {_snip(item)}; valid: {names}",
                param=name[:MAX_PARAM],
                ec=ec,
            )
        if name in out:
            _malformed(
                f"{where}: parameter {name!r} is given twice ({_snip(out[name])} and {_snip(value)}); "
                "valid: each parameter at most once",
                param=name,
                ec=ec,
            )
        out[name] = value
    return out


def _int(param: str, value: str, lo: int, hi: int, *, ec: str | None = None, unit: str = "") -> int:
    valid = f"an integer {lo}..{hi}{unit}"
    # ASCII digits only: str.isdigit() would accept '²' and int() would accept '+5', ' 5', '5_0'.
    if not _DIGITS.fullmatch(value):
        _fail(param, value, valid, ec=ec)
    digits = value.lstrip("0") or "0"
    # Overflow is decided on the digit count before converting: int() of a 5000-digit string
    # raises ValueError (Python's int/str digit limit), and it would be pointless work anyway.
    if len(digits) > len(str(hi)):
        _fail(param, value, valid, ec=ec, why="value out of range")
    number = int(digits)
    if not lo <= number <= hi:
        _fail(param, value, valid, ec=ec, why="value out of range")
    return number


def _choice(param: str, value: str, table: Mapping[str, Any], *, ec: str | None = None) -> Any:
    key = value.lower()
    if key not in table:
        _fail(param, value, ", ".join(table), ec=ec)
    return table[key]


def parse_sync(text: str) -> SnapshotRequest:
    """Parse ``video/snapshot,<k>_<v>,...`` (README: Request languages) into a :class:`SnapshotRequest`.

    Raises :class:`BadRequest` with the OSS ``EC`` code of the parameter at fault (``0053-00000101``
    t, ``...104`` w, ``...105`` h, ``...106`` m, ``...107`` f, ``...108`` ar, ``...109`` malformed
    string, unknown or duplicated parameter, other actions).
    """
    return _parse_sync(_clean_process(text, "process", EC_MALFORMED))


def _parse_sync(text: str) -> SnapshotRequest:
    segments = text.split("|")
    action, items = _split_action(segments[0])
    if action != "video/snapshot":
        _malformed(
            f"process: unsupported action {_snip(action)}; valid: video/snapshot",
            param="process",
            ec=EC_MALFORMED,
        )
    if len(segments) > 1:
        _malformed(
            f"process: video/snapshot takes no further segments, got {_snip('|' + '|'.join(segments[1:]))}; "
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
    if "t" in params:
        time_ms = _int("t", params["t"], 0, MAX_MS, ec=EC_TIME, unit=" (ms)")
    if "w" in params:
        width = _int("w", params["w"], 0, MAX_SIDE, ec=EC_WIDTH, unit=" (px)")
    if "h" in params:
        height = _int("h", params["h"], 0, MAX_SIDE, ec=EC_HEIGHT, unit=" (px)")
    if "m" in params:
        _choice("m", params["m"], {"fast": True}, ec=EC_MODE)
        exact = False
    if "f" in params:
        fmt = _choice("f", params["f"], _FORMATS, ec=EC_FORMAT)
    if "ar" in params:
        ar = _choice("ar", params["ar"], _ROTATES, ec=EC_ROTATE)
    return SnapshotRequest(
        time_ms=time_ms, exact=exact, image=ImageSpec(format=fmt, width=width, height=height, ar=ar)
    )


_ASYNC_PARAMS: dict[str, str | None] = dict.fromkeys(
    ("ss", "f", "m", "inter", "num", "thr", "w", "h", "pw", "ph", "scaletype")
)


def _b64(param: str, value: str) -> str:
    """Decode an OSS base64 parameter value (URL-safe or standard, padding optional) to text."""
    valid = "URL-safe base64 of UTF-8 text"
    if not value or not _B64.fullmatch(value):
        _fail(param, value, valid)
    body = value.rstrip("=").replace("+", "-").replace("/", "_")
    if len(body) % 4 == 1:  # no base64 string has this length, whatever the padding
        _fail(param, value, valid)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        _fail(param, value, valid, why="value does not decode")
    # Docs examples encode `echo` output: drop the trailing newline (and any trailing spaces).
    decoded = decoded.rstrip()
    if not decoded:
        _fail(param, value, valid, why="value decodes to empty text")
    return decoded


def _bucket(param: str, name: str) -> str:
    if not _BUCKET.fullmatch(name):
        _fail(param, name, "a bucket name of 1..255 letters, digits, '.', '-', '_'")
    return name


def _topic(param: str, value: str) -> NotifyTarget:
    if not _TOPIC.fullmatch(value):
        _fail(param, value, "an SNS topic name (letters, digits, '-', '_'; optional .fifo) or topic ARN")
    return NotifyTarget("sns", value)


def _queue(param: str, value: str) -> NotifyTarget:
    if not _QUEUE.fullmatch(value):
        _fail(param, value, "an SQS queue name, queue ARN or queue URL")
    return NotifyTarget("sqs", value)


def _parse_async(text: str) -> Task:
    segments: list[str] = []
    for segment in text.split("|"):
        # "sys/saveas,...,o_x/notify,topic_y": the OSS docs chain notify with '/' too.
        segments.extend(_NOTIFY_SPLIT.split(segment))
    _action, items = _split_action(segments[0])
    params = _pairs(items, "video/snapshots", ec=None, known=_ASYNC_PARAMS)
    if "f" not in params:
        _malformed(
            f"f: the output format is required in video/snapshots; valid: {_FORMATS_TEXT}", param="f", ec=None
        )
    fmt: Format = _choice("f", params["f"], _FORMATS)
    mode: Mode = _choice("m", params["m"], _MODES) if "m" in params else "inter"
    scale: ScaleType = (
        _choice("scaletype", params["scaletype"], _SCALES) if "scaletype" in params else "stretch"
    )

    def num(name: str, lo: int, hi: int, default: int, unit: str = "") -> int:
        return _int(name, params[name], lo, hi, unit=unit) if name in params else default

    selection = Selection(
        mode=mode,
        start_ms=Fraction(num("ss", 0, MAX_MS, 0, " (ms)")),
        interval_ms=Fraction(num("inter", 0, MAX_MS, 0, " (ms)")),
        num=num("num", 0, MAX_NUM, 0),
        threshold=num("thr", 0, 100, 0),
        exact=True,
    )
    image = ImageSpec(
        format=fmt,
        width=num("w", MIN_ASYNC_SIDE, MAX_SIDE, 0, " (px)"),
        height=num("h", MIN_ASYNC_SIDE, MAX_SIDE, 0, " (px)"),
        pw=Fraction(num("pw", 1, 200, 100, " (%)")),
        ph=Fraction(num("ph", 1, 200, 100, " (%)")),
        scale_type=scale,
    )
    output: OutputTarget | None = None
    notify: NotifyTarget | None = None
    for segment in segments[1:]:
        name, items = _split_action(segment)
        if name == "sys/saveas":
            if output is not None:
                _malformed(
                    "sys/saveas: given twice; valid: at most one sys/saveas", param="sys/saveas", ec=None
                )
            kv = _pairs(items, "sys/saveas", ec=None, known={"o": None, "b": None})
            if "o" not in kv:
                _malformed("o: sys/saveas needs o_<base64 key template>", param="o", ec=None)
            template = _b64("o", kv["o"])
            validate_template(template, param="o")
            bucket = _bucket("b", _b64("b", kv["b"])) if "b" in kv else None
            output = OutputTarget(bucket=bucket, key_template=template)
        elif name == "notify":
            if notify is not None:
                _malformed("notify: given twice; valid: at most one notify", param="notify", ec=None)
            kv = _pairs(items, "notify", ec=None, known={"topic": None, "queue": None})
            if len(kv) != 1:
                _malformed(
                    "notify: needs exactly one of topic_<base64> or queue_<base64>", param="notify", ec=None
                )
            if "topic" in kv:
                notify = _topic("topic", _b64("topic", kv["topic"]))
            else:
                notify = _queue("queue", _b64("queue", kv["queue"]))
        else:
            _malformed(
                f"process: unsupported segment {_snip(segment)} after video/snapshots; "
                "valid: sys/saveas,o_..,b_.. and notify,topic_.. | notify,queue_..",
                param="process",
                ec=None,
            )
    return Task(jobs=(SnapshotJob(selection, image, output or OutputTarget()),), notify=notify, style="oss")


def parse_process(text: str) -> SnapshotRequest | Task:
    """Parse an OSS process string: ``video/snapshot`` → :class:`SnapshotRequest`, ``video/snapshots``
    (with optional ``sys/saveas`` and ``notify``) → :class:`Task` without a source.

    Raises :class:`BadRequest` for anything else (unknown actions carry EC ``0053-00000109``).
    """
    text = _clean_process(text, "process", EC_MALFORMED)
    action = text.split("|", 1)[0].split(",", 1)[0]
    if action == "video/snapshot":
        return _parse_sync(text)
    if action == "video/snapshots":
        return _parse_async(text)
    _malformed(
        f"process: unsupported action {_snip(action)}; valid: video/snapshot, video/snapshots",
        param="process",
        ec=EC_MALFORMED,
    )


# ---------------------------------------------------------------------------------------------------
# JSON helpers


def _reject_constant(name: str) -> NoReturn:
    raise BadRequest(f"body: {name} is not a valid JSON number; valid: finite numbers", param="body")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(
                f"{_snip(key)}: field is given twice in the JSON body; valid: each field once",
                param=key[:MAX_PARAM],
            )
        out[key] = value
    return out


def _load_json(text: str) -> Any:
    try:
        return load_json(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except BadRequest:
        raise
    except (JSONTooDeep, RecursionError):
        raise BadRequest(
            f"body: the JSON is nested too deeply; valid: at most {MAX_JSON_DEPTH} levels", param="body"
        ) from None
    except ValueError as exc:  # JSONDecodeError, and int() of a number with too many digits
        raise BadRequest(f"body: not valid JSON ({_snip(str(exc), 120)})", param="body") from None


def _type_error(value: Any, path: str, expected: str) -> NoReturn:
    if value is None:
        raise BadRequest(f"{path}: required field is missing; valid: {expected}", param=_leaf(path))
    _fail(path, value, expected, why=f"expected {expected}, got {type(value).__name__}")


def _obj(value: Any, path: str) -> dict[str, Any]:
    """A required JSON object (a Mapping with string keys)."""
    if not isinstance(value, Mapping):
        _type_error(value, path, "a JSON object")
    for key in value:
        if not isinstance(key, str):
            _fail(path, key, "string field names", why="non-string field name")
    return dict(value)


def _opt_obj(value: Any, path: str) -> dict[str, Any] | None:
    return None if value is None else _obj(value, path)


def _check_fields(
    obj: Mapping[str, Any], path: str, allowed: set[str], ignored: frozenset[str] = frozenset()
) -> None:
    for key in obj:
        if key not in allowed and key not in ignored:
            where = f"{path}.{key[:MAX_PARAM]}" if path else key[:MAX_PARAM]
            raise BadRequest(
                f"{where}: unknown field {_snip(key)}; valid: {', '.join(sorted(allowed | ignored))}",
                param=key[:MAX_PARAM],
            )


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        _type_error(value, path, "a JSON list")
    return list(value)


def _str(value: Any, path: str, *, limit: int = 4096) -> str:
    """A required JSON string of at most ``limit`` characters."""
    if not isinstance(value, str):
        _type_error(value, path, "a string")
    if len(value) > limit:
        _fail(path, value, f"a string of at most {limit} characters", why="string too long")
    return value


def _opt_str(value: Any, path: str, *, limit: int = 4096) -> str | None:
    return None if value is None else _str(value, path, limit=limit)


def _number(value: Any, path: str, *, strings: bool) -> Fraction:
    """A JSON number as an exact Fraction (``0.1`` → 1/10); bools, NaN, inf, other types rejected."""
    valid = "a number" + (" (or a decimal string)" if strings else "")
    if isinstance(value, bool):
        _fail(path, value, valid, why="expected a number, got a boolean")
    if isinstance(value, int):
        return Fraction(value)  # not via str(): a 5000-digit int must not hit the str() digit limit
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(path, value, valid)
        return Fraction(str(value))
    if strings and isinstance(value, str):
        if len(value) <= 32 and _DECIMAL.fullmatch(value.strip()):
            return Fraction(value.strip())
        _fail(path, value, valid)
    _type_error(value, path, valid)


def _ranged(
    value: Fraction, raw: Any, path: str, *, lo: Fraction, hi: Fraction, valid: str, integer: bool
) -> Fraction:
    if integer and value.denominator != 1:
        _fail(path, raw, valid, why="not an integer")
    if not lo <= value <= hi:
        _fail(path, raw, valid, why="value out of range")
    return value


def _get_int(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    lo: int,
    hi: int,
    default: int,
    strings: bool = False,
    unit: str = "",
) -> int:
    """An optional integer field (null/absent → ``default``), range-checked."""
    if obj.get(key) is None:
        return default
    where = f"{path}.{key}"
    raw = obj[key]
    value = _number(raw, where, strings=strings)
    valid = f"an integer {lo}..{hi}{unit}"
    return int(_ranged(value, raw, where, lo=Fraction(lo), hi=Fraction(hi), valid=valid, integer=True))


def _get_seconds_ms(obj: Mapping[str, Any], key: str, path: str, *, strings: bool = False) -> Fraction:
    """An optional time in seconds (fractions allowed) → exact milliseconds."""
    if obj.get(key) is None:
        return Fraction(0)
    where = f"{path}.{key}"
    raw = obj[key]
    seconds = _number(raw, where, strings=strings)
    hi = Fraction(MAX_MS, 1000)
    _ranged(
        seconds, raw, where, lo=Fraction(0), hi=hi, valid=f"a number of seconds 0..{float(hi)}", integer=False
    )
    return seconds * 1000


def _get_choice(obj: Mapping[str, Any], key: str, path: str, table: Mapping[str, Any], default: Any) -> Any:
    if obj.get(key) is None:
        return default
    value = _str(obj[key], f"{path}.{key}")
    return _choice(f"{path}.{key}", value, table)


def _user_data(obj: Mapping[str, Any]) -> str | None:
    return _opt_str(obj.get("UserData"), "UserData", limit=MAX_USER_DATA)


def _source_key(key: str, path: str) -> str:
    if not key:
        _fail(path, key, "a non-empty object key")
    return check_key(key)


def _s3_uri(value: str, path: str, *, template: bool) -> tuple[str, str]:
    """``s3://bucket/rest`` or ``oss://bucket/rest`` → (bucket, rest)."""
    valid = "s3://bucket/key or oss://bucket/key"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("s3", "oss"):
        _fail(path, value, valid)
    bucket, slash, key = rest.partition("/")
    if not slash or not key:
        _fail(path, value, valid, why="no object key in")
    _bucket(path, bucket)
    if template:
        validate_template(key, param=_leaf(path))
    else:
        _source_key(key, path)
    return bucket, key


def _notification(value: Any) -> NotifyTarget | None:
    obj = _opt_obj(value, "Notification")
    if obj is None:
        return None
    _check_fields(obj, "Notification", {"SNS", "SQS"})
    present = [k for k in ("SNS", "SQS") if obj.get(k) is not None]
    if len(present) != 1:
        raise BadRequest(
            'Notification: needs exactly one of SNS {"TopicArn"} or SQS {"QueueUrl"}', param="Notification"
        )
    if present[0] == "SNS":
        sns = _obj(obj["SNS"], "Notification.SNS")
        _check_fields(sns, "Notification.SNS", {"TopicArn"})
        arn = _str(sns.get("TopicArn"), "Notification.SNS.TopicArn")
        return _topic("Notification.SNS.TopicArn", arn)
    sqs = _obj(obj["SQS"], "Notification.SQS")
    _check_fields(sqs, "Notification.SQS", {"QueueUrl"})
    url = _str(sqs.get("QueueUrl"), "Notification.SQS.QueueUrl")
    return _queue("Notification.SQS.QueueUrl", url)


def _not_supported(value: Any, path: str, what: str) -> None:
    # null, [] and {} mean "none requested"; anything else asks for the feature.
    if value is None or (isinstance(value, list | tuple | Mapping) and len(value) == 0):
        return
    raise NotSupportedYet(
        f"{path}: {what} are not supported yet; remove {_leaf(path)} from the request", param=_leaf(path)
    )


# ---------------------------------------------------------------------------------------------------
# IMM


_IMM_TOP = {"Sources", "Targets", "Notification", "UserData"}
_IMM_IGNORED = frozenset({"ProjectName", "Tags", "CredentialConfig"})
_IMM_SNAPSHOT = {
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
}


def _imm_side(obj: Mapping[str, Any], key: str, path: str) -> tuple[int, Fraction]:
    """IMM Width/Height: (px, percent). 0/absent: not set; below 1: a ratio of the source."""
    if obj.get(key) is None:
        return 0, Fraction(100)
    raw = obj[key]
    where = f"{path}.{key}"
    value = _number(raw, where, strings=False)
    valid = f"a ratio 0.01..<1 of the source, or an integer {MIN_ASYNC_SIDE}..{MAX_SIDE} (px)"
    if value == 0:
        return 0, Fraction(100)
    if value < 1:
        if value < Fraction(1, 100):
            _fail(where, raw, valid, why="value out of range")
        return 0, value * 100
    if value.denominator != 1:
        _fail(where, raw, valid, why="not an integer")
    if not MIN_ASYNC_SIDE <= value <= MAX_SIDE:
        _fail(where, raw, valid, why="value out of range")
    return int(value), Fraction(100)


def _imm_snapshot(raw: Any, path: str) -> SnapshotJob:
    obj = _obj(raw, path)
    _check_fields(obj, path, _IMM_SNAPSHOT)
    if obj.get("Format") is None:
        raise BadRequest(
            f"{path}.Format: the output format is required; valid: {_FORMATS_TEXT}", param="Format"
        )
    fmt: Format = _get_choice(obj, "Format", path, _FORMATS, "jpg")
    width, pw = _imm_side(obj, "Width", path)
    height, ph = _imm_side(obj, "Height", path)
    selection = Selection(
        mode=_get_choice(obj, "Mode", path, _IMM_MODES, "inter"),
        start_ms=_get_seconds_ms(obj, "StartTime", path),
        interval_ms=_get_seconds_ms(obj, "Interval", path),
        num=_get_int(obj, "Number", path, lo=0, hi=MAX_NUM, default=0),
        threshold=_get_int(obj, "Threshold", path, lo=0, hi=100, default=0),
        exact=True,
    )
    image = ImageSpec(
        format=fmt,
        width=width,
        height=height,
        pw=pw,
        ph=ph,
        scale_type=_get_choice(obj, "ScaleType", path, _SCALES, "stretch"),
    )
    output = OutputTarget()
    uri = _opt_str(obj.get("URI"), f"{path}.URI")
    if uri is not None:
        bucket, template = _s3_uri(uri, f"{path}.URI", template=True)
        output = OutputTarget(bucket=bucket, key_template=template)
    return SnapshotJob(selection, image, output)


def _parse_imm(body: Mapping[str, Any]) -> Task:
    _check_fields(body, "", _IMM_TOP, _IMM_IGNORED)
    sources = _list(body.get("Sources"), "Sources")
    if len(sources) != 1:
        _fail("Sources", sources, "exactly one source", why=f"{len(sources)} sources in")
    src = _obj(sources[0], "Sources[0]")
    _check_fields(src, "Sources[0]", {"URI"})
    uri = _str(src.get("URI"), "Sources[0].URI")
    bucket, key = _s3_uri(uri, "Sources[0].URI", template=False)
    targets = _list(body.get("Targets"), "Targets")
    jobs: list[SnapshotJob] = []
    for t, raw_target in enumerate(targets):
        tpath = f"Targets[{t}]"
        target = _obj(raw_target, tpath)
        # A transcoding target (Container, Video, Audio, ...) is not frame capture.
        _check_fields(target, tpath, {"Image"})
        image = _obj(target.get("Image"), f"{tpath}.Image")
        _check_fields(image, f"{tpath}.Image", {"Snapshots", "Sprites", "Animations"})
        _not_supported(image.get("Sprites"), f"{tpath}.Image.Sprites", "sprites")
        _not_supported(image.get("Animations"), f"{tpath}.Image.Animations", "animations")
        if image.get("Snapshots") is None:
            continue
        for s, raw_snap in enumerate(_list(image["Snapshots"], f"{tpath}.Image.Snapshots")):
            if len(jobs) >= MAX_JOBS:
                raise BadRequest(
                    f"Snapshots: more than {MAX_JOBS} snapshot targets; valid: 1..{MAX_JOBS}",
                    param="Snapshots",
                )
            jobs.append(_imm_snapshot(raw_snap, f"{tpath}.Image.Snapshots[{s}]"))
    if not jobs:
        raise BadRequest(
            "Targets: no Image.Snapshots entry; valid: at least one snapshot target", param="Targets"
        )
    return Task(
        jobs=tuple(jobs),
        source=SourceRef(key=key, bucket=bucket),
        notify=_notification(body.get("Notification")),
        user_data=_user_data(body),
        style="imm",
    )


# ---------------------------------------------------------------------------------------------------
# MPS


_MPS_TOP = {"Input", "SnapshotConfig", "Notification", "UserData"}
_MPS_IGNORED = frozenset({"PipelineId"})
_MPS_CONFIG = {
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
}
_MPS_FRAME_TYPES = {"normal": True, "intra": False}


def _mps_object(obj: Mapping[str, Any], path: str) -> str:
    raw = _str(obj.get("Object"), f"{path}.Object", limit=4096)
    # MPS documents Object values as URL-encoded UTF-8; plain names pass through unchanged.
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        _fail(f"{path}.Object", raw, "a URL-encoded UTF-8 object name", why="value does not decode")


def _mps_location(obj: Mapping[str, Any], path: str) -> tuple[str | None, str]:
    _check_fields(obj, path, {"Bucket", "Object", "Location"})
    _opt_str(obj.get("Location"), f"{path}.Location", limit=128)
    bucket = _opt_str(obj.get("Bucket"), f"{path}.Bucket", limit=255)
    if bucket is not None:
        _bucket(f"{path}.Bucket", bucket)
    return bucket, _mps_object(obj, path)


def _parse_mps(body: Mapping[str, Any]) -> Task:
    _check_fields(body, "", _MPS_TOP, _MPS_IGNORED)
    inp = _obj(body.get("Input"), "Input")
    in_bucket, in_key = _mps_location(inp, "Input")
    in_key = _source_key(in_key, "Input.Object")
    cfg = _obj(body.get("SnapshotConfig"), "SnapshotConfig")
    path = "SnapshotConfig"
    _check_fields(cfg, path, _MPS_CONFIG)
    _not_supported(cfg.get("TileOut"), f"{path}.TileOut", "sprites (TileOut)")
    _not_supported(cfg.get("TileOutputFile"), f"{path}.TileOutputFile", "sprites (TileOutputFile)")

    output = OutputTarget()
    out_ext = ""
    out_obj = _opt_obj(cfg.get("OutputFile"), f"{path}.OutputFile")
    if out_obj is not None:
        bucket, template = _mps_location(out_obj, f"{path}.OutputFile")
        validate_template(template, param="Object")
        output = OutputTarget(bucket=bucket, key_template=template)
        out_ext = template.rsplit(".", 1)[-1].lower() if "." in template.rsplit("/", 1)[-1] else ""
    fmt: Format = _get_choice(cfg, "Format", path, _FORMATS, _FORMATS.get(out_ext, "jpg"))

    time_ms = _get_int(cfg, "Time", path, lo=0, hi=MAX_MS, default=0, strings=True, unit=" (ms)")
    interval_ms = _get_seconds_ms(cfg, "Interval", path, strings=True)
    count = _get_int(cfg, "Num", path, lo=0, hi=MAX_NUM, default=0, strings=True)
    exact = _get_choice(cfg, "FrameType", path, _MPS_FRAME_TYPES, False)
    if count == 1 or (count == 0 and interval_ms == 0):
        # MPS: one snapshot at Time (Num 1 ignores Interval).
        selection = Selection(mode="inter", start_ms=Fraction(time_ms), num=1, exact=exact)
    elif interval_ms > 0:
        selection = Selection(
            mode="inter", start_ms=Fraction(time_ms), interval_ms=interval_ms, num=count, exact=exact
        )
    else:
        # Interval 0 with Num > 1: Num frames evenly spaced from Time to the end.
        selection = Selection(mode="avg", start_ms=Fraction(time_ms), num=count, exact=exact)
    image = ImageSpec(
        format=fmt,
        width=_get_int(
            cfg, "Width", path, lo=MIN_ASYNC_SIDE, hi=MAX_SIDE, default=0, strings=True, unit=" (px)"
        ),
        height=_get_int(
            cfg, "Height", path, lo=MIN_ASYNC_SIDE, hi=MAX_SIDE, default=0, strings=True, unit=" (px)"
        ),
    )
    return Task(
        jobs=(SnapshotJob(selection, image, output),),
        source=SourceRef(key=in_key, bucket=in_bucket),
        notify=_notification(body.get("Notification")),
        user_data=_user_data(body),
        style="mps",
    )


# ---------------------------------------------------------------------------------------------------
# OSS JSON and dispatch


def _parse_oss_json(body: Mapping[str, Any]) -> Task:
    _check_fields(body, "", {"Bucket", "Key", "Process", "UserData"})
    process = _str(body.get("Process"), "Process", limit=MAX_PROCESS_CHARS)
    key = _source_key(_str(body.get("Key"), "Key", limit=2048), "Key")
    bucket = _opt_str(body.get("Bucket"), "Bucket", limit=255)
    if bucket is not None:
        _bucket("Bucket", bucket)
    task = _async_only(process)
    return Task(task.jobs, SourceRef(key=key, bucket=bucket), task.notify, _user_data(body), "oss")


def _async_only(process: str) -> Task:
    parsed = parse_process(process)
    if not isinstance(parsed, Task):
        raise BadRequest(
            "process: a task needs video/snapshots (video/snapshot answers synchronously)", param="process"
        )
    return parsed


_STYLES: tuple[tuple[frozenset[str], Callable[[Mapping[str, Any]], Task]], ...] = (
    (frozenset({"Sources", "Targets"}), _parse_imm),
    (frozenset({"Input", "SnapshotConfig"}), _parse_mps),
    (frozenset({"Process", "Key"}), _parse_oss_json),
)


def _parse_mapping(body: Mapping[str, Any]) -> Task:
    obj = _obj(body, "body")
    for markers, parser in _STYLES:
        if markers & obj.keys():
            return parser(obj)
    raise BadRequest(
        f"body: unrecognised task with fields {_snip(sorted(obj)[:8])}; valid: IMM (Sources, Targets), "
        "MPS (Input, SnapshotConfig) or OSS (Bucket, Key, Process)",
        param="body",
    )


def parse_task(body: str | bytes | Mapping[str, Any]) -> Task:
    """Parse an asynchronous task: a JSON body (IMM, MPS or OSS style) or a ``video/snapshots`` string.

    ``body`` may be text, UTF-8 bytes or an already decoded mapping. The task's ``source`` is set
    when the JSON names one (IMM ``Sources``, MPS ``Input``, OSS ``Bucket``/``Key``), None for a
    bare process string. Raises :class:`BadRequest` / :class:`NotSupportedYet` (and
    :class:`~vidsnap.core.errors.NotAllowed` for an unsafe source key).
    """
    if isinstance(body, Mapping):
        return _parse_mapping(body)
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"body: {len(body)} bytes; valid: at most {MAX_BODY_BYTES} bytes", param="body")
        try:
            body = bytes(body).decode("utf-8-sig")  # tolerate a BOM from editors
        except UnicodeDecodeError:
            raise BadRequest("body: not UTF-8 text", param="body") from None
    if not isinstance(body, str):
        raise BadRequest(
            f"body: expected JSON text, bytes or an object, not {type(body).__name__}", param="body"
        )
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body: {len(body)} characters; valid: at most {MAX_BODY_BYTES}", param="body")
    text = body.strip().lstrip("\ufeff")
    if text.startswith(("{", "[")):
        data = _load_json(text)
        if not isinstance(data, dict):
            _fail("body", data, "a JSON object", why=f"expected an object, got {type(data).__name__}")
        return _parse_mapping(data)
    return _async_only(text)

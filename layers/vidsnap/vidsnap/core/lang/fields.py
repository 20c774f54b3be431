"""The validation kit the request languages share: limits, value checks and their error messages.

Every check either returns the validated value or raises :class:`~vidsnap.core.errors.BadRequest`
(never anything else, whatever the input) in one shape (README: Request languages; README: HTTP
API, errors): the message names the parameter (the full JSON path for JSON fields), the offending
value (:func:`snip`: truncated, ``repr`` quoted) and the valid range; ``param`` is the parameter
name (:func:`leaf`: the field name at the end of a JSON path); ``ec`` is the OSS code where the
caller gives one (synchronous process strings only).

Two families:

- text parameters of process strings (``k_v`` items): :func:`int_param`, :func:`choice`;
- fields of decoded JSON bodies: :func:`load_body` (text → object, with duplicate keys, ``NaN``
  and too deep nesting refused), :func:`as_object`, :func:`as_list`, :func:`as_str`,
  :func:`as_number` (exact :class:`~fractions.Fraction`), :func:`get_int`,
  :func:`get_seconds_ms`, :func:`get_choice`, :func:`check_fields` and the shared fields
  (``UserData``, ``Notification``, source keys, sprites not supported yet).

Bucket, SNS topic and SQS queue names are checked by :func:`check_bucket`, :func:`topic_target` and
:func:`queue_target` for both families.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, NoReturn

from vidsnap.core.errors import BadRequest
from vidsnap.core.jsonload import MAX_JSON_DEPTH, JSONTooDeep, load_json
from vidsnap.core.naming import check_key
from vidsnap.core.plan import Format, NotifyTarget, ScaleType

#: Longest process string (characters, before URL-decoding).
MAX_PROCESS_CHARS = 8192
#: Largest JSON task body: the SQS message limit.
MAX_BODY_BYTES = 256 * 1024
#: Longest ``UserData`` string (characters).
MAX_USER_DATA = 2048
#: Sanity ceiling of a frame count; the per-task ``MAX_FRAMES`` limit is the engine's.
MAX_NUM = 100_000
#: Most snapshot jobs in one task (IMM ``Snapshots[]`` entries across all targets).
MAX_JOBS = 100
#: Longest time in milliseconds: a signed 32-bit int (~24.8 days).
MAX_MS = 2**31 - 1
#: Largest output width or height (px).
MAX_SIDE = 4096
#: Parameter names echoed in ``BadRequest.param`` are cut to this length.
MAX_PARAM = 64
#: Smallest output width or height of asynchronous jobs (px).
MIN_ASYNC_SIDE = 32

#: Output formats by the names every language accepts.
FORMATS: dict[str, Format] = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
FORMATS_TEXT = "jpg, jpeg, png, webp, avif"
#: Scale types of asynchronous jobs (OSS ``scaletype``, IMM ``ScaleType``).
SCALES: dict[str, ScaleType] = {"stretch": "stretch", "crop": "crop", "fill": "fill", "fit": "fit"}

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_TOPIC_NAME = r"[A-Za-z0-9_-]{1,256}(?:\.fifo)?"
_TOPIC = re.compile(rf"{_TOPIC_NAME}|arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{{12}}:{_TOPIC_NAME}")
_QUEUE_NAME = r"[A-Za-z0-9_-]{1,80}(?:\.fifo)?"
_QUEUE = re.compile(
    rf"{_QUEUE_NAME}|arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{{12}}:{_QUEUE_NAME}"
    rf"|https?://[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?/(?:[A-Za-z0-9_.-]+/)*{_QUEUE_NAME}"
)


# ---------------------------------------------------------------------------------------------------
# errors


def snip(value: object, limit: int = 64) -> str:
    """A bounded, repr-safe rendering of an offending value (never huge, never control chars)."""
    if isinstance(value, str | bytes):
        text = repr(value[: limit + 1])
        return text if len(value) <= limit else text[:-1] + "…" + text[-1]
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not turn a 400 into a crash
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def leaf(path: str) -> str:
    """The field name at the end of a JSON path (``Targets[0].Image.Sprites`` → ``Sprites``)."""
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1]) or path


def fail(
    path: str, value: object, valid: str, *, ec: str | None = None, why: str = "invalid value"
) -> NoReturn:
    """Raise ``BadRequest("<path>: <why> <value>; valid: <valid>")`` with ``param`` the leaf of ``path``."""
    raise BadRequest(f"{path}: {why} {snip(value)}; valid: {valid}", ec=ec, param=leaf(path))


def malformed(message: str, *, param: str, ec: str | None) -> NoReturn:
    """Raise ``BadRequest(message)`` for a request whose structure (not one value) is wrong."""
    raise BadRequest(message, ec=ec, param=param)


# ---------------------------------------------------------------------------------------------------
# text parameters


def int_param(param: str, value: str, lo: int, hi: int, *, ec: str | None = None, unit: str = "") -> int:
    """An integer written in ASCII digits (leading zeros allowed), in ``lo..hi``."""
    valid = f"an integer {lo}..{hi}{unit}"
    # ASCII digits only: str.isdigit() would accept '²' and int() would accept '+5', ' 5', '5_0'.
    if not _DIGITS.fullmatch(value):
        fail(param, value, valid, ec=ec)
    digits = value.lstrip("0") or "0"
    # Overflow is decided on the digit count before converting: int() of a 5000-digit string
    # raises ValueError (Python's int/str digit limit), and it would be pointless work anyway.
    if len(digits) > len(str(hi)):
        fail(param, value, valid, ec=ec, why="value out of range")
    number = int(digits)
    if not lo <= number <= hi:
        fail(param, value, valid, ec=ec, why="value out of range")
    return number


def choice(param: str, value: str, table: Mapping[str, Any], *, ec: str | None = None) -> Any:
    """The entry of ``table`` named by ``value`` in any case (the keys of ``table`` are lower case)."""
    key = value.lower()
    if key not in table:
        fail(param, value, ", ".join(table), ec=ec)
    return table[key]


def check_bucket(param: str, name: str) -> str:
    """``name`` when it looks like a bucket name; whether it is *allowed* is decided later."""
    if not _BUCKET.fullmatch(name):
        fail(param, name, "a bucket name of 1..255 letters, digits, '.', '-', '_'")
    return name


def topic_target(param: str, value: str) -> NotifyTarget:
    """An SNS topic name or ARN as a notification target."""
    if not _TOPIC.fullmatch(value):
        fail(param, value, "an SNS topic name (letters, digits, '-', '_'; optional .fifo) or topic ARN")
    return NotifyTarget("sns", value)


def queue_target(param: str, value: str) -> NotifyTarget:
    """An SQS queue name, ARN or URL as a notification target."""
    if not _QUEUE.fullmatch(value):
        fail(param, value, "an SQS queue name, queue ARN or queue URL")
    return NotifyTarget("sqs", value)


# ---------------------------------------------------------------------------------------------------
# JSON bodies


def _reject_constant(name: str) -> NoReturn:
    raise BadRequest(f"body: {name} is not a valid JSON number; valid: finite numbers", param="body")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(
                f"{snip(key)}: field is given twice in the JSON body; valid: each field once",
                param=key[:MAX_PARAM],
            )
        out[key] = value
    return out


def load_body(text: str) -> Any:
    """Decode a JSON task body; duplicate keys, ``NaN``/``Infinity`` and deep nesting are refused."""
    try:
        return load_json(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except BadRequest:
        raise
    except (JSONTooDeep, RecursionError):
        raise BadRequest(
            f"body: the JSON is nested too deeply; valid: at most {MAX_JSON_DEPTH} levels", param="body"
        ) from None
    except ValueError as exc:  # JSONDecodeError, and int() of a number with too many digits
        raise BadRequest(f"body: not valid JSON ({snip(str(exc), 120)})", param="body") from None


def type_error(value: Any, path: str, expected: str) -> NoReturn:
    """Raise for a missing field (``value`` None) or one of the wrong JSON type."""
    if value is None:
        raise BadRequest(f"{path}: required field is missing; valid: {expected}", param=leaf(path))
    fail(path, value, expected, why=f"expected {expected}, got {type(value).__name__}")


def as_object(value: Any, path: str) -> dict[str, Any]:
    """A required JSON object (a Mapping with string keys)."""
    if not isinstance(value, Mapping):
        type_error(value, path, "a JSON object")
    for key in value:
        if not isinstance(key, str):
            fail(path, key, "string field names", why="non-string field name")
    return dict(value)


def opt_object(value: Any, path: str) -> dict[str, Any] | None:
    """An optional JSON object (null/absent → None)."""
    return None if value is None else as_object(value, path)


def check_fields(
    obj: Mapping[str, Any], path: str, allowed: set[str], ignored: frozenset[str] = frozenset()
) -> None:
    """Refuse any field of ``obj`` that is neither ``allowed`` nor ``ignored``."""
    for key in obj:
        if key not in allowed and key not in ignored:
            where = f"{path}.{key[:MAX_PARAM]}" if path else key[:MAX_PARAM]
            raise BadRequest(
                f"{where}: unknown field {snip(key)}; valid: {', '.join(sorted(allowed | ignored))}",
                param=key[:MAX_PARAM],
            )


def as_list(value: Any, path: str) -> list[Any]:
    """A required JSON list."""
    if not isinstance(value, list | tuple):
        type_error(value, path, "a JSON list")
    return list(value)


def as_str(value: Any, path: str, *, limit: int = 4096) -> str:
    """A required JSON string of at most ``limit`` characters."""
    if not isinstance(value, str):
        type_error(value, path, "a string")
    if len(value) > limit:
        fail(path, value, f"a string of at most {limit} characters", why="string too long")
    return value


def opt_str(value: Any, path: str, *, limit: int = 4096) -> str | None:
    """An optional JSON string (null/absent → None)."""
    return None if value is None else as_str(value, path, limit=limit)


def as_number(value: Any, path: str, *, strings: bool) -> Fraction:
    """A JSON number as an exact Fraction (``0.1`` → 1/10); bools, NaN, inf, other types rejected.

    With ``strings``, decimal strings (``"10"``, ``"0.5"``) are numbers too.
    """
    valid = "a number" + (" (or a decimal string)" if strings else "")
    if isinstance(value, bool):
        fail(path, value, valid, why="expected a number, got a boolean")
    if isinstance(value, int):
        return Fraction(value)  # not via str(): a 5000-digit int must not hit the str() digit limit
    if isinstance(value, float):
        if not math.isfinite(value):
            fail(path, value, valid)
        return Fraction(str(value))
    if strings and isinstance(value, str):
        if len(value) <= 32 and _DECIMAL.fullmatch(value.strip()):
            return Fraction(value.strip())
        fail(path, value, valid)
    type_error(value, path, valid)


def ranged(
    value: Fraction, raw: Any, path: str, *, lo: Fraction, hi: Fraction, valid: str, integer: bool
) -> Fraction:
    """``value`` when it lies in ``lo..hi`` (and is whole, with ``integer``); ``raw`` is quoted on failure."""
    if integer and value.denominator != 1:
        fail(path, raw, valid, why="not an integer")
    if not lo <= value <= hi:
        fail(path, raw, valid, why="value out of range")
    return value


def get_int(
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
    value = as_number(raw, where, strings=strings)
    valid = f"an integer {lo}..{hi}{unit}"
    return int(ranged(value, raw, where, lo=Fraction(lo), hi=Fraction(hi), valid=valid, integer=True))


def get_seconds_ms(obj: Mapping[str, Any], key: str, path: str, *, strings: bool = False) -> Fraction:
    """An optional time in seconds (fractions allowed) → exact milliseconds."""
    if obj.get(key) is None:
        return Fraction(0)
    where = f"{path}.{key}"
    raw = obj[key]
    seconds = as_number(raw, where, strings=strings)
    hi = Fraction(MAX_MS, 1000)
    ranged(
        seconds, raw, where, lo=Fraction(0), hi=hi, valid=f"a number of seconds 0..{float(hi)}", integer=False
    )
    return seconds * 1000


def get_choice(obj: Mapping[str, Any], key: str, path: str, table: Mapping[str, Any], default: Any) -> Any:
    """An optional enumerated string field (null/absent → ``default``), in any case."""
    if obj.get(key) is None:
        return default
    value = as_str(obj[key], f"{path}.{key}")
    return choice(f"{path}.{key}", value, table)


# ---------------------------------------------------------------------------------------------------
# fields several JSON languages share


def user_data(obj: Mapping[str, Any]) -> str | None:
    """The optional ``UserData`` string, echoed in the notification."""
    return opt_str(obj.get("UserData"), "UserData", limit=MAX_USER_DATA)


def source_key(key: str, path: str) -> str:
    """A source object key: non-empty and safe (:func:`vidsnap.core.naming.check_key`)."""
    if not key:
        fail(path, key, "a non-empty object key")
    return check_key(key)


def notification(value: Any) -> NotifyTarget | None:
    """The optional ``Notification``: ``{"SNS": {"TopicArn"}}`` or ``{"SQS": {"QueueUrl"}}``."""
    obj = opt_object(value, "Notification")
    if obj is None:
        return None
    check_fields(obj, "Notification", {"SNS", "SQS"})
    present = [k for k in ("SNS", "SQS") if obj.get(k) is not None]
    if len(present) != 1:
        raise BadRequest(
            'Notification: needs exactly one of SNS {"TopicArn"} or SQS {"QueueUrl"}', param="Notification"
        )
    if present[0] == "SNS":
        sns = as_object(obj["SNS"], "Notification.SNS")
        check_fields(sns, "Notification.SNS", {"TopicArn"})
        arn = as_str(sns.get("TopicArn"), "Notification.SNS.TopicArn")
        return topic_target("Notification.SNS.TopicArn", arn)
    sqs = as_object(obj["SQS"], "Notification.SQS")
    check_fields(sqs, "Notification.SQS", {"QueueUrl"})
    url = as_str(sqs.get("QueueUrl"), "Notification.SQS.QueueUrl")
    return queue_target("Notification.SQS.QueueUrl", url)

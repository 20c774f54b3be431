"""The request languages → the normalised plan (README: Request languages; README: HTTP API, errors).

Three entry points:

- :func:`parse_process` — an OSS process string, sync (``video/snapshot,...``) or async
  (``video/snapshots,...|sys/saveas,...|notify,...``);
- :func:`parse_sync` — only ``video/snapshot``; errors carry the OSS ``EC`` codes (README: HTTP API, errors);
- :func:`parse_task` — an asynchronous task: a JSON body in IMM, MPS or OSS style (str, bytes or an
  already decoded mapping) or a raw async process string.

One module per language, over a shared validation kit:

- :mod:`vidsnap.core.lang.oss` — process strings and the OSS JSON task (README: Request languages,
  "OSS synchronous", "OSS asynchronous", "OSS JSON");
- :mod:`vidsnap.core.lang.imm` — IMM JSON tasks (README: Request languages, "IMM JSON");
- :mod:`vidsnap.core.lang.mps` — MPS JSON tasks (README: Request languages, "MPS JSON");
- :mod:`vidsnap.core.lang.fields` — limits, value checks and the shape of their errors.

Everything is validated before any media is read. Every failure is a
:class:`~vidsnap.core.errors.BadRequest` whose ``param`` names the parameter (the leaf field name for
JSON) and whose message names the parameter (the full JSON path), the offending value (truncated, ``repr``
quoted) and the valid range. Bad output keys from :func:`vidsnap.core.naming.check_key` on a *source*
key are :class:`~vidsnap.core.errors.NotAllowed` (README: Configuration). No input, however malformed,
raises anything that is not a :class:`~vidsnap.core.errors.VidsnapError`.

JSON tasks
----------
Bodies are limited to 256 KiB (the SQS message limit). Duplicate keys, ``NaN``/``Infinity``,
booleans where numbers are expected, lists where objects are expected are errors. Numbers are read
exactly with ``Fraction(str(value))`` (IMM ``Interval`` 0.1 s is exactly 100 ms). ``UserData`` must
be a string of at most 2048 characters. The style is told by the fields present: ``Sources`` or
``Targets`` → IMM, ``Input`` or ``SnapshotConfig`` → MPS, ``Process`` or ``Key`` → OSS. Source keys
of JSON tasks are checked with :func:`vidsnap.core.naming.check_key` (README: Configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vidsnap.core.errors import BadRequest
from vidsnap.core.lang import imm, mps, oss
from vidsnap.core.lang.fields import MAX_BODY_BYTES, as_object, fail, load_body, snip
from vidsnap.core.lang.oss import parse_process, parse_sync
from vidsnap.core.plan import Task

__all__ = ["MAX_BODY_BYTES", "parse_process", "parse_sync", "parse_task"]

#: The JSON styles, each told by the fields only it has.
_STYLES: tuple[tuple[frozenset[str], Callable[[Mapping[str, Any]], Task]], ...] = (
    (frozenset({"Sources", "Targets"}), imm.parse_body),
    (frozenset({"Input", "SnapshotConfig"}), mps.parse_body),
    (frozenset({"Process", "Key"}), oss.parse_body),
)


def _parse_mapping(body: Mapping[str, Any]) -> Task:
    obj = as_object(body, "body")
    for markers, parser in _STYLES:
        if markers & obj.keys():
            return parser(obj)
    raise BadRequest(
        f"body: unrecognised task with fields {snip(sorted(obj)[:8])}; valid: IMM (Sources, Targets), "
        "MPS (Input, SnapshotConfig) or OSS (Bucket, Key, Process)",
        param="body",
    )


def parse_task(body: str | bytes | Mapping[str, Any]) -> Task:
    """Parse an asynchronous task: a JSON body (IMM, MPS or OSS style) or a ``video/snapshots`` string.

    ``body`` may be text, UTF-8 bytes or an already decoded mapping. The task's ``source`` is set
    when the JSON names one (IMM ``Sources``, MPS ``Input``, OSS ``Bucket``/``Key``), None for a
    bare process string. Raises :class:`BadRequest` (and :class:`~vidsnap.core.errors.NotAllowed`
    for an unsafe source key).
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
        data = load_body(text)
        if not isinstance(data, dict):
            fail("body", data, "a JSON object", why=f"expected an object, got {type(data).__name__}")
        return _parse_mapping(data)
    return oss.parse_async(text)

"""Raw Lambda event shapes -> typed uploads and task messages (README: Events handled).

An S3 upload can reach the worker in several envelopes; all become :class:`UploadEvent`:

- an S3 notification delivered directly (``{"Records": [{"eventSource": "aws:s3", "s3": ...}]}``);
- the same notification as the body of an SQS message (S3 -> SQS);
- an SNS envelope (``{"Type": "Notification", "Message": "<S3 notification JSON>"}``) as an SQS
  body (SNS -> SQS without raw delivery; with raw delivery the body is the S3 notification itself),
  or as an ``aws:sns`` Lambda record;
- an EventBridge ``Object Created`` event from ``aws.s3`` (directly or as an SQS body).

Keys of S3 notifications are URL-encoded with ``+`` for spaces (``my clip+1.mp4`` arrives as
``my+clip%2B1.mp4``) and are decoded with :func:`urllib.parse.unquote_plus`. EventBridge events carry
the key as is: tests on real accounts (e.g. aws-solutions-library-samples/guidance-for-medialake-on-aws
PR #21, keys like ``test+b.png`` and ``%2B%20%%%.png``) show that decoding them corrupts keys with
``+`` or ``%``, so they are **not** decoded (Powertools' ``S3EventBridgeNotificationObject.key``
decodes them, which is why it is not used here). ``s3:TestEvent`` messages and non-create events
are ignored.

Powertools' event data classes are not used for the S3 shapes: the notification arrives nested in
strings of other envelopes, and the plain dictionary walk below handles every nesting the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

# The bounded loader lives in the core (the request languages use it too); its names stay importable here.
from vidsnap.core.jsonload import MAX_JSON_DEPTH, JSONTooDeep, json_depth, load_json

__all__ = [
    "MAX_EVENT_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "JSONTooDeep",
    "UploadEvent",
    "classify_message",
    "is_upload_shape",
    "json_depth",
    "load_json",
    "uploads_from_event",
]


@dataclass(frozen=True)
class UploadEvent:
    """One created S3 object: where it is and which version of it the event is about."""

    bucket: str
    key: str
    version: str | None = None
    etag: str | None = None
    size: int | None = None


#: Largest JSON text taken from an event (SQS and asynchronous invocations carry at most 1 MiB).
MAX_EVENT_JSON_CHARS = 1 << 20


def _loads(text: Any) -> Any:
    """JSON from an event field, or None when it is not JSON we take (junk, too big, too deep)."""
    if not isinstance(text, str | bytes) or len(text) > MAX_EVENT_JSON_CHARS:
        return None
    try:
        return load_json(text)
    except (ValueError, TypeError):
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):  # 1e999 in JSON is inf
        return None


def _map(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (junk in a field is no upload)."""
    return value if isinstance(value, Mapping) else {}


def _etag(value: Any) -> str | None:
    return value.strip('"') or None if isinstance(value, str) else None


def _from_s3_record(record: Mapping[str, Any]) -> UploadEvent | None:
    name = str(record.get("eventName", "ObjectCreated"))
    # eventName is "ObjectCreated:Put" in notifications ("s3:ObjectCreated:Put" in some tools).
    if "ObjectCreated" not in name:
        return None
    s3 = _map(record.get("s3"))
    bucket = _map(s3.get("bucket")).get("name")
    obj = _map(s3.get("object"))
    key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        return None
    return UploadEvent(
        bucket=bucket,
        key=unquote_plus(key),
        version=_str_or_none(obj.get("versionId")),
        etag=_etag(obj.get("eTag") or obj.get("etag")),
        size=_int_or_none(obj.get("size")),
    )


def _from_eventbridge(event: Mapping[str, Any]) -> UploadEvent | None:
    detail = _map(event.get("detail"))
    bucket = _map(detail.get("bucket")).get("name")
    obj = _map(detail.get("object"))
    key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        return None
    return UploadEvent(
        bucket=bucket,
        key=key,  # not URL-encoded in EventBridge events (see the module docstring)
        version=_str_or_none(obj.get("version-id")),
        etag=_etag(obj.get("etag")),
        size=_int_or_none(obj.get("size")),
    )


def is_upload_shape(obj: Any) -> bool:
    """True when ``obj`` is an S3 notification, an S3 test event or an S3 EventBridge event.

    (As opposed to a task message.) SNS/SQS envelopes are not unwrapped here.
    """
    if not isinstance(obj, Mapping):
        return False
    if obj.get("Event") == "s3:TestEvent":
        return True
    if obj.get("source") == "aws.s3" and "detail-type" in obj:
        return True
    records = obj.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, Mapping) and ("s3" in r or r.get("eventSource") == "aws:s3") for r in records)
    )


def uploads_from_event(obj: Mapping[str, Any]) -> list[UploadEvent]:
    """Every created object in an S3 notification, SQS/SNS record or envelope, or EventBridge event.

    Anything else (test events, deletions, task messages, junk) gives ``[]``.
    """
    if not isinstance(obj, Mapping):
        return []
    if obj.get("Event") == "s3:TestEvent":
        return []
    # SNS envelope (an SQS body of an SNS subscription without raw delivery).
    if obj.get("Type") == "Notification" and "Message" in obj:
        inner = _loads(obj["Message"])
        return uploads_from_event(inner) if isinstance(inner, Mapping) else []
    # EventBridge.
    if "detail-type" in obj and "detail" in obj:
        if obj.get("source") == "aws.s3" and obj.get("detail-type") == "Object Created":
            upload = _from_eventbridge(obj)
            return [upload] if upload else []
        return []
    records = obj.get("Records")
    if not isinstance(records, list):
        return []
    uploads: list[UploadEvent] = []
    for record in records:
        if not isinstance(record, Mapping):
            continue
        source = record.get("eventSource") or record.get("EventSource")
        if "s3" in record:
            upload = _from_s3_record(record)
            if upload:
                uploads.append(upload)
        elif source == "aws:sqs":
            inner = _loads(record.get("body"))
            if isinstance(inner, Mapping):
                uploads.extend(uploads_from_event(inner))
        elif source == "aws:sns":
            inner = _loads(_map(record.get("Sns")).get("Message"))
            if isinstance(inner, Mapping):
                uploads.extend(uploads_from_event(inner))
    return uploads


def classify_message(body: str) -> list[UploadEvent] | str:
    """Tell an upload notification from a task in an SQS message body.

    Returns the uploads (possibly ``[]``, e.g. for ``s3:TestEvent``) when the body is an S3
    notification, S3 test event or EventBridge event, possibly inside an SNS envelope; otherwise
    the task body to parse (IMM/MPS/OSS JSON or a raw process string). A task published to an SNS
    topic that feeds the queue arrives in an SNS envelope: its inner message is returned.
    """
    obj = _loads(body)
    if isinstance(obj, Mapping) and obj.get("Type") == "Notification" and "Message" in obj:
        message = obj["Message"]
        inner = _loads(message)
        if is_upload_shape(inner):
            return uploads_from_event(inner)
        return message if isinstance(message, str) else json.dumps(message)
    if is_upload_shape(obj):
        return uploads_from_event(obj)
    return body

"""Task records in DynamoDB (README); their deterministic ids come from :func:`vidsnap.core.plan.task_id`.

One item per task, keyed by ``TaskId`` (string hash key). Public fields (what ``GET /tasks/{id}``
shows): ``TaskId, Status (Running|Succeeded|Failed), Progress (0-100), StartTime, EndTime, Code,
Message, RequestId, Sources, Outputs, Warnings, UserData, Request``. Bookkeeping fields:
``ExpiresAt`` (TTL, epoch seconds, now + 7 days), ``LeaseExpiresAt`` (epoch seconds until which the
invocation running the task owns it), ``UpdatedAt``, ``Attempts``, ``LastCode``/``LastMessage``
(the last transient error), ``Notified`` (the notification message id), ``OutputsTruncated``,
``Checkpoint`` (how far a task that ran out of time got: :meth:`TaskStore.checkpoint`, removed when
the task ends). A task run by the state machine (:mod:`vidsnap.aws.fanout`) also has ``Execution``
(its name), ``Windows`` (how many) and ``WindowsDone`` (the windows finished, a number set); each
window's outcome is an item of its own, ``<execution>#window-<n>`` (:meth:`TaskStore.window_key`),
expiring with the records.

Idempotency comes from one conditional write, so Powertools idempotency is not needed:
:meth:`TaskStore.begin` puts the item only if no item with that id exists. When one exists, it
tells the caller what state it is in; a Running item whose lease has expired (its invocation
crashed or timed out, or it released the task after a transient error) is taken over with a
second conditional write, so exactly one invocation wins.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from vidsnap.aws.clients import Clients, mapped_errors
from vidsnap.aws.errors import error_code, map_client_error
from vidsnap.aws.notify import Notification, rfc3339
from vidsnap.core.errors import VidsnapError

log = logging.getLogger(__name__)

TTL_SECONDS = 7 * 24 * 3600
PROGRESS_INTERVAL_S = 2.0
Begin = Literal["new", "running", "succeeded", "failed"]


def to_dynamo(value: Any) -> Any:
    """A JSON-friendly value made storable by the DynamoDB resource (floats become Decimals)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """An item read through the resource made JSON-friendly (Decimals become int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(from_dynamo(v) for v in value)
    return value


def _iso(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, tz=UTC))


class TaskStore:
    """Task records in the DynamoDB table ``table_name`` (hash key ``TaskId``, TTL on ``ExpiresAt``).

    ``lease_seconds`` is how long a Running record belongs to the invocation that began it when the
    caller does not say (the worker's maximum run time). A caller that knows how long it has left
    passes ``lease_seconds`` to :meth:`begin` / :meth:`retry` instead, so a lease never outlives
    the invocation holding it; ``clock`` returns epoch seconds (tests pass a fake).
    """

    def __init__(
        self,
        clients: Clients,
        table_name: str,
        *,
        lease_seconds: int = 900,
        ttl_seconds: int = TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        progress_interval: float = PROGRESS_INTERVAL_S,
    ) -> None:
        self.clients = clients
        self.table_name = table_name
        self.lease_seconds = lease_seconds
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.progress_interval = progress_interval
        self._last_progress: dict[str, float] = {}
        # The lease this store granted per task (checkpoints are written only under it) and the
        # checkpoint found when a task was taken over.
        self._leases: dict[str, int] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._table: Any = None

    @property
    def table(self) -> Any:
        """The boto3 ``Table`` (created on first use)."""
        if self._table is None:
            self._table = self.clients.dynamodb.Table(self.table_name)
        return self._table

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with mapped_errors(f"dynamodb {self.table_name} {what}"):
            return fn(**kwargs)

    def _conditional(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> bool:
        """A conditional write: True when done, False when its condition failed (another caller won)."""
        try:
            fn(**kwargs)
        except ClientError as exc:
            if error_code(exc)[0] == "ConditionalCheckFailedException":
                return False
            raise map_client_error(exc, f"dynamodb {self.table_name} {what}") from exc
        except BotoCoreError as exc:
            raise map_client_error(exc, f"dynamodb {self.table_name} {what}") from exc
        return True

    def begin(
        self,
        task_id: str,
        request: Mapping[str, Any],
        sources: Sequence[str],
        *,
        lease_seconds: float | None = None,
        **fields: Any,
    ) -> Begin:
        """Claim ``task_id``: ``"new"`` when this caller now owns a Running record.

        Otherwise the state of the existing record: ``"running"`` (owned by another invocation whose
        lease has not expired), ``"succeeded"`` or ``"failed"``. A Running record whose lease has
        expired is taken over (``"new"``). The claim lasts ``lease_seconds`` (default: the store's).
        Extra ``fields`` (``RequestId``, ``UserData``) are stored on a new record.
        """
        now = self.clock()
        lease_until = self._lease_until(now, lease_seconds)
        item = {
            "TaskId": task_id,
            "Status": "Running",
            "Progress": 0,
            "StartTime": _iso(now),
            "Request": to_dynamo(dict(request)),
            "Sources": list(sources),
            "UpdatedAt": int(now),
            "LeaseExpiresAt": lease_until,
            "ExpiresAt": int(now + self.ttl_seconds),
            "Attempts": 1,
            **to_dynamo(fields),
        }
        self._checkpoints.pop(task_id, None)
        self._leases[task_id] = lease_until
        if self._claim(item):
            return "new"
        existing = self._get_raw(task_id)
        if existing is None:
            # Deleted (TTL) between the two calls: claim it again, once; a second race says running.
            return "new" if self._claim(item) else "running"
        status = existing.get("Status")
        if status == "Succeeded":
            return "succeeded"
        if status == "Failed":
            return "failed"
        return self._expired(task_id, existing, now, lease_until)

    def _expired(self, task_id: str, existing: Mapping[str, Any], now: float, lease_until: int) -> Begin:
        """A Running record: taken over (``"new"``, its checkpoint kept for :meth:`resumes`) when its
        lease has expired, else ``"running"``."""
        lease = existing.get("LeaseExpiresAt", 0)
        if lease >= now or not self._take_over(task_id, lease, now, lease_until):
            return "running"
        if isinstance(existing.get("Checkpoint"), dict):
            self._checkpoints[task_id] = existing["Checkpoint"]
        return "new"

    def _lease_until(self, now: float, lease_seconds: float | None) -> int:
        """The epoch second a claim made at ``now`` for ``lease_seconds`` ends (rounded up)."""
        seconds = self.lease_seconds if lease_seconds is None else lease_seconds
        return math.ceil(now + max(0.0, seconds))

    def _claim(self, item: Mapping[str, Any]) -> bool:
        """Put a new record unless one exists; False when one does."""
        return self._conditional(
            "put", self.table.put_item, Item=item, ConditionExpression="attribute_not_exists(TaskId)"
        )

    def _take_over(self, task_id: str, lease: Any, now: float, lease_until: int) -> bool:
        """Conditionally move an expired lease to this caller; False when someone else won."""
        took = self._conditional(
            "update",
            self.table.update_item,
            Key={"TaskId": task_id},
            UpdateExpression=(
                "SET LeaseExpiresAt = :lease, UpdatedAt = :now, Progress = :zero, "
                "Attempts = if_not_exists(Attempts, :zero) + :one"
            ),
            ConditionExpression="#s = :running AND LeaseExpiresAt = :old",
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues={
                ":lease": lease_until,
                ":now": int(now),
                ":zero": 0,
                ":one": 1,
                ":running": "Running",
                ":old": lease,
            },
        )
        if took:
            log.info("took over task %s (lease expired)", task_id)
        return took

    def retry(self, task_id: str, *, lease_seconds: float | None = None) -> bool:
        """Take a Failed record back to Running for a new attempt; False when another caller won."""
        now = self.clock()
        lease_until = self._lease_until(now, lease_seconds)
        self._leases[task_id] = lease_until
        self._checkpoints.pop(task_id, None)
        return self._conditional(
            "update",
            self.table.update_item,
            Key={"TaskId": task_id},
            UpdateExpression=(
                "SET #s = :running, Progress = :zero, LeaseExpiresAt = :lease, UpdatedAt = :now, "
                "ExpiresAt = :expires, Attempts = if_not_exists(Attempts, :zero) + :one "
                "REMOVE EndTime, Code, Message, Outputs, Warnings, Notified, Checkpoint"
            ),
            ConditionExpression="#s = :failed",
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues={
                ":running": "Running",
                ":failed": "Failed",
                ":zero": 0,
                ":one": 1,
                ":lease": lease_until,
                ":now": int(now),
                ":expires": int(now + self.ttl_seconds),
            },
        )

    def resumes(self, task_id: str) -> dict[str, Any] | None:
        """The checkpoint of ``task_id`` when :meth:`begin` took it over from an attempt that ran
        out of time (None: the task starts from the beginning)."""
        return self._checkpoints.pop(task_id, None)

    def checkpoint(self, task_id: str, checkpoint: Mapping[str, Any], code: str, message: str) -> bool:
        """Save how far the task got and give it up (lease released, ``LastCode``/``LastMessage``),
        in one write, only while this store's lease on it holds; False when it does not (another
        invocation took the task over) or the checkpoint is too large for an item."""
        values: dict[str, Any] = {
            ":c": to_dynamo(dict(checkpoint)),
            ":zero": 0,
            ":now": int(self.clock()),
            ":code": code,
            ":m": message,
        }
        try:
            saved = self._update_held(
                task_id,
                "SET Checkpoint = :c, LeaseExpiresAt = :zero, UpdatedAt = :now, "
                "LastCode = :code, LastMessage = :m",
                values,
            )
        except VidsnapError as exc:
            if "size" not in exc.message.lower():
                raise
            log.warning("checkpoint of %s not saved: %s", task_id, exc.message)
            return False
        self._last_progress.pop(task_id, None)
        return saved

    def _update_held(self, task_id: str, expression: str, values: dict[str, Any]) -> bool:
        """Update the task with ``expression`` only while it is Running under this store's lease
        (when it granted one); False when it is not (another invocation took it over)."""
        values = {**values, ":running": "Running"}
        condition = "#s = :running"
        lease = self._leases.get(task_id)
        if lease is not None:
            condition += " AND LeaseExpiresAt = :mine"
            values[":mine"] = lease
        return self._conditional(
            "update",
            self.table.update_item,
            Key={"TaskId": task_id},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues=values,
        )

    def progress(self, task_id: str, pct: float, *, force: bool = False) -> bool:
        """Record progress (0-100), at most once every ~2 s per task (``force``: now); True when
        written.

        Progress is advisory: a failure to write it is logged, never raised, so it cannot fail a task.
        """
        now = time.monotonic()
        last = self._last_progress.get(task_id)
        if not force and last is not None and now - last < self.progress_interval:
            return False
        self._last_progress[task_id] = now
        pct_int = max(0, min(100, int(pct)))
        try:
            self.table.update_item(
                Key={"TaskId": task_id},
                UpdateExpression="SET Progress = :p, UpdatedAt = :now",
                ConditionExpression="#s = :running",
                ExpressionAttributeNames={"#s": "Status"},
                ExpressionAttributeValues={":p": pct_int, ":now": int(self.clock()), ":running": "Running"},
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("progress of %s not recorded: %s", task_id, map_client_error(exc).message)
            return False
        return True

    def release(self, task_id: str, code: str, message: str) -> None:
        """Give up a Running task after a transient error so the retry can take it over at once.

        The record stays Running (the task is not over: SQS will retry it) with the error in
        ``LastCode``/``LastMessage``. Failures here are logged only: the lease expires anyway.
        """
        try:
            self.table.update_item(
                Key={"TaskId": task_id},
                UpdateExpression=(
                    "SET LeaseExpiresAt = :zero, UpdatedAt = :now, LastCode = :c, LastMessage = :m"
                ),
                ConditionExpression="#s = :running",
                ExpressionAttributeNames={"#s": "Status"},
                ExpressionAttributeValues={
                    ":zero": 0,
                    ":now": int(self.clock()),
                    ":c": code,
                    ":m": message,
                    ":running": "Running",
                },
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("task %s not released: %s", task_id, map_client_error(exc).message)
        self._last_progress.pop(task_id, None)

    def finish(self, notification: Notification, *, notified: str | None = None) -> None:
        """End the task ``notification`` reports: its Status, Code, Message, Outputs, Warnings and
        times, RequestId and UserData (so that :func:`notification_from_record` rebuilds it);
        Progress 100 on success. ``notified`` is the id of the message sent, if one was."""
        task_id = notification.task_id
        outputs = notification.outputs
        values: dict[str, Any] = {
            ":s": notification.status,
            ":c": notification.code,
            ":m": notification.message,
            ":o": to_dynamo([dict(o) for o in outputs]),
            ":comp": to_dynamo([dict(c) for c in notification.compositions]),
            ":w": list(notification.warnings),
            ":e": notification.end_time or _iso(self.clock()),
            ":now": int(self.clock()),
            ":zero": 0,
        }
        sets = [
            "#s = :s", "Code = :c", "Message = :m", "Outputs = :o", "Compositions = :comp", "Warnings = :w",
            "EndTime = :e", "UpdatedAt = :now", "LeaseExpiresAt = :zero",
        ]  # fmt: skip
        removes = " REMOVE Checkpoint"
        if notification.status == "Succeeded":
            sets.append("Progress = :hundred")
            values[":hundred"] = 100
        fields = {
            "RequestId": notification.request_id,
            "UserData": notification.user_data,
            "StartTime": notification.start_time,
        }
        for name, value in fields.items():
            if value is not None:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = value
        if notified:
            sets.append("Notified = :n")
            values[":n"] = notified
        expression = "SET " + ", ".join(sets)
        params: dict[str, Any] = {
            "Key": {"TaskId": task_id},
            "UpdateExpression": expression + removes,
            "ExpressionAttributeNames": {"#s": "Status"},
            "ExpressionAttributeValues": values,
        }
        try:
            self.table.update_item(**params)
        except ClientError as exc:
            code_, _ = error_code(exc)
            if code_ != "ValidationException" or "size" not in str(exc).lower():
                raise map_client_error(exc, f"dynamodb {self.table_name} update") from exc
            # Item over 400 KB (thousands of outputs): keep the record, drop the list, say so.
            values[":o"] = []
            values[":comp"] = []
            params["UpdateExpression"] = expression + ", OutputsTruncated = :count"
            values[":count"] = len(outputs)
            params["UpdateExpression"] += removes
            self._call("update", self.table.update_item, **params)
        except BotoCoreError as exc:
            raise map_client_error(exc, f"dynamodb {self.table_name} update") from exc
        self._last_progress.pop(task_id, None)
        self._leases.pop(task_id, None)

    # -- long tasks on the state machine (vidsnap.aws.fanout) ----------------------------------

    def fan_out(self, task_id: str, execution: str, windows: int, *, lease_seconds: float) -> bool:
        """Record that ``execution`` runs the task in ``windows`` windows, under this store's lease,
        and hold the task for ``lease_seconds``; False when the lease was lost."""
        now = self.clock()
        values: dict[str, Any] = {
            ":e": execution,
            ":n": windows,
            ":zero": 0,
            ":now": int(now),
            ":lease": self._lease_until(now, lease_seconds),
        }
        return self._update_held(
            task_id,
            "SET Execution = :e, Windows = :n, Progress = :zero, UpdatedAt = :now, "
            "LeaseExpiresAt = :lease REMOVE WindowsDone",
            values,
        )

    @staticmethod
    def window_key(execution: str, index: int, kind: str = "window") -> str:
        """The id of the item that holds a window's outcome (``kind`` ``window``) or its count
        (``count``), beside the task records (never a task id)."""
        return f"{execution}#{kind}-{index:05d}"

    def window_counted(self, execution: str, index: int, counts: Sequence[Mapping[str, Any] | None]) -> None:
        """Store what the count pass found in window ``index`` (per job; None for jobs not counted)."""
        now = self.clock()
        self._call(
            "put",
            self.table.put_item,
            Item={
                "TaskId": self.window_key(execution, index, "count"),
                "Counts": to_dynamo(list(counts)),
                "UpdatedAt": int(now),
                "ExpiresAt": int(now + self.ttl_seconds),
            },
        )

    def window_done(
        self, task_id: str, execution: str, index: int, outcomes: Sequence[Mapping[str, Any]], windows: int
    ) -> None:
        """Store window ``index``'s outcomes (one per job) and count it done in the task record
        (``WindowsDone`` is a set: a window stored twice counts once; ``Progress`` follows it)."""
        now = self.clock()
        self._call(
            "put",
            self.table.put_item,
            Item={
                "TaskId": self.window_key(execution, index),
                "Outcomes": to_dynamo(list(outcomes)),
                "UpdatedAt": int(now),
                "ExpiresAt": int(now + self.ttl_seconds),
            },
        )
        self.count_window(task_id, execution, index, windows)

    def count_window(self, task_id: str, execution: str, index: int, windows: int) -> None:
        """Count window ``index`` done in the task record (idempotent), and the progress with it."""
        now = self.clock()
        try:
            done = self.table.update_item(
                Key={"TaskId": task_id},
                UpdateExpression="ADD WindowsDone :i SET UpdatedAt = :now",
                ConditionExpression="#s = :running AND Execution = :e",
                ExpressionAttributeNames={"#s": "Status"},
                ExpressionAttributeValues={
                    ":i": {index},
                    ":now": int(now),
                    ":running": "Running",
                    ":e": execution,
                },
                ReturnValues="UPDATED_NEW",
            )
            count = len(done.get("Attributes", {}).get("WindowsDone", ()))
            self.progress(task_id, 100 * count / max(1, windows), force=True)
        except (ClientError, BotoCoreError) as exc:  # progress is advisory; the window's item is what counts
            log.warning("window %s of %s not counted: %s", index, task_id, map_client_error(exc).message)

    def window_partial(
        self, execution: str, index: int, outcomes: Sequence[Mapping[str, Any]], stopped: Mapping[str, Any]
    ) -> None:
        """Store what the attempts at window ``index`` wrote so far and where the next one goes on
        (an attempt that ran out of time); :meth:`window_done` replaces it when the window ends."""
        now = self.clock()
        self._call(
            "put",
            self.table.put_item,
            Item={
                "TaskId": self.window_key(execution, index),
                "Partial": to_dynamo({"Outcomes": list(outcomes), "Stopped": dict(stopped)}),
                "UpdatedAt": int(now),
                "ExpiresAt": int(now + self.ttl_seconds),
            },
        )

    def window_failed(self, execution: str, index: int, code: str, message: str) -> None:
        """Store that window ``index`` failed for good (the task's failure names it)."""
        now = self.clock()
        self._call(
            "put",
            self.table.put_item,
            Item={
                "TaskId": self.window_key(execution, index),
                "Error": {"Code": code, "Message": message},
                "UpdatedAt": int(now),
                "ExpiresAt": int(now + self.ttl_seconds),
            },
        )

    def window_result(self, execution: str, index: int, kind: str = "window") -> dict[str, Any] | None:
        """What window ``index`` stored (as :meth:`window_results`), or None."""
        return self._get_raw(self.window_key(execution, index, kind))

    def window_results(
        self, execution: str, windows: int, kind: str = "window"
    ) -> list[dict[str, Any] | None]:
        """What each of the ``windows`` windows stored (``kind`` ``window``: ``Outcomes`` or
        ``Error``; ``count``: ``Counts``), in window order; None for a window that stored nothing."""
        keys = [self.window_key(execution, i, kind) for i in range(windows)]
        found: dict[str, dict[str, Any]] = {}
        resource = self.clients.dynamodb
        for start in range(0, len(keys), 100):  # BatchGetItem reads at most 100 items a call
            pending: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{"TaskId": k} for k in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(8):
                response = self._call("batch-get", resource.batch_get_item, RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item["TaskId"]] = from_dynamo(item)
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.1)
        return [found.get(k) for k in keys]

    def _get_raw(self, task_id: str) -> dict[str, Any] | None:
        response = self._call("get", self.table.get_item, Key={"TaskId": task_id}, ConsistentRead=True)
        item = response.get("Item")
        return from_dynamo(item) if item is not None else None

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The record of ``task_id`` as plain JSON types, or None when there is none."""
        return self._get_raw(task_id)


def create_table(client: Any, name: str) -> None:
    """Create the task table as template.yaml declares it (hash key ``TaskId``, on-demand billing,
    TTL on ``ExpiresAt``), for the demo, local use and tests; ``client`` is a DynamoDB client."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "TaskId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "TaskId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ExpiresAt"}
    )


def notification_from_record(record: Mapping[str, Any]) -> Notification:
    """Rebuild the notification of a finished task (Succeeded or Failed) from its record."""
    return Notification(
        task_id=record["TaskId"],
        status=record["Status"],
        code=record.get("Code", ""),
        message=record.get("Message", ""),
        request_id=record.get("RequestId", ""),
        start_time=record.get("StartTime", ""),
        end_time=record.get("EndTime", ""),
        sources=tuple(record.get("Sources", [])),
        outputs=tuple(record.get("Outputs", [])),
        warnings=tuple(record.get("Warnings", [])),
        user_data=record.get("UserData"),
        compositions=tuple(record.get("Compositions", [])),
    )

"""End-of-task notifications (README: Events handled) to SNS topics or SQS queues on the allow-lists.

Allow-list entries (``ALLOWED_TOPICS`` / ``ALLOWED_QUEUES``) and request targets may be written as
names, ARNs or (queues) URLs. Both sides are normalised to one canonical form before comparing:

- topics: the topic ARN (a bare name means the topic of that name in the function's own account
  and region);
- queues: ``(account, name)`` (a bare name means the function's own account; a URL or an ARN
  carries its account), so ``https://sqs.us-east-1.amazonaws.com/123/q``, the moto or LocalStack
  URL of the same queue, ``arn:aws:sqs:us-east-1:123:q`` and ``q`` all compare equal.

The check happens before any message is sent and needs no request except, for bare names, one STS
call to learn the account id (skipped when the account id is given).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import urlparse

from vidsnap.aws.clients import Clients, mapped_errors, topic_arn
from vidsnap.core.errors import BadRequest, NotAllowed
from vidsnap.core.plan import NotifyTarget, report_ms

if TYPE_CHECKING:
    from fractions import Fraction

    from vidsnap.aws.settings import Settings

TASK_TYPE = "VideoSnapshots"
Status = Literal["Succeeded", "Failed", "Running"]
#: ``Running`` is never sent: it is what a worker answers for a task it handed to the state
#: machine (docs/LONG_TASKS.md, fan-out); the merge step sends the task's one notification.
STATUSES: tuple[Status, ...] = ("Succeeded", "Failed", "Running")


class OutputLike(Protocol):
    """What :meth:`Notification.build` needs of an output (``engine.Output`` has it)."""

    @property
    def uri(self) -> str: ...
    @property
    def time_ms(self) -> Fraction: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def size(self) -> int: ...


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with milliseconds and a ``Z`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CompositionLike(Protocol):
    """What :func:`composition_entry` needs of a composition (``writer.Composition`` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def times_ms(self) -> Sequence[Fraction]: ...
    @property
    def tiles(self) -> Sequence[Any]: ...
    @property
    def frame_ms(self) -> Fraction | None: ...


#: ``Compositions[].Type`` of each kind of composition.
COMPOSITION_TYPES = {"sprite": "Sprite", "track": "WebVTT", "animation": "Animation"}


def composition_entry(made: CompositionLike) -> dict[str, Any]:
    """One ``Compositions[]`` entry (README: Compositions): its type, URI, size and the time of every
    frame in it; a sheet also says where each tile is, an animation how long each frame shows."""
    entry: dict[str, Any] = {"Type": COMPOSITION_TYPES[made.kind], "URI": made.uri, "Bytes": made.size}
    if made.kind == "sprite":
        entry.update(Width=made.width, Height=made.height)
        entry["Tiles"] = [
            {"TimeMs": report_ms(t.time_ms), "X": t.x, "Y": t.y, "Width": t.width, "Height": t.height}
            for t in made.tiles
        ]
        return entry
    entry["TimesMs"] = [report_ms(t) for t in made.times_ms]
    if made.kind == "animation":
        entry.update(Width=made.width, Height=made.height)
        entry["FrameMs"] = report_ms(made.frame_ms) if made.frame_ms is not None else None
    return entry


def output_entry(output: OutputLike) -> dict[str, Any]:
    """One ``Outputs[]`` entry: ``{"URI","TimeMs","Width","Height","Bytes"}``."""
    return {
        "URI": output.uri,
        "TimeMs": report_ms(output.time_ms),
        "Width": output.width,
        "Height": output.height,
        "Bytes": output.size,
    }


@dataclass(frozen=True)
class Notification:
    """The documented end-of-task message (README: Events handled), one field per key.

    Times are RFC 3339 strings and outputs ``Outputs[]`` entries, as sent and as stored in a task
    record, so a stored result rebuilds the very message that was sent. Frozen: a change (a warning
    added after a failed send) makes a new notification with :meth:`with_warning`.
    """

    task_id: str
    status: Status
    code: str
    message: str
    request_id: str
    start_time: str
    end_time: str
    sources: tuple[str, ...] = ()
    outputs: tuple[Mapping[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    user_data: str | None = None
    compositions: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @classmethod
    def build(
        cls,
        task_id: str,
        status: str,
        *,
        code: str,
        message: str,
        request_id: str,
        start: datetime,
        end: datetime,
        sources: Sequence[str],
        outputs: Sequence[OutputLike | Mapping[str, Any]],
        warnings: Sequence[str],
        user_data: str | None,
        compositions: Sequence[CompositionLike | Mapping[str, Any]] = (),
    ) -> Notification:
        """A notification from engine outputs and compositions (or their entries) and datetimes.

        Raises ValueError for a status other than ``Succeeded`` / ``Failed``.
        """
        return cls(
            task_id=task_id,
            status=cast("Status", status),
            code=code,
            message=message,
            request_id=request_id,
            start_time=rfc3339(start),
            end_time=rfc3339(end),
            sources=tuple(sources),
            outputs=tuple(dict(o) if isinstance(o, Mapping) else output_entry(o) for o in outputs),
            warnings=tuple(warnings),
            user_data=user_data,
            compositions=tuple(
                dict(c) if isinstance(c, Mapping) else composition_entry(c) for c in compositions
            ),
        )

    def with_warning(self, warning: str) -> Notification:
        """The same notification with ``warning`` added to its warnings."""
        return dataclasses.replace(self, warnings=(*self.warnings, warning))

    def as_message(self) -> dict[str, Any]:
        """The message as JSON types, exactly the documented keys in the documented order.

        A task that composed (sprites, tracks, animations) also reports ``Count`` (single images),
        ``TileCount`` (sprite sheets) and ``Compositions``, after ``Outputs``.
        """
        message: dict[str, Any] = {
            "TaskId": self.task_id,
            "TaskType": TASK_TYPE,
            "Status": self.status,
            "Code": self.code,
            "Message": self.message,
            "RequestId": self.request_id,
            "StartTime": self.start_time,
            "EndTime": self.end_time,
            "Sources": [{"URI": uri} for uri in self.sources],
            "Outputs": [dict(o) for o in self.outputs],
            "Warnings": list(self.warnings),
            "UserData": self.user_data,
        }
        if not self.compositions:
            return message
        ordered: dict[str, Any] = {}
        for key, value in message.items():
            ordered[key] = value
            if key == "Outputs":
                ordered["Count"] = len(self.outputs)
                ordered["TileCount"] = sum(1 for c in self.compositions if c.get("Type") == "Sprite")
                ordered["Compositions"] = [dict(c) for c in self.compositions]
        return ordered

    def to_json(self) -> str:
        """The message as compact JSON (UTF-8 text, not ASCII-escaped): the body that is sent."""
        return json.dumps(self.as_message(), separators=(",", ":"), ensure_ascii=False)


def build_message(
    task_id: str,
    status: str,
    *,
    code: str,
    message: str,
    request_id: str,
    start: datetime,
    end: datetime,
    sources: Sequence[str],
    outputs: Sequence[OutputLike | Mapping[str, Any]],
    warnings: Sequence[str],
    user_data: str | None,
    compositions: Sequence[CompositionLike | Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The documented notification as a dict: :meth:`Notification.build`, then ``as_message()``.

    ``outputs`` are engine outputs or already-built ``Outputs[]`` dicts (from a task record).
    """
    return Notification.build(
        task_id,
        status,
        code=code,
        message=message,
        request_id=request_id,
        start=start,
        end=end,
        sources=sources,
        outputs=outputs,
        warnings=warnings,
        user_data=user_data,
        compositions=compositions,
    ).as_message()


class Notifier:
    """Sends notifications to allow-listed SNS topics and SQS queues."""

    def __init__(
        self,
        clients: Clients,
        settings: Settings,
        *,
        region: str | None = None,
        account_id: str | None = None,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self._region = region
        self._account_id = account_id
        self._queue_urls: dict[tuple[str, str], str] = {}

    @property
    def region(self) -> str:
        """The function's own region (topic names resolve there)."""
        return self._region or self.clients.region

    @property
    def account_id(self) -> str:
        """The function's own account (topic and queue names resolve there)."""
        if self._account_id is None:
            with mapped_errors("sts:GetCallerIdentity"):
                self._account_id = self.clients.account_id
        return self._account_id

    # -- canonical forms --------------------------------------------------------------------

    def _topic_key(self, target: str) -> str:
        if target.startswith("arn:"):
            parts = target.split(":")
            if len(parts) != 6 or parts[2] != "sns" or not parts[5]:
                raise BadRequest(f"notify: {target!r} is not an SNS topic ARN", param="topic")
            return target
        if not target or "/" in target or ":" in target:
            raise BadRequest(f"notify: {target!r} is not an SNS topic name or ARN", param="topic")
        return topic_arn(target, region=self.region, account_id=self.account_id)

    def _queue_key(self, target: str) -> tuple[str, str]:
        if target.startswith(("https://", "http://")):
            path = [p for p in urlparse(target).path.split("/") if p]
            if len(path) != 2:
                raise BadRequest(f"notify: {target!r} is not an SQS queue URL", param="queue")
            return path[0], path[1]
        if target.startswith("arn:"):
            parts = target.split(":")
            if len(parts) != 6 or parts[2] != "sqs" or not parts[5]:
                raise BadRequest(f"notify: {target!r} is not an SQS queue ARN", param="queue")
            return parts[4], parts[5]
        if not target or "/" in target or ":" in target:
            raise BadRequest(f"notify: {target!r} is not an SQS queue name, URL or ARN", param="queue")
        return self.account_id, target

    def check(self, target: NotifyTarget) -> None:
        """Raise :class:`NotAllowed` unless ``target`` is on its allow-list (no message is sent)."""
        if target.kind == "sns":
            arn = self._topic_key(target.target)
            allowed = {self._topic_key(entry) for entry in self.settings.allowed_topics}
            if arn not in allowed:
                raise NotAllowed(f"notify: topic {target.target!r} is not on ALLOWED_TOPICS", param="topic")
        elif target.kind == "sqs":
            key = self._queue_key(target.target)
            allowed_queues = {self._queue_key(entry) for entry in self.settings.allowed_queues}
            if key not in allowed_queues:
                raise NotAllowed(f"notify: queue {target.target!r} is not on ALLOWED_QUEUES", param="queue")
            # Remember a URL given on the allow-list: it saves a GetQueueUrl later.
            for entry in self.settings.allowed_queues:
                if entry.startswith(("https://", "http://")) and self._queue_key(entry) == key:
                    self._queue_urls.setdefault(key, entry)
        else:  # pragma: no cover - NotifyTarget.kind is a Literal
            raise BadRequest(f"notify: unknown target kind {target.kind!r}")

    def resolve(self, target: NotifyTarget) -> tuple[str, str]:
        """Check ``target`` and return ``("sns", topic_arn)`` or ``("sqs", queue_url)``."""
        self.check(target)
        if target.kind == "sns":
            return "sns", self._topic_key(target.target)
        if target.target.startswith(("https://", "http://")):
            return "sqs", target.target
        account, name = self._queue_key(target.target)
        url = self._queue_urls.get((account, name))
        if url is None:
            url = self.queue_url(target.target, account, name)
            self._queue_urls[(account, name)] = url
        return "sqs", url

    def queue_url(self, target: str, account: str, name: str) -> str:
        """The URL of queue ``name`` of ``account``, built without asking SQS where possible.

        A queue URL is the SQS endpoint, the owner's account id and the queue name. Built from the
        endpoint the SQS client itself talks to (``https://sqs.{region}.amazonaws.com``, the right
        DNS suffix in every partition, or a moto/LocalStack endpoint), it needs no request and no
        ``sqs:GetQueueUrl`` permission, which the worker's policy grants only on its own
        notification queue. Only a queue ARN in another region is looked up with GetQueueUrl.
        """
        region = target.split(":")[3] if target.startswith("arn:") else ""
        endpoint = getattr(getattr(self.clients.sqs, "meta", None), "endpoint_url", None)
        if isinstance(endpoint, str) and endpoint and region in ("", self.clients.region):
            return f"{endpoint.rstrip('/')}/{account}/{name}"
        params: dict[str, Any] = {"QueueName": name}
        if account != self.account_id:
            params["QueueOwnerAWSAccountId"] = account
        with mapped_errors(f"sqs queue {name}"):
            return str(self.clients.sqs.get_queue_url(**params)["QueueUrl"])

    def send(self, target: NotifyTarget, notification: Notification) -> str:
        """Publish ``notification`` (JSON) to ``target``; return the SNS/SQS message id.

        ``Status`` and ``TaskType`` travel as String message attributes too, so subscribers can
        filter without parsing the body.
        """
        kind, address = self.resolve(target)
        body = notification.to_json()
        attributes = {
            "Status": {"DataType": "String", "StringValue": notification.status},
            "TaskType": {"DataType": "String", "StringValue": TASK_TYPE},
        }
        with mapped_errors(f"notify {address}"):
            if kind == "sns":
                response = self.clients.sns.publish(
                    TopicArn=address, Message=body, MessageAttributes=attributes
                )
            else:
                response = self.clients.sqs.send_message(
                    QueueUrl=address, MessageBody=body, MessageAttributes=attributes
                )
        return str(response.get("MessageId", ""))

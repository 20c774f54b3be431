"""Notifications (README) to SNS (read back through a subscribed SQS queue) and SQS; allow-lists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from moto import mock_aws

from vidsnap.aws.clients import Clients
from vidsnap.aws.notify import Notification, Notifier, build_message, rfc3339
from vidsnap.aws.settings import Settings
from vidsnap.core.errors import BadRequest, NotAllowed, NotFound
from vidsnap.core.plan import NotifyTarget

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
KEYS = [
    "TaskId", "TaskType", "Status", "Code", "Message", "RequestId", "StartTime", "EndTime",
    "Sources", "Outputs", "Warnings", "UserData",
]  # fmt: skip


class Out:
    """A stand-in for engine.Output (same attributes)."""

    def __init__(self, uri: str, time_ms: Fraction, width: int, height: int, size: int) -> None:
        self.uri, self.time_ms, self.width, self.height, self.size = uri, time_ms, width, height, size


def _message(status: str = "Succeeded") -> dict[str, Any]:
    return _note(status).as_message()


def _note(status: str = "Succeeded") -> Notification:
    start = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return Notification.build(
        "vs-abc",
        status,
        code="Success",
        message="2 frame(s) written",
        request_id="req-1",
        start=start,
        end=start + timedelta(seconds=2),
        sources=["s3://src/clip.mp4"],
        outputs=[
            Out("s3://out/clip/1.jpg", Fraction(0), 160, 90, 1234),
            Out("s3://out/clip/2.jpg", Fraction(1001, 3), 160, 90, 1300),
        ],
        warnings=["w"],
        user_data="ud",
    )


def test_build_message_has_exactly_the_spec_keys() -> None:
    msg = _message()
    assert list(msg) == KEYS
    assert msg["TaskType"] == "VideoSnapshots"
    assert msg["StartTime"] == "2025-01-02T03:04:05.678Z"
    assert msg["EndTime"] == "2025-01-02T03:04:07.678Z"
    assert msg["Sources"] == [{"URI": "s3://src/clip.mp4"}]
    assert msg["Outputs"] == [
        {"URI": "s3://out/clip/1.jpg", "TimeMs": 0, "Width": 160, "Height": 90, "Bytes": 1234},
        {"URI": "s3://out/clip/2.jpg", "TimeMs": 333.667, "Width": 160, "Height": 90, "Bytes": 1300},
    ]
    assert isinstance(msg["Outputs"][0]["TimeMs"], int)
    assert msg["Warnings"] == ["w"]
    assert msg["UserData"] == "ud"
    json.dumps(msg)  # serialisable as is


def test_build_message_accepts_record_dicts_and_rejects_bad_status() -> None:
    entry = {"URI": "s3://o/1.jpg", "TimeMs": 40, "Width": 1, "Height": 1, "Bytes": 3}
    now = datetime.now(UTC)
    msg = build_message(
        "t", "Failed", code="X", message="m", request_id="r", start=now, end=now,
        sources=[], outputs=[entry], warnings=[], user_data=None,
    )  # fmt: skip
    assert msg["Outputs"] == [entry]
    assert msg["UserData"] is None
    with pytest.raises(ValueError, match="status"):
        build_message(
            "t", "Done", code="X", message="m", request_id="r", start=now, end=now,
            sources=[], outputs=[], warnings=[], user_data=None,
        )  # fmt: skip


def test_build_message_is_the_notification_as_a_message() -> None:
    note = _note()
    start = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert build_message(
        "vs-abc", "Succeeded", code="Success", message="2 frame(s) written", request_id="req-1",
        start=start, end=start + timedelta(seconds=2), sources=["s3://src/clip.mp4"],
        outputs=[Out("s3://out/clip/1.jpg", Fraction(0), 160, 90, 1234),
                 Out("s3://out/clip/2.jpg", Fraction(1001, 3), 160, 90, 1300)],
        warnings=["w"], user_data="ud",
    ) == note.as_message()  # fmt: skip
    assert json.loads(note.to_json()) == note.as_message()
    assert "\\u" not in Notification.build(
        "t", "Failed", code="X", message="échec", request_id="r", start=start, end=start,
        sources=[], outputs=[], warnings=[], user_data=None,
    ).to_json()  # fmt: skip


def test_a_notification_is_changed_by_making_a_new_one() -> None:
    note = _note()
    warned = note.with_warning("notification failed: gone")
    assert warned.warnings == ("w", "notification failed: gone")
    assert note.warnings == ("w",)  # the original is untouched
    assert warned.as_message()["Warnings"] == ["w", "notification failed: gone"]
    with pytest.raises(ValueError, match="status"):
        Notification("t", "Done", "X", "m", "r", "", "")  # type: ignore[arg-type]


def test_rfc3339_is_utc_with_z() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2025, 6, 1, 12, 0, 0, tzinfo=plus2)) == "2025-06-01T10:00:00.000Z"
    assert rfc3339(datetime(2025, 6, 1, 12, 0, 0)) == "2025-06-01T12:00:00.000Z"  # naive = UTC


@pytest.fixture
def aws(aws_env: None) -> Iterator[Clients]:
    with mock_aws():
        yield Clients(region=REGION)


def _queue(clients: Clients, name: str) -> tuple[str, str]:
    url = clients.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _receive(clients: Clients, url: str) -> list[dict[str, Any]]:
    got = clients.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(got.get("Messages", []))


def test_sns_publish_read_back_through_a_subscribed_queue(aws: Clients) -> None:
    topic = aws.sns.create_topic(Name="done")["TopicArn"]
    url, arn = _queue(aws, "listener")
    aws.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    notifier = Notifier(aws, Settings(allowed_topics=frozenset({"done"})))
    assert notifier.resolve(NotifyTarget("sns", "done")) == ("sns", f"arn:aws:sns:{REGION}:{ACCOUNT}:done")
    message = _message()
    assert notifier.send(NotifyTarget("sns", "done"), _note())
    (got,) = _receive(aws, url)
    envelope = json.loads(got["Body"])
    assert envelope["Type"] == "Notification"
    assert json.loads(envelope["Message"]) == message
    assert envelope["MessageAttributes"]["Status"] == {"Type": "String", "Value": "Succeeded"}
    assert envelope["MessageAttributes"]["TaskType"] == {"Type": "String", "Value": "VideoSnapshots"}


def test_sns_by_arn_allowed_by_name_and_vice_versa(aws: Clients) -> None:
    topic = aws.sns.create_topic(Name="done")["TopicArn"]
    by_name = Notifier(aws, Settings(allowed_topics=frozenset({"done"})))
    by_name.check(NotifyTarget("sns", topic))
    by_arn = Notifier(aws, Settings(allowed_topics=frozenset({topic})))
    by_arn.check(NotifyTarget("sns", "done"))
    # Same name in another account is not "done" of ours.
    with pytest.raises(NotAllowed):
        by_name.check(NotifyTarget("sns", "arn:aws:sns:us-east-1:999999999999:done"))


def test_sqs_send_with_attributes(aws: Clients) -> None:
    url, _ = _queue(aws, "results")
    notifier = Notifier(aws, Settings(allowed_queues=frozenset({"results"})))
    assert notifier.resolve(NotifyTarget("sqs", "results")) == ("sqs", url)
    note = Notification("t", "Failed", "X", "m", "r", "2025-01-01T00:00:00.000Z", "2025-01-01T00:00:01.000Z")
    notifier.send(NotifyTarget("sqs", "results"), note)
    (got,) = _receive(aws, url)
    assert json.loads(got["Body"]) == note.as_message()
    assert json.loads(got["Body"])["TaskType"] == "VideoSnapshots"
    attrs = got["MessageAttributes"]
    assert attrs["Status"] == {"StringValue": "Failed", "DataType": "String"}
    assert attrs["TaskType"] == {"StringValue": "VideoSnapshots", "DataType": "String"}


def test_sqs_url_arn_and_name_forms_match(aws: Clients) -> None:
    url, arn = _queue(aws, "results")
    for allowed in ("results", url, arn):
        notifier = Notifier(aws, Settings(allowed_queues=frozenset({allowed})))
        for target in ("results", url, arn):
            assert notifier.resolve(NotifyTarget("sqs", target)) == ("sqs", url)


@pytest.mark.parametrize(
    "target",
    [
        NotifyTarget("sns", "other"),
        NotifyTarget("sqs", "other"),
        NotifyTarget("sqs", "https://sqs.us-east-1.amazonaws.com/999999999999/results"),
    ],
)
def test_refused_targets_send_nothing(aws: Clients, target: NotifyTarget) -> None:
    aws.sns.create_topic(Name="other")
    url, arn = _queue(aws, "other")
    aws.sns.subscribe(TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:other", Protocol="sqs", Endpoint=arn)
    notifier = Notifier(
        aws, Settings(allowed_topics=frozenset({"done"}), allowed_queues=frozenset({"results"}))
    )
    with pytest.raises(NotAllowed):
        notifier.send(target, _note())
    assert _receive(aws, url) == []


@pytest.mark.parametrize(
    "target",
    [
        NotifyTarget("sns", "arn:aws:sqs:us-east-1:1:q"),
        NotifyTarget("sns", "a/b"),
        NotifyTarget("sqs", "https://example.com/x"),
    ],
)
def test_malformed_targets_are_bad_requests(aws: Clients, target: NotifyTarget) -> None:
    with pytest.raises(BadRequest):
        Notifier(aws, Settings()).check(target)


def test_allowed_but_missing_queue_is_not_found(aws: Clients) -> None:
    notifier = Notifier(aws, Settings(allowed_queues=frozenset({"gone"})))
    with pytest.raises(NotFound):
        notifier.send(NotifyTarget("sqs", "gone"), _note("Failed"))


def test_explicit_account_and_region_skip_sts(aws: Clients) -> None:
    notifier = Notifier(
        aws, Settings(allowed_topics=frozenset({"t"})), region="eu-west-1", account_id="111122223333"
    )
    assert notifier.resolve(NotifyTarget("sns", "t")) == ("sns", "arn:aws:sns:eu-west-1:111122223333:t")
    assert "sts" not in vars(aws)  # the STS client was never created


def test_clients_are_created_lazily_and_cached(aws: Clients) -> None:
    fresh = Clients(region=REGION)
    assert not {"s3", "sns", "sqs", "sts", "dynamodb", "dynamodb_client"} & set(vars(fresh))
    assert fresh.s3 is fresh.s3
    assert fresh.s3.meta.config.signature_version == "s3v4"
    assert fresh.s3.meta.config.retries["mode"] == "standard"
    assert set(vars(fresh)) & {"s3", "sns"} == {"s3"}
    assert fresh.account_id == ACCOUNT  # from STS, once
    assert Clients(account_id="111122223333").account_id == "111122223333"


def test_arn_helpers() -> None:
    from vidsnap.aws.clients import account_from_arn, partition_for, topic_arn

    arn = "arn:aws:lambda:eu-west-1:111122223333:function:vidsnap-async"
    assert account_from_arn(arn) == "111122223333"
    assert account_from_arn(None) is None
    assert account_from_arn("not-an-arn") is None
    assert partition_for("cn-north-1") == "aws-cn"
    assert topic_arn("t", region="us-gov-west-1", account_id="1") == "arn:aws-us-gov:sns:us-gov-west-1:1:t"

"""Raw event shapes -> UploadEvent / task bodies, including keys that need URL-decoding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from vidsnap.aws.events import UploadEvent, classify_message, is_upload_shape, uploads_from_event

KEY = "my clip+1.mp4"
ENCODED = "my+clip%2B1.mp4"  # how S3 notifications spell KEY
EXPECTED = UploadEvent("src", KEY, "v1", "d41d8cd98f00b204e9800998ecf8427e", 1234)


def s3_notification(key: str = ENCODED, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2025-01-01T00:00:00.000Z",
                "eventName": event,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "upload",
                    "bucket": {"name": "src", "arn": "arn:aws:s3:::src"},
                    "object": {
                        "key": key,
                        "size": 1234,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "versionId": "v1",
                        "sequencer": "0A1B2C3D4E5F678901",
                    },
                },
            }
        ]
    }


def sns_envelope(message: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Subject": "Amazon S3 Notification",
        "Message": message,
        "Timestamp": "2025-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
    }


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"id-{i}",
                "receiptHandle": "rh",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tasks",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def eventbridge(key: str = KEY, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::src"],
        "detail": {
            "version": "0",
            "bucket": {"name": "src"},
            "object": {
                "key": key,
                "size": 1234,
                "etag": "d41d8cd98f00b204e9800998ecf8427e",
                "version-id": "v1",
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def test_direct_s3_notification_decodes_the_key() -> None:
    assert uploads_from_event(s3_notification()) == [EXPECTED]


def test_s3_notification_in_an_sqs_record() -> None:
    assert uploads_from_event(sqs_event(json.dumps(s3_notification()))) == [EXPECTED]


def test_sns_envelope_in_sqs_and_raw_delivery() -> None:
    wrapped = json.dumps(sns_envelope(json.dumps(s3_notification())))
    assert uploads_from_event(sqs_event(wrapped)) == [EXPECTED]  # SNS -> SQS, not raw
    assert uploads_from_event(sqs_event(json.dumps(s3_notification()))) == [EXPECTED]  # raw delivery
    assert classify_message(wrapped) == [EXPECTED]


def test_sns_lambda_record() -> None:
    event = {"Records": [{"EventSource": "aws:sns", "Sns": sns_envelope(json.dumps(s3_notification()))}]}
    assert uploads_from_event(event) == [EXPECTED]


def test_eventbridge_keys_are_not_decoded() -> None:
    assert uploads_from_event(eventbridge()) == [EXPECTED]
    # A literal '+' or '%' in an EventBridge key is the key itself.
    assert uploads_from_event(eventbridge("a+b%2B.mp4"))[0].key == "a+b%2B.mp4"
    assert uploads_from_event(sqs_event(json.dumps(eventbridge()))) == [EXPECTED]
    assert uploads_from_event(eventbridge(detail_type="Object Deleted")) == []


def test_test_events_deletions_and_junk_are_ignored() -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-01-01T00:00:00.000Z",
        "Bucket": "src",
        "RequestId": "r",
        "HostId": "h",
    }
    assert uploads_from_event(test_event) == []
    assert classify_message(json.dumps(test_event)) == []
    assert uploads_from_event(s3_notification(event="ObjectRemoved:Delete")) == []
    assert uploads_from_event({}) == []
    assert uploads_from_event({"Records": "nope"}) == []
    assert uploads_from_event(sqs_event("not json", "[1, 2]")) == []


def test_several_records() -> None:
    event = s3_notification()
    event["Records"].append(s3_notification("other%2Fdir/b+c.mov")["Records"][0])
    assert [u.key for u in uploads_from_event(event)] == [KEY, "other/dir/b c.mov"]


def test_missing_optional_fields() -> None:
    event = s3_notification()
    obj = event["Records"][0]["s3"]["object"]
    for name in ("versionId", "eTag", "size"):
        del obj[name]
    assert uploads_from_event(event) == [UploadEvent("src", KEY)]


@pytest.mark.parametrize(
    "body",
    [
        "video/snapshots,f_jpg,inter_1000|sys/saveas,o_b3V0",
        json.dumps({"Bucket": "src", "Key": "a.mp4", "Process": "video/snapshots,f_jpg"}),
        json.dumps({"Sources": [{"URI": "s3://src/a.mp4"}], "Targets": []}),
        json.dumps({"Input": {"Bucket": "src", "Object": "a.mp4"}, "SnapshotConfig": {}}),
    ],
)
def test_task_bodies_are_returned_as_is(body: str) -> None:
    assert classify_message(body) == body
    assert not is_upload_shape(json.loads(body) if body.startswith("{") else body)


def test_a_task_published_through_sns_is_unwrapped() -> None:
    task = json.dumps({"Bucket": "src", "Key": "a.mp4", "Process": "video/snapshots,f_jpg"})
    assert classify_message(json.dumps(sns_envelope(task))) == task


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


def test_a_real_notification_from_moto(aws: None) -> None:
    """S3 -> SQS as moto sends it: the encoded key decodes back to the uploaded one."""
    s3 = boto3.client("s3", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket="src")
    s3.put_bucket_notification_configuration(
        Bucket="src",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket="src", Key=KEY, Body=b"abc")
    bodies = [
        m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]
    uploads = [u for body in bodies for u in (classify_message(body) or [])]
    assert [(u.bucket, u.key, u.size) for u in uploads if isinstance(u, UploadEvent)] == [("src", KEY, 3)]


def test_the_bounded_json_loader_lives_in_the_core() -> None:
    from vidsnap.aws import events
    from vidsnap.core import jsonload

    assert events.load_json is jsonload.load_json
    assert events.JSONTooDeep is jsonload.JSONTooDeep
    assert events.MAX_JSON_DEPTH == jsonload.MAX_JSON_DEPTH
    assert jsonload.load_json('{"a": [1]}') == {"a": [1]}
    with pytest.raises(jsonload.JSONTooDeep):
        jsonload.load_json("[" * (jsonload.MAX_JSON_DEPTH + 1) + "]" * (jsonload.MAX_JSON_DEPTH + 1))

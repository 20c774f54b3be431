"""functions/async_snapshots/app.py end to end on moto: uploads in every envelope, SQS task batches
with partial failures, idempotent redelivery, allow-lists."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

import vidsnap.aws.worker
from vidsnap.aws.settings import get_settings
from vidsnap.aws.taskstore import create_table
from vidsnap.core.errors import Throttled

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
CLIP = "videos/clip.mp4"
UPLOAD = "videos/my clip+1.mp4"  # what events/s3-put.json's "videos/my+clip%2B1.mp4" decodes to
EVENT_ETAG = "d41d8cd98f00b204e9800998ecf8427e"  # the placeholder ETag in the sample events

Loader = Callable[[], ModuleType]
Context = Callable[[], Any]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


UPLOAD_PROCESS = f"video/snapshots,f_jpg,m_avg,num_3,w_80|notify,topic_{b64('vidsnap-notify')}"


@pytest.fixture
def load_handler(load_function: Callable[[str], ModuleType]) -> Loader:
    """A fresh copy of the function module (cold start), imported from its file."""
    return functools.partial(load_function, "async_snapshots")


@pytest.fixture
def context(lambda_context: Callable[..., Any]) -> Context:
    """A new Lambda context of the async function for each call."""
    return functools.partial(
        lambda_context, "vidsnap-AsyncSnapshotsFunction", memory_limit_in_mb=3008, timeout_s=900
    )


@pytest.fixture
def aws(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, make_media: Callable[[str], Any]
) -> Iterator[dict[str, Any]]:
    env = {
        "SOURCE_BUCKET": "vidsnap-source",
        "OUTPUT_BUCKET": "vidsnap-output",
        "ALLOWED_TOPICS": "vidsnap-notify",
        "ALLOWED_QUEUES": "vidsnap-notify-queue",
        "TASK_TABLE": "vidsnap-tasks",
        "UPLOAD_RULES": json.dumps([{"prefix": "videos/", "suffix": ".mp4", "process": UPLOAD_PROCESS}]),
        "POWERTOOLS_SERVICE_NAME": "vidsnap",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    data = Path(make_media("mp4_h264").path).read_bytes()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        for bucket in ("vidsnap-source", "vidsnap-output", "vidsnap-other"):
            s3.create_bucket(Bucket=bucket)
        etags = {
            key: s3.put_object(Bucket="vidsnap-source", Key=key, Body=data)["ETag"].strip('"')
            for key in (CLIP, UPLOAD)
        }
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "vidsnap-tasks")
        topic = sns.create_topic(Name="vidsnap-notify")["TopicArn"]
        inbox = sqs.create_queue(QueueName="notify-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"}
        )
        notify_queue = sqs.create_queue(QueueName="vidsnap-notify-queue")["QueueUrl"]
        yield {"s3": s3, "sqs": sqs, "etags": etags, "inbox": inbox, "notify_queue": notify_queue}
    get_settings.cache_clear()


def event(name: str, aws: dict[str, Any]) -> dict[str, Any]:
    """A sample event with its placeholder ETag replaced by the real one of the uploaded object."""
    text = (EVENTS / name).read_text().replace(EVENT_ETAG, aws["etags"][UPLOAD])
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def outputs(aws: dict[str, Any], bucket: str = "vidsnap-output") -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def drain(aws: dict[str, Any], queue: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        got = aws["sqs"].receive_message(QueueUrl=aws[queue], MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return messages
        for m in got:
            messages.append(json.loads(m["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws[queue], ReceiptHandle=m["ReceiptHandle"])


def task_record(task_id: str) -> dict[str, Any] | None:
    item = (
        boto3.resource("dynamodb", region_name="us-east-1")
        .Table("vidsnap-tasks")
        .get_item(Key={"TaskId": task_id})
    )
    record: dict[str, Any] | None = item.get("Item")
    return record


def sqs_batch(*bodies: str) -> dict[str, Any]:
    template = json.loads((EVENTS / "sqs-task-batch.json").read_text())["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        records.append({**template, "messageId": f"msg-{i}", "body": body})
    return {"Records": records}


def oss_task(key: str, process: str) -> str:
    return json.dumps({"Bucket": "vidsnap-source", "Key": key, "Process": process})


# -- uploads ---------------------------------------------------------------------------------------


EXPECTED_UPLOAD_OUTPUTS = ["my clip+1/1.jpg", "my clip+1/2.jpg", "my clip+1/3.jpg"]


def test_direct_s3_put_end_to_end_and_redelivery(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    handler = load_handler().handler
    result = handler(event("s3-put.json", aws), context())
    assert result == {"uploads": 1}
    assert outputs(aws) == EXPECTED_UPLOAD_OUTPUTS
    (note,) = drain(aws, "inbox")
    assert note["Status"] == "Succeeded"
    assert note["TaskType"] == "VideoSnapshots"
    assert note["Sources"] == [{"URI": f"s3://vidsnap-source/{UPLOAD}"}]
    assert [o["URI"] for o in note["Outputs"]] == [
        f"s3://vidsnap-output/{k}" for k in EXPECTED_UPLOAD_OUTPUTS
    ]
    assert task_record(note["TaskId"])["Status"] == "Succeeded"  # type: ignore[index]
    # Redelivered (same event again, a new cold start too): one task, no new outputs or notification.
    load_handler().handler(event("s3-put.json", aws), context())
    handler(event("s3-put.json", aws), context())
    assert outputs(aws) == EXPECTED_UPLOAD_OUTPUTS
    assert drain(aws, "inbox") == []


@pytest.mark.parametrize("name", ["sqs-s3-put.json", "sns-sqs-s3-put.json"])
def test_upload_through_sqs_envelopes(
    aws: dict[str, Any], name: str, load_handler: Loader, context: Context
) -> None:
    result = load_handler().handler(event(name, aws), context())
    assert result == {"batchItemFailures": []}
    assert outputs(aws) == EXPECTED_UPLOAD_OUTPUTS
    assert len(drain(aws, "inbox")) == 1


def test_upload_through_eventbridge(aws: dict[str, Any], load_handler: Loader, context: Context) -> None:
    assert load_handler().handler(event("eventbridge-s3.json", aws), context()) == {"uploads": 1}
    assert outputs(aws) == EXPECTED_UPLOAD_OUTPUTS
    assert len(drain(aws, "inbox")) == 1


def test_every_envelope_of_one_upload_is_one_task(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    handler = load_handler().handler
    for name in ("s3-put.json", "sqs-s3-put.json", "sns-sqs-s3-put.json", "eventbridge-s3.json"):
        handler(event(name, aws), context())
    assert outputs(aws) == EXPECTED_UPLOAD_OUTPUTS
    assert len(drain(aws, "inbox")) == 1


def test_s3_test_event_and_unmatched_upload_are_ignored(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    handler = load_handler().handler
    assert handler(event("sqs-s3-test-event.json", aws), context()) == {"batchItemFailures": []}
    other = event("s3-put.json", aws)
    other["Records"][0]["s3"]["object"]["key"] = "docs/readme.txt"
    assert handler(other, context()) == {"uploads": 1}
    assert outputs(aws) == []
    assert drain(aws, "inbox") == []


# -- task batches ----------------------------------------------------------------------------------


def test_task_batch_oss_imm_and_malformed(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    result = load_handler().handler(json.loads((EVENTS / "sqs-task-batch.json").read_text()), context())
    # The malformed body is a permanent failure: dropped (logged), not retried, not listed.
    assert result == {"batchItemFailures": []}
    assert outputs(aws) == ["imm/clip-1.png", "imm/clip-2.png", "oss/clip_1.jpg", "oss/clip_2.jpg"]


@pytest.fixture
def throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening ``videos/throttled.mp4`` is throttled (a transient failure)."""
    real = vidsnap.aws.worker.open_s3

    def open_s3(client: Any, bucket: str, key: str, **kw: Any) -> Any:
        if key == "videos/throttled.mp4":
            raise Throttled("SlowDown: please reduce your request rate")
        return real(client, bucket, key, **kw)

    monkeypatch.setattr(vidsnap.aws.worker, "open_s3", open_s3)


def test_transient_failure_is_listed_permanent_is_not(
    aws: dict[str, Any], throttle: None, load_handler: Loader, context: Context
) -> None:
    aws["s3"].put_object(Bucket="vidsnap-source", Key="videos/throttled.mp4", Body=b"x")
    aws["s3"].put_object(Bucket="vidsnap-source", Key="videos/notes.mp4", Body=b"not a video " * 40)
    queue = f"queue_{b64('vidsnap-notify-queue')}"
    batch = sqs_batch(
        oss_task(CLIP, f"video/snapshots,f_jpg,num_1|sys/saveas,o_{b64('good/{index}.jpg')}"),
        oss_task("videos/throttled.mp4", "video/snapshots,f_jpg,num_1"),
        oss_task("videos/notes.mp4", f"video/snapshots,f_jpg,num_1|notify,{queue}"),
        "not json at all {",
    )
    result = load_handler().handler(batch, context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert outputs(aws) == ["good/1.jpg"]
    (failed,) = drain(aws, "notify_queue")  # the undecodable source: Failed, notified, not retried
    assert failed["Status"] == "Failed"
    assert failed["Code"] == "UnsupportedMediaType"
    assert failed["Outputs"] == []


def test_all_failed_batch_still_answers_the_list(
    aws: dict[str, Any], throttle: None, load_handler: Loader, context: Context
) -> None:
    aws["s3"].put_object(Bucket="vidsnap-source", Key="videos/throttled.mp4", Body=b"x")
    batch = sqs_batch(
        oss_task("videos/throttled.mp4", "video/snapshots,f_jpg,num_1"),
        oss_task("videos/throttled.mp4", "video/snapshots,f_png,num_1"),
    )
    result = load_handler().handler(batch, context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}


def test_redelivered_task_message_runs_once(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    queue = f"queue_{b64('vidsnap-notify-queue')}"
    body = oss_task(
        CLIP, f"video/snapshots,f_jpg,m_avg,num_2|sys/saveas,o_{b64('re/{index}.jpg')}/notify,{queue}"
    )
    handler = load_handler().handler
    assert handler(sqs_batch(body), context()) == {"batchItemFailures": []}
    assert handler(sqs_batch(body, body), context()) == {"batchItemFailures": []}
    assert outputs(aws) == ["re/1.jpg", "re/2.jpg"]
    notes = drain(aws, "notify_queue")
    assert [n["Status"] for n in notes] == ["Succeeded"]


def test_saveas_to_a_bucket_not_allowed_fails_and_writes_nothing(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    queue = f"queue_{b64('vidsnap-notify-queue')}"
    body = oss_task(
        CLIP,
        f"video/snapshots,f_jpg,num_2|sys/saveas,b_{b64('vidsnap-other')},o_{b64('x/{index}.jpg')}/notify,{queue}",
    )
    assert load_handler().handler(sqs_batch(body), context()) == {"batchItemFailures": []}
    assert outputs(aws, "vidsnap-other") == []
    assert outputs(aws) == []
    (note,) = drain(aws, "notify_queue")
    assert note["Status"] == "Failed"
    assert note["Code"] == "AccessDenied"
    assert task_record(note["TaskId"])["Status"] == "Failed"  # type: ignore[index]

"""The async worker end to end on moto: real video, real engine, S3 + SNS/SQS + DynamoDB."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from vidsnap.aws import worker as worker_module
from vidsnap.aws.clients import Clients
from vidsnap.aws.events import UploadEvent
from vidsnap.aws.observe import metrics_enabled
from vidsnap.aws.settings import Settings, UploadRule
from vidsnap.aws.storage import OUTPUT_MARKER
from vidsnap.aws.taskstore import TaskStore, create_table
from vidsnap.aws.worker import TaskRunning, Worker
from vidsnap.core.errors import Throttled, UndecodableMedia
from vidsnap.core.lang import parse_process
from vidsnap.core.plan import SourceRef, resolve_source, task_id

engine = pytest.importorskip(
    "vidsnap.core.engine", reason="vidsnap.core.engine (the real engine) is not available yet"
)
parse = pytest.importorskip("vidsnap.core.lang", reason="vidsnap.core.lang is not available yet")

ACCOUNT, REGION = "123456789012", "us-east-1"
KEY = "videos/my clip+1.mp4"


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def process(
    *, bucket: str | None = None, topic: str | None = "done", queue: str | None = None, extra: str = ""
) -> str:
    text = f"video/snapshots,f_jpg,inter_1000{extra}|sys/saveas,o_{b64('{barename}/{index}.{autoext}')}"
    if bucket:
        text += f",b_{b64(bucket)}"
    if topic:
        text += f"/notify,topic_{b64(topic)}"
    elif queue:
        text += f"/notify,queue_{b64(queue)}"
    return text


@dataclass
class Env:
    clients: Clients
    settings: Settings
    listener: str  # SQS queue subscribed to the "done" topic
    results: str  # SQS queue "results"
    video: bytes

    def worker(self, **kw: Any) -> Worker:
        return Worker(self.settings, self.clients, **kw)

    def upload(self, key: str = KEY, body: bytes | None = None, **kw: Any) -> UploadEvent:
        put = self.clients.s3.put_object(
            Bucket="src", Key=key, Body=self.video if body is None else body, **kw
        )
        return UploadEvent("src", key, None, put["ETag"].strip('"'), None)

    def notifications(self, queue: str | None = None) -> list[dict[str, Any]]:
        url = queue or self.listener
        got = self.clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        out = []
        for m in got.get("Messages", []):
            self.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            body = json.loads(m["Body"])
            out.append(json.loads(body["Message"]) if body.get("Type") == "Notification" else body)
        return out

    def keys(self, bucket: str) -> list[str]:
        return sorted(o["Key"] for o in self.clients.s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    def record(self, tid: str) -> dict[str, Any]:
        record = TaskStore(self.clients, "tasks").get(tid)
        assert record is not None
        return record


@pytest.fixture(scope="module")
def video(make_media: Any) -> bytes:
    """A 3 s 160x90 H.264 MP4 from vidsnap.local.synth (frames at 0, 1000, 2000 ms for inter_1000)."""
    return Path(make_media("mp4_h264").path).read_bytes()


@pytest.fixture
def env(aws_env: None, video: bytes) -> Iterator[Env]:
    with mock_aws():
        clients = Clients(region=REGION)
        for bucket in ("src", "out", "extra", "forbidden"):
            clients.s3.create_bucket(Bucket=bucket)
        topic = clients.sns.create_topic(Name="done")["TopicArn"]
        listener = clients.sqs.create_queue(QueueName="listener")["QueueUrl"]
        arn = clients.sqs.get_queue_attributes(QueueUrl=listener, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        results = clients.sqs.create_queue(QueueName="results")["QueueUrl"]
        create_table(clients.dynamodb_client, "tasks")
        settings = Settings(
            source_bucket="src",
            output_bucket="out",
            allowed_output_buckets=frozenset({"extra"}),
            allowed_topics=frozenset({"done"}),
            allowed_queues=frozenset({"results"}),
            task_table="tasks",
            upload_rules=(UploadRule("videos/", ".mp4", process()),),
            max_frames=50,
        )
        settings.validate_rules(parse_process)
        yield Env(clients, settings, listener, results, video)


def s3_event(upload: UploadEvent) -> str:
    from urllib.parse import quote_plus

    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": upload.bucket},
            "object": {"key": quote_plus(upload.key), "eTag": upload.etag},
        },
    }
    return json.dumps({"Records": [record]})


def test_upload_end_to_end(env: Env) -> None:
    upload = env.upload()
    results = env.worker().handle_message(s3_event(upload), "req-1")
    assert len(results) == 1
    message = results[0]
    assert message["Status"] == "Succeeded", message
    assert message["TaskType"] == "VideoSnapshots"
    assert message["RequestId"] == "req-1"
    assert message["Sources"] == [{"URI": f"s3://src/{KEY}"}]
    assert [o["TimeMs"] for o in message["Outputs"]] == [0, 1000, 2000]
    assert [o["URI"] for o in message["Outputs"]] == [f"s3://out/my clip+1/{i}.jpg" for i in (1, 2, 3)]
    assert all((o["Width"], o["Height"]) == (160, 90) and o["Bytes"] > 0 for o in message["Outputs"])
    assert env.keys("out") == [f"my clip+1/{i}.jpg" for i in (1, 2, 3)]
    head = env.clients.s3.head_object(Bucket="out", Key="my clip+1/1.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"][OUTPUT_MARKER] == "1"
    assert env.notifications() == [message]  # exactly one notification, the same document
    record = env.record(message["TaskId"])
    assert record["Status"] == "Succeeded"
    assert record["Progress"] == 100
    assert record["Outputs"] == message["Outputs"]
    assert record["Notified"]


def test_redelivered_upload_is_one_task(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = env.upload()
    first = env.worker().handle_upload(upload, "req-1")
    assert first is not None
    assert first["Status"] == "Succeeded"
    assert len(env.notifications()) == 1

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a succeeded task was run again")

    monkeypatch.setattr(engine, "run_task", must_not_run)
    again = env.worker().handle_upload(upload, "req-2")
    assert again is not None
    assert again["TaskId"] == first["TaskId"]
    assert again["Outputs"] == first["Outputs"]
    assert again["RequestId"] == "req-1"  # the stored result, not a new run
    assert env.notifications() == []  # not re-notified


def test_a_task_running_elsewhere_is_retried_later(env: Env) -> None:
    upload = env.upload()
    task = parse.parse_task(process()).with_source(SourceRef(KEY, "src"))
    tid = task_id(SourceRef(KEY, "src"), upload.etag, task)
    assert TaskStore(env.clients, "tasks").begin(tid, {}, []) == "new"
    with pytest.raises(TaskRunning) as err:
        env.worker().handle_upload(upload, "req-2")
    assert err.value.transient
    assert env.keys("out") == []
    assert env.notifications() == []


def test_a_reupload_is_a_new_task(env: Env) -> None:
    first = env.worker().handle_upload(env.upload(), "r1")
    second = env.worker().handle_upload(env.upload(body=env.video + b"\0"), "r2")
    assert first
    assert second
    assert first["TaskId"] != second["TaskId"]


def _run_task_message(env: Env, proc: str, key: str = KEY) -> dict[str, Any]:
    env.clients.s3.put_object(Bucket="src", Key=key, Body=env.video)
    body = json.dumps({"Bucket": "src", "Key": key, "Process": proc, "UserData": "ud"})
    (result,) = env.worker().handle_message(body, "req-9")
    return result


def test_task_message_to_a_queue(env: Env) -> None:
    message = _run_task_message(env, process(bucket="extra", topic=None, queue="results"))
    assert message["Status"] == "Succeeded"
    assert message["UserData"] == "ud"
    assert env.keys("extra") == [f"my clip+1/{i}.jpg" for i in (1, 2, 3)]
    assert env.notifications(env.results) == [message]
    assert env.notifications() == []


def test_task_id_matches_what_the_http_surface_computes(env: Env) -> None:
    """httpapp: task_id(SourceRef(key, SOURCE_BUCKET), HEAD etag, task.with_source(source))."""
    proc = process()
    message = _run_task_message(env, proc)
    etag = env.clients.s3.head_object(Bucket="src", Key=KEY)["ETag"]
    task = parse.parse_task({"Bucket": "src", "Key": KEY, "Process": proc, "UserData": "ud"})
    source = resolve_source(task, env.settings.source_bucket)
    assert message["TaskId"] == task_id(source, etag, task.with_source(source))


@pytest.mark.parametrize(
    ("proc", "code", "notified"),
    [
        (process(bucket="forbidden"), "AccessDenied", True),  # save-as bucket off the allow-list
        (process(topic="elsewhere"), "AccessDenied", False),  # the notify target itself is refused
        (process(extra=",num_51"), "InvalidArgument", True),  # above MAX_FRAMES
    ],
)
def test_refusals_happen_before_decoding(
    env: Env, monkeypatch: pytest.MonkeyPatch, proc: str, code: str, notified: bool
) -> None:
    monkeypatch.setattr(engine, "run_task", lambda *_a, **_k: pytest.fail("decoded a refused task"))
    message = _run_task_message(env, proc)
    assert (message["Status"], message["Code"], message["Outputs"]) == ("Failed", code, [])
    assert env.keys("out") == []
    assert env.keys("forbidden") == []
    assert env.notifications() == ([message] if notified else [])
    assert env.record(message["TaskId"])["Status"] == "Failed"


def test_source_outside_the_source_bucket_is_refused(env: Env) -> None:
    env.clients.s3.put_object(Bucket="extra", Key="a.mp4", Body=env.video)
    body = json.dumps({"Bucket": "extra", "Key": "a.mp4", "Process": process()})
    (message,) = env.worker().handle_message(body, "r")
    assert (message["Status"], message["Code"]) == ("Failed", "AccessDenied")
    assert env.notifications() == [message]


def test_missing_source_is_a_permanent_failure(env: Env) -> None:
    body = json.dumps({"Bucket": "src", "Key": "nope.mp4", "Process": process()})
    (message,) = env.worker().handle_message(body, "r")
    assert (message["Status"], message["Code"]) == ("Failed", "NoSuchKey")
    assert env.notifications() == [message]


def test_not_a_video_fails_permanently(env: Env) -> None:
    env.clients.s3.put_object(Bucket="src", Key="videos/junk.mp4", Body=b"this is not a video" * 100)
    body = json.dumps({"Bucket": "src", "Key": "videos/junk.mp4", "Process": process()})
    (message,) = env.worker().handle_message(body, "r")
    assert message["Status"] == "Failed"
    assert message["Code"] in ("UnsupportedMediaType", "MediaDecodeFailed")
    assert env.notifications() == [message]
    assert env.keys("out") == []


def test_partial_outputs_are_deleted_and_not_reported(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_fail(task: Any, source: Any, sink: Any, **_: Any) -> Any:
        sink.put(None, "my clip+1/1.jpg", b"one", "image/jpeg")
        sink.put(None, "my clip+1/2.jpg", b"two", "image/jpeg")
        raise UndecodableMedia("corrupt packet at 1500 ms")

    monkeypatch.setattr(engine, "run_task", half_then_fail)
    message = env.worker().handle_upload(env.upload(), "r")
    assert message is not None
    assert (message["Status"], message["Code"], message["Outputs"]) == ("Failed", "MediaDecodeFailed", [])
    assert env.keys("out") == []
    assert env.notifications() == [message]


def test_transient_failure_is_retried_and_then_succeeds(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = env.upload()
    real = engine.run_task

    def throttled(task: Any, source: Any, sink: Any, **_: Any) -> Any:
        sink.put(None, "my clip+1/1.jpg", b"one", "image/jpeg")
        raise Throttled("SlowDown")

    monkeypatch.setattr(engine, "run_task", throttled)
    with pytest.raises(Throttled):
        env.worker().handle_upload(upload, "r1")
    assert env.keys("out") == []
    assert env.notifications() == []
    task = parse.parse_task(process()).with_source(SourceRef(KEY, "src"))
    tid = task_id(SourceRef(KEY, "src"), upload.etag, task)
    record = env.record(tid)
    assert (record["Status"], record["LastCode"]) == ("Running", "ServiceUnavailable")
    monkeypatch.setattr(engine, "run_task", real)
    message = env.worker().handle_upload(upload, "r2")  # the SQS retry takes it over at once
    assert message is not None
    assert message["Status"] == "Succeeded"
    assert message["TaskId"] == tid
    assert len(env.notifications()) == 1


def test_botocore_throttling_while_reading_is_transient(env: Env) -> None:
    """S3 keeps throttling the range reads mid-decode (past the reader's retries): the error must
    surface as transient, not as bad media."""
    from botocore.exceptions import ClientError

    upload = env.upload()
    s3 = env.clients.s3
    real_get = s3.get_object

    calls = []

    def get_object(**kw: Any) -> Any:
        calls.append(kw["Range"])
        if len(calls) > 4:  # PyAV reads this small file in one go: throttle all 4 attempts of it
            return real_get(**kw)
        raise ClientError(
            {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"
        )

    class Store:
        def open(self, key: str) -> Any:
            from vidsnap.aws.s3io import open_s3

            return open_s3(
                type("C", (), {"head_object": s3.head_object, "get_object": staticmethod(get_object)})(),
                "src",
                key,
                block_size=1024,
                readahead=False,
            )

    with pytest.raises(Throttled):
        env.worker(store=Store()).handle_upload(upload, "r")
    assert len(calls) == 4
    assert env.notifications() == []


def test_previously_failed_task_runs_again(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = env.upload()
    monkeypatch.setattr(engine, "run_task", lambda *_a, **_k: (_ for _ in ()).throw(UndecodableMedia("x")))
    failed = env.worker().handle_upload(upload, "r1")
    assert failed is not None
    assert failed["Status"] == "Failed"
    monkeypatch.undo()
    ok = env.worker().handle_upload(upload, "r2")
    assert ok is not None
    assert ok["Status"] == "Succeeded"
    assert ok["TaskId"] == failed["TaskId"]
    assert [m["Status"] for m in env.notifications()] == ["Failed", "Succeeded"]
    assert env.record(ok["TaskId"])["Attempts"] == 2


@pytest.mark.parametrize(
    "key",
    ["_vidsnap/results/videos/x.mp4", "videos/frame.jpg", "videos/frame.PNG", "other/x.mp4", "videos/x.mkv"],
)
def test_uploads_that_must_not_trigger(env: Env, key: str) -> None:
    assert env.worker().handle_upload(env.upload(key), "r") is None
    assert env.keys("out") == []
    assert env.notifications() == []


def test_our_own_outputs_never_retrigger(env: Env) -> None:
    upload = env.upload(Metadata={OUTPUT_MARKER: "1"})
    assert env.worker().handle_upload(upload, "r") is None
    assert env.keys("out") == []


def test_bad_task_messages_fail_without_raising(env: Env) -> None:
    for body in (
        "video/snapshots,f_jpg",
        '{"Bucket": "src"}',
        "garbage",
        json.dumps({"Key": "a.mp4", "Process": "video/snapshot,t_1"}),
    ):
        (message,) = env.worker().handle_message(body, "r")
        assert message["Status"] == "Failed"
        assert message["Code"] in ("InvalidArgument", "NotSupported")
    assert env.notifications() == []


def test_s3_test_event_is_ignored(env: Env) -> None:
    assert env.worker().handle_message(json.dumps({"Event": "s3:TestEvent", "Bucket": "src"}), "r") == []


def test_worker_without_a_table_still_runs(env: Env) -> None:
    settings = Settings(**{**env.settings.__dict__, "task_table": None})
    message = Worker(settings, env.clients).handle_upload(env.upload(), "r")
    assert message is not None
    assert message["Status"] == "Succeeded"


def test_metrics_only_inside_lambda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert not metrics_enabled()
    worker_module._emit_metrics(3, 100, 12.5)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    assert metrics_enabled()
    worker_module._emit_metrics(3, 100, 12.5)
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (emf["FramesWritten"], emf["BytesRead"], emf["TaskLatencyMs"]) == ([3.0], [100.0], [12.5])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "vidsnap"
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert not metrics_enabled()


# -- the seams: the source allow-list, partial outputs, the invocation's clock, the notification --


class UndoSink:
    """A sink that keeps objects and records every delete (``fail_on``: URIs whose delete fails)."""

    def __init__(self, *, fail_on: frozenset[str] = frozenset()) -> None:
        self.objects: dict[str, bytes] = {}
        self.deletes: list[str] = []
        self.fail_on = fail_on

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:  # noqa: ARG002
        uri = f"mem://{bucket or 'out'}/{key}"
        self.objects[uri] = data
        return uri

    def delete(self, uri: str) -> None:
        self.deletes.append(uri)
        if uri in self.fail_on:
            raise OSError("delete refused")
        self.objects.pop(uri, None)


def test_the_source_bucket_check_applies_with_an_injected_store(env: Env, tmp_path: Path) -> None:
    """A store stands for SOURCE_BUCKET: a source elsewhere is refused before the store is asked."""
    from vidsnap.aws.storage import LocalStore

    (tmp_path / "a.mp4").write_bytes(env.video)
    opened: list[str] = []

    class Store(LocalStore):
        def open(self, key: str) -> Any:
            opened.append(key)
            return super().open(key)

    worker = env.worker(store=Store(tmp_path))
    body = json.dumps({"Bucket": "extra", "Key": "a.mp4", "Process": process(topic=None)})
    (refused,) = worker.handle_message(body, "r1")
    assert (refused["Status"], refused["Code"]) == ("Failed", "AccessDenied")
    assert "SOURCE_BUCKET" in refused["Message"]
    assert opened == []
    body = json.dumps({"Bucket": "src", "Key": "a.mp4", "Process": process(topic=None)})
    (ran,) = worker.handle_message(body, "r2")
    assert ran["Status"] == "Succeeded"
    assert opened == ["a.mp4"]


def test_partial_outputs_are_undone_once_each(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key written twice (a template without index) is deleted once; the engine's own error is kept."""

    def writes_then_fails(task: Any, source: Any, sink: Any, **_: Any) -> Any:
        for key in ("same.jpg", "same.jpg", "other.jpg"):
            sink.put(None, key, b"x", "image/jpeg")
        raise UndecodableMedia("corrupt packet at 1500 ms")

    monkeypatch.setattr(engine, "run_task", writes_then_fails)
    sink = UndoSink()
    message = env.worker(sink=sink).handle_upload(env.upload(), "r")
    assert message is not None
    assert (message["Status"], message["Code"], message["Outputs"]) == ("Failed", "MediaDecodeFailed", [])
    assert message["Message"] == "corrupt packet at 1500 ms"
    assert sink.deletes == ["mem://out/same.jpg", "mem://out/other.jpg"]
    assert sink.objects == {}


def test_outputs_that_could_not_be_undone_are_listed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def writes_then_breaks(task: Any, source: Any, sink: Any, **_: Any) -> Any:
        sink.put(None, "1.jpg", b"x", "image/jpeg")
        sink.put(None, "2.jpg", b"x", "image/jpeg")
        raise RuntimeError("a bug, not a VidsnapError")

    monkeypatch.setattr(engine, "run_task", writes_then_breaks)
    sink = UndoSink(fail_on=frozenset({"mem://out/2.jpg"}))
    message = env.worker(sink=sink).handle_upload(env.upload(), "r")
    assert message is not None
    assert (message["Status"], message["Code"]) == ("Failed", "InternalError")
    assert message["Message"].endswith("could not be deleted: mem://out/2.jpg)")
    assert sink.deletes == ["mem://out/1.jpg", "mem://out/2.jpg"]
    assert list(sink.objects) == ["mem://out/2.jpg"]
    assert env.record(message["TaskId"])["Message"] == message["Message"]


def test_a_real_task_failing_midway_leaves_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine raises its error as it is after writing frames; the worker deletes those frames."""
    from vidsnap.aws.storage import S3Sink

    class FailsOnTheThirdFrame(S3Sink):
        def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
            if key.endswith("/3.jpg"):
                raise Throttled("SlowDown")
            return super().put(bucket, key, data, content_type)

    sink = FailsOnTheThirdFrame(env.clients.s3, "out")
    with pytest.raises(Throttled):
        env.worker(sink=sink).handle_upload(env.upload(), "r")
    assert env.keys("out") == []


def test_each_call_brings_its_invocation_s_clock(env: Env) -> None:
    """The lease follows the time_left of the call, else the worker's own, else TASK_LEASE_SECONDS."""
    upload = env.upload()
    task = parse.parse_task(process()).with_source(SourceRef(KEY, "src"))
    tid = task_id(SourceRef(KEY, "src"), upload.etag, task)
    leases = []

    class Tasks(TaskStore):
        def begin(self, task_id: str, *args: Any, lease_seconds: float | None = None, **kw: Any) -> Any:
            leases.append(lease_seconds)
            return super().begin(task_id, *args, lease_seconds=lease_seconds, **kw)

    worker = env.worker(tasks=Tasks(env.clients, "tasks"), time_left=lambda: 100.0)
    worker.handle_upload(upload, "r1", time_left=lambda: 30.0)
    env.clients.dynamodb.Table("tasks").delete_item(Key={"TaskId": tid})
    worker.handle_upload(upload, "r2")
    env.clients.dynamodb.Table("tasks").delete_item(Key={"TaskId": tid})
    env.worker(tasks=Tasks(env.clients, "tasks")).handle_upload(upload, "r3")
    margin = worker_module.LEASE_MARGIN_S
    assert leases == [30.0 + margin, 100.0 + margin, float(env.settings.task_lease_seconds)]


def test_a_permanent_notify_failure_is_a_warning(env: Env) -> None:
    """The task's outcome stands; the warning is in the answer and in the record, nothing was sent."""
    env.clients.sns.delete_topic(TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:done")
    message = env.worker().handle_upload(env.upload(), "r")
    assert message is not None
    assert message["Status"] == "Succeeded"
    (warning,) = message["Warnings"]
    assert warning.startswith("notification failed:")
    record = env.record(message["TaskId"])
    assert record["Warnings"] == [warning]
    assert "Notified" not in record


def test_compositions_are_reported_recorded_and_undone(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MPS task with sprite sheets and a thumbnail track: its notification and task record report
    Count, TileCount and every composition; a failure after the sheets were written keeps none."""
    env.upload()
    task = {
        "Input": {"Bucket": "src", "Object": KEY},
        "SnapshotConfig": {
            "OutputFile": {"Bucket": "out", "Object": "snaps/{Count}.jpg"},
            "TileOutputFile": {"Bucket": "out", "Object": "tiles/{TileCount}.jpg"},
            "TileOut": {"Lines": 1, "Columns": 2},
            "Format": "vtt",
            "SubOut": {"IsSptFrag": True},
            "Interval": 1,
            "Num": 3,
            "Width": 64,
            "Height": 36,
        },
        "Notification": {"SQS": {"QueueUrl": "results"}},
    }
    answer = env.worker().handle_task_message(json.dumps(task), "req-1")
    assert answer["Status"] == "Succeeded", answer
    assert answer["Count"] == 3
    assert answer["TileCount"] == 2
    kinds = [c["Type"] for c in answer["Compositions"]]
    assert kinds == ["Sprite", "Sprite", "WebVTT"]
    first = answer["Compositions"][0]
    assert first["URI"] == "s3://out/tiles/00001.jpg"
    assert [t["TimeMs"] for t in first["Tiles"]] == [0, 1000]
    assert [(t["X"], t["Y"], t["Width"], t["Height"]) for t in first["Tiles"]] == [
        (0, 0, 64, 36),
        (64, 0, 64, 36),
    ]
    assert answer["Compositions"][2]["URI"] == "s3://out/snaps/my clip+1.vtt"
    assert answer["Message"] == "3 frame(s) written, 2 sprite sheet(s), 1 track(s)"
    assert env.keys("out") == [
        "snaps/00001.jpg", "snaps/00002.jpg", "snaps/00003.jpg", "snaps/my clip+1.vtt",
        "tiles/00001.jpg", "tiles/00002.jpg",
    ]  # fmt: skip
    (sent,) = env.notifications(env.results)
    assert sent == answer
    record = env.record(answer["TaskId"])
    assert record["Compositions"] == answer["Compositions"]

    # The same task failing after its sheets: nothing of it is left behind.
    for o in env.clients.s3.list_objects_v2(Bucket="out")["Contents"]:
        env.clients.s3.delete_object(Bucket="out", Key=o["Key"])
    from vidsnap.core import writer

    def broken_track(self: Any, end_ms: Any) -> None:
        raise UndecodableMedia("the track could not be written")

    monkeypatch.setattr(writer.JobWriter, "_write_track", broken_track)
    task["UserData"] = "again"  # another task id
    failed = env.worker().handle_task_message(json.dumps(task), "req-2")
    assert failed["Status"] == "Failed"
    assert env.keys("out") == []


def test_composition_buckets_are_allow_listed_before_decoding(env: Env) -> None:
    env.upload()
    task = {
        "Sources": [{"URI": f"s3://src/{KEY}"}],
        "Targets": [{"Image": {"Sprites": [{"Interval": 1, "URI": "s3://forbidden/{index}.jpg"}]}}],
    }
    answer = env.worker().handle_task_message(json.dumps(task), "req-1")
    assert answer["Status"] == "Failed"
    assert answer["Code"] == "AccessDenied", answer
    assert "forbidden" in answer["Message"]
    assert env.keys("forbidden") == []

"""Long tasks: an attempt that runs out of time stops between frames, and the next resumes there.

The engine part: a task stopped every few frames and resumed until done writes exactly what one
pass writes (keys, bytes, ``{index}``, TimeMs, warnings), and never writes a finished output twice.
The worker part (below): the checkpoint in the task record, SQS redelivery, and idempotency.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import CountingSink, stop_every

from vidsnap.core.engine import Outcome, Position, run_task
from vidsnap.core.lang import parse_process
from vidsnap.core.plan import Limits, Task


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def job(process: str, template: str) -> Task:
    return parse_process(f"{process}|sys/saveas,o_{b64(template)}")


def task_of(*parts: tuple[str, str]) -> Task:
    jobs = tuple(j for process, template in parts for j in job(process, template).jobs)
    return Task(jobs=jobs)


def resumed(task: Task, source: Path, sink: CountingSink, every: int, **kw: Any) -> tuple[Outcome, int]:
    """Run ``task`` in attempts stopped by :func:`stop_every` until done; the merged outcome and
    the number of attempts."""
    merged = Outcome()
    resume: Position | None = None
    attempts = 0
    while True:
        attempts += 1
        assert attempts < 100
        outcome = run_task(task, source, sink, resume=resume, should_stop=stop_every(every), **kw)
        merged.outputs += outcome.outputs
        merged.compositions += outcome.compositions
        merged.warnings += outcome.warnings
        if outcome.stopped is None:
            return merged, attempts
        assert outcome.stopped != resume, "an attempt made no progress"
        resume = outcome.stopped


def summary(outcome: Outcome) -> tuple[Any, ...]:
    return (
        [(o.uri, o.time_ms, o.width, o.height, o.size) for o in outcome.outputs],
        [(c.kind, c.uri, c.size, c.times_ms, c.tiles) for c in outcome.compositions],
        outcome.warnings,
    )


CASES = {
    "inter": (("video/snapshots,f_jpg,inter_200", "a/{index}.{autoext}"),),
    "inter_num": (("video/snapshots,f_jpg,inter_300,num_7", "a/{index}.{autoext}"),),
    "every_frame": (("video/snapshots,ss_1500,f_png,inter_0,w_64", "a/{index}.{autoext}"),),
    "key": (("video/snapshots,f_jpg,m_key", "k/{index}.{autoext}"),),
    "avg": (("video/snapshots,f_jpg,m_avg,num_9", "v/{index}.{autoext}"),),
    "dhash": (("video/snapshots,f_jpg,m_dhash,inter_100,thr_5", "d/{index}.{autoext}"),),
    "dhash_ranked": (("video/snapshots,f_jpg,m_dhash,inter_100,thr_1,num_6", "d/{index}.{autoext}"),),
    "intra": (("video/snapshots,f_jpg,inter_250,m_inter", "i/{index}.{autoext}"),),
    "jobs": (
        ("video/snapshots,f_jpg,inter_400", "a/{index}.{autoext}"),
        ("video/sprite,inter_500,w_64,h_36,tw_3,th_2,f_jpg", "s/{index}.{autoext}"),
        ("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_700,num_3", "n/{index}.{autoext}"),
    ),
}


@pytest.fixture(scope="module")
def long_gop(make_media: Any) -> Path:
    return Path(make_media("mp4_cuts").path)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("every", [2, 5])
def test_a_task_stopped_and_resumed_writes_what_one_pass_writes(
    long_gop: Path, name: str, every: int
) -> None:
    task = task_of(*CASES[name])
    one = CountingSink()
    single = run_task(task, long_gop, one)
    assert single.outputs or single.compositions
    many = CountingSink()
    merged, attempts = resumed(task, long_gop, many, every)
    assert attempts >= 2 or len(one.puts) <= every + 3  # frames rendered ahead are written too
    assert summary(merged) == summary(single)
    assert many.objects == one.objects
    # Nothing finished is written again: every put of the resumed run is one of the single pass.
    assert sorted(many.puts) == sorted(one.puts)


def test_the_frame_limit_counts_the_frames_of_earlier_attempts(long_gop: Path) -> None:
    task = task_of(
        ("video/snapshots,f_jpg,inter_300", "a/{index}.{autoext}"),
        ("video/snapshots,f_jpg,inter_200", "b/{index}.{autoext}"),
    )
    limits = Limits(max_frames=17)
    one = CountingSink()
    single = run_task(task, long_gop, one, limits=limits)
    many = CountingSink()
    merged, attempts = resumed(task, long_gop, many, 3, limits=limits)
    assert attempts >= 3
    assert summary(merged) == summary(single)
    assert len(single.outputs) == 17
    assert any("frame limit" in w for w in single.warnings)
    assert sorted(many.puts) == sorted(one.puts)


def test_an_attempt_always_writes_a_frame_before_it_stops(long_gop: Path) -> None:
    task = task_of(("video/snapshots,f_jpg,inter_500", "a/{index}.{autoext}"))
    outcome = run_task(task, long_gop, CountingSink(), should_stop=lambda: True)
    # The frames already decoded and rendered ahead of the stop are written too (at most 3).
    assert 1 <= len(outcome.outputs) <= 3
    stopped = outcome.stopped
    assert stopped is not None
    assert stopped.job == 0
    assert stopped.count == len(outcome.outputs)
    assert stopped.time_ms == outcome.outputs[-1].time_ms


def test_a_job_with_compositions_is_not_stopped_half_way(long_gop: Path) -> None:
    task = task_of(
        ("video/snapshots,f_jpg,inter_500", "a/{index}.{autoext}"),
        ("video/sprite,inter_250,w_64,h_36,tw_4,th_2,f_jpg", "s/{index}.{autoext}"),
    )
    sink = CountingSink()
    resume: Position | None = None
    stops: list[Position] = []
    sheets = 0
    for _ in range(20):
        outcome = run_task(task, long_gop, sink, resume=resume, should_stop=lambda: True)
        sheets += len(outcome.compositions)
        if outcome.stopped is None:
            break
        resume = outcome.stopped
        stops.append(resume)
    # Where job 0 stops depends on the frames rendered ahead; it always ends before the sprite job.
    assert any(p.job == 0 for p in stops)
    assert all(p.count == 0 for p in stops if p.job == 1)
    assert sheets == 2  # 16 tiles of 8: the sprite job ran whole in one attempt


# -- the worker: checkpoints in the task record, SQS redelivery --------------------------------------

ACCOUNT_KEY = "videos/long.mp4"


@dataclass
class CountingS3Sink:
    """The worker's S3 sink, counting puts."""

    inner: Any
    puts: list[str] = field(default_factory=list)

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        self.puts.append(key)
        return str(self.inner.put(bucket, key, data, content_type))

    def delete(self, uri: str) -> None:
        self.inner.delete(uri)

    def resolve_bucket(self, bucket: str | None) -> str:
        return str(self.inner.resolve_bucket(bucket))


class Invocation:
    """A Lambda clock: plenty of time for the first ``frames`` questions, then less than the margin."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.asked = 0

    def __call__(self) -> float:
        self.asked += 1
        return 600.0 if self.asked <= self.frames else 5.0


@pytest.fixture
def aws(aws_env: None, long_gop: Path) -> Any:
    from moto import mock_aws

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.taskstore import create_table

    with mock_aws():
        clients = Clients(region="us-east-1")
        for bucket in ("src", "out"):
            clients.s3.create_bucket(Bucket=bucket)
        results = clients.sqs.create_queue(QueueName="results")["QueueUrl"]
        create_table(clients.dynamodb_client, "tasks")
        clients.s3.put_object(Bucket="src", Key=ACCOUNT_KEY, Body=long_gop.read_bytes())
        settings = Settings(
            source_bucket="src",
            output_bucket="out",
            allowed_queues=frozenset({"results"}),
            task_table="tasks",
            max_frames=200,
        )
        yield clients, settings, results


def worker_of(clients: Any, settings: Any) -> tuple[Any, CountingS3Sink]:
    from vidsnap.aws.storage import S3Sink
    from vidsnap.aws.worker import Worker

    sink = CountingS3Sink(S3Sink(clients.s3, settings.output_bucket, settings.allowed_output_buckets))
    return Worker(settings, clients, sink=sink), sink


def stored(clients: Any) -> dict[str, bytes]:
    listed = clients.s3.list_objects_v2(Bucket="out").get("Contents", [])
    return {o["Key"]: clients.s3.get_object(Bucket="out", Key=o["Key"])["Body"].read() for o in listed}


def received(clients: Any, queue: str) -> list[dict[str, Any]]:
    import json

    got = clients.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    for m in got:
        clients.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in got]


WORKER_TASK = {
    "Bucket": "src",
    "Key": ACCOUNT_KEY,
    "UserData": "ud",
    "Process": (
        f"video/snapshots,f_jpg,inter_250|sys/saveas,o_{b64('snaps/{index}.{autoext}')}"
        f"/notify,queue_{b64('results')}"
    ),
}
SPRITE_TASK = {
    "Bucket": "src",
    "Key": ACCOUNT_KEY,
    "Process": f"video/sprite,inter_500,w_64,h_36,tw_3,th_2,f_jpg|sys/saveas,o_{b64('sheets/{index}.jpg')}",
}


def run_resumed(worker: Any, task: dict[str, Any], frames: int) -> tuple[dict[str, Any], int]:
    """Deliver ``task`` until it is done, each attempt running out of time after ``frames`` frames."""
    import json

    from vidsnap.aws.worker import OutOfTime

    for attempt in range(1, 30):
        try:
            return worker.handle_task_message(
                json.dumps(task), f"req-{attempt}", time_left=Invocation(frames)
            ), attempt
        except OutOfTime:
            continue
    raise AssertionError("the task never finished")


def single_pass(aws: Any, task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """The task run in one attempt; then its outputs and record are removed again."""
    import json

    clients, settings, _ = aws
    worker, sink = worker_of(clients, settings)
    message = worker.handle_task_message(json.dumps(task), "req-0")
    objects = stored(clients)
    for key in objects:
        clients.s3.delete_object(Bucket="out", Key=key)
    clients.dynamodb.Table("tasks").delete_item(Key={"TaskId": message["TaskId"]})
    return message, objects, sink.puts


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    drop = {"RequestId", "StartTime", "EndTime"}
    return {k: v for k, v in message.items() if k not in drop}


@pytest.mark.parametrize("frames", [3, 7])
def test_a_worker_task_out_of_time_resumes_and_finishes_as_one_pass(aws: Any, frames: int) -> None:
    clients, settings, results = aws
    one, one_objects, one_puts = single_pass(aws, WORKER_TASK)
    assert one["Status"] == "Succeeded"
    assert len(one["Outputs"]) == 16
    assert received(clients, results) == [one]

    worker, sink = worker_of(clients, settings)
    message, attempts = run_resumed(worker, WORKER_TASK, frames)
    assert attempts >= (3 if frames == 3 else 2)
    assert comparable(message) == comparable(one)
    assert stored(clients) == one_objects
    assert sorted(sink.puts) == sorted(one_puts)  # no finished frame written twice
    assert [comparable(m) for m in received(clients, results)] == [comparable(one)]  # one notification

    from vidsnap.aws.taskstore import TaskStore

    record = TaskStore(clients, "tasks").get(message["TaskId"])
    assert record is not None
    assert record["Status"] == "Succeeded"
    assert "Checkpoint" not in record
    assert record["Attempts"] == attempts
    # Redelivered once more: the stored result, nothing written or notified again.
    again = worker.handle_task_message(__import__("json").dumps(WORKER_TASK), "req-again")
    assert comparable(again) == comparable(one)
    assert sorted(sink.puts) == sorted(one_puts)
    assert received(clients, results) == []


def test_the_checkpoint_is_in_the_record_between_attempts(aws: Any) -> None:
    import json

    from vidsnap.aws.taskstore import TaskStore
    from vidsnap.aws.worker import OutOfTime

    clients, settings, _ = aws
    worker, _sink = worker_of(clients, settings)
    with pytest.raises(OutOfTime) as raised:
        worker.handle_task_message(json.dumps(WORKER_TASK), "req-1", time_left=Invocation(4))
    assert raised.value.transient
    records = clients.dynamodb.Table("tasks").scan()["Items"]
    assert len(records) == 1
    record = TaskStore(clients, "tasks").get(records[0]["TaskId"])
    assert record is not None
    checkpoint = record["Checkpoint"]
    assert record["Status"] == "Running"
    assert record["LeaseExpiresAt"] == 0
    assert record["LastCode"] == "OutOfTime"
    assert checkpoint["Job"] == 0
    assert checkpoint["Count"] == len(checkpoint["Outputs"]) >= 4
    assert [o["URI"] for o in checkpoint["Outputs"]] == [
        f"s3://out/snaps/{i}.jpg" for i in range(1, checkpoint["Count"] + 1)
    ]
    # The outputs the checkpoint lists are kept for the next attempt.
    assert sorted(stored(clients)) == sorted(f"snaps/{i}.jpg" for i in range(1, checkpoint["Count"] + 1))


def test_a_resumed_task_that_fails_deletes_the_earlier_attempts_outputs(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from vidsnap.aws.worker import OutOfTime
    from vidsnap.core import engine
    from vidsnap.core.errors import UndecodableMedia

    clients, settings, results = aws
    worker, _sink = worker_of(clients, settings)
    with pytest.raises(OutOfTime):
        worker.handle_task_message(json.dumps(WORKER_TASK), "req-1", time_left=Invocation(3))
    assert stored(clients)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise UndecodableMedia("corrupt")

    monkeypatch.setattr(engine, "run_task", broken)
    failed = worker.handle_task_message(json.dumps(WORKER_TASK), "req-2", time_left=Invocation(3))
    assert failed["Status"] == "Failed"
    assert failed["Outputs"] == []
    assert stored(clients) == {}
    assert [m["Status"] for m in received(clients, results)] == ["Failed"]


def test_a_job_with_compositions_resumes_from_its_start(aws: Any) -> None:
    """A sprite job is never stopped half-way: the clock runs out, the job still ends in one attempt."""
    clients, settings, _ = aws
    one, one_objects, one_puts = single_pass(aws, SPRITE_TASK)
    worker, sink = worker_of(clients, settings)
    message, attempts = run_resumed(worker, SPRITE_TASK, 1)
    assert attempts == 1
    assert comparable(message) == comparable(one)
    assert stored(clients) == one_objects
    assert sorted(sink.puts) == sorted(one_puts)


def test_a_message_out_of_time_is_handed_back_in_seconds(aws: Any) -> None:
    """The worker makes the message of a task that ran out of time visible again in seconds (not at
    the queue's visibility timeout), so the next invocation resumes it now."""
    import json

    from vidsnap.aws.worker import RESUME_DELAY_S, OutOfTime

    clients, settings, _ = aws
    tasks = clients.sqs.create_queue(QueueName="tasks", Attributes={"VisibilityTimeout": "5400"})["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=tasks, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    clients.sqs.send_message(QueueUrl=tasks, MessageBody=json.dumps(WORKER_TASK))
    (message,) = clients.sqs.receive_message(QueueUrl=tasks)["Messages"]
    worker, _ = worker_of(clients, settings)
    with pytest.raises(OutOfTime):
        worker.handle_task_message(message["Body"], "req-1", time_left=Invocation(2))
    assert worker.hand_back(arn, message["ReceiptHandle"], delay_s=0)
    (again,) = clients.sqs.receive_message(QueueUrl=tasks)["Messages"]  # at once, not in 90 minutes
    assert again["Body"] == message["Body"]
    assert RESUME_DELAY_S <= 10
    assert not worker.hand_back("arn:aws:sns:us-east-1:123456789012:topic", "x")  # not a queue: no-op


def test_the_handler_hands_an_out_of_time_message_back(
    aws: Any, monkeypatch: pytest.MonkeyPatch, load_function: Any, lambda_context: Any
) -> None:
    from vidsnap.aws import worker as worker_module

    handed: list[tuple[str, str]] = []
    monkeypatch.setattr(worker_module.Worker, "handle_message", _out_of_time)

    def hand_back(_self: Any, arn: str, receipt: str, **_: Any) -> bool:
        handed.append((arn, receipt))
        return True

    monkeypatch.setattr(worker_module.Worker, "hand_back", hand_back)
    app = load_function("async_snapshots")
    record = {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": "{}",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tasks",
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "awsRegion": "us-east-1",
    }
    response = app.handler({"Records": [record]}, lambda_context("vidsnap-AsyncSnapshotsFunction"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert handed == [("arn:aws:sqs:us-east-1:123456789012:tasks", "rh-1")]


def _out_of_time(self: Any, body: str, request_id: str, **_: Any) -> Any:
    from vidsnap.aws.worker import OutOfTime

    raise OutOfTime("out of time; progress saved")

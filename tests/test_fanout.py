"""Long tasks on Step Functions: template.yaml's state machine executed by moto, its steps served by
the real fan-out handler, the task handed over by the real worker handler.

A task estimated above the threshold runs as windows on the Distributed Map and ends exactly as one
pass of the worker ends it: the same keys and bytes, the same notification (Outputs with TimeMs,
warnings), sent once; the record shows the windows' progress. Windows run twice write the same
keys; a window that fails for good fails the task with one notification and leaves no output.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from conftest import CONTAINERS
from moto import mock_aws

from vidsnap.aws.clients import Clients
from vidsnap.aws.settings import ASYNC_VARIABLES, Fanout, Settings, get_settings
from vidsnap.aws.taskstore import TaskStore, create_table
from vidsnap.aws.worker import Worker
from vidsnap.local import stepfunctions as sfnlocal
from vidsnap.local import synth

MACHINE = "vidsnap-fanout"
MACHINE_ARN = sfnlocal.state_machine_arn(MACHINE)
FANOUT = "vidsnap-FanoutFunction"
KEY = "videos/long.mp4"
ROOT = Path(__file__).resolve().parents[1]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def task_body(process: str, template: str = "snaps/{index}.{autoext}") -> dict[str, Any]:
    return {
        "Bucket": "src",
        "Key": KEY,
        "UserData": "ud",
        "Process": f"{process}|sys/saveas,o_{b64(template)}/notify,queue_{b64('results')}",
    }


def sqs_event(body: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"rh-{message_id}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:{sfnlocal.ACCOUNT}:tasks-queue",
                "awsRegion": "us-east-1",
            }
        ]
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s at 25 fps, a keyframe every second, 3 B-frames."""
    path = tmp_path_factory.mktemp("fanout") / "long.mp4"
    synth.make_video(path, duration_s=8, gop=25, bframes=3, width=160, height=90)
    return path


@dataclasses.dataclass
class Stack:
    clients: Clients
    sfn: Any
    results: str
    routes: sfnlocal.LambdaRoutes
    worker_app: ModuleType
    context: Callable[[str], Any]

    def deliver(self, body: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
        """The task message through the worker's handler; its batch response."""
        with sfnlocal.ONE_INVOCATION:
            response: dict[str, Any] = self.worker_app.handler(
                sqs_event(body, message_id), self.context("vidsnap-AsyncSnapshotsFunction")
            )
        return response

    def executions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.sfn.list_executions(stateMachineArn=MACHINE_ARN)["executions"]
        return listed

    def finish(self) -> list[dict[str, Any]]:
        """Wait for every execution to end; their descriptions."""
        return [sfnlocal.wait(self.sfn, e["executionArn"]) for e in self.executions()]

    def objects(self) -> dict[str, bytes]:
        s3 = self.clients.s3
        listed = s3.list_objects_v2(Bucket="out").get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket="out", Key=o["Key"])["Body"].read() for o in listed}

    def received(self) -> list[dict[str, Any]]:
        got = self.clients.sqs.receive_message(QueueUrl=self.results, MaxNumberOfMessages=10)
        for m in got.get("Messages", []):
            self.clients.sqs.delete_message(QueueUrl=self.results, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    def record(self, task_id: str) -> dict[str, Any]:
        record = TaskStore(self.clients, "tasks").get(task_id)
        assert record is not None
        return record

    def single_pass(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The task run by the worker in one pass (no state machine); outputs and record removed after."""
        settings = dataclasses.replace(get_settings(ASYNC_VARIABLES), fanout=Fanout())
        message = Worker(settings, self.clients).handle_task_message(json.dumps(body), "req-single")
        objects = self.objects()
        for key in objects:
            self.clients.s3.delete_object(Bucket="out", Key=key)
        self.clients.dynamodb.Table("tasks").delete_item(Key={"TaskId": message["TaskId"]})
        assert self.received() == [message]
        return message, objects


ENV = {
    "SOURCE_BUCKET": "src",
    "OUTPUT_BUCKET": "out",
    "ALLOWED_QUEUES": "results",
    "TASK_TABLE": "tasks",
    "MAX_FRAMES": "400",
    "POWERTOOLS_SERVICE_NAME": "vidsnap",
    "FANOUT_STATE_MACHINE": MACHINE_ARN,
    # 8 s of 160x90 decode at 1 Mpx/s: about 3 s, above the 1 s threshold, in windows of 1 s.
    "FANOUT_THRESHOLD_SECONDS": "1",
    "FANOUT_WINDOW_SECONDS": "1",
    "FANOUT_DECODE_MPX_PER_SECOND": "1",
    "FANOUT_MAX_CONCURRENCY": "3",
}


@pytest.fixture
def stack(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    clip: Path,
    load_function: Callable[[str], ModuleType],
    lambda_context: Callable[..., Any],
) -> Iterator[Stack]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws(config=sfnlocal.EXECUTE):  # type: ignore[arg-type]
        clients = Clients(region="us-east-1")
        for bucket in ("src", "out"):
            clients.s3.create_bucket(Bucket=bucket)
        results = clients.sqs.create_queue(QueueName="results")["QueueUrl"]
        create_table(clients.dynamodb_client, "tasks")
        clients.s3.put_object(Bucket="src", Key=KEY, Body=clip.read_bytes())
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        asl = sfnlocal.definition(
            ROOT / "template.yaml", "FanoutStateMachine", {"FanoutFunctionArn": sfnlocal.function_arn(FANOUT)}
        )
        sfn.create_state_machine(
            name=MACHINE, definition=asl, roleArn=f"arn:aws:iam::{sfnlocal.ACCOUNT}:role/fanout"
        )

        def context(name: str) -> Any:
            return lambda_context(name, memory_limit_in_mb=3008, timeout_s=900)

        fanout_app = load_function("fanout")
        routes = sfnlocal.LambdaRoutes({FANOUT: fanout_app.handler}, context)
        with routes.installed():
            yield Stack(clients, sfn, results, routes, load_function("async_snapshots"), context)
    get_settings.cache_clear()


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key an S3 sink is asked to write, in order (across all clients and handlers)."""
    from vidsnap.aws.storage import S3Sink

    keys: list[str] = []
    real_put = S3Sink.put

    def counted_put(self: S3Sink, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        keys.append(key)
        return real_put(self, bucket, key, data, content_type)

    monkeypatch.setattr(S3Sink, "put", counted_put)
    return keys


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in {"RequestId", "StartTime", "EndTime"}}


TASKS = {
    "exact": "video/snapshots,f_jpg,inter_250",
    "avg": "video/snapshots,f_jpg,m_avg,num_13",
    "num": "video/snapshots,f_jpg,ss_700,inter_300,num_9",
    # Counted, settled, then run: the windows select what one pass selects, numbered as it does.
    "dhash": "video/snapshots,f_jpg,m_dhash,inter_120,thr_3",
}
#: An IMM task of three jobs: exact frames, every keyframe, MPS-style intra frames (average).
IMM_TASK = {
    "Sources": [{"URI": f"s3://src/{KEY}"}],
    "Targets": [
        {
            "Image": {
                "Snapshots": [
                    {"Format": "jpg", "Interval": 0.2, "URI": "s3://out/imm/a-{index}.{autoext}"},
                    {"Format": "png", "Mode": "keyframe", "Width": 80, "URI": "s3://out/imm/k-{index}.jpg"},
                    {"Format": "jpg", "Mode": "average", "Number": 7, "URI": "s3://out/imm/v-{index}.jpg"},
                ]
            }
        }
    ],
    "Notification": {"SQS": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/results"}},
    "UserData": "imm",
}


NOTIFY = {"SQS": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/results"}}
#: Tasks of compositions: sheets, a thumbnail track pointing into them (written by the merge), and
#: images, as MPS asks for them; sprite sheets and an animation, as IMM asks for them.
BODIES = {
    "imm": IMM_TASK,
    "mps_vtt_sheets": {
        "Input": {"Bucket": "src", "Object": KEY},
        "SnapshotConfig": {
            "OutputFile": {"Bucket": "out", "Object": "mps/{Count}.jpg"},
            "TileOutputFile": {"Bucket": "out", "Object": "mps/tiles/{TileCount}.jpg"},
            "FrameType": "normal",
            "Interval": 0.25,
            "Width": 64,
            "Height": 36,
            "Format": "vtt",
            "SubOut": {"IsSptFrag": True},
            "TileOut": {"Lines": 2, "Columns": 3},
        },
        "Notification": NOTIFY,
    },
    "imm_sprites": {
        "Sources": [{"URI": f"s3://src/{KEY}"}],
        "Targets": [
            {
                "Image": {
                    "Snapshots": [
                        {"Format": "jpg", "Interval": 0.3, "Width": 80, "URI": "s3://out/imm/s-{index}.jpg"}
                    ],
                    "Sprites": [
                        {
                            "Interval": 0.2,
                            "TileWidth": 3,
                            "TileHeight": 2,
                            "ScaleWidth": 0.25,
                            "ScaleHeight": 0.25,
                        }
                    ],
                    "Animations": [{"Interval": 0.5, "Number": 4, "Width": 0.25, "Height": 0.25}],
                }
            }
        ],
        "Notification": NOTIFY,
    },
}


@pytest.mark.parametrize("name", [*TASKS, *BODIES])
def test_a_long_task_runs_in_windows_on_the_state_machine_as_one_pass(stack: Stack, name: str) -> None:
    body = BODIES[name] if name in BODIES else task_body(TASKS[name])
    one, one_objects = stack.single_pass(body)
    assert one["Status"] == "Succeeded"

    assert stack.deliver(body) == {"batchItemFailures": []}
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED", done
    windows = stack.routes.named(FANOUT)
    items = [e for e in windows if e["Action"] == "window"]
    assert len(items) >= 2
    counted = [e for e in windows if e["Action"] == "count"]
    others = [e["Action"] for e in windows if e["Action"] not in ("window", "count")]
    if name == "dhash":
        assert len(counted) == len(items)
        assert others == ["settle", "merge"]
    else:
        assert counted == []
        assert others == ["merge"]

    (message,) = stack.received()  # one notification, from the merge
    assert comparable(message) == comparable(one)
    assert stack.objects() == one_objects
    record = stack.record(one["TaskId"])
    assert record["Status"] == "Succeeded"
    assert record["Progress"] == 100
    assert record["Windows"] == len(items)
    assert record["WindowsDone"] == list(range(len(items)))


def test_the_execution_is_a_distributed_map_with_the_configured_concurrency(stack: Stack) -> None:
    stack.deliver(task_body(TASKS["exact"]))
    (done,) = stack.finish()
    started = json.loads(done["input"])
    assert started["MaxConcurrency"] == 3
    assert len(started["Windows"]) == started["Run"]["windows"]
    kinds = [e["type"] for e in sfnlocal.history(stack.sfn, done["executionArn"])]
    assert "MapRunStarted" in kinds
    assert "MapRunSucceeded" in kinds


def test_a_short_task_runs_in_the_worker(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_THRESHOLD_SECONDS", "100000")
    get_settings.cache_clear()
    body = task_body(TASKS["exact"])
    stack.deliver(body)
    assert stack.executions() == []
    (message,) = stack.received()
    assert message["Status"] == "Succeeded"
    assert "Execution" not in stack.record(message["TaskId"])


def test_a_task_that_cannot_be_windowed_runs_in_the_worker(stack: Stack) -> None:
    # Ranked dhash needs every sample's score at once: one pass (resumable) in the worker.
    body = task_body("video/snapshots,f_jpg,m_dhash,inter_200,thr_1,num_4")
    stack.deliver(body)
    assert stack.executions() == []
    (message,) = stack.received()
    assert message["Status"] == "Succeeded"
    assert len(message["Outputs"]) == 4


def test_a_redelivered_task_message_does_not_start_a_second_execution(stack: Stack) -> None:
    body = task_body(TASKS["exact"])
    stack.deliver(body, "m-1")
    stack.deliver(body, "m-2")  # delivered again while its windows run, or after
    assert len(stack.executions()) == 1
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED"
    assert len(stack.received()) == 1
    stack.deliver(body, "m-3")  # and after the task succeeded: the stored result, no new run
    assert len(stack.executions()) == 1
    assert stack.received() == []


def test_windows_run_twice_write_the_same_keys_once(stack: Stack, puts: list[str]) -> None:
    body = task_body(TASKS["exact"])
    one, one_objects = stack.single_pass(body)
    puts.clear()  # the single pass's
    fanout_handler = stack.routes.handlers[sfnlocal.function_arn(FANOUT)]

    def twice(function: str, event: dict[str, Any]) -> None:
        # Every window is delivered twice (a retry after a lost answer): the first run here.
        if event.get("Action") == "window":
            fanout_handler(event, stack.context(function))

    stack.routes.before = twice
    stack.deliver(body)
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED"
    (message,) = stack.received()
    assert comparable(message) == comparable(one)
    assert stack.objects() == one_objects
    record = stack.record(one["TaskId"])
    assert record["WindowsDone"] == list(range(record["Windows"]))
    # The second delivery of each window found it done: every key was written once.
    assert len(puts) == len(set(puts)) == len(one_objects)
    again = [e for e in stack.routes.named(FANOUT) if e["Action"] == "window"]
    assert len(again) == record["Windows"]

    # A window delivered once more after the merge: nothing changes, nothing is notified.
    window = next(e for e in stack.routes.named(FANOUT) if e["Action"] == "window")
    with sfnlocal.ONE_INVOCATION:
        answer = fanout_handler(window, stack.context(FANOUT))
    assert answer == {"Window": window["Window"]["Index"], "Skipped": True}
    assert stack.received() == []
    assert stack.objects() == one_objects


def test_a_throttled_window_is_retried_with_backoff(stack: Stack) -> None:
    from vidsnap.aws.fanout import RetryWindow

    failed: list[int] = []

    def throttle_once(function: str, event: dict[str, Any]) -> None:
        if event.get("Action") == "window" and event["Window"]["Index"] == 1 and not failed:
            failed.append(1)
            raise RetryWindow("ServiceUnavailable: throttled")

    stack.routes.before = throttle_once
    body = task_body(TASKS["exact"])
    stack.deliver(body)
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED"
    assert failed == [1]
    retried = [e for e in stack.routes.named(FANOUT) if e.get("Window", {}).get("Index") == 1]
    assert len(retried) == 2
    (message,) = stack.received()
    assert message["Status"] == "Succeeded"


def test_a_window_that_fails_for_good_fails_the_task_once_and_leaves_no_output(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsnap.core import engine
    from vidsnap.core.errors import UndecodableMedia

    real = engine.run_window_part

    def broken(task: Any, source: Any, sink: Any, window: Any, **kw: Any) -> Any:
        if window.index == 1:
            sink.put(None, "snaps/partial.jpg", b"x", "image/jpeg")  # written before it fails
            raise UndecodableMedia("media could not be decoded: bad slice")
        return real(task, source, sink, window, **kw)

    monkeypatch.setattr(engine, "run_window_part", broken)
    stack.deliver(task_body(TASKS["exact"]))
    (done,) = stack.finish()
    (message,) = stack.received()
    assert message["Status"] == "Failed"
    assert message["Code"] == "MediaDecodeFailed"  # the failed window's own error
    assert "bad slice" in message["Message"]
    assert message["Outputs"] == []
    assert stack.objects() == {}
    record = stack.record(message["TaskId"])
    assert record["Status"] == "Failed"
    assert done["status"] in ("SUCCEEDED", "FAILED")  # moto's map tolerates item failures; AWS's fails
    assert stack.received() == []


def test_a_failing_merge_is_caught_and_fails_the_task_with_one_notification(stack: Stack) -> None:
    from vidsnap.aws.fanout import WindowFailed

    def merge_fails(function: str, event: dict[str, Any]) -> None:
        if event.get("Action") == "merge":
            raise WindowFailed("merge broke")

    stack.routes.before = merge_fails
    stack.deliver(task_body(TASKS["exact"]))
    (done,) = stack.finish()
    assert done["status"] == "FAILED"
    assert done.get("error") == "TaskFailed"
    fail = [e for e in stack.routes.named(FANOUT) if e["Action"] == "fail"]
    assert len(fail) == 1
    assert fail[0]["Error"]["Error"] == "WindowFailed"
    (message,) = stack.received()
    assert message["Status"] == "Failed"
    assert "merge broke" in message["Message"]
    assert stack.objects() == {}


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Action": "window"},
        {"Action": "explode", "Run": {}},
        {"Action": "merge", "Run": {"task_id": "vs-x"}},
    ],
)
def test_a_step_event_that_is_not_one_fails_the_step(stack: Stack, event: dict[str, Any]) -> None:
    from vidsnap.aws.fanout import WindowFailed

    handler = stack.routes.handlers[sfnlocal.function_arn(FANOUT)]
    with pytest.raises(WindowFailed):
        handler(event, stack.context(FANOUT))


def test_a_run_whose_task_id_is_not_its_tasks_is_refused(stack: Stack) -> None:
    from vidsnap.aws.fanout import Run, WindowFailed

    stack.deliver(task_body(TASKS["exact"]))
    (done,) = stack.finish()
    run = json.loads(done["input"])["Run"]
    Run.from_plain(run)
    forged = {**run, "task_id": "vs-" + "0" * 32}
    handler = stack.routes.handlers[sfnlocal.function_arn(FANOUT)]
    with pytest.raises(WindowFailed, match="TaskId"):
        handler({"Action": "merge", "Run": forged}, stack.context(FANOUT))


def test_settings_of_the_fanout(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({**ENV, "FANOUT_MAX_WINDOWS": "50"}, variables=ASYNC_VARIABLES)
    assert settings.fanout == Fanout(MACHINE_ARN, 1, 1, 50, 3, 1)
    assert Settings.from_env({}, variables=ASYNC_VARIABLES).fanout == Fanout()
    with pytest.raises(ValueError, match="FANOUT_MAX_WINDOWS"):
        Settings.from_env({"FANOUT_MAX_WINDOWS": "1"}, variables=ASYNC_VARIABLES)
    # Seconds and the rate take decimals; the threshold may be 0 (fan out whenever possible).
    tuned = Settings.from_env(
        {
            "FANOUT_THRESHOLD_SECONDS": "0",
            "FANOUT_WINDOW_SECONDS": "0.5",
            "FANOUT_DECODE_MPX_PER_SECOND": "2.5",
        },
        variables=ASYNC_VARIABLES,
    ).fanout
    assert (tuned.threshold_seconds, tuned.window_seconds, tuned.decode_mpx_per_second) == (0, 0.5, 2.5)
    for name, bad in [
        ("FANOUT_WINDOW_SECONDS", "0"),
        ("FANOUT_THRESHOLD_SECONDS", "-1"),
        ("FANOUT_DECODE_MPX_PER_SECOND", "nan"),
        ("FANOUT_WINDOW_SECONDS", "soon"),
    ]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: bad}, variables=ASYNC_VARIABLES)


def test_the_record_shows_the_windows_progress(stack: Stack) -> None:
    from vidsnap.aws.httpapp import PUBLIC_TASK_FIELDS

    seen: list[tuple[int, int]] = []

    def look(function: str, event: dict[str, Any]) -> None:
        record = stack.record(event["Run"]["task_id"])
        seen.append((record["Progress"], len(record.get("WindowsDone", []))))

    stack.routes.before = look
    stack.deliver(task_body(TASKS["exact"]))
    (done,) = stack.finish()
    windows = json.loads(done["input"])["Run"]["windows"]
    # Before each window and before the merge: progress grows with the windows done, to 100.
    assert [count for _, count in seen] == list(range(windows + 1))
    assert [pct for pct, _ in seen] == [100 * n // windows for n in range(windows + 1)]
    assert {"Progress", "Windows", "WindowsDone"} <= PUBLIC_TASK_FIELDS


def test_a_throttled_task_table_in_a_step_is_retried_not_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in a step's own bookkeeping (not its decoding): the first store of a
    window's outcome is throttled; the step is retried and the task ends as one pass."""
    from vidsnap.core.errors import Throttled

    body = task_body(TASKS["exact"])
    one, one_objects = stack.single_pass(body)
    real = TaskStore.window_done
    throttled: list[int] = []

    def flaky(self: TaskStore, task_id: str, execution: str, index: int, *args: Any) -> None:
        if index == 1 and not throttled:
            throttled.append(index)
            raise Throttled("dynamodb tasks put: ProvisionedThroughputExceededException")
        real(self, task_id, execution, index, *args)

    monkeypatch.setattr(TaskStore, "window_done", flaky)
    stack.deliver(body)
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED"
    assert throttled == [1]
    (message,) = stack.received()
    assert comparable(message) == comparable(one)
    assert stack.objects() == one_objects


def test_windows_too_many_for_an_execution_input_run_in_the_worker(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsnap.aws import fanout

    monkeypatch.setattr(fanout, "MAX_INPUT_BYTES", 1000)  # stands for Step Functions' 256 KB
    stack.deliver(task_body(TASKS["exact"]))
    assert stack.executions() == []
    (message,) = stack.received()
    assert message["Status"] == "Succeeded"
    assert "Execution" not in stack.record(message["TaskId"])


KINDS = [*CONTAINERS, "mp4_cuts"]


def media_bytes(kind: str, make_media: Callable[[str], Any], cover_m4a: Path) -> bytes:
    if kind == "cover_art":
        return cover_m4a.read_bytes()
    if kind.startswith("truncated_"):  # the moov says 3 s; the samples stop part-way
        data = Path(make_media("mp4_h264").path).read_bytes()
        return data[: len(data) * int(kind.removeprefix("truncated_")) // 100]
    return Path(make_media(kind).path).read_bytes()


@pytest.mark.parametrize("kind", [*KINDS, "cover_art", "truncated_60", "truncated_90"])
def test_every_kind_of_media_ends_as_one_pass_whether_it_fans_out_or_not(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    make_media: Callable[[str], Any],
    cover_m4a: Path,
    kind: str,
) -> None:
    """Containers and codecs whose index allows windows fan out; the others (MPEG-TS: no index)
    run in the worker. Either way the task ends as one pass ends it, broken files included."""
    monkeypatch.setenv("FANOUT_THRESHOLD_SECONDS", "0")
    monkeypatch.setenv("FANOUT_WINDOW_SECONDS", "0.01")
    get_settings.cache_clear()
    key = f"videos/{kind}"
    stack.clients.s3.put_object(Bucket="src", Key=key, Body=media_bytes(kind, make_media, cover_m4a))
    body = {**task_body("video/snapshots,f_jpg,inter_300,w_64"), "Key": key}
    one, one_objects = stack.single_pass(body)
    stack.deliver(body)
    done = stack.finish()
    assert [d["status"] for d in done] in ([], ["SUCCEEDED"])
    windows = [len(json.loads(d["input"])["Windows"]) for d in done]
    # MPEG-TS has no index; these Matroska files' cues list one keyframe: one window, no fan-out.
    # MPEG-TS has no index, these Matroska files' cues list one keyframe, cover art is one frame:
    # one window, no fan-out. A truncated MP4 fans out and fails as one pass fails, once.
    assert (windows == []) == (kind in ("mkv", "webm_vp9", "ts_open_gop", "cover_art")), windows
    assert (one["Status"] == "Failed") == kind.startswith("truncated_")
    (message,) = stack.received()
    assert comparable(message) == comparable(one)
    assert stack.objects() == one_objects


def test_a_window_out_of_time_stops_and_its_retry_resumes_it(stack: Stack, puts: list[str]) -> None:
    """Windows whose invocations run out of time after a few frames: each stops between frames,
    stores what it did, and the state machine's retry goes on from there. The task ends as one pass,
    and no key is written twice."""
    from vidsnap.local.demo import LambdaContext

    body = task_body(TASKS["exact"])
    one, one_objects = stack.single_pass(body)
    puts.clear()  # the single pass's

    class Short(LambdaContext):
        """Plenty of time for the first 4 questions, then less than the margin."""

        asked = 0

        def get_remaining_time_in_millis(self) -> int:
            self.asked += 1
            return 600_000 if self.asked <= 4 else 5_000

    stack.routes.context = lambda name: Short(name, memory_limit_in_mb=3008)
    stack.deliver(body)
    (done,) = stack.finish()
    assert done["status"] == "SUCCEEDED"
    windows = [e for e in stack.routes.named(FANOUT) if e["Action"] == "window"]
    record = stack.record(one["TaskId"])
    assert len(windows) > record["Windows"]  # some windows took several attempts
    (message,) = stack.received()
    assert comparable(message) == comparable(one)
    assert stack.objects() == one_objects
    assert sorted(puts) == sorted(one_objects)  # every key written once

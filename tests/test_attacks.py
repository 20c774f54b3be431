"""Defences against attacks (docs/LIMITS.md): each test pins one.

- MAX_FRAMES is per task, across jobs (not per job);
- the worker's IAM policy, as template.yaml grants it, covers queue notifications by name or ARN and
  the undo of partial outputs in the extra output bucket (moto enforcing IAM);
- deeply nested JSON is bad input (400 / ended as bad input), never a RecursionError;
- a signed URL is bound to exactly one decoded object key;
- a task lease never outlives the invocation that holds it, so Lambda's retries can take over.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import MemorySink
from moto import mock_aws

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what the project installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from vidsnap.aws.taskstore import create_table
from vidsnap.core.engine import FrameBudget, Limits, run_task
from vidsnap.core.errors import BadRequest
from vidsnap.core.lang import parse_task
from vidsnap.local.synth import make_video

# -- 3. MAX_FRAMES per task, across jobs ----------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 25 fps clip: 50 frames, far more than the limits used below."""
    path = tmp_path_factory.mktemp("attacks") / "clip.mp4"
    make_video(path, duration_s=2, fps=25, width=64, height=36, gop=25, bframes=0)
    return path


def imm_task(*snapshots: dict[str, object]) -> str:
    """An IMM task with one Snapshots entry per item (each its own output prefix)."""
    shots = [
        {"Format": "jpg", "URI": f"s3://out/t{i}/{{index}}.jpg", **extra} for i, extra in enumerate(snapshots)
    ]
    return json.dumps(
        {"Sources": [{"URI": "s3://src/clip.mp4"}], "Targets": [{"Image": {"Snapshots": shots}}]}
    )


def test_the_num_of_all_jobs_together_must_fit_max_frames(clip: Path) -> None:
    """20 targets of 5 frames with MAX_FRAMES 5 wrote 100 objects; now refused before decoding."""
    task = parse_task(imm_task(*[{"Number": 5}] * 20))
    sink = MemorySink()
    with pytest.raises(BadRequest, match=r"100 frames in all.*limit of 5 frames per task \(MAX_FRAMES\)"):
        run_task(task, clip, sink, limits=Limits(max_frames=5))
    assert sink.objects == {}
    # Exactly at the limit is fine.
    outcome = run_task(parse_task(imm_task(*[{"Number": 1}] * 5)), clip, sink, limits=Limits(max_frames=5))
    assert len(outcome.outputs) == len(sink.objects) == 5
    assert outcome.warnings == []


def test_jobs_without_num_share_what_is_left(clip: Path) -> None:
    """10 jobs with num 0 and MAX_FRAMES 5 wrote 50 objects; now 5 in all, with warnings."""
    task = parse_task(imm_task(*[{"Interval": 0.2}] * 10))
    sink = MemorySink()
    outcome = run_task(task, clip, sink, limits=Limits(max_frames=5))
    assert len(outcome.outputs) == len(sink.objects) == 5
    assert all(key.startswith("t0/") for _, key in sink.objects)  # the first job took the lot
    assert "job 1 of 10 stopped at the frame limit of 5 frames per task" in outcome.warnings[0]
    assert all("was skipped" in w for w in outcome.warnings[1:])
    assert len(outcome.warnings) == 10


def test_counted_jobs_keep_their_frames_from_earlier_uncounted_ones(clip: Path) -> None:
    """A num-0 job first cannot starve a later job that asked for a count."""
    task = parse_task(imm_task({"Interval": 0.1}, {"Number": 3, "Mode": "average"}))
    sink = MemorySink()
    outcome = run_task(task, clip, sink, limits=Limits(max_frames=8))
    keys = sorted(key for _, key in sink.objects)
    assert [k for k in keys if k.startswith("t0/")] == [f"t0/{i}.jpg" for i in range(1, 6)]
    assert [k for k in keys if k.startswith("t1/")] == [f"t1/{i}.jpg" for i in range(1, 4)]
    assert len(outcome.outputs) == 8
    assert len(outcome.warnings) == 1


def test_a_job_ending_exactly_at_the_budget_is_not_warned(clip: Path) -> None:
    task = parse_task(imm_task({"Interval": 1}))  # frames at 0 and 1000 ms: two
    outcome = run_task(task, clip, MemorySink(), limits=Limits(max_frames=2))
    assert len(outcome.outputs) == 2
    assert outcome.warnings == []


def test_a_budget_passed_down_counts_every_part() -> None:
    """The budget object later compositions (sprites, animations) draw from."""
    budget = FrameBudget(10, reserved=4)  # a part asking for 4 comes later
    assert budget.start(0) == 6
    budget.spend(6)
    assert budget.remaining == 0
    assert budget.start(4) == 4  # its reservation is still there
    budget.spend(4)
    assert budget.start(0) == 0


def test_the_worker_refuses_a_task_whose_jobs_ask_for_more_than_max_frames(clip: Path) -> None:
    """The worker's own preflight (it does not load the engine to refuse) sums num across jobs."""
    from vidsnap.aws.clients import Clients
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.storage import LocalStore
    from vidsnap.aws.worker import Worker

    sink = MemorySink()
    worker = Worker(
        Settings(source_bucket="src", output_bucket="out", max_frames=5),
        Clients(region="us-east-1"),
        sink=sink,
        store=LocalStore(clip.parent),
    )
    message = worker.handle_task_message(imm_task(*[{"Number": 2}] * 3), "rid")
    assert (message["Status"], message["Code"]) == ("Failed", "InvalidArgument")
    assert "6 frames in all" in message["Message"]
    assert "MAX_FRAMES" in message["Message"]
    assert sink.objects == {}


# -- 6. deeply nested JSON -------------------------------------------------------------------------

#: 200 KB of nesting, as in the attack: a RecursionError in json.loads before the fix.
DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"Sources":' + "[" * 50_000 + "]" * 50_000 + "}"
DEEP_BODIES = [DEEP_LIST, DEEP_OBJECT, '{"UserData": "[[[[", "a":' + "[" * 40 + "]" * 40 + "}"]


@pytest.mark.parametrize("body", DEEP_BODIES, ids=["list", "object", "just-over-the-limit"])
def test_nested_json_is_bad_request_everywhere(body: str) -> None:
    from vidsnap.aws.events import JSONTooDeep, classify_message, load_json

    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_task(body)
    with pytest.raises(JSONTooDeep):
        load_json(body)
    assert classify_message(body) == body  # not an upload: left to parse_task, which refuses it


@pytest.mark.parametrize(
    "text",
    ['"' + '\\"' * 100_000, '"' + '\\"' * 100_000 + "\\", 'a"' * 100_000, "[" + '"' * 100_001],
    ids=["escaped-quotes", "trailing-backslash", "stray-quotes", "odd-quotes"],
)
def test_the_depth_scan_is_linear_on_quote_and_backslash_soup(text: str) -> None:
    """Regression: an unterminated string of escaped quotes made the scan quadratic (minutes)."""
    from vidsnap.aws.events import json_depth, load_json

    assert json_depth(text) <= 1
    with pytest.raises(ValueError, match=r"Unterminated|Expecting|Extra data"):
        load_json(text)


def test_brackets_inside_strings_do_not_count() -> None:
    from vidsnap.aws.events import load_json

    text = json.dumps({"UserData": "[" * 1000 + '\\"{' * 100, "x": [[1]]})
    assert load_json(text)["x"] == [[1]]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("body", DEEP_BODIES[:2], ids=["list", "object"])
def test_a_posted_nested_task_answers_400(tmp_path: Path, body: str, content_type: str) -> None:
    from vidsnap.aws.httpapp import create_app
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.storage import LocalStore

    submitted: list[str] = []

    def submit(message: str) -> str:
        submitted.append(message)
        return "event-id"

    app = create_app(settings=Settings(), store=LocalStore(tmp_path), submit=submit)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/videos/clip.mp4?x-oss-async-process", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == 400, response.text
    assert response.json()["Code"] == "InvalidArgument"
    assert submitted == []


@pytest.fixture
def async_function(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, load_function: Callable[[str], ModuleType]
) -> Iterator[Any]:
    """The asynchronous function's handler, cold, on moto (nothing in it: no call should reach it)."""
    from vidsnap.aws.settings import get_settings

    for name, value in {"SOURCE_BUCKET": "src", "OUTPUT_BUCKET": "out", "TASK_TABLE": "tasks"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws():
        yield load_function("async_snapshots").handler
    get_settings.cache_clear()


def test_a_nested_sqs_body_is_ended_as_bad_input_not_retried(
    async_function: Any, lambda_context: Callable[..., Any]
) -> None:
    """Before: a RecursionError, the record listed in batchItemFailures, retried 4x, dead-lettered."""
    envelope = json.dumps({"Type": "Notification", "Message": DEEP_LIST})
    records = [
        {"messageId": f"m{i}", "eventSource": "aws:sqs", "body": body, "receiptHandle": "r"}
        for i, body in enumerate([DEEP_LIST, DEEP_OBJECT, envelope])
    ]
    context = functools.partial(lambda_context, "vidsnap-AsyncSnapshotsFunction", timeout_s=900)
    assert async_function({"Records": records}, context()) == {"batchItemFailures": []}


# -- 8. a signature is bound to one decoded key ----------------------------------------------------

SECRET = "s3cr3t"
SNAP = "video/snapshot,t_1000,f_jpg,w_80"
#: Keys whose characters mean something in a URL, or are escaped in one.
ODD_KEYS = [
    "v/a?b.mp4",
    "v/a%3Fb.mp4",  # the same bytes as the URL of the one above, but another key
    "v/a#b.mp4",
    "v/a%23b.mp4",
    "v/a\\b.mp4",
    "v/a%5Cb.mp4",
    "v/with space+plus.mp4",
    "v/100%.mp4",
    "v/€.mp4",
    "v/%E2%82%AC.mp4",
    "v/ünï €.mp4",
    "v/a?x-oss-process=t_0&b.mp4",
]


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory, make_media: Callable[[str], Any]) -> Path:
    root = tmp_path_factory.mktemp("odd-keys")
    (root / "v").mkdir()
    data = Path(make_media("mp4_h264").path).read_bytes()
    for key in ODD_KEYS:
        (root / key).write_bytes(data)
    return root


class RawClient:
    """GETs through the ASGI app the way a server does it: the path percent-decoded exactly once.

    (Starlette's TestClient decodes the path twice, so a key with ``%`` in it cannot be asked for.)
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        import asyncio
        from urllib.parse import unquote

        raw_path, _, query = url.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("ascii"),
            "root_path": "",
            "query_string": query.encode("ascii"),
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(self.app(scope, receive, send))
        start = sent[0]
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return start["status"], headers, body


@pytest.fixture
def signed_client(odd_root: Path) -> RawClient:
    from vidsnap.aws.httpapp import create_app
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.storage import LocalStore

    return RawClient(create_app(settings=Settings(signing_secret=SECRET), store=LocalStore(odd_root)))


def test_the_signed_text_is_the_decoded_key(odd_root: Path) -> None:
    from vidsnap.aws.httpapp import sign_url, string_to_sign

    assert string_to_sign("/v/a?b.mp4", SNAP, 42) == f"/v/a?b.mp4\n{SNAP}\n42".encode()
    assert string_to_sign("/v/€.mp4", "", 1) == "/v/€.mp4\n\n1".encode()
    url = sign_url(SECRET, "/v/a?b #€\\%.mp4", SNAP, 42)
    assert url.startswith("/v/a%3Fb%20%23%E2%82%AC%5C%25.mp4?x-oss-process=")


@pytest.mark.parametrize("key", ODD_KEYS)
def test_keys_with_url_characters_can_be_signed(signed_client: RawClient, key: str) -> None:
    import time

    from vidsnap.aws.httpapp import sign_url

    url = sign_url(SECRET, "/" + key, SNAP, int(time.time()) + 300)
    status, headers, body = signed_client.get(url)
    assert status == 200, body
    assert headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("signed", "used"),
    [
        ("v/a?b.mp4", "v/a%3Fb.mp4"),
        ("v/a%3Fb.mp4", "v/a?b.mp4"),
        ("v/a#b.mp4", "v/a%23b.mp4"),
        ("v/a\\b.mp4", "v/a%5Cb.mp4"),
        ("v/a%5Cb.mp4", "v/a\\b.mp4"),
        ("v/€.mp4", "v/%E2%82%AC.mp4"),
        ("v/a?x-oss-process=t_0&b.mp4", "v/a%3Fb.mp4"),
    ],
)
def test_a_signature_serves_one_key_only(signed_client: RawClient, signed: str, used: str) -> None:
    import time
    from urllib.parse import quote

    from vidsnap.aws.httpapp import sign_url

    url = sign_url(SECRET, "/" + signed, SNAP, int(time.time()) + 300)
    query = url.split("?", 1)[1]
    assert signed_client.get(url)[0] == 200
    status, _, body = signed_client.get(f"/{quote(used, safe='/')}?{query}")
    assert status == 403, body
    assert json.loads(body)["Code"] == "AccessDenied"


def test_a_task_id_with_a_line_break_cannot_borrow_a_signature() -> None:
    """``/tasks/a`` + process ``b\\n`` and ``/tasks/a\\nb`` + no process would be the same text."""
    from vidsnap.aws.httpapp import check_signature, sign
    from vidsnap.core.errors import NotAllowed

    expires = 2**40
    signature = sign(SECRET, "/tasks/a", "b\n", expires)
    query = {"x-vidsnap-expires": str(expires), "x-vidsnap-signature": signature}
    check_signature(SECRET, "/tasks/a", "b\n", query)
    with pytest.raises(NotAllowed, match="line break"):
        check_signature(SECRET, "/tasks/a\nb", "", query)


# -- 9. a lease never outlives its invocation ------------------------------------------------------


class Killed(BaseException):
    """The invocation dies mid-task (a Lambda timeout): no handler of the worker runs."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_env(aws_env: None, clip: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A worker's collaborators on moto DynamoDB, with a fake clock; sources from a folder."""
    import shutil

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.settings import Settings, UploadRule
    from vidsnap.aws.storage import LocalStore

    (tmp_path / "videos").mkdir()
    shutil.copy(clip, tmp_path / "videos" / "clip.mp4")
    with mock_aws():
        clients = Clients(region="us-east-1")
        create_table(clients.dynamodb_client, "tasks")
        settings = Settings(
            source_bucket="src",
            output_bucket="out",
            task_table="tasks",
            upload_rules=(UploadRule("videos/", ".mp4", "video/snapshots,f_jpg,num_2,w_32"),),
        )
        yield {"clients": clients, "settings": settings, "store": LocalStore(tmp_path), "clock": Clock(1e9)}


def lease_worker(env: dict[str, Any], sink: MemorySink, time_left: float) -> Any:
    from vidsnap.aws.taskstore import TaskStore
    from vidsnap.aws.worker import Worker

    tasks = TaskStore(env["clients"], "tasks", lease_seconds=900, clock=env["clock"])
    return Worker(
        env["settings"],
        env["clients"],
        sink=sink,
        store=env["store"],
        tasks=tasks,
        time_left=lambda: time_left,
    )


def test_a_retry_after_a_timeout_takes_the_task_over(
    lease_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct S3 -> Lambda: the first invocation times out; Lambda retries ~1 minute later."""
    from vidsnap.aws.events import UploadEvent
    from vidsnap.aws.worker import LEASE_MARGIN_S
    from vidsnap.core import engine

    upload = UploadEvent("src", "videos/clip.mp4", etag="e1")
    clock = lease_env["clock"]
    start = clock.now
    real_run_task = engine.run_task

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    monkeypatch.setattr(engine, "run_task", dies)
    first = lease_worker(lease_env, MemorySink(), time_left=30.0)
    with pytest.raises(Killed):
        first.handle_upload(upload, "invocation-1")
    (record,) = lease_env["clients"].dynamodb_client.scan(TableName="tasks")["Items"]
    assert record["Status"]["S"] == "Running"
    assert int(record["LeaseExpiresAt"]["N"]) == start + 30 + LEASE_MARGIN_S  # not start + 900

    monkeypatch.setattr(engine, "run_task", real_run_task)
    clock.now = start + 30 + 60  # Lambda's first retry, a minute after the timeout
    sink = MemorySink()
    message = lease_worker(lease_env, sink, time_left=900.0).handle_upload(upload, "invocation-2")
    assert message is not None
    assert message["Status"] == "Succeeded"
    assert len(sink.objects) == 2
    (record,) = lease_env["clients"].dynamodb_client.scan(TableName="tasks")["Items"]
    assert (record["Status"]["S"], record["Attempts"]["N"]) == ("Succeeded", "2")


def test_a_live_invocation_keeps_its_task(lease_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the lease (the invocation may still be running) a second delivery backs off."""
    from vidsnap.aws.events import UploadEvent
    from vidsnap.aws.worker import TaskRunning
    from vidsnap.core import engine

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    upload = UploadEvent("src", "videos/clip.mp4", etag="e1")
    monkeypatch.setattr(engine, "run_task", dies)
    with pytest.raises(Killed):
        lease_worker(lease_env, MemorySink(), time_left=300.0).handle_upload(upload, "one")
    lease_env["clock"].now += 299
    with pytest.raises(TaskRunning):
        lease_worker(lease_env, MemorySink(), time_left=900.0).handle_upload(upload, "two")


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_the_handler_leases_for_the_invocation_s_remaining_time(
    aws_env: None,
    clip: Path,
    monkeypatch: pytest.MonkeyPatch,
    load_function: Callable[[str], ModuleType],
    lambda_context: Callable[..., Any],
) -> None:
    import time

    from vidsnap.aws.settings import get_settings
    from vidsnap.aws.worker import LEASE_MARGIN_S
    from vidsnap.core import engine

    rules = json.dumps([{"prefix": "videos/", "suffix": ".mp4", "process": "video/snapshots,f_jpg,num_1"}])
    for name, value in {
        "SOURCE_BUCKET": "src",
        "OUTPUT_BUCKET": "out",
        "TASK_TABLE": "tasks",
        "UPLOAD_RULES": rules,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    monkeypatch.setattr(engine, "run_task", dies)
    try:
        with mock_aws():
            import boto3

            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="src")
            s3.put_object(Bucket="src", Key="videos/clip.mp4", Body=clip.read_bytes())
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            create_table(dynamodb, "tasks")
            event = {
                "Records": [
                    {
                        "eventSource": "aws:s3",
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "src"}, "object": {"key": "videos/clip.mp4"}},
                    }
                ]
            }
            handler = load_function("async_snapshots").handler
            before = time.time()
            with pytest.raises(Killed):
                handler(event, lambda_context("vidsnap-AsyncSnapshotsFunction", timeout_s=42))
            (record,) = dynamodb.scan(TableName="tasks")["Items"]
            lease = int(record["LeaseExpiresAt"]["N"])
            assert before + 30 < lease <= time.time() + 42 + LEASE_MARGIN_S + 1
    finally:
        get_settings.cache_clear()


# -- 4. the worker's IAM policy, as template.yaml grants it ---------------------------------------

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
#: Parameters given to the stack in this test (the others keep their defaults).
STACK_PARAMETERS = {"ExtraOutputBucket": "vidsnap-extra"}
#: Physical names of the stack's resources: what Ref and Fn::GetAtt give.
PHYSICAL: dict[str, dict[str, str]] = {
    "OutputBucket": {"Ref": "vidsnap-output", "Arn": "arn:aws:s3:::vidsnap-output"},
    "TaskQueue": {
        "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/vidsnap-tasks",
        "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:vidsnap-tasks",
        "QueueName": "vidsnap-tasks",
    },
    "TaskDLQ": {
        "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/vidsnap-dlq",
        "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:vidsnap-dlq",
        "QueueName": "vidsnap-dlq",
    },
    "NotifyQueue": {
        "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/vidsnap-notify",
        "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:vidsnap-notify",
        "QueueName": "vidsnap-notify",
    },
    "TaskTopic": {"Ref": f"arn:aws:sns:{REGION}:{ACCOUNT}:vidsnap-done", "TopicName": "vidsnap-done"},
    "TaskTable": {"Ref": "vidsnap-tasks", "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/vidsnap-tasks"},
    "AsyncSnapshotsFunctionRole": {"Ref": "vidsnap-worker-role"},
    "FanoutFunctionRole": {"Ref": "vidsnap-fanout-role"},
    "FanoutStateMachine": {"Ref": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:vidsnap-fanout"},
    "ObjectGetFunctionRole": {"Ref": "vidsnap-object-get-role"},
}
#: SAM policy templates a function's Policies may use, expanded as SAM does (samtranslator's
#: policy_templates_data/policy_templates.json): (actions, resources with the parameter in ${}).
#: None at the moment: both functions list inline statements with only the actions they call.
SAM_POLICY_TEMPLATES: dict[str, tuple[list[str], list[str]]] = {}
#: Services whose calls moto authorises against Resource "*" (it does not work out the resource),
#: so an ARN-scoped Allow can never match there. Their statements get Resource "*" in this test;
#: S3 and SQS SendMessage are checked against the exact resources the template names.
MOTO_RESOURCE_BLIND = ("sns:", "dynamodb:")


#: What ``!Ref AWS::NoValue`` resolves to: the list item or property is dropped.
_NO_VALUE = object()


class Stack:
    """template.yaml resolved for one set of parameters: intrinsic functions, conditions, policies."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.template = template
        self.values = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        self.values.update(parameters)
        self.values.update({"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION})
        self.values["AWS::StackName"] = "vidsnap"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any, local: dict[str, str] | None = None) -> Any:
        import re

        if isinstance(node, list):
            items = [self.resolve(item, local) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref", "Condition")):
            fields = {key: self.resolve(value, local) for key, value in node.items()}
            return {key: value for key, value in fields.items() if value is not _NO_VALUE}
        ((fn, arg),) = node.items()
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return _NO_VALUE
            if local and arg in local:
                return local[arg]
            return self.values[arg] if arg in self.values else PHYSICAL[arg]["Ref"]
        if fn == "Fn::GetAtt":
            resource, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return PHYSICAL[resource][attribute]
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], local))
            names = {**(local or {}), **extra}

            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in names:
                    return str(names[name])
                if "." in name:
                    return str(self.resolve({"Fn::GetAtt": name}))
                return str(self.resolve({"Ref": name}, local))

            return re.sub(r"\$\{([^}!]+)\}", one, text)
        if fn == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no, local)
        if fn == "Fn::Join":
            return str(arg[0]).join(str(v) for v in self.resolve(arg[1], local))
        if fn == "Fn::Equals":
            return self.resolve(arg[0], local) == self.resolve(arg[1], local)
        if fn == "Fn::Not":
            return not self.resolve(arg[0], local)
        if fn == "Fn::And":
            return all(self.resolve(item, local) for item in arg)
        if fn == "Fn::Or":
            return any(self.resolve(item, local) for item in arg)
        if fn == "Fn::Split":
            return str(self.resolve(arg[1], local)).split(arg[0])
        if fn == "Fn::Select":
            return self.resolve(arg[1], local)[int(arg[0])]
        if fn == "Condition":
            return self.condition(arg)
        raise AssertionError(f"intrinsic function {fn} is not handled by this test")

    def environment(self, function: str) -> dict[str, str]:
        """The environment variables ``function`` gets (Globals, then its own)."""
        env = dict(
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        own = self.template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        env.update(own)
        return {name: str(self.resolve(value)) for name, value in env.items()}

    def statements(self, function: str, role: str) -> list[dict[str, Any]]:
        """Every IAM statement the function's role gets: its Policies (SAM templates expanded) and
        the stack's AWS::IAM::RolePolicy / AWS::IAM::Policy resources attached to ``role`` whose
        condition holds."""
        out: list[dict[str, Any]] = []
        for policy in self.template["Resources"][function]["Properties"]["Policies"]:
            ((kind, spec),) = policy.items()
            if kind == "Statement":
                out.extend(self.resolve(spec))
                continue
            actions, resources = SAM_POLICY_TEMPLATES[kind]  # KeyError: add the template's expansion
            params = {name: str(self.resolve(value)) for name, value in spec.items()}
            out.append(
                {
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [self.resolve({"Fn::Sub": r}, params) for r in resources],
                }
            )
        for resource in self.template["Resources"].values():
            if resource["Type"] not in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            props = resource["Properties"]
            if {"Ref": role} not in [props.get("RoleName"), *props.get("Roles", [])]:
                continue
            out.extend(self.resolve(props["PolicyDocument"]["Statement"]))
        return out


def _for_moto(statement: dict[str, Any]) -> dict[str, Any]:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if all(a.startswith(MOTO_RESOURCE_BLIND) for a in actions):
        return {**statement, "Resource": "*"}
    return statement


@pytest.fixture
def stack() -> Stack:
    from cfnlint.decode import decode

    decoded, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert decoded is not None
    return Stack(dict(decoded), STACK_PARAMETERS)


@pytest.fixture
def granted_aws(aws_env: None, stack: Stack, clip: Path) -> Iterator[dict[str, Any]]:
    """The stack's resources on moto, and access keys of a user holding exactly the worker's grants."""
    import boto3

    env = stack.environment("AsyncSnapshotsFunction")
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (env["SOURCE_BUCKET"], env["OUTPUT_BUCKET"], "vidsnap-extra", "vidsnap-elsewhere"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=env["SOURCE_BUCKET"], Key="videos/clip.mp4", Body=clip.read_bytes())
        sqs = boto3.client("sqs", region_name=REGION)
        for name in ("vidsnap-tasks", "vidsnap-notify", "vidsnap-elsewhere"):
            sqs.create_queue(QueueName=name)
        boto3.client("sns", region_name=REGION).create_topic(Name="vidsnap-done")
        create_table(boto3.client("dynamodb", region_name=REGION), env["TASK_TABLE"])
        statements = stack.statements("AsyncSnapshotsFunction", "AsyncSnapshotsFunctionRole")
        session = _user_holding("worker", statements)
        fanout = _user_holding("fanout", stack.statements("FanoutFunction", "FanoutFunctionRole"))
        yield {
            "env": env,
            "session": session,
            "fanout_session": fanout,
            "s3": s3,
            "sqs": sqs,
            "statements": statements,
        }


def _user_holding(name: str, statements: list[dict[str, Any]]) -> Any:
    """A session of a new IAM user whose only policies are ``statements``."""
    import boto3

    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName=name)
    for i, statement in enumerate(statements):
        document = {"Version": "2012-10-17", "Statement": [_for_moto(statement)]}
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )


def _oss_task(env: dict[str, str], process: str) -> str:
    return json.dumps({"Bucket": env["SOURCE_BUCKET"], "Key": "videos/clip.mp4", "Process": process})


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_the_template_grants_what_the_worker_does(granted_aws: dict[str, Any]) -> None:
    """Notifications to the queue by name and by ARN, and the undo of a failed task's outputs in
    the extra output bucket, with nothing but the worker's grants (moto enforcing IAM)."""
    from botocore.exceptions import ClientError
    from moto.core import enable_iam_authentication

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.worker import Worker

    env = granted_aws["env"]
    settings = Settings.from_env(env)
    queue_arn = PHYSICAL["NotifyQueue"]["Arn"]
    by_name = f"video/snapshots,f_jpg,w_32,num_1|notify,queue_{_b64(env['ALLOWED_QUEUES'])}"
    by_arn = f"video/snapshots,f_jpg,w_32,num_2|notify,queue_{_b64(queue_arn)}"
    # Keys 1..9 fit S3's 1024 bytes, key 10 does not: the task fails after nine frames in "extra".
    long_template = "p" * (1024 - len("/.jpg") - 1) + "/{index}.jpg"
    failing = (
        f"video/snapshots,f_jpg,w_32,num_12,inter_100|sys/saveas,b_{_b64('vidsnap-extra')},"
        f"o_{_b64(long_template)}"
    )
    session = granted_aws["session"]
    with enable_iam_authentication():
        worker = Worker(settings, Clients(session, region=REGION, account_id=ACCOUNT))
        named = worker.handle_task_message(_oss_task(env, by_name), "by-name")
        arned = worker.handle_task_message(_oss_task(env, by_arn), "by-arn")
        failed = worker.handle_task_message(_oss_task(env, failing), "undo")
        # And what the template does not grant is refused (the enforcement is real).
        denied = []
        for call in (
            lambda: session.client("s3").put_object(Bucket=env["SOURCE_BUCKET"], Key="x", Body=b"x"),
            lambda: session.client("s3").put_object(Bucket="vidsnap-elsewhere", Key="x", Body=b"x"),
            lambda: session.client("s3").delete_object(Bucket=env["SOURCE_BUCKET"], Key="videos/clip.mp4"),
            lambda: session.client("sqs").send_message(QueueUrl=env["TASK_QUEUE_URL"], MessageBody="x"),
            lambda: session.client("sqs").get_queue_url(QueueName="vidsnap-elsewhere"),
        ):
            with pytest.raises(ClientError) as info:
                call()
            denied.append(info.value.response["ResponseMetadata"]["HTTPStatusCode"])
    assert denied == [403] * 5

    for message in (named, arned):
        assert (message["Status"], message["Warnings"]) == ("Succeeded", []), message
    assert failed["Status"] == "Failed"
    assert "could not be deleted" not in failed["Message"], failed["Message"]
    assert granted_aws["s3"].list_objects_v2(Bucket="vidsnap-extra").get("KeyCount") == 0
    notify_url = PHYSICAL["NotifyQueue"]["Ref"]
    got = granted_aws["sqs"].receive_message(QueueUrl=notify_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["RequestId"] for m in got) == ["by-arn", "by-name"]


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [(None, f"https://sqs.{REGION}.amazonaws.com"), ("http://127.0.0.1:5000", "http://127.0.0.1:5000")],
    ids=["aws", "custom-endpoint"],
)
def test_the_notification_queue_url_needs_no_lookup(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, endpoint: str | None, base: str
) -> None:
    """A queue named by name or ARN in the function's region: the URL is built from the client's
    SQS endpoint (no request, no sqs:GetQueueUrl), for AWS, moto and a moto server alike."""
    import boto3

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.notify import Notifier
    from vidsnap.aws.settings import Settings
    from vidsnap.core.plan import NotifyTarget

    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
    other = f"arn:aws:sqs:{REGION}:999999999999:other"
    settings = Settings(allowed_queues=frozenset({"q", other}))
    clients = Clients(boto3.Session(region_name=REGION), region=REGION, account_id=ACCOUNT)
    calls: list[str] = []
    clients.sqs.meta.events.register("before-call.sqs.*", lambda model, **_: calls.append(model.name))
    notifier = Notifier(clients, settings)
    assert notifier.resolve(NotifyTarget("sqs", "q")) == ("sqs", f"{base}/{ACCOUNT}/q")
    assert notifier.resolve(NotifyTarget("sqs", other)) == ("sqs", f"{base}/999999999999/other")
    assert calls == []


@pytest.fixture
def object_get_aws(aws_env: None, stack: Stack, clip: Path) -> Iterator[dict[str, Any]]:
    """The stack's resources on moto, and a session holding exactly the object-get function's grants."""
    import boto3

    env = stack.environment("ObjectGetFunction")
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (env["SOURCE_BUCKET"], env["OUTPUT_BUCKET"]):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=env["SOURCE_BUCKET"], Key="videos/clip.mp4", Body=clip.read_bytes())
        sqs = boto3.client("sqs", region_name=REGION)
        for name in ("vidsnap-tasks", "vidsnap-notify"):
            sqs.create_queue(QueueName=name)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=env["TASK_TABLE"],
            KeySchema=[{"AttributeName": "TaskId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "TaskId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(
            TableName=env["TASK_TABLE"], Item={"TaskId": {"S": "t-1"}, "Status": {"S": "Succeeded"}}
        )
        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName="object-get")
        statements = stack.statements("ObjectGetFunction", "ObjectGetFunctionRole")
        for i, statement in enumerate(statements):
            document = {"Version": "2012-10-17", "Statement": [_for_moto(statement)]}
            iam.put_user_policy(
                UserName="object-get", PolicyName=f"p{i}", PolicyDocument=json.dumps(document)
            )
        key = iam.create_access_key(UserName="object-get")["AccessKey"]
        session = boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name=REGION,
        )
        yield {"env": env, "session": session, "s3": s3, "statements": statements}


def test_the_template_grants_what_the_object_get_function_does(object_get_aws: dict[str, Any]) -> None:
    """A snapshot from the source, a task put on the queue, a task record read and an oversize
    result stored under the results prefix, with nothing but the object-get function's grants; and
    none of what it does not do (writes elsewhere, deletes, notifications) (moto enforcing IAM)."""
    from botocore.exceptions import ClientError
    from moto.core import enable_iam_authentication

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.httpapp import lambda_app, s3_presigner
    from vidsnap.aws.settings import Settings

    env = object_get_aws["env"]
    session = object_get_aws["session"]
    settings = Settings.from_env(env)
    results = env["RESULTS_PREFIX"]
    with enable_iam_authentication():
        clients = Clients(session, region=REGION, account_id=ACCOUNT)
        with TestClient(lambda_app(settings, clients), raise_server_exceptions=False) as client:
            snapshot = client.get("/videos/clip.mp4", params={"x-oss-process": "video/snapshot,t_1000,f_jpg"})
            missing = client.get("/videos/nothing.mp4", params={"x-oss-process": "video/snapshot,t_0"})
            task = client.post(
                "/videos/clip.mp4?x-oss-async-process",
                data={"x-oss-async-process": ("video/snapshots,f_jpg,num_1")},
            )
            record = client.get("/tasks/t-1")
        url = s3_presigner(session.client("s3"), env["OUTPUT_BUCKET"])(
            f"{results}big.jpg", b"x", "image/jpeg"
        )
        denied = []
        s3 = session.client("s3")
        for call in (
            lambda: s3.put_object(Bucket=env["OUTPUT_BUCKET"], Key="frames/x.jpg", Body=b"x"),
            lambda: s3.put_object(Bucket=env["SOURCE_BUCKET"], Key=f"{results}x.jpg", Body=b"x"),
            lambda: s3.delete_object(Bucket=env["OUTPUT_BUCKET"], Key=f"{results}big.jpg"),
            lambda: s3.delete_object(Bucket=env["SOURCE_BUCKET"], Key="videos/clip.mp4"),
            lambda: session.client("sqs").send_message(
                QueueUrl=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/vidsnap-notify", MessageBody="x"
            ),
        ):
            with pytest.raises(ClientError) as info:
                call()
            denied.append(info.value.response["ResponseMetadata"]["HTTPStatusCode"])
    assert snapshot.status_code == 200, snapshot.text
    assert snapshot.headers["content-type"] == "image/jpeg"
    assert missing.status_code == 404, missing.text  # ListBucket: a missing key is not a 403
    assert task.status_code == 200, task.text
    assert record.status_code == 200, record.text
    assert record.json()["Status"] == "Succeeded"
    assert f"/{results}big.jpg" in url
    assert (
        object_get_aws["s3"].get_object(Bucket=env["OUTPUT_BUCKET"], Key=f"{results}big.jpg")["Body"].read()
        == b"x"
    )
    assert denied == [403] * 5


def test_the_template_grants_what_the_fanout_steps_do(granted_aws: dict[str, Any], clip: Path) -> None:
    """The window, merge and fail steps of a long task with nothing but the fan-out function's
    grants (moto enforcing IAM): read the source, write and delete outputs, the windows' items
    (BatchGetItem), the notification."""
    from moto.core import enable_iam_authentication

    from vidsnap.aws.clients import Clients
    from vidsnap.aws.fanout import Fanout, Run
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.taskstore import TaskStore
    from vidsnap.aws.worker import Worker
    from vidsnap.core.engine import open_video
    from vidsnap.core.lang import parse_task
    from vidsnap.core.plan import SourceRef, task_id
    from vidsnap.core.windows import plan_windows

    env = granted_aws["env"]
    settings = Settings.from_env(env)
    source = SourceRef("videos/clip.mp4", env["SOURCE_BUCKET"])
    etag = granted_aws["s3"].head_object(Bucket=source.bucket, Key=source.key)["ETag"].strip('"')
    admin = TaskStore(Clients(region=REGION, account_id=ACCOUNT), env["TASK_TABLE"])
    runs = []
    for n, process in enumerate(
        ("video/snapshots,f_jpg,w_32,inter_500", "video/snapshots,f_png,w_32,inter_400")
    ):
        body = f"{process}|notify,queue_{_b64(env['ALLOWED_QUEUES'])}"
        task = parse_task(_oss_task(env, body)).with_source(source)
        with open_video(clip, bulk=True) as video:
            plan = plan_windows(video, task, count=2)
        tid = task_id(source, etag, task)
        admin.begin(tid, {}, [source.uri])
        admin.fan_out(tid, f"{tid}-e{n}", len(plan.windows), lease_seconds=600)
        run = Run(
            tid,
            f"{tid}-e{n}",
            task,
            source,
            etag,
            "req",
            "2026-12-02T00:00:00+00:00",
            len(plan.windows),
            plan.totals,
        )
        runs.append((run, plan))
    with enable_iam_authentication():
        steps = Fanout(
            Worker(settings, Clients(granted_aws["fanout_session"], region=REGION, account_id=ACCOUNT))
        )
        (done, plan), (failed, failed_plan) = runs
        for window in plan.windows:
            assert steps.window(done, window)["Outputs"] > 0
        state = {
            "Windows": [w.plain() for w in plan.windows],
            "Counted": [],
            "DurationMs": str(plan.duration_ms),
        }
        assert steps.merge(done, state)["Status"] == "Succeeded"
        steps.window(failed, failed_plan.windows[0])
        assert (
            steps.fail(failed, {"Error": "States.Timeout", "Cause": "a window timed out"})["Status"]
            == "Failed"
        )
    sqs = granted_aws["sqs"]
    queue = sqs.get_queue_url(QueueName=env["ALLOWED_QUEUES"])["QueueUrl"]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    notes = [json.loads(m["Body"]) for m in received]
    assert sorted(n["Status"] for n in notes) == ["Failed", "Succeeded"]
    listed = granted_aws["s3"].list_objects_v2(Bucket=env["OUTPUT_BUCKET"]).get("Contents", [])
    succeeded = next(n for n in notes if n["Status"] == "Succeeded")
    assert sorted(o["Key"] for o in listed) == sorted(o["URI"].split("/", 3)[3] for o in succeeded["Outputs"])

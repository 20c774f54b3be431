"""``vidsnap demo``: the real Lambda handlers, end to end, on an embedded AWS (README: What it is).

What it does, in order (each step prints what happened, where the files are and how long it took):

1. synthesises an 8 s 640×360 H.264 video with B-frames, an AAC audio track and scene cuts;
2. starts an embedded AWS with moto (in-process: ``mock_aws``; no account, no network) and creates
   what ``template.yaml`` creates: the source and output buckets, the task queue (+ dead-letter
   queue) the source bucket notifies on upload, the notification topic, the SQS notification queue,
   the task table; plus a "subscriber" queue on the topic, standing in for the user's consumer;
3. uploads the video; the bucket notification puts an S3 ``ObjectCreated`` event on the task queue;
4. a synchronous snapshot through the function-URL path: a payload 2.0 ``GET`` event (the shape in
   ``events/function-url-get.json``) into ``functions/object_get/app.handler``;
5. the upload trigger: the task queue's messages, wrapped in an SQS event as Lambda's event source
   mapping does, into ``functions/async_snapshots/app.handler``; the upload rule runs a
   ``video/snapshots`` keyframe task (one frame per scene) with save-as and notify; the notification is read
   back from the subscriber queue and the images are downloaded;
6. an IMM-style JSON task sent to the task queue (one frame per second, notification to SQS);
7. a long task split into windows on the fan-out state machine: template.yaml's own definition,
   executed by moto's Step Functions interpreter, its steps served by ``functions/fanout/app.handler``
   (the demo pretends decoding is slow, so that its 8 s clip counts as long);
8. the task record, looked up through the function URL (``GET /tasks/{TaskId}``);
9. a contact sheet of every captured frame with its timestamp.

The handlers are imported from their files (``functions/`` are not packages), after the
environment is set, exactly as the Lambda runtime cold-starts them. Their own log lines (JSON, on
stdout in Lambda) go to ``lambda.log`` in the output folder, so the demo's own story stays readable.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote_plus

import boto3

from vidsnap.aws import settings
from vidsnap.aws.taskstore import create_table
from vidsnap.core import imaging
from vidsnap.core.naming import split_s3_uri
from vidsnap.local import stepfunctions
from vidsnap.local.synth import make_video

__all__ = ["FAKE_AWS_ENV", "DemoError", "find_repo_root", "run_demo"]

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id
SOURCE_BUCKET = "vidsnap-demo-source"
OUTPUT_BUCKET = "vidsnap-demo-output"
TASK_QUEUE = "vidsnap-demo-tasks"
DEAD_LETTER_QUEUE = "vidsnap-demo-tasks-dlq"
TOPIC = "vidsnap-demo-notifications"
SUBSCRIBER_QUEUE = "vidsnap-demo-subscriber"  # the user's consumer of the topic
NOTIFY_QUEUE = "vidsnap-demo-notify"  # the stack's queue for SQS notifications (NotifyQueue)
TASK_TABLE = "vidsnap-demo-tasks"
FANOUT_MACHINE = "vidsnap-demo-fanout"
FANOUT_FUNCTION = "vidsnap-demo-fanout-steps"
#: What makes the demo's 8 s clip a long task: a decoder of 1 Mpx/s (a real one does ~150), windows
#: of 2 s of its decoding.
LONG_TASK_ENV = {
    "FANOUT_DECODE_MPX_PER_SECOND": "1",
    "FANOUT_THRESHOLD_SECONDS": "10",
    "FANOUT_WINDOW_SECONDS": "12",
}
UPLOAD_PREFIX = "uploads/"
VIDEO_KEY = f"{UPLOAD_PREFIX}clip.mp4"

#: The synthesised clip: long enough for a few scenes, small enough to encode in about a second.
CLIP = {"duration_s": 8, "fps": 25, "width": 640, "height": 360, "gop": 50, "bframes": 2}
#: Scene cuts on the keyframes (GOP 50 at 25 fps: 0, 2, 4, 6 s), so "every keyframe" is "one frame per
#: scene". (A dhash rule would be the natural scene detector, but the synthetic scenes scroll fast
#: and the bar pattern has flat areas, so dhash counts their motion as change too.)
SCENE_CUTS = (2.0, 4.0, 6.0)
SYNC_PROCESS = "video/snapshot,t_3000,f_jpg"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def _b64(text: str) -> str:
    """URL-safe base64 without padding, as OSS process strings carry names."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def upload_process() -> str:
    """The upload rule's process: every keyframe, saved to the output bucket, notify the topic."""
    return (
        "video/snapshots,f_jpg,m_key,w_320"
        f"|sys/saveas,b_{_b64(OUTPUT_BUCKET)},o_{_b64('keyframes/{barename}/{index}.{autoext}')}"
        f"/notify,topic_{_b64(TOPIC)}"
    )


def long_task(notify_queue_url: str) -> dict[str, Any]:
    """An OSS task message: a frame every half second, exact, saved and notified to SQS."""
    saveas = f"sys/saveas,b_{_b64(OUTPUT_BUCKET)},o_{_b64('long/{barename}-{index}.{autoext}')}"
    return {
        "Bucket": SOURCE_BUCKET,
        "Key": VIDEO_KEY,
        "Process": f"video/snapshots,f_jpg,inter_500,w_320|{saveas}/notify,queue_{_b64(notify_queue_url)}",
        "UserData": "vidsnap-demo-long",
    }


def imm_task(notify_queue_url: str) -> dict[str, Any]:
    """An IMM ``CreateMediaConvertTask``-style snapshot task: one frame per second, 8 frames."""
    return {
        "Sources": [{"URI": f"s3://{SOURCE_BUCKET}/{VIDEO_KEY}"}],
        "Targets": [
            {
                "Image": {
                    "Snapshots": [
                        {
                            "Format": "jpg",
                            "Mode": "interval",
                            "StartTime": 0,
                            "Interval": 1,
                            "Number": 8,
                            "Width": 320,
                            "URI": f"s3://{OUTPUT_BUCKET}/imm/{{barename}}-{{index}}.{{autoext}}",
                        }
                    ]
                }
            }
        ],
        "Notification": {"SQS": {"QueueUrl": notify_queue_url}},
        "UserData": "vidsnap-demo-imm",
    }


# --------------------------------------------------------------------------------------------------
# locating the functions


def find_repo_root(start: Path | None = None) -> Path:
    """The source checkout holding ``functions/*/app.py`` and ``events/`` (``$VIDSNAP_REPO`` first).

    The handlers are not part of the installed ``vidsnap`` package (in Lambda they are the
    functions' own code, beside the layer), so the demo needs the checkout the package came from.
    """
    candidates: list[Path] = []
    if os.environ.get("VIDSNAP_REPO"):
        candidates.append(Path(os.environ["VIDSNAP_REPO"]))
    here = (start or Path(__file__)).resolve()
    candidates.extend(here.parents)
    for root in candidates:
        if (root / "functions" / "object_get" / "app.py").is_file() and (root / "events").is_dir():
            return root
    raise DemoError(
        "cannot find the Lambda functions (functions/object_get/app.py, functions/async_snapshots/app.py): "
        f"the demo drives the real handlers, which live in the source checkout, not in the installed package "
        f"({here.parent}). Run it from a clone (./dev demo), or set VIDSNAP_REPO to the checkout's path."
    )


def load_handler(path: Path, name: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import a function's ``app.py`` by file path (as the Lambda runtime does) and return ``handler``."""
    if not path.is_file():
        raise DemoError(f"missing Lambda function file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {path} as a module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise DemoError(f"importing {path} failed (its cold start): {type(exc).__name__}: {exc}") from exc
    handler = getattr(module, "handler", None)
    if not callable(handler):
        raise DemoError(f"{path} has no callable 'handler'")
    return handler  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------
# the Lambda side: context objects and event shapes


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and powertools read."""

    function_name: str
    memory_limit_in_mb: int = 2048
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "2025/11/24/[$LATEST]demo"
    timeout_s: float = 900.0
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        """The ARN the function was invoked through."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) timeout."""
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def function_url_event(
    events_dir: Path, method: str, path: str, query: str = "", body: str | None = None
) -> dict[str, Any]:
    """A function URL (payload 2.0) event: ``events/function-url-get.json`` with this request in it."""
    event: dict[str, Any] = json.loads((events_dir / "function-url-get.json").read_text())
    event["rawPath"] = path
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    else:
        event.pop("queryStringParameters", None)
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    event["headers"]["user-agent"] = event["requestContext"]["http"]["userAgent"] = "vidsnap-demo"
    if body is not None:
        event["body"] = body
        event["isBase64Encoded"] = False
    return event


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The SQS event Lambda's event source mapping builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


# --------------------------------------------------------------------------------------------------
# the environment


FAKE_AWS_ENV = {
    # Fake credentials: moto accepts anything, and real ones must never be picked up by accident.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_LAMBDA_FUNCTION_NAME": "vidsnap-demo",
    "POWERTOOLS_SERVICE_NAME": "vidsnap-demo",
    "POWERTOOLS_METRICS_NAMESPACE": "vidsnap-demo",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
#: Variables that would send boto3 somewhere else than moto (a profile, an endpoint, a config file).
UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "SIGNING_SECRET",
    "SIGNING_SECRET_PARAMETER",
)


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str], unset: tuple[str, ...] = ()) -> Iterator[None]:
    """Set and unset environment variables for the duration; restore them afterwards."""
    saved = dict(os.environ)
    try:
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def function_env(task_queue_url: str) -> dict[str, str]:
    """The functions' environment (README: Configuration), as template.yaml sets it."""
    return {
        "SOURCE_BUCKET": SOURCE_BUCKET,
        "OUTPUT_BUCKET": OUTPUT_BUCKET,
        "ALLOWED_OUTPUT_BUCKETS": OUTPUT_BUCKET,
        "ALLOWED_TOPICS": TOPIC,
        "ALLOWED_QUEUES": NOTIFY_QUEUE,
        "TASK_QUEUE_URL": task_queue_url,
        "TASK_TABLE": TASK_TABLE,
        "RESULTS_PREFIX": "_vidsnap/results/",
        "UPLOAD_RULES": json.dumps(
            [{"prefix": UPLOAD_PREFIX, "suffix": ".mp4", "process": upload_process()}]
        ),
        "MAX_FRAMES": "1000",
        "FANOUT_STATE_MACHINE": stepfunctions.state_machine_arn(FANOUT_MACHINE),
    }


# --------------------------------------------------------------------------------------------------
# printing


class Report:
    """The demo's story on stdout: numbered steps, indented details, timings."""

    def __init__(self, stream: TextIO, out: Path, total_steps: int) -> None:
        self.stream = stream
        self.out = out
        self.total = total_steps
        self.step_no = 0
        self.timings: dict[str, float] = {}

    def rel(self, path: Path) -> str:
        """``path`` relative to the current directory when it is under it (shorter lines)."""
        try:
            return str(path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Print a numbered step title, run the body, print its duration."""
        self.step_no += 1
        print(f"\n[{self.step_no}/{self.total}] {title}", file=self.stream, flush=True)
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.timings[title] = round(elapsed, 3)
        print(f"      ({elapsed:.2f} s)", file=self.stream, flush=True)

    def line(self, text: str) -> None:
        """One detail line under the current step."""
        print(f"      {text}", file=self.stream, flush=True)


# --------------------------------------------------------------------------------------------------
# the demo


@dataclass
class Captured:
    """One image the demo wrote, for the contact sheet and the summary."""

    step: str
    path: Path
    time_ms: float | int | None
    data: bytes


@dataclass
class Aws:
    """The embedded AWS resources and clients of one demo run."""

    s3: Any
    sqs: Any
    sns: Any
    dynamodb: Any
    task_queue_url: str
    task_queue_arn: str
    subscriber_queue_url: str
    notify_queue_url: str
    topic_arn: str
    sfn: Any = None


def _check_pieces() -> None:
    """Fail early, naming what is missing, when a module the demo needs is not there (yet)."""
    missing = []
    for module in (
        "moto",
        "vidsnap.local.synth",
        "vidsnap.core.imaging",
        "vidsnap.aws.settings",
        "vidsnap.aws.httpapp",
    ):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{module} ({exc})")
    if missing:
        raise DemoError("the demo cannot run; missing: " + "; ".join(missing))


def _create_state_machine(template: Path) -> Any:
    """The fan-out state machine of template.yaml, its steps the demo's fan-out function."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    asl = stepfunctions.definition(
        template, "FanoutStateMachine", {"FanoutFunctionArn": stepfunctions.function_arn(FANOUT_FUNCTION)}
    )
    sfn.create_state_machine(
        name=FANOUT_MACHINE, definition=asl, roleArn=f"arn:aws:iam::{ACCOUNT}:role/vidsnap-demo-fanout"
    )
    return sfn


def _create_resources() -> Aws:
    """Create what template.yaml creates (and the user's subscriber queue on the topic) in moto."""
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)

    for bucket in (SOURCE_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    task_queue_url = sqs.create_queue(
        QueueName=TASK_QUEUE,
        Attributes={
            "VisibilityTimeout": "5400",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"}),
        },
    )["QueueUrl"]
    task_queue_arn = _queue_arn(sqs, task_queue_url)
    # Uploads reach the async function through the task queue (S3 -> SQS -> Lambda), as deployed:
    # every ObjectCreated is sent; UPLOAD_RULES decide what happens to it.
    s3.put_bucket_notification_configuration(
        Bucket=SOURCE_BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "vidsnap-uploads",
                    "QueueArn": task_queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )
    topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    subscriber_url = sqs.create_queue(QueueName=SUBSCRIBER_QUEUE)["QueueUrl"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=_queue_arn(sqs, subscriber_url))
    results_url = sqs.create_queue(QueueName=NOTIFY_QUEUE)["QueueUrl"]
    create_table(dynamodb, TASK_TABLE)
    return Aws(s3, sqs, sns, dynamodb, task_queue_url, task_queue_arn, subscriber_url, results_url, topic_arn)


def _queue_arn(sqs: Any, url: str) -> str:
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn


def _drain(sqs: Any, queue_url: str, *, expect: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Receive (and delete) messages from a queue until ``expect`` arrived or ``timeout`` passed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        batch = reply.get("Messages", [])
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        got.extend(batch)
        if not batch:
            time.sleep(0.05)
    return got


def _receive_batch(sqs: Any, queue_url: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Receive what is on the queue without deleting it (the event source mapping deletes on success)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        if reply.get("Messages"):
            return list(reply["Messages"])
        time.sleep(0.05)
    return []


def _invoke_sqs(aws: Aws, handler: Callable[..., Any], messages: list[dict[str, Any]]) -> list[str]:
    """Deliver messages as one SQS event; delete the ones not reported failed; return failed ids."""
    result = handler(sqs_event(messages, aws.task_queue_arn), LambdaContext("vidsnap-async-snapshots"))
    failed = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
    for message in messages:
        if message["MessageId"] not in failed:
            aws.sqs.delete_message(QueueUrl=aws.task_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return failed


def _run_tasks(
    aws: Aws,
    handler: Callable[..., Any],
    messages: list[dict[str, Any]],
    *,
    notify_url: str,
    where: str,
    what: str,
    logs_path: Path,
) -> dict[str, Any]:
    """Deliver task-queue messages to the async handler; the notification it sent to ``notify_url``.

    :class:`DemoError` when a record failed, no notification reached the queue (``where`` names it)
    or the task (``what``) did not succeed.
    """
    failed = _invoke_sqs(aws, handler, messages)
    if failed:
        raise DemoError(f"the async handler reported failed records: {failed} (see {logs_path})")
    notes = _drain(aws.sqs, notify_url)
    if not notes:
        raise DemoError(f"no notification reached {where} (see {logs_path})")
    note = _notification(notes[0])
    _expect_succeeded(note, what)
    return note


def _notification(raw: dict[str, Any]) -> dict[str, Any]:
    """The notification document (README) of a received message, out of its SNS envelope if any."""
    body = json.loads(raw["Body"])
    if isinstance(body, dict) and body.get("Type") == "Notification" and "Message" in body:
        body = json.loads(body["Message"])
    if not isinstance(body, dict):
        raise DemoError(f"unexpected notification body: {raw['Body'][:200]}")
    return body


def _download_outputs(aws: Aws, note: dict[str, Any], folder: Path, step: str) -> list[Captured]:
    """Download every ``s3://`` output of a notification to ``folder/<bucket>/<key>``."""
    captured = []
    for output in note.get("Outputs", []):
        uri = str(output["URI"])
        if not uri.startswith("s3://"):
            raise DemoError(f"{step}: output {uri!r} is not an s3:// URI")
        bucket, key = split_s3_uri(uri)
        data = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        path = folder / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        captured.append(Captured(step, path, output.get("TimeMs"), data))
    if not captured:
        raise DemoError(f"the {step} task succeeded but its notification lists no outputs: {note}")
    return captured


def _expect_succeeded(note: dict[str, Any], what: str) -> None:
    if note.get("Status") != "Succeeded":
        raise DemoError(f"{what} ended {note.get('Status')}: {note.get('Code')}: {note.get('Message')}")


def run_demo(out: Path, *, stream: TextIO | None = None) -> int:
    """Run the end-to-end demo, writing images, a contact sheet and ``summary.json`` into ``out``.

    Returns 0 on success; on failure prints which step failed and why on stderr and returns 1.
    """
    stream = stream or sys.stdout
    out = Path(out).resolve()
    report = Report(stream, out, total_steps=9)
    started = time.perf_counter()
    print("vidsnap demo: the real Lambda handlers on an embedded AWS (moto, in-process).", file=stream)
    print("No AWS account, credentials or network are used.", file=stream, flush=True)
    try:
        summary = _run(out, report)
    except DemoError as exc:
        print(f"\nvidsnap demo FAILED at step {report.step_no}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or a broken module: show where, not just what
        traceback.print_exc()
        print(f"\nvidsnap demo FAILED at step {report.step_no}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    summary["timings_s"] = {**report.timings, "total": round(total, 3)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nDone in {total:.1f} s. Everything is in {report.rel(out)}/:", file=stream)
    print(f"  contact sheet   {report.rel(out / 'contact-sheet.png')}", file=stream)
    print(f"  summary         {report.rel(out / 'summary.json')} (notifications, timings)", file=stream)
    print(f"  handler logs    {report.rel(out / 'lambda.log')}", file=stream)
    python = Path(sys.executable)  # not resolved: a venv's python is a symlink to the base one
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    print(f"Look around: {python} -m vidsnap serve --root {report.rel(out)}", file=stream)
    print("             then open http://127.0.0.1:8080/ and move the slider", file=stream)
    return 0


def _run(out: Path, report: Report) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    logs_path = out / "lambda.log"
    # Everything the handlers and the layer print (powertools' JSON log lines go to stdout, as in
    # Lambda, from loggers created when vidsnap modules are first imported) goes to lambda.log; the
    # report keeps the real stdout it was given.
    with logs_path.open("w") as logs, contextlib.redirect_stdout(logs):
        return _run_logged(out, report, logs_path)


def _run_logged(out: Path, report: Report, logs_path: Path) -> dict[str, Any]:
    _check_pieces()
    repo = find_repo_root()
    events_dir = repo / "events"
    for stale in ("sync", OUTPUT_BUCKET):  # a previous run's images must not pass for this run's
        _rmtree(out / stale)
    summary: dict[str, Any] = {"repo": str(repo)}
    captured: list[Captured] = []

    with report.step("Synthesise a sample video"):
        clip = out / "clip.mp4"
        info = make_video(clip, audio=True, scene_cuts=SCENE_CUTS, **CLIP)  # type: ignore[arg-type]
        report.line(
            f"{report.rel(clip)}: {float(info.duration_s):.1f} s, {info.width}×{info.height}, H.264 with "
            f"B-frames (GOP {CLIP['gop']}), AAC audio, {info.frame_count} frames, "
            f"scene cuts at {', '.join(f'{s:g}' for s in SCENE_CUTS)} s; {clip.stat().st_size / 1e6:.2f} MB"
        )

    # moto is a development dependency, not part of the Lambda layer this module ships in.
    from moto import mock_aws

    with (
        patched_environ(FAKE_AWS_ENV, UNSET_ENV),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),  # type: ignore[arg-type]
        contextlib.ExitStack() as routes,
    ):
        with report.step("Start the embedded AWS and create the stack's resources"):
            aws = _create_resources()
            aws.sfn = _create_state_machine(repo / "template.yaml")
            report.line(f"buckets     s3://{SOURCE_BUCKET} (sources), s3://{OUTPUT_BUCKET} (outputs)")
            report.line(
                f"task queue  {TASK_QUEUE} (+ {DEAD_LETTER_QUEUE}), fed by the source bucket's uploads"
            )
            report.line(f"topic       {TOPIC} -> subscriber queue {SUBSCRIBER_QUEUE}")
            report.line(f"table       {TASK_TABLE}; SQS notification queue {NOTIFY_QUEUE}")
            report.line(f"state machine {FANOUT_MACHINE}: template.yaml's FanoutStateMachine definition")
            env = function_env(aws.task_queue_url)
            os.environ.update(env)
            report.line(f"upload rule {UPLOAD_PREFIX}*.mp4 -> {upload_process()}")
            _clear_settings_cache()
            # Cold starts: the handlers read their settings now, from the environment just set.
            functions = repo / "functions"
            object_get = load_handler(functions / "object_get" / "app.py", "vidsnap_demo_object_get")
            async_snapshots = load_handler(
                functions / "async_snapshots" / "app.py", "vidsnap_demo_async_snapshots"
            )
            fanout = load_handler(functions / "fanout" / "app.py", "vidsnap_demo_fanout")
            steps = stepfunctions.LambdaRoutes(
                {FANOUT_FUNCTION: fanout}, lambda name: LambdaContext(name, timeout_s=900)
            )
            routes.enter_context(steps.installed())
            report.line("handlers    functions/{object_get,async_snapshots,fanout}/app.py, cold-started")

        with report.step(f"Upload the video to s3://{SOURCE_BUCKET}/{VIDEO_KEY}"):
            aws.s3.upload_file(str(clip), SOURCE_BUCKET, VIDEO_KEY, ExtraArgs={"ContentType": "video/mp4"})
            head = aws.s3.head_object(Bucket=SOURCE_BUCKET, Key=VIDEO_KEY)
            report.line(f"{head['ContentLength']} bytes, ETag {head['ETag']}; S3 notifies the task queue")

        with report.step("Synchronous snapshot through the function URL"):
            query = f"x-oss-process={SYNC_PROCESS}"
            event = function_url_event(events_dir, "GET", "/" + VIDEO_KEY, query)
            reply = object_get(event, LambdaContext("vidsnap-object-get"))
            status = reply.get("statusCode")
            headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
            raw_body = reply.get("body") or ""
            body = base64.b64decode(raw_body) if reply.get("isBase64Encoded") else raw_body.encode()
            report.line(
                f"GET /{VIDEO_KEY}?{query} -> {status} {headers.get('content-type')}, {len(body)} bytes"
            )
            if status != 200:
                raise DemoError(f"the function URL answered {status}: {body[:500]!r}")
            if not body.startswith(b"\xff\xd8"):
                raise DemoError("the function URL's answer is not a JPEG")
            time_ms = headers.get("x-vidsnap-time-ms")
            sync_path = out / "sync" / "clip_t3000.jpg"
            sync_path.parent.mkdir(parents=True, exist_ok=True)
            sync_path.write_bytes(body)
            captured.append(Captured("sync", sync_path, _num(time_ms), body))
            size = f"{headers.get('x-vidsnap-width')}×{headers.get('x-vidsnap-height')}"
            report.line(
                f"frame shown at {time_ms} ms, {size}, ETag {headers.get('etag')} -> {report.rel(sync_path)}"
            )
            summary["sync"] = {"status": status, "headers": headers, "path": str(sync_path)}

        with report.step("Upload trigger: S3 event via SQS into the async function (every keyframe)"):
            messages = _receive_batch(aws.sqs, aws.task_queue_url)
            if not messages:
                raise DemoError("the upload put no S3 event on the task queue")
            kinds = [_describe_message(m) for m in messages]
            report.line(f"task queue delivered {len(messages)} message(s): {', '.join(kinds)}")
            note = _run_tasks(
                aws,
                async_snapshots,
                messages,
                notify_url=aws.subscriber_queue_url,
                where="the topic's subscriber queue",
                what="the upload task",
                logs_path=logs_path,
            )
            upload_images = _download_outputs(aws, note, out, "upload")
            captured.extend(upload_images)
            times = ", ".join(str(c.time_ms) for c in upload_images)
            report.line(
                f"notification via SNS: {note['Status']}, task {note.get('TaskId')}, {len(upload_images)} "
                f"keyframe(s) at {times} ms"
            )
            report.line(f"images -> {report.rel(upload_images[0].path.parent)}/")
            summary["upload_notification"] = note

        with report.step("IMM-style JSON task via the task queue (one frame per second, notify SQS)"):
            task = imm_task(aws.notify_queue_url)
            aws.sqs.send_message(QueueUrl=aws.task_queue_url, MessageBody=json.dumps(task))
            messages = _receive_batch(aws.sqs, aws.task_queue_url)
            imm_note = _run_tasks(
                aws,
                async_snapshots,
                messages,
                notify_url=aws.notify_queue_url,
                where=NOTIFY_QUEUE,
                what="the IMM task",
                logs_path=logs_path,
            )
            imm_images = _download_outputs(aws, imm_note, out, "imm")
            captured.extend(imm_images)
            report.line(
                f"notification via SQS: {imm_note['Status']}, task {imm_note.get('TaskId')}, "
                f"{len(imm_images)} frame(s) at {', '.join(str(c.time_ms) for c in imm_images)} ms"
            )
            report.line(f"images -> {report.rel(imm_images[0].path.parent)}/")
            summary["imm_notification"] = imm_note

        with report.step("A long task in windows on the fan-out state machine (Distributed Map)"):
            summary["long_task"] = _long_task(
                aws, functions, out, report, captured=captured, logs_path=logs_path
            )

        with report.step("Task record through the function URL (GET /tasks/{TaskId})"):
            tid = str(imm_note.get("TaskId"))
            event = function_url_event(events_dir, "GET", f"/tasks/{tid}")
            reply = object_get(event, LambdaContext("vidsnap-object-get"))
            raw = reply.get("body") or ""
            text = base64.b64decode(raw).decode() if reply.get("isBase64Encoded") else raw
            if reply.get("statusCode") != 200:
                raise DemoError(f"GET /tasks/{tid} answered {reply.get('statusCode')}: {text[:500]}")
            record = json.loads(text)
            report.line(
                f"GET /tasks/{tid} -> 200: Status {record.get('Status')}, Progress {record.get('Progress')}"
            )
            summary["task_record"] = record

    with report.step("Contact sheet of every captured frame"):
        sheet = _contact_sheet(captured)
        sheet_path = out / "contact-sheet.png"
        sheet_path.write_bytes(sheet)
        report.line(f"{len(captured)} frames -> {report.rel(sheet_path)}")
    summary["images"] = [{"step": c.step, "path": str(c.path), "TimeMs": c.time_ms} for c in captured]
    return summary


def _long_task(
    aws: Aws, functions: Path, out: Path, report: Report, *, captured: list[Captured], logs_path: Path
) -> dict[str, Any]:
    """Step 7: a task the worker hands to the state machine; its windows, merge and notification."""
    report.line(
        "the worker is told decoding runs at 1 Mpx/s (LONG_TASK_ENV), so this 8 s clip is estimated "
        "above FANOUT_THRESHOLD_SECONDS"
    )
    with patched_environ({**os.environ, **LONG_TASK_ENV}):
        _clear_settings_cache()
        worker = load_handler(functions / "async_snapshots" / "app.py", "vidsnap_demo_async_long")
        aws.sqs.send_message(
            QueueUrl=aws.task_queue_url, MessageBody=json.dumps(long_task(aws.notify_queue_url))
        )
        with stepfunctions.ONE_INVOCATION:  # the steps start only once the worker has returned
            failed = _invoke_sqs(aws, worker, _receive_batch(aws.sqs, aws.task_queue_url))
    _clear_settings_cache()
    if failed:
        raise DemoError(f"the async handler reported failed records: {failed} (see {logs_path})")
    machine = stepfunctions.state_machine_arn(FANOUT_MACHINE)
    executions = aws.sfn.list_executions(stateMachineArn=machine)["executions"]
    if len(executions) != 1:
        raise DemoError(f"expected one execution of {FANOUT_MACHINE}, found {len(executions)}")
    done = stepfunctions.wait(aws.sfn, executions[0]["executionArn"])
    windows = json.loads(done["input"])["Windows"]
    spans = ", ".join(
        f"{float(Fraction(w['StartMs'])) / 1000:g}-"
        + (f"{float(Fraction(w['EndMs'])) / 1000:g}" if w["EndMs"] else "end")
        + " s"
        for w in windows
    )
    report.line(f"execution {done['name']}: {done['status']}, {len(windows)} windows ({spans})")
    notes = _drain(aws.sqs, aws.notify_queue_url)
    if len(notes) != 1:
        raise DemoError(f"expected one notification of the long task, got {len(notes)} (see {logs_path})")
    note = _notification(notes[0])
    _expect_succeeded(note, "the long task")
    images = _download_outputs(aws, note, out, "long")
    captured.extend(images)
    record = aws.dynamodb.get_item(TableName=TASK_TABLE, Key={"TaskId": {"S": note["TaskId"]}})["Item"]
    done_windows = sorted(int(n) for n in record["WindowsDone"]["NS"])
    report.line(
        f"merged into one notification: {note['Status']}, {len(images)} frames at "
        f"{', '.join(str(c.time_ms) for c in images)} ms; record: Windows {record['Windows']['N']}, "
        f"WindowsDone {done_windows}, Progress {record['Progress']['N']}"
    )
    report.line(f"images -> {report.rel(images[0].path.parent)}/")
    return {
        "execution": done["executionArn"],
        "status": done["status"],
        "windows": windows,
        "notification": note,
    }


def _contact_sheet(captured: list[Captured]) -> bytes:
    sheet = getattr(imaging, "contact_sheet", None)
    if sheet is None:
        raise DemoError("vidsnap.core.imaging.contact_sheet is missing; cannot make the contact sheet")
    items = [(c.data, f"{c.step}  t={c.time_ms} ms") for c in captured]
    data: bytes = sheet(items, columns=5, thumb_width=256)
    return data


def _describe_message(message: dict[str, Any]) -> str:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        return "a non-JSON message"
    if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
        return "s3:TestEvent (ignored)"
    if isinstance(body, dict) and body.get("Records"):
        record = body["Records"][0]
        key = unquote_plus(record["s3"]["object"]["key"])  # S3 event keys are URL-encoded
        return f"{record.get('eventName')} s3://{record['s3']['bucket']['name']}/{key}"
    return "a task message"


def _num(text: str | None) -> float | int | None:
    if text is None:
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def _clear_settings_cache() -> None:
    """Forget settings cached by an earlier run in this process (the handlers re-read the env)."""
    cached = getattr(settings, "get_settings", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def _rmtree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)

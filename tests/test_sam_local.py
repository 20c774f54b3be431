"""The SAM application as it ships, under ``sam local`` against moto (README: Try the real packaging locally).

What runs: the output of ``sam build`` (the session's build, shared with test_packaging.py), in
containers of a Lambda-like runtime image made locally from Debian packages with the template's
Python (tools/samlocal.py), with SAM's Runtime Interface Emulator; AWS is moto's server on the
Docker bridge address. Every sample event in events/ goes to the function that takes it, and each
answer is checked against what moto then holds: the image decodes to the exact frame, the objects
written, the notification published, the task message queued, the batch item failures.

- ``sam local invoke`` once (the function URL GET, as a user would type it): one container start.
- ``sam local start-lambda --warm-containers EAGER`` for the rest: one container per function,
  invoked through Lambda's API with boto3, so the events cost seconds, not a container each.

It is one test with a subtest per event: under xdist every test could land on another worker, and
each worker would start its own containers (xdist_group does not group with pytest 9 and xdist
3.8: the group suffix is written to an attribute pytest no longer reads).

Needs a Docker daemon and, the first time, root with debootstrap to build the image: ``./dev test``
installs and starts what is missing when it runs as root with apt, and then sets
``VIDSNAP_SAM_LOCAL=required`` so that these tests fail rather than skip. Elsewhere they skip and
say why.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import samlocal
from PIL import Image
from test_packaging import SAM_SPEC, Built, built  # noqa: F401 - the session's sam build, shared

from vidsnap.core.engine import snapshot
from vidsnap.core.lang import parse_sync
from vidsnap.local import synth

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
REQUIRED = os.environ.get("VIDSNAP_SAM_LOCAL") == "required"
#: What events/s3-put.json's upload produces with samlocal.UPLOAD_PROCESS (num_3, {barename}/{index}).
EXPECTED_UPLOAD_OUTPUTS = ["my clip+1/1.jpg", "my clip+1/2.jpg", "my clip+1/3.jpg"]
TIMINGS: dict[str, float] = {}


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"VIDSNAP_SAM_LOCAL=required but {reason}")
    pytest.skip(reason)


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@dataclass
class Stack:
    """Everything the tests talk to."""

    aws: samlocal.LocalAws
    lam: samlocal.StartLambda
    sam: Path
    template: Path
    env_file: Path
    workdir: Path
    clip: synth.SynthInfo
    clip_bytes: bytes

    def seed(self) -> None:
        """A fresh moto with the resources the events name (each test starts from this)."""
        self.aws.seed(self.clip_bytes)

    def invoke(self, function: str, name: str) -> Any:
        """Invoke ``function`` with events/``name`` (fitted to this moto) through start-lambda."""
        invoked = self.lam.invoke(function, self.aws.prepare_event(load_event(name)))
        TIMINGS[f"{function} {name}"] = invoked.seconds
        assert invoked.error is None, (invoked.error, invoked.payload, self.lam.log_path.read_text()[-3000:])
        return invoked.payload


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    make_media: Callable[[str], synth.SynthInfo],
) -> Iterator[Stack]:
    problem = samlocal.docker_problem()
    if problem:
        _unavailable(problem)
    runtime = samlocal.template_runtime()
    problem = samlocal.image_problem(runtime)
    if problem:
        _unavailable(f"no runtime image {runtime.image}: {problem}")
    TIMINGS["runtime image build (0 = cached)"] = samlocal.ensure_image(runtime)
    build: Built = request.getfixturevalue("built")  # after the checks: a skip costs no build
    sam = samlocal.ensure_sam()
    workdir = tmp_path_factory.mktemp("sam-local")
    clip = make_media("mp4_h264")
    aws = samlocal.LocalAws(samlocal.bridge_address()).start()
    lam: samlocal.StartLambda | None = None
    seen: set[str] = set()
    try:
        # Next to the built template (its code paths are relative), one per xdist worker.
        template = samlocal.local_template(
            build.build_dir, aws.endpoint, name=f"template-local-{os.getpid()}.json"
        )
        env_file = workdir / "env.json"
        env_file.write_text(json.dumps(samlocal.function_env(aws.endpoint)))
        lam = samlocal.StartLambda(sam, template, env_file, workdir=workdir).start()
        TIMINGS["start-lambda up (image with the layer, 2 warm containers)"] = lam.started_in
        seen = samlocal.rapid_image_ids(runtime)  # replaced later by sam local invoke's rebuild
        yield Stack(aws, lam, sam, template, env_file, workdir, clip, Path(clip.path).read_bytes())
    finally:
        if lam is not None:
            lam.stop()
        aws.stop()
        samlocal.remove_rapid_images(runtime, seen)
        print("\nsam local timings (s): " + ", ".join(f"{k}: {v:.1f}" for k, v in TIMINGS.items()))


# --------------------------------------------------------------------------------------------------
# helpers


def frame_index(info: synth.SynthInfo, t_ms: int) -> int:
    """The exact frame at ``t_ms``: the last one shown at or before it."""
    target = Fraction(t_ms, 1000)
    return max(i for i, t in enumerate(info.times_s) if t <= target)


def decode(data: bytes) -> tuple[int, np.ndarray[Any, Any]]:
    """An answer image: the frame counter drawn into it, and its RGB pixels."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return synth.read_counter(av.VideoFrame.from_image(image)), np.asarray(image, dtype=np.int16)


def assert_exact_frame(stack: Stack, data: bytes, process: str, t_ms: int) -> None:
    """The image shows the frame at ``t_ms``, and matches vidsnap's own rendering in this process
    (the same pixels up to the JPEG encoder of another Pillow build)."""
    counter, pixels = decode(data)
    assert counter == frame_index(stack.clip, t_ms)
    with open(stack.clip.path, "rb") as source:
        local = snapshot(source, parse_sync(process))
    local_counter, local_pixels = decode(local.data)
    assert local_counter == counter
    assert pixels.shape == local_pixels.shape
    assert float(np.abs(pixels - local_pixels).mean()) < 2.0


def function_url_body(answer: dict[str, Any]) -> bytes:
    body = str(answer.get("body") or "")
    return base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()


# --------------------------------------------------------------------------------------------------
# sam local invoke, as typed by a user


def check_sam_local_invoke_function_url_get_gives_the_exact_frame(stack: Stack) -> None:
    stack.seed()
    event = stack.aws.prepare_event(load_event("function-url-get.json"))
    invoked = samlocal.sam_invoke(
        stack.sam, stack.template, stack.env_file, "ObjectGetFunction", event, workdir=stack.workdir
    )
    TIMINGS["sam local invoke ObjectGetFunction function-url-get.json"] = invoked.seconds
    answer = invoked.payload
    assert answer["statusCode"] == 200, (answer, invoked.log[-3000:])
    assert answer["headers"]["content-type"] == "image/jpeg"
    assert f"({samlocal.template_runtime().name})" in invoked.log  # "Invoking app.handler (python3.13)"
    assert_exact_frame(stack, function_url_body(answer), "video/snapshot,t_1000,f_jpg,w_320", 1000)


def test_the_same_sam_cli_as_the_packaging_test() -> None:
    assert samlocal.SAM_SPEC == SAM_SPEC  # one SAM venv for both


# --------------------------------------------------------------------------------------------------
# every sample event through start-lambda


def check_function_url_get(stack: Stack) -> None:
    stack.seed()
    answer = stack.invoke("ObjectGetFunction", "function-url-get.json")
    assert answer["statusCode"] == 200, answer
    headers = answer["headers"]
    assert headers["content-type"] == "image/jpeg"
    assert headers["x-vidsnap-time-ms"] == "1000"
    assert (headers["x-vidsnap-width"], headers["x-vidsnap-height"]) == ("320", "180")
    assert headers["etag"].startswith('"')
    assert_exact_frame(stack, function_url_body(answer), "video/snapshot,t_1000,f_jpg,w_320", 1000)


def check_function_url_post_queues_the_task(stack: Stack) -> None:
    stack.seed()
    answer = stack.invoke("ObjectGetFunction", "function-url-post.json")
    assert answer["statusCode"] == 200, answer
    body = json.loads(function_url_body(answer))
    assert body["TaskId"].startswith("vs-")
    (task,) = stack.aws.drain(samlocal.TASK_QUEUE)
    assert (task["Bucket"], task["Key"]) == (samlocal.SOURCE_BUCKET, samlocal.CLIP)
    assert task["Process"].startswith("video/snapshots,f_jpg,m_avg,num_2,w_160|sys/saveas,o_")


def check_function_url_task_status(stack: Stack) -> None:
    stack.seed()
    assert stack.invoke("ObjectGetFunction", "function-url-get-task.json")["statusCode"] == 404
    task_id = load_event("function-url-get-task.json")["rawPath"].rsplit("/", 1)[1]
    stack.aws.client("dynamodb").put_item(
        TableName=samlocal.TASK_TABLE,
        Item={"TaskId": {"S": task_id}, "Status": {"S": "Succeeded"}, "Progress": {"N": "100"}},
    )
    answer = stack.invoke("ObjectGetFunction", "function-url-get-task.json")
    assert answer["statusCode"] == 200, answer
    record = json.loads(function_url_body(answer))
    assert record == {"TaskId": task_id, "Status": "Succeeded", "Progress": 100}


def check_object_lambda_answers_through_write_get_object_response(stack: Stack) -> None:
    """moto lacks WriteGetObjectResponse: samlocal's layer in front of moto answers and records it."""
    stack.seed()
    result = stack.invoke("ObjectGetFunction", "object-lambda.json")
    assert result["status_code"] == 200, result
    assert stack.aws.recorder is not None
    (call,) = stack.aws.recorder.calls
    assert call["headers"]["x-amz-request-route"] == "io-use1-001"
    assert call["headers"]["x-amz-request-token"] == "OutputTokenEXAMPLE"
    assert call["headers"].get("x-amz-fwd-header-content-type") == "image/jpeg", call["headers"]
    # The user's URL asks for t_1000,f_jpg,w_320 (it wins over the access point's payload).
    assert_exact_frame(stack, call["body"], "video/snapshot,t_1000,f_jpg,w_320", 1000)


def check_upload_event_writes_frames_and_notifies(stack: Stack, name: str, expected: dict[str, Any]) -> None:
    """One upload, in the envelope of events/``name``: three frames, one notification, one record."""
    stack.seed()
    assert stack.invoke("AsyncSnapshotsFunction", name) == expected
    assert stack.aws.keys() == EXPECTED_UPLOAD_OUTPUTS
    (note,) = stack.aws.drain(samlocal.INBOX_QUEUE)
    assert note["Status"] == "Succeeded", note
    assert note["Sources"] == [{"URI": f"s3://{samlocal.SOURCE_BUCKET}/{samlocal.UPLOAD}"}]
    assert [o["URI"] for o in note["Outputs"]] == [
        f"s3://{samlocal.OUTPUT_BUCKET}/{key}" for key in EXPECTED_UPLOAD_OUTPUTS
    ]
    record = stack.aws.client("dynamodb").get_item(
        TableName=samlocal.TASK_TABLE, Key={"TaskId": {"S": note["TaskId"]}}
    )
    assert record["Item"]["Status"]["S"] == "Succeeded"
    # The frames are the upload's: evenly spaced (m_avg), 80 px wide JPEGs.
    s3 = stack.aws.client("s3")
    for output in note["Outputs"]:
        data = s3.get_object(Bucket=samlocal.OUTPUT_BUCKET, Key=output["URI"].split("/", 3)[3])["Body"].read()
        counter, pixels = decode(data)
        assert pixels.shape[1] == 80
        assert counter == frame_index(stack.clip, int(output["TimeMs"]))


def check_s3_test_event_is_ignored(stack: Stack) -> None:
    stack.seed()
    assert stack.invoke("AsyncSnapshotsFunction", "sqs-s3-test-event.json") == {"batchItemFailures": []}
    assert stack.aws.keys() == []
    assert stack.aws.drain(samlocal.INBOX_QUEUE) == []


def check_sqs_task_batch_with_its_bad_record(stack: Stack) -> None:
    stack.seed()
    # The malformed third record is a permanent failure: dropped and logged, not retried.
    assert stack.invoke("AsyncSnapshotsFunction", "sqs-task-batch.json") == {"batchItemFailures": []}
    assert stack.aws.keys() == ["imm/clip-1.png", "imm/clip-2.png", "oss/clip_1.jpg", "oss/clip_2.jpg"]
    # The IMM job: frames at 0 s and 0.5 s, 160 px wide PNGs (lossless: the exact frames).
    s3 = stack.aws.client("s3")
    for key, t_ms in (("imm/clip-1.png", 0), ("imm/clip-2.png", 500)):
        counter, pixels = decode(s3.get_object(Bucket=samlocal.OUTPUT_BUCKET, Key=key)["Body"].read())
        assert counter == frame_index(stack.clip, t_ms)
        assert pixels.shape[1] == 160


def check_sqs_batch_reports_a_transient_failure(stack: Stack) -> None:
    """The other side of the list: with the task table gone (an AWS failure, not the task's), the
    two good records are reported for SQS to retry; the malformed one still is not."""
    stack.seed()
    stack.aws.client("dynamodb").delete_table(TableName=samlocal.TASK_TABLE)
    result = stack.invoke("AsyncSnapshotsFunction", "sqs-task-batch.json")
    records = load_event("sqs-task-batch.json")["Records"]
    assert result == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records[:2]]}
    assert stack.aws.keys() == []


# --------------------------------------------------------------------------------------------------
# the test


#: (subtest name, check) in order; each check starts from a freshly seeded moto.
CHECKS: list[tuple[str, Callable[[Stack], None]]] = [
    (
        "sam local invoke: function-url-get.json",
        check_sam_local_invoke_function_url_get_gives_the_exact_frame,
    ),
    ("function-url-get.json", check_function_url_get),
    ("function-url-post.json", check_function_url_post_queues_the_task),
    ("function-url-get-task.json", check_function_url_task_status),
    ("object-lambda.json", check_object_lambda_answers_through_write_get_object_response),
    *[
        (name, functools.partial(check_upload_event_writes_frames_and_notifies, name=name, expected=expected))
        for name, expected in [
            ("s3-put.json", {"uploads": 1}),
            ("sqs-s3-put.json", {"batchItemFailures": []}),
            ("sns-sqs-s3-put.json", {"batchItemFailures": []}),
            ("eventbridge-s3.json", {"uploads": 1}),
        ]
    ],
    ("sqs-s3-test-event.json", check_s3_test_event_is_ignored),
    ("sqs-task-batch.json", check_sqs_task_batch_with_its_bad_record),
    ("sqs-task-batch.json, no task table", check_sqs_batch_reports_a_transient_failure),
]


def test_every_sample_event_is_covered() -> None:
    covered = {name.split(",")[0].removeprefix("sam local invoke: ") for name, _ in CHECKS}
    assert covered == {p.name for p in EVENTS.glob("*.json")}


def test_sam_local_answers_every_sample_event(
    stack: Stack, subtests: pytest.Subtests, record_property: Callable[[str, object], None]
) -> None:
    for name, check in CHECKS:
        with subtests.test(msg=name):
            check(stack)
    # Shown at the end of the run by conftest.py's terminal summary (also under xdist).
    record_property("sam_local_seconds", {k: round(v, 1) for k, v in TIMINGS.items()})

"""The HTTP surface (README): vidsnap.aws.httpapp over a LocalStore and over S3 (moto)."""

from __future__ import annotations

import io
import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import av
import boto3
import pytest
from moto import mock_aws
from PIL import Image

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what the project installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from vidsnap.aws.httpapp import (
    PUBLIC_TASK_FIELDS,
    REQUEST_ID_HEADER,
    create_app,
    s3_presigner,
    sign_url,
    sqs_submitter,
)
from vidsnap.aws.settings import Settings
from vidsnap.aws.storage import LocalStore, S3Store
from vidsnap.aws.taskstore import TaskStore, create_table
from vidsnap.core.errors import NotFound, Throttled
from vidsnap.local import synth
from vidsnap.local.serve import index_page
from vidsnap.local.synth import make_video

CLIP = "videos/clip.mp4"
SNAP = "video/snapshot,t_1000,f_jpg,w_80"


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory, make_media: Callable[[str], Any]) -> Path:
    root = tmp_path_factory.mktemp("httpapp-media")
    clip = make_media("mp4_h264")  # 3 s, 160x90, 25 fps, counter in every frame
    (root / "videos").mkdir()
    shutil.copy(clip.path, root / CLIP)
    (root / "videos" / "notes.mp4").write_bytes(b"this is not a video at all " * 20)
    data = Path(clip.path).read_bytes()
    (root / "videos" / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "videos" / "my clip+1.mp4").write_bytes(data)
    return root


@pytest.fixture
def local_client(media_root: Path) -> TestClient:
    return TestClient(create_app(settings=Settings(), store=LocalStore(media_root), index_page=index_page))


def _url(key: str, process: str = SNAP) -> str:
    return f"/{quote(key)}?x-oss-process={process}"


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) >= {"Code", "Message", "RequestId"}
    assert body["RequestId"] == response.headers[REQUEST_ID_HEADER]
    assert "Traceback" not in response.text
    return body


def _counter(png: bytes) -> int:
    return synth.read_counter(av.VideoFrame.from_image(Image.open(io.BytesIO(png)).convert("RGB")))


# -- images ----------------------------------------------------------------------------------------


def test_snapshot_jpeg_has_type_size_etag_cache_and_request_id(local_client: TestClient) -> None:
    r = local_client.get(_url(CLIP))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (80, 45)
    etag = r.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert not etag.startswith("W/")
    assert "max-age" in r.headers["cache-control"]
    assert r.headers[REQUEST_ID_HEADER]
    assert r.headers["x-vidsnap-time-ms"] == "1000"
    assert (r.headers["x-vidsnap-width"], r.headers["x-vidsnap-height"]) == ("80", "45")


def test_snapshot_png_is_the_exact_frame(local_client: TestClient) -> None:
    r = local_client.get(_url(CLIP, "video/snapshot,t_1000,f_png"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (160, 90)
    assert _counter(r.content) == 25  # 25 fps: the frame shown at 1.000 s is frame 25


def test_key_with_space_and_plus(local_client: TestClient) -> None:
    r = local_client.get(_url("videos/my clip+1.mp4"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"


def test_etag_and_if_none_match(local_client: TestClient) -> None:
    first = local_client.get(_url(CLIP))
    etag = first.headers["etag"]
    assert local_client.get(_url(CLIP)).headers["etag"] == etag  # deterministic
    again = local_client.get(_url(CLIP), headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert local_client.get(_url(CLIP), headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    other = local_client.get(_url(CLIP, "video/snapshot,t_2000,f_jpg,w_80"), headers={"If-None-Match": etag})
    assert other.status_code == 200
    assert other.headers["etag"] != etag
    # Equivalent spellings of one request are one image: the ETag is over the normalised request.
    same = local_client.get(_url(CLIP, "video/snapshot,w_80,f_jpeg,t_1000"))
    assert same.headers["etag"] == etag


# -- errors (README) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("process", "ec"),
    [
        ("video/snapshot,t_-5", "0053-00000101"),
        ("video/snapshot,t_0,w_99999", "0053-00000104"),
        ("video/snapshot,t_0,h_abc", "0053-00000105"),
        ("video/snapshot,t_0,m_slow", "0053-00000106"),
        ("video/snapshot,t_0,f_gif", "0053-00000107"),
        ("video/snapshot,t_0,ar_x", "0053-00000108"),
        ("video/snapshot,t_0,zz_1", "0053-00000109"),
        ("video/snapshots,f_jpg", None),
    ],
)
def test_bad_parameters_are_400_with_ec(local_client: TestClient, process: str, ec: str | None) -> None:
    body = _error(local_client.get(_url(CLIP, process)), 400)
    assert body["Code"] == "InvalidArgument"
    if ec:
        assert body["EC"] == ec


def test_missing_process_is_400(local_client: TestClient) -> None:
    body = _error(local_client.get(f"/{CLIP}"), 400)
    assert "x-oss-process" in body["Message"]


@pytest.mark.parametrize(
    "raw_path",
    ["/%2E%2E/secret.mp4", "/videos/%2E%2E/%2E%2E/etc/passwd", "/%2Fetc/passwd", "/videos/a%01b.mp4"],
)
def test_unsafe_keys_are_403(local_client: TestClient, raw_path: str) -> None:
    body = _error(local_client.get(f"{raw_path}?x-oss-process={SNAP}"), 403)
    assert body["Code"] == "AccessDenied"


def test_missing_object_is_404(local_client: TestClient) -> None:
    assert _error(local_client.get(_url("videos/nope.mp4")), 404)["Code"] == "NoSuchKey"


def test_not_media_is_415(local_client: TestClient) -> None:
    assert _error(local_client.get(_url("videos/notes.mp4")), 415)["Code"] == "UnsupportedMediaType"


def test_truncated_media_is_422(local_client: TestClient) -> None:
    assert _error(local_client.get(_url("videos/truncated.mp4", "video/snapshot,t_2500")), 422)


class _BrokenStore:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def info(self, key: str) -> Any:  # noqa: ARG002
        raise self.exc

    def open(self, key: str) -> Any:  # noqa: ARG002
        raise self.exc


def test_unexpected_failure_is_a_bare_500(caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(create_app(settings=Settings(), store=_BrokenStore(RuntimeError("secret detail"))))
    r = client.get(_url(CLIP))
    body = _error(r, 500)
    assert body["Code"] == "InternalError"
    assert "secret detail" not in r.text
    assert "secret detail" in caplog.text  # logged for the operator, not shown to the caller


def test_throttled_store_is_503() -> None:
    client = TestClient(create_app(settings=Settings(), store=_BrokenStore(Throttled("slow down"))))
    assert _error(client.get(_url(CLIP)), 503)["Code"] == "ServiceUnavailable"


def test_unknown_route_and_method_are_json() -> None:
    client = TestClient(create_app(settings=Settings(), store=_BrokenStore(NotFound("x"))))
    assert _error(client.get("/"), 404)  # no index for a store that cannot list
    assert _error(client.put(f"/{CLIP}"), 405)


# -- oversize results ------------------------------------------------------------------------------


def test_oversize_result_redirects_to_presigned_url(media_root: Path) -> None:
    stored: list[tuple[str, bytes, str]] = []

    def presign(key: str, data: bytes, content_type: str) -> str:
        stored.append((key, data, content_type))
        return f"https://results.example/{key}?sig=1"

    settings = Settings(results_prefix="_vidsnap/results/")
    app = create_app(settings=settings, store=LocalStore(media_root), presign=presign, max_inline=100)
    r = TestClient(app).get(_url(CLIP), follow_redirects=False)
    assert r.status_code == 302
    key, data, content_type = stored[0]
    assert r.headers["location"] == f"https://results.example/{key}?sig=1"
    assert key.startswith("_vidsnap/results/")
    assert key.endswith(".jpg")
    assert content_type == "image/jpeg"
    assert len(data) > 100
    assert Image.open(io.BytesIO(data)).size == (80, 45)
    # Deterministic: the same request stores under the same key.
    TestClient(app).get(_url(CLIP), follow_redirects=False)
    assert stored[1][0] == key


def test_oversize_without_redirect_is_413(media_root: Path) -> None:
    app = create_app(settings=Settings(), store=LocalStore(media_root), max_inline=100)
    assert _error(TestClient(app).get(_url(CLIP)), 413)["Code"] == "EntityTooLarge"


def test_local_server_has_no_inline_limit(local_client: TestClient) -> None:
    assert local_client.get(_url(CLIP, "video/snapshot,t_0,f_png,w_1280")).status_code == 200


# -- asynchronous tasks ----------------------------------------------------------------------------


class _Queue:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, body: str) -> str:
        self.bodies.append(body)
        return f"msg-{len(self.bodies)}"


def test_post_form_enqueues_an_oss_task(media_root: Path) -> None:
    queue = _Queue()
    settings = Settings(source_bucket="vidsnap-source", output_bucket="vidsnap-output")
    client = TestClient(create_app(settings=settings, store=LocalStore(media_root), submit=queue))
    process = "video/snapshots,f_jpg,m_avg,num_2,w_160"
    r = client.post(f"/{CLIP}?x-oss-async-process", data={"x-oss-async-process": process})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"EventId", "RequestId", "TaskId"}
    assert body["EventId"] == "msg-1"
    assert body["RequestId"] == r.headers[REQUEST_ID_HEADER]
    assert body["TaskId"].startswith("vs-")
    assert json.loads(queue.bodies[0]) == {"Bucket": "vidsnap-source", "Key": CLIP, "Process": process}
    # Same object, same task: same id (idempotent).
    again = client.post(f"/{CLIP}?x-oss-async-process", data={"x-oss-async-process": process})
    assert again.json()["TaskId"] == body["TaskId"]


def test_post_json_task(media_root: Path) -> None:
    queue = _Queue()
    settings = Settings(source_bucket="vidsnap-source", output_bucket="vidsnap-output")
    client = TestClient(create_app(settings=settings, store=LocalStore(media_root), submit=queue))
    task = {
        "Sources": [{"URI": f"s3://vidsnap-source/{CLIP}"}],
        "Targets": [{"Image": {"Snapshots": [{"Format": "png", "Number": 2, "Interval": 1}]}}],
    }
    r = client.post(f"/{CLIP}?x-oss-async-process", json=task)
    assert r.status_code == 200, r.text
    assert json.loads(queue.bodies[0]) == task
    other = {**task, "Sources": [{"URI": "s3://vidsnap-source/videos/other.mp4"}]}
    assert _error(client.post(f"/{CLIP}?x-oss-async-process", json=other), 400)
    foreign = {**task, "Sources": [{"URI": f"s3://someone-else/{CLIP}"}]}
    assert _error(client.post(f"/{CLIP}?x-oss-async-process", json=foreign), 403)
    assert len(queue.bodies) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"x-oss-async-process": "video/snapshots,f_bmp"}, 400),
        ({"x-oss-async-process": "video/snapshot,t_0"}, 400),  # the sync form is not a task
        ({"x-oss-async-process": "video/snapshots,f_jpg,num_5000"}, 400),  # above MAX_FRAMES
        ({"x-oss-async-process": "video/snapshots,f_jpg|sys/saveas,o_Li4vZXRjL3Bhc3N3ZA"}, 400),
        ({"x-oss-async-process": "video/snapshots,f_jpg|sys/saveas,b_c29tZW9uZS1lbHNl,o_b3V0"}, 403),
        ({"other": "1"}, 400),
    ],
)
def test_post_bad_task_is_rejected_before_enqueue(
    media_root: Path, body: dict[str, str], status: int
) -> None:
    queue = _Queue()
    client = TestClient(create_app(settings=Settings(), store=LocalStore(media_root), submit=queue))
    _error(client.post(f"/{CLIP}?x-oss-async-process", data=body), status)
    assert queue.bodies == []


def test_post_missing_object_is_404_and_not_enqueued(media_root: Path) -> None:
    queue = _Queue()
    client = TestClient(create_app(settings=Settings(), store=LocalStore(media_root), submit=queue))
    form = {"x-oss-async-process": "video/snapshots,f_jpg"}
    _error(client.post("/videos/none.mp4?x-oss-async-process", data=form), 404)
    assert queue.bodies == []


def test_post_without_queue_is_501(local_client: TestClient) -> None:
    r = local_client.post(
        f"/{CLIP}?x-oss-async-process", data={"x-oss-async-process": "video/snapshots,f_jpg"}
    )
    assert _error(r, 501)["Code"] == "NotImplemented"


class _Tasks:
    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records

    def get(self, task_id: str) -> dict[str, Any] | None:
        return self.records.get(task_id)


def test_get_task_record(media_root: Path) -> None:
    record = {"TaskId": "vs-1", "Status": "Succeeded", "Progress": 100, "LeaseExpiresAt": 1, "ExpiresAt": 2}
    app = create_app(settings=Settings(), store=LocalStore(media_root), tasks=_Tasks({"vs-1": record}))
    client = TestClient(app)
    r = client.get("/tasks/vs-1")
    assert r.status_code == 200
    assert r.json() == {"TaskId": "vs-1", "Status": "Succeeded", "Progress": 100}
    assert set(r.json()) <= PUBLIC_TASK_FIELDS
    assert _error(client.get("/tasks/vs-2"), 404)["Code"] == "NoSuchKey"


# -- local pages -----------------------------------------------------------------------------------


def test_index_page_lists_videos_with_sliders(local_client: TestClient) -> None:
    r = local_client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    keys = json.loads(page.split('id="video-keys" type="application/json">')[1].split("</script>")[0])
    assert CLIP in keys
    assert "videos/my clip+1.mp4" in keys
    assert 'type: "range"' in page
    assert "x-oss-process=video/snapshot,t_" in page
    assert "f_jpg,w_480" in page
    assert "/_info/" in page


def test_info_gives_duration(local_client: TestClient) -> None:
    r = local_client.get(f"/_info/{CLIP}")
    assert r.status_code == 200
    info = r.json()
    assert 2900 <= info["DurationMs"] <= 3100
    assert (info["Width"], info["Height"]) == (160, 90)
    assert _error(local_client.get("/_info/videos/none.mp4"), 404)
    assert _error(local_client.get("/_info/videos/notes.mp4"), 415)


# -- signed URLs (README) --------------------------------------------------------------------------


def test_signed_urls(media_root: Path) -> None:
    secret = "s3cr3t"
    client = TestClient(create_app(settings=Settings(signing_secret=secret), store=LocalStore(media_root)))
    future = int(time.time()) + 300
    assert _error(client.get(_url(CLIP)), 403)["Code"] == "AccessDenied"
    good = sign_url(secret, f"/{CLIP}", SNAP, future)
    assert client.get(good).status_code == 200
    assert _error(client.get(sign_url(secret, f"/{CLIP}", SNAP, int(time.time()) - 1)), 403)
    assert _error(client.get(sign_url("other", f"/{CLIP}", SNAP, future)), 403)
    tampered = good.replace("t_1000", "t_2000")
    assert _error(client.get(tampered), 403)
    other_path = sign_url(secret, "/videos/other.mp4", SNAP, future).replace("videos/other.mp4", CLIP)
    assert _error(client.get(other_path), 403)
    assert _error(client.get(good.replace("x-vidsnap-expires=", "x-vidsnap-expires=1")), 403)


def test_signed_url_of_key_with_space(media_root: Path) -> None:
    secret = "k"
    client = TestClient(create_app(settings=Settings(signing_secret=secret), store=LocalStore(media_root)))
    url = sign_url(secret, "/videos/my clip+1.mp4", SNAP, int(time.time()) + 60)
    assert client.get(url).status_code == 200


# -- S3 (moto) -------------------------------------------------------------------------------------


@pytest.fixture
def aws(aws_env: None) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="vidsnap-source")
        s3.create_bucket(Bucket="vidsnap-output")
        queue_url = sqs.create_queue(QueueName="vidsnap-tasks")["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "vidsnap-tasks")
        yield {"s3": s3, "sqs": sqs, "queue_url": queue_url, "dynamodb": dynamodb}


def _s3_app(aws: dict[str, Any], **kw: Any) -> TestClient:
    from vidsnap.aws.clients import Clients

    settings = Settings(
        source_bucket="vidsnap-source",
        output_bucket="vidsnap-output",
        task_queue_url=aws["queue_url"],
        task_table="vidsnap-tasks",
    )
    clients = Clients()
    app = create_app(
        settings=settings,
        store=S3Store(aws["s3"], "vidsnap-source"),
        submit=sqs_submitter(aws["sqs"], aws["queue_url"]),
        tasks=TaskStore(clients, "vidsnap-tasks"),
        presign=s3_presigner(aws["s3"], "vidsnap-output"),
        **kw,
    )
    return TestClient(app)


def test_s3_snapshot_errors_and_etag(aws: dict[str, Any], media_root: Path) -> None:
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())
    aws["s3"].put_object(Bucket="vidsnap-source", Key="videos/notes.mp4", Body=b"not a video" * 50)
    client = _s3_app(aws)
    r = client.get(_url(CLIP, "video/snapshot,t_1000,f_png"))
    assert r.status_code == 200
    assert _counter(r.content) == 25
    assert (
        client.get(
            _url(CLIP, "video/snapshot,t_1000,f_png"), headers={"If-None-Match": r.headers["etag"]}
        ).status_code
        == 304
    )
    assert _error(client.get(_url("videos/missing.mp4")), 404)["Code"] == "NoSuchKey"
    assert _error(client.get(_url("videos/notes.mp4")), 415)
    # A replaced object has a new ETag, so the snapshot has a new ETag too.
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes() + b"\0")
    assert client.get(_url(CLIP, "video/snapshot,t_1000,f_png")).headers["etag"] != r.headers["etag"]


def test_s3_oversize_result_is_stored_and_presigned(aws: dict[str, Any], media_root: Path) -> None:
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())
    client = _s3_app(aws, max_inline=200)
    r = client.get(_url(CLIP), follow_redirects=False)
    assert r.status_code == 302
    location = r.headers["location"]
    assert "vidsnap-output" in location
    assert "Signature" in location
    listed = aws["s3"].list_objects_v2(Bucket="vidsnap-output", Prefix="_vidsnap/results/")
    (obj,) = listed["Contents"]
    stored = aws["s3"].get_object(Bucket="vidsnap-output", Key=obj["Key"])
    assert stored["ContentType"] == "image/jpeg"
    assert Image.open(io.BytesIO(stored["Body"].read())).size == (80, 45)


def test_s3_post_enqueues_and_task_lookup(aws: dict[str, Any], media_root: Path) -> None:
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())
    client = _s3_app(aws)
    process = "video/snapshots,f_jpg,m_avg,num_2"
    r = client.post(f"/{CLIP}?x-oss-async-process", data={"x-oss-async-process": process})
    assert r.status_code == 200, r.text
    body = r.json()
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in messages] == [body["EventId"]]
    assert json.loads(messages[0]["Body"]) == {"Bucket": "vidsnap-source", "Key": CLIP, "Process": process}
    assert _error(client.get(f"/tasks/{body['TaskId']}"), 404)
    aws["dynamodb"].put_item(
        TableName="vidsnap-tasks",
        Item={
            "TaskId": {"S": body["TaskId"]},
            "Status": {"S": "Running"},
            "Progress": {"N": "42.5"},
            "LeaseExpiresAt": {"N": "1"},
        },
    )
    record = client.get(f"/tasks/{body['TaskId']}").json()
    assert record == {"TaskId": body["TaskId"], "Status": "Running", "Progress": 42.5}


def test_s3_warm_requests_reuse_the_open_video_and_stay_exact(
    aws: dict[str, Any], media_root: Path, emitted: list[dict[str, float]]
) -> None:
    """A warm app keeps the object version open: forward, backward and repeated times stay exact,
    a repeat reads nothing from S3, and a replaced object is opened afresh."""
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())
    client = _s3_app(aws)
    frames = []
    for t in (2000, 400, 2000, 2040, 0):
        r = client.get(_url(CLIP, f"video/snapshot,t_{t},f_png"))
        assert r.status_code == 200
        # How much was read is a metric, published directly; clients do not see it.
        assert "x-vidsnap-bytes-read" not in r.headers
        assert "server-timing" not in r.headers
        frames.append((_counter(r.content), int(emitted[-1]["BytesRead"])))
    assert len(emitted) == 5
    assert all(doc["FramesWritten"] == 1 and doc["SnapshotLatencyMs"] > 0 for doc in emitted)
    assert [counter for counter, _ in frames] == [50, 10, 50, 51, 0]
    assert frames[0][1] > 0
    assert frames[2][1] == 0  # the same frame again: nothing read from S3
    # Replace the object with a 50 fps video: a new ETag, so a new open video (frame 100 at 2 s).
    other = media_root / "videos" / "fifty.mp4"
    if not other.exists():
        make_video(other, duration_s=3, fps=50, width=160, height=90, gop=50, bframes=2)
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=other.read_bytes())
    r = client.get(_url(CLIP, "video/snapshot,t_2000,f_png"))
    assert _counter(r.content) == 100
    assert emitted[-1]["BytesRead"] > 0
    assert len(emitted) == 6
    client.get(_url(CLIP, "video/snapshot,t_2000,f_png"), headers={"If-None-Match": r.headers["etag"]})
    client.get(_url("videos/none.mp4"))
    assert len(emitted) == 6  # a 304 or an error renders nothing


def _s3_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """The S3 operations ``client`` sends from now on, with their parameters."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.s3.*", record)
    return calls


def test_a_sync_snapshot_sends_one_head(aws: dict[str, Any], media_root: Path) -> None:
    """One HEAD per snapshot (the ETag of the answer and the version the reads are pinned to), then
    ranged GETs of that object only; the `/_info` page too."""
    aws["s3"].put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())
    client = _s3_app(aws)
    calls = _s3_calls(aws["s3"])
    r = client.get(_url(CLIP, "video/snapshot,t_1240,f_png"))
    assert r.status_code == 200
    assert [name for name, _ in calls].count("HeadObject") == 1
    gets = [params for name, params in calls if name == "GetObject"]
    assert gets
    etag = aws["s3"].head_object(Bucket="vidsnap-source", Key=CLIP)["ETag"]
    assert {params["IfMatch"] for params in gets} == {etag}
    calls.clear()
    assert client.get(f"/_info/{CLIP}").json()["DurationMs"] == 3000
    assert [name for name, _ in calls].count("HeadObject") == 1


def test_reads_are_pinned_to_the_version_the_head_saw(aws: dict[str, Any], media_root: Path) -> None:
    """On a versioned bucket the ranged GETs name the version id of the HEAD (and its ETag)."""
    s3 = aws["s3"]
    s3.put_bucket_versioning(Bucket="vidsnap-source", VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket="vidsnap-source", Key=CLIP, Body=(media_root / CLIP).read_bytes())[
        "VersionId"
    ]
    client = _s3_app(aws)
    calls = _s3_calls(s3)
    r = client.get(_url(CLIP, "video/snapshot,t_2000,f_png"))
    assert r.status_code == 200
    assert _counter(r.content) == 50
    assert [name for name, _ in calls].count("HeadObject") == 1
    gets = [params for name, params in calls if name == "GetObject"]
    assert gets
    assert {params.get("VersionId") for params in gets} == {version}

"""functions/object_get/app.py: the real handler with events/*.json, a fake Lambda context, moto.

Function URL events go through mangum into the Starlette app on S3 (moto, in-process). Object Lambda
events read the object through a presigned URL from moto's threaded server (real HTTP range GETs);
``WriteGetObjectResponse`` is not implemented by moto and is recorded by a fake client.
"""

from __future__ import annotations

import base64
import copy
import functools
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import av
import boto3
import pytest
from moto import mock_aws
from PIL import Image

from vidsnap.aws.objectlambda import HTTPRangeReader, process_from
from vidsnap.aws.settings import get_settings
from vidsnap.aws.storage import S3Store
from vidsnap.aws.taskstore import create_table
from vidsnap.core.errors import SourceChanged

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
CLIP = "videos/clip.mp4"

Loader = Callable[[], ModuleType]
Context = Callable[[], Any]
RunOlap = Callable[[dict[str, Any]], dict[str, Any]]


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture
def load_handler(load_function: Callable[[str], ModuleType]) -> Loader:
    """A fresh copy of the function module (cold start), imported from its file."""
    return functools.partial(load_function, "object_get")


@pytest.fixture
def context(lambda_context: Callable[..., Any]) -> Context:
    """A new Lambda context of the object_get function for each call."""
    return functools.partial(
        lambda_context, "vidsnap-ObjectGetFunction", memory_limit_in_mb=2048, timeout_s=60
    )


ENV = {
    "SOURCE_BUCKET": "vidsnap-source",
    "OUTPUT_BUCKET": "vidsnap-output",
    "TASK_TABLE": "vidsnap-tasks",
    "RESULTS_PREFIX": "_vidsnap/results/",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


@pytest.fixture
def clip_bytes(make_media: Callable[[str], Any]) -> bytes:
    return Path(make_media("mp4_h264").path).read_bytes()


@pytest.fixture
def env(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("SIGNING_SECRET", "SIGNING_SECRET_PARAMETER", "UPLOAD_RULES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def aws(env: None, monkeypatch: pytest.MonkeyPatch, clip_bytes: bytes) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="vidsnap-source")
        s3.create_bucket(Bucket="vidsnap-output")
        s3.put_object(Bucket="vidsnap-source", Key=CLIP, Body=clip_bytes)
        queue_url = sqs.create_queue(QueueName="vidsnap-tasks")["QueueUrl"]
        monkeypatch.setenv("TASK_QUEUE_URL", queue_url)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "vidsnap-tasks")
        yield {"s3": s3, "sqs": sqs, "queue_url": queue_url}


def _json(response: dict[str, Any]) -> dict[str, Any]:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# -- function URL ----------------------------------------------------------------------------------


def test_function_url_get_returns_base64_image(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    ctx = context()
    response = load_handler().handler(load_event("function-url-get.json"), ctx)
    assert response["statusCode"] == 200, response
    assert response["isBase64Encoded"] is True
    headers = response["headers"]
    assert headers["content-type"] == "image/jpeg"
    assert headers["x-vidsnap-request-id"] == ctx.aws_request_id
    assert headers["etag"].startswith('"')
    assert "max-age" in headers["cache-control"]
    image = Image.open(io.BytesIO(base64.b64decode(response["body"])))
    assert image.format == "JPEG"
    assert image.size == (320, 180)


@pytest.mark.parametrize(
    "key", ["videos/my clip+1.mp4", "videos/a?b#c.mp4", "videos/100%.mp4", "videos/é.mp4", "videos/a%20b.mp4"]
)
def test_function_url_paths_arrive_percent_encoded(
    aws: dict[str, Any],
    load_handler: Loader,
    context: Context,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Function URLs deliver the path still percent-encoded; the key is its form decoded once
    (mangum decodes it: a key with a literal ``%20`` must not be decoded twice)."""
    source = {"Bucket": "vidsnap-source", "Key": CLIP}
    aws["s3"].copy_object(Bucket="vidsnap-source", Key=key, CopySource=source)
    asked: list[str] = []
    real_info = S3Store.info

    def info(self: S3Store, name: str, **kw: Any) -> Any:
        asked.append(name)  # what the app asks S3 for (moto would forgive an encoded key)
        return real_info(self, name, **kw)

    monkeypatch.setattr(S3Store, "info", info)
    event = copy.deepcopy(load_event("function-url-get.json"))
    encoded = "/" + quote(key, safe="/")
    event["rawPath"] = event["requestContext"]["http"]["path"] = encoded
    response = load_handler().handler(event, context())
    assert response["statusCode"] == 200, response
    assert asked == [key]


def test_function_url_errors_are_json_with_the_lambda_request_id(
    aws: dict[str, Any], load_handler: Loader, context: Context
) -> None:
    handler = load_handler().handler
    event = load_event("function-url-get.json")
    event["rawQueryString"] = "x-oss-process=video/snapshot,t_1000,w_5000"
    ctx = context()
    response = handler(event, ctx)
    assert response["statusCode"] == 400
    body = _json(response)
    assert body == {
        "Code": "InvalidArgument",
        "Message": body["Message"],
        "RequestId": ctx.aws_request_id,
        "EC": "0053-00000104",
    }
    missing = load_event("function-url-get.json")
    missing["rawPath"] = missing["requestContext"]["http"]["path"] = "/videos/none.mp4"
    assert handler(missing, context())["statusCode"] == 404


def test_function_url_if_none_match(aws: dict[str, Any], load_handler: Loader, context: Context) -> None:
    handler = load_handler().handler
    first = handler(load_event("function-url-get.json"), context())
    event = load_event("function-url-get.json")
    event["headers"]["if-none-match"] = first["headers"]["etag"]
    again = handler(event, context())
    assert again["statusCode"] == 304
    assert not again.get("body")


def test_function_url_oversize_result_redirects(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    load_handler: Loader,
    context: Context,
) -> None:
    import vidsnap.aws.httpapp

    monkeypatch.setattr(vidsnap.aws.httpapp, "INLINE_LIMIT", 1000)
    response = load_handler().handler(load_event("function-url-get.json"), context())
    assert response["statusCode"] == 302
    assert "vidsnap-output" in response["headers"]["location"]
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket="vidsnap-output")["Contents"]]
    assert len(keys) == 1
    assert keys[0].startswith("_vidsnap/results/")


def test_function_url_post_enqueues_task(aws: dict[str, Any], load_handler: Loader, context: Context) -> None:
    ctx = context()
    response = load_handler().handler(load_event("function-url-post.json"), ctx)
    assert response["statusCode"] == 200, response
    body = _json(response)
    assert body["RequestId"] == ctx.aws_request_id
    assert body["TaskId"].startswith("vs-")
    (message,) = aws["sqs"].receive_message(QueueUrl=aws["queue_url"])["Messages"]
    assert message["MessageId"] == body["EventId"]
    task = json.loads(message["Body"])
    assert task["Bucket"] == "vidsnap-source"
    assert task["Key"] == CLIP
    assert task["Process"].startswith("video/snapshots,f_jpg,m_avg,num_2,w_160|sys/saveas,o_")


def test_function_url_get_task(aws: dict[str, Any], load_handler: Loader, context: Context) -> None:
    handler = load_handler().handler
    event = load_event("function-url-get-task.json")
    task_id = event["rawPath"].rsplit("/", 1)[1]
    assert handler(event, context())["statusCode"] == 404
    boto3.resource("dynamodb", region_name="us-east-1").Table("vidsnap-tasks").put_item(
        Item={"TaskId": task_id, "Status": "Succeeded", "Progress": 100, "ExpiresAt": 1}
    )
    response = handler(event, context())
    assert response["statusCode"] == 200
    assert _json(response) == {"TaskId": task_id, "Status": "Succeeded", "Progress": 100}


def test_signing_secret_with_and_without_iam(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    load_handler: Loader,
    context: Context,
    run_olap: RunOlap,
) -> None:
    monkeypatch.setenv("SIGNING_SECRET", "topsecret")
    get_settings.cache_clear()
    handler = load_handler().handler
    iam = load_event("function-url-get.json")  # SigV4-authenticated by the function URL: no signature needed
    assert handler(iam, context())["statusCode"] == 200
    anonymous = load_event("function-url-get.json")
    del anonymous["requestContext"]["authorizer"]
    assert handler(anonymous, context())["statusCode"] == 403
    from vidsnap.aws.httpapp import sign_url

    url = sign_url("topsecret", "/videos/clip.mp4", "video/snapshot,t_1000,f_jpg,w_320", 4_000_000_000)
    anonymous["rawQueryString"] = url.split("?", 1)[1]
    assert handler(anonymous, context())["statusCode"] == 200


def _store_secret(store: str, value: str) -> str:
    """Put ``value`` in SSM (SecureString) or Secrets Manager on moto; the name the stack would pass."""
    if store == "ssm":
        name = "/vidsnap/signing-secret"
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        return name
    created = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="vidsnap/signing-secret", SecretString=value
    )
    return str(created["ARN"])


@pytest.mark.parametrize("store", ["ssm", "secretsmanager"])
def test_signing_secret_from_a_secret_store_is_read_once_and_lazily(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, load_handler: Loader, context: Context, store: str
) -> None:
    """SIGNING_SECRET_PARAMETER (what template.yaml sets) names the secret; the value is fetched
    through powertools on the first request without IAM auth, once, and never from the environment."""
    from vidsnap.aws.httpapp import sign_url

    monkeypatch.setenv("SIGNING_SECRET_PARAMETER", _store_secret(store, "kept-in-a-store"))
    get_settings.cache_clear()
    module = load_handler()
    client = getattr(module._clients, store)
    fetches: list[str] = []
    client.meta.events.register("before-call.*.*", lambda model, **_: fetches.append(model.name))

    assert module.handler(load_event("function-url-get.json"), context())["statusCode"] == 200
    assert fetches == []  # IAM-authenticated: the secret is not needed, so not read
    anonymous = load_event("function-url-get.json")
    del anonymous["requestContext"]["authorizer"]
    assert module.handler(copy.deepcopy(anonymous), context())["statusCode"] == 403
    url = sign_url("kept-in-a-store", "/videos/clip.mp4", "video/snapshot,t_1000,f_jpg,w_320", 4_000_000_000)
    anonymous["rawQueryString"] = url.split("?", 1)[1]
    for _ in range(3):
        assert module.handler(copy.deepcopy(anonymous), context())["statusCode"] == 200
    assert fetches == ["GetParameter" if store == "ssm" else "GetSecretValue"]


def test_an_unreadable_signing_secret_refuses_requests(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, load_handler: Loader, context: Context
) -> None:
    """A parameter that does not exist (or may not be read): 500, never an unsigned answer."""
    monkeypatch.setenv("SIGNING_SECRET_PARAMETER", "/vidsnap/missing")
    get_settings.cache_clear()
    handler = load_handler().handler
    anonymous = load_event("function-url-get.json")
    del anonymous["requestContext"]["authorizer"]
    response = handler(anonymous, context())
    assert response["statusCode"] == 500
    assert "signing secret" not in json.dumps(response)  # the details go to the logs only
    assert handler(load_event("function-url-get.json"), context())["statusCode"] == 200  # IAM still works


# -- S3 Object Lambda ------------------------------------------------------------------------------


class FakeS3:
    """Records WriteGetObjectResponse calls (moto does not implement the API)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def write_get_object_response(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


class FakeClients:
    def __init__(self) -> None:
        self.s3 = FakeS3()


@pytest.fixture
def olap(env: None, moto_server: str, clip_bytes: bytes) -> dict[str, Any]:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    bucket = f"olap-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=CLIP, Body=clip_bytes)
    s3.put_object(Bucket=bucket, Key="videos/notes.mp4", Body=b"not media " * 100)

    def presigned(key: str) -> str:
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        return url

    return {"s3": s3, "bucket": bucket, "presigned": presigned}


def _olap_event(
    olap: dict[str, Any], key: str = CLIP, *, query: str | None = None, payload: str | None = None
) -> dict[str, Any]:
    event = copy.deepcopy(load_event("object-lambda.json"))
    event["getObjectContext"]["inputS3Url"] = olap["presigned"](key)
    if query is not None:
        base = event["userRequest"]["url"].split("?", 1)[0]
        event["userRequest"]["url"] = f"{base}?{query}" if query else base
    if payload is not None:
        event["configuration"]["payload"] = payload
    return event


@pytest.fixture
def run_olap(load_handler: Loader, context: Context) -> RunOlap:
    """Run an Object Lambda event through a cold-started handler; its WriteGetObjectResponse call."""

    def run(event: dict[str, Any]) -> dict[str, Any]:
        module = load_handler()
        clients = FakeClients()
        module._clients = clients
        result = module.handler(event, context())
        assert result["status_code"] == (clients.s3.calls[0].get("StatusCode"))
        (call,) = clients.s3.calls
        assert call["RequestRoute"] == "io-use1-001"
        assert call["RequestToken"] == "OutputTokenEXAMPLE"
        return call

    return run


def test_object_lambda_snapshot_from_user_query(olap: dict[str, Any], run_olap: RunOlap) -> None:
    call = run_olap(_olap_event(olap))
    assert call["StatusCode"] == 200
    assert call["ContentType"] == "image/jpeg"
    image = Image.open(io.BytesIO(call["Body"]))
    assert image.format == "JPEG"
    assert image.size == (320, 180)
    assert call["Metadata"]["vidsnap-time-ms"] == "1000"


def test_object_lambda_falls_back_to_payload(olap: dict[str, Any], run_olap: RunOlap) -> None:
    call = run_olap(_olap_event(olap, query=""))  # payload: {"x-oss-process": "video/snapshot,t_0,f_png"}
    assert call["StatusCode"] == 200
    assert call["ContentType"] == "image/png"
    bare = run_olap(_olap_event(olap, query="", payload="video/snapshot,t_500,f_jpg,w_64"))
    assert Image.open(io.BytesIO(bare["Body"])).size == (64, 36)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ((CLIP, "", "{}"), 400, "InvalidArgument"),
        ((CLIP, "", ""), 400, "InvalidArgument"),
        ((CLIP, "x-oss-process=video/snapshot,t_1000,f_gif", None), 400, "InvalidArgument"),
        (("videos/none.mp4", None, None), 404, "NoSuchKey"),
        (("videos/notes.mp4", None, None), 415, "UnsupportedMediaType"),
    ],
)
def test_object_lambda_errors_are_answered(
    olap: dict[str, Any],
    case: tuple[str, str | None, str | None],
    status: int,
    code: str,
    run_olap: RunOlap,
) -> None:
    key, query, payload = case
    call = run_olap(_olap_event(olap, key, query=query, payload=payload))
    assert call["StatusCode"] == status
    assert call["ErrorCode"] == code
    assert call["ErrorMessage"]
    assert "Body" not in call


def test_object_lambda_bad_param_message_carries_ec(olap: dict[str, Any], run_olap: RunOlap) -> None:
    call = run_olap(_olap_event(olap, query="x-oss-process=video/snapshot,t_x"))
    assert call["StatusCode"] == 400
    assert "0053-00000101" in call["ErrorMessage"]


def test_process_from() -> None:
    url = "https://ap.s3-object-lambda.us-east-1.amazonaws.com/a.mp4?x-oss-process=video%2Fsnapshot%2Ct_5"
    assert process_from(url, "{}") == "video/snapshot,t_5"
    assert process_from("https://h/a.mp4", '{"x-oss-process": "video/snapshot,t_1"}') == "video/snapshot,t_1"
    assert process_from("https://h/a.mp4", '"video/snapshot,t_2"') == "video/snapshot,t_2"
    assert process_from("https://h/a.mp4", {"process": "video/snapshot,t_3"}) == "video/snapshot,t_3"


def test_http_range_reader_reads_ranges_through_a_block_cache(
    olap: dict[str, Any], clip_bytes: bytes
) -> None:
    reader = HTTPRangeReader(olap["presigned"](CLIP), block_size=1024, cache_blocks=4)
    assert reader.size == len(clip_bytes)
    assert reader.seekable()
    assert reader.readable()
    for offset, n in [(0, 10), (5000, 3000), (len(clip_bytes) - 7, 100), (1023, 2), (100, 0)]:
        reader.seek(offset)
        assert reader.read(n) == clip_bytes[offset : offset + n]
    reader.seek(-4, io.SEEK_END)
    assert reader.read() == clip_bytes[-4:]
    requests = reader.requests
    reader.seek(len(clip_bytes) - 7)
    reader.read(7)  # cached
    assert reader.requests == requests
    assert reader.bytes_read <= len(clip_bytes) + 4 * 1024
    reader.close()


def test_http_range_reader_refuses_an_object_replaced_mid_read(
    olap: dict[str, Any], clip_bytes: bytes
) -> None:
    """Every read after the first is of the object the first one saw (If-Match on its ETag): a
    replaced object is a 412 SourceChanged, never bytes of two uploads mixed."""
    key = "videos/replaced.mp4"
    olap["s3"].put_object(Bucket=olap["bucket"], Key=key, Body=clip_bytes)
    reader = HTTPRangeReader(olap["presigned"](key), block_size=1024, cache_blocks=4, readahead=False)
    assert reader.etag
    olap["s3"].put_object(Bucket=olap["bucket"], Key=key, Body=bytes(reversed(clip_bytes)))
    reader.seek(4096)
    with pytest.raises(SourceChanged) as info:
        reader.read(10)
    assert info.value.status == 412
    reader.close()


def test_snapshot_metrics_inside_lambda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside Lambda a rendered snapshot publishes FramesWritten, BytesRead and SnapshotLatencyMs."""
    from vidsnap.aws.observe import emit_snapshot_metrics

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "vidsnap-ObjectGetFunction")
    emit_snapshot_metrics(bytes_read=123456, render_ms=42.5)
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (emf["FramesWritten"], emf["BytesRead"], emf["SnapshotLatencyMs"]) == ([1.0], [123456.0], [42.5])
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    emit_snapshot_metrics(bytes_read=1, render_ms=1.0)  # outside Lambda: nothing on stdout
    assert capsys.readouterr().out == ""


def test_both_paths_publish_the_metrics_of_a_rendered_snapshot(
    aws: dict[str, Any], load_handler: Loader, context: Context, emitted: list[dict[str, float]]
) -> None:
    """Function URL snapshots publish their metrics directly; nothing of them reaches the caller."""
    handler = load_handler().handler
    response = handler(load_event("function-url-get.json"), context())
    assert response["statusCode"] == 200
    (doc,) = emitted
    assert doc["FramesWritten"] == 1
    assert doc["BytesRead"] > 0
    assert doc["SnapshotLatencyMs"] > 0
    assert not {"x-vidsnap-bytes-read", "server-timing"} & set(response["headers"])
    again = load_event("function-url-get.json")
    again["headers"]["if-none-match"] = response["headers"]["etag"]
    assert handler(again, context())["statusCode"] == 304
    assert len(emitted) == 1  # a 304 renders nothing


def test_object_lambda_publishes_the_metrics_of_a_rendered_snapshot(
    olap: dict[str, Any], run_olap: RunOlap, emitted: list[dict[str, float]]
) -> None:
    assert run_olap(_olap_event(olap))["StatusCode"] == 200
    (doc,) = emitted
    assert (doc["FramesWritten"], doc["BytesRead"] > 0) == (1, True)
    assert run_olap(_olap_event(olap, query="x-oss-process=video/snapshot,t_x"))["StatusCode"] == 400
    assert len(emitted) == 1


BAD_WORKER_VARIABLES = {
    "UPLOAD_RULES": '[{"prefix": "videos/", "process": "video/snapshots,zz_1"}]',
    "TASK_LEASE_SECONDS": "soon",
    "DECODERS": "many",
}


def test_a_typo_in_the_workers_variables_does_not_fail_snapshots(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, load_handler: Loader, context: Context
) -> None:
    """UPLOAD_RULES, TASK_LEASE_SECONDS and DECODERS are read by the asynchronous function only:
    the object-get function, which gets them too (template.yaml's Globals), leaves them unread."""
    for name, value in BAD_WORKER_VARIABLES.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    handler = load_handler().handler
    assert handler(load_event("function-url-get.json"), context())["statusCode"] == 200
    assert handler(load_event("function-url-post.json"), context())["statusCode"] == 200
    monkeypatch.setenv("MAX_FRAMES", "lots")  # one of its own: a documented 500
    get_settings.cache_clear()
    assert load_handler().handler(load_event("function-url-get.json"), context())["statusCode"] == 500


def test_a_typo_in_the_workers_variables_does_not_fail_object_lambda(
    olap: dict[str, Any], monkeypatch: pytest.MonkeyPatch, run_olap: RunOlap
) -> None:
    for name, value in BAD_WORKER_VARIABLES.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert run_olap(_olap_event(olap))["StatusCode"] == 200


def test_object_lambda_reuses_the_warm_video_through_each_requests_url(
    olap: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Object Lambda renders through the process's warm videos, keyed by the object (ETag, size,
    where it is): a later request for the same object reads its first block (which tells the
    ETag) and no more for a frame already decoded, and reads through its own presigned URL (the
    earlier request's URL may have expired)."""
    import urllib.error
    import urllib.request
    from email.message import Message

    from vidsnap.aws import objectlambda
    from vidsnap.aws.settings import Settings
    from vidsnap.local import synth

    real = urllib.request.urlopen
    fetched: list[str] = []
    expired: set[str] = set()

    def urlopen(request: urllib.request.Request, *args: Any, **kwargs: Any) -> Any:
        fetched.append(request.full_url)
        if request.full_url in expired:
            raise urllib.error.HTTPError(request.full_url, 403, "Request has expired", Message(), None)
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    def presigned(seconds: int) -> str:
        params = {"Bucket": olap["bucket"], "Key": CLIP}
        url: str = olap["s3"].generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
        return url

    def counter(url: str, t: int) -> int:
        s3 = FakeS3()
        objectlambda.answer_object_lambda(
            s3,
            route="r",
            token="t",
            input_url=url,
            user_url=f"https://ap.example/{CLIP}?x-oss-process=video/snapshot,t_{t},f_png",
            payload=None,
            settings=Settings(),
            request_id="rid",
            block_size=1024,
        )
        (call,) = s3.calls
        assert call["StatusCode"] == 200, call
        image = Image.open(io.BytesIO(call["Body"])).convert("RGB")
        return synth.read_counter(av.VideoFrame.from_image(image))

    first, second, third = presigned(60), presigned(61), presigned(62)
    assert counter(first, 1000) == 25
    assert len(fetched) > 1
    expired.add(first)
    fetched.clear()
    assert counter(second, 2000) == 50
    assert fetched
    assert set(fetched) == {second}
    fetched.clear()
    assert counter(third, 2000) == 50
    assert fetched == [third]  # the first block, for the ETag; the frame is the kept one

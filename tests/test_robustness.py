"""Adversarial pass over the two Lambda handlers (README): events, environment and media a
reviewer would drive them with, without reading the other tests.

Every function URL answer must be a documented status with the documented JSON body (no 500 for a
client's mistake, no traceback); Object Lambda events never raise and are answered through
``WriteGetObjectResponse`` whenever they can be; the async handler never raises on a poison
message, lists only transient failures in ``batchItemFailures``, writes nothing outside the
allow-lists and never reports a partial set of outputs as a success. Random inputs are seeded.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

import vidsnap.aws.worker
from vidsnap.aws.events import uploads_from_event
from vidsnap.aws.httpapp import check_signature, sign_url
from vidsnap.aws.objectlambda import HTTPRangeReader, answer_object_lambda_event
from vidsnap.aws.settings import Settings, get_settings
from vidsnap.aws.taskstore import create_table
from vidsnap.core.errors import Throttled

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
CLIP = "videos/clip.mp4"
DOCUMENTED_STATUSES = {400, 403, 404, 405, 413, 415, 422}
SEED = 20261124


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@pytest.fixture
def clip_bytes(make_media: Callable[[str], Any]) -> bytes:
    return Path(make_media("mp4_h264").path).read_bytes()


def _table(name: str) -> None:
    create_table(boto3.client("dynamodb", region_name="us-east-1"), name)


# ==================================================================================================
# function URL


@pytest.fixture
def http_aws(aws_env: None, monkeypatch: pytest.MonkeyPatch, clip_bytes: bytes) -> Iterator[dict[str, Any]]:
    env = {
        "SOURCE_BUCKET": "vidsnap-source",
        "OUTPUT_BUCKET": "vidsnap-output",
        "TASK_TABLE": "vidsnap-tasks",
        "ALLOWED_TOPICS": "vidsnap-notify",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("SIGNING_SECRET", "UPLOAD_RULES", "MAX_FRAMES", "ALLOWED_OUTPUT_BUCKETS", "ALLOWED_QUEUES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        for bucket in ("vidsnap-source", "vidsnap-output", "vidsnap-other"):
            s3.create_bucket(Bucket=bucket)
        for key in (CLIP, "a b+c%.mp4", "ünï/çødé.mp4", "tasks/clip.mp4"):
            s3.put_object(Bucket="vidsnap-source", Key=key, Body=clip_bytes)
        s3.put_object(Bucket="vidsnap-source", Key="empty.mp4", Body=b"")
        s3.put_object(Bucket="vidsnap-source", Key="notes.mp4", Body=b"not a video " * 200)
        queue_url = sqs.create_queue(QueueName="vidsnap-tasks")["QueueUrl"]
        monkeypatch.setenv("TASK_QUEUE_URL", queue_url)
        _table("vidsnap-tasks")
        yield {"s3": s3, "sqs": sqs, "queue_url": queue_url}
    get_settings.cache_clear()


@pytest.fixture
def object_get(load_function: Callable[[str], ModuleType], lambda_context: Callable[..., Any]) -> Any:
    """``call(event) -> (response, request_id)`` through a cold-started object_get handler."""
    module = load_function("object_get")

    def call(event: Any) -> tuple[dict[str, Any], str]:
        ctx = lambda_context("vidsnap-ObjectGetFunction", memory_limit_in_mb=2048, timeout_s=60)
        response: dict[str, Any] = module.handler(event, ctx)
        return response, ctx.aws_request_id

    call.module = module  # type: ignore[attr-defined]
    return call


def url_event(
    path: str = "/" + CLIP,
    query: str = "x-oss-process=video/snapshot,t_0,w_80",
    *,
    method: str = "GET",
    body: str | None = None,
    content_type: str | None = None,
    base64_body: bool = False,
    iam: bool = True,
) -> dict[str, Any]:
    event = load_event("function-url-get.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event.pop("queryStringParameters", None)  # mangum reads rawQueryString; AWS omits it when empty
    if body is not None:
        event["body"] = body
        event["isBase64Encoded"] = base64_body
    if content_type:
        event["headers"]["content-type"] = content_type
    if not iam:
        del event["requestContext"]["authorizer"]
    return event


def spec6(response: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The documented body of an error answer (asserting its shape)."""
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    assert "Traceback" not in body
    doc: dict[str, Any] = json.loads(body)
    assert set(doc) <= {"Code", "Message", "RequestId", "EC"}, doc
    assert {"Code", "Message", "RequestId"} <= set(doc), doc
    assert doc["RequestId"] == request_id
    assert isinstance(doc["Message"], str)
    assert doc["Message"]
    assert response["headers"]["content-type"].startswith("application/json")
    return doc


def assert_client_answer(response: dict[str, Any], request_id: str) -> int:
    """200 (an image) or a documented client-error status with the documented body; never 5xx."""
    status: int = response["statusCode"]
    assert status == 200 or status in DOCUMENTED_STATUSES, (status, response.get("body", "")[:300])
    if status == 200:
        assert response["headers"]["content-type"].startswith(("image/", "application/json"))
    else:
        spec6(response, request_id)
    return status


BAD_PATHS = {
    "/": 404,  # no index in Lambda
    "//": 403,
    "/%2F%2Fx": 403,
    "/../etc/passwd": 403,
    "/videos/%2e%2e/x.mp4": 403,
    "/a\\..\\b.mp4": 403,
    "/C:/x.mp4": 403,
    "/a%00b.mp4": 403,
    "/a%0Ab.mp4": 404,  # no route matches a newline (Starlette paths are single-line): refused
    "/videos//clip.mp4": 404,
    "/videos/clip.mp4/": 404,
    "/%FF%FE.mp4": 404,
    "/" + "k" * 1100: 400,
    "/_info/": 400,
    "/tasks/": 404,
    "/empty.mp4": 415,
    "/notes.mp4": 415,
}


def test_function_url_bad_keys_answer_spec6(http_aws: dict[str, Any], object_get: Any) -> None:
    for path, status in BAD_PATHS.items():
        response, rid = object_get(url_event(path))
        assert assert_client_answer(response, rid) == status, path


def test_function_url_encoded_keys_reach_their_object(http_aws: dict[str, Any], object_get: Any) -> None:
    for path in (
        "/a%20b%2Bc%25.mp4",
        "/%C3%BCn%C3%AF/%C3%A7%C3%B8d%C3%A9.mp4",
        "/ünï/çødé.mp4",
        "/tasks/clip.mp4",
    ):
        response, _ = object_get(url_event(path))
        assert response["statusCode"] == 200, (path, response)
        assert response["headers"]["content-type"] == "image/jpeg"


def test_function_url_random_keys_never_fail_internally(http_aws: dict[str, Any], object_get: Any) -> None:
    rng = random.Random(SEED)
    alphabet = ["a", "/", "//", "..", ".", "%", "%2F", "%00", "%2e", "+", " ", "ü", "\u202e", "~", "\\", "?"]
    for _ in range(40):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        path = path.replace("?", "%3F")
        response, rid = object_get(url_event(path))
        assert_client_answer(response, rid)


BAD_QUERIES = [
    ("", None),
    ("x-oss-process=", None),
    ("x-oss-process=video/snapshot,t_-1", "0053-00000101"),
    ("x-oss-process=video/snapshot,t_abc", "0053-00000101"),
    ("x-oss-process=video/snapshot,t_99999999999999999999999", "0053-00000101"),
    ("x-oss-process=video/snapshot,t_1+0", "0053-00000101"),  # '+' is a space in a query
    ("x-oss-process=video/snapshot,t_1%2B0", "0053-00000101"),
    ("x-oss-process=video/snapshot,w_5000", "0053-00000104"),
    ("x-oss-process=video/snapshot,h_-5", "0053-00000105"),
    ("x-oss-process=video/snapshot,m_slow", "0053-00000106"),
    ("x-oss-process=video/snapshot,f_gif", "0053-00000107"),
    ("x-oss-process=video/snapshot,f_%FF", "0053-00000107"),
    ("x-oss-process=video/snapshot,ar_x", "0053-00000108"),
    ("x-oss-process=video/snapshot,zz_1", "0053-00000109"),
    ("x-oss-process=video/snapshot,t_0,t_1", "0053-00000109"),
    ("x-oss-process=video/snapshot,,,", "0053-00000109"),
    ("x-oss-process=video/snapshots,f_jpg", None),
    ("x-oss-process=image/resize,w_1", None),
    ("x-oss-process=%00", None),
    ("x-oss-process=video/snapshot,t_0|sys/saveas,o_YQ", None),
    ("x-oss-process=" + "a" * 20000, None),
    ("%%%%&&=&", None),
]


def test_function_url_bad_parameters_are_400_with_ec(http_aws: dict[str, Any], object_get: Any) -> None:
    for query, ec in BAD_QUERIES:
        response, rid = object_get(url_event(query=query))
        assert response["statusCode"] == 400, query
        body = spec6(response, rid)
        assert body["Code"] == "InvalidArgument"
        if ec:
            assert body["EC"] == ec, query


def test_function_url_duplicated_process_is_400(http_aws: dict[str, Any], object_get: Any) -> None:
    """Regression: two x-oss-process values used to be answered with one of them, silently."""
    query = "x-oss-process=video/snapshot,t_0&x-oss-process=video/snapshot,t_900"
    response, rid = object_get(url_event(query=query))
    assert response["statusCode"] == 400
    body = spec6(response, rid)
    assert body["EC"] == "0053-00000109"
    assert "x-oss-process" in body["Message"]


def test_function_url_other_methods_are_405(http_aws: dict[str, Any], object_get: Any) -> None:
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"):
        response, rid = object_get(url_event(method=method))
        assert response["statusCode"] == 405, method
        spec6(response, rid)


def test_function_url_head_has_headers_and_no_body(http_aws: dict[str, Any], object_get: Any) -> None:
    """Regression: HEAD used to carry the whole image as its body."""
    response, _ = object_get(url_event(method="HEAD"))
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "image/jpeg"
    assert response["body"] == ""


def test_function_url_mangum_edge_shapes(http_aws: dict[str, Any], object_get: Any) -> None:
    with_params = url_event()
    with_params["queryStringParameters"] = {"x-oss-process": "video/snapshot,t_0,w_80"}
    with_params["cookies"] = ["session=abc", "odd"]
    assert object_get(with_params)[0]["statusCode"] == 200
    encoded = url_event(query="x-oss-process=video%2Fsnapshot%2Ct_0%2Cw_80")
    assert object_get(encoded)[0]["statusCode"] == 200
    no_headers = url_event()
    del no_headers["headers"]
    assert object_get(no_headers)[0]["statusCode"] == 200
    for shape in ({"cookies": None}, {"body": None, "isBase64Encoded": True}):
        event = url_event()
        event.update(shape)
        assert object_get(event)[0]["statusCode"] == 200


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        node = event
        for name in path[:-1]:
            node = node[name]
        del node[path[-1]]

    return change


MALFORMED_EVENTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "no method": _drop(("requestContext", "http", "method")),
    "no http": _drop(("requestContext", "http")),
    "no requestContext": _drop(("requestContext",)),
    "no version": _drop(("version",)),
    "version 1.0": lambda e: e.update(version="1.0"),
    "headers None": lambda e: e.update(headers=None),
    "header not text": lambda e: e["headers"].update({"x-n": 5}),
    "rawQueryString None": lambda e: e.update(rawQueryString=None),
    "cookies not a list": lambda e: e.update(cookies="a=b"),
    "body not text": lambda e: e.update(body={"a": 1}),
    "body not base64": lambda e: e.update(body="!!!not base64", isBase64Encoded=True),
    "port not a number": lambda e: e["headers"].update({"x-forwarded-port": "HEAD"}),
    "host port not a number": lambda e: e["headers"].update({"host": "example.com:http"}),
    "host with two colons": lambda e: e["headers"].update({"host": "a:1:2"}),
}


def test_function_url_malformed_events_are_400(http_aws: dict[str, Any], object_get: Any) -> None:
    """Regression: mangum raised (KeyError, binascii.Error, AttributeError) on these shapes, and
    on events that are no function URL request at all."""
    for name, change in MALFORMED_EVENTS.items():
        event = url_event()
        change(event)
        response, rid = object_get(event)
        assert response["statusCode"] == 400, name
        assert spec6(response, rid)["Code"] == "InvalidArgument"
    junk: Any
    for junk in ({}, None, [], "GET /", 5, {"Records": []}):
        response, rid = object_get(junk)
        assert response["statusCode"] == 400, junk
        spec6(response, rid)


def _post(body: str, content_type: str | None = None, *, base64_body: bool = False) -> dict[str, Any]:
    return url_event(
        query="x-oss-async-process",
        method="POST",
        body=body,
        content_type=content_type,
        base64_body=base64_body,
    )


OSS = "video/snapshots,f_jpg,m_avg,num_2,w_80"
BAD_POSTS: list[tuple[str, str | None, int]] = [
    ("", None, 400),
    ("garbage", None, 400),
    ("x-oss-async-process=", "application/x-www-form-urlencoded", 400),
    ("x-oss-async-process=video/snapshot,t_0", None, 400),
    (f"x-oss-async-process={OSS}&x-oss-async-process=video/snapshots,f_png", None, 400),
    ("%ZZ=%ZZ", None, 400),
    ("{", "application/json", 400),
    ("[]", "application/json", 400),
    ("null", "application/json", 400),
    ("1", "application/json", 400),
    ("{}", "application/json", 400),
    ('{"Process": 5}', "application/json", 400),
    ('{"Process": "video/snapshots,f_jpg,num_5000"}', None, 400),
    ('{"Process": "video/snapshots,f_jpg,thr_101"}', None, 400),
    ('{"Process": "video/snapshots,f_jpg", "UserData": {"a": 1}}', None, 400),
    ('{"Process": "video/snapshots,f_jpg", "Extra": 1}', None, 400),
    ('{"Sources": "x"}', "application/json", 400),
    ('{"Key": "other.mp4", "Process": "video/snapshots,f_jpg"}', None, 400),
    ('{"Bucket": "vidsnap-other", "Key": "videos/clip.mp4", "Process": "video/snapshots,f_jpg"}', None, 403),
    (
        json.dumps({"Process": f"{OSS}|sys/saveas,b_{b64('vidsnap-other')},o_{b64('x/{index}.jpg')}"}),
        None,
        403,
    ),
    (json.dumps({"Process": f"{OSS}|sys/saveas,o_{b64('../x/{index}.jpg')}"}), None, 400),
    (json.dumps({"Process": f"{OSS}|sys/saveas,o_{b64('/abs/{index}.jpg')}"}), None, 400),
    ("a" * 1_000_000, None, 400),
    # Regression: notify targets off ALLOWED_TOPICS / ALLOWED_QUEUES were queued (then refused).
    (json.dumps({"Process": f"{OSS}|notify,topic_{b64('evil-topic')}"}), None, 403),
    (
        json.dumps({"Process": f"{OSS}|notify,queue_{b64('https://sqs.us-east-1.amazonaws.com/1/q')}"}),
        None,
        403,
    ),
    (json.dumps({"Process": f"{OSS}|notify,topic_{b64('arn:aws:sqs:us-east-1:1:q')}"}), None, 400),
]


def test_function_url_bad_posts_enqueue_nothing(http_aws: dict[str, Any], object_get: Any) -> None:
    for body, content_type, status in BAD_POSTS:
        response, rid = object_get(_post(body, content_type))
        assert response["statusCode"] == status, (body[:80], response["body"][:300])
        spec6(response, rid)
    assert "Messages" not in http_aws["sqs"].receive_message(QueueUrl=http_aws["queue_url"])


def test_function_url_post_shapes_that_are_accepted(http_aws: dict[str, Any], object_get: Any) -> None:
    form = f"x-oss-async-process={quote(OSS, safe='')}"
    accepted = [
        _post(form, "application/x-www-form-urlencoded"),
        _post(form, "text/plain"),
        _post(base64.b64encode(form.encode()).decode(), base64_body=True),
        _post(json.dumps({"Process": OSS}), "application/json"),
        _post(json.dumps({"Process": OSS}), "multipart/form-data; boundary=x"),
        _post(json.dumps({"Process": f"{OSS}|notify,topic_{b64('vidsnap-notify')}"}), "application/json"),
    ]
    for event in accepted:
        response, rid = object_get(event)
        assert response["statusCode"] == 200, response["body"]
        body = json.loads(response["body"])
        assert set(body) == {"EventId", "RequestId", "TaskId"}
        assert body["RequestId"] == rid
    got = http_aws["sqs"].receive_message(QueueUrl=http_aws["queue_url"], MaxNumberOfMessages=10)
    assert len(got["Messages"]) == len(accepted)


def test_function_url_post_non_ascii_task_is_enqueued_as_sent(
    http_aws: dict[str, Any], object_get: Any
) -> None:
    """Regression: the queue message was re-serialised with \\u escapes (up to 6x longer), so a
    57 k-character task of non-ASCII keys was refused as "297492 characters"."""
    snapshots = [
        {"Format": "jpg", "Number": 1, "URI": f"s3://vidsnap-output/x{i}{'ü' * 480}/{{index}}.jpg"}
        for i in range(100)
    ]
    task = {
        "Sources": [{"URI": f"s3://vidsnap-source/{CLIP}"}],
        "Targets": [{"Image": {"Snapshots": snapshots}}],
    }
    response, _ = object_get(_post(json.dumps(task, ensure_ascii=False), "application/json"))
    assert response["statusCode"] == 200, response["body"][:300]
    (message,) = http_aws["sqs"].receive_message(QueueUrl=http_aws["queue_url"])["Messages"]
    assert json.loads(message["Body"]) == task
    assert "ü" in message["Body"]


def test_sqs_submitter_refuses_messages_sqs_would_refuse() -> None:
    from vidsnap.aws.httpapp import sqs_submitter
    from vidsnap.core.errors import TooLarge

    class Client:
        def send_message(self, **_: Any) -> dict[str, Any]:
            raise AssertionError("sent a message above the SQS limit")

    with pytest.raises(TooLarge):
        sqs_submitter(Client(), "https://sqs/q")("ü" * 140_000)  # 280,000 bytes


def test_function_url_post_missing_object_and_bad_utf8(http_aws: dict[str, Any], object_get: Any) -> None:
    missing = _post(f"x-oss-async-process={OSS}")
    missing["rawPath"] = missing["requestContext"]["http"]["path"] = "/videos/none.mp4"
    response, rid = object_get(missing)
    assert response["statusCode"] == 404
    spec6(response, rid)
    response, rid = object_get(_post(base64.b64encode(b"\xff\xfe").decode(), base64_body=True))
    assert response["statusCode"] == 400
    spec6(response, rid)


def test_function_url_unknown_tasks_are_404(http_aws: dict[str, Any], object_get: Any) -> None:
    for task in ("junk", "%00", "a" * 3000, "vs-" + "0" * 32, "%FF", "..", "x%20y"):
        response, rid = object_get(url_event("/tasks/" + task, ""))
        assert response["statusCode"] == 404, task
        assert spec6(response, rid)["Code"] == "NoSuchKey"


def test_oversized_task_ids_are_404_without_a_lookup() -> None:
    """Regression: an id above DynamoDB's 2048-byte key limit reached GetItem (ValidationException,
    a 500 on real DynamoDB; moto does not check)."""
    from vidsnap.aws.httpapp import create_app

    with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what the project installs
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient

    class Tasks:
        def get(self, task_id: str) -> dict[str, Any] | None:
            assert len(task_id.encode()) <= 2048, "looked up an id DynamoDB refuses"
            return None

    client = TestClient(create_app(settings=Settings(), store=object(), tasks=Tasks()))  # type: ignore[arg-type]
    for task in ("ü" * 1025, "a" * 2049, "a" * 2048):
        response = client.get("/tasks/" + quote(task))
        assert response.status_code == 404
        assert response.json()["Code"] == "NoSuchKey"


def test_signed_urls_resist_tampering(
    http_aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, object_get: Any
) -> None:
    monkeypatch.setenv("SIGNING_SECRET", "topsecret")
    get_settings.cache_clear()
    process = "video/snapshot,t_0,w_80"
    query = sign_url("topsecret", "/" + CLIP, process, int(time.time()) + 600).split("?", 1)[1]
    signature = query.rsplit("=", 1)[1]
    assert object_get(url_event(query=query, iam=False))[0]["statusCode"] == 200
    assert (
        object_get(url_event(query=query.replace(signature, signature.upper()), iam=False))[0]["statusCode"]
        == 200
    )
    expired = sign_url("topsecret", "/" + CLIP, process, 1).split("?", 1)[1]
    forged = [
        url_event(query="x-oss-process=" + process, iam=False),
        url_event(query=query.replace("t_0", "t_5"), iam=False),
        url_event("/videos/other.mp4", query, iam=False),
        url_event(query=expired, iam=False),
        url_event(query=query + "&x-vidsnap-signature=00", iam=False),
        url_event(query=query.replace(signature, "%C3%BC" * 32), iam=False),  # was a 500 (TypeError)
        url_event(query=query.replace(signature, signature[:-1] + "%00"), iam=False),
        url_event(query=f"x-oss-process={process}&x-vidsnap-expires=nan&x-vidsnap-signature=ab", iam=False),
        url_event(
            query=f"x-oss-process={process}&x-vidsnap-expires={'9' * 5000}&x-vidsnap-signature=a", iam=False
        ),
        url_event("/tasks/abc", "", iam=False),
    ]
    for event in forged:
        response, rid = object_get(event)
        assert response["statusCode"] == 403, response["body"]
        assert spec6(response, rid)["Code"] == "AccessDenied"
    # A second process value next to a signed one is refused, not silently resolved.
    response, rid = object_get(url_event(query="x-oss-process=video/snapshot,t_900&" + query, iam=False))
    assert response["statusCode"] in (400, 403)
    spec6(response, rid)


def test_check_signature_non_ascii_is_not_allowed() -> None:
    """Regression: hmac.compare_digest raised TypeError on a non-ASCII signature (a 500)."""
    from vidsnap.core.errors import NotAllowed

    with pytest.raises(NotAllowed):
        check_signature("s", "/k", "p", {"x-vidsnap-expires": "9999999999", "x-vidsnap-signature": "ü" * 64})


def test_misconfigured_function_url_answers_500_json(
    http_aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    load_function: Callable[[str], ModuleType],
    lambda_context: Callable[..., Any],
) -> None:
    """Regression: a missing or bad variable used to escape the handler as an exception. (A bad
    UPLOAD_RULES is the asynchronous function's: the object-get function does not read it, see
    tests/test_object_get.py.)"""
    for name, value in (
        ("SOURCE_BUCKET", ""),
        ("MAX_FRAMES", "many"),
        ("RESULTS_PREFIX", "/a"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            get_settings.cache_clear()
            ctx = lambda_context("vidsnap-ObjectGetFunction")
            response = load_function("object_get").handler(url_event(), ctx)
        assert response["statusCode"] == 500, name
        body = json.loads(response["body"])
        assert body == {"Code": "InternalError", "Message": body["Message"], "RequestId": ctx.aws_request_id}
        assert "misconfigured" in body["Message"]
    get_settings.cache_clear()


# ==================================================================================================
# S3 Object Lambda


class RecordingS3:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def write_get_object_response(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


class _Origin(http.server.BaseHTTPRequestHandler):
    """A tiny origin for inputS3Url: /status/<n> answers n, /media answers ``media`` bytes."""

    media = b""

    def do_GET(self) -> None:
        if self.path.startswith("/status/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.media if self.path == "/media" else b"plain text, not a video " * 50
        self.send_response(200)  # ignores Range: the reader must slice
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origin(make_media: Callable[[str], Any]) -> Iterator[str]:
    _Origin.media = Path(make_media("mp4_h264").path).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def olap_event(input_url: str, *, query: str = "x-oss-process=video/snapshot,t_0,w_80") -> dict[str, Any]:
    event = load_event("object-lambda.json")
    event["getObjectContext"]["inputS3Url"] = input_url
    event["userRequest"]["url"] = (
        "https://ap.s3-object-lambda.us-east-1.amazonaws.com/videos/clip.mp4?" + query
    )
    return event


def run_olap(
    event: Any, settings: Callable[[], Any] = Settings
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    s3 = RecordingS3()
    result = answer_object_lambda_event(s3, event, settings, request_id="rid-1")
    return result, s3.calls


def test_object_lambda_answers_from_a_range_ignoring_origin(origin: str) -> None:
    result, (call,) = run_olap(olap_event(origin + "/media"))
    assert result["status_code"] == call["StatusCode"] == 200
    assert call["ContentType"] == "image/jpeg"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/status/404", 404), ("/status/403", 403), ("/status/503", 503), ("/status/416", 415), ("/text", 415)],
)
def test_object_lambda_failing_input_url(origin: str, path: str, status: int) -> None:
    result, (call,) = run_olap(olap_event(origin + path))
    assert result["status_code"] == call["StatusCode"] == status
    assert call["RequestRoute"] == "io-use1-001"
    assert "rid-1" in call["ErrorMessage"]


@pytest.mark.parametrize(
    "url",
    ["file:///etc/hostname", "ftp://example.com/x", "not a url", "", "https://[::1", "http://127.0.0.1:1/x"],
)
def test_object_lambda_refuses_non_http_input_urls(url: str) -> None:
    """Regression: urllib opened file:// and ftp:// input URLs; malformed ones were 500 InternalError
    with a logged traceback."""
    result, (call,) = run_olap(olap_event(url))
    assert call["StatusCode"] in (500, 503)
    assert result["status_code"] == call["StatusCode"]
    assert "internal error: ValueError" not in call["ErrorMessage"]
    if url.startswith(("file:", "ftp:")):
        assert "http(s)" in call["ErrorMessage"]
        with pytest.raises(Exception, match="http"):
            HTTPRangeReader(url)


@pytest.mark.parametrize(
    "event",
    [
        {"getObjectContext": None},
        {"getObjectContext": {}},
        {"getObjectContext": "x"},
        {"getObjectContext": {"inputS3Url": "http://x/", "outputRoute": 5, "outputToken": "t"}},
        {"getObjectContext": {"inputS3Url": "http://x/", "outputRoute": "r"}},
    ],
)
def test_object_lambda_without_route_or_token_never_raises(event: dict[str, Any]) -> None:
    """Regression: the handler indexed getObjectContext blindly (KeyError/TypeError)."""
    result, calls = run_olap(event)
    assert calls == []
    assert result["status_code"] == 400


def test_object_lambda_odd_fields_are_answered(origin: str) -> None:
    event = olap_event(origin + "/media", query="")
    event["userRequest"] = {"url": 5}  # not a URL: fall back to the payload (t_0, png)
    _, (call,) = run_olap(event)
    assert call["StatusCode"] == 200
    assert call["ContentType"] == "image/png"
    for odd in ({"userRequest": None, "configuration": None}, {"configuration": {"payload": 5}}):
        event = olap_event(origin + "/media", query="")
        event.update(odd)
        _, (call,) = run_olap(event)
        assert call["StatusCode"] == 400
        assert call["ErrorCode"] == "InvalidArgument"
    event = olap_event(origin + "/media")
    event["getObjectContext"]["inputS3Url"] = None
    _, (call,) = run_olap(event)
    assert call["StatusCode"] == 500


def test_object_lambda_duplicated_or_unparsable_user_query(origin: str) -> None:
    """Regression: a second x-oss-process in the user's URL was ignored; a user URL that does not
    parse was an InternalError."""
    twice = olap_event(
        origin + "/media", query="x-oss-process=video/snapshot,t_0&x-oss-process=video/snapshot,t_9"
    )
    _, (call,) = run_olap(twice)
    assert call["StatusCode"] == 400
    assert "EC 0053-00000109" in call["ErrorMessage"]
    broken = olap_event(origin + "/media")
    broken["userRequest"]["url"] = "https://[::1/videos/clip.mp4?x-oss-process=video/snapshot,t_0"
    _, (call,) = run_olap(broken)  # falls back to the access point payload (t_0, png)
    assert call["StatusCode"] == 200
    assert call["ContentType"] == "image/png"


def test_object_lambda_misconfigured_is_answered_500(origin: str) -> None:
    def broken() -> Settings:
        raise ValueError("MAX_FRAMES must be an integer, got 'x'")

    result, (call,) = run_olap(olap_event(origin + "/media"), broken)
    assert call["StatusCode"] == 500
    assert "misconfigured" in call["ErrorMessage"]
    assert result["status_code"] == 500


def test_object_get_handler_routes_malformed_olap_without_raising(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    load_function: Callable[[str], ModuleType],
    lambda_context: Callable[..., Any],
) -> None:
    monkeypatch.setenv("SOURCE_BUCKET", "vidsnap-source")
    get_settings.cache_clear()
    module = load_function("object_get")

    class Clients:
        s3 = RecordingS3()

    module._clients = Clients()  # type: ignore[attr-defined]
    for event in ({"getObjectContext": None}, {"getObjectContext": {"outputRoute": "r"}}):
        result = module.handler(event, lambda_context("f"))
        assert result["status_code"] == 400
    event = olap_event("file:///etc/hostname")
    assert module.handler(event, lambda_context("f"))["status_code"] == 500
    assert [c["StatusCode"] for c in Clients.s3.calls] == [500]
    get_settings.cache_clear()


# ==================================================================================================
# async handler


PROCESS = f"video/snapshots,f_jpg,m_avg,num_2,w_80|notify,topic_{b64('vidsnap-notify')}"


@pytest.fixture
def async_aws(aws_env: None, monkeypatch: pytest.MonkeyPatch, clip_bytes: bytes) -> Iterator[dict[str, Any]]:
    env = {
        "SOURCE_BUCKET": "vidsnap-source",
        "OUTPUT_BUCKET": "vidsnap-output",
        "ALLOWED_TOPICS": "vidsnap-notify",
        "ALLOWED_QUEUES": "vidsnap-notify-queue",
        "TASK_TABLE": "vidsnap-tasks",
        "MAX_FRAMES": "20",
        "UPLOAD_RULES": json.dumps([{"prefix": "videos/", "suffix": ".mp4", "process": PROCESS}]),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("SIGNING_SECRET", "ALLOWED_OUTPUT_BUCKETS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        for bucket in ("vidsnap-source", "vidsnap-output", "vidsnap-other"):
            s3.create_bucket(Bucket=bucket)
        for key in (CLIP, "videos/throttle.mp4"):
            s3.put_object(Bucket="vidsnap-source", Key=key, Body=clip_bytes)
        s3.put_object(Bucket="vidsnap-other", Key=CLIP, Body=clip_bytes)
        s3.put_object(Bucket="vidsnap-source", Key="videos/empty.mp4", Body=b"")
        s3.put_object(Bucket="vidsnap-source", Key="videos/notes.mp4", Body=b"not a video " * 100)
        _table("vidsnap-tasks")
        inboxes = {}
        for topic_name in ("vidsnap-notify", "evil-topic"):
            topic = sns.create_topic(Name=topic_name)["TopicArn"]
            inbox = sqs.create_queue(QueueName=f"inbox-{topic_name}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
            )
            inboxes[topic_name] = inbox
        inboxes["evil-queue"] = sqs.create_queue(QueueName="evil-queue")["QueueUrl"]
        yield {"s3": s3, "sqs": sqs, "inboxes": inboxes}
    get_settings.cache_clear()


@pytest.fixture
def async_handler(
    load_function: Callable[[str], ModuleType], lambda_context: Callable[..., Any]
) -> Callable[[Any], Any]:
    module = load_function("async_snapshots")
    ctx = functools.partial(
        lambda_context, "vidsnap-AsyncSnapshotsFunction", memory_limit_in_mb=3008, timeout_s=900
    )
    return lambda event: module.handler(event, ctx())


def sqs_batch(*bodies: Any) -> dict[str, Any]:
    template = load_event("sqs-task-batch.json")["Records"][0]
    return {"Records": [{**template, "messageId": f"msg-{i}", "body": b} for i, b in enumerate(bodies)]}


def oss_task(process: str, key: str = CLIP, bucket: str = "vidsnap-source") -> str:
    return json.dumps({"Bucket": bucket, "Key": key, "Process": process})


def s3_record(bucket: Any, key: Any) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


def keys(aws: dict[str, Any], bucket: str) -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def drain(aws: dict[str, Any], inbox: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = aws["sqs"].receive_message(QueueUrl=aws["inboxes"][inbox], MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return out
        for m in got["Messages"]:
            out.append(json.loads(m["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws["inboxes"][inbox], ReceiptHandle=m["ReceiptHandle"])


POISON_BODIES: list[Any] = [
    "",
    "null",
    "[]",
    "[1, 2]",
    "1",
    '"text"',
    "true",
    "{",
    "{}",
    "\x00",
    "x" * 200_000,
    json.dumps({"Records": []}),
    json.dumps({"Records": [{}]}),
    json.dumps({"Records": [{"s3": None}]}),
    json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": "b", "object": "k"}}]}),
    json.dumps(
        {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": ["b"]}, "object": {"key": 1}}}]}
    ),
    json.dumps({"Records": [s3_record("vidsnap-source", "videos/a.mp4") | {"eventName": None}]}),
    json.dumps({"Type": "Notification", "Message": "garbage"}),
    json.dumps({"Type": "Notification", "Message": None}),
    json.dumps({"Type": "Notification", "Message": [1]}),
    json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": "x"}),
    json.dumps(
        {"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": "b", "object": []}}
    ),
    json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": None}),
    json.dumps({"Event": "s3:TestEvent"}),
    json.dumps({"Bucket": 1, "Key": {}, "Process": []}),
    json.dumps({"Bucket": "vidsnap-source", "Key": CLIP}),
    oss_task("video/snapshot,t_0"),
    oss_task("video/snapshots,f_jpg", key="../x.mp4"),
    oss_task("video/snapshots,f_jpg", key=""),
    oss_task("video/snapshots,f_jpg|" + "x" * 10_000),
    '{"Sources":[{"URI":"s3://vidsnap-source/videos/clip.mp4"}],"Targets":[{"Image":{"Snapshots":[{"Format":"jpg","Interval":NaN}]}}]}',
    json.dumps(
        {
            "Sources": [{"URI": f"s3://vidsnap-source/{CLIP}"}],
            "Targets": [{"Image": {"Sprites": [{"TileWidth": 0}]}}],
        }
    ),
    "video/snapshots,f_jpg",
]


def test_poison_messages_never_fail_the_batch(async_aws: dict[str, Any], async_handler: Any) -> None:
    """Regression included: S3-shaped bodies with a string bucket/object or detail raised
    AttributeError and were retried (then dead-lettered) instead of being dropped."""
    good = oss_task(PROCESS)
    result = async_handler(sqs_batch(good, *POISON_BODIES, good))
    assert result == {"batchItemFailures": []}
    assert keys(async_aws, "vidsnap-output") == ["clip/1.jpg", "clip/2.jpg"]
    (note,) = drain(async_aws, "vidsnap-notify")  # the duplicate delivery ran once
    assert note["Status"] == "Succeeded"
    assert len(note["Outputs"]) == 2


def test_random_bodies_never_fail_the_batch(async_aws: dict[str, Any], async_handler: Any) -> None:
    rng = random.Random(SEED)
    atoms: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "x", "s3://", f"s3://vidsnap-source/{CLIP}",
                        "video/snapshots,f_jpg", "\x00", "ü", "{index}", "..", "/a", [], {}]  # fmt: skip
    fields = ["Records", "s3", "bucket", "name", "object", "key", "eventSource", "eventName", "Type",
              "Message", "detail", "detail-type", "source", "Sources", "URI", "Targets", "Image",
              "Snapshots", "Input", "SnapshotConfig", "Bucket", "Key", "Process", "UserData"]  # fmt: skip

    def rand(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.35:
            return rng.choice(atoms)
        if roll < 0.75:
            return {rng.choice(fields): rand(depth + 1) for _ in range(rng.randint(0, 4))}
        return [rand(depth + 1) for _ in range(rng.randint(0, 3))]

    bodies = [json.dumps(rand()) for _ in range(60)]
    assert async_handler(sqs_batch(*bodies)) == {"batchItemFailures": []}
    assert keys(async_aws, "vidsnap-output") == []
    assert keys(async_aws, "vidsnap-other") == [CLIP]


def test_only_transient_failures_are_retried(
    async_aws: dict[str, Any], async_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = getattr(vidsnap.aws.worker, "open_s3")  # noqa: B009 - not re-exported

    def open_s3(client: Any, bucket: str, key: str, **kw: Any) -> Any:
        if key == "videos/throttle.mp4":
            raise Throttled("SlowDown")
        return real_open(client, bucket, key, **kw)

    monkeypatch.setattr(vidsnap.aws.worker, "open_s3", open_s3)
    batch = sqs_batch(
        "garbage",
        oss_task(PROCESS, key="videos/throttle.mp4"),
        oss_task(PROCESS, key="videos/missing.mp4"),
        oss_task(PROCESS, key="videos/empty.mp4"),
        oss_task(PROCESS, key="videos/notes.mp4"),
        oss_task(PROCESS),
    )
    assert async_handler(batch) == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    notes = {n["Sources"][0]["URI"].rsplit("/", 1)[1]: n for n in drain(async_aws, "vidsnap-notify")}
    assert notes["missing.mp4"]["Status"] == "Failed"
    assert notes["missing.mp4"]["Code"] == "NoSuchKey"
    assert notes["empty.mp4"]["Status"] == notes["notes.mp4"]["Status"] == "Failed"
    assert notes["notes.mp4"]["Code"] == "UnsupportedMediaType"
    assert notes["clip.mp4"]["Status"] == "Succeeded"
    assert "throttle.mp4" not in notes
    assert all(n["Outputs"] == [] for n in notes.values() if n["Status"] == "Failed")


def test_targets_off_the_allow_lists_write_nothing(async_aws: dict[str, Any], async_handler: Any) -> None:
    notify = f"notify,topic_{b64('vidsnap-notify')}"
    batch = sqs_batch(
        oss_task(f"video/snapshots,f_jpg,num_2|sys/saveas,b_{b64('vidsnap-other')},o_{b64('x/{index}.jpg')}|{notify}"),
        oss_task(f"video/snapshots,f_jpg,num_2|notify,topic_{b64('evil-topic')}"),
        oss_task(f"video/snapshots,f_jpg,num_2|notify,topic_{b64('arn:aws:sns:us-east-1:999999999999:vidsnap-notify')}"),
        oss_task(f"video/snapshots,f_jpg,num_2|notify,queue_{b64('evil-queue')}"),
        oss_task(f"video/snapshots,f_jpg,num_21|{notify}"),  # above MAX_FRAMES (20)
        oss_task(f"video/snapshots,f_jpg,num_2|{notify}", bucket="vidsnap-other"),  # not SOURCE_BUCKET
        json.dumps({
            "Input": {"Bucket": "vidsnap-source", "Object": CLIP},
            "SnapshotConfig": {"OutputFile": {"Bucket": "vidsnap-other", "Object": "o{Count}.jpg"}, "Num": 2},
        }),
    )  # fmt: skip
    assert async_handler(batch) == {"batchItemFailures": []}
    assert keys(async_aws, "vidsnap-output") == []
    assert keys(async_aws, "vidsnap-other") == [CLIP]
    assert drain(async_aws, "evil-topic") == []
    assert drain(async_aws, "evil-queue") == []
    notes = drain(async_aws, "vidsnap-notify")
    assert sorted(n["Code"] for n in notes) == ["AccessDenied", "AccessDenied", "InvalidArgument"]
    assert all(n["Status"] == "Failed" and n["Outputs"] == [] for n in notes)


def test_num_zero_stops_at_max_frames_with_a_warning(
    async_aws: dict[str, Any], async_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_FRAMES", "3")
    get_settings.cache_clear()
    notify = f"notify,topic_{b64('vidsnap-notify')}"
    assert async_handler(sqs_batch(oss_task(f"video/snapshots,f_jpg,w_80|{notify}"))) == {
        "batchItemFailures": []
    }
    (note,) = drain(async_aws, "vidsnap-notify")
    assert note["Status"] == "Succeeded"
    assert len(note["Outputs"]) == 3
    assert note["Warnings"]


def test_a_failure_midway_leaves_no_partial_outputs(async_aws: dict[str, Any], async_handler: Any) -> None:
    """Keys 1..9 fit in 1024 bytes, key 10 does not: the task fails after writing nine frames."""
    template = "p" * (1024 - len("/.jpg") - 1) + "/{index}.jpg"
    notify = f"notify,topic_{b64('vidsnap-notify')}"
    process = f"video/snapshots,f_jpg,w_80,num_12|sys/saveas,o_{b64(template)}|{notify}"
    assert async_handler(sqs_batch(oss_task(process))) == {"batchItemFailures": []}
    (note,) = drain(async_aws, "vidsnap-notify")
    assert note["Status"] == "Failed"
    assert note["Outputs"] == []
    assert keys(async_aws, "vidsnap-output") == []


def test_sqs_records_without_a_text_body_are_dropped(async_aws: dict[str, Any], async_handler: Any) -> None:
    """Regression: a record whose body is not text raised and was retried until dead-lettered."""
    batch = sqs_batch(None, 5, {"a": 1}, oss_task(PROCESS))
    del batch["Records"][1]["body"]
    assert async_handler(batch) == {"batchItemFailures": []}
    assert len(keys(async_aws, "vidsnap-output")) == 2


def test_sqs_records_without_a_message_id_do_not_crash_the_batch(
    async_aws: dict[str, Any], async_handler: Any
) -> None:
    """Regression: powertools raised KeyError('messageId') reporting a failed record without one."""
    batch = sqs_batch(None, "garbage")
    for record in batch["Records"]:
        del record["messageId"]
    assert async_handler(batch) == {"uploads": 0}


UNKNOWN_DIRECT_EVENTS: list[Any] = [
    None,
    [],
    "x",
    5,
    {},
    {"Records": None},
    {"Records": []},
    {"Records": [1, "a", None]},
    {"Records": [{}]},
    {"Records": [s3_record("vidsnap-source", None)]},
    {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": "b", "object": "k"}}]},
    {"Records": [{"EventSource": "aws:sns", "Sns": None}]},
    {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{"}}]},
    {"detail-type": "Object Created", "source": "aws.s3", "detail": "x"},
    {"detail-type": "Object Created", "source": "aws.s3", "detail": []},
    {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": 5}, "object": {"key": "k"}},
    },
    {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
    {"source": "aws.s3", "detail-type": "Object Created"},
]


def test_unknown_direct_events_are_ignored(async_aws: dict[str, Any], async_handler: Any) -> None:
    """Regression: non-dict events and records raised AttributeError."""
    for event in UNKNOWN_DIRECT_EVENTS:
        assert async_handler(event) == {"uploads": 0}, event
    assert keys(async_aws, "vidsnap-output") == []


def test_direct_uploads_with_odd_fields(async_aws: dict[str, Any], async_handler: Any) -> None:
    eventbridge = load_event("eventbridge-s3.json")
    eventbridge["detail"]["object"] = {"key": CLIP, "size": None, "etag": 5, "version-id": ["x"]}
    assert async_handler(eventbridge) == {"uploads": 1}
    missing = {"Records": [s3_record("vidsnap-source", "videos/none.mp4"), s3_record("vidsnap-other", CLIP)]}
    assert async_handler(missing) == {"uploads": 2}
    notes = drain(async_aws, "vidsnap-notify")
    assert sorted(n["Status"] for n in notes) == ["Failed", "Failed", "Succeeded"]
    assert keys(async_aws, "vidsnap-output") == ["clip/1.jpg", "clip/2.jpg"]
    assert keys(async_aws, "vidsnap-other") == [CLIP]


def test_uploads_from_event_tolerates_junk_fields() -> None:
    assert uploads_from_event({"Records": [{"s3": {"bucket": "b", "object": "k"}}]}) == []
    assert uploads_from_event({"detail-type": "Object Created", "source": "aws.s3", "detail": "x"}) == []
    (upload,) = uploads_from_event(
        {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": 1e999, "eTag": 7}}}]}
    )
    assert (upload.bucket, upload.key, upload.size, upload.etag) == ("b", "k", None, None)


def test_bad_upload_rules_retry_every_message_without_raising(
    async_aws: dict[str, Any], async_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad UPLOAD_RULES fails loudly: the batch answers every record as failed (retried after
    the configuration is fixed, or dead-lettered), instead of dropping the messages."""
    monkeypatch.setenv("UPLOAD_RULES", '[{"prefix": "videos/", "process": "video/snapshots,zz_1"}]')
    get_settings.cache_clear()
    result = async_handler(sqs_batch("garbage", oss_task(PROCESS)))
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}
    assert keys(async_aws, "vidsnap-output") == []


def test_duplicated_deliveries_across_envelopes_run_once(
    async_aws: dict[str, Any], async_handler: Any
) -> None:
    upload = json.dumps({"Records": [s3_record("vidsnap-source", CLIP)]})
    sns = json.dumps({"Type": "Notification", "Message": upload})
    assert async_handler(sqs_batch(upload, sns, upload)) == {"batchItemFailures": []}
    assert async_handler({"Records": [s3_record("vidsnap-source", CLIP)]}) == {"uploads": 1}
    assert keys(async_aws, "vidsnap-output") == ["clip/1.jpg", "clip/2.jpg"]
    assert len(drain(async_aws, "vidsnap-notify")) == 1


def test_multi_target_tasks_are_all_or_nothing(
    async_aws: dict[str, Any], async_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_PIXELS", str(100 * 100))
    get_settings.cache_clear()
    topic = "arn:aws:sns:us-east-1:123456789012:vidsnap-notify"

    def imm(second: dict[str, Any]) -> str:
        first = {
            "Format": "jpg",
            "Number": 2,
            "Mode": "average",
            "Width": 80,
            "URI": "s3://vidsnap-output/a/{index}.jpg",
        }
        return json.dumps(
            {
                "Sources": [{"URI": f"s3://vidsnap-source/{CLIP}"}],
                "Targets": [{"Image": {"Snapshots": [first, second]}}],
                "Notification": {"SNS": {"TopicArn": topic}},
            }
        )

    off_list = {"Format": "jpg", "Number": 2, "URI": "s3://vidsnap-other/b/{index}.jpg"}
    too_big = {
        "Format": "jpg",
        "Number": 2,
        "Width": 4000,
        "Height": 4000,
        "URI": "s3://vidsnap-output/b/{index}.jpg",
    }
    assert async_handler(sqs_batch(imm(off_list), imm(too_big))) == {"batchItemFailures": []}
    notes = drain(async_aws, "vidsnap-notify")
    assert [n["Status"] for n in notes] == ["Failed", "Failed"]
    assert all(n["Outputs"] == [] for n in notes)
    assert keys(async_aws, "vidsnap-output") == []
    assert keys(async_aws, "vidsnap-other") == [CLIP]

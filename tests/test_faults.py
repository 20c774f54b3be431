"""Injected S3 faults (docs/LIMITS.md): 503 SlowDown, 500, resets, short and cut bodies, slow answers.

Only an ETag that no longer matches (If-Match's 412) means the source changed. Every other fault
of a range read is transient: retried by the reader (body read included), and when it persists a
synchronous request answers 503 with Retry-After and a task is left to SQS to retry, with no
output left behind by the failed attempt.

The end-to-end tests run the real Starlette app, the Object Lambda answer and the Worker against
moto's server behind :class:`faultproxy.FaultProxy` (127.0.0.1), at 15 % and 50 % of the ranged
GETs faulted, with short backoffs (botocore's and the reader's) so they stay fast.
"""

from __future__ import annotations

import base64
import http.client
import io
import warnings
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    FlexibleChecksumError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.retries.standard import ExponentialBackoff
from faultproxy import KINDS, FaultProxy
from PIL import Image
from urllib3.exceptions import ProtocolError

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what the project installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from vidsnap.aws import clients as aws
from vidsnap.aws import objectlambda
from vidsnap.aws.clients import Clients
from vidsnap.aws.errors import map_client_error
from vidsnap.aws.httpapp import create_app, function_url_error
from vidsnap.aws.s3io import S3RangeReader
from vidsnap.aws.settings import Settings
from vidsnap.aws.storage import S3Store
from vidsnap.aws.taskstore import TaskStore, create_table
from vidsnap.aws.worker import Worker
from vidsnap.core import lang as parse
from vidsnap.core.blockio import RetryPolicy
from vidsnap.core.errors import SourceChanged, SourceUnavailable, Throttled, VidsnapError
from vidsnap.core.plan import SourceRef, task_id
from vidsnap.local import synth

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: The reader's retries in these tests: as many attempts as in production, millisecond sleeps.
FAST = RetryPolicy(attempts=4, base_s=0.001, cap_s=0.005)
BLOCK = 2048  # small blocks: several ranged GETs per snapshot, so several chances of a fault
TIMES = (0, 400, 1000, 1480, 2960)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


# -- the reader, unit by unit --------------------------------------------------------------------


class _Body:
    def __init__(self, data: bytes, error: BaseException | None = None) -> None:
        self.data, self.error = data, error

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data

    def close(self) -> None:
        pass


class _Scripted:
    """A get_object double: answers[i] says what call i does (bytes kept / exception); then right."""

    def __init__(self, data: bytes, answers: list[Any]) -> None:
        self.data, self.answers, self.calls = data, answers, 0

    def get_object(self, **kw: Any) -> dict[str, Any]:
        lo, hi = (int(x) for x in kw["Range"][len("bytes=") :].split("-"))
        part = self.data[lo : hi + 1]
        answer = self.answers[self.calls] if self.calls < len(self.answers) else None
        self.calls += 1
        if isinstance(answer, ClientError):
            raise answer
        if answer == "short":
            return {
                "Body": _Body(part[: len(part) // 2]),
                "ContentRange": f"bytes {lo}-{hi}/{len(self.data)}",
            }
        if isinstance(answer, BaseException):
            return {"Body": _Body(b"", answer)}
        return {"Body": _Body(part), "ContentRange": f"bytes {lo}-{hi}/{len(self.data)}"}


DATA = bytes(range(256)) * 40


def _reader(client: Any, **kw: Any) -> S3RangeReader:
    return S3RangeReader(client, "b", "k", size=len(DATA), etag="abc", block_size=1024, retry=FAST, **kw)


def test_a_short_body_is_retried_not_a_changed_source() -> None:
    client = _Scripted(DATA, ["short"])
    reader = _reader(client)
    assert reader.read() == DATA
    assert client.calls == 2
    assert reader.requests == 2


@pytest.mark.parametrize(
    "fault",
    [
        IncompleteReadError(actual_bytes=1, expected_bytes=2),
        FlexibleChecksumError(error_msg="Expected checksum x did not match calculated checksum: y"),
        ResponseStreamingError(error=ProtocolError("Connection broken")),
        http.client.IncompleteRead(b"x", 10),
        ProtocolError("Connection broken: IncompleteRead"),
        ConnectionResetError(104, "reset"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_body_read_faults_are_transient_and_retried(fault: BaseException) -> None:
    mapped = map_client_error(fault, "s3://b/k")
    assert mapped.transient
    assert mapped.status == 503
    client = _Scripted(DATA, [fault, fault])
    assert _reader(client).read() == DATA
    assert client.calls == 3


def test_persistent_faults_end_as_source_unavailable_503() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=4, base_s=0.1, cap_s=0.3, sleep=sleeps.append)
    client = _Scripted(DATA, ["short"] * 10)
    reader = S3RangeReader(client, "b", "k", size=len(DATA), etag="abc", block_size=1024, retry=policy)
    with pytest.raises(SourceUnavailable) as err:
        reader.read(10)
    assert not isinstance(err.value, SourceChanged)
    assert (err.value.status, err.value.transient) == (503, True)
    assert isinstance(err.value, Throttled)
    assert client.calls == 4
    assert reader.requests == 4
    # Full jitter over a capped exponential: 0.1, 0.2, then 0.3 (the cap), each a random share.
    assert len(sleeps) == 3
    assert all(0 <= s <= bound for s, bound in zip(sleeps, (0.1, 0.2, 0.3), strict=True))


def test_a_failed_if_match_is_the_only_changed_source_and_is_not_retried() -> None:
    failed = ClientError(
        {"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}}, "GetObject"
    )
    client = _Scripted(DATA, [failed])
    with pytest.raises(SourceChanged):
        _reader(client).read(10)
    assert client.calls == 1


def test_permanent_errors_are_not_retried() -> None:
    missing = ClientError(
        {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject"
    )
    client = _Scripted(DATA, [missing])
    with pytest.raises(VidsnapError) as err:
        _reader(client).read(10)
    assert err.value.status == 404
    assert client.calls == 1


def test_transient_errors_answer_503_with_retry_after() -> None:
    class Store:
        def info(self, key: str) -> Any:  # noqa: ARG002
            raise SourceUnavailable("s3://b/k: still failing")

        def open(self, key: str) -> Any:  # noqa: ARG002
            raise AssertionError("not reached")

    r = TestClient(create_app(settings=Settings(), store=Store())).get(
        "/v.mp4?x-oss-process=video/snapshot,t_0"
    )
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["Code"] == "SourceUnavailable"
    answer = function_url_error(SourceUnavailable("x"), "rid")
    assert (answer["statusCode"], answer["headers"]["Retry-After"]) == (503, "1")
    assert "Retry-After" not in function_url_error(VidsnapError("x"), "rid")["headers"]


# -- end to end through the fault proxy ----------------------------------------------------------


@pytest.fixture
def fast_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own backoff (1 s base for throttling) scaled down to milliseconds."""
    config = dict(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG)
    monkeypatch.setattr(
        ExponentialBackoff,
        "_DEFAULT_BACKOFF_CONFIG",
        {**config, "throttling_base_scale": 0.002, "non_throttling_base_scale": 0.001},
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """3 s at 25 fps, 160x90, every frame a keyframe: a few hundred KB, so that one snapshot
    takes several ranged GETs of :data:`BLOCK`-sized blocks (a tiny clip is read in one GET)."""
    path = tmp_path_factory.mktemp("faults") / "intra.mp4"
    return Path(
        synth.make_video(path, duration_s=3, gop=1, bframes=0, width=160, height=90).path
    ).read_bytes()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """As :func:`clip` at 320x180: a task reads it in many GETs, between the frames it writes."""
    path = tmp_path_factory.mktemp("faults") / "intra320.mp4"
    return Path(synth.make_video(path, duration_s=3, gop=1, bframes=0).path).read_bytes()


def _s3(endpoint: str) -> Any:
    """An S3 client with the production configuration (retries, timeouts, checksums)."""
    return boto3.client("s3", endpoint_url=endpoint, config=aws.s3_config(), **CREDS)


@pytest.fixture(scope="module")
def bucket(moto_server: str, clip: bytes) -> str:
    name = "faults-src"  # fixed: the proxy's choice of faults depends on the path
    direct = _s3(moto_server)
    direct.create_bucket(Bucket=name)
    for i in range(2):  # two keys: the warm app keeps one video open, alternating reopens it
        direct.put_object(Bucket=name, Key=f"videos/clip{i}.mp4", Body=clip)
    return name


def _snapshot_urls(n: int) -> list[str]:
    return [
        f"/videos/clip{i % 2}.mp4?x-oss-process=video/snapshot,t_{TIMES[i % len(TIMES)]},f_png"
        for i in range(n)
    ]


@pytest.mark.parametrize(("rate", "seed"), [(0.15, 1), (0.5, 2)])
@pytest.mark.usefixtures("fast_botocore")
def test_sync_snapshots_are_right_or_503(moto_server: str, bucket: str, rate: float, seed: int) -> None:
    def app(endpoint: str) -> TestClient:
        store = S3Store(_s3(endpoint), bucket, block_size=BLOCK, retry=FAST)
        return TestClient(create_app(settings=Settings(), store=store))

    urls = _snapshot_urls(40)
    reference = app(moto_server)
    expected = {}
    for url in urls[: 2 * len(TIMES)]:
        r = reference.get(url)
        assert r.status_code == 200, r.text
        expected[url] = _pixels(r.content)

    statuses: list[int] = []
    with FaultProxy(moto_server, rate=rate, seed=seed) as proxy:
        client = app(proxy.url)
        for url in urls:
            r = client.get(url)
            statuses.append(r.status_code)
            if r.status_code == 200:
                assert _pixels(r.content) == expected[url], url
            else:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"].isdigit()
                assert r.json()["Code"] in ("SourceUnavailable", "ServiceUnavailable")
    print(
        f"rate {rate}: {statuses.count(200)} right, {statuses.count(503)} x 503; "
        f"{proxy.ranged_gets} GETs, injected {dict(proxy.injected)}"
    )
    assert len(proxy.injected) >= (4 if rate < 0.3 else len(KINDS))  # the kinds of fault met
    assert statuses.count(200) >= (36 if rate < 0.3 else 24)  # retries absorb most faults


@pytest.mark.parametrize(("rate", "seed"), [(0.15, 3), (0.5, 4)])
@pytest.mark.usefixtures("fast_botocore")
def test_object_lambda_answers_right_or_503(
    moto_server: str, bucket: str, monkeypatch: pytest.MonkeyPatch, rate: float, seed: int
) -> None:
    monkeypatch.setattr(objectlambda.HTTPRangeReader, "retry", FAST)

    class Writer:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def write_get_object_response(self, **kw: Any) -> None:
            self.calls.append(kw)

    def answer(endpoint: str, key: str, t: int) -> dict[str, Any]:
        url = _s3(endpoint).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
        writer = Writer()
        objectlambda.answer_object_lambda(
            writer,
            route="r",
            token="t",
            input_url=url,
            user_url=f"https://ap.example/{key}?x-oss-process=video/snapshot,t_{t},f_png",
            payload=None,
            settings=Settings(),
            request_id="rid",
            block_size=BLOCK,
        )
        (call,) = writer.calls
        return call

    cases = [(f"videos/clip{i % 2}.mp4", TIMES[i % len(TIMES)]) for i in range(20)]
    expected = {case: _pixels(answer(moto_server, *case)["Body"]) for case in set(cases)}
    statuses = []
    with FaultProxy(moto_server, rate=rate, seed=seed) as proxy:
        for case in cases:
            call = answer(proxy.url, *case)
            statuses.append(call["StatusCode"])
            if call["StatusCode"] == 200:
                assert _pixels(call["Body"]) == expected[case], case
            else:
                assert call["StatusCode"] == 503, call
    print(
        f"rate {rate}: {statuses.count(200)} right, {statuses.count(503)} x 503; "
        f"{proxy.ranged_gets} GETs, injected {dict(proxy.injected)}"
    )
    assert proxy.injected
    assert statuses.count(200) >= (18 if rate < 0.3 else 12)


@pytest.fixture
def task_env(
    request: pytest.FixtureRequest,
    aws_env: None,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    big_clip: bytes,
) -> dict[str, Any]:
    tag = request.node.callspec.id.replace(".", "")  # fixed per case: the faults depend on the path
    names = {"src": f"src-{tag}", "out": f"out-{tag}", "ref": f"ref-{tag}", "table": f"tasks-{tag}"}
    direct = _s3(moto_server)
    for key in ("src", "out", "ref"):
        direct.create_bucket(Bucket=names[key])
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # DynamoDB straight to moto
    create_table(boto3.client("dynamodb", **CREDS), names["table"])
    return {"direct": direct, "clip": big_clip, "moto": moto_server, **names}


def _keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


TASK = f"video/snapshots,f_png,inter_500|sys/saveas,o_{_b64('{barename}/{index}.{autoext}')}"


@pytest.mark.parametrize(("rate", "seed", "attempts"), [(0.15, 5, 1), (0.5, 6, 2)])
@pytest.mark.usefixtures("fast_botocore")
def test_tasks_succeed_in_the_end_with_no_stray_outputs(
    task_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    rate: float,
    seed: int,
    attempts: int,
) -> None:
    """Readers less patient than in production (``attempts``), so that some deliveries fail
    mid-task: each failed delivery is transient (503), leaves no output, and a later one succeeds."""
    direct, src, out, ref = task_env["direct"], task_env["src"], task_env["out"], task_env["ref"]
    tasks = 8
    for i in range(tasks):
        direct.put_object(Bucket=src, Key=f"videos/clip{i}.mp4", Body=task_env["clip"])

    def worker(clients: Clients, output: str, *, table: str | None) -> Worker:
        settings = Settings(source_bucket=src, output_bucket=output, task_table=table, max_frames=50)
        policy = RetryPolicy(attempts=attempts, base_s=FAST.base_s, cap_s=FAST.cap_s)
        store = S3Store(clients.s3, src, block_size=BLOCK, cache_blocks=4, retry=policy)
        return Worker(settings, clients, store=store)

    def task(i: int) -> tuple[Any, SourceRef]:
        source = SourceRef(f"videos/clip{i}.mp4", src)
        return parse.parse_task(TASK).with_source(source), source

    # The reference: the same clip without faults (no proxy, no task table).
    assert (
        worker(Clients(region="us-east-1"), ref, table=None).execute(*task(0), "ref")["Status"] == "Succeeded"
    )
    reference = {
        key.split("/", 1)[1]: direct.get_object(Bucket=ref, Key=key)["Body"].read()
        for key in _keys(direct, ref)
    }
    assert len(reference) == 6  # 0, 500, ... 2500 ms
    expected = sorted(f"clip{i}/{name}" for i in range(tasks) for name in reference)

    etag = direct.head_object(Bucket=src, Key="videos/clip0.mp4")["ETag"]  # the same bytes for all
    retries = undone = 0
    with FaultProxy(task_env["moto"], rate=rate, seed=seed) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)  # every S3 call of the worker via the proxy
        clients = Clients(region="us-east-1")  # one per test, as a warm Lambda keeps them
        for i in range(tasks):
            for _delivery in range(30):  # SQS redelivers a message whose handling raised
                puts, deletes = proxy.methods["PUT"], proxy.methods["DELETE"]
                try:
                    message = worker(clients, out, table=task_env["table"]).execute(*task(i), f"req-{i}")
                except VidsnapError as exc:
                    failure = exc
                else:
                    break
                assert failure.transient, failure
                assert failure.status == 503
                retries += 1
                # A failed attempt leaves nothing behind (what it wrote, it deleted), and its
                # record waits for the retry.
                assert _keys(direct, out, f"clip{i}/") == []
                assert proxy.methods["DELETE"] - deletes >= proxy.methods["PUT"] - puts
                undone += proxy.methods["PUT"] - puts
                record = TaskStore(clients, task_env["table"]).get(task_id(task(i)[1], etag, task(i)[0]))
                assert record is not None
                assert (record["Status"], record["LastCode"]) == ("Running", failure.code)
            else:
                pytest.fail(f"task {i} never succeeded")
            assert message["Status"] == "Succeeded", message
            assert len(message["Outputs"]) == 6
    print(
        f"rate {rate}: {tasks} tasks, {retries} redeliveries; injected {dict(proxy.injected)}; "
        f"requests {dict(proxy.methods)}; outputs of failed attempts undone: {undone}"
    )
    assert retries > 0  # the transient path ran (whether a fault hit before or after a write
    # depends on the seed and the read pattern; the undo itself is pinned by
    # test_worker::test_transient_failure_is_retried_and_then_succeeds)
    assert _keys(direct, out) == expected  # no stray output, none missing
    for key in expected:
        got = direct.get_object(Bucket=out, Key=key)["Body"].read()
        assert _pixels(got) == _pixels(reference[key.split("/", 1)[1]]), key


def test_proxy_faults_reproduce_the_failures_without_retries(
    moto_server: str, bucket: str, fast_botocore: None
) -> None:
    """The proxy's short body on a whole-object range trips botocore's checksum (the 500s seen
    before) and a short body on a partial range comes back short (the 412s): both are now retried."""
    with FaultProxy(moto_server, rate=1.0, kinds=["short"]) as proxy:
        client = _s3(proxy.url)
        whole = client.head_object(Bucket=bucket, Key="videos/clip0.mp4")["ContentLength"]
        with pytest.raises(FlexibleChecksumError):
            client.get_object(Bucket=bucket, Key="videos/clip0.mp4", Range=f"bytes=0-{whole - 1}")[
                "Body"
            ].read()
        part = client.get_object(Bucket=bucket, Key="videos/clip0.mp4", Range="bytes=0-999")["Body"].read()
        assert len(part) == 500
        once = RetryPolicy(attempts=1, base_s=0.001, cap_s=0.001)
        reader = S3Store(client, bucket, block_size=BLOCK, retry=once).open("videos/clip0.mp4")
        with pytest.raises(SourceUnavailable):  # a 503 to retry, no longer SourceChanged / InternalError
            reader.read(10)

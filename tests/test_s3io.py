"""S3RangeReader against moto's HTTP server on 127.0.0.1: real ranged GETs over a socket."""

from __future__ import annotations

import io
import random
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from vidsnap.aws.s3io import S3RangeReader, map_client_error, open_s3
from vidsnap.core.errors import InternalError, NotAllowed, NotFound, SourceChanged, Throttled

BLOCK = 64 * 1024
BUCKET = "media"


@pytest.fixture(scope="module")
def s3(moto_server: str) -> Any:
    # Explicit fake credentials: never the machine's own, never a real endpoint.
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def blob(s3: Any) -> bytes:
    data = random.Random(7).randbytes(10 * BLOCK + 1234)  # 10 full blocks and a partial one
    s3.put_object(Bucket=BUCKET, Key="blob.bin", Body=data)
    return data


def test_random_seeks_and_reads_match_the_bytes(s3: Any, blob: bytes) -> None:
    reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK, cache_blocks=4)
    assert reader.size == len(blob)
    assert reader.readable()
    assert reader.seekable()
    assert not reader.writable()
    rng = random.Random(1)
    for _ in range(200):
        whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
        if whence == io.SEEK_SET:
            target = rng.randrange(0, len(blob) + 100)
            pos = reader.seek(target)
        elif whence == io.SEEK_CUR:
            delta = rng.randrange(-reader.tell(), 3 * BLOCK)
            pos = reader.seek(delta, io.SEEK_CUR)
        else:
            pos = reader.seek(-rng.randrange(0, len(blob)), io.SEEK_END)
        assert reader.tell() == pos
        n = rng.choice([1, 17, 4096, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 5])
        got = reader.read(n)
        assert got == blob[pos : pos + n]
        assert reader.tell() == pos + len(got)
    reader.seek(0)
    assert reader.read() == blob
    assert reader.read(10) == b""


def test_readinto_readall_and_seek_end(s3: Any, blob: bytes) -> None:
    reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK)
    buf = bytearray(BLOCK * 2 + 3)
    reader.seek(BLOCK - 1)
    assert reader.readinto(buf) == len(buf)
    assert bytes(buf) == blob[BLOCK - 1 : BLOCK - 1 + len(buf)]
    assert reader.seek(-10, io.SEEK_END) == len(blob) - 10
    assert reader.readall() == blob[-10:]
    assert reader.readinto(bytearray(5)) == 0
    with pytest.raises(OSError, match="negative"):
        reader.seek(-1)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_sequential_reads_use_read_ahead(s3: Any, blob: bytes) -> None:
    """Reading the object front to back in small chunks: one GET per two blocks after the first."""
    blocks = -(-len(blob) // BLOCK)  # 11
    counts = {}
    for readahead in (False, True):
        reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK, readahead=readahead)
        out = bytearray()
        while chunk := reader.read(4096):  # PyAV-sized reads
            out += chunk
        assert bytes(out) == blob
        assert reader.bytes_read == len(blob)  # every byte fetched exactly once
        counts[readahead] = reader.requests
    assert counts[False] == blocks
    assert counts[True] == 1 + -(-(blocks - 1) // 2)  # 6: block 0, then pairs


def test_tail_read_costs_two_requests_not_a_download(s3: Any, blob: bytes) -> None:
    """moov-at-end access: the head, then the tail, then back near the start."""
    reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK)
    assert reader.read(32) == blob[:32]
    reader.seek(-1000, io.SEEK_END)  # within the last (partial) block
    assert reader.read(1000) == blob[-1000:]
    reader.seek(100)
    assert reader.read(100) == blob[100:200]  # cached: no new request
    assert reader.requests == 2
    assert reader.bytes_read == BLOCK + (len(blob) - 10 * BLOCK)
    assert reader.bytes_read < len(blob) / 4


def test_lru_cache_evicts_the_least_recently_used_block(s3: Any, blob: bytes) -> None:
    reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK, cache_blocks=2, readahead=False)
    for block in (0, 5, 0, 8):  # 0 is used again before 8 comes in, so 5 is evicted
        reader.seek(block * BLOCK)
        assert reader.read(10) == blob[block * BLOCK : block * BLOCK + 10]
    assert reader.requests == 3
    reader.seek(0)
    reader.read(10)
    assert reader.requests == 3  # block 0 is still cached
    reader.seek(5 * BLOCK)
    reader.read(10)
    assert reader.requests == 4  # block 5 was evicted


def test_a_large_read_is_one_request(s3: Any, blob: bytes) -> None:
    reader = open_s3(s3, BUCKET, "blob.bin", block_size=BLOCK, readahead=False)
    reader.seek(BLOCK // 2)
    assert reader.read(5 * BLOCK) == blob[BLOCK // 2 : BLOCK // 2 + 5 * BLOCK]
    assert reader.requests == 1


def test_missing_object_is_not_found(s3: Any) -> None:
    with pytest.raises(NotFound) as err:
        open_s3(s3, BUCKET, "nope.mp4")
    assert err.value.status == 404
    with pytest.raises(NotFound):
        open_s3(s3, "no-such-bucket", "a.mp4")


def test_empty_object_opens_and_reads_nothing(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="empty.mp4", Body=b"")
    reader = open_s3(s3, BUCKET, "empty.mp4")
    assert reader.size == 0
    assert reader.read() == b""
    assert reader.read(100) == b""
    assert reader.requests == 0


def test_replaced_object_fails_cleanly_with_if_match(s3: Any) -> None:
    old = random.Random(2).randbytes(4 * BLOCK)
    s3.put_object(Bucket=BUCKET, Key="replaced.bin", Body=old)
    reader = open_s3(s3, BUCKET, "replaced.bin", block_size=BLOCK, readahead=False)
    assert reader.read(10) == old[:10]
    s3.put_object(Bucket=BUCKET, Key="replaced.bin", Body=random.Random(3).randbytes(4 * BLOCK))
    reader.seek(3 * BLOCK)
    with pytest.raises(SourceChanged) as err:
        reader.read(10)
    assert err.value.status == 412
    assert not err.value.transient


def test_versioned_reads_pin_the_version(s3: Any) -> None:
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket="versioned", Key="v.bin", Body=b"first version")["VersionId"]
    s3.put_object(Bucket="versioned", Key="v.bin", Body=b"second version!")
    reader = open_s3(s3, "versioned", "v.bin", version_id=v1)
    assert reader.version_id == v1
    assert reader.read() == b"first version"


def test_user_metadata_is_exposed(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="meta.bin", Body=b"x", Metadata={"vidsnap-output": "1"})
    assert open_s3(s3, BUCKET, "meta.bin").metadata == {"vidsnap-output": "1"}


def test_pyav_decodes_through_the_reader(s3: Any, make_media: Any) -> None:
    av = pytest.importorskip("av")
    info = make_media("mp4_moov_end")
    with open(info.path, "rb") as f:
        data = f.read()
    s3.put_object(Bucket=BUCKET, Key="moov_end.mp4", Body=data)
    reader = open_s3(s3, BUCKET, "moov_end.mp4", block_size=16 * 1024)
    with av.open(reader) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (info.width, info.height)
    assert 0 < reader.bytes_read <= len(data)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("NoSuchKey", 404), NotFound),
        (_client_error("404", 404), NotFound),
        (_client_error("ResourceNotFoundException", 400), NotFound),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue", 400), NotFound),
        (_client_error("AccessDenied", 403), NotAllowed),
        (_client_error("403", 403), NotAllowed),
        (_client_error("AuthorizationError", 403), NotAllowed),
        (_client_error("SlowDown", 503), Throttled),
        (_client_error("Throttling", 400), Throttled),
        (_client_error("ProvisionedThroughputExceededException", 400), Throttled),
        (_client_error("InternalError", 500), Throttled),
        (_client_error("PreconditionFailed", 412), SourceChanged),
        (_client_error("InvalidParameterValue", 400), InternalError),
        (ReadTimeoutError(endpoint_url="http://x"), Throttled),
        (EndpointConnectionError(endpoint_url="http://x"), Throttled),
        (RuntimeError("boom"), InternalError),
    ],
)
def test_map_client_error(exc: BaseException, expected: type) -> None:
    mapped = map_client_error(exc, "s3://b/k")
    assert type(mapped) is expected
    assert mapped.transient == (expected is Throttled)


def test_map_client_error_keeps_vidsnap_errors() -> None:
    err = NotFound("x")
    assert map_client_error(err) is err


def test_throttling_on_head_is_transient() -> None:
    class Slow:
        def head_object(self, **_: Any) -> Any:
            raise _client_error("SlowDown", 503)

    with pytest.raises(Throttled):
        open_s3(Slow(), "b", "k")


def test_a_broken_body_stream_is_retried_once() -> None:
    data = b"0123456789" * 10

    class Body:
        def __init__(self, payload: bytes, fail: bool) -> None:
            self.payload, self.fail = payload, fail

        def read(self) -> bytes:
            if self.fail:
                raise ReadTimeoutError(endpoint_url="http://x")
            return self.payload

        def close(self) -> None:
            pass

    class Flaky:
        calls = 0

        def get_object(self, **kw: Any) -> Any:
            Flaky.calls += 1
            lo, hi = (int(x) for x in kw["Range"][len("bytes=") :].split("-"))
            return {"Body": Body(data[lo : hi + 1], fail=Flaky.calls == 1)}

    reader = S3RangeReader(Flaky(), "b", "k", size=len(data), block_size=32)
    assert reader.read() == data
    assert Flaky.calls == 2

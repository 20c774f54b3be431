"""Sinks and stores: allow-lists and key safety refuse before anything is written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from vidsnap.aws.s3io import S3RangeReader
from vidsnap.aws.storage import (
    OUTPUT_MARKER,
    LocalSink,
    LocalStore,
    ObjectInfo,
    S3Sink,
    S3Store,
    parse_s3_uri,
)
from vidsnap.core.errors import BadRequest, NotAllowed, NotFound


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("out", "extra", "elsewhere"):
            client.create_bucket(Bucket=bucket)
        yield client


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# -- S3Sink --------------------------------------------------------------------------------------


def test_s3_sink_writes_with_content_type_and_marker(s3: Any) -> None:
    sink = S3Sink(s3, "out", {"extra"})
    assert sink.put(None, "clip/1.jpg", b"jpeg!", "image/jpeg") == "s3://out/clip/1.jpg"
    assert sink.put("extra", "a/b.png", b"png!", "image/png") == "s3://extra/a/b.png"
    head = s3.head_object(Bucket="out", Key="clip/1.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"] == {OUTPUT_MARKER: "1"}
    assert s3.get_object(Bucket="extra", Key="a/b.png")["Body"].read() == b"png!"


def test_s3_sink_refuses_a_bucket_off_the_allow_list(s3: Any) -> None:
    sink = S3Sink(s3, "out", {"extra"})
    with pytest.raises(NotAllowed, match="elsewhere"):
        sink.put("elsewhere", "x.jpg", b"x", "image/jpeg")
    assert _keys(s3, "elsewhere") == []


def test_s3_sink_without_any_bucket_refuses(s3: Any) -> None:
    sink = S3Sink(s3, None, frozenset())
    with pytest.raises(NotAllowed, match="no output bucket"):
        sink.put(None, "x.jpg", b"x", "image/jpeg")
    with pytest.raises(NotAllowed):
        sink.put("out", "x.jpg", b"x", "image/jpeg")
    assert _keys(s3, "out") == []


@pytest.mark.parametrize(
    ("key", "error"),
    [("../x.jpg", NotAllowed), ("/abs.jpg", NotAllowed), ("a\nb", NotAllowed), ("", BadRequest)],
)
def test_s3_sink_refuses_unsafe_keys(s3: Any, key: str, error: type) -> None:
    with pytest.raises(error):
        S3Sink(s3, "out").put(None, key, b"x", "image/jpeg")
    assert _keys(s3, "out") == []


def test_s3_sink_delete(s3: Any) -> None:
    sink = S3Sink(s3, "out")
    uri = sink.put(None, "d/1.jpg", b"x", "image/jpeg")
    sink.delete(uri)
    assert _keys(s3, "out") == []
    with pytest.raises(NotAllowed):
        sink.delete("s3://elsewhere/anything")


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://b/k/x.jpg") == ("b", "k/x.jpg")
    assert parse_s3_uri("oss://b/k") == ("b", "k")
    with pytest.raises(ValueError, match="s3://"):
        parse_s3_uri("s3://bucket-only")


# -- LocalSink -----------------------------------------------------------------------------------


def test_local_sink_writes_under_root(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path / "out")
    path = sink.put("ignored-bucket", "clip/sub/1.jpg", b"data", "image/jpeg")
    assert Path(path) == (tmp_path / "out" / "clip" / "sub" / "1.jpg").resolve()
    assert Path(path).read_bytes() == b"data"
    assert not [p for p in Path(path).parent.iterdir() if p.name.endswith(".part")]
    sink.delete(path)
    assert not Path(path).exists()


@pytest.mark.parametrize(
    "key", ["../escape.jpg", "a/../../escape.jpg", "/etc/passwd", "a\\..\\..\\x.jpg", "a\x00b"]
)
def test_local_sink_refuses_traversal(tmp_path: Path, key: str) -> None:
    sink = LocalSink(tmp_path / "out")
    with pytest.raises(NotAllowed):
        sink.put(None, key, b"x", "image/jpeg")
    assert not list(tmp_path.rglob("*.jpg"))


def test_local_sink_refuses_a_symlink_out_of_root(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "out" / "link")
    with pytest.raises(NotAllowed):
        LocalSink(tmp_path / "out").put(None, "link/x.jpg", b"x", "image/jpeg")
    assert not (tmp_path / "outside" / "x.jpg").exists()


# -- stores --------------------------------------------------------------------------------------


def test_local_store(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clip.MP4").write_bytes(b"12345")
    (tmp_path / "b.mkv").write_bytes(b"1")
    (tmp_path / "notes.txt").write_text("no")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.mp4").write_bytes(b"1")
    store = LocalStore(tmp_path)
    assert store.list_videos() == ["a/clip.MP4", "b.mkv"]
    info = store.info("a/clip.MP4")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size, info.version) == ("a/clip.MP4", 5, None)
    assert info.etag
    assert info.last_modified is not None
    with store.open("a/clip.MP4") as f:
        assert f.read() == b"12345"
    with pytest.raises(NotFound):
        store.info("missing.mp4")
    with pytest.raises(NotAllowed):
        store.open("../etc/passwd")


def test_s3_store(s3: Any) -> None:
    s3.put_object(Bucket="out", Key="v/clip.mp4", Body=b"0123456789")
    store = S3Store(s3, "out", block_size=4)
    info = store.info("v/clip.mp4")
    assert (info.key, info.size) == ("v/clip.mp4", 10)
    assert info.etag
    assert not info.etag.startswith('"')
    assert info.last_modified is not None
    reader = store.open("v/clip.mp4")
    assert isinstance(reader, S3RangeReader)
    assert reader.etag == info.etag
    reader.seek(3)
    assert reader.read(5) == b"34567"
    with pytest.raises(NotFound):
        store.info("nope.mp4")
    with pytest.raises(NotFound):
        store.open("nope.mp4")
    with pytest.raises(NotAllowed):
        store.open("../x.mp4")


def test_s3_store_opens_from_the_info_it_gave(s3: Any) -> None:
    """``open(key, info=...)`` sends no second HEAD: the reader is of the object the HEAD saw (its
    size, ETag for If-Match, version id and metadata), not the current one."""
    s3.put_bucket_versioning(Bucket="out", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="out", Key="v.mp4", Body=b"0123456789", Metadata={"vidsnap-output": "1"})
    store = S3Store(s3, "out", block_size=4, readahead=False)
    info = store.info("v.mp4")
    assert (info.version, info.metadata) == (first["VersionId"], {"vidsnap-output": "1"})
    s3.put_object(Bucket="out", Key="v.mp4", Body=b"abcdefghijklmnop")  # a newer version
    calls: list[tuple[str, dict[str, Any]]] = []
    s3.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: calls.append((model.name, dict(params)))
    )
    reader = store.open("v.mp4", info=info)
    assert (reader.size, reader.etag, reader.version_id) == (10, info.etag, first["VersionId"])
    assert reader.metadata == {"vidsnap-output": "1"}
    assert reader.read() == b"0123456789"  # the version the HEAD saw, not the newer one
    assert {name for name, _ in calls} == {"GetObject"}
    assert {(p["VersionId"], p["IfMatch"]) for _, p in calls} == {(first["VersionId"], f'"{info.etag}"')}
    assert store.info("v.mp4").version != first["VersionId"]

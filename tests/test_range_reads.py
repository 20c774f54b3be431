"""One snapshot of a large S3 object reads a small fraction of it, moov-at-end included (see
blockio in docs/ARCHITECTURE.md).

Encoding a gigabyte in a test would take minutes, so the objects are made large the way real files
are laid out: the synthesised MP4 is followed (faststart) or its ``moov`` is preceded (moov at the
end) by a 96 MiB ``free`` box, which players and FFmpeg skip by seeking. A reader that downloads
the object, or scans it, reads all of it; a range reader reads the index and one GOP.
``bench/run.py`` measures the same on a real 10-minute 1080p file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from vidsnap.aws.storage import S3Store
from vidsnap.core.engine import snapshot
from vidsnap.core.lang import parse_sync
from vidsnap.local.synth import make_video

PAD = 96 * 1024 * 1024
BUCKET = "vidsnap-source"


def boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level MP4 boxes: (type, offset, size)."""
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((kind, pos, size))
        pos += size
    return out


def padded(data: bytes) -> bytes:
    """Insert a large ``free`` box right after ``mdat`` (chunk offsets into mdat stay valid)."""
    (_, mdat_at, mdat_size), *_ = [b for b in boxes(data) if b[0] == b"mdat"]
    end = mdat_at + mdat_size
    free = struct.pack(">I4s", PAD, b"free") + bytes(PAD - 8)
    return data[:end] + free + data[end:]


@pytest.fixture
def s3(aws_env: None) -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.mark.parametrize("faststart", [True, False], ids=["faststart", "moov-at-end"])
def test_one_snapshot_reads_a_small_fraction(s3: object, tmp_path: Path, faststart: bool) -> None:
    path = tmp_path / "clip.mp4"
    make_video(path, duration_s=20, fps=25, width=320, height=180, gop=50, bframes=2, faststart=faststart)
    data = padded(path.read_bytes())
    kinds = [kind for kind, _, _ in boxes(data)]
    assert kinds.index(b"moov") < kinds.index(b"mdat") if faststart else kinds[-1] == b"moov"
    s3.put_object(Bucket=BUCKET, Key="big.mp4", Body=data)  # type: ignore[attr-defined]

    reader = S3Store(s3, BUCKET).open("big.mp4")
    rendered = snapshot(reader, parse_sync("video/snapshot,t_13000,f_jpg,w_160"))

    assert rendered.time_ms == 13000
    assert (rendered.width, rendered.height) == (160, 90)
    assert reader.bytes_read < 0.03 * len(data), f"read {reader.bytes_read} of {len(data)} bytes"
    assert reader.requests <= 8

"""The ``vidsnap run`` command line (README: What it is), driven as a user would: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vidsnap.local.synth import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "clip.mp4"
    make_video(path, duration_s=3, fps=25, width=320, height=180, gop=25, bframes=2)
    return path


def vidsnap(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidsnap", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_async_process_writes_files_and_manifest(clip: Path, tmp_path: Path) -> None:
    result = vidsnap("run", clip, "video/snapshots,f_jpg,inter_1000,w_160", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    manifest = json.loads(result.stdout)
    assert manifest["Status"] == "Succeeded"
    assert manifest["TaskType"] == "VideoSnapshots"
    assert [o["TimeMs"] for o in manifest["Outputs"]] == [0, 1000, 2000]
    for output in manifest["Outputs"]:
        path = Path(output["URI"])
        assert path.is_file()
        assert path.is_relative_to(tmp_path)
        with Image.open(path) as img:
            assert img.size == (160, 90) == (output["Width"], output["Height"])
        assert output["Bytes"] == path.stat().st_size


def test_run_sync_process(clip: Path, tmp_path: Path) -> None:
    result = vidsnap("run", clip, "video/snapshot,t_1500,f_png", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    (output,) = json.loads(result.stdout)["Outputs"]
    assert output["TimeMs"] == 1480  # the frame shown at 1500 ms started at frame 37 (1480 ms)
    with Image.open(output["URI"]) as img:
        assert img.format == "PNG"


def test_run_json_task_file_with_saveas_paths(clip: Path, tmp_path: Path) -> None:
    task = tmp_path / "task.json"
    task.write_text(
        json.dumps(
            {
                "Input": {"Bucket": "in", "Object": "clip.mp4"},
                "SnapshotConfig": {
                    "OutputFile": {"Bucket": "out", "Object": "thumbs/{Count}.jpg"},
                    "Time": 0,
                    "Num": 3,
                    "Interval": 1,
                    "FrameType": "normal",
                },
            }
        )
    )
    out = tmp_path / "out"
    result = vidsnap("run", clip, task, "--out", out)
    assert result.returncode == 0, result.stderr
    uris = [o["URI"] for o in json.loads(result.stdout)["Outputs"]]
    assert [Path(u).relative_to(out).as_posix() for u in uris] == [
        "thumbs/00001.jpg",
        "thumbs/00002.jpg",
        "thumbs/00003.jpg",
    ]


@pytest.mark.parametrize(
    ("process", "code", "ec"),
    [
        ("video/snapshot,t_-1", "InvalidArgument", "0053-00000101"),
        ("video/snapshot,t_0,w_9000", "InvalidArgument", "0053-00000104"),
        ("video/snapshot,t_0,q_5", "InvalidArgument", "0053-00000109"),
        ("video/unknown,t_0", "InvalidArgument", "0053-00000109"),
    ],
)
def test_run_bad_request_exits_nonzero_with_error_body(
    clip: Path, tmp_path: Path, process: str, code: str, ec: str | None
) -> None:
    result = vidsnap("run", clip, process, "--out", tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    body = json.loads(result.stderr)
    assert body["Code"] == code
    assert body.get("EC") == ec
    assert body["RequestId"]


def test_run_missing_and_non_media_sources(tmp_path: Path) -> None:
    missing = vidsnap("run", tmp_path / "nope.mp4", "video/snapshot,t_0", "--out", tmp_path)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["Code"] == "NoSuchKey"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    bad = vidsnap("run", junk, "video/snapshot,t_0", "--out", tmp_path)
    assert bad.returncode == 1
    assert json.loads(bad.stderr)["Code"] in {"UnsupportedMediaType", "MediaDecodeFailed"}


def test_usage_error_exits_2(clip: Path, tmp_path: Path) -> None:
    assert vidsnap("run").returncode == 2
    bad = vidsnap("run", clip, "video/snapshots,inter_1000", "--out", tmp_path, "--decoders", "0")
    assert bad.returncode == 2
    assert "--decoders: must be at least 1" in bad.stderr


def test_decoders_option_gives_the_same_outputs(clip: Path, tmp_path: Path) -> None:
    outputs = []
    for n in ("1", "3"):
        out = tmp_path / n
        result = vidsnap("run", clip, "video/snapshots,f_png,inter_300", "--out", out, "--decoders", n)
        assert result.returncode == 0, result.stderr
        uris = [Path(o["URI"]) for o in json.loads(result.stdout)["Outputs"]]
        outputs.append([(p.name, p.read_bytes()) for p in uris])
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 10


def test_progress_bar_on_a_terminal_only(clip: Path, tmp_path: Path) -> None:
    """stderr that is a terminal gets a progress bar; a pipe (above) gets none."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "vidsnap",
                "run",
                str(clip),
                "video/snapshots,f_jpg,inter_500",
                "--out",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=True,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert json.loads(proc.stdout)["Status"] == "Succeeded"
    assert b"100%" in shown
    assert b"[####" in shown

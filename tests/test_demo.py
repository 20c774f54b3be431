"""The end-to-end demo (README: What it is): ``python -m vidsnap demo --out DIR``, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from vidsnap.local.demo import DemoError, find_repo_root

#: The demo must finish "well under a minute on 2 cores"; this bound leaves room for a busy CI box.
DEMO_BUDGET_S = 60


def run_demo(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m vidsnap demo --out OUT`` as a user runs it (``env``: the whole environment)."""
    return subprocess.run(
        [sys.executable, "-m", "vidsnap", "demo", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # A real-looking profile in the environment must not be used: the demo forces fake credentials.
    env["AWS_PROFILE"] = "someone-elses-real-profile"
    started = time.monotonic()
    result = run_demo(out, env)
    return result, out, time.monotonic() - started


@pytest.fixture(scope="module")
def summary(demo_run: tuple[subprocess.CompletedProcess[str], Path, float]) -> dict[str, Any]:
    result, out, _ = demo_run
    assert result.returncode == 0, f"demo failed:\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    doc: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return doc


def test_demo_succeeds_quickly_and_tells_the_story(
    demo_run: tuple[subprocess.CompletedProcess[str], Path, float], summary: dict[str, Any]
) -> None:
    result, out, elapsed = demo_run
    assert elapsed < DEMO_BUDGET_S, f"demo took {elapsed:.1f} s"
    assert summary["timings_s"]["total"] < DEMO_BUDGET_S
    text = result.stdout
    for step in range(1, 10):
        assert f"[{step}/9]" in text
    for phrase in (
        "function URL",
        "ObjectCreated",
        "notification via SNS",
        "notification via SQS",
        "contact",
    ):
        assert phrase in text
    assert "Done in" in text
    # Handler log lines (powertools JSON) go to lambda.log, not into the story.
    assert '"level"' not in text
    assert (out / "lambda.log").is_file()


def test_synthesised_clip_is_h264_with_b_frames_and_audio(
    demo_run: tuple[subprocess.CompletedProcess[str], Path, float], summary: dict[str, Any]
) -> None:
    _, out, _ = demo_run
    with av.open(str(out / "clip.mp4")) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.has_b_frames
        assert (video.width, video.height) == (640, 360)
        assert container.streams.audio, "no audio track"
        assert float(container.duration or 0) / av.time_base >= 7.9


def test_sync_snapshot_through_the_function_url(summary: dict[str, Any]) -> None:
    sync = summary["sync"]
    assert sync["status"] == 200
    assert sync["headers"]["content-type"] == "image/jpeg"
    assert sync["headers"]["x-vidsnap-time-ms"] == "3000"
    assert sync["headers"]["etag"]
    with Image.open(sync["path"]) as img:
        assert img.format == "JPEG"
        assert img.size == (640, 360)


def _outputs(note: dict[str, Any]) -> list[tuple[str, Any, int, int]]:
    return [(o["URI"], o["TimeMs"], o["Width"], o["Height"]) for o in note["Outputs"]]


def test_upload_trigger_wrote_keyframes_and_notified_the_topic(summary: dict[str, Any]) -> None:
    note = summary["upload_notification"]
    assert note["Status"] == "Succeeded"
    assert note["TaskType"] == "VideoSnapshots"
    assert note["Sources"] == [{"URI": "s3://vidsnap-demo-source/uploads/clip.mp4"}]
    outputs = _outputs(note)
    assert [t for _, t, _, _ in outputs] == [0, 2000, 4000, 6000]  # GOP 50 at 25 fps
    assert all(uri.startswith("s3://vidsnap-demo-output/keyframes/clip/") for uri, *_ in outputs)
    assert all((w, h) == (320, 180) for _, _, w, h in outputs)


def test_imm_task_wrote_one_frame_per_second_and_notified_sqs(summary: dict[str, Any]) -> None:
    note = summary["imm_notification"]
    assert note["Status"] == "Succeeded"
    assert note["UserData"] == "vidsnap-demo-imm"
    outputs = _outputs(note)
    assert [t for _, t, _, _ in outputs] == [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]
    assert [uri for uri, *_ in outputs] == [f"s3://vidsnap-demo-output/imm/clip-{i}.jpg" for i in range(1, 9)]
    record = summary["task_record"]
    assert record["TaskId"] == note["TaskId"]
    assert record["Status"] == "Succeeded"


def test_the_long_task_ran_in_windows_on_the_state_machine(summary: dict[str, Any]) -> None:
    long = summary["long_task"]
    assert long["status"] == "SUCCEEDED"
    assert len(long["windows"]) >= 2
    note = long["notification"]
    assert note["Status"] == "Succeeded"
    # Every half second, on the 25 fps grid: the frame shown at t (pts <= t).
    assert [o["TimeMs"] for o in note["Outputs"]] == [i * 500 - (i % 2) * 20 for i in range(16)]


def test_images_and_contact_sheet_on_disk(summary: dict[str, Any], demo_run: Any) -> None:
    _, out, _ = demo_run
    images = summary["images"]
    assert len(images) == 1 + 4 + 8 + 16
    for entry in images:
        path = Path(entry["path"])
        assert path.is_relative_to(out)
        with Image.open(path) as img:
            assert img.format == "JPEG"
    with Image.open(out / "contact-sheet.png") as sheet:
        assert sheet.format == "PNG"
        # 13 thumbnails of 256 px in 5 columns: three rows of 16:9 thumbnails plus captions.
        assert sheet.width >= 5 * 256
        assert sheet.height >= 3 * 144


def test_demo_rerun_into_the_same_folder(demo_run: Any, summary: dict[str, Any]) -> None:
    """Running twice into one folder works and leaves one run's images (no stale leftovers)."""
    _, out, _ = demo_run
    stale = out / "vidsnap-demo-output" / "imm" / "clip-99.jpg"
    stale.write_bytes(b"stale")
    result = run_demo(out)
    assert result.returncode == 0, result.stderr
    assert not stale.exists()


def test_missing_functions_fail_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed (non-editable) package has no functions/ beside it: say what to do."""
    monkeypatch.delenv("VIDSNAP_REPO", raising=False)
    fake_install = tmp_path / "site-packages" / "vidsnap" / "demo.py"
    with pytest.raises(DemoError, match="VIDSNAP_REPO") as info:
        find_repo_root(fake_install)
    assert "functions/object_get/app.py" in str(info.value)


def test_repo_root_found_from_the_package_and_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDSNAP_REPO", raising=False)
    root = find_repo_root()
    assert (root / "functions" / "async_snapshots" / "app.py").is_file()
    monkeypatch.setenv("VIDSNAP_REPO", str(root))
    assert find_repo_root(tmp_path / "elsewhere.py") == root

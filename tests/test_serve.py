"""``vidsnap serve`` (README: What it is): the ASGI app over a local folder, over real HTTP, and its
index page driven in headless Chromium (load the page, move the slider, see the new frame)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from vidsnap.local.serve import is_loopback, serve
from vidsnap.local.synth import make_video, read_counter

FPS = 25


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_video(root / "clip.mp4", duration_s=3, fps=FPS, width=320, height=180, gop=25, bframes=2)
    (root / "notes.txt").write_text("not a video")
    return root


def _read_url(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The index URL the server prints once its socket is bound."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        # The pipe is closed here, at the server's end of output, not left to the garbage collector.
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        line = lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"vidsnap serve exited before printing its URL: {''.join(seen)}")
        seen.append(line)
        match = re.search(r"serving .* at (http://\S+/)", line)
        if match:
            return match.group(1)


@pytest.fixture(scope="module")
def server(media_root: Path) -> Iterator[str]:
    """``python -m vidsnap serve --root DIR --port 0`` as a user starts it; yields the base URL."""
    env = dict(os.environ)
    # Deployment settings in the developer's shell must not leak into the local server (a signing
    # secret would make every request 403; a source bucket would be meaningless).
    env.update({"SIGNING_SECRET": "deployment-secret", "SOURCE_BUCKET": "some-bucket", "TASK_QUEUE_URL": ""})
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidsnap", "serve", "--root", str(media_root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = _read_url(proc)
        assert url.startswith("http://127.0.0.1:")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _counter_of_jpeg(data: bytes) -> int:
    """The frame index synth drew into the picture of an encoded image."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return read_counter(av.VideoFrame.from_ndarray(rgb, format="rgb24"))


# --------------------------------------------------------------------------------------------------
# HTTP


def test_snapshot_url_returns_the_exact_frame_as_jpeg(server: str) -> None:
    status, headers, body = _get(server + "clip.mp4?x-oss-process=video/snapshot,t_1000,f_jpg")
    assert status == 200, body[:300]
    assert headers["content-type"] == "image/jpeg"
    assert headers["etag"]
    assert headers["x-vidsnap-time-ms"] == "1000"
    with Image.open(io.BytesIO(body)) as img:
        assert img.format == "JPEG"
        assert img.size == (320, 180)
    assert _counter_of_jpeg(body) == 1000 * FPS // 1000


def test_index_lists_the_videos_in_the_folder(server: str) -> None:
    status, headers, body = _get(server)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    assert '"clip.mp4"' in page
    assert "notes.txt" not in page
    assert 'type="range"' in page or "range" in page


def test_info_gives_the_slider_its_range(server: str) -> None:
    status, _, body = _get(server + "_info/clip.mp4")
    assert status == 200
    info = json.loads(body)
    assert info["DurationMs"] == 3000
    assert (info["Width"], info["Height"]) == (320, 180)
    assert info["FrameIntervalMs"] == 40


def test_errors_are_spec_json(server: str) -> None:
    status, _, body = _get(server + "missing.mp4?x-oss-process=video/snapshot,t_0")
    assert status == 404
    assert json.loads(body)["Code"]
    status, _, body = _get(server + "clip.mp4?x-oss-process=video/snapshot,t_-5")
    assert status == 400
    assert json.loads(body)["EC"] == "0053-00000101"
    status, _, body = _get(server + "..%2F..%2Fetc%2Fpasswd?x-oss-process=video/snapshot,t_0")
    assert status in (400, 403, 404)


# --------------------------------------------------------------------------------------------------
# the serve() function itself


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve(tmp_path / "nope") == 2
    assert "is not a folder" in capsys.readouterr().err


def test_serve_warns_on_a_non_loopback_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: the bind fails, nothing listens.
    assert serve(tmp_path, host="192.0.2.1", port=0) == 2
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "no authentication" in err
    assert "cannot listen on 192.0.2.1:0" in err


# --------------------------------------------------------------------------------------------------
# the browser

SLIDER = "document.querySelector('.card input[type=range]')"
PREVIEW = "document.querySelector('.card img')"
#: How long any one wait or call in the page may take: a broken page fails the test, never hangs it.
PAGE_TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    """Path of a Chromium executable (``$CHROMIUM``, then Debian's ``chromium``), or None.

    Playwright drives the browser the system has, never one it downloads (``playwright install`` is
    not needed): ``./dev test`` installs Debian's ``chromium`` where apt-get is at hand.
    """
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Tab:
    """A Playwright page in headless Chromium and the uncaught JavaScript errors it reported."""

    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(tmp_path: Path) -> Iterator[Tab]:
    """A fresh headless Chromium (skips, saying why, when the machine has none) with one page."""
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "headless Chromium not installed (Debian: apt-get install chromium; ./dev test installs it "
            "where apt-get is available; or set CHROMIUM=/path/to/chrome)"
        )
    with sync_playwright() as playwright:
        # Playwright's own launch flags already keep headless Chromium off the network and without
        # the sandbox (which cannot start as root in CI containers).
        browser = playwright.chromium.launch(executable_path=exe, headless=True, timeout=PAGE_TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            opened = Tab(page)
            page.on("pageerror", lambda exc: opened.errors.append(str(exc)[:500]))
            yield opened
        finally:
            browser.close()


@pytest.mark.slow
def test_index_page_slider_previews_the_frame_in_chromium(server: str, tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    try:
        page.goto(server)
        # The slider is enabled once /_info answered; the first preview is the frame at 0 ms.
        page.wait_for_function(f"{SLIDER} !== null && !{SLIDER}.disabled && Number({SLIDER}.max) > 0")
        page.wait_for_function(f"{PREVIEW}.complete && {PREVIEW}.naturalWidth > 0")
        first_src = page.evaluate(f"{PREVIEW}.src")
        assert ",t_0," in first_src

        # Move the slider as a user's drag does: a new value, then input and change events.
        moved = page.evaluate(
            f"""(() => {{
                const s = {SLIDER};
                const step = Number(s.step) || 1;
                s.value = String(Math.round(Number(s.max) * 0.6 / step) * step);
                s.dispatchEvent(new Event('input', {{bubbles: true}}));
                s.dispatchEvent(new Event('change', {{bubbles: true}}));
                return Number(s.value);
            }})()"""
        )
        assert moved > 0
        page.wait_for_function(
            f"{PREVIEW}.src.includes(',t_{moved},') && {PREVIEW}.complete && {PREVIEW}.naturalWidth > 0"
        )
        src = page.evaluate(f"{PREVIEW}.src")
        assert src != first_src
        assert page.evaluate(f"{PREVIEW}.naturalWidth") == 480  # the page asks for w_480
        assert not page.evaluate(f"{PREVIEW}.classList.contains('error')")
        assert f"t = {moved} ms" in page.evaluate("document.querySelector('.card .meta').textContent")
        assert tab.errors == []
    except Exception:
        shot = tmp_path / "failure.png"
        page.screenshot(path=shot)
        print(f"screenshot of the page: {shot}")
        raise
    page.screenshot(path=tmp_path / "slider.png")

    # The picture the browser showed is the exact frame at the slider's time.
    status, _, body = _get(src)
    assert status == 200
    assert _counter_of_jpeg(body) == moved * FPS // 1000

"""``vidsnap serve`` (README: What it is): the ASGI app over a local folder, over real HTTP, and its
index page driven in headless Chromium (load the page, move the slider, see the new frame; the
storyboard track read back through the TextTrack API, its sheets, the hover preview)."""

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


def _counter_of_picture(picture: Image.Image) -> int:
    """The frame index synth drew into a picture."""
    rgb = np.asarray(picture.convert("RGB"))
    return read_counter(av.VideoFrame.from_ndarray(rgb, format="rgb24"))


def _counter_of_jpeg(data: bytes) -> int:
    """The frame index synth drew into the picture of an encoded image."""
    with Image.open(io.BytesIO(data)) as picture:
        return _counter_of_picture(picture)


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


#: The storyboard the page asks for a 3 s video: a 160 px tile every 500 ms, 6 tiles on one sheet.
TRACK_PROCESS = "video/sprite,inter_500,w_160,tw_6,th_1,pad_0,margin_0,f_vtt"
SHEET_PROCESS = "video/sprite,ss_0,inter_500,w_160,tw_6,th_1,pad_0,margin_0,num_6,f_jpg"
TILES = 6
TILE = (160, 90)


def test_storyboard_track_and_its_sheet(server: str) -> None:
    status, headers, body = _get(server + "clip.mp4?x-oss-process=" + TRACK_PROCESS)
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("text/vtt")
    text = body.decode()
    assert text.startswith("WEBVTT")
    assert text.count("#xywh=") == TILES
    assert f"?x-oss-process={SHEET_PROCESS}#xywh=800,0,160,90" in text
    status, headers, body = _get(server + "clip.mp4?x-oss-process=" + SHEET_PROCESS)
    assert status == 200, body[:300]
    assert headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(body)) as img:
        assert img.size == (TILES * TILE[0], TILE[1])


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


TRACK = "document.querySelector('.card video track')"
HOVER = "document.querySelector('.card .hover')"


def _cue_text(i: int) -> str:
    """The text of cue ``i`` of the page's track: the sheet request, relative, and the tile's box."""
    return f"?x-oss-process={SHEET_PROCESS}#xywh={i * TILE[0]},0,{TILE[0]},{TILE[1]}"


@pytest.mark.slow
def test_index_page_storyboard_and_hover_preview_in_chromium(server: str, tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    try:
        page.goto(server)
        # The page's <video> has no media resource: the <track kind="metadata"> loads all the same.
        page.wait_for_function(f"{TRACK} !== null && {TRACK}.readyState === 2")
        track = page.evaluate(
            f"""(() => {{
                const t = {TRACK};
                return {{
                    src: t.src,
                    kind: t.kind,
                    mode: t.track.mode,
                    media: t.parentElement.currentSrc,
                    cues: Array.from(t.track.cues).map(c => [c.startTime, c.endTime, c.text]),
                }};
            }})()"""
        )
        assert track["src"] == server + "clip.mp4?x-oss-process=" + TRACK_PROCESS
        assert (track["kind"], track["mode"], track["media"]) == ("metadata", "hidden", "")
        assert track["cues"] == [[i * 0.5, (i + 1) * 0.5, _cue_text(i)] for i in range(TILES)]

        # The storyboard under the slider: the one sheet, which the cues' relative URL resolves to.
        sheet_url = server + "clip.mp4" + _cue_text(0).split("#")[0]
        board = "document.querySelectorAll('.card .storyboard img')"
        page.wait_for_function(f"{board}.length === 1 && {board}[0].complete && {board}[0].naturalWidth > 0")
        assert page.evaluate(f"{board}[0].src") == sheet_url
        assert page.evaluate(f"[{board}[0].naturalWidth, {board}[0].naturalHeight]") == [
            TILES * TILE[0],
            TILE[1],
        ]

        # Hover over the middle of tile 3's time (1.5 s to 2 s of 3 s): the preview shows that tile.
        page.wait_for_function(f"!{SLIDER}.disabled")
        box = page.locator(".card input[type=range]").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 1.75 / 3, box["y"] + box["height"] / 2)
        page.wait_for_function(f"{HOVER}.style.display === 'block'")
        shown = page.evaluate(
            f"""(() => {{
                const h = {HOVER}, s = getComputedStyle(h);
                const position = [s.backgroundPositionX, s.backgroundPositionY];
                return [h.style.backgroundImage, ...position, s.width, s.height];
            }})()"""
        )
        assert shown == [f'url("{sheet_url}")', "-480px", "0px", "160px", "90px"]
        page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)  # 0.3 s: tile 0
        page.wait_for_function(f"getComputedStyle({HOVER}).backgroundPositionX === '0px'")
        page.mouse.move(box["x"], box["y"] + box["height"] + 200)  # away from the slider: hidden
        page.wait_for_function(f"{HOVER}.style.display === 'none'")

        # A click on a storyboard tile moves the slider to that tile's time, with its exact frame.
        sheet = page.locator(".card .storyboard img").bounding_box()
        assert sheet is not None
        page.mouse.click(sheet["x"] + sheet["width"] * 4.5 / TILES, sheet["y"] + sheet["height"] / 2)
        page.wait_for_function(f"{PREVIEW}.src.includes(',t_2000,') && {PREVIEW}.complete")
        assert page.evaluate(f"{SLIDER}.value") == "2000"
        assert tab.errors == []
    except Exception:
        shot = tmp_path / "failure.png"
        page.screenshot(path=shot)
        print(f"screenshot of the page: {shot}")
        raise
    page.screenshot(path=tmp_path / "storyboard.png")

    # The sheet the page fetched: a JPEG of 6 tiles of 160 × 90, each the exact frame at its time.
    status, headers, body = _get(sheet_url)
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(body)) as img:
        assert img.format == "JPEG"
        assert img.size == (TILES * TILE[0], TILE[1])
        counters = [
            _counter_of_picture(img.crop((i * TILE[0], 0, (i + 1) * TILE[0], TILE[1]))) for i in range(TILES)
        ]
    assert counters == [i * 500 * FPS // 1000 for i in range(TILES)]

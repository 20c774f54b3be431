"""The local server under load, and its noise (docs/PERFORMANCE.md).

- A closed Video frees its decoder and the decoder's threads at once, not at the next garbage
  collection (a busy server held hundreds of idle FFmpeg threads and gigabytes of pictures).
- ``vidsnap serve``'s app, served by uvicorn, answers a few hundred concurrent snapshot requests
  and is back to a few threads and no open decoder but the one it keeps warm.
- Ctrl+C stops ``vidsnap serve`` with one line and status 130, no traceback.
- A source whose reads fail gives the read's own error, and PyAV prints nothing on stderr.

No timing is asserted; ``bench/load.py`` measures RSS and threads on a longer run.
"""

from __future__ import annotations

import gc
import http.client
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import pytest
import uvicorn
from conftest import MemoryBlockReader

from vidsnap.aws.snapshots import OPEN_VIDEOS
from vidsnap.core.decode import Video, decoder_threads
from vidsnap.core.errors import Throttled, UndecodableMedia
from vidsnap.core.parallel import frames_at
from vidsnap.local.serve import build_app, worker_threads
from vidsnap.local.synth import make_video, read_counter

FPS = 25


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("load")
    make_video(root / "clip.mp4", duration_s=4, fps=FPS, width=320, height=180, gop=25, bframes=2)
    return root


def native_threads() -> int:
    """This process's native threads (Python's and FFmpeg's), from /proc."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line in /proc/self/status")


def settle(limit: int, timeout: float = 5.0) -> int:
    """The native thread count once it is at most ``limit`` (threads may take a moment to exit),
    or the count when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    count = native_threads()
    while count > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        count = native_threads()
    return count


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off: what is freed must be freed by reference counting. The
    video an earlier test of this process left warm (the process-wide OPEN_VIDEOS) is closed first."""
    OPEN_VIDEOS.close()
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def live(type_name: str) -> int:
    """Objects of the named type that are still alive."""
    return sum(1 for o in gc.get_objects() if type(o).__name__ == type_name)


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="counts threads in /proc")


# -- closing frees the decoder --------------------------------------------------------------------


def test_closing_a_video_frees_its_decoder_threads_at_once(media_root: Path) -> None:
    with no_gc():
        before = native_threads()
        for t in (500, 1500, 3000):
            # Two threads per decoder asked for even on one core, so that there are threads to free.
            with Video(media_root / "clip.mp4", threads=2) as video:
                assert read_counter(video.frame_at(Fraction(t)).frame) == t * FPS // 1000
                assert native_threads() > before  # the decoder's own thread is running
        # Before: each closed Video kept its codec context (and its threads) until a collection.
        assert settle(before) == before
        del video
        assert live("Video") == 0
        assert live("VideoCodecContext") == 0
        assert live("InputContainer") == 0


def test_clones_of_a_parallel_job_are_closed_with_their_decoders(media_root: Path) -> None:
    times = [Fraction(t) for t in range(0, 4000, 500)]
    with no_gc():
        before = native_threads()
        with Video(media_root / "clip.mp4", bulk=True, threads=2) as video:
            got = [read_counter(p.frame) for p in frames_at(video, times, decoders=2)]
        assert got == [int(t) * FPS // 1000 for t in times]
        assert settle(before) == before
        assert live("VideoCodecContext") == 0


# -- the server under load ------------------------------------------------------------------------


@contextmanager
def running_server(root: Path) -> Iterator[tuple[int, uvicorn.Server]]:
    """``vidsnap serve``'s app (build_app) served by uvicorn on a thread, on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(build_app(root), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield int(sock.getsockname()[1]), server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def fire(port: int, count: int, concurrency: int) -> list[int]:
    """``count`` snapshot requests (a fifth in keyframe mode) from ``concurrency`` threads with
    keep-alive connections; the statuses."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(count):
        todo.put(i)
    statuses: list[int] = []
    rng = random.Random(9)
    modes = ["", "", "", "", ",m_fast"]
    paths = [
        f"/clip.mp4?x-oss-process=video/snapshot,t_{rng.randrange(4000)}{modes[i % 5]},f_jpg"
        for i in range(count)
    ]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                conn.request("GET", paths[i])
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_the_server_under_load_is_back_to_a_few_threads_and_one_open_decoder(media_root: Path) -> None:
    with no_gc():
        baseline = native_threads()
        with running_server(media_root) as (port, _server):
            statuses = fire(port, count=240, concurrency=16)
            assert statuses == [200] * 240
            # Idle: the event loop's thread, its worker threads (each with its swscale context's
            # threads) and the one video kept warm with its decoder's threads. Before: 16 worker
            # threads and the threads of every decoder not yet collected (hundreds).
            per_thread = decoder_threads()
            limit = baseline + 1 + worker_threads() * per_thread + per_thread + 2
            idle = settle(limit)
            assert idle <= limit, (idle, baseline)
            # Every decoder but the warm one is freed (before: one per request until collected).
            assert live("Video") <= 1
            assert live("VideoCodecContext") <= 1
            assert live("InputContainer") <= 1
        assert settle(baseline + 1) <= baseline + 1  # the server is gone: its threads too


def test_the_server_caps_its_worker_threads_and_trims_the_heap_every_n_requests() -> None:
    from anyio import to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    with warnings.catch_warnings():  # starlette's note about httpx2, as in test_httpapp
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient

    from vidsnap.local.serve import _ServerUpkeep

    async def tokens(request: Request) -> JSONResponse:
        return JSONResponse(to_thread.current_default_thread_limiter().total_tokens)

    upkeep = _ServerUpkeep(Starlette(routes=[Route("/", tokens)]), threads=3, trim_every=5)
    trims: list[int] = []
    upkeep._trim = lambda: trims.append(1)
    with TestClient(upkeep) as client:
        answers = [client.get("/").json() for _ in range(12)]
    assert answers == [3] * 12  # anyio's default is 40
    assert len(trims) == 2  # after the 5th and the 10th


# -- Ctrl+C ---------------------------------------------------------------------------------------


#: ``python -m vidsnap serve`` as a terminal starts it. A shell's background job (as CI may run the
#: suite) inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt: set up
#: what Python does for a process started from a terminal, then run the CLI.
_AS_FROM_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from vidsnap.local.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_stops_vidsnap_serve_without_a_traceback(media_root: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_FROM_A_TERMINAL, "serve", "--root", str(media_root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.search(r"serving .* at http://127\.0\.0\.1:\d+/", line), line
        # Let uvicorn get going, so the signal arrives in the running server (either way it must
        # end the same).
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "vidsnap serve: stopped"


# -- failing reads --------------------------------------------------------------------------------


class FailingReader(MemoryBlockReader):
    """Fails every read after the first ``good`` ones, as an S3 object that stops answering.

    Reads return at most 512 bytes (a short read is allowed), so that a small clip takes many.
    """

    def __init__(self, data: bytes, good: int | None = None, error: type[Exception] = Throttled) -> None:
        super().__init__(data, block_size=4096, cache_blocks=4)
        self.good = good
        self.error = error
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.good is not None and self.reads > self.good:
            raise self.error(f"read {self.reads} failed")
        return super().read(512 if size is None or size < 0 else min(size, 512))


def read_all(reader: FailingReader) -> None:
    """Open the video and take frames here and there (in an order that seeks back)."""
    with Video(reader) as video:
        for t in (3900, 100, 2000, 3000):
            video.frame_at(t)


#: (the error a read raises, what Video raises for it, its message)
FAILURES = {
    "range reader error": (Throttled, Throttled, r"^read \d+ failed$"),  # as it is
    "I/O error": (ConnectionError, UndecodableMedia, r"^the source could not be read: read \d+ failed$"),
}


@pytest.mark.parametrize("share", [0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95])
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_source_read_raises_its_own_error_and_prints_nothing(
    media_root: Path, share: float, failure: str, capfd: pytest.CaptureFixture[str]
) -> None:
    error, raised, message = FAILURES[failure]
    data = (media_root / "clip.mp4").read_bytes()
    whole = FailingReader(data)
    read_all(whole)
    assert whole.reads > 40  # enough to fail at many different places
    reader = FailingReader(data, good=int(whole.reads * share), error=error)
    # Before: a failed read was "not a media file vidsnap can read" while opening, "truncated or
    # corrupt" later, or went unnoticed, and PyAV printed "PyAV library exception being dropped"
    # tracebacks on stderr for the failures FFmpeg passed over.
    with pytest.raises(raised, match=message):
        read_all(reader)
    # The next video on this thread is not handed a failure left over from that one.
    with Video(media_root / "clip.mp4") as video:
        assert read_counter(video.frame_at(Fraction(2000)).frame) == 50
    err = capfd.readouterr().err
    assert "exception being dropped" not in err
    assert "Traceback" not in err


def test_a_truncated_source_prints_nothing(media_root: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = (media_root / "clip.mp4").read_bytes()
    reader = MemoryBlockReader(data[: len(data) * 2 // 3], block_size=2048, cache_blocks=4)
    with Video(reader) as video:
        video.frame_at(500)  # early frames are there
    err = capfd.readouterr().err
    assert "exception being dropped" not in err
    assert "Traceback" not in err

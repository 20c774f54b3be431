"""``vidsnap serve``: the function URL's ASGI app over a local folder (README: What it is), for a browser.

The same :func:`vidsnap.aws.httpapp.create_app` that Lambda runs behind mangum is served by uvicorn over
a :class:`vidsnap.aws.storage.LocalStore`, with default settings and no AWS at all: no task queue (a
POST answers 501), no task table, no size limit on an inline answer. ``GET /`` lists the videos in
the folder with a time slider per video that previews the snapshot at the slider's position, and the
video's storyboard under it with a hover preview over it, both driven by the storyboard's WebVTT
thumbnail track (README: HTTP API). The page needs no route of its own for that: the browser loads
the track through a ``<track>`` of a ``<video>`` without any media, so the video file itself is
never served.

The server has no authentication: it binds 127.0.0.1 by default, and binding any other address
(which exposes every video in the folder to the network) is allowed but warned about.

Under load (docs/PERFORMANCE.md) the server keeps to a few threads and little memory: requests run on at most
:func:`worker_threads` threads of the event loop's pool (anyio's default is 40), snapshots decode at
most one per core at once (:class:`vidsnap.core.engine.OpenVideos`), a finished snapshot's decoder is
freed with its threads on the spot (:meth:`vidsnap.core.decode.Video.close`), and freed heap memory is
given back to the system every :data:`TRIM_EVERY` requests. Ctrl+C stops the server with one line
and exit status 130, no traceback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import socket
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from vidsnap.aws.httpapp import create_app
from vidsnap.aws.settings import Settings
from vidsnap.aws.storage import LocalStore
from vidsnap.core.decode import cpu_cores

__all__ = ["build_app", "is_loopback", "serve", "worker_threads"]

#: The request the printed example URL (and the README) uses.
EXAMPLE_PROCESS = "video/snapshot,t_1000,f_jpg"
#: Exit status after Ctrl+C (128 + SIGINT, as a shell reports an interrupted command).
EXIT_INTERRUPTED = 130
#: Requests between two returns of freed heap memory to the system (see _heap_trimmer).
TRIM_EVERY = 100


def worker_threads() -> int:
    """Threads the local server runs requests on: one per core and two more.

    Snapshots decode at most one per core at once anyway (``OpenVideos``); the two more serve
    short work (a stat, the index page) meanwhile. anyio's default of 40 threads let 40 requests
    hold an open decoder each, and an idle thread stays until the next request after 10 s, with
    its swscale context (``imaging._reformatter``) and that context's threads.
    """
    return cpu_cores() + 2


def _heap_trimmer() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS).

    A snapshot allocates and frees tens of megabytes of pictures (decoder pools, RGB copies,
    encoder buffers) from several threads. glibc keeps what is freed in per-thread arenas and
    returns little to the system, so a busy server's resident memory crept up by ~25 MB per
    1,000 requests though nothing leaked (malloc_trim gave it back: 246 → 123 MB). Trimming
    every :data:`TRIM_EVERY` requests costs ~20 ms of a worker thread per 120 MB released.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], object] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


class _ServerUpkeep:
    """ASGI wrapper keeping the local server small under load.

    Sets the worker-thread limit of the event loop it runs in (Starlette runs sync work,
    decoding included, through anyio's default thread limiter, which belongs to the running loop,
    so it can only be set from inside it), and returns freed heap memory to the system every
    ``trim_every`` requests, on a worker thread after the response (see :func:`_heap_trimmer`).
    """

    def __init__(self, app: ASGIApp, threads: int, trim_every: int = TRIM_EVERY) -> None:
        self.app = app
        self.threads = threads
        self.trim_every = trim_every
        self._trim = _heap_trimmer()
        self._loop: object | None = None
        self._served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        from anyio import to_thread

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            to_thread.current_default_thread_limiter().total_tokens = self.threads
            self._loop = loop
        await self.app(scope, receive, send)
        # After the answer, not in a finally: nothing is awaited while a failure propagates.
        if scope["type"] == "http" and self._trim is not None:
            self._served += 1  # one event loop thread: no lock needed
            if self._served % self.trim_every == 0:
                await to_thread.run_sync(self._trim)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it could resolve to anything, so it is not known to be loopback
        return False


def index_page() -> str:
    """The local server's page (``static/index.html``, package data of :mod:`vidsnap.local`)."""
    return resources.files("vidsnap.local").joinpath("static/index.html").read_text("utf-8")


def build_app(root: Path) -> Starlette:
    """The ASGI app over ``root``: local settings (no AWS), a LocalStore, nothing to submit to."""
    # Settings() rather than Settings.from_env(): a developer's shell may hold SOURCE_BUCKET,
    # TASK_QUEUE_URL or a SIGNING_SECRET meant for a deployment; the local server must not pick
    # them up (a signing secret would make every slider request fail with 403).
    app = create_app(settings=Settings(), store=LocalStore(root), index_page=index_page)
    app.add_middleware(_ServerUpkeep, threads=worker_threads())
    return app


def _first_video(root: Path) -> str | None:
    """The first video in ``root`` as the index lists it (for the example URL), or None."""
    try:
        keys = sorted(LocalStore(root).list_videos())
    except Exception:  # the example URL is a nicety; never fail the server over it
        return None
    return keys[0] if keys else None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free port), IPv4 or IPv6 as the host says."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Binding here, not inside uvicorn, tells us the real port before the server runs (so the
        # printed URL is right with --port 0) and turns "address in use" into a clear message.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    out: TextIO | None = None,
) -> int:
    """Serve the videos in ``root`` over HTTP until interrupted; return the process exit code.

    Prints the index URL and an example snapshot URL on ``out`` (stdout) as soon as the socket is
    bound, so a script (or a test) can read where to connect; ``port=0`` picks a free port. A
    non-loopback ``host`` is served with a warning on stderr, since nothing authenticates requests.
    Returns 2 when ``root`` is not a folder, uvicorn is missing or the address cannot be bound,
    130 after Ctrl+C (SIGINT). (After SIGTERM uvicorn stops, then ends the process by the signal.)
    """
    out = out or sys.stdout
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        print(f"vidsnap serve: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        # uvicorn is the optional 'serve' extra: not in the Lambda layer, which ships this module.
        import uvicorn
    except ImportError:
        print(
            "vidsnap serve needs uvicorn: pip install 'vidsnap[serve]' (or uvicorn>=0.30)",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(host):
        print(
            f"vidsnap serve: WARNING: binding {host}, not a loopback address. The local server has no "
            f"authentication: anyone who can reach this machine can read frames of every video in {root}.",
            file=sys.stderr,
        )
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"vidsnap serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    bound_port = int(sock.getsockname()[1])
    app = build_app(root)
    url = _url(host, bound_port)
    first = _first_video(root)
    print(f"vidsnap: serving {root} at {url}", file=out)
    if first:
        print(f"vidsnap: try {url}{quote(first)}?x-oss-process={EXAMPLE_PROCESS}", file=out)
    else:
        print(f"vidsnap: no videos in {root} yet; copy some in and reload {url}", file=out)
    print("vidsnap: press Ctrl+C to stop", file=out, flush=True)
    config = uvicorn.Config(app, log_level=log_level, access_log=log_level == "debug", lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on the first SIGINT, then raises it again for the caller to
        # see: that is this KeyboardInterrupt, not an error worth a traceback.
        print("vidsnap serve: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sock.close()
    return 0

"""Load run: memory and native threads of ``vidsnap serve`` under many concurrent snapshot requests.

    .venv/bin/python bench/load.py                          # 6,000 requests at concurrency 64
    .venv/bin/python bench/load.py --requests 1000 --concurrency 16 --json out.json

Synthesises a clip (:mod:`vidsnap.local.synth`) into a temporary folder, starts ``python -m vidsnap serve``
on 127.0.0.1 (a free port) as a user would, and fires snapshot requests at random times (a share
of them ``m_fast``) from a bounded pool of threads, each with its own keep-alive
``http.client`` connection. Traffic goes to 127.0.0.1 only and is bounded in count
(``--requests``) and time (``--max-seconds``). The server's resident memory and native thread
count (``VmRSS``, ``VmHWM`` and ``Threads`` in ``/proc/PID/status``) are recorded after the first
request, at each checkpoint (``--checkpoints``, default 500 and the total) and after
``--idle`` seconds without traffic. Numbers are reported, never asserted (the regression test is
``tests/test_load.py``). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    """The server process at one moment."""

    label: str
    requests: int
    rss_mb: float
    peak_rss_mb: float
    threads: int
    seconds: float


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (values stripped)."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def sample(pid: int, label: str, requests: int, started: float) -> Sample:
    """RSS, peak RSS and thread count of ``pid`` now."""
    status = proc_status(pid)
    kb = int(status["VmRSS"].split()[0])
    peak_kb = int(status["VmHWM"].split()[0])
    return Sample(
        label, requests, kb / 1024, peak_kb / 1024, int(status["Threads"]), time.monotonic() - started
    )


def start_server(root: Path, stderr_path: Path) -> tuple[subprocess.Popen[str], str]:
    """``python -m vidsnap serve --root ROOT --port 0``; returns the process and its base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SIGNING_", "SOURCE_"))}
    with open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vidsnap", "serve", "--root", str(root), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"serving .* at (http://\S+/)", line)
        if match:
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, match.group(1)
    proc.kill()
    raise SystemExit(f"the server did not start; see {stderr_path}")


class Load:
    """A bounded pool of client threads sending snapshot requests to one server."""

    def __init__(self, base_url: str, key: str, duration_ms: int, *, fast_share: float, seed: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("bench/load.py only sends traffic to this machine")
        self.key = key
        self.duration_ms = duration_ms
        self.fast_share = fast_share
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.done = 0

    def path(self) -> str:
        """A snapshot request at a random time (a share in keyframe mode)."""
        with self.lock:
            t = self.random.randrange(0, self.duration_ms)
            fast = self.random.random() < self.fast_share
        mode = ",m_fast" if fast else ""
        return f"/{self.key}?x-oss-process=video/snapshot,t_{t}{mode},f_jpg"

    def run(self, count: int, concurrency: int, deadline: float) -> None:
        """Send ``count`` requests from ``concurrency`` threads; stop early at ``deadline``."""
        todo: queue.Queue[int] = queue.Queue()
        for i in range(count):
            todo.put(i)

        def worker() -> None:
            conn: http.client.HTTPConnection | None = None
            while time.monotonic() < deadline:
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                    conn.request("GET", self.path())
                    response = conn.getresponse()
                    response.read()
                    with self.lock:
                        self.statuses[response.status] += 1
                except (OSError, http.client.HTTPException) as exc:
                    with self.lock:
                        self.errors[type(exc).__name__] += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                with self.lock:
                    self.done += 1
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def main(argv: list[str] | None = None) -> int:
    """Run the load and print the table (and write ``--json``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=6000, help="total requests (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=64, help="client threads (default %(default)s)")
    parser.add_argument(
        "--checkpoints", default="500", help="request counts to sample at, comma-separated (the total too)"
    )
    parser.add_argument(
        "--idle", type=float, default=15.0, help="seconds without traffic before the last sample"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop sending after this long")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--duration", type=float, default=20.0, help="clip length in seconds")
    parser.add_argument("--gop", type=int, default=50)
    parser.add_argument("--fast-share", type=float, default=0.2, help="share of m_fast requests")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256 or not 1 <= args.requests <= 100_000:
        parser.error("--concurrency must be 1..256 and --requests 1..100000 (a bounded run)")

    from vidsnap.local.synth import make_video

    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if c.strip()} | {args.requests})
    checkpoints = [c for c in checkpoints if 0 < c <= args.requests]
    with tempfile.TemporaryDirectory(prefix="vidsnap-load-") as tmp:
        root = Path(tmp) / "media"
        root.mkdir()
        print(f"synthesising a {args.width}x{args.height} {args.duration:g} s clip ...", file=sys.stderr)
        make_video(
            root / "clip.mp4",
            duration_s=args.duration,
            fps=30,
            width=args.width,
            height=args.height,
            gop=args.gop,
            bframes=2,
        )
        proc, url = start_server(root, Path(tmp) / "server.err")
        started = time.monotonic()
        samples: list[Sample] = []
        try:
            load = Load(
                url, "clip.mp4", int(args.duration * 1000), fast_share=args.fast_share, seed=args.seed
            )
            deadline = started + args.max_seconds
            load.run(1, 1, deadline)
            samples.append(sample(proc.pid, "after 1", load.done, started))
            sent = 1
            for checkpoint in checkpoints:
                if checkpoint > sent:
                    load.run(checkpoint - sent, args.concurrency, deadline)
                    sent = checkpoint
                samples.append(sample(proc.pid, f"after {checkpoint}", load.done, started))
                print(f"  {samples[-1]}", file=sys.stderr)
            time.sleep(args.idle)
            samples.append(sample(proc.pid, f"idle {args.idle:g} s", load.done, started))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        noise = (Path(tmp) / "server.err").read_text("utf-8", "replace")

    print(
        f"\n{args.requests} requests at concurrency {args.concurrency} on a {args.width}x{args.height} clip"
    )
    print(f"statuses: {dict(load.statuses)}  client errors: {dict(load.errors)}")
    print(f"{'moment':<14}{'requests':>9}{'RSS MB':>9}{'peak MB':>9}{'threads':>9}{'s':>8}")
    for s in samples:
        print(
            f"{s.label:<14}{s.requests:>9}{s.rss_mb:>9.0f}{s.peak_rss_mb:>9.0f}{s.threads:>9}{s.seconds:>8.1f}"
        )
    tracebacks = noise.count("Traceback")
    if tracebacks:
        print(f"server stderr held {tracebacks} tracebacks")
    if args.json:
        doc = {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "statuses": dict(load.statuses),
            "errors": dict(load.errors),
            "samples": [asdict(s) for s in samples],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    return 0 if not load.errors and set(load.statuses) <= {200} else 1


if __name__ == "__main__":
    sys.exit(main())

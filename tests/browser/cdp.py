"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Why a pipe, not a websocket: Chromium reads CDP commands from file descriptor 3 and writes replies
and events to file descriptor 4, each message a JSON document ended by a NUL byte (the transport
Playwright and Puppeteer use by default). That needs only the standard library: no websocket
package, no debugging port to pick, nothing listening on the network. The ``websockets`` /
``websocket-client`` / ``playwright`` packages are therefore not needed by the test suite.

Usage::

    with Chromium.launch(tmp_path / "profile") as browser:
        page = browser.new_page(url)
        page.wait_for("document.readyState === 'complete'")
        value = page.evaluate("document.title")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

#: Flags that keep headless Chromium quiet and self-contained on a machine with no network beyond
#: loopback (without the background-networking ones it keeps trying to reach Google's hosts).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # small /dev/shm in containers makes renderers crash
    "--mute-audio",
    "--window-size=1200,900",
)

#: Runs in the child between fork and exec: move the two pipe ends onto fds 3 and 4, which is where
#: Chromium's pipe handler looks for them. The ends arrive at whatever numbers the parent had, so
#: they are first copied above 10 to avoid clobbering each other when one of them is 3 or 4.
_EXEC_WRAPPER = """
import fcntl, os, sys
r, w = int(sys.argv[1]), int(sys.argv[2])
r2, w2 = fcntl.fcntl(r, fcntl.F_DUPFD, 10), fcntl.fcntl(w, fcntl.F_DUPFD, 10)
os.dup2(r2, 3)
os.dup2(w2, 4)
for fd in {r, w, r2, w2} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class CDPError(RuntimeError):
    """A CDP command answered with an error, the browser died, or a wait timed out."""


def find_chromium() -> str | None:
    """Path of a Chromium executable (``$CHROMIUM``, then Debian's ``/usr/bin/chromium``), or None."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Chromium:
    """A headless Chromium process and its CDP pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int, log: Path) -> None:
        self.proc = proc
        self.log = log
        self._out = os.fdopen(to_browser, "wb", buffering=0)
        self._in = os.fdopen(from_browser, "rb", buffering=0)
        self._next_id = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="cdp-reader", daemon=True)
        self._reader.start()

    @classmethod
    @contextmanager
    def launch(cls, profile_dir: Path, executable: str | None = None) -> Iterator[Chromium]:
        """Start headless Chromium with a fresh profile in ``profile_dir``; stop it on exit."""
        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium executable found")
        profile_dir.mkdir(parents=True, exist_ok=True)
        to_r, to_w = os.pipe()  # we write commands to to_w; Chromium reads to_r as fd 3
        from_r, from_w = os.pipe()  # Chromium writes fd 4 (from_w); we read from_r
        log = profile_dir / "chromium.log"
        args = [
            exe,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile_dir}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WRAPPER, str(to_r), str(from_w), *args],
                pass_fds=(to_r, from_w),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        os.close(to_r)
        os.close(from_w)
        browser = cls(proc, to_w, from_r, log)
        try:
            browser.send("Browser.getVersion", timeout=30)
            yield browser
        finally:
            browser.close()

    # -- transport ---------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; return its ``result``."""
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
            msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                if self._closed:
                    raise CDPError(
                        f"Chromium exited while waiting for {method}; see {self.log}:\n{self.log_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"no reply to {method} within {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CDPError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def log_tail(self, lines: int = 20) -> str:
        """The end of Chromium's own output (for failure messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def new_page(self, url: str) -> Page:
        """Open a tab on ``url`` and attach to it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Page.navigate", {"url": url})
        return page

    def close(self) -> None:
        """Ask the browser to quit; kill it if it does not."""
        if self.proc.poll() is None:
            with suppress(CDPError, OSError):
                self.send("Browser.close", timeout=5)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self._out, self._in):
            with suppress(OSError):
                stream.close()


class Page:
    """One attached tab (a flattened CDP session)."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30
    ) -> dict[str, Any]:
        """A command in this tab's session."""
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float = 30) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise CDPError(f"JavaScript error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 30, interval: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy; return its value (CDPError on timeout)."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise CDPError(f"timed out after {timeout} s waiting for {expression!r} (last value {value!r})")

    def console_errors(self) -> list[str]:
        """Uncaught exceptions reported by the page so far."""
        return [
            json.dumps(e.get("params", {}).get("exceptionDetails", {}))[:500]
            for e in self.browser.events
            if e.get("method") == "Runtime.exceptionThrown" and e.get("sessionId") == self.session
        ]

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path`` (kept for a failure's post-mortem)."""
        import base64

        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

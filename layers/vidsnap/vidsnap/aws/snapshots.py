"""Synchronous snapshots, whoever asks for them: the HTTP app (README: HTTP API) and S3 Object Lambda.

One path for both: the ``x-oss-process`` parameter of a query (at most once), the render through the
process-wide :data:`OPEN_VIDEOS` (a warm process keeps the last object version it read open, keyed
by that object's identity: where it is, its ETag, version and size), and the log line and metrics
of every rendered snapshot (:func:`vidsnap.aws.observe.emit_snapshot_metrics`). Failures are
:class:`~vidsnap.core.errors.VidsnapError` exceptions; each surface answers them in its own one place
(the HTTP app's middleware, the Object Lambda ``WriteGetObjectResponse`` of an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import BinaryIO

from vidsnap.aws.observe import emit_snapshot_metrics
from vidsnap.aws.storage import ObjectInfo, Store
from vidsnap.core.engine import Limits, OpenVideos, Rendered, Source, SyncRequest, snapshot
from vidsnap.core.errors import EC_MALFORMED, BadRequest
from vidsnap.core.plan import SnapshotRequest

log = logging.getLogger(__name__)

PROCESS_PARAM = "x-oss-process"

#: Videos kept open between the requests of a warm process (a Lambda container), shared by every
#: synchronous path: the last object version read stays open (container, index, decoder position
#: and read blocks), so the next snapshot of it reads little or nothing.
OPEN_VIDEOS = OpenVideos(capacity=1)

#: Readies a kept source for the request about to read it again (see :meth:`OpenVideos.snapshot`).
Reuse = Callable[[Source], None]


def single(values: Sequence[str], name: str, *, ec: str | None = None) -> str | None:
    """The one value of a parameter (None when it is absent); :class:`BadRequest` when it is given
    more than once (which of two process strings the caller meant is a guess vidsnap does not make)."""
    if len(values) > 1:
        raise BadRequest(f"{name} is given {len(values)} times; valid: at most once", ec=ec, param=name)
    return values[0] if values else None


def process_param(values: Sequence[str]) -> str | None:
    """The ``x-oss-process`` value among a query's ``values`` for it, None without one."""
    return single(values, PROCESS_PARAM, ec=EC_MALFORMED)


class Snapshots:
    """Renders the snapshots of one function, held to its ``limits``, through ``videos`` (default:
    the process-wide :data:`OPEN_VIDEOS`)."""

    def __init__(self, limits: Limits, *, videos: OpenVideos | None = None) -> None:
        self.limits = limits
        self.videos = videos or OPEN_VIDEOS

    def of_stored(self, store: Store, info: ObjectInfo, req: SyncRequest) -> Rendered:
        """The snapshot of the object ``info`` describes (what ``store.info`` returned), opened
        from that info: no second look-up, the reads pinned to that version."""
        # The store is part of the identity: it is what reads the object (its client, its options).
        identity = (store, info.key, info.etag, info.version, info.size) if info.etag else None
        return self.render(info.key, identity, lambda: store.open(info.key, info=info), req)

    def render(
        self,
        name: str,
        identity: Hashable | None,
        open_source: Callable[[], BinaryIO],
        req: SyncRequest,
        *,
        reuse: Reuse | None = None,
    ) -> Rendered:
        """The snapshot ``req`` asks for of the object ``identity`` names (``name`` in the logs).

        ``open_source`` opens it when no video of it is kept open; ``reuse`` readies a kept one. An
        object without an identity (no ETag: nothing would tell that its bytes changed) is opened
        for this request only.
        """
        return self._observed(name, req, lambda: self._render(identity, open_source, req, reuse))

    def render_opened(
        self, name: str, identity: Hashable | None, source: BinaryIO, req: SyncRequest, *, reuse: Reuse
    ) -> Rendered:
        """:meth:`render` from a source already opened to learn its identity: it serves the render
        when no video of that object is kept open, else it is closed unused (``reuse`` readies the
        kept one); its bytes count as read either way."""
        taken = False

        def take() -> BinaryIO:
            nonlocal taken
            taken = True
            return source

        def run() -> tuple[Rendered, int]:
            rendered, read = self._render(identity, take, req, reuse)
            return rendered, read if taken else read + _bytes_read(source)

        try:
            return self._observed(name, req, run)
        finally:
            if not taken:
                source.close()

    def _render(
        self,
        identity: Hashable | None,
        open_source: Callable[[], BinaryIO],
        req: SyncRequest,
        reuse: Reuse | None,
    ) -> tuple[Rendered, int]:
        if identity is None:
            with open_source() as source:
                return snapshot(source, req, limits=self.limits), _bytes_read(source)
        # A video is opened under limits (source pixels, decode budget): reuse it under the same.
        version = (identity, self.limits)
        return self.videos.snapshot(version, open_source, req, limits=self.limits, reuse=reuse)

    def _observed(self, name: str, req: SyncRequest, run: Callable[[], tuple[Rendered, int]]) -> Rendered:
        started = time.perf_counter()
        rendered, bytes_read = run()
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "snapshot %s %s: %dx%d, %d bytes read from the source, %.1f ms",
            name,
            f"t={req.time_ms}" if isinstance(req, SnapshotRequest) else req.action,
            rendered.width,
            rendered.height,
            bytes_read,
            elapsed_ms,
        )
        emit_snapshot_metrics(bytes_read=bytes_read, render_ms=elapsed_ms)
        return rendered


def _bytes_read(source: BinaryIO) -> int:
    """Bytes a reader fetched from its origin (0 for a local file, which counts nothing)."""
    return int(getattr(source, "bytes_read", 0) or 0)

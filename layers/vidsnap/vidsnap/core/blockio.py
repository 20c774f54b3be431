"""A seekable, read-only file object over a remote object of known size, read in cached blocks.

PyAV reads its input in small chunks and seeks a lot (an MP4 with the ``moov`` box at the end is
read at the tail first, then wherever the index points). :class:`BlockReader` turns that access
pattern into a few large ranged reads: the object is split into fixed-size blocks (1 MiB by
default), each fetched once and kept in a small LRU cache; a read that misses several consecutive
blocks fetches them in one request, and when reads are sequential the next block is fetched in the
same request (read-ahead), halving the request count of a sequential decode. :meth:`BlockReader.clone`
gives another reader over the same object (its own position) sharing the cache and the counters,
for a second decoder on another thread (``vidsnap.core.parallel``); fetches run outside the cache lock,
so clones read from the object concurrently.

A subclass says how to fetch a byte range (:meth:`BlockReader._fetch`);
:class:`~vidsnap.aws.s3io.S3RangeReader`
(S3 ranged GETs) and :class:`vidsnap.aws.objectlambda.HTTPRangeReader` (HTTP ``Range`` GETs of a
presigned URL) are the two.

Fetches are retried (:class:`RetryPolicy`): a transient failure of the request *or of its body*
(throttling, 5xx, a reset or timed-out connection, a body shorter than the range asked for, a
checksum mismatch) is tried again after an exponential backoff with full jitter, a bounded number
of times; a fetch that still fails raises :class:`~vidsnap.core.errors.SourceUnavailable` (503,
transient). Only a subclass's permanent error (404, 403, an ETag that no longer matches) ends the
read at once. A short body is never kept: a reader that hands PyAV fewer bytes than the object has
makes the decoder see a truncated file and pick a wrong frame or fail.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Self, TypeVar

from vidsnap.core.errors import SourceUnavailable, VidsnapError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a reader retries a fetch that failed transiently.

    ``attempts`` tries in all (the first included). Before retry ``n`` (0-based) the reader sleeps
    a uniformly random time in ``[0, min(cap_s, base_s * 2**n)]`` ("full jitter": concurrent
    readers hit by the same fault do not retry in lockstep). The defaults bound the sleeping of
    one fetch to 0.7 s, small next to a synchronous request's budget; the S3 client's own retries
    (:mod:`vidsnap.aws.clients`) come on top for failures before the body. ``sleep`` and ``rng`` are
    injectable for tests.
    """

    attempts: int = 4
    base_s: float = 0.1
    cap_s: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, retry: int) -> float:
        """The sleep before retry number ``retry`` (0-based): full jitter over the capped exponential."""
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * (2**retry)))

    def run(self, attempt: Callable[[], T], what: str, on_retry: Callable[[], None] | None = None) -> T:
        """Call ``attempt`` until it returns; retry transient :class:`VidsnapError` s.

        A permanent error is raised at once. After ``attempts`` transient failures, raises
        :class:`SourceUnavailable` naming ``what`` and the last failure. ``on_retry`` runs before
        every retry (the reader counts its requests with it).
        """
        failure: VidsnapError | None = None
        tries = max(1, self.attempts)
        for n in range(tries):
            if n:
                self.sleep(self.delay(n - 1))
                if on_retry is not None:
                    on_retry()
            try:
                return attempt()
            except VidsnapError as exc:
                if not exc.transient:
                    raise
                failure = exc
                log.info("transient failure reading %s (try %d of %d): %s", what, n + 1, tries, exc.message)
        assert failure is not None
        raise SourceUnavailable(
            f"{what}: still failing after {tries} attempt(s), retry later: {failure.message}"
        ) from failure


def content_range_total(value: Any) -> int | None:
    """The object size in a ``Content-Range: bytes a-b/total`` header; None when absent or ``*``."""
    if not isinstance(value, str) or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


#: The default policy of every reader (a reader's ``retry`` attribute overrides it).
DEFAULT_RETRY = RetryPolicy()


class _Shared:
    """What a reader and its clones share: the block cache, its lock and the traffic counters."""

    def __init__(self) -> None:
        self.cache: OrderedDict[int, bytes] = OrderedDict()
        self.lock = threading.Lock()
        self.bytes_read = 0
        self.requests = 0


class BlockReader(io.RawIOBase, BinaryIO):
    """A seekable, read-only file object over ``size`` bytes fetched block by block.

    It is an :class:`io.RawIOBase` (the runtime behaviour) and declares :class:`typing.BinaryIO`
    so it type-checks wherever a binary file is expected (``engine.run_task``, ``av.open``); every
    method comes from the ``io`` side of the MRO.

    ``bytes_read`` counts bytes fetched, ``requests`` counts fetches (a subclass that retries a
    request adds its retries). Positions past the end are allowed (reads there return nothing); a
    negative position is an :class:`OSError` (``EINVAL``), as for a real file. Thread-safe for one
    reader shared by threads (a lock guards the position, another the cache), though PyAV uses it
    from one thread; clones (:meth:`clone`) share the cache and counters.
    """

    #: Retries of a failed fetch; a class attribute so that a subclass can fetch (with retries)
    #: before calling this constructor (``HTTPRangeReader`` learns the size from its first GET).
    retry: RetryPolicy = DEFAULT_RETRY

    def __init__(
        self,
        *,
        size: int,
        block_size: int = 1 << 20,
        cache_blocks: int = 32,
        readahead: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        if retry is not None:
            self.retry = retry
        if block_size <= 0 or cache_blocks <= 0 or size < 0:
            raise ValueError("block_size and cache_blocks must be positive, size non-negative")
        self.size = size
        self.block_size = block_size
        self.cache_blocks = max(cache_blocks, 2)  # room for a block and its read-ahead
        self.readahead = readahead
        self._shared = _Shared()
        self._pos = 0
        self._last_fetched: int | None = None
        self._lock = threading.RLock()
        self._is_clone = False

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the object, by this reader and its clones."""
        return self._shared.bytes_read

    @bytes_read.setter
    def bytes_read(self, value: int) -> None:
        self._shared.bytes_read = value

    @property
    def requests(self) -> int:
        """Fetches made, by this reader and its clones (retries included, see ``_count``)."""
        return self._shared.requests

    @requests.setter
    def requests(self, value: int) -> None:
        self._shared.requests = value

    def _count(self, requests: int = 0, nbytes: int = 0) -> None:
        """Add to the shared counters (clones fetch on several threads)."""
        with self._shared.lock:
            self._shared.requests += requests
            self._shared.bytes_read += nbytes

    @property
    def _cache(self) -> OrderedDict[int, bytes]:
        return self._shared.cache

    def clone(self) -> Self:
        """Another reader over the same object: its own position, this one's cache and counters.

        Made by copying the reader's attributes (a subclass's own, like the S3 client and ETag,
        included), so a clone fetches exactly as the original does. Closing a clone leaves the
        shared cache to the others.
        """
        self._check_open()
        cls = type(self)
        other = cls.__new__(cls)  # not __init__: the subclass's would fetch or HEAD again
        io.RawIOBase.__init__(other)
        other.__dict__.update(self.__dict__)
        other._pos = 0
        other._last_fetched = None
        other._lock = threading.RLock()
        other._is_clone = True
        return other

    @abstractmethod
    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive) of the object, in one request.

        Errors are raised as :class:`~vidsnap.core.errors.VidsnapError`: transient ones (``transient``
        True) are retried by the caller (:attr:`retry`), others end the read. Fewer bytes than
        asked are a transient fault too: never kept, retried.
        """

    @property
    def _what(self) -> str:
        """The object, for messages: the subclass's ``name`` (never a presigned URL)."""
        name = getattr(self, "name", None)
        return name if isinstance(name, str) and name else f"the {type(self).__name__} source"

    def _fetch_whole(self, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive) with retries: exactly ``end - start + 1`` of them.

        Counts one request per attempt and the bytes of every attempt. Raises a permanent error
        of :meth:`_fetch` at once, :class:`SourceUnavailable` when the retries run out.
        """
        expected = end - start + 1

        def attempt() -> bytes:
            data = self._fetch(start, end)
            self._count(nbytes=len(data))
            if len(data) != expected:  # a cut connection or a proxy: never kept, retried
                raise SourceUnavailable(
                    f"{self._what}: a short body, {len(data)} of the {expected} bytes at {start}"
                )
            return data

        self._count(requests=1)
        return self.retry.run(attempt, self._what, on_retry=lambda: self._count(requests=1))

    # -- io.RawIOBase -------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"rb"``: read-only binary."""
        return "rb"

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def tell(self) -> int:
        """The current position."""
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; positions past the end are allowed (reads there return nothing)."""
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current position (fully, unless the end is reached)."""
        self._check_open()
        view = memoryview(buffer).cast("B")
        with self._lock:
            want = min(len(view), max(self.size - self._pos, 0))
            if want <= 0:
                return 0
            data = self._read_range(self._pos, self._pos + want)
            view[: len(data)] = data
            self._pos += len(data)
            return len(data)

    def readall(self) -> bytes:
        """Everything from the current position to the end."""
        self._check_open()
        with self._lock:
            if self._pos >= self.size:
                return b""
            data = self._read_range(self._pos, self.size)
            self._pos += len(data)
            return data

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining when negative or None)."""
        if size is None or size < 0:
            return self.readall()
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def prefetch(self, start: int, end: int) -> None:
        """Fetch bytes [start, end) now, one request per run of blocks not cached yet.

        A hint from a reader of the container index (``decode.Video`` before it seeks): the span a
        decoder is about to read, fetched in one request instead of block by block. Capped at half
        the cache, so that it cannot evict what it fetched before it is read.
        """
        self._check_open()
        end = min(end, self.size)
        if end <= start or start < 0:
            return
        first, last = start // self.block_size, (end - 1) // self.block_size
        last = min(last, first + max(1, self.cache_blocks // 2) - 1)
        with self._lock:
            with self._shared.lock:
                missing = [b for b in range(first, last + 1) if b not in self._cache]
            for run_start, run_end in _runs(missing):
                self._fetch_blocks(run_start, run_end)

    def close(self) -> None:
        """Drop the cache (a clone leaves it to the others); the subclass's client is not ours to close."""
        # Read from __dict__: a subclass constructor that failed early leaves neither attribute,
        # and io's finaliser still calls close().
        shared: _Shared | None = self.__dict__.get("_shared")
        if shared is not None and not self.__dict__.get("_is_clone"):
            with shared.lock:
                shared.cache.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on closed {type(self).__name__}")

    # -- block cache ------------------------------------------------------------------------

    def _read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) assembled from cached or freshly fetched blocks (short at a gap)."""
        first, last = start // self.block_size, (end - 1) // self.block_size
        # Blocks of this read are pinned here, so a small cache cannot evict them mid-read.
        with self._shared.lock:
            cache = self._cache
            pinned = {b: cache[b] for b in range(first, last + 1) if b in cache}
        missing = [b for b in range(first, last + 1) if b not in pinned]
        # One fetch per run of consecutive missing blocks (a large read should not cost N requests).
        for run_start, run_end in _runs(missing):
            stop = run_end
            sequential = self._last_fetched is not None and run_start == self._last_fetched + 1
            if self.readahead and sequential and (stop + 1) * self.block_size < self.size:
                stop += 1  # read-ahead: the decoder will very likely want the next block too
            pinned.update(self._fetch_blocks(run_start, stop))
        parts = []
        with self._shared.lock:
            for b in range(first, last + 1):
                if b in self._cache:
                    self._cache.move_to_end(b)
        for b in range(first, last + 1):
            block = pinned[b]
            lo = max(start - b * self.block_size, 0)
            hi = min(end - b * self.block_size, self.block_size)
            part = block[lo:hi]
            parts.append(part)
            if len(part) < hi - lo:  # a short block (less came back than asked): stop at the gap
                break
        return b"".join(parts)

    def _fetch_blocks(self, first: int, last: int) -> dict[int, bytes]:
        """Fetch blocks first..last in one request, cache them (LRU) and return them."""
        lo = first * self.block_size
        hi = min((last + 1) * self.block_size, self.size) - 1
        data = self._fetch_whole(lo, hi)  # outside the cache lock: clones fetch concurrently
        return self._keep(first, last, data)

    def _keep(self, first: int, last: int, data: bytes) -> dict[int, bytes]:
        """Cache ``data`` as blocks first..last (LRU, most recent last) and return those blocks."""
        kept = {}
        with self._shared.lock:
            cache = self._cache
            for b in range(first, last + 1):
                off = (b - first) * self.block_size
                kept[b] = cache[b] = data[off : off + self.block_size]
                cache.move_to_end(b)
            while len(cache) > self.cache_blocks:
                cache.popitem(last=False)
        self._last_fetched = last
        return kept


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Group sorted block numbers into inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and b == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs

"""Reading S3 objects with HTTP range requests through a block cache (SPEC 4.1).

PyAV reads its input in small chunks and seeks a lot (an MP4 with the ``moov`` box at the end is
read at the tail first, then wherever the index points). :class:`S3RangeReader` turns that access
pattern into a few large ranged GETs: the object is split into fixed-size blocks (1 MiB by default),
each fetched once with ``Range: bytes=a-b`` and kept in a small LRU cache; when reads are
sequential, the next block is fetched in the same request (read-ahead), halving the request count
of a sequential decode. Every GET carries ``If-Match`` with the ETag seen at open time, so an object
replaced mid-read fails cleanly with :class:`SourceChanged` instead of mixing bytes of two uploads.

:func:`map_client_error` is the one place botocore failures become :class:`~vidsnap.errors.VidsnapError`;
storage, notify and taskstore reuse it.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any, BinaryIO, ClassVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from vidsnap.errors import (
    InternalError,
    NotAllowed,
    NotFound,
    Throttled,
    VidsnapError,
    as_vidsnap_error,
)

_NOT_FOUND = {
    "404",
    "NoSuchKey",
    "NotFound",
    "NoSuchBucket",
    "NoSuchVersion",
    "NotFoundException",  # SNS
    "ResourceNotFoundException",  # DynamoDB
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}
_NOT_ALLOWED = {
    "403",
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",  # SNS
    "Forbidden",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "KMS.AccessDeniedException",
    "KMS.DisabledException",
}
_THROTTLED = {
    "503",
    "500",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMS.ThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
}
#: Network-level failures that a later retry may not see.
_TRANSIENT_BOTOCORE = (
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    ResponseStreamingError,
    HTTPClientError,
)


class SourceChanged(VidsnapError):
    """The source object was replaced while it was being read (ETag no longer matches): 412.

    Permanent for the task that saw it: the new upload has its own event and its own task.
    """

    status: ClassVar[int] = 412
    code: ClassVar[str] = "SourceChanged"


def error_code(exc: ClientError) -> tuple[str, int]:
    """The ``(Error.Code, HTTP status)`` of a botocore :class:`ClientError`."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def map_client_error(exc: BaseException, what: str = "") -> VidsnapError:
    """Map a botocore (or any) exception to a :class:`VidsnapError`.

    ``what`` names the operation and object for the message, e.g. ``"s3://b/k"``. 404-like codes
    become :class:`NotFound`, 403-like :class:`NotAllowed`, throttling / 5xx / timeouts / connection
    errors :class:`Throttled` (transient), a failed ``If-Match`` :class:`SourceChanged`, anything
    else :class:`InternalError`.
    """
    if isinstance(exc, VidsnapError):
        return exc
    where = f"{what}: " if what else ""
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        label = code or str(status)
        if code in _NOT_FOUND or (status == 404 and code not in _THROTTLED):
            return NotFound(f"{where}not found ({label})")
        if code in ("PreconditionFailed", "412") or status == 412:
            return SourceChanged(f"{where}the object changed while it was being read ({label})")
        if code in _NOT_ALLOWED or status == 403:
            return NotAllowed(f"{where}access denied ({label})")
        if code in _THROTTLED or status in (429, 500, 502, 503, 504):
            return Throttled(f"{where}throttled or unavailable, retry later ({label})")
        return InternalError(f"{where}unexpected AWS error ({label})")
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return Throttled(f"{where}network error, retry later ({type(exc).__name__})")
    if isinstance(exc, BotoCoreError):
        return InternalError(f"{where}AWS client error ({type(exc).__name__})")
    return as_vidsnap_error(exc)


class S3RangeReader(io.RawIOBase, BinaryIO):
    """A seekable, read-only file object over one S3 object, read with ranged GETs.

    It is an :class:`io.RawIOBase` (the runtime behaviour) and declares :class:`typing.BinaryIO`
    so it type-checks wherever a binary file is expected (``engine.run_task``, ``av.open``); every
    method comes from the ``io`` side of the MRO.

    ``bytes_read`` counts bytes transferred from S3, ``requests`` counts ranged GETs (the HEAD of
    :func:`open_s3` is not counted). Thread-safe for one reader shared by threads (a lock guards
    the cache and position), though PyAV uses it from one thread.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        size: int,
        etag: str | None = None,
        version_id: str | None = None,
        block_size: int = 1 << 20,
        cache_blocks: int = 32,
        readahead: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if block_size <= 0 or cache_blocks <= 0 or size < 0:
            raise ValueError("block_size and cache_blocks must be positive, size non-negative")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.size = size
        self.etag = etag
        self.version_id = version_id
        self.block_size = block_size
        self.cache_blocks = max(cache_blocks, 2)  # room for a block and its read-ahead
        self.readahead = readahead
        #: User metadata of the object (from the HEAD of :func:`open_s3`).
        self.metadata: dict[str, str] = dict(metadata or {})
        self.bytes_read = 0
        self.requests = 0
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._last_fetched: int | None = None
        self._lock = threading.RLock()

    # -- io.RawIOBase -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``s3://bucket/key`` (for messages and PyAV's format probing)."""
        return f"s3://{self.bucket}/{self.key}"

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

    def close(self) -> None:
        """Drop the cache; the client is not ours to close."""
        self._cache.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed S3RangeReader")

    # -- block cache ------------------------------------------------------------------------

    def _read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) assembled from cached or freshly fetched blocks."""
        first, last = start // self.block_size, (end - 1) // self.block_size
        # Blocks of this read are pinned here, so a small cache cannot evict them mid-read.
        pinned = {b: self._cache[b] for b in range(first, last + 1) if b in self._cache}
        missing = [b for b in range(first, last + 1) if b not in pinned]
        # One GET per run of consecutive missing blocks (a large read should not cost N requests).
        for run_start, run_end in _runs(missing):
            stop = run_end
            sequential = self._last_fetched is not None and run_start == self._last_fetched + 1
            if self.readahead and sequential and (stop + 1) * self.block_size < self.size:
                stop += 1  # read-ahead: the decoder will very likely want the next block too
            pinned.update(self._fetch_blocks(run_start, stop))
        parts = []
        for b in range(first, last + 1):
            block = pinned[b]
            if b in self._cache:
                self._cache.move_to_end(b)
            lo = max(start - b * self.block_size, 0)
            hi = min(end - b * self.block_size, len(block))
            parts.append(block[lo:hi])
        return b"".join(parts)

    def _fetch_blocks(self, first: int, last: int) -> dict[int, bytes]:
        """GET blocks first..last in one request, cache them (LRU) and return them."""
        lo = first * self.block_size
        hi = min((last + 1) * self.block_size, self.size) - 1
        data = self._get(lo, hi)
        fetched = {}
        for b in range(first, last + 1):
            off = (b - first) * self.block_size
            fetched[b] = self._cache[b] = data[off : off + self.block_size]
            self._cache.move_to_end(b)
        self._last_fetched = last
        while len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return fetched

    def _get(self, lo: int, hi: int) -> bytes:
        """One ranged GET of bytes lo..hi inclusive; one retry when the body stream breaks."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "Range": f"bytes={lo}-{hi}"}
        if self.version_id:
            params["VersionId"] = self.version_id
        if self.etag:
            params["IfMatch"] = _quoted(self.etag)
        expected = hi - lo + 1
        for attempt in range(2):
            try:
                self.requests += 1
                response = self.client.get_object(**params)
                body = response["Body"]
                try:
                    data: bytes = body.read()
                finally:
                    body.close()
            except (ResponseStreamingError, ReadTimeoutError, ConnectionClosedError) as exc:
                # botocore retries the request, not the streaming of its body: retry that once here.
                if attempt == 0:
                    continue
                raise map_client_error(exc, self.name) from exc
            except (ClientError, BotoCoreError) as exc:
                raise map_client_error(exc, self.name) from exc
            self.bytes_read += len(data)
            if len(data) != expected:
                # The object shrank under us without an ETag to catch it, or a proxy cut the body.
                raise SourceChanged(f"{self.name}: expected {expected} bytes at {lo}, got {len(data)}")
            return data
        raise AssertionError("unreachable")  # pragma: no cover


def open_s3(client: Any, bucket: str, key: str, *, version_id: str | None = None, **kw: Any) -> S3RangeReader:
    """HEAD ``s3://bucket/key`` and return a :class:`S3RangeReader` over it.

    Raises :class:`NotFound` (404), :class:`NotAllowed` (403) or :class:`Throttled` (throttling,
    5xx, timeouts). An empty object opens fine (the decoder reports it). ``kw`` goes to the reader
    (``block_size``, ``cache_blocks``, ``readahead``).
    """
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    try:
        head = client.head_object(**params)
    except (ClientError, BotoCoreError) as exc:
        raise map_client_error(exc, f"s3://{bucket}/{key}") from exc
    return S3RangeReader(
        client,
        bucket,
        key,
        size=int(head.get("ContentLength", 0)),
        etag=_unquoted(head.get("ETag")),
        version_id=version_id or head.get("VersionId") or None,
        metadata=head.get("Metadata") or {},
        **kw,
    )


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Group sorted block numbers into inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and b == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') or etag.startswith("W/") else f'"{etag}"'


def _unquoted(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None

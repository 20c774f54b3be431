"""Reading S3 objects with HTTP range requests through a block cache (docs/ARCHITECTURE.md, blockio).

:class:`S3RangeReader` is a :class:`~vidsnap.core.blockio.BlockReader` (block cache, read-ahead, one
ranged GET per run of missing blocks) whose fetches are ``GetObject`` calls with ``Range:
bytes=a-b``. Every GET carries ``If-Match`` with the ETag seen at open time, so an object replaced
mid-read fails cleanly with :class:`SourceChanged` instead of mixing bytes of two uploads. That
412 is the *only* sign of a changed source: a body that is short, cut, times out or fails
botocore's checksum is a network fault, retried by the reader (:class:`~vidsnap.core.blockio.RetryPolicy`,
the body read included, which botocore's own retries do not cover) and, when it persists,
:class:`~vidsnap.core.errors.SourceUnavailable` (503, transient).

Failures become :class:`~vidsnap.core.errors.VidsnapError` through
:func:`vidsnap.aws.errors.map_client_error`.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vidsnap.aws.clients import mapped_errors
from vidsnap.aws.errors import TRANSIENT_RAW, map_client_error
from vidsnap.core.blockio import BlockReader, RetryPolicy, content_range_total
from vidsnap.core.errors import SourceChanged


class S3RangeReader(BlockReader):
    """A seekable, read-only file object over one S3 object, read with ranged GETs.

    Every GET carries ``If-Match`` with the ETag seen at open time (and ``VersionId`` when pinned).
    Failed fetches are retried as ``retry`` says (:class:`~vidsnap.core.blockio.RetryPolicy`).
    ``bytes_read`` counts bytes transferred from S3, ``requests`` counts ranged GETs (the HEAD the
    reader is opened from, :func:`open_s3`'s or ``S3Store.info``'s, is not counted). See
    :class:`~vidsnap.core.blockio.BlockReader` for the cache.
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
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            size=size, block_size=block_size, cache_blocks=cache_blocks, readahead=readahead, retry=retry
        )
        self.client = client
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self.version_id = version_id
        #: User metadata of the object (from the HEAD it was opened from).
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def name(self) -> str:
        """``s3://bucket/key`` (for messages and PyAV's format probing)."""
        return f"s3://{self.bucket}/{self.key}"

    def _fetch(self, start: int, end: int) -> bytes:
        """One ranged GET of bytes start..end inclusive, its body read whole.

        Raises mapped errors: transient ones (throttling, 5xx, connection and body-read faults)
        are retried by :meth:`~vidsnap.core.blockio.BlockReader._fetch_whole`, the 412 of a failed
        ``If-Match`` (:class:`SourceChanged`), 404 and 403 are not.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "Range": f"bytes={start}-{end}"}
        if self.version_id:
            params["VersionId"] = self.version_id
        if self.etag:
            params["IfMatch"] = _quoted(self.etag)
        try:
            response = self.client.get_object(**params)
            body = response["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        except (ClientError, BotoCoreError, *TRANSIENT_RAW) as exc:
            raise map_client_error(exc, self.name) from exc
        total = content_range_total(response.get("ContentRange"))
        if not self.etag and total is not None and total != self.size:
            # Without an ETag to send in If-Match, a new total size is the only sign of a new object.
            raise SourceChanged(f"{self.name}: the object is now {total} bytes, not {self.size}")
        return data


def open_s3(client: Any, bucket: str, key: str, *, version_id: str | None = None, **kw: Any) -> S3RangeReader:
    """HEAD ``s3://bucket/key`` and return a :class:`S3RangeReader` over it.

    Raises :class:`NotFound` (404), :class:`NotAllowed` (403) or :class:`Throttled` (throttling,
    5xx, timeouts). An empty object opens fine (the decoder reports it). ``kw`` goes to the reader
    (``block_size``, ``cache_blocks``, ``readahead``, ``retry``).

    The HEAD has no body, so the S3 client's own retries (standard mode, :mod:`vidsnap.aws.clients`)
    cover all its faults: it is not retried again here.
    """
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    with mapped_errors(f"s3://{bucket}/{key}"):
        head = client.head_object(**params)
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


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') or etag.startswith("W/") else f'"{etag}"'


def _unquoted(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None

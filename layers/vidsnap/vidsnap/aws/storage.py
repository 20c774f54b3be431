"""Where outputs are written (sinks) and where sources are read (stores).

Sinks implement the engine's ``Sink`` protocol (``put(bucket, key, data, content_type) -> uri``)
plus ``delete(uri)`` so a failed task can remove what it wrote. Every key goes through
:func:`vidsnap.core.naming.check_key` (no ``..``, no absolute paths, no control characters) before
anything is written; :class:`S3Sink` also refuses buckets off the allow-list before any request.

Objects written by :class:`S3Sink` carry the user metadata ``vidsnap-output: 1``: the worker refuses
such an object as a source, which stops an upload rule from re-triggering on its own outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from vidsnap.aws.clients import mapped_errors
from vidsnap.core.errors import NotAllowed, NotFound
from vidsnap.core.naming import check_key
from vidsnap.core.naming import split_s3_uri as parse_s3_uri

if TYPE_CHECKING:
    from vidsnap.aws.s3io import S3RangeReader

#: User metadata key marking objects written by vidsnap (S3 lower-cases metadata keys).
OUTPUT_MARKER = "vidsnap-output"

#: File extensions :meth:`LocalStore.list_videos` reports (video containers and audio with cover art).
MEDIA_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
        ".mpg", ".mpeg", ".3gp", ".ogv", ".mxf", ".m4a", ".mp3", ".flac", ".ogg", ".opus",
    }
)  # fmt: skip


def _path_under(root: Path, key: str, folder: str) -> Path:
    """``root/key`` resolved; :class:`NotAllowed` (naming ``folder``) when it is outside ``root``."""
    check_key(key)
    path = (root / key).resolve()
    # check_key already refuses '..' and absolute keys; this also catches symlinks out of root.
    if root not in path.parents:
        raise NotAllowed(f"key {key!r} resolves outside the {folder}", param="key")
    return path


# -- sinks ---------------------------------------------------------------------------------------


class LocalSink:
    """Writes outputs as files under ``root`` (the CLI's ``--out`` folder); the bucket is ignored.

    Files are written to a temporary name and renamed, so a reader never sees half an image.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        """The file path of ``key`` under the root; :class:`NotAllowed` when it would escape it."""
        return _path_under(self.root, key, "output folder")

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:  # noqa: ARG002
        """Write ``data`` to ``root/key`` and return the file path."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vidsnap-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(path)

    def delete(self, uri: str) -> None:
        """Remove a file this sink wrote (a path under the root); missing files are fine."""
        path = Path(uri).resolve()
        if self.root in path.parents:
            path.unlink(missing_ok=True)


class S3Sink:
    """Writes outputs to S3 buckets on an allow-list and returns ``s3://bucket/key`` URIs.

    ``bucket`` None in :meth:`put` means ``default_bucket``; the default bucket is always allowed.
    A refused bucket raises :class:`NotAllowed` before any request, so nothing is written.
    """

    def __init__(
        self,
        client: Any,
        default_bucket: str | None,
        allowed_buckets: Iterable[str] = frozenset(),
        *,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.default_bucket = default_bucket
        self.allowed_buckets = frozenset(allowed_buckets) | ({default_bucket} if default_bucket else set())
        self.metadata = {OUTPUT_MARKER: "1", **(metadata or {})}

    def resolve_bucket(self, bucket: str | None) -> str:
        """The bucket an output for ``bucket`` goes to; :class:`NotAllowed` when it may not be written."""
        target = bucket or self.default_bucket
        if not target:
            raise NotAllowed("no output bucket: the request names none and OUTPUT_BUCKET is not set")
        if target not in self.allowed_buckets:
            raise NotAllowed(
                f"bucket {target!r} is not an allowed output bucket (OUTPUT_BUCKET / ALLOWED_OUTPUT_BUCKETS)",
                param="bucket",
            )
        return target

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        """Upload ``data`` to ``bucket/key`` with ``content_type``; return ``s3://bucket/key``."""
        target = self.resolve_bucket(bucket)
        check_key(key)
        with mapped_errors(f"s3://{target}/{key}"):
            self.client.put_object(
                Bucket=target, Key=key, Body=data, ContentType=content_type, Metadata=self.metadata
            )
        return f"s3://{target}/{key}"

    def delete(self, uri: str) -> None:
        """Delete an object this sink wrote (only in an allowed bucket)."""
        bucket, key = parse_s3_uri(uri)
        self.resolve_bucket(bucket)
        with mapped_errors(uri):
            self.client.delete_object(Bucket=bucket, Key=key)


# -- stores --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about a source object without reading it."""

    key: str
    size: int
    etag: str
    version: str | None = None
    last_modified: datetime | None = None
    #: User metadata (S3 lower-cases the keys), e.g. :data:`OUTPUT_MARKER`.
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)


class Store(Protocol):
    """Where sources are read: :class:`LocalStore` (a folder) or :class:`S3Store` (a bucket)."""

    def info(self, key: str) -> ObjectInfo:
        """Size, ETag, version and modification time of ``key``; NotFound when there is none."""
        ...

    def open(self, key: str, *, info: ObjectInfo | None = None) -> BinaryIO:
        """A seekable reader over ``key``: the object ``info`` describes when it is given (what
        :meth:`info` returned: no second look-up, and the reads are of that version only)."""
        ...


class LocalStore:
    """Sources as files under ``root`` (the local server and CLI).

    ``etag`` is not an MD5: it is derived from size and modification time (cheap, and it changes
    when the file is replaced), which is all HTTP caching needs.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        """The file of ``key``; :class:`NotAllowed` for traversal, :class:`NotFound` when missing."""
        path = _path_under(self.root, key, "media folder")
        if not path.is_file():
            raise NotFound(f"no such object: {key}")
        return path

    def info(self, key: str) -> ObjectInfo:
        """Size, pseudo-ETag and modification time of ``key``."""
        st = self.path_for(key).stat()
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
            version=None,
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def open(self, key: str, *, info: ObjectInfo | None = None) -> BinaryIO:  # noqa: ARG002
        """The file of ``key`` opened for binary reading (``info`` changes nothing for a file)."""
        return self.path_for(key).open("rb")

    def list_videos(self) -> list[str]:
        """Keys (``/``-separated, relative to the root) of media files, sorted; hidden entries skipped."""
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                    keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(keys)


class S3Store:
    """Sources in one S3 bucket: HEAD for :meth:`info`, range reads for :meth:`open`."""

    def __init__(self, client: Any, bucket: str, **reader_options: Any) -> None:
        self.client = client
        self.bucket = bucket
        self.reader_options = reader_options

    def info(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """HEAD ``key``; :class:`NotFound`, :class:`NotAllowed` or ``Throttled`` on failure."""
        check_key(key)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        with mapped_errors(f"s3://{self.bucket}/{key}"):
            head = self.client.head_object(**params)
        return ObjectInfo(
            key=key,
            size=int(head.get("ContentLength", 0)),
            etag=str(head.get("ETag", "")).strip('"'),
            version=head.get("VersionId") or version_id or None,
            last_modified=head.get("LastModified"),
            metadata=dict(head.get("Metadata") or {}),
        )

    def open(
        self, key: str, *, info: ObjectInfo | None = None, version_id: str | None = None
    ) -> S3RangeReader:
        """A block-caching range reader over ``key``, pinned to the object ``info`` describes (its
        ETag in ``If-Match``, its version id): one HEAD per snapshot, that of :meth:`info`. Without
        ``info``, the object (``version_id``, else the current one) is looked up first."""
        from vidsnap.aws.s3io import S3RangeReader

        check_key(key)
        if info is None:
            info = self.info(key, version_id=version_id)
        return S3RangeReader(
            self.client,
            self.bucket,
            key,
            size=info.size,
            etag=info.etag or None,
            version_id=info.version,
            metadata=dict(info.metadata),
            **self.reader_options,
        )

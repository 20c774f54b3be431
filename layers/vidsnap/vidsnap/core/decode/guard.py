"""The boundary between PyAV and vidsnap: the read guard and the errors caught at it.

Every PyAV/FFmpeg or I/O failure is turned into a vidsnap error at this boundary
(docs/ARCHITECTURE.md, decode). A file object is read through a :class:`ReadGuard`, which records
a failed read instead of raising it inside FFmpeg's I/O callback; the cursor raises the recorded
error (:func:`raise_read_error`) where it hands out a frame or meets the end of the data.
"""

from __future__ import annotations

import errno
import os
from typing import BinaryIO

import av.error

from vidsnap.core.errors import UndecodableMedia, VidsnapError

__all__ = [
    "AV_ERRORS",
    "INDEX_ERRORS",
    "REOPEN_ERRORS",
    "ReadGuard",
    "raise_if_transient",
    "raise_read_error",
]

#: What PyAV and the I/O under it raise for a file it cannot read (mapped to vidsnap errors).
AV_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError, ValueError)
#: What opening the source again can raise (a range reader raises vidsnap errors itself).
REOPEN_ERRORS: tuple[type[BaseException], ...] = (VidsnapError, *AV_ERRORS)
#: What reading a stream's index (a lazy sequence) or looking a stream up by number can raise.
INDEX_ERRORS: tuple[type[BaseException], ...] = (IndexError, *AV_ERRORS)


class ReadGuard:
    """The file object PyAV reads a Python source through: a failed read is recorded, not raised.

    PyAV calls ``read``/``seek`` inside FFmpeg's I/O callbacks. An exception there is stashed for
    the next PyAV call that checks an FFmpeg result, but FFmpeg often takes a failed read as the end
    of the data and carries on: the stashed exception is then printed to stderr as a multi-line
    "PyAV library exception being dropped" traceback when the next one is stashed (noise in Lambda
    logs), or raised later by an unrelated call on the same thread (the next request served by
    that thread), while this one fails as "truncated or corrupt" instead of with the read error.
    Here a failed read records its exception and returns ``b""`` (the end of the data for FFmpeg,
    and every later read too); :func:`raise_read_error` raises the recorded error where the
    cursor hands out a frame or meets the end of the data.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: BaseException | None = None

    def readable(self) -> bool:
        """Always True (PyAV asks)."""
        return True

    def seekable(self) -> bool:
        """Whether the source can seek (PyAV asks once, when opening)."""
        seekable = getattr(self.raw, "seekable", None)
        try:
            return bool(seekable()) if callable(seekable) else True
        except Exception:
            return False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the data and after a failed read."""
        if self.error is not None:
            return b""
        try:
            data = self.raw.read(size)
        except Exception as exc:
            self.error = exc
            return b""
        # PyAV copies from a bytes object only (anything else would be a TypeError in its callback).
        return data if isinstance(data, bytes) else bytes(data or b"")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """The new position, or a negative errno that FFmpeg takes as a failed seek."""
        try:
            return int(self.raw.seek(offset, whence))
        except OSError as exc:  # a position the source refuses (negative): FFmpeg copes
            return -(exc.errno or errno.EIO)
        except Exception as exc:
            self.error = self.error or exc
            return -errno.EIO

    def tell(self) -> int:
        """The current position (or a negative errno)."""
        try:
            return int(self.raw.tell())
        except Exception as exc:
            self.error = self.error or exc
            return -errno.EIO


def raise_if_transient(exc: BaseException) -> None:
    """Re-raise a transient vidsnap error (throttling, a source read to retry) caught by a handler
    that gives up gracefully on damaged media: only a permanent failure may end in a fallback."""
    if isinstance(exc, VidsnapError) and exc.transient:
        raise exc


def raise_read_error(guard: ReadGuard | None) -> None:
    """Raise the error a read through ``guard`` met, if any: the source's own error (a
    VidsnapError from a range reader), or UndecodableMedia for an I/O error of a file object."""
    if guard is None or guard.error is None:
        return
    error = guard.error
    if isinstance(error, OSError):  # I/O failures are media errors at this boundary (module doc)
        raise UndecodableMedia(f"the source could not be read: {error}") from error
    raise error

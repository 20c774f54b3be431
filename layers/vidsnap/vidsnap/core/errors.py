"""The one exception hierarchy of vidsnap (README: HTTP API, errors).

Every failure that reaches a surface (HTTP, Object Lambda, worker, CLI) is a :class:`VidsnapError`;
the edges map it to a status and a JSON body with :meth:`VidsnapError.to_dict`. Anything else that
escapes is an internal error and is mapped to 500 by the edges.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

# OSS-compatible EC codes for bad synchronous parameters (README: HTTP API, errors).
EC_TIME = "0053-00000101"
EC_WIDTH = "0053-00000104"
EC_HEIGHT = "0053-00000105"
EC_MODE = "0053-00000106"
EC_FORMAT = "0053-00000107"
EC_ROTATE = "0053-00000108"
EC_MALFORMED = "0053-00000109"


class VidsnapError(Exception):
    """Base of all expected failures: carries a machine code, an HTTP status and a message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"
    #: True when retrying the same request later may succeed (throttling, timeouts).
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, ec: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ec = ec
        self.param = param

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        """The documented error body: ``{"Code","Message","RequestId","EC"?}``."""
        body: dict[str, Any] = {"Code": self.code, "Message": self.message, "RequestId": request_id or ""}
        if self.ec:
            body["EC"] = self.ec
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, ec={self.ec!r})"


class BadRequest(VidsnapError):
    """A malformed request: bad parameter, unknown parameter, unknown action (400)."""

    status = 400
    code = "InvalidArgument"


class NotSupportedYet(BadRequest):
    """A well-formed request for a feature that is not built yet (sprites, animations)."""

    code = "NotSupported"


class NotAllowed(VidsnapError):
    """A target bucket/topic/queue outside the allow-lists, a bad signature, a forbidden key (403)."""

    status = 403
    code = "AccessDenied"


class NotFound(VidsnapError):
    """The source object or task does not exist (404)."""

    status = 404
    code = "NoSuchKey"


class TooLarge(VidsnapError):
    """The source or result exceeds a configured limit and cannot be redirected (413)."""

    status = 413
    code = "EntityTooLarge"


class SourceTooLarge(TooLarge):
    """The source's declared picture is larger than ``MAX_SOURCE_PIXELS`` allows (413).

    Refused from the stream header, before any frame is decoded: a small file can declare a
    picture whose decoding would take gigabytes (a decompression bomb).
    """

    code = "SourceTooLarge"


class UnsupportedMedia(VidsnapError):
    """Not a media file vidsnap can read: no video stream, no cover art, not a container (415)."""

    status = 415
    code = "UnsupportedMediaType"


class UndecodableMedia(VidsnapError):
    """A media file that cannot be decoded at the requested time: truncated, corrupt (422)."""

    status = 422
    code = "MediaDecodeFailed"


class SourceEndsEarly(UndecodableMedia):
    """The video stream ends before the time asked for, although its header claims it lasts longer
    (a truncated file, or a header that lies about the duration) (422).

    A single frame request fails with it. A multi-frame selection stops there with a warning and
    keeps the frames that exist, unless ``truncated``: the container's index lists frames past the
    end of the data, so the file was cut and the task fails as a whole.
    """

    #: The container's index lists packets well past the last frame that decodes.
    truncated: bool = False


class DecodeBudgetExceeded(UndecodableMedia):
    """Reaching the requested frame would decode more frames than ``DECODE_BUDGET_FRAMES`` allows
    (a keyframe far before the target), more than the function's time limit can afford (422)."""

    code = "DecodeBudgetExceeded"


class SourceChanged(VidsnapError):
    """The source object was replaced while it was being read (its ETag no longer matches): 412.

    Permanent for the task that saw it: the new upload has its own event and its own task.
    """

    status = 412
    code = "SourceChanged"


class InternalError(VidsnapError):
    """A bug or an unexpected failure (500)."""

    status = 500
    code = "InternalError"


class Throttled(VidsnapError):
    """An upstream service throttled or timed out; retry later (503)."""

    status = 503
    code = "ServiceUnavailable"
    transient = True


class SourceUnavailable(Throttled):
    """The source could not be read right now, even after retries (503, transient).

    Network faults on the way to the source (a reset connection, a timed-out or cut body, a body
    shorter than the range asked for, a checksum mismatch, 5xx answers): the object itself did not
    change (that is ``SourceChanged``, 412), so the same request later will very likely succeed.
    A synchronous request answers 503 with ``Retry-After``; a task is retried by SQS.
    """

    code = "SourceUnavailable"


def as_vidsnap_error(exc: BaseException) -> VidsnapError:
    """Map any exception to a :class:`VidsnapError`; unknown ones become :class:`InternalError`."""
    if isinstance(exc, VidsnapError):
        return exc
    return InternalError(f"internal error: {type(exc).__name__}")


def misconfigured(exc: BaseException) -> InternalError:
    """The 500 of a function whose configuration does not load (logged loudly, with the cause)."""
    logging.getLogger(__name__).error("the function is misconfigured: %s", exc, exc_info=exc)
    return InternalError("the function is misconfigured; see its logs")

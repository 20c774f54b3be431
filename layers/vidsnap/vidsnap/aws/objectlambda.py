"""S3 Object Lambda (README): answer a ``GetObject`` through an Object Lambda access point with a
snapshot of the object, through ``WriteGetObjectResponse``.

The process string comes from the user's request URL (``?x-oss-process=video/snapshot,...``), or,
when the URL has none, from the access point's configuration payload (a JSON object with an
``x-oss-process`` field, or the bare process string). A request with neither is answered with a
400 ``InvalidArgument`` error ("x-oss-process required"): vidsnap does not pass the original video
through, because an access point that silently returns whole videos is not what a frame-capture
endpoint is for (use the supporting access point for that).

The object is read from the presigned ``inputS3Url`` with HTTP range requests through a small
block-caching seekable reader (:class:`HTTPRangeReader`), so a snapshot of a large video reads a few
MB, never the whole object. The snapshot is rendered as the HTTP app renders it
(:mod:`vidsnap.aws.snapshots`), through the same warm videos of the process: the reader's first GET
tells the object's ETag and size, and a video of that object kept open by an earlier request is
used again (reading through this request's URL: the earlier one may have expired). Every outcome,
errors included, is answered through ``WriteGetObjectResponse`` (StatusCode, ErrorCode,
ErrorMessage) in one place (:func:`_answer_error`); the function returns a small dict for its own
logs.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Hashable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vidsnap.aws.settings import Settings
from vidsnap.aws.snapshots import PROCESS_PARAM, Snapshots, process_param
from vidsnap.core.blockio import BlockReader, RetryPolicy, content_range_total
from vidsnap.core.engine import Rendered, Source
from vidsnap.core.errors import (
    BadRequest,
    NotAllowed,
    NotFound,
    SourceChanged,
    SourceUnavailable,
    Throttled,
    UndecodableMedia,
    VidsnapError,
    as_vidsnap_error,
    misconfigured,
)
from vidsnap.core.jsonload import load_json
from vidsnap.core.lang import parse_sync
from vidsnap.core.plan import report_ms

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20
CACHE_BLOCKS = 32
TIMEOUT_S = 20.0


#: The Object Lambda reader's retries: more patient than the S3 reader's, because urllib has no
#: retries of its own underneath (the S3 client retries requests before the reader does). Sleeps
#: at most 0.1 + 0.2 + 0.4 + 0.8 + 1.0 s per fetch, well inside the function's timeout.
HTTP_RETRY = RetryPolicy(attempts=6, base_s=0.1, cap_s=1.0)


class HTTPRangeReader(BlockReader):
    """A seekable, readable view of an HTTP(S) object through ``Range`` GETs, with an LRU block cache.

    The size comes from the first response's ``Content-Range`` (a presigned URL is signed for GET
    only, so there is no HEAD): the constructor GETs block 0, which stays cached. ``bytes_read`` and
    ``requests`` count the traffic, that first GET included. Failed GETs (5xx, resets, timeouts,
    short or cut bodies) are retried as ``retry`` says; when they keep failing the reader raises
    :class:`~vidsnap.core.errors.SourceUnavailable`, answered 503 through ``WriteGetObjectResponse``. See
    :class:`~vidsnap.core.blockio.BlockReader` for the cache.
    """

    retry = HTTP_RETRY

    def __init__(
        self,
        url: str,
        *,
        block_size: int = BLOCK_SIZE,
        cache_blocks: int = CACHE_BLOCKS,
        timeout: float = TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        readahead: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = _http_url(url)
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.etag: str | None = None
        self.content_type: str | None = None
        if retry is not None:
            self.retry = retry
        attempts = 0

        def first_block() -> tuple[bytes, str | None]:
            nonlocal attempts
            attempts += 1
            try:
                data, content_range = self._get(0, block_size - 1)
            except UndecodableMedia:  # 416 on the first block: an empty object
                return b"", None
            total = content_range_total(content_range)
            if total is not None and len(data) != min(block_size, total):
                raise SourceUnavailable(f"a short body: {len(data)} bytes of the first block")
            return data, content_range

        first, content_range = self.retry.run(first_block, "the object")
        size = content_range_total(content_range)
        super().__init__(
            size=len(first) if size is None else size,
            block_size=block_size,
            cache_blocks=cache_blocks,
            readahead=readahead,
        )
        self.requests, self.bytes_read = attempts, len(first)
        if first:
            self._keep(0, 0, first)

    def retarget(self, url: str) -> None:
        """Read on through ``url``: a new presigned URL of the same object (the one the reader was
        opened with expires within its request)."""
        self.url = _http_url(url)

    @property
    def identity(self) -> Hashable | None:
        """The object read, as the warm videos key it: where (scheme, host, path and version id;
        not the signature, which changes per request) and which bytes (ETag, size). None without
        an ETag, when nothing would tell a replaced object from this one."""
        if not self.etag:
            return None
        parts = urlsplit(self.url)
        version = tuple(parse_qs(parts.query).get("versionId", ()))
        return ("url", parts.scheme.lower(), parts.netloc.lower(), parts.path, version, self.etag, self.size)

    def _fetch(self, start: int, end: int) -> bytes:
        return self._get(start, end)[0]

    def _get(self, start: int, end: int) -> tuple[bytes, str | None]:
        """One ``Range: bytes=start-end`` GET: the body and the ``Content-Range`` header."""
        headers = {**self.headers, "Range": f"bytes={start}-{end}"}
        if self.etag:
            # As the S3 reader does: every read after the first is of the object the first one saw.
            headers["If-Match"] = self.etag
        request = urllib.request.Request(self.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: bytes = response.read()
                content_range = response.headers.get("Content-Range")
                etag = response.headers.get("ETag")
                if self.etag is None:
                    self.etag = etag
                    self.content_type = response.headers.get("Content-Type")
                elif etag and etag != self.etag:  # a server that ignores If-Match
                    raise SourceChanged("the object was replaced while it was being read")
                if response.status == 200:  # server ignored the Range: keep only the slice we asked for
                    content_range = f"bytes 0-{len(data) - 1}/{len(data)}" if data else "bytes */0"
                    data = data[start : end + 1]
        except urllib.error.HTTPError as exc:
            exc.close()  # the error answer's connection: closed now, not by the garbage collector
            raise _http_error(exc) from None
        except (OSError, http.client.HTTPException) as exc:
            # URLError, resets, timeouts, and a body cut before its Content-Length (IncompleteRead):
            # network faults, retried by the reader.
            raise Throttled(f"reading the object failed: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # a malformed URL (bad host, bad port)
            raise VidsnapError(f"the input URL is malformed: {exc}") from None
        return data, content_range


def _http_url(url: Any) -> str:
    """``url`` when it is an http(s) URL; :class:`VidsnapError` (500) otherwise."""
    try:
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    except ValueError:  # e.g. an unclosed IPv6 bracket
        scheme = ""
    if scheme not in ("http", "https"):
        # urllib also opens file:// and ftp:// URLs: never read anything but the HTTP(S) object.
        raise VidsnapError(f"the input URL is not an http(s) URL: {str(url)[:80]!r}")
    return str(url)


def _http_error(exc: urllib.error.HTTPError) -> VidsnapError:
    status = exc.code
    if status == 404:
        return NotFound("the object does not exist")
    if status == 403:
        return NotAllowed("access to the object was denied (the presigned input URL may have expired)")
    if status == 412:
        return SourceChanged("the object was replaced while it was being read")
    if status == 416:
        return UndecodableMedia("the object is empty")
    if status in (429, 500, 502, 503, 504):
        return Throttled(f"reading the object failed with HTTP {status}; retry later")
    return VidsnapError(f"reading the object failed with HTTP {status}")


# --------------------------------------------------------------------------------------------------


def process_from(user_url: Any, payload: Any) -> str:
    """The process string: the user URL's ``x-oss-process``, else the access point payload's.

    The payload may be a JSON object (``{"x-oss-process": "video/snapshot,..."}``, also accepted
    as ``process``/``Process``), a JSON string, or a bare process string. Raises
    :class:`BadRequest` when there is none.
    """
    if isinstance(user_url, str) and user_url:
        try:
            query = urlsplit(user_url).query
        except ValueError:  # not a URL: as if it had no query
            query = ""
        value = process_param(parse_qs(query, keep_blank_values=True).get(PROCESS_PARAM, []))
        if value and value.strip():
            return value.strip()
    if isinstance(payload, str | bytes) and payload:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        try:
            doc: Any = load_json(text)
        except ValueError:
            doc = text
        payload = doc
    if isinstance(payload, Mapping):
        for name in (PROCESS_PARAM, "process", "Process"):
            value = payload.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
    elif isinstance(payload, str) and payload.strip().startswith("video/"):
        return payload.strip()
    raise BadRequest(
        f"{PROCESS_PARAM} required: add ?{PROCESS_PARAM}=video/snapshot,... to the request, or set it in "
        "the access point payload",
        param=PROCESS_PARAM,
    )


def answer_object_lambda(
    s3_client: Any,
    *,
    route: str,
    token: str,
    input_url: str,
    user_url: str | None,
    payload: Any,
    settings: Settings,
    request_id: str,
    block_size: int = BLOCK_SIZE,
) -> dict[str, Any]:
    """Render the snapshot the user asked for and answer it through ``WriteGetObjectResponse``.

    Returns ``{"status_code": ..., "code": ..., "bytes": ...}`` (for logging). Never raises for a
    bad request or bad media: those are answered to the user. A failure of
    ``WriteGetObjectResponse`` itself propagates (the function errors; S3 answers 500).
    """
    try:
        rendered = render_input(input_url, process_from(user_url, payload), settings, block_size=block_size)
    except Exception as exc:
        return _answer_error(s3_client, route, token, exc, request_id)
    s3_client.write_get_object_response(
        RequestRoute=route,
        RequestToken=token,
        StatusCode=200,
        Body=rendered.data,
        ContentType=rendered.content_type,
        ContentLength=len(rendered.data),
        Metadata={
            "vidsnap-time-ms": str(report_ms(rendered.time_ms)),
            "vidsnap-width": str(rendered.width),
            "vidsnap-height": str(rendered.height),
        },
    )
    return {"status_code": 200, "code": "OK", "bytes": len(rendered.data)}


def render_input(
    input_url: str, process: str, settings: Settings, *, block_size: int = BLOCK_SIZE
) -> Rendered:
    """The snapshot ``process`` asks for of the object behind the presigned ``input_url``."""
    req = parse_sync(process)
    reader = HTTPRangeReader(input_url, block_size=block_size)  # its first GET tells ETag and size

    def reuse(kept: Source) -> None:
        if isinstance(kept, HTTPRangeReader):  # always, for an identity of a presigned URL
            kept.retarget(input_url)

    name = urlsplit(input_url).path
    return Snapshots(settings.limits).render_opened(name, reader.identity, reader, req, reuse=reuse)


def _answer_error(
    s3_client: Any, route: str, token: str, exc: BaseException, request_id: str
) -> dict[str, Any]:
    """Answer the user's GetObject with the documented error of ``exc`` (status, code, message
    with request id and EC): the one place an Object Lambda failure becomes an answer. Unknown
    exceptions are logged and answered 500."""
    err = as_vidsnap_error(exc)
    if err is not exc:
        log.exception("object lambda request %s failed", request_id, exc_info=exc)
    s3_client.write_get_object_response(
        RequestRoute=route,
        RequestToken=token,
        StatusCode=err.status,
        ErrorCode=err.code,
        ErrorMessage=f"{err.message} (RequestId {request_id}{', EC ' + err.ec if err.ec else ''})",
    )
    return {"status_code": err.status, "code": err.code, "message": err.message}


def answer_object_lambda_event(
    s3_client: Any, event: Mapping[str, Any], settings: Callable[[], Settings], *, request_id: str = ""
) -> dict[str, Any]:
    """Answer a raw Object Lambda event (the handler's glue); never raises for a malformed event.

    ``settings`` loads the configuration (a failure is answered 500 to the user, with the cause in
    the logs). An event without ``outputRoute``/``outputToken`` cannot be answered at all: it is
    logged and reported in the returned dict only.
    """
    ctx = event.get("getObjectContext")
    ctx = ctx if isinstance(ctx, Mapping) else {}
    route, token, input_url = ctx.get("outputRoute"), ctx.get("outputToken"), ctx.get("inputS3Url")
    request_id = request_id or str(event.get("xAmzRequestId") or "")
    if not isinstance(route, str) or not route or not isinstance(token, str) or not token:
        log.error("object lambda event %s without outputRoute/outputToken: cannot answer", request_id)
        return {"status_code": 400, "code": BadRequest.code, "message": "malformed getObjectContext"}
    user = event.get("userRequest")
    configuration = event.get("configuration")
    try:
        loaded = settings()
    except Exception as exc:
        return _answer_error(s3_client, route, token, misconfigured(exc), request_id)
    return answer_object_lambda(
        s3_client,
        route=route,
        token=token,
        input_url=input_url if isinstance(input_url, str) else "",
        user_url=user.get("url") if isinstance(user, Mapping) else None,
        payload=configuration.get("payload") if isinstance(configuration, Mapping) else None,
        settings=loaded,
        request_id=request_id,
    )

"""The HTTP surface (README: HTTP API): one Starlette ASGI app for the function URL (through mangum) and for
the local server (``vidsnap serve`` over a folder).

Routes:

- ``GET /{key}?x-oss-process=video/snapshot,...`` → the image (ETag, Cache-Control, 304 on a
  matching ``If-None-Match``). A result above ``max_inline`` bytes is stored under the results
  prefix and answered with a 302 to a presigned URL, or 413 when no redirect is possible.
- ``POST /{key}?x-oss-async-process`` with a form body ``x-oss-async-process=<process>`` or a JSON
  task → the task goes onto the task queue; ``{"EventId","RequestId","TaskId"}``.
- ``GET /tasks/{TaskId}`` → the task record.
- ``GET /`` (stores that can list videos: the local server) → an HTML page with a time slider per
  video; ``GET /_info/{key}`` → JSON with the video's duration and size for that slider.

Every answer carries ``x-vidsnap-request-id``; every failure is the documented JSON body, never a stack
trace. With a signing secret (README: Configuration), requests that did not pass IAM auth must carry
``x-vidsnap-expires`` and ``x-vidsnap-signature`` (see :func:`sign_url`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from html import escape
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidsnap.aws.clients import Clients
from vidsnap.aws.errors import map_client_error
from vidsnap.aws.settings import Settings
from vidsnap.aws.snapshots import PROCESS_PARAM, Snapshots, process_param, single
from vidsnap.aws.storage import ObjectInfo, S3Store, Store
from vidsnap.core.engine import SyncRequest, check_limits, open_video
from vidsnap.core.errors import (
    BadRequest,
    NotAllowed,
    NotFound,
    TooLarge,
    VidsnapError,
    as_vidsnap_error,
    misconfigured,
)
from vidsnap.core.jsonload import load_json
from vidsnap.core.lang import MAX_BODY_BYTES, parse_sync, parse_task
from vidsnap.core.naming import check_key
from vidsnap.core.plan import CONTENT_TYPES, NotifyTarget, report_ms, resolve_source, task_id

#: The file extension of each answer's content type (an oversize answer is stored under it).
EXTENSIONS = {content_type: ext for ext, content_type in CONTENT_TYPES.items()}

log = logging.getLogger(__name__)

#: Largest image answered inline. A Python function URL answers in buffered mode with at most 6 MB
#: (6,291,456 bytes) of response; binary bodies are base64-encoded (4/3) and headers count too, so
#: 4.4 MB of image is the largest that is safe.
INLINE_LIMIT = 4_400_000
#: Cache policy of a snapshot. The ETag includes the source ETag, so a changed source changes it.
CACHE_CONTROL = "public, max-age=86400"
#: Lifetime of the presigned URL a 302 for an oversize result points at (seconds).
PRESIGN_EXPIRES = 3600

ASYNC_PARAM = "x-oss-async-process"
EXPIRES_PARAM = "x-vidsnap-expires"
SIGNATURE_PARAM = "x-vidsnap-signature"
REQUEST_ID_HEADER = "x-vidsnap-request-id"
#: Largest SQS message body (256 KiB): a larger task is refused with 413, not a failed SendMessage.
SQS_MAX_MESSAGE_BYTES = 262_144
#: Longest task id looked up: DynamoDB refuses partition keys above 2048 bytes (a 500), and ids
#: vidsnap makes are 35 characters.
MAX_TASK_ID_BYTES = 2048
#: What ``GET /tasks/{id}`` shows of a task record (the rest is bookkeeping: leases, TTL, attempts).
PUBLIC_TASK_FIELDS = frozenset(
    {
        "TaskId",
        "Status",
        "Progress",
        "StartTime",
        "EndTime",
        "Code",
        "Message",
        "RequestId",
        "Sources",
        "Outputs",
        "Compositions",
        "Warnings",
        "UserData",
        "Request",
        "OutputsTruncated",
        # A long task run in windows (docs/LONG_TASKS.md, fan-out): how many, and which are done.
        "Windows",
        "WindowsDone",
    }
)

#: ``submit(message_body_json) -> message id``: puts a task message onto the task queue.
Submit = Callable[[str], str]
#: ``presign(key, data, content_type) -> url``: stores an oversize result and returns a URL to it.
Presign = Callable[[str, bytes, str], str]


class TaskRecords(Protocol):
    """The task table (``taskstore.TaskStore``)."""

    def get(self, task_id: str) -> dict[str, Any] | None: ...


class NotConfigured(VidsnapError):
    """A route whose backend is not configured here (no task queue, no task table): 501."""

    status = 501
    code = "NotImplemented"


# --------------------------------------------------------------------------------------------------
# URL signing (README: Configuration)


def string_to_sign(path: str, process: str, expires: int) -> bytes:
    """The signed text (UTF-8): the resource path, the process string and the expiry, one per line.

    ``path`` is the *decoded* resource: ``"/" + key`` with the object key exactly as stored (no
    percent-encoding, no normalisation: ``/videos/a?b.mp4`` and ``/videos/a%3Fb.mp4`` are two keys
    and two different texts), ``/tasks/{TaskId}`` for a task lookup. ``process`` is the decoded
    ``x-oss-process`` value (empty when there is none; for a POST, the request body text).
    ``expires`` is a Unix time in seconds, in decimal. A path with a line break cannot be signed
    (it would make the text ambiguous): :func:`check_signature` refuses it.
    """
    return f"{path}\n{process}\n{expires}".encode()


def sign(secret: str, path: str, process: str, expires: int) -> str:
    """The hex HMAC-SHA256 signature of a request (see :func:`string_to_sign`)."""
    return hmac.new(secret.encode(), string_to_sign(path, process, expires), hashlib.sha256).hexdigest()


def sign_url(secret: str, path: str, process: str, expires: int) -> str:
    """A signed relative URL: ``path?x-oss-process=...&x-vidsnap-expires=...&x-vidsnap-signature=...``.

    ``path`` is the decoded object path with its leading ``/`` (``/videos/clip.mp4``, or
    ``/videos/a?b #1.mp4`` for a key with those characters); the URL carries it percent-encoded
    (UTF-8; every byte but letters, digits, ``-._~`` and ``/`` escaped, so ``?``, ``#``, ``%``,
    ``\\`` and spaces are part of the key, not URL syntax). ``expires`` is a Unix time in
    seconds. An empty ``process`` signs a URL without ``x-oss-process`` (task lookups). For a
    POST, sign the request body text as ``process`` and append the query yourself.
    """
    query: dict[str, str] = {}
    if process:
        query[PROCESS_PARAM] = process
    query[EXPIRES_PARAM] = str(expires)
    query[SIGNATURE_PARAM] = sign(secret, path, process, expires)
    return f"{quote(path, safe='/')}?{urlencode(query, safe='/,')}"


def check_signature(
    secret: str, path: str, process: str, query: Mapping[str, str], *, now: float | None = None
) -> None:
    """Raise :class:`NotAllowed` unless ``query`` carries a valid, unexpired signature of ``path``.

    ``path`` is the decoded resource the request is answered from (``"/" + key``), never the URL's
    own spelling of it: one signature serves exactly one object key.
    """
    expires_text = query.get(EXPIRES_PARAM)
    signature = query.get(SIGNATURE_PARAM)
    if not expires_text or not signature:
        raise NotAllowed(f"this URL must be signed ({EXPIRES_PARAM}, {SIGNATURE_PARAM})")
    try:
        expires = int(expires_text)
    except ValueError:
        raise NotAllowed(f"{EXPIRES_PARAM} {expires_text[:40]!r} is not a Unix time") from None
    if expires < (time.time() if now is None else now):
        raise NotAllowed("the signed URL has expired")
    if "\n" in path or "\r" in path:
        raise NotAllowed("a path with a line break cannot be signed")
    # compare_digest refuses non-ASCII text (TypeError): compare bytes, so junk is a mismatch.
    expected = sign(secret, path, process, expires).encode()
    if not hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace")):
        raise NotAllowed("the URL signature does not match")


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot_etag(info: ObjectInfo, key: str, req: SyncRequest) -> str:
    """A strong ETag for a snapshot: the source identity (key, ETag, version) and the normalised
    request. The same request on the same object version always has the same ETag."""
    material = json.dumps(
        {"key": key, "etag": info.etag, "version": info.version, "size": info.size, "req": asdict(req)},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return '"' + hashlib.sha256(material.encode()).hexdigest()[:32] + '"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = [c.strip() for c in header.split(",")]
    return any(c.removeprefix("W/") == etag for c in candidates)


def _request_id(scope: Scope) -> str:
    """The request's id: the Lambda request id behind mangum, else a new UUID (kept in the scope)."""
    rid = scope.get("vidsnap.request_id")
    if isinstance(rid, str):
        return rid
    context = scope.get("aws.context")
    rid = getattr(context, "aws_request_id", None) if context is not None else None
    if not isinstance(rid, str) or not rid:
        rid = str(uuid.uuid4())
    scope["vidsnap.request_id"] = rid
    return rid


def _iam_authenticated(request: Request) -> bool:
    """True when the function URL authenticated the caller with IAM (SigV4)."""
    event = request.scope.get("aws.event")
    if not isinstance(event, Mapping):
        return False
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return bool(isinstance(authorizer, Mapping) and authorizer.get("iam"))


#: Seconds a client should wait before retrying a transient failure (503): S3 throttling and
#: network faults clear within seconds, and the reader already retried for about one.
RETRY_AFTER_S = 1


def _error_answer(exc: BaseException, request_id: str) -> tuple[VidsnapError, dict[str, str], bytes]:
    """The documented answer of an exception: the error, its headers (the request id, and
    ``Retry-After`` on a transient failure) and its JSON body. Unknown exceptions are logged and
    become a bare 500; failures of ours (5xx) are logged as warnings."""
    err = as_vidsnap_error(exc)
    if err is not exc:
        log.exception("internal error (request %s)", request_id, exc_info=exc)
    elif err.status >= 500:
        log.warning("request %s failed: %s %s", request_id, err.code, err.message)
    headers = {REQUEST_ID_HEADER: request_id}
    if err.transient:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    body = json.dumps(err.to_dict(request_id), ensure_ascii=False, separators=(",", ":")).encode()
    return err, headers, body


def error_response(exc: BaseException, request_id: str) -> Response:
    """The documented answer for an exception; unknown exceptions are logged and become a bare 500."""
    err, headers, body = _error_answer(exc, request_id)
    return Response(body, status_code=err.status, headers=headers, media_type="application/json")


class MethodNotAllowed(BadRequest):
    """A method the route does not answer (405)."""

    status = 405


class _Answers:
    """ASGI middleware, the one place where failures become answers.

    Every answer carries ``x-vidsnap-request-id``; every exception a route raises becomes its
    documented JSON answer (:func:`error_response`), never a stack trace.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        started = False

        async def stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception as exc:  # the edge: nothing escapes as a stack trace
            if started:  # too late for another answer: the server ends the one begun
                raise
            await error_response(exc, rid)(scope, receive, stamped)


async def _no_route(request: Request, exc: Exception) -> Response:  # noqa: ARG001
    """Starlette's 404 for a path no route matches, answered like every other failure."""
    raise NotFound("no such route")


async def _no_method(request: Request, exc: Exception) -> Response:  # noqa: ARG001
    """Starlette's 405 for a method the route does not answer, answered like every other failure."""
    raise MethodNotAllowed("method not allowed")


# --------------------------------------------------------------------------------------------------
# the app


class _Routes:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        submit: Submit | None,
        tasks: TaskRecords | None,
        presign: Presign | None,
        max_inline: int | None,
        check_notify: Callable[[NotifyTarget], None] | None = None,
        signing_secret: Callable[[], str | None] | None = None,
        index_page: Callable[[], str] | None = None,
    ) -> None:
        self.settings = settings
        self.check_notify = check_notify
        self.store = store
        self.submit = submit
        self.tasks = tasks
        self.presign = presign
        self.max_inline = max_inline
        # A callable: a secret kept in SSM / Secrets Manager is fetched on the first request that
        # needs it (vidsnap.aws.secret), not when the app is built.
        static = settings.signing_secret
        self.secret: Callable[[], str | None] = signing_secret or (lambda: static)
        self.index_page = index_page
        self.limits = settings.limits
        prefix = settings.results_prefix
        self.results_prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.snapshots = Snapshots(self.limits)

    # -- security --------------------------------------------------------------------------------

    def authorise(self, request: Request, process: str, path: str) -> None:
        """Check the signature of ``path``, the decoded resource (``"/" + key``) this request reads.

        Not ``request.url.path``: Starlette re-escapes ``?``, ``#`` and ``\\`` there, so keys with
        them could not be signed as documented and ``a?b`` and the key ``a%3Fb`` shared one text.
        """
        if _iam_authenticated(request):
            return
        secret = self.secret()
        if secret:
            check_signature(secret, path, process, request.query_params)

    # -- GET /{key} --------------------------------------------------------------------------------

    async def get_object(self, request: Request) -> Response:
        key = check_key(request.path_params["key"])
        process = process_param(request.query_params.getlist(PROCESS_PARAM))
        self.authorise(request, process or "", "/" + key)
        if process is None:
            raise BadRequest(f"{PROCESS_PARAM} is required: ?{PROCESS_PARAM}=video/snapshot,t_<ms>,...")
        req = parse_sync(process)
        info = await run_in_threadpool(self.store.info, key)
        etag = snapshot_etag(info, key, req)
        cache = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=cache)
        rendered = await run_in_threadpool(self.snapshots.of_stored, self.store, info, req)
        headers = {
            **cache,
            "x-vidsnap-time-ms": str(report_ms(rendered.time_ms)),
            "x-vidsnap-width": str(rendered.width),
            "x-vidsnap-height": str(rendered.height),
        }
        if self.max_inline is not None and len(rendered.data) > self.max_inline:
            if self.presign is None:
                raise TooLarge(
                    f"the image is {len(rendered.data)} bytes, above the {self.max_inline}-byte limit of a "
                    "direct answer, and no results bucket is configured; ask for a smaller w/h or f_jpg"
                )
            ext = EXTENSIONS[rendered.content_type]
            result_key = f"{self.results_prefix}{etag.strip(chr(34))}.{ext}"
            url = await run_in_threadpool(self.presign, result_key, rendered.data, rendered.content_type)
            headers["Cache-Control"] = "no-store"
            return RedirectResponse(url, status_code=302, headers=headers)
        return Response(rendered.data, media_type=rendered.content_type, headers=headers)

    # -- POST /{key} -------------------------------------------------------------------------------

    async def post_object(self, request: Request) -> Response:
        key = check_key(request.path_params["key"])
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request body is not UTF-8 text") from None
        self.authorise(request, text, "/" + key)
        if ASYNC_PARAM not in request.query_params:
            raise BadRequest(
                f"POST needs ?{ASYNC_PARAM} (a form body {ASYNC_PARAM}=<process> or a JSON task)"
            )
        if self.submit is None:
            raise NotConfigured("asynchronous tasks are not configured here (no TASK_QUEUE_URL)")
        message = self._task_message(key, text, request.headers.get("content-type", ""))
        # Parse the message exactly as the worker will, so the TaskId is the one it computes.
        task = parse_task(message)
        source = resolve_source(task, self.settings.source_bucket)
        if source.key != key:
            raise BadRequest(
                f"the task's source {source.uri} is not the object in the URL ({key}); "
                "leave it out or make them equal",
                param="source",
            )
        source_bucket = self.settings.source_bucket
        if source_bucket and source.bucket != source_bucket:
            raise NotAllowed(f"sources are read from s3://{source_bucket} only, not {source.uri}")
        check_limits(task, self.limits)
        allowed = self.settings.allowed_output_buckets
        for job in task.jobs:  # the worker checks again; refusing here keeps junk off the queue
            for target in job.targets:
                if target.bucket is not None and target.bucket not in allowed:
                    raise NotAllowed(f"saveas: bucket {target.bucket!r} is not an allowed output bucket")
        if task.notify is not None and self.check_notify is not None:
            await run_in_threadpool(self.check_notify, task.notify)
        info = await run_in_threadpool(self.store.info, key)
        tid = task_id(source, info.etag, task.with_source(source))
        event_id = await run_in_threadpool(self.submit, message)
        return JSONResponse({"EventId": event_id, "RequestId": _request_id(request.scope), "TaskId": tid})

    def _task_message(self, key: str, text: str, content_type: str) -> str:
        """The queue message for a POST body: a JSON task as is (its source defaulting to the URL's
        object), or an OSS-style JSON task ``{"Bucket","Key","Process","UserData"?}`` for a form."""
        bucket = self.settings.source_bucket
        stripped = text.strip()
        if stripped.startswith("{") or "json" in content_type:
            if len(stripped) > MAX_BODY_BYTES:  # what parse_task refuses anyway: refuse it unparsed
                raise BadRequest(
                    f"body: {len(stripped)} characters; valid: at most {MAX_BODY_BYTES}", param="body"
                )
            try:
                doc = load_json(stripped)  # bounded nesting: 200 KB of [[[…]]] is a 400, not a 500
            except ValueError as exc:
                raise BadRequest(f"the JSON task is not valid JSON: {exc}", param="body") from None
            if not isinstance(doc, dict):
                raise BadRequest("the JSON task must be an object", param="body")
            if not ({"Sources", "Input", "Key"} & doc.keys()) and "Process" in doc:
                doc = {**doc, "Key": key}  # an OSS JSON task may leave its source to the URL
                if bucket:
                    doc.setdefault("Bucket", bucket)
            return json.dumps(doc, ensure_ascii=False)  # escaping would grow it up to 6x
        pairs = parse_qsl(stripped, keep_blank_values=True)
        fields = dict(pairs)
        values = [v for k, v in pairs if k == ASYNC_PARAM]
        process = (single(values, ASYNC_PARAM) or "").strip()
        if not process:
            raise BadRequest(f"the form body needs {ASYNC_PARAM}=<process>", param=ASYNC_PARAM)
        message: dict[str, Any] = {"Key": key, "Process": process}
        if bucket:
            message["Bucket"] = bucket
        if fields.get("UserData"):
            message["UserData"] = fields["UserData"]
        return json.dumps(message, ensure_ascii=False)

    # -- GET /tasks/{id} ---------------------------------------------------------------------------

    async def get_task(self, request: Request) -> Response:
        if PROCESS_PARAM in request.query_params:  # an object that happens to live under tasks/
            request.path_params["key"] = "tasks/" + request.path_params["task_id"]
            return await self.get_object(request)
        tid = request.path_params["task_id"]
        self.authorise(request, "", "/tasks/" + tid)
        if self.tasks is None:
            raise NotConfigured("task records are not configured here (no TASK_TABLE)")
        if len(tid.encode("utf-8", "replace")) > MAX_TASK_ID_BYTES:  # DynamoDB would refuse the key
            raise NotFound(f"no task {tid[:80]!r}")
        record = await run_in_threadpool(self.tasks.get, tid)
        if record is None:
            raise NotFound(f"no task {tid[:80]!r}")
        # TaskStore gives records as plain JSON values (DynamoDB's Decimals already converted).
        return JSONResponse({k: v for k, v in record.items() if k in PUBLIC_TASK_FIELDS})

    # -- local pages -------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        list_videos = getattr(self.store, "list_videos", None)
        if not callable(list_videos) or self.index_page is None:
            raise NotFound("no index here: this store cannot list videos")
        self.authorise(request, "", "/")
        keys: list[str] = await run_in_threadpool(list_videos)
        page = self.index_page()
        data = (
            json.dumps(sorted(keys)).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        )
        page = page.replace("/*VIDEOS*/[]", data).replace("{{count}}", escape(str(len(keys))))
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def info(self, request: Request) -> Response:
        key = check_key(request.path_params["key"])
        self.authorise(request, "", "/_info/" + key)
        return JSONResponse(await run_in_threadpool(self._info, key))

    def _info(self, key: str) -> dict[str, Any]:
        obj = self.store.info(key)
        with self.store.open(key, info=obj) as source, open_video(source, self.limits) as video:
            return {
                "Key": key,
                "Size": obj.size,
                "DurationMs": report_ms(video.duration_ms),
                "Width": video.display_width,
                "Height": video.display_height,
                "Rotation": video.rotation,
                "FrameIntervalMs": (
                    report_ms(video.frame_interval_ms) if video.frame_interval_ms is not None else None
                ),
            }


def create_app(
    *,
    settings: Settings,
    store: Store,
    submit: Submit | None = None,
    tasks: TaskRecords | None = None,
    presign: Presign | None = None,
    max_inline: int | None = None,
    check_notify: Callable[[NotifyTarget], None] | None = None,
    signing_secret: Callable[[], str | None] | None = None,
    index_page: Callable[[], str] | None = None,
) -> Starlette:
    """Build the ASGI app.

    ``store`` reads sources (S3Store in Lambda, LocalStore locally). ``submit`` enqueues a task
    message and returns its message id; ``tasks`` looks task records up; ``presign`` stores an
    oversize result and returns a URL to it. ``max_inline`` is the largest image answered directly
    (None: no limit, the local server; Lambda: :data:`INLINE_LIMIT`): a larger one is redirected
    through ``presign``, or refused with 413 without it. ``check_notify`` refuses (``NotAllowed``) a
    POSTed task's notify target off the allow-lists before it is queued (the worker checks again).
    ``signing_secret`` returns the HMAC secret for requests without IAM authentication (None: no
    signing), called per such request (:class:`vidsnap.aws.secret.SigningSecret` fetches it once);
    without it, ``settings.signing_secret`` is used. ``index_page`` returns the HTML of ``/`` (the
    local server's page, which is not shipped to Lambda); without it ``/`` is 404.
    """
    r = _Routes(
        settings=settings,
        store=store,
        submit=submit,
        tasks=tasks,
        presign=presign,
        max_inline=max_inline,
        check_notify=check_notify,
        signing_secret=signing_secret,
        index_page=index_page,
    )

    routes = [
        Route("/", r.index, methods=["GET"]),
        Route("/_info/{key:path}", r.info, methods=["GET"]),
        Route("/tasks/{task_id}", r.get_task, methods=["GET"]),
        Route("/{key:path}", r.get_object, methods=["GET"]),
        Route("/{key:path}", r.post_object, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Answers)],
        exception_handlers={404: _no_route, 405: _no_method},
    )


# --------------------------------------------------------------------------------------------------
# AWS wiring helpers (used by functions/object_get)


def s3_presigner(client: Any, bucket: str, *, expires: int = PRESIGN_EXPIRES) -> Presign:
    """A :data:`Presign` that puts the result into ``bucket`` and presigns a GET for it."""

    def presign(key: str, data: bytes, content_type: str) -> str:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            raise map_client_error(exc, "could not store the oversize result") from exc
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
        return url

    return presign


def sqs_submitter(client: Any, queue_url: str) -> Submit:
    """A :data:`Submit` that sends the task message to ``queue_url``."""

    def submit(body: str) -> str:
        size = len(body.encode("utf-8"))
        if size > SQS_MAX_MESSAGE_BYTES:
            raise TooLarge(
                f"the task is {size} bytes as a queue message; valid: at most {SQS_MAX_MESSAGE_BYTES}"
            )
        try:
            reply = client.send_message(QueueUrl=queue_url, MessageBody=body)
        except Exception as exc:
            raise map_client_error(exc, "could not enqueue the task") from exc
        return str(reply["MessageId"])

    return submit


def lambda_app(settings: Settings, clients: Clients) -> Starlette:
    """The app as the object-get function runs it: S3 sources, SQS tasks, DynamoDB records, and
    oversize results redirected through the output bucket (413 without one)."""
    from vidsnap.aws.notify import Notifier
    from vidsnap.aws.secret import SigningSecret
    from vidsnap.aws.taskstore import TaskStore

    if not settings.source_bucket:
        raise ValueError("SOURCE_BUCKET is required by the object-get function")
    return create_app(
        settings=settings,
        store=S3Store(clients.s3, settings.source_bucket),
        submit=sqs_submitter(clients.sqs, settings.task_queue_url) if settings.task_queue_url else None,
        tasks=TaskStore(clients, settings.task_table) if settings.task_table else None,
        presign=s3_presigner(clients.s3, settings.output_bucket) if settings.output_bucket else None,
        max_inline=INLINE_LIMIT,
        check_notify=Notifier(clients, settings).check,
        signing_secret=SigningSecret.from_settings(settings, clients),
    )


class FunctionURL:
    """The object-get function's answer to a function URL request (payload 2.0): the app behind
    mangum; never raises.

    ``build`` makes the app on the first request; a failure to (a missing or bad variable) is loud
    in the logs, a documented 500 to the caller, and tried again on the next request. A malformed
    event is a 400 (:func:`function_url_problem`), a HEAD answer has headers only.
    """

    def __init__(self, build: Callable[[], Starlette]) -> None:
        self.build = build
        self.app: Callable[[Any, Any], dict[str, Any]] | None = None

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        """The answer to ``event`` (a function URL request) in the Lambda ``context``."""
        request_id = str(getattr(context, "aws_request_id", None) or "")
        if self.app is None:
            try:
                from mangum import Mangum  # ~150 ms of imports the local server does without

                self.app = Mangum(self.build(), lifespan="off")
            except Exception as exc:
                return function_url_error(misconfigured(exc), request_id)
        problem = function_url_problem(event)
        if problem is not None:
            return function_url_error(BadRequest(problem), request_id)
        try:
            response = self.app(event, context)
        except Exception as exc:  # the app answers its own failures; this is mangum's
            return function_url_error(exc, request_id)
        if event["requestContext"]["http"]["method"].upper() == "HEAD":  # headers only
            response.update(body="", isBase64Encoded=False)
        return response


def function_url_problem(event: Any) -> str | None:
    """Why ``event`` is not a function URL request (payload 2.0) the app can answer, or None.

    Mangum indexes the event without checks (a missing method is a ``KeyError``, a body that is not
    base64 a ``binascii.Error``): the handler answers these with 400 instead of crashing.
    """
    if not isinstance(event, Mapping):
        return f"the event is a {type(event).__name__}, not a function URL request"
    if event.get("version") != "2.0":
        return "not a function URL request (payload format 2.0) or an S3 Object Lambda event"
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    if not isinstance(http, Mapping):
        return "the event has no requestContext.http"
    for name in ("method", "path", "sourceIp"):
        if not isinstance(http.get(name), str):
            return f"the event has no requestContext.http.{name}"
    headers = event.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return "the event's headers are not a map of strings"
    lowered = {k.lower(): v for k, v in headers.items()}
    host = lowered.get("host", "")
    port = host.partition(":")[2] if ":" in host else lowered.get("x-forwarded-port", "80")
    if host.count(":") > 1 or not port.isascii() or not port.isdigit():  # mangum does int(port)
        return "the Host / X-Forwarded-Port headers do not name a port"
    if not isinstance(event.get("rawQueryString", ""), str):
        return "the event's rawQueryString is not a string"
    cookies = event.get("cookies")
    if cookies is not None and not (isinstance(cookies, list) and all(isinstance(c, str) for c in cookies)):
        return "the event's cookies are not a list of strings"
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        return "the event's body is not a string"
    if body and event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True)
        except ValueError:
            return "the event's body is marked isBase64Encoded but is not base64"
    return None


def function_url_error(exc: BaseException, request_id: str) -> dict[str, Any]:
    """A function URL answer (payload 2.0) with the documented body, for failures outside the app
    (a malformed event, a misconfigured function); unknown exceptions are logged, answered 500."""
    err, headers, body = _error_answer(exc, request_id)
    return {
        "statusCode": err.status,
        "headers": {"content-type": "application/json", **headers},
        "body": body.decode(),
        "isBase64Encoded": False,
    }

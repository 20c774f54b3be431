"""AWS SDK failures as :class:`~vidsnap.core.errors.VidsnapError` (README: HTTP API, errors).

:func:`map_client_error` is the one place botocore (and raw network) failures become vidsnap errors,
for every adapter that talks to AWS: the S3 reader, the sinks and stores, the notifier, the task
records and the HTTP app. :func:`vidsnap.aws.clients.mapped_errors` applies it to a block of calls.

This module imports botocore, which is why :mod:`vidsnap.aws.clients` imports it only on first use.
"""

from __future__ import annotations

import builtins
import http.client
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as URLLib3HTTPError

from vidsnap.core.errors import (
    InternalError,
    NotAllowed,
    NotFound,
    SourceChanged,
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
#: Network-level failures that a later retry may not see: no connection, a reset or timed-out
#: request, and the faults of a body read (botocore retries requests, never the reading of a
#: streamed body): cut (``ResponseStreamingError``), shorter than its Content-Length
#: (``IncompleteReadError``), or not matching the checksum S3 sent with it
#: (``FlexibleChecksumError``; S3 sends one when a range covers the whole object).
_TRANSIENT_BOTOCORE = (
    ConnectionError,  # botocore's: EndpointConnectionError, ConnectTimeoutError, proxy errors
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    ResponseStreamingError,
    HTTPClientError,
    IncompleteReadError,
    FlexibleChecksumError,
    ChecksumError,
)
#: The same faults when they escape botocore unwrapped (from urllib3, http.client or the socket).
#: Not every OSError: a full disk or a permission error does not heal by retrying.
TRANSIENT_RAW = (URLLib3HTTPError, http.client.HTTPException, builtins.ConnectionError, TimeoutError)


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
    errors / faults of a body read (cut, short, checksum mismatch) :class:`Throttled` (transient),
    a failed ``If-Match`` (412) :class:`SourceChanged` (the only sign of a changed object),
    anything else :class:`InternalError`.
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
    if isinstance(exc, (*_TRANSIENT_BOTOCORE, *TRANSIENT_RAW)):
        return Throttled(f"{where}network error, retry later ({type(exc).__name__})")
    if isinstance(exc, BotoCoreError):
        return InternalError(f"{where}AWS client error ({type(exc).__name__})")
    return as_vidsnap_error(exc)

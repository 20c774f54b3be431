"""Lazily created, cached boto3 clients (never created at import time).

Creating a boto3 client costs tens of milliseconds and reads credentials; doing it at import would
slow every cold start, including the paths that never touch that service, and would break tests
that start moto after importing vidsnap. :class:`Clients` creates each client on first attribute
access and keeps it. boto3 itself honours ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (moto's
server, LocalStack), so nothing here special-cases endpoints.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing boto3 costs ~120 ms: done when the first client is made
    import boto3
    from botocore.config import Config


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Raise botocore failures inside the block as :class:`~vidsnap.core.errors.VidsnapError`.

    See :func:`vidsnap.aws.errors.map_client_error` (``what`` names the resource in the message).
    botocore is imported on the first call, not with the module: a local ``vidsnap run`` writes
    through a local sink and builds its manifest with :mod:`vidsnap.aws.notify` without it (~9 ms).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from vidsnap.aws.errors import map_client_error

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise map_client_error(exc, what) from exc


#: Standard retry mode (exponential backoff with jitter, retries throttling and transient errors);
#: adaptive mode adds client-side rate limiting that only pays off for sustained throttling of one
#: client, and it can stall a Lambda invocation waiting for tokens.
_RETRIES = {"mode": "standard", "max_attempts": 5}
#: S3: fewer attempts per call, because botocore retries only the request (status, connection,
#: timeout before the headers), never the reading of a streamed body: range reads are retried
#: again, body included, by the reader (:class:`vidsnap.core.blockio.RetryPolicy`, 4 attempts), and
#: 3 x 4 attempts with backoff keep a synchronous snapshot within its time budget (botocore waits
#: up to 1 s, then 2 s, before its retries of a throttled call). 503 SlowDown, 500, resets and
#: timeouts are retried by both layers.
_S3_RETRIES = {"mode": "standard", "max_attempts": 3}


@functools.cache
def s3_config() -> Config:
    """The S3 clients' configuration (built on first use: botocore is imported then).

    Range reads are small and many: short connect timeout, moderate read timeout, and a pool large
    enough for the engine's threads. Signature v4 is required for KMS-encrypted objects and
    presigned URLs in every region.
    """
    from botocore.config import Config

    return Config(
        signature_version="s3v4",
        retries=_S3_RETRIES,  # type: ignore[arg-type]
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=16,
        # Validate the checksum S3 sends when a range covers the whole object (the only ranged
        # answers that carry one): it catches corrupted bytes. A mismatch (a short or damaged body)
        # raises FlexibleChecksumError, which the reader retries as a network fault; it never means
        # the object changed (only If-Match's 412 does).
        response_checksum_validation="when_supported",
    )


@functools.cache
def default_config() -> Config:
    """The configuration of every other client (built on first use, like :func:`s3_config`)."""
    from botocore.config import Config

    return Config(retries=_RETRIES, connect_timeout=5, read_timeout=20)  # type: ignore[arg-type]


class Clients:
    """A lazily populated set of boto3 clients sharing one session.

    ``s3``, ``sns``, ``sqs``, ``ssm``, ``secretsmanager``, ``sts`` and ``dynamodb_client`` are
    low-level clients; ``dynamodb`` is the DynamoDB *resource* (it converts items to Python types
    for us). ``account_id`` is resolved lazily through STS unless given (a Lambda handler can pass
    the account from its context ARN with :func:`account_from_arn` to save the call).
    """

    def __init__(
        self,
        session: boto3.Session | None = None,
        *,
        region: str | None = None,
        account_id: str | None = None,
    ) -> None:
        self._session = session
        self._region = region
        self._account_id = account_id
        # cached_property is not thread-safe on its own; the engine may share Clients across threads.
        self._lock = threading.RLock()

    @property
    def session(self) -> boto3.Session:
        """The boto3 session (created on first use)."""
        with self._lock:
            if self._session is None:
                import boto3

                self._session = boto3.Session(region_name=self._region) if self._region else boto3.Session()
            return self._session

    @property
    def region(self) -> str:
        """The region clients talk to: explicit, then the session's, then ``AWS_REGION``, else us-east-1."""
        return (
            self._region
            or self.session.region_name
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    @property
    def account_id(self) -> str:
        """The AWS account id (from the constructor, else STS ``GetCallerIdentity`` once)."""
        with self._lock:
            if self._account_id is None:
                self._account_id = str(self.sts.get_caller_identity()["Account"])
            return self._account_id

    def _client(self, service: str, config: Config | None = None) -> Any:
        # The service name is a plain str here; typed stubs only accept literal names.
        session: Any = self.session
        with self._lock:
            config = config or default_config()
            return session.client(service, region_name=self.region, config=config)

    @cached_property
    def s3(self) -> Any:
        """S3 client: signature v4, standard retries, short timeouts."""
        return self._client("s3", s3_config())

    @cached_property
    def sns(self) -> Any:
        """SNS client."""
        return self._client("sns")

    @cached_property
    def sqs(self) -> Any:
        """SQS client."""
        return self._client("sqs")

    @cached_property
    def ssm(self) -> Any:
        """SSM client (the signing secret's parameter, :mod:`vidsnap.aws.secret`)."""
        return self._client("ssm")

    @cached_property
    def secretsmanager(self) -> Any:
        """Secrets Manager client (the signing secret, :mod:`vidsnap.aws.secret`)."""
        return self._client("secretsmanager")

    @cached_property
    def sts(self) -> Any:
        """STS client (account id lookup)."""
        return self._client("sts")

    @cached_property
    def stepfunctions(self) -> Any:
        """Step Functions client (starting the executions of long tasks, :mod:`vidsnap.aws.fanout`)."""
        return self._client("stepfunctions")

    @cached_property
    def dynamodb_client(self) -> Any:
        """Low-level DynamoDB client."""
        return self._client("dynamodb")

    @cached_property
    def dynamodb(self) -> Any:
        """DynamoDB service resource (``.Table(name)``)."""
        with self._lock:
            config = default_config()
            return self.session.resource("dynamodb", region_name=self.region, config=config)


def account_from_arn(arn: str | None) -> str | None:
    """The account id field of an ARN (e.g. a Lambda context's ``invoked_function_arn``), or None."""
    if not arn:
        return None
    parts = arn.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[4].isdigit():
        return parts[4]
    return None


def partition_for(region: str) -> str:
    """The ARN partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def topic_arn(name: str, *, region: str, account_id: str) -> str:
    """The ARN of SNS topic ``name`` in ``account_id`` / ``region``."""
    return f"arn:{partition_for(region)}:sns:{region}:{account_id}:{name}"

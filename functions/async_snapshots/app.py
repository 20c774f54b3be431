"""Asynchronous snapshots: S3 uploads (direct, S3->SQS, SNS->SQS, EventBridge) and SQS task messages.

Glue only. SQS batches report partial failures: a record whose handling raises (a transient error:
throttling, timeouts) is listed in ``batchItemFailures`` and retried, then dead-lettered; permanent
failures (bad request, undecodable media) end the task as Failed inside the worker, with its
notification, and are not retried. An all-failed batch is still answered with the list (never an
exception), so the records that failed are the only ones retried.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vidsnap.aws.clients import Clients, account_from_arn
from vidsnap.aws.events import uploads_from_event
from vidsnap.aws.observe import MetricUnit, logger, metrics
from vidsnap.aws.settings import ASYNC_VARIABLES, get_settings
from vidsnap.aws.worker import OutOfTime, Worker
from vidsnap.core.lang import parse_process

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@functools.cache
def _worker_for(account: str | None) -> Worker:
    """One worker (settings, clients) per cold start; ``account``: the function's own account."""
    # The upload rules are parsed now: a typo fails the cold start loudly, not each upload later.
    return Worker(get_settings(ASYNC_VARIABLES, parse_rule=parse_process), Clients(account_id=account))


def _get_worker(context: Any) -> Worker:
    return _worker_for(account_from_arn(getattr(context, "invoked_function_arn", None)))


def _time_left(context: Any) -> Callable[[], float] | None:
    """Seconds the invocation has left: task leases end with it, so a retry after a timeout can
    take the task over."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return (lambda: remaining() / 1000) if callable(remaining) else None


def _record(record: SQSRecord, lambda_context: Any) -> None:
    """One SQS message: a task or upload notification(s). Raises only transient errors."""
    message_id = record.raw_event.get("messageId")
    request_id = getattr(lambda_context, "aws_request_id", None) or str(message_id)
    body = record.raw_event.get("body")
    if not isinstance(body, str):  # not a message SQS can deliver: poison, never retried
        logger.error("dropping an SQS record without a text body", extra={"message_id": message_id})
        return
    worker = _get_worker(lambda_context)
    try:
        results = worker.handle_message(body, request_id, time_left=_time_left(lambda_context))
    except OutOfTime:  # progress saved: resume in seconds, not at the visibility timeout
        worker.hand_back(record.event_source_arn, record.receipt_handle)
        raise
    metrics.add_metric(name="MessagesHandled", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TasksHandled", unit=MetricUnit.Count, value=len(results))


def _is_sqs_record(record: Any) -> bool:
    """An SQS delivery: failures are reported by ``messageId``, so it must have one."""
    message_id = record.get("messageId") if isinstance(record, Mapping) else None
    return isinstance(message_id, str) and bool(message_id) and record.get("eventSource") == "aws:sqs"


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An SQS batch (partial failures), or an S3 / EventBridge / SNS upload event."""
    if not isinstance(event, Mapping):
        logger.warning("ignoring an event that is not a JSON object", extra={"type": type(event).__name__})
        return {"uploads": 0}
    records = event.get("Records")
    if isinstance(records, list) and records and all(_is_sqs_record(r) for r in records):
        response = dict(process_partial_response(event, _record, processor, context))
        failures = response.get("batchItemFailures")
        failed = len(failures) if isinstance(failures, list) else 0
        metrics.add_metric(name="MessagesRetried", unit=MetricUnit.Count, value=failed)
        return response
    uploads = uploads_from_event(event)
    worker, request_id = _get_worker(context), getattr(context, "aws_request_id", None) or ""
    for upload in uploads:  # a transient failure raises: Lambda retries the asynchronous event
        worker.handle_upload(upload, request_id, time_left=_time_left(context))
    metrics.add_metric(name="Uploads", unit=MetricUnit.Count, value=len(uploads))
    logger.info("direct event handled", extra={"uploads": len(uploads)})
    return {"uploads": len(uploads)}

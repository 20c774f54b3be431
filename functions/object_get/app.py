"""Synchronous snapshots: the function URL (payload 2.0, through mangum) and S3 Object Lambda.

Glue only: the app and the clients are built once per cold start; all logic is in the layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum

from vidsnap.aws.clients import Clients
from vidsnap.aws.httpapp import function_url_error, function_url_problem, lambda_app
from vidsnap.aws.objectlambda import answer_object_lambda_event
from vidsnap.aws.observe import emit_snapshot_metrics, logger
from vidsnap.aws.settings import get_settings
from vidsnap.core.errors import BadRequest, misconfigured

# The layer logs through the standard `logging` module: give it powertools' JSON format, so every
# line carries the Lambda request id.
copy_config_to_registered_loggers(source_logger=logger)
_clients = Clients()
_http: Mangum | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a function URL request, or an S3 Object Lambda ``GetObject``; never raises."""
    global _http  # noqa: PLW0603 - one ASGI app per cold start
    request_id = str(getattr(context, "aws_request_id", None) or "")
    if isinstance(event, Mapping) and "getObjectContext" in event:
        return answer_object_lambda_event(_clients.s3, event, get_settings, request_id=request_id)
    try:
        settings = get_settings()
        if _http is None:
            _http = Mangum(lambda_app(settings, _clients), lifespan="off")
    except Exception as exc:  # a missing or bad variable: loud in the logs, a documented 500 to the caller
        return function_url_error(misconfigured(exc), request_id)
    problem = function_url_problem(event)
    if problem is not None:
        return function_url_error(BadRequest(problem), request_id)
    try:
        response: dict[str, Any] = _http(event, context)
    except Exception as exc:  # the app answers its own failures; this is mangum's
        return function_url_error(exc, request_id)
    if event["requestContext"]["http"]["method"].upper() == "HEAD":  # headers only
        response.update(body="", isBase64Encoded=False)
    emit_snapshot_metrics(response.get("headers") or {})
    return response

"""Synchronous snapshots: the function URL (payload 2.0, through mangum) and S3 Object Lambda.

Glue only: the app and the clients are built once per cold start; all logic is in the layer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum

from vidsnap.aws import Clients
from vidsnap.httpapp import lambda_app
from vidsnap.objectlambda import answer_object_lambda
from vidsnap.observe import emit_snapshot_metrics, logger
from vidsnap.settings import get_settings

# The layer logs through the standard `logging` module: give it powertools' JSON format, so every
# line carries the Lambda request id.
copy_config_to_registered_loggers(source_logger=logger)
_clients = Clients()
_http: Mangum | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a function URL request, or an S3 Object Lambda ``GetObject``."""
    global _http  # noqa: PLW0603 - one ASGI app per cold start
    settings = get_settings()
    olap = event.get("getObjectContext")
    if olap is not None:
        return answer_object_lambda(
            _clients.s3,
            route=olap["outputRoute"],
            token=olap["outputToken"],
            input_url=olap["inputS3Url"],
            user_url=(event.get("userRequest") or {}).get("url"),
            payload=(event.get("configuration") or {}).get("payload"),
            settings=settings,
            request_id=getattr(context, "aws_request_id", None) or event.get("xAmzRequestId", ""),
        )
    if _http is None:
        _http = Mangum(lambda_app(settings, _clients), lifespan="off")
    response: dict[str, Any] = _http(event, context)
    emit_snapshot_metrics(response.get("headers") or {})
    return response

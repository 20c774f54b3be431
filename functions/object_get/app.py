"""Synchronous snapshots: the function URL (payload 2.0, through mangum) and S3 Object Lambda.

Glue only: the app and the clients are built once per cold start; all logic is in the layer.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from vidsnap.aws import Clients
from vidsnap.httpapp import lambda_app
from vidsnap.objectlambda import answer_object_lambda
from vidsnap.settings import get_settings

_clients = Clients()
_http: Mangum | None = None


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
    return _http(event, context)

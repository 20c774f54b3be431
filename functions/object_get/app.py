"""Synchronous snapshots: the function URL (payload 2.0, through mangum) and S3 Object Lambda.

Glue only: the app and the clients are built once per cold start; all logic is in the layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from vidsnap.aws.clients import Clients
from vidsnap.aws.httpapp import FunctionURL, lambda_app
from vidsnap.aws.objectlambda import answer_object_lambda_event
from vidsnap.aws.observe import logger
from vidsnap.aws.settings import OBJECT_GET_VARIABLES, Settings, get_settings

# The layer logs through the standard `logging` module: give it powertools' JSON format, so every
# line carries the Lambda request id.
copy_config_to_registered_loggers(source_logger=logger)
_clients = Clients()


def _settings() -> Settings:
    """This function's variables only: a typo in the worker's (``UPLOAD_RULES``...) cannot fail it."""
    return get_settings(OBJECT_GET_VARIABLES)


_http = FunctionURL(lambda: lambda_app(_settings(), _clients))  # the app is built on first use


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a function URL request, or an S3 Object Lambda ``GetObject``; never raises."""
    if isinstance(event, Mapping) and "getObjectContext" in event:
        request_id = str(getattr(context, "aws_request_id", None) or "")
        return answer_object_lambda_event(_clients.s3, event, _settings, request_id=request_id)
    return _http(event, context)

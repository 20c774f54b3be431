"""The steps of the long-task state machine (template.yaml ``FanoutStateMachine``; docs/LONG_TASKS.md):
run one window, merge the windows, fail the task. Glue only: :class:`vidsnap.aws.fanout.Fanout`
does the work.

A step raises :class:`~vidsnap.aws.fanout.RetryWindow` for what may pass (the state machine retries
it with backoff) and :class:`~vidsnap.aws.fanout.WindowFailed` for what will not (its catch fails
the task, with one notification).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from vidsnap.aws.clients import Clients, account_from_arn
from vidsnap.aws.fanout import Fanout
from vidsnap.aws.observe import MetricUnit, emit, logger
from vidsnap.aws.settings import ASYNC_VARIABLES, get_settings
from vidsnap.aws.worker import Worker


@functools.cache
def _fanout_for(account: str | None) -> Fanout:
    """One worker (settings, clients) per cold start; ``account``: the function's own account."""
    return Fanout(Worker(get_settings(ASYNC_VARIABLES), Clients(account_id=account)))


# Metrics are emitted as they happen (vidsnap.aws.observe.emit): a step that fails still counts.
@logger.inject_lambda_context(clear_state=True)
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """``{"Action": "window" | "merge" | "fail", "Run": {...}, "Window"?: {...}, "Error"?: {...}}``."""
    fanout = _fanout_for(account_from_arn(getattr(context, "invoked_function_arn", None)))
    emit({"FanoutSteps": (MetricUnit.Count, 1)})
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    # A window stops before its invocation times out and the state machine's retry resumes it.
    return fanout.handle(event, time_left=(lambda: remaining() / 1000) if callable(remaining) else None)

"""template.yaml's state machines executed by moto's Step Functions interpreter, their Lambda tasks
served in-process by the real handlers (``functions/<name>/app.py``): for the demo and the tests
(development dependencies: moto >= 5.2, cfn-lint; not in the Lambda layer).

The definition is read from template.yaml itself, with its ``DefinitionSubstitutions`` applied: the
ASL that deploys is the ASL the tests execute. moto's interpreter calls Lambda through boto3's
default session; :class:`LambdaRoutes` answers those ``Invoke`` calls as the Lambda service does
(the handler's return value as the payload; an exception as ``FunctionError`` with its
``errorType``, which is what the state machine's ``Retry`` and ``Catch`` match on).
"""

from __future__ import annotations

import io
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.response import StreamingBody

ACCOUNT = "123456789012"
REGION = "us-east-1"
#: moto's Step Functions configuration that makes executions run (moto >= 5.2).
EXECUTE = {"stepfunctions": {"execute_state_machine": True}}

Handler = Callable[[dict[str, Any], Any], Any]

#: One Lambda invocation at a time in this process, as in one Lambda container: the handlers'
#: module-level state (Powertools metrics, flushed at the end of each invocation) is per process,
#: and moto runs a map's items on threads of its own. Hold it to invoke a handler directly too
#: (a worker that starts an execution, whose steps then wait for it to return).
ONE_INVOCATION = threading.RLock()


def function_arn(name: str) -> str:
    """The ARN of function ``name`` in moto's account and region."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def state_machine_arn(name: str) -> str:
    """The ARN of state machine ``name`` in moto's account and region."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def definition(template: Path, resource: str, substitutions: dict[str, str]) -> str:
    """The ASL of the state machine ``resource`` in ``template`` (template.yaml), its
    ``DefinitionSubstitutions`` (exactly those named) replaced by ``substitutions``."""
    from cfnlint.decode import decode  # parses the template's short-form intrinsics (!Ref, !Sub)

    decoded, matches = decode(str(template))
    if decoded is None or matches:
        raise ValueError(f"{template} does not parse: {matches}")
    props = decoded["Resources"][resource]["Properties"]
    if set(props.get("DefinitionSubstitutions", {})) != set(substitutions):
        raise ValueError(f"{resource} substitutes {sorted(props.get('DefinitionSubstitutions', {}))}")
    text = json.dumps(props["Definition"])
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    return text


class LambdaRoutes:
    """Answers ``lambda:Invoke`` of the functions it knows with their handlers, in-process.

    ``calls`` records every (function, event); ``before`` (when set) sees each event first and may
    raise, standing for a failure of that invocation.
    """

    def __init__(self, handlers: dict[str, Handler], context: Callable[[str], Any]) -> None:
        self.handlers = {function_arn(name): handler for name, handler in handlers.items()}
        self.context = context
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.before: Callable[[str, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()

    def _invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        """botocore's ``before-call`` hook: an answer for the functions routed here, else None."""
        path = str(params.get("url_path", ""))
        name = unquote(path.split("/functions/", 1)[-1].split("/", 1)[0])
        handler = self.handlers.get(name)
        if handler is None:
            return None
        event = json.loads(params.get("body") or b"null")
        with self._lock:
            self.calls.append((name.rsplit(":", 1)[-1], event))
        answer: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            with ONE_INVOCATION:
                if self.before is not None:
                    self.before(name.rsplit(":", 1)[-1], event)
                result = handler(event, self.context(name.rsplit(":", 1)[-1]))
        except Exception as exc:  # what the Lambda runtime reports for an unhandled exception
            result = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__)[-3:],
            }
            answer["FunctionError"] = "Unhandled"
        body = json.dumps(result).encode()
        answer["Payload"] = StreamingBody(io.BytesIO(body), len(body))
        return AWSResponse(path, 200, HTTPHeaders(), None), answer

    @contextmanager
    def installed(self) -> Iterator[LambdaRoutes]:
        """Route the default session's Lambda calls (moto's interpreter makes them) while inside."""
        events = boto3._get_default_session().events  # the session moto's interpreter uses
        hook: Any = self._invoke  # botocore types handlers as returning None; before-call may answer
        events.register("before-call.lambda.Invoke", hook, unique_id="sfnlocal")
        try:
            yield self
        finally:
            events.unregister("before-call.lambda.Invoke", unique_id="sfnlocal")

    def named(self, function: str) -> list[dict[str, Any]]:
        """The events ``function`` was invoked with."""
        return [event for name, event in self.calls if name == function]


def wait(sfn: Any, execution_arn: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """The execution once it has ended (moto runs it on a thread of its own); TimeoutError after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still running after {timeout_s} s")
        time.sleep(0.05)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution's history."""
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)[
        "events"
    ]
    return events

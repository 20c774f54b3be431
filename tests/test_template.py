"""template.yaml: cfn-lint clean, and the properties the SPEC and AWS guidance require."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from vidsnap.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

SPEC_ENV = {
    "SOURCE_BUCKET",
    "OUTPUT_BUCKET",
    "ALLOWED_OUTPUT_BUCKETS",
    "ALLOWED_TOPICS",
    "ALLOWED_QUEUES",
    "TASK_QUEUE_URL",
    "TASK_TABLE",
    "RESULTS_PREFIX",
    "UPLOAD_RULES",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "SIGNING_SECRET",
}
#: SAM policy templates that are scoped to the resource they name.
SCOPED_POLICY_TEMPLATES = {
    "S3ReadPolicy",
    "S3CrudPolicy",
    "SQSSendMessagePolicy",
    "SQSPollerPolicy",
    "SNSPublishMessagePolicy",
    "DynamoDBReadPolicy",
    "DynamoDBCrudPolicy",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert decoded is not None
    return dict(decoded)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(resources[name]["Properties"])


def test_cfn_lint_has_no_findings() -> None:
    matches = lint_file(TEMPLATE)
    assert matches == [], "\n".join(str(m) for m in matches)


def test_serverless_transform_and_globals(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["x86_64"]
    assert function["Layers"] == [{"Ref": "VidsnapLayer"}]
    assert set(function["Environment"]["Variables"]) >= SPEC_ENV


def test_layer_is_built_by_the_makefile(resources: dict[str, Any]) -> None:
    layer = resources["VidsnapLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/vidsnap/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers" / "vidsnap" / "Makefile").read_text()
    assert re.search(r"^build-VidsnapLayer:", makefile, re.MULTILINE)
    for flag in (
        "--platform manylinux2014_x86_64",
        "--platform manylinux_2_28_x86_64",
        "--implementation cp",
        "--only-binary=:all:",
        "$(ARTIFACTS_DIR)/python",
    ):
        assert flag in makefile
    assert "PY_VERSION ?= 3.13" in makefile
    assert "boto3" not in (ROOT / "layers" / "vidsnap" / "requirements.txt").read_text().split("#")[0]


@pytest.mark.parametrize(
    ("name", "folder"), [("ObjectGetFunction", "object_get"), ("AsyncSnapshotsFunction", "async_snapshots")]
)
def test_functions_point_at_their_handlers(resources: dict[str, Any], name: str, folder: str) -> None:
    p = props(resources, name)
    assert p["CodeUri"] == f"functions/{folder}/"
    assert p["Handler"] == "app.handler"
    source = (ROOT / "functions" / folder / "app.py").read_text()
    assert "def handler(event" in source
    assert "sys.path" not in source


def test_function_url_uses_iam_auth_by_default(template: dict[str, Any], resources: dict[str, Any]) -> None:
    url = props(resources, "ObjectGetFunction")["FunctionUrlConfig"]
    auth = url["AuthType"]
    if isinstance(auth, dict):
        assert template["Parameters"][auth["Ref"]]["Default"] == "AWS_IAM"
    else:
        assert auth == "AWS_IAM"
    assert props(resources, "ObjectGetFunction")["MemorySize"] == 2048
    assert props(resources, "AsyncSnapshotsFunction")["MemorySize"] == 3008


def test_worker_reads_the_task_queue_with_partial_batch_responses(resources: dict[str, Any]) -> None:
    events = props(resources, "AsyncSnapshotsFunction")["Events"]
    (sqs,) = [e for e in events.values() if e["Type"] == "SQS"]
    assert sqs["Properties"]["Queue"] == {"Fn::GetAtt": ["TaskQueue", "Arn"]}
    assert sqs["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_task_queue_redrive_and_visibility(resources: dict[str, Any]) -> None:
    queue = props(resources, "TaskQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["TaskDLQ", "Arn"]}
    assert 3 <= int(redrive["maxReceiveCount"]) <= 5
    timeout = int(props(resources, "AsyncSnapshotsFunction")["Timeout"])
    assert int(queue["VisibilityTimeout"]) >= 6 * timeout
    assert resources["TaskDLQ"]["Type"] == "AWS::SQS::Queue"
    alarm = props(resources, "TaskDLQAlarm")
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["TaskDLQ", "QueueName"]}


def test_task_table(resources: dict[str, Any]) -> None:
    table = props(resources, "TaskTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "TaskId", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ExpiresAt", "Enabled": True}


def test_uploads_reach_the_task_queue_without_a_cycle(resources: dict[str, Any]) -> None:
    bucket = resources["SourceBucket"]
    config = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config == [{"Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": ["TaskQueue", "Arn"]}}]
    assert bucket["DependsOn"] == "TaskQueuePolicy"
    (statement,) = props(resources, "TaskQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert "aws:SourceArn" in statement["Condition"]["ArnLike"]
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    # The bucket is named, not referenced, by the queue policy: no bucket <-> policy cycle.
    text = json.dumps(statement)
    assert '"Ref": "SourceBucket"' not in text
    assert '"SourceBucket",' not in text


def test_results_prefix_matches_the_lifecycle_rule(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    prefix = template["Globals"]["Function"]["Environment"]["Variables"]["RESULTS_PREFIX"]
    rules = props(resources, "OutputBucket")["LifecycleConfiguration"]["Rules"]
    assert [r["Prefix"] for r in rules] == [prefix]


def test_default_upload_rules_are_valid(template: dict[str, Any]) -> None:
    default = template["Parameters"]["UploadRules"]["Default"]
    settings = Settings.from_env({"UPLOAD_RULES": default, "MAX_FRAMES": "1000"})
    assert settings.upload_rules


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in resources.items():
        for node in _walk(resource.get("Properties", {})):
            for statement in node.get("Statement", []) if isinstance(node.get("Statement"), list) else []:
                yield name, statement


def test_no_wildcard_resources_in_policies(resources: dict[str, Any]) -> None:
    statements = list(_statements(resources))
    assert len(statements) >= 4
    for name, statement in statements:
        targets = statement.get("Resource", [])
        for target in targets if isinstance(targets, list) else [targets]:
            text = json.dumps(target)
            assert target != "*", f"{name}: Resource '*'"
            # Only object-level ARNs of a named bucket may end with a wildcard.
            assert "*" not in text.replace("/*", ""), f"{name}: wildcard in {text}"


def test_functions_use_scoped_policy_templates_only(resources: dict[str, Any]) -> None:
    for name in ("ObjectGetFunction", "AsyncSnapshotsFunction"):
        for policy in props(resources, name)["Policies"]:
            assert isinstance(policy, dict), f"{name}: managed policy {policy!r} is not scoped"
            (kind,) = policy
            assert kind in SCOPED_POLICY_TEMPLATES | {"Statement"}, f"{name}: {kind}"
            if kind != "Statement":
                assert policy[kind], f"{name}: {kind} names no resource"


def test_outputs(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {
        "FunctionUrl",
        "SourceBucketName",
        "OutputBucketName",
        "TaskQueueUrl",
        "TaskTopicArn",
        "TaskTableName",
    }
    assert template["Outputs"]["FunctionUrl"]["Value"] == {
        "Fn::GetAtt": ["ObjectGetFunctionUrl", "FunctionUrl"]
    }


def test_sample_events_are_json() -> None:
    names = sorted(p.name for p in (ROOT / "events").glob("*.json"))
    assert set(names) >= {
        "eventbridge-s3.json",
        "function-url-get-task.json",
        "function-url-get.json",
        "function-url-post.json",
        "object-lambda.json",
        "s3-put.json",
        "sns-sqs-s3-put.json",
        "sqs-s3-put.json",
        "sqs-s3-test-event.json",
        "sqs-task-batch.json",
    }
    for name in names:
        json.loads((ROOT / "events" / name).read_text())

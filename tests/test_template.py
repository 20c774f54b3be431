"""template.yaml: cfn-lint clean, and the properties the README and AWS guidance require."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from vidsnap.aws.settings import Settings

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
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert function["Layers"] == [{"Ref": "VidsnapLayer"}]
    assert set(function["Environment"]["Variables"]) >= SPEC_ENV


def test_layer_is_built_by_the_makefile(resources: dict[str, Any]) -> None:
    layer = resources["VidsnapLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/vidsnap/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers" / "vidsnap" / "Makefile").read_text()
    assert re.search(r"^build-VidsnapLayer:", makefile, re.MULTILINE)
    for flag in (
        "--platform manylinux2014_$(WHEEL_ARCH)",
        "--platform manylinux_2_28_$(WHEEL_ARCH)",
        "--implementation cp",
        "--only-binary=:all:",
        "$(ARTIFACTS_DIR)/python",
        "--require-hashes -r requirements.lock",
    ):
        assert flag in makefile
    assert "PY_VERSION ?= 3.13" in makefile
    assert "boto3" not in (ROOT / "layers" / "vidsnap" / "requirements.txt").read_text().split("#")[0]


def _make_dry_run(*args: str) -> str:
    """The commands ``make build-VidsnapLayer`` would run (nothing is run or downloaded)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed (the layer's BuildMethod is makefile)")
    result = subprocess.run(
        [
            "make",
            "-n",
            "-C",
            str(ROOT / "layers" / "vidsnap"),
            "build-VidsnapLayer",
            "ARTIFACTS_DIR=/x",
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("arch", "wheels"), [(None, "x86_64"), ("x86_64", "x86_64"), ("arm64", "aarch64"), ("aarch64", "aarch64")]
)
def test_the_layer_is_built_for_the_chosen_architecture(
    template: dict[str, Any], arch: str | None, wheels: str
) -> None:
    """``ARCH`` (the stack's Architecture values; sam build passes the environment to make) picks
    the manylinux wheels; the default matches the parameter's default."""
    if arch is not None:
        assert arch in template["Parameters"]["Architecture"]["AllowedValues"] + ["aarch64"]
    commands = _make_dry_run(*([f"ARCH={arch}"] if arch else []))
    platforms = re.findall(r"--platform (\S+)", commands)
    assert platforms == [f"manylinux2014_{wheels}", f"manylinux_2_28_{wheels}"]
    assert "--require-hashes -r requirements.lock" in commands


def test_the_layer_requirements_are_pinned_with_hashes() -> None:
    """requirements.lock (made by lock.py) pins every requirement, and the requirements of those,
    with the SHA-256 of each wheel: one per pure-Python package, one per runtime and architecture
    for the compiled ones (av is abi3: one per architecture)."""
    from packaging.requirements import Requirement

    folder = ROOT / "layers" / "vidsnap"
    text = (folder / "requirements.lock").read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *hashes = line.split(" --hash=")
        name, _, version = requirement.strip().partition("==")
        assert version, f"not pinned: {requirement}"
        assert hashes, f"no hash: {line}"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h.strip()) for h in hashes), line
        pins[name] = (version, [h.strip() for h in hashes])
    wanted = [
        Requirement(line.split("#")[0])
        for line in (folder / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in requirements.lock: run layers/vidsnap/lock.py"
        assert requirement.specifier.contains(pins[name][0]), (
            name,
            pins[name][0],
            str(requirement.specifier),
        )
    assert len(pins["av"][1]) == 2  # abi3 wheels: x86_64 and aarch64
    for compiled in ("numpy", "pillow"):
        assert len(pins[compiled][1]) == 6, compiled  # CPython 3.11-3.13 x 2 architectures
    assert len(pins["starlette"][1]) == 1


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
    (config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == {"Fn::GetAtt": ["TaskQueue", "Arn"]}
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
    from vidsnap.core.lang import parse_process

    settings = Settings.from_env({"UPLOAD_RULES": default, "MAX_FRAMES": "1000"}, parse_rule=parse_process)
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
        assert "Role" not in props(resources, name)


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


def test_each_function_gets_a_decode_budget_that_fits_its_timeout(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """The object-GET function (60 s) and the worker (900 s) each get their own decode budget."""
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["DECODE_BUDGET_FRAMES"] == {"Ref": "DecodeBudgetFrames"}
    worker = resources["AsyncSnapshotsFunction"]["Properties"]
    assert worker["Environment"]["Variables"]["DECODE_BUDGET_FRAMES"] == {"Ref": "WorkerDecodeBudgetFrames"}
    params = template["Parameters"]
    ratio = params["WorkerDecodeBudgetFrames"]["Default"] / params["DecodeBudgetFrames"]["Default"]
    assert ratio <= worker["Timeout"] / resources["ObjectGetFunction"]["Properties"]["Timeout"]


# -- production hardening (README: Deploy) --------------------------------------------------------------

_NO_VALUE = object()
#: Pseudo parameters as a resolved stack would see them.
_PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws"}
#: Attributes whose shape the template relies on (split, selected).
_ATTRIBUTES = {"ObjectGetFunctionUrl.FunctionUrl": "https://abc123.lambda-url.us-east-1.on.aws/"}


class Resolved:
    """template.yaml for one set of parameter values: conditions evaluated, intrinsics resolved.

    Resources' own attributes stay symbolic (``<OutputBucket.Arn>``, ``<Ref TaskQueue>``), which is
    what the least-privilege checks compare against.
    """

    def __init__(self, template: dict[str, Any], **parameters: str) -> None:
        self.template = template
        self.values = {n: str(p.get("Default", "")) for n, p in template["Parameters"].items()}
        unknown = set(parameters) - set(self.values)
        assert not unknown, f"no such parameters: {unknown}"
        self.values.update(parameters)
        self.values.update(_PSEUDO)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            resolved = [self.resolve(item) for item in node]
            return [item for item in resolved if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref", "Condition")):
            fields = {key: self.resolve(value) for key, value in node.items()}
            return {key: value for key, value in fields.items() if value is not _NO_VALUE}
        ((fn, arg),) = node.items()
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return _NO_VALUE
            return self.values.get(arg, f"<Ref {arg}>")
        if fn == "Fn::GetAtt":
            attribute = arg if isinstance(arg, str) else ".".join(arg)
            return _ATTRIBUTES.get(attribute, f"<{attribute}>")
        if fn == "Fn::Sub":
            assert isinstance(arg, str)
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: str(self.resolve({"Fn::GetAtt": m[1]} if "." in m[1] else {"Ref": m[1]})),
                arg,
            )
        if fn == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no)
        if fn == "Fn::Equals":
            return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
        if fn == "Fn::Not":
            return not self.resolve(arg[0])
        if fn == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Split":
            return str(self.resolve(arg[1])).split(arg[0])
        if fn == "Fn::Select":
            return self.resolve(arg[1])[int(arg[0])]
        if fn == "Fn::Join":
            return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
        raise AssertionError(f"intrinsic {fn} is not handled by this test")

    def resources(self) -> dict[str, Any]:
        """The resources this stack creates (their Condition holds), resolved."""
        out = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[name] = self.resolve(resource)
        return out

    def rule_failures(self) -> list[str]:
        """AssertDescriptions of the Rules that would stop this deployment."""
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            failures += [a["AssertDescription"] for a in rule["Assertions"] if not self.resolve(a["Assert"])]
        return failures

    def grants(self, function: str) -> set[tuple[str, str]]:
        """(action, resource) pairs of the function's inline statements."""
        pairs = set()
        for policy in self.resources()[function]["Properties"]["Policies"]:
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                targets = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                pairs |= {(a, r) for a in actions for r in targets}
        return pairs


SOURCE = "arn:aws:s3:::vidsnap-source-123456789012-us-east-1"


def test_public_function_url_mode_has_both_invoke_permissions(template: dict[str, Any]) -> None:
    """FunctionUrlAuthType NONE: SAM adds no permission for a !Ref AuthType, so the template does:
    lambda:InvokeFunctionUrl (auth type NONE) and lambda:InvokeFunction via the URL only."""
    public = Resolved(template, FunctionUrlAuthType="NONE", SigningSecretParameter="/vidsnap/s").resources()
    url = public["ObjectGetPublicUrlPermission"]["Properties"]
    invoke = public["ObjectGetPublicInvokePermission"]["Properties"]
    assert url == {
        "FunctionName": "<Ref ObjectGetFunction>",
        "Action": "lambda:InvokeFunctionUrl",
        "Principal": "*",
        "FunctionUrlAuthType": "NONE",
    }
    assert invoke == {
        "FunctionName": "<Ref ObjectGetFunction>",
        "Action": "lambda:InvokeFunction",
        "Principal": "*",
        "InvokedViaFunctionUrl": True,
    }
    private = Resolved(template).resources()
    assert not {"ObjectGetPublicUrlPermission", "ObjectGetPublicInvokePermission"} & set(private)
    assert not any(r["Type"] == "AWS::Lambda::Permission" for r in private.values())


def test_a_public_url_without_a_signing_secret_is_refused_at_deploy_time(template: dict[str, Any]) -> None:
    assert Resolved(template).rule_failures() == []
    assert Resolved(template, FunctionUrlAuthType="NONE").rule_failures() == [
        "FunctionUrlAuthType NONE requires SigningSecretParameter (signed URLs)."
    ]
    assert (
        Resolved(template, FunctionUrlAuthType="NONE", SigningSecretParameter="/vidsnap/s").rule_failures()
        == []
    )
    # CloudFront signs with SigV4 (origin access control): only in front of an AWS_IAM URL.
    assert Resolved(template, EnableCloudFront="true").rule_failures() == []
    assert Resolved(
        template, EnableCloudFront="true", FunctionUrlAuthType="NONE", SigningSecretParameter="/vidsnap/s"
    ).rule_failures() == ["EnableCloudFront requires FunctionUrlAuthType AWS_IAM (origin access control)."]


def test_the_signing_secret_comes_from_a_secret_store_never_the_environment(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    text = TEMPLATE.read_text()
    assert not re.search(r"\bSIGNING_SECRET\s*:", text), (
        "the secret itself must not be an environment variable"
    )
    assert not any(p.get("NoEcho") for p in template["Parameters"].values()), (
        "no secret passes as a parameter"
    )
    env = props(resources, "ObjectGetFunction")["Environment"]["Variables"]
    assert env["SIGNING_SECRET_PARAMETER"] == {"Ref": "SigningSecretParameter"}
    assert "SIGNING_SECRET_PARAMETER" not in template["Globals"]["Function"]["Environment"]["Variables"]
    worker_env = props(resources, "AsyncSnapshotsFunction").get("Environment", {}).get("Variables", {})
    assert not {"SIGNING_SECRET", "SIGNING_SECRET_PARAMETER"} & set(worker_env)  # the worker never signs

    none = Resolved(template).grants("ObjectGetFunction")
    assert not {a for a, _ in none if a.startswith(("ssm:", "secretsmanager:", "kms:"))}
    ssm = Resolved(template, SigningSecretParameter="/vidsnap/signing").grants("ObjectGetFunction") - none
    assert ssm == {("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/vidsnap/signing")}
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:vidsnap-AbCdEf"
    secrets = Resolved(template, SigningSecretParameter=arn).grants("ObjectGetFunction") - none
    assert secrets == {("secretsmanager:GetSecretValue", arn)}
    pattern = re.compile(template["Parameters"]["SigningSecretParameter"]["AllowedPattern"])
    for good in ("", "/vidsnap/signing", arn):
        assert pattern.fullmatch(good), good
    for bad in ("vidsnap/no-leading-slash", "arn:aws:ssm:us-east-1:123456789012:parameter/x", "/a b"):
        assert not pattern.fullmatch(bad), bad


#: Exactly what each function may do, from what its code calls (see the comments in template.yaml).
OBJECT_GET_GRANTS = {
    ("s3:GetObject", f"{SOURCE}/*"),
    ("s3:GetObjectVersion", f"{SOURCE}/*"),
    ("s3:ListBucket", SOURCE),
    ("s3:PutObject", "<OutputBucket.Arn>/_vidsnap/results/*"),
    ("s3:GetObject", "<OutputBucket.Arn>/_vidsnap/results/*"),
    ("sqs:SendMessage", "<TaskQueue.Arn>"),
    ("dynamodb:GetItem", "<TaskTable.Arn>"),
}
#: What the worker and the fan-out steps both do: read sources, write (and undo) outputs, notify,
#: keep task records.
TASK_GRANTS = {
    ("s3:GetObject", f"{SOURCE}/*"),
    ("s3:GetObjectVersion", f"{SOURCE}/*"),
    ("s3:ListBucket", SOURCE),
    ("s3:PutObject", "<OutputBucket.Arn>/*"),
    ("s3:DeleteObject", "<OutputBucket.Arn>/*"),
    ("sns:Publish", "<Ref TaskTopic>"),
    ("sqs:SendMessage", "<NotifyQueue.Arn>"),
    ("sqs:GetQueueUrl", "<NotifyQueue.Arn>"),
    ("dynamodb:GetItem", "<TaskTable.Arn>"),
    ("dynamodb:PutItem", "<TaskTable.Arn>"),
    ("dynamodb:UpdateItem", "<TaskTable.Arn>"),
}
WORKER_GRANTS = TASK_GRANTS | {
    ("sqs:ChangeMessageVisibility", "<TaskQueue.Arn>"),  # a task out of time resumes in seconds
    ("states:StartExecution", "<Ref FanoutStateMachine>"),  # a long task runs in windows
}
#: The steps of long tasks: and reading the windows' items back.
FANOUT_GRANTS = TASK_GRANTS | {("dynamodb:BatchGetItem", "<TaskTable.Arn>")}


def test_least_privilege_inline_statements(template: dict[str, Any]) -> None:
    stack = Resolved(template)
    assert stack.grants("ObjectGetFunction") == OBJECT_GET_GRANTS
    assert stack.grants("AsyncSnapshotsFunction") == WORKER_GRANTS
    assert stack.grants("FanoutFunction") == FANOUT_GRANTS
    # The object-get function writes only oversize results, under the lifecycle-expired prefix.
    prefix = template["Globals"]["Function"]["Environment"]["Variables"]["RESULTS_PREFIX"]
    writes = {r for a, r in OBJECT_GET_GRANTS if a == "s3:PutObject"}
    assert writes == {f"<OutputBucket.Arn>/{prefix}*"}
    for action, _ in OBJECT_GET_GRANTS | WORKER_GRANTS | FANOUT_GRANTS:
        if action == "dynamodb:BatchGetItem":  # the merge reads the windows' items back
            continue
        for verb in ("Acl", "Lifecycle", "Scan", "Query", "Batch", "DeleteItem", "*"):
            assert verb not in action, action
    assert not [a for a, _ in OBJECT_GET_GRANTS if "Delete" in a]
    # The extra output bucket: only what the worker does there.
    extra = Resolved(template, ExtraOutputBucket="vidsnap-extra").resources()["ExtraOutputBucketPolicy"]
    (statement,) = extra["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["s3:PutObject", "s3:DeleteObject"]
    assert statement["Resource"] == "arn:aws:s3:::vidsnap-extra/*"


def test_least_privilege_follows_the_existing_source_bucket(template: dict[str, Any]) -> None:
    stack = Resolved(template, ExistingSourceBucket="media")
    reads = {(a, r) for a, r in stack.grants("ObjectGetFunction") if r.startswith("arn:aws:s3:::")}
    assert reads == {
        ("s3:GetObject", "arn:aws:s3:::media/*"),
        ("s3:GetObjectVersion", "arn:aws:s3:::media/*"),
        ("s3:ListBucket", "arn:aws:s3:::media"),
    }


def test_object_lambda_wiring(template: dict[str, Any]) -> None:
    assert template["Parameters"]["EnableObjectLambda"]["Default"] == "false"
    off = Resolved(template).resources()
    assert not [
        n for n, r in off.items() if "ObjectLambda" in r["Type"] or r["Type"] == "AWS::S3::AccessPoint"
    ]
    assert not [
        a for a, _ in Resolved(template).grants("ObjectGetFunction") if a.startswith("s3-object-lambda")
    ]

    stack = Resolved(template, EnableObjectLambda="true", ObjectLambdaAccessPointName="snaps")
    on = stack.resources()
    supporting = on["ObjectLambdaSupportingAccessPoint"]["Properties"]
    assert supporting["Name"] == "snaps-source"
    assert supporting["Bucket"] == "<Ref SourceBucket>"
    (only,) = supporting["Policy"]["Statement"]
    assert only["Action"] == "s3:GetObject"
    assert only["Resource"] == "arn:aws:s3:us-east-1:123456789012:accesspoint/snaps-source/object/*"
    assert only["Condition"] == {
        "ForAnyValue:StringEquals": {"aws:CalledVia": "s3-object-lambda.amazonaws.com"}
    }

    olap = on["ObjectLambdaAccessPoint"]["Properties"]
    assert olap["Name"] == "snaps"
    config = olap["ObjectLambdaConfiguration"]
    assert config["SupportingAccessPoint"] == "<ObjectLambdaSupportingAccessPoint.Arn>"
    (transformation,) = config["TransformationConfigurations"]
    assert transformation == {
        "Actions": ["GetObject"],
        "ContentTransformation": {"AwsLambda": {"FunctionArn": "<ObjectGetFunction.Arn>"}},
    }
    policy = on["ObjectLambdaAccessPointPolicy"]["Properties"]
    assert policy["ObjectLambdaAccessPoint"] == "<Ref ObjectLambdaAccessPoint>"
    (allow,) = policy["PolicyDocument"]["Statement"]
    assert (allow["Action"], allow["Resource"]) == (
        "s3-object-lambda:GetObject",
        "<ObjectLambdaAccessPoint.Arn>",
    )

    # The bucket delegates reads to the supporting access point, only through Object Lambda.
    statements = on["SourceBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (delegated,) = [s for s in statements if s["Effect"] == "Allow"]
    assert delegated["Condition"]["ForAnyValue:StringEquals"] == {
        "aws:CalledVia": "s3-object-lambda.amazonaws.com"
    }
    assert delegated["Condition"]["StringEquals"] == {
        "s3:DataAccessPointArn": "arn:aws:s3:us-east-1:123456789012:accesspoint/snaps-source"
    }
    # The function answers through WriteGetObjectResponse on this access point only.
    extra = stack.grants("ObjectGetFunction") - OBJECT_GET_GRANTS
    assert extra == {
        (
            "s3-object-lambda:WriteGetObjectResponse",
            "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/snaps",
        )
    }


def test_alarms_reach_someone(template: dict[str, Any]) -> None:
    stack = Resolved(template)
    made = stack.resources()
    alarms = {n: r["Properties"] for n, r in made.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"], name
    assert made["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert "AlarmEmailSubscription" not in made
    mailed = Resolved(template, AlarmEmail="oncall@example.com").resources()["AlarmEmailSubscription"]
    assert mailed["Properties"] == {
        "TopicArn": "<Ref AlarmTopic>",
        "Protocol": "email",
        "Endpoint": "oncall@example.com",
    }
    watched = {(a["Namespace"], a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms.values()}
    assert watched >= {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<TaskDLQ.QueueName>"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "<TaskQueue.QueueName>"),
        *(
            ("AWS/Lambda", metric, f"<Ref {function}>")
            for metric in ("Errors", "Throttles", "Duration")
            for function in ("AsyncSnapshotsFunction", "ObjectGetFunction")
        ),
    }
    # Duration alarms fire before the timeout cuts an invocation off.
    for function, alarm in (
        ("AsyncSnapshotsFunction", "AsyncSnapshotsDurationAlarm"),
        ("ObjectGetFunction", "ObjectGetDurationAlarm"),
    ):
        timeout_ms = int(made[function]["Properties"]["Timeout"]) * 1000
        assert 0.5 * timeout_ms < int(alarms[alarm]["Threshold"]) < timeout_ms


def test_concurrency_guards(template: dict[str, Any]) -> None:
    default = Resolved(template).resources()
    sqs = default["AsyncSnapshotsFunction"]["Properties"]["Events"]["Tasks"]["Properties"]
    assert "ScalingConfig" not in sqs
    assert "ReservedConcurrentExecutions" not in default["ObjectGetFunction"]["Properties"]
    for unset in ("", "0"):
        made = Resolved(template, WorkerMaximumConcurrency=unset).resources()
        assert (
            "ScalingConfig"
            not in made["AsyncSnapshotsFunction"]["Properties"]["Events"]["Tasks"]["Properties"]
        )
    guarded = Resolved(template, WorkerMaximumConcurrency="5", ObjectGetReservedConcurrency="20").resources()
    tasks = guarded["AsyncSnapshotsFunction"]["Properties"]["Events"]["Tasks"]["Properties"]
    assert tasks["ScalingConfig"] == {"MaximumConcurrency": "5"}
    assert guarded["ObjectGetFunction"]["Properties"]["ReservedConcurrentExecutions"] == "20"
    pattern = re.compile(template["Parameters"]["WorkerMaximumConcurrency"]["AllowedPattern"])
    assert [v for v in ("", "0", "2", "10", "999", "1000") if not pattern.fullmatch(v)] == []
    assert [v for v in ("1", "1001", "-2", "05") if pattern.fullmatch(v)] == []  # SQS allows 2..1000


def test_data_is_retained_and_buckets_are_tls_only(resources: dict[str, Any]) -> None:
    for name in ("SourceBucket", "TaskTable"):
        assert resources[name]["DeletionPolicy"] == "Retain", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name
    for bucket, policy in (("SourceBucket", "SourceBucketPolicy"), ("OutputBucket", "OutputBucketPolicy")):
        document = props(resources, policy)
        assert document["Bucket"] == {"Ref": bucket}
        statements = document["PolicyDocument"]["Statement"]
        (tls,) = [s for s in statements if s.get("Sid") == "TlsOnly"]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert tls["Resource"] == [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]
    assert resources["SourceBucketPolicy"]["Condition"] == resources["SourceBucket"]["Condition"]


def test_upload_notifications_are_filtered_by_the_rules_prefix(template: dict[str, Any]) -> None:
    made = Resolved(template).resources()
    (config,) = made["SourceBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "videos/"}]}}
    # The default filter covers every default rule (a rule outside it would never fire).
    default_rules = json.loads(template["Parameters"]["UploadRules"]["Default"])
    assert all(rule["prefix"].startswith("videos/") for rule in default_rules)
    both = Resolved(template, UploadFilterSuffix=".mp4").resources()
    (config,) = both["SourceBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": "videos/"},
        {"Name": "suffix", "Value": ".mp4"},
    ]
    unfiltered = Resolved(template, UploadFilterPrefix="").resources()
    (config,) = unfiltered["SourceBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert "Filter" not in config


def test_architecture_parameter(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["Architecture"]
    assert parameter["Default"] == "x86_64"
    assert parameter["AllowedValues"] == ["x86_64", "arm64"]
    made = Resolved(template, Architecture="arm64").resources()
    assert made["VidsnapLayer"]["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert Resolved(template, Architecture="arm64").resolve(
        template["Globals"]["Function"]["Architectures"]
    ) == ["arm64"]


def test_optional_cloudfront_keeps_the_url_private(template: dict[str, Any]) -> None:
    assert template["Parameters"]["EnableCloudFront"]["Default"] == "false"
    assert not [
        r for r in Resolved(template).resources().values() if r["Type"].startswith("AWS::CloudFront::")
    ]
    made = Resolved(template, EnableCloudFront="true").resources()
    oac = made["FunctionUrlOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "lambda",
        "always",
        "sigv4",
    )
    config = made["Distribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == "abc123.lambda-url.us-east-1.on.aws"
    assert origin["OriginAccessControlId"] == "<FunctionUrlOriginAccessControl.Id>"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["TargetOriginId"] == origin["Id"]
    assert behaviour["CachePolicyId"] == "<Ref SnapshotCachePolicy>"
    cache = made["SnapshotCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert cache["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"] == {
        "QueryStringBehavior": "all"
    }
    distribution = "arn:aws:cloudfront::123456789012:distribution/<Ref Distribution>"
    grants = {
        (p["Properties"]["Action"], p["Properties"]["Principal"], p["Properties"]["SourceArn"])
        for p in made.values()
        if p["Type"] == "AWS::Lambda::Permission"
    }
    assert grants == {
        ("lambda:InvokeFunctionUrl", "cloudfront.amazonaws.com", distribution),
        ("lambda:InvokeFunction", "cloudfront.amazonaws.com", distribution),
    }
    # The URL itself stays AWS_IAM: only signed requests (CloudFront's, IAM callers') get through.
    assert made["ObjectGetFunction"]["Properties"]["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"


# -- what SAM makes of it: `sam validate --lint` and the SAM transform, offline --------------------

#: Run inside aws-sam-cli's own venv (it holds samtranslator): the template as `sam deploy` would
#: transform it (code URIs replaced by S3 ones, as `sam package` does), for the parameters in argv.
_TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class ManagedPolicies:  # what `sam deploy` looks up in IAM: the ARNs of AWS managed policies
    def load(self):
        return {}
    def load_policy(self, name):
        return "arn:aws:iam::aws:policy/service-role/" + name

template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():
    for key in ("CodeUri", "ContentUri"):
        if key in resource.get("Properties", {}):
            resource["Properties"][key] = "s3://bucket/code.zip"
print(json.dumps(transform(template, json.loads(sys.argv[2]), ManagedPolicies())))
"""


@pytest.fixture(scope="module")
def sam_cli() -> Path:
    """aws-sam-cli's ``sam`` (installed once into its own venv by tests/test_packaging.py)."""
    from test_packaging import _ensure_sam, _sam_home

    return _ensure_sam(_sam_home())


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No credentials, no profile, telemetry off: what a reviewer without an account has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
    )
    return env


@pytest.mark.slow
def test_sam_validate_lint_offline(sam_cli: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(sam_cli), "validate", "--lint", "--template-file", str(TEMPLATE), "--region", "us-east-1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_offline_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def _transformed(sam_cli: Path, tmp_path: Path, **parameters: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(sam_cli.parent / "python"), "-c", _TRANSFORM, str(TEMPLATE), json.dumps(parameters)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=_offline_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    transformed: dict[str, Any] = json.loads(result.stdout)
    return transformed


@pytest.mark.slow
def test_the_sam_transform_keeps_the_public_url_permissions_and_rules(sam_cli: Path, tmp_path: Path) -> None:
    """What CloudFormation receives: SAM adds no invoke permission of its own for a !Ref
    AuthType, so the template's two are the only ones; Rules, the SQS ScalingConfig, reserved
    concurrency and the architecture survive the transform; no role gets a wildcard resource
    from the template's statements."""
    out = _transformed(
        sam_cli,
        tmp_path,
        FunctionUrlAuthType="NONE",
        SigningSecretParameter="/vidsnap/signing",
        WorkerMaximumConcurrency="4",
        ObjectGetReservedConcurrency="10",
        Architecture="arm64",
    )
    resources = out["Resources"]
    permissions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Permission"}
    # Every permission is the template's own, under its condition (SAM added none).
    assert {n: r.get("Condition") for n, r in permissions.items()} == {
        "ObjectGetPublicUrlPermission": "PublicFunctionUrl",
        "ObjectGetPublicInvokePermission": "PublicFunctionUrl",
        "CloudFrontInvokeUrlPermission": "UseCloudFront",
        "CloudFrontInvokePermission": "UseCloudFront",
    }
    public = [p["Properties"] for p in permissions.values() if p["Condition"] == "PublicFunctionUrl"]
    assert sorted((p["Action"], p["Principal"]) for p in public) == [
        ("lambda:InvokeFunction", "*"),
        ("lambda:InvokeFunctionUrl", "*"),
    ]
    assert resources["ObjectGetFunctionUrl"]["Properties"]["AuthType"] == {"Ref": "FunctionUrlAuthType"}
    assert set(out["Rules"]) == {"PublicUrlNeedsASigningSecret", "CloudFrontNeedsIamAuth"}

    (mapping,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["Properties"]["ScalingConfig"]["Fn::If"][0] == "LimitWorkerConcurrency"
    function = resources["ObjectGetFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"]["Fn::If"][0] == "ReserveObjectGetConcurrency"
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert "SIGNING_SECRET" not in function["Environment"]["Variables"]
    assert function["Environment"]["Variables"]["SIGNING_SECRET_PARAMETER"] == {
        "Ref": "SigningSecretParameter"
    }
    (layer,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]

    for role in ("ObjectGetFunctionRole", "AsyncSnapshotsFunctionRole", "FanoutFunctionRole"):
        for policy in resources[role]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert "*" not in json.dumps(statement.get("Resource", "")).replace("/*", ""), (
                    role,
                    statement,
                )


def test_the_readme_documents_every_parameter_and_the_callers_policy(template: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Parameters") :]
    for name in template["Parameters"]:
        assert f"`{name}`" in table, f"README's parameter table misses {name}"
    caller = readme[readme.index("### Calling an `AWS_IAM` function URL") :]
    policy = json.loads(
        caller[caller.index("```json") + len("```json") : caller.index("```\n", caller.index("```json") + 7)]
    )
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]


#: ELF e_machine of the shared objects each Architecture value needs (x86-64: 62, AArch64: 183).
ELF_MACHINE = {"x86_64": 62, "arm64": 183}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["arm64"])
def test_the_layer_built_for_arm64_holds_aarch64_binaries(tmp_path: Path, arch: str) -> None:
    """``make build-VidsnapLayer ARCH=arm64`` (what ``ARCH=arm64 sam build`` runs) installs the
    locked wheels for AArch64: PyAV's, numpy's and Pillow's extension modules and bundled
    libraries are AArch64 ELF files, and the layer fits Lambda's 250 MB (size printed).
    The x86_64 build is the one tests/test_packaging.py builds with sam and imports."""
    from test_packaging import LAMBDA_UNZIPPED_LIMIT, NETWORK_ERRORS, _du

    if shutil.which("make") is None:
        pytest.skip("make is not installed (the layer's BuildMethod is makefile)")
    out = tmp_path / "layer"
    result = subprocess.run(
        [
            "make",
            "-C",
            str(ROOT / "layers" / "vidsnap"),
            "build-VidsnapLayer",
            f"ARTIFACTS_DIR={out}",
            f"ARCH={arch}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = result.stdout + result.stderr
    if result.returncode != 0 and any(marker in log for marker in NETWORK_ERRORS):
        pytest.skip(f"PyPI is unreachable: {log.strip().splitlines()[-1]}")
    assert result.returncode == 0, log[-4000:]
    site = out / "python"
    headers = {}
    for path in site.rglob("*.so*"):
        if path.is_file():
            with path.open("rb") as f:
                headers[path] = f.read(20)
    binaries = {p: h for p, h in headers.items() if h[:4] == b"\x7fELF"}
    assert {p.relative_to(site).parts[0] for p in binaries} >= {"av", "av.libs", "numpy", "PIL"}
    machines = {p.name: int.from_bytes(h[18:20], "little") for p, h in binaries.items()}
    assert set(machines.values()) == {ELF_MACHINE[arch]}, machines
    size = _du(out)
    print(f"layer for {arch}: {size / 1e6:.1f} MB unzipped")
    assert size < LAMBDA_UNZIPPED_LIMIT


# -- long tasks: the fan-out state machine (README, Long tasks) ----------------------------------


def test_the_fanout_state_machine_is_a_distributed_map_with_retries_and_one_catch(
    resources: dict[str, Any],
) -> None:
    machine = resources["FanoutStateMachine"]["Properties"]
    assert machine["Type"] == "STANDARD"
    assert machine["DefinitionSubstitutions"] == {
        "FanoutFunctionArn": {"Fn::GetAtt": ["FanoutFunction", "Arn"]}
    }
    states = machine["Definition"]["States"]
    windows = states["Windows"]
    assert windows["Type"] == "Map"
    assert windows["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    # MaxConcurrency is a setting: the worker puts FANOUT_MAX_CONCURRENCY in the execution's input.
    assert windows["MaxConcurrencyPath"] == "$.MaxConcurrency"
    assert windows["ToleratedFailureCount"] == 0
    assert windows["ResultPath"] is None  # outcomes go to the task table, not the 256 KB state
    # Unranked dhash: counted by a first map, settled, then run by the second.
    (choice,) = states["Plan"]["Choices"]
    assert choice == {"Variable": "$.Count", "BooleanEquals": True, "Next": "Count"}
    assert states["Plan"]["Default"] == "Windows"
    assert machine["Definition"]["StartAt"] == "Plan"
    count = states["Count"]
    for key in ("ItemsPath", "MaxConcurrencyPath", "ToleratedFailureCount", "ResultPath"):
        assert count[key] == windows[key]
    assert count["ItemProcessor"]["ProcessorConfig"] == windows["ItemProcessor"]["ProcessorConfig"]
    assert (count["Next"], states["Settle"]["Next"]) == ("Settle", "Windows")
    steps = [
        windows["ItemProcessor"]["States"]["Window"],
        count["ItemProcessor"]["States"]["CountWindow"],
        states["Settle"],
        states["Merge"],
        states["Fail"],
    ]
    for step in steps:
        assert step["Resource"] == "arn:aws:states:::lambda:invoke"
        assert step["Parameters"]["FunctionName"] == "${FanoutFunctionArn}"
        (retry,) = step["Retry"]
        assert retry["BackoffRate"] > 1
        assert retry["JitterStrategy"] == "FULL"
        assert retry["MaxAttempts"] >= 3
        if step is not states["Fail"]:
            assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"]
            assert "RetryWindow" in retry["ErrorEquals"]
            assert "States.ALL" not in retry["ErrorEquals"]  # a permanent failure is not retried
    for state in (windows, count, states["Settle"], states["Merge"]):
        (catch,) = state["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": "Fail"}
    assert states["Fail"]["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_the_fanout_state_machine_role_is_least_privilege(template: dict[str, Any]) -> None:
    stack = Resolved(template).resources()
    role = stack["FanoutStateMachineRole"]["Properties"]
    (principal,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert principal["Principal"] == {"Service": "states.amazonaws.com"}
    (policy,) = role["Policies"]
    grants = {
        (action, resource)
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        for resource in (
            [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        )
    }
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:<Ref AWS::StackName>-fanout"
    children = "arn:aws:states:us-east-1:123456789012:execution:<Ref AWS::StackName>-fanout/*"
    assert grants == {
        ("lambda:InvokeFunction", "<FanoutFunction.Arn>"),
        ("states:StartExecution", machine),
        ("states:DescribeExecution", children),
        ("states:StopExecution", children),
    }
    assert stack["FanoutStateMachine"]["Properties"]["Name"] == "<Ref AWS::StackName>-fanout"


def test_the_fanout_settings_are_parameters_of_the_worker(template: dict[str, Any]) -> None:
    from vidsnap.aws.settings import ASYNC_VARIABLES, FANOUT_VARIABLES

    worker = template["Resources"]["AsyncSnapshotsFunction"]["Properties"]["Environment"]["Variables"]
    assert {name for name in worker if name.startswith("FANOUT_")} == set(FANOUT_VARIABLES)
    assert worker["FANOUT_STATE_MACHINE"] == {"Ref": "FanoutStateMachine"}
    assert FANOUT_VARIABLES <= ASYNC_VARIABLES
    for name, value in worker.items():
        if name.startswith("FANOUT_") and name != "FANOUT_STATE_MACHINE":
            parameter = template["Parameters"][value["Ref"]]
            env = {name: str(parameter["Default"])}
            defaults = Settings.from_env(env, variables=ASYNC_VARIABLES)
            assert defaults == Settings.from_env({}, variables=ASYNC_VARIABLES), name

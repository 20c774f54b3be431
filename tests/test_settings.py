"""Settings.from_env (README): every variable, defaults, and loud failures naming the variable."""

from __future__ import annotations

import json

import pytest

from vidsnap.aws.settings import (
    ASYNC_VARIABLES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_RESULTS_PREFIX,
    OBJECT_GET_VARIABLES,
    VARIABLES,
    Settings,
    UploadRule,
    get_settings,
)
from vidsnap.core.lang import parse_process

RULES = [
    {"prefix": "videos/", "suffix": ".mp4", "process": "video/snapshots,f_jpg,inter_1000,num_3"},
    {"prefix": "", "suffix": ".MOV", "process": "video/snapshots,f_png,m_key"},
]


def test_defaults_from_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.source_bucket is None
    assert s.output_bucket is None
    assert s.allowed_output_buckets == frozenset()
    assert s.allowed_topics == frozenset()
    assert s.allowed_queues == frozenset()
    assert s.task_queue_url is None
    assert s.task_table is None
    assert s.results_prefix == DEFAULT_RESULTS_PREFIX == "_vidsnap/results/"
    assert s.upload_rules == ()
    assert s.max_frames == DEFAULT_MAX_FRAMES == 1000
    assert s.max_pixels == DEFAULT_MAX_PIXELS == 4096 * 4096
    assert s.signing_secret is None
    assert s.signing_secret_parameter is None
    assert s.task_lease_seconds == 900


def test_every_variable() -> None:
    env = {
        "SOURCE_BUCKET": "src",
        "OUTPUT_BUCKET": "out",
        "ALLOWED_OUTPUT_BUCKETS": " a , b,,",
        "ALLOWED_TOPICS": "done,arn:aws:sns:us-east-1:123456789012:other",
        "ALLOWED_QUEUES": "q1, https://sqs.us-east-1.amazonaws.com/123456789012/q2",
        "TASK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/tasks",
        "TASK_TABLE": "tasks",
        "RESULTS_PREFIX": "results",
        "UPLOAD_RULES": json.dumps(RULES),
        "MAX_FRAMES": "50",
        "MAX_PIXELS": "1_000_000",
        "SIGNING_SECRET": "s3cret",
        "SIGNING_SECRET_PARAMETER": " /vidsnap/signing ",
        "TASK_LEASE_SECONDS": "120",
    }
    s = Settings.from_env(env, parse_rule=parse_process)
    assert s.source_bucket == "src"
    # The output bucket is implicitly allowed.
    assert s.allowed_output_buckets == {"a", "b", "out"}
    assert s.allowed_topics == {"done", "arn:aws:sns:us-east-1:123456789012:other"}
    assert s.allowed_queues == {"q1", "https://sqs.us-east-1.amazonaws.com/123456789012/q2"}
    assert s.task_queue_url
    assert s.task_queue_url.endswith("/tasks")
    assert s.task_table == "tasks"
    assert s.signing_secret_parameter == "/vidsnap/signing"
    assert s.results_prefix == "results/"
    assert s.upload_rules == (
        UploadRule("videos/", ".mp4", RULES[0]["process"]),
        UploadRule("", ".MOV", RULES[1]["process"]),
    )
    assert (s.max_frames, s.max_pixels, s.signing_secret, s.task_lease_seconds) == (
        50,
        1_000_000,
        "s3cret",
        120,
    )


def test_output_bucket_is_allowed_when_built_directly() -> None:
    assert Settings(output_bucket="o").allowed_output_buckets == {"o"}


def test_rule_matching() -> None:
    s = Settings.from_env({"UPLOAD_RULES": json.dumps(RULES)})
    assert s.rule_for("videos/a.mp4") == s.upload_rules[0]
    assert s.rule_for("videos/a.MP4") == s.upload_rules[0]  # suffix is case-insensitive
    assert s.rule_for("other/a.mov") == s.upload_rules[1]
    assert s.rule_for("other/a.mp4") is None
    assert s.rule_for("videos/a.mkv") is None


def test_limits() -> None:
    from vidsnap.core.engine import Limits

    limits = Settings.from_env({"MAX_FRAMES": "7", "MAX_PIXELS": "100"}).limits
    assert isinstance(limits, Limits)  # what the engine takes
    assert (limits.max_frames, limits.max_pixels) == (7, 100)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MAX_FRAMES": "lots"}, "MAX_FRAMES"),
        ({"MAX_FRAMES": "0"}, "MAX_FRAMES"),
        ({"MAX_FRAMES": "-5"}, "MAX_FRAMES"),
        ({"MAX_PIXELS": "1.5"}, "MAX_PIXELS"),
        ({"TASK_LEASE_SECONDS": "soon"}, "TASK_LEASE_SECONDS"),
        ({"RESULTS_PREFIX": "/abs/"}, "RESULTS_PREFIX"),
        ({"RESULTS_PREFIX": "a/../b/"}, "RESULTS_PREFIX"),
        ({"UPLOAD_RULES": "{not json"}, "UPLOAD_RULES"),
        ({"UPLOAD_RULES": '{"prefix": "a"}'}, "UPLOAD_RULES"),
        ({"UPLOAD_RULES": '["video/snapshots,f_jpg"]'}, "UPLOAD_RULES[0]"),
        ({"UPLOAD_RULES": '[{"prefix": "a/"}]'}, "UPLOAD_RULES[0].process"),
        ({"UPLOAD_RULES": '[{"prefix": 1, "process": "video/snapshots,f_jpg"}]'}, "UPLOAD_RULES[0].prefix"),
        ({"UPLOAD_RULES": '[{"process": "video/snapshots,f_jpg", "when": "now"}]'}, "UPLOAD_RULES[0]"),
        # Process strings are validated at load time (cold start), not at the first upload.
        ({"UPLOAD_RULES": '[{"process": "video/snapshots,f_gif"}]'}, "UPLOAD_RULES[0].process"),
        ({"UPLOAD_RULES": '[{"process": "video/snapshot,t_1000"}]'}, "UPLOAD_RULES[0].process"),
        ({"UPLOAD_RULES": '[{"process": "image/resize,w_10"}]'}, "UPLOAD_RULES[0].process"),
    ],
)
def test_bad_values_fail_loudly_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=names.replace("[", r"\[").replace("]", r"\]")):
        Settings.from_env(env, parse_rule=parse_process)


def test_rule_validation_can_be_deferred() -> None:
    s = Settings.from_env({"UPLOAD_RULES": '[{"process": "video/snapshots,f_gif"}]'})
    with pytest.raises(ValueError, match=r"UPLOAD_RULES\[0\]\.process 'video/snapshots,f_gif': "):
        s.validate_rules(parse_process)
    with pytest.raises(ValueError, match="needs an asynchronous 'video/snapshots' process"):
        Settings(upload_rules=(UploadRule(process="video/snapshot,t_0"),)).validate_rules(parse_process)


def test_settings_load_without_the_request_languages_or_the_engine() -> None:
    """Reading the settings is cheap: the request languages and the engine (PyAV) stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys, vidsnap.aws.settings as s\n"
        "s.Settings.from_env({'UPLOAD_RULES': '[{\"process\": \"video/snapshots,f_jpg\"}]'}).limits\n"
        "print(sorted(m for m in ('vidsnap.core.lang', 'vidsnap.core.engine', 'av') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "env",
    [
        {"UPLOAD_RULES": "{not json"},
        {"UPLOAD_RULES": '[{"process": "video/snapshots,zz_1"}]'},
        {"TASK_LEASE_SECONDS": "soon"},
        {"DECODERS": "many"},
    ],
)
def test_each_function_reads_only_its_own_variables(env: dict[str, str]) -> None:
    """The object-get function never reads the worker's variables: a typo there cannot fail it."""
    s = Settings.from_env({**env, "MAX_FRAMES": "9"}, variables=OBJECT_GET_VARIABLES)
    assert (s.max_frames, s.upload_rules, s.task_lease_seconds, s.decoders) == (9, (), 900, None)
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env, variables=ASYNC_VARIABLES, parse_rule=parse_process)


def test_the_function_variable_sets() -> None:
    assert OBJECT_GET_VARIABLES | ASYNC_VARIABLES == VARIABLES
    assert {"UPLOAD_RULES", "TASK_LEASE_SECONDS", "DECODERS"}.isdisjoint(OBJECT_GET_VARIABLES)
    assert {"SIGNING_SECRET", "SIGNING_SECRET_PARAMETER", "TASK_QUEUE_URL"}.isdisjoint(ASYNC_VARIABLES)
    with pytest.raises(ValueError, match="MAX_FRAME"):
        Settings.from_env({}, variables={"MAX_FRAME"})


def test_get_settings_is_cached_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("SOURCE_BUCKET", "first")
    try:
        first = get_settings()
        monkeypatch.setenv("SOURCE_BUCKET", "second")
        assert get_settings() is first
        assert first.source_bucket == "first"
    finally:
        get_settings.cache_clear()


def test_get_settings_does_not_cache_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("MAX_FRAMES", "many")
    try:
        with pytest.raises(ValueError, match="MAX_FRAMES"):
            get_settings()
        monkeypatch.setenv("MAX_FRAMES", "5")
        assert get_settings().max_frames == 5
    finally:
        get_settings.cache_clear()


def test_the_signing_secret_is_resolved_lazily_and_the_value_wins() -> None:
    """SigningSecret: a literal SIGNING_SECRET is used as is (no fetch, no clients needed); a
    parameter alone needs clients; nothing configured is "no signing"; Secrets Manager ARNs are
    told apart from SSM parameter names."""
    from vidsnap.aws.secret import SigningSecret, is_secrets_manager_arn

    class NoClients:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"no fetch expected, got a {name} client request")

    both = Settings(signing_secret="local", signing_secret_parameter="/vidsnap/signing")
    secret = SigningSecret.from_settings(both, NoClients())
    assert (secret.configured, secret()) == (True, "local")
    none = SigningSecret.from_settings(Settings(), None)
    assert (none.configured, none()) == (False, None)
    with pytest.raises(ValueError, match="SIGNING_SECRET_PARAMETER"):
        SigningSecret.from_settings(Settings(signing_secret_parameter="/vidsnap/signing"), None)
    assert is_secrets_manager_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:vidsnap-AbCdEf")
    assert is_secrets_manager_arn("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x")
    for name in ("/vidsnap/signing", "vidsnap", "arn:aws:ssm:us-east-1:123456789012:parameter/x"):
        assert not is_secrets_manager_arn(name), name

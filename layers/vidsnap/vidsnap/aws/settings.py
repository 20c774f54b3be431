"""Typed configuration from environment variables (README: Configuration), parsed once per process.

Every variable is optional at parse time except where a value is present but malformed: a bad
integer, a bad ``UPLOAD_RULES`` document or an upload rule whose process string does not parse
fails loudly with a :class:`ValueError` naming the variable, so a misconfigured function dies at
cold start instead of failing every task later.

Each function parses only the variables it reads (:data:`OBJECT_GET_VARIABLES`,
:data:`ASYNC_VARIABLES`): ``UPLOAD_RULES``, ``TASK_LEASE_SECONDS`` and ``DECODERS`` are the
asynchronous worker's, so a typo in one of them fails the worker's cold start, never every
synchronous snapshot.

=========================  ==========================================================  ==============
variable                   meaning                                                     default
=========================  ==========================================================  ==============
``SOURCE_BUCKET``          the only bucket sources are read from                       unset
``OUTPUT_BUCKET``          default bucket for outputs (always allowed)                 unset
``ALLOWED_OUTPUT_BUCKETS`` comma-separated extra buckets a ``sys/saveas`` may name     empty
``ALLOWED_TOPICS``         comma-separated SNS topic names or ARNs                     empty
``ALLOWED_QUEUES``         comma-separated SQS queue names, URLs or ARNs               empty
``TASK_QUEUE_URL``         the queue async tasks are put on                            unset
``TASK_TABLE``             DynamoDB table of task records                              unset
``RESULTS_PREFIX``         key prefix for oversized sync results; never re-triggers   ``_vidsnap/results/``
``UPLOAD_RULES``           JSON list of ``{"prefix","suffix","process"}``              ``[]``
``MAX_FRAMES``             frames per task (``num`` above it is rejected)              1000
``MAX_PIXELS``             output width × height                                       4096 × 4096
``MAX_SOURCE_PIXELS``      source picture width × height (decompression bombs → 413)   8192 × 8192
``DECODE_BUDGET_FRAMES``   frames decoded to reach one requested frame (1080p frames)  6000
``SIGNING_SECRET``         HMAC secret for unauthenticated function-URL requests       unset
``TASK_LEASE_SECONDS``     how long a Running task record is owned by one invocation   900
``DECODERS``               decoders one job runs at once (``vidsnap.core.parallel``)         one per core
``RESUME_MARGIN_SECONDS``  a task stops and checkpoints when its invocation has less     30
                           time left than this (docs/LONG_TASKS.md)
``FANOUT_STATE_MACHINE``   ARN of the Step Functions state machine that runs a long    unset (never
                           task's windows; unset: every task runs in the worker        fans out)
``FANOUT_THRESHOLD_SECONDS`` a task whose estimated decoding exceeds this fans out (0:  300
                           whenever it can be windowed; decimals allowed)
``FANOUT_WINDOW_SECONDS``  the estimated decoding of one window, at most                300
``FANOUT_MAX_WINDOWS``     windows of one task, at most                                1000
``FANOUT_MAX_CONCURRENCY`` windows running at once (the Distributed Map's)             100
``FANOUT_DECODE_MPX_PER_SECOND`` decoding speed the estimate assumes (megapixels of     150
                           decoded picture per second of one invocation)
=========================  ==========================================================  ==============

The ``FANOUT_*`` variables (docs/LONG_TASKS.md, fan-out) are the asynchronous worker's: the
estimate is the decoding the task's plan needs (the frames decoded, from the container index, times
their pixels) over ``FANOUT_DECODE_MPX_PER_SECOND``.

``SIGNING_SECRET_PARAMETER`` (unset by default) is how a deployment gives the secret (template.yaml):
where it is kept, an SSM parameter name or a Secrets Manager ARN; only that name is in the
environment, and :class:`vidsnap.aws.secret.SigningSecret` fetches the value once, on first use.
``SIGNING_SECRET`` (the value itself) is for local runs and tests, and wins when both are set.

``TASK_LEASE_SECONDS`` and ``DECODERS`` are vidsnap extensions. ``TASK_LEASE_SECONDS`` defaults to
the Lambda maximum timeout (15 min), so a record left Running by a crashed invocation can be taken
over once that much time has passed (see :mod:`vidsnap.aws.taskstore`). ``DECODERS`` (≥ 1) caps the
decoders an asynchronous job runs on separate cores; Lambda gives a function more than one vCPU
from 1,769 MB of memory up.

``MAX_SOURCE_PIXELS`` and ``DECODE_BUDGET_FRAMES`` are vidsnap extensions too (docs/LIMITS.md).
``MAX_SOURCE_PIXELS`` refuses, from the stream header and before anything is decoded, a source
whose picture has more pixels, or more than that many pixels' worth of 4-byte pixels (a 16-bit RGBA
PNG takes 8 bytes per pixel, so half the pixels): 8192 × 8192 admits every real camera and 8K
video, and bounds one decoded picture to 256 MiB, well inside the synchronous function's 2 GB
(an 8192² H.264 source peaks near 340 MB; a 16000² PNG would take 1.5 GB, 16-bit RGBA 4 GB).
``DECODE_BUDGET_FRAMES`` bounds the frames decoded to reach one requested frame from the keyframe
before it (counted at 1080p: a 4K picture gets a quarter as many); beyond it the request fails
with 422 ``DecodeBudgetExceeded`` instead of running into the function's timeout.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from vidsnap.core.errors import VidsnapError
from vidsnap.core.plan import (
    DEFAULT_DECODE_BUDGET_FRAMES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SOURCE_PIXELS,
    Limits,
    Task,
)

__all__ = [
    "ASYNC_VARIABLES",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_RESULTS_PREFIX",
    "DEFAULT_RESUME_MARGIN_SECONDS",
    "DEFAULT_TASK_LEASE_SECONDS",
    "FANOUT_VARIABLES",
    "OBJECT_GET_VARIABLES",
    "VARIABLES",
    "Fanout",
    "ParseProcess",
    "Settings",
    "UploadRule",
    "get_settings",
]

DEFAULT_RESULTS_PREFIX = "_vidsnap/results/"
DEFAULT_TASK_LEASE_SECONDS = 900
DEFAULT_RESUME_MARGIN_SECONDS = 30

DEFAULT_FANOUT_THRESHOLD_SECONDS = 300
DEFAULT_FANOUT_WINDOW_SECONDS = 300
DEFAULT_FANOUT_MAX_WINDOWS = 1000
DEFAULT_FANOUT_MAX_CONCURRENCY = 100
DEFAULT_FANOUT_DECODE_MPX_PER_SECOND = 150
#: The variables of the fan-out of long tasks (the asynchronous worker's).
FANOUT_VARIABLES = frozenset(
    {
        "FANOUT_STATE_MACHINE",
        "FANOUT_THRESHOLD_SECONDS",
        "FANOUT_WINDOW_SECONDS",
        "FANOUT_MAX_WINDOWS",
        "FANOUT_MAX_CONCURRENCY",
        "FANOUT_DECODE_MPX_PER_SECOND",
    }
)

#: Every variable of the table above.
VARIABLES = frozenset(
    {
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
        "MAX_SOURCE_PIXELS",
        "DECODE_BUDGET_FRAMES",
        "SIGNING_SECRET",
        "SIGNING_SECRET_PARAMETER",
        "TASK_LEASE_SECONDS",
        "DECODERS",
        "RESUME_MARGIN_SECONDS",
        *FANOUT_VARIABLES,
    }
)
#: What the object-get function reads (snapshots, Object Lambda, queuing tasks, task records).
OBJECT_GET_VARIABLES = VARIABLES - {
    "UPLOAD_RULES",
    "TASK_LEASE_SECONDS",
    "DECODERS",
    "RESUME_MARGIN_SECONDS",
    *FANOUT_VARIABLES,
}
#: What the asynchronous function reads (uploads and task messages).
ASYNC_VARIABLES = VARIABLES - {"SIGNING_SECRET", "SIGNING_SECRET_PARAMETER", "TASK_QUEUE_URL"}

#: Parses a process string (:func:`vidsnap.core.lang.parse_process`): a ``SnapshotRequest`` or a
#: :class:`~vidsnap.core.plan.Task`, or a :class:`~vidsnap.core.errors.VidsnapError` when it is bad.
#: Passed in, so that reading the settings never loads the request languages.
ParseProcess = Callable[[str], object]


@dataclass(frozen=True)
class UploadRule:
    """What to do with an uploaded object whose key starts with ``prefix`` and ends with ``suffix``."""

    prefix: str = ""
    suffix: str = ""
    process: str = ""

    def matches(self, key: str) -> bool:
        """True when ``key`` has this rule's prefix and suffix (suffix compared case-insensitively)."""
        # Suffixes are file extensions in practice (".mp4" vs ".MP4" from phones): case-insensitive.
        return key.startswith(self.prefix) and key.lower().endswith(self.suffix.lower())


@dataclass(frozen=True)
class Fanout:
    """When and how a long task is split into windows run by the state machine (``FANOUT_*``)."""

    #: The state machine's ARN; None: tasks never fan out.
    state_machine: str | None = None
    #: Seconds of one invocation (estimated) above which a task fans out; 0: whenever it can.
    threshold_seconds: float = DEFAULT_FANOUT_THRESHOLD_SECONDS
    window_seconds: float = DEFAULT_FANOUT_WINDOW_SECONDS
    max_windows: int = DEFAULT_FANOUT_MAX_WINDOWS
    max_concurrency: int = DEFAULT_FANOUT_MAX_CONCURRENCY
    decode_mpx_per_second: float = DEFAULT_FANOUT_DECODE_MPX_PER_SECOND


@dataclass(frozen=True)
class Settings:
    """The configuration of one process; build it with :meth:`from_env` or :func:`get_settings`."""

    source_bucket: str | None = None
    output_bucket: str | None = None
    #: Buckets outputs may be written to; always includes ``output_bucket`` when it is set.
    allowed_output_buckets: frozenset[str] = field(default_factory=frozenset)
    allowed_topics: frozenset[str] = field(default_factory=frozenset)
    allowed_queues: frozenset[str] = field(default_factory=frozenset)
    task_queue_url: str | None = None
    task_table: str | None = None
    results_prefix: str = DEFAULT_RESULTS_PREFIX
    upload_rules: tuple[UploadRule, ...] = ()
    max_frames: int = DEFAULT_MAX_FRAMES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    decode_budget_frames: int = DEFAULT_DECODE_BUDGET_FRAMES
    signing_secret: str | None = None
    #: SSM parameter name or Secrets Manager ARN of the signing secret (fetched lazily, not here).
    signing_secret_parameter: str | None = None
    task_lease_seconds: int = DEFAULT_TASK_LEASE_SECONDS
    #: None: one per core (at most 4), the default.
    decoders: int | None = None
    #: A task stops between frames and checkpoints when its invocation has less left (seconds).
    resume_margin_seconds: int = DEFAULT_RESUME_MARGIN_SECONDS
    fanout: Fanout = field(default_factory=Fanout)

    def __post_init__(self) -> None:
        # The output bucket is implicitly allowed, however the object was built.
        if self.output_bucket and self.output_bucket not in self.allowed_output_buckets:
            object.__setattr__(
                self, "allowed_output_buckets", self.allowed_output_buckets | {self.output_bucket}
            )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] = os.environ,
        *,
        variables: Collection[str] = VARIABLES,
        parse_rule: ParseProcess | None = None,
    ) -> Settings:
        """Parse the documented ``variables`` from ``env``; raise :class:`ValueError` naming a bad one.

        Empty values count as unset, and so do variables left out of ``variables`` (a function
        never reads, so never refuses, another function's variables). With ``parse_rule``, every
        upload rule's process string is parsed now (:meth:`validate_rules`), so a typo fails the
        cold start.
        """
        unknown = set(variables) - VARIABLES
        if unknown:
            raise ValueError(f"no such setting: {', '.join(sorted(unknown))}")
        env = {name: env[name] for name in variables if name in env}
        settings = cls(
            source_bucket=_str(env, "SOURCE_BUCKET"),
            output_bucket=_str(env, "OUTPUT_BUCKET"),
            allowed_output_buckets=_list(env, "ALLOWED_OUTPUT_BUCKETS"),
            allowed_topics=_list(env, "ALLOWED_TOPICS"),
            allowed_queues=_list(env, "ALLOWED_QUEUES"),
            task_queue_url=_str(env, "TASK_QUEUE_URL"),
            task_table=_str(env, "TASK_TABLE"),
            results_prefix=_results_prefix(env),
            upload_rules=_rules(env),
            max_frames=_int(env, "MAX_FRAMES", DEFAULT_MAX_FRAMES),
            max_pixels=_int(env, "MAX_PIXELS", DEFAULT_MAX_PIXELS),
            max_source_pixels=_int(env, "MAX_SOURCE_PIXELS", DEFAULT_MAX_SOURCE_PIXELS),
            decode_budget_frames=_int(env, "DECODE_BUDGET_FRAMES", DEFAULT_DECODE_BUDGET_FRAMES),
            signing_secret=_str(env, "SIGNING_SECRET"),
            signing_secret_parameter=_str(env, "SIGNING_SECRET_PARAMETER"),
            task_lease_seconds=_int(env, "TASK_LEASE_SECONDS", DEFAULT_TASK_LEASE_SECONDS),
            decoders=_int(env, "DECODERS", 0) or None,
            resume_margin_seconds=_int(
                env, "RESUME_MARGIN_SECONDS", DEFAULT_RESUME_MARGIN_SECONDS, minimum=0
            ),
            fanout=Fanout(
                state_machine=_str(env, "FANOUT_STATE_MACHINE"),
                threshold_seconds=_seconds(
                    env, "FANOUT_THRESHOLD_SECONDS", DEFAULT_FANOUT_THRESHOLD_SECONDS, zero=True
                ),
                window_seconds=_seconds(env, "FANOUT_WINDOW_SECONDS", DEFAULT_FANOUT_WINDOW_SECONDS),
                max_windows=_int(env, "FANOUT_MAX_WINDOWS", DEFAULT_FANOUT_MAX_WINDOWS, minimum=2),
                max_concurrency=_int(env, "FANOUT_MAX_CONCURRENCY", DEFAULT_FANOUT_MAX_CONCURRENCY),
                decode_mpx_per_second=_seconds(
                    env, "FANOUT_DECODE_MPX_PER_SECOND", DEFAULT_FANOUT_DECODE_MPX_PER_SECOND
                ),
            ),
        )
        if parse_rule is not None:
            settings.validate_rules(parse_rule)
        return settings

    def validate_rules(self, parse: ParseProcess) -> None:
        """Parse every upload rule's process string with ``parse``; :class:`ValueError` naming
        UPLOAD_RULES if one is bad."""
        for i, rule in enumerate(self.upload_rules):
            try:
                parsed = parse(rule.process)
            except VidsnapError as exc:
                raise ValueError(f"UPLOAD_RULES[{i}].process {rule.process!r}: {exc.message}") from exc
            # An upload produces files, never an HTTP answer: only the async form makes sense.
            if not isinstance(parsed, Task):
                raise ValueError(
                    f"UPLOAD_RULES[{i}].process {rule.process!r}: an upload rule needs an asynchronous "
                    "'video/snapshots' process, not 'video/snapshot'"
                )

    def rule_for(self, key: str) -> UploadRule | None:
        """The first upload rule matching ``key``, or None."""
        return next((rule for rule in self.upload_rules if rule.matches(key)), None)

    @property
    def limits(self) -> Limits:
        """The engine limits (frames per task, output and source pixels, decode budget, decoders)."""
        return Limits(
            max_frames=self.max_frames,
            max_pixels=self.max_pixels,
            max_source_pixels=self.max_source_pixels,
            decode_budget_frames=self.decode_budget_frames,
            decoders=self.decoders,
        )


@functools.lru_cache(maxsize=4)
def get_settings(variables: frozenset[str] = VARIABLES, parse_rule: ParseProcess | None = None) -> Settings:
    """The process-wide settings of ``variables``, parsed from ``os.environ`` on first use (cold
    start); see :meth:`Settings.from_env`. A failure is not cached: the next call tries again."""
    return Settings.from_env(os.environ, variables=variables, parse_rule=parse_rule)


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _list(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _seconds(env: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    """A positive number (``zero``: or 0), decimals allowed."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _results_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("RESULTS_PREFIX", "").strip() or DEFAULT_RESULTS_PREFIX
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise ValueError(f"RESULTS_PREFIX must be a relative key prefix, got {prefix!r}")
    # A prefix is a folder: "results" would also match "results-of-something/clip.mp4".
    return prefix if prefix.endswith("/") else prefix + "/"


def _rules(env: Mapping[str, str]) -> tuple[UploadRule, ...]:
    raw = env.get("UPLOAD_RULES", "").strip()
    if not raw:
        return ()
    try:
        doc: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"UPLOAD_RULES is not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise ValueError("UPLOAD_RULES must be a JSON list of {prefix, suffix, process} objects")
    rules = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise ValueError(f"UPLOAD_RULES[{i}] must be an object, got {type(item).__name__}")
        unknown = set(item) - {"prefix", "suffix", "process"}
        if unknown:
            raise ValueError(f"UPLOAD_RULES[{i}] has unknown fields: {', '.join(sorted(unknown))}")
        for name in ("prefix", "suffix", "process"):
            if not isinstance(item.get(name, ""), str):
                raise ValueError(f"UPLOAD_RULES[{i}].{name} must be a string")
        if not item.get("process", "").strip():
            raise ValueError(f"UPLOAD_RULES[{i}].process is required")
        rules.append(UploadRule(item.get("prefix", ""), item.get("suffix", ""), item["process"].strip()))
    return tuple(rules)

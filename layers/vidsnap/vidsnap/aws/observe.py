"""Structured logs and metrics shared by both functions (powertools Logger and Metrics, EMF).

Metrics are emitted as CloudWatch embedded-metric-format lines on stdout only inside Lambda:
outside it (the CLI, the tests, the demo) such lines would pollute stdout, so they are skipped.
Emitting never raises: metrics must not fail a request or a task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="vidsnap")
metrics = Metrics(namespace="vidsnap", service="vidsnap")

__all__ = ["MetricUnit", "emit", "emit_snapshot_metrics", "logger", "metrics", "metrics_enabled"]


def metrics_enabled() -> bool:
    """True inside Lambda unless ``POWERTOOLS_METRICS_DISABLED`` is set."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true"):
        return False
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def emit(values: Mapping[str, tuple[MetricUnit, float]]) -> None:
    """Publish ``{name: (unit, value)}`` as one EMF document (inside Lambda only; never raises)."""
    if not metrics_enabled():
        return
    try:
        for name, (unit, value) in values.items():
            metrics.add_metric(name=name, unit=unit, value=value)
        metrics.flush_metrics()
    except Exception as exc:
        logger.warning("metrics not emitted", extra={"error": str(exc)})


def emit_snapshot_metrics(*, bytes_read: int, render_ms: float) -> None:
    """Metrics of one rendered synchronous snapshot (HTTP or Object Lambda): FramesWritten,
    BytesRead (source bytes read for it) and SnapshotLatencyMs (inside Lambda only; never raises)."""
    emit(
        {
            "FramesWritten": (MetricUnit.Count, 1),
            "BytesRead": (MetricUnit.Bytes, float(bytes_read)),
            "SnapshotLatencyMs": (MetricUnit.Milliseconds, render_ms),
        }
    )

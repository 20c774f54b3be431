"""Task records: deterministic ids, conditional begin (idempotency), leases, progress, finish, TTL."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from moto import mock_aws

from vidsnap.aws.clients import Clients
from vidsnap.aws.notify import Notification
from vidsnap.aws.taskstore import (
    TTL_SECONDS,
    TaskStore,
    create_table,
    from_dynamo,
    notification_from_record,
    to_dynamo,
)
from vidsnap.core.plan import ImageSpec, NotifyTarget, Selection, SnapshotJob, SourceRef, Task, task_id

TABLE = "tasks"


def _task(interval: int = 1000, **kw: Any) -> Task:
    job = SnapshotJob(Selection(interval_ms=Fraction(interval), num=3), ImageSpec(format="jpg"))
    return Task((job,), **kw)


def test_task_id_is_deterministic_and_sensitive_to_every_input() -> None:
    src = SourceRef("clip.mp4", "src")
    base = task_id(src, '"etag1"', _task())
    assert base == task_id(src, "etag1", _task())  # quotes around ETags do not matter
    assert base.startswith("vs-")
    assert len(base) == 3 + 32
    others = {
        task_id(SourceRef("clip.mp4", "other"), "etag1", _task()),
        task_id(SourceRef("clip2.mp4", "src"), "etag1", _task()),
        task_id(src, "etag2", _task()),
        task_id(SourceRef("clip.mp4", "src", "v1"), "etag1", _task()),
        task_id(src, "etag1", _task(interval=500)),
        task_id(src, "etag1", _task(notify=NotifyTarget("sns", "t"))),
        task_id(src, "etag1", _task(user_data="x")),
        task_id(src, None, _task()),
    }
    assert base not in others
    assert len(others) == 8
    # A version id identifies the object on its own: the ETag is then not needed.
    versioned = SourceRef("clip.mp4", "src", "v1")
    assert task_id(versioned, "a", _task()) == task_id(versioned, None, _task())


def test_dynamo_conversions_round_trip() -> None:
    value = {"a": 1.5, "b": [1, 2.25, {"c": 3}], "d": None, "e": "x"}
    assert from_dynamo(to_dynamo(value)) == value
    assert isinstance(from_dynamo(to_dynamo({"n": 3}))["n"], int)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clients(aws_env: None) -> Iterator[Clients]:
    with mock_aws():
        c = Clients(region="us-east-1")
        create_table(c.dynamodb_client, TABLE)
        yield c


def _store(clients: Clients, clock: Clock, **kw: Any) -> TaskStore:
    return TaskStore(clients, TABLE, lease_seconds=900, clock=clock, **kw)


OUTPUTS = [{"URI": "s3://o/1.jpg", "TimeMs": 333.667, "Width": 160, "Height": 90, "Bytes": 10}]


def _note(task: str, status: str, *, code: str = "", message: str = "", **kw: Any) -> Notification:
    """A notification of ``task`` (what :meth:`TaskStore.finish` records)."""
    times = {"start_time": "2025-01-01T00:00:00.000Z", "end_time": "2025-01-01T00:00:05.000Z"}
    return Notification(task, status, code, message, **{"request_id": "", **times, **kw})  # type: ignore[arg-type]


def test_begin_then_finish_then_get(clients: Clients) -> None:
    clock = Clock()
    store = _store(clients, clock)
    request = {"Source": "s3://src/clip.mp4", "Plan": {"interval": "1000", "ratio": 0.5}}
    assert store.begin("vs-1", request, ["s3://src/clip.mp4"], RequestId="r1", UserData="u") == "new"
    record = store.get("vs-1")
    assert record is not None
    assert record["Status"] == "Running"
    assert record["Progress"] == 0
    assert record["Request"] == request
    assert record["ExpiresAt"] == int(clock.now) + TTL_SECONDS == int(clock.now) + 7 * 24 * 3600
    assert record["StartTime"].endswith("Z")
    clock.now += 5
    note = _note(
        "vs-1", "Succeeded", code="Success", message="1 frame(s) written", outputs=tuple(OUTPUTS),
        warnings=("w",), request_id="r1", user_data="u", sources=("s3://src/clip.mp4",),
    )  # fmt: skip
    store.finish(note, notified="msg-1")
    record = store.get("vs-1")
    assert record is not None
    assert record["Status"] == "Succeeded"
    assert record["Progress"] == 100
    assert record["Outputs"] == OUTPUTS  # floats survive the Decimal round trip
    assert isinstance(record["Outputs"][0]["Width"], int)
    assert record["Warnings"] == ["w"]
    assert record["Notified"] == "msg-1"
    assert record["EndTime"] == "2025-01-01T00:00:05.000Z"
    rebuilt = notification_from_record(record)
    assert rebuilt == note  # the very notification that was recorded
    assert rebuilt.as_message()["Outputs"] == OUTPUTS
    assert rebuilt.as_message()["Sources"] == [{"URI": "s3://src/clip.mp4"}]
    assert rebuilt.user_data == "u"
    assert store.get("vs-missing") is None


def test_redelivery_is_one_task(clients: Clients) -> None:
    clock = Clock()
    store = _store(clients, clock)
    assert store.begin("vs-1", {}, []) == "new"
    assert store.begin("vs-1", {}, []) == "running"  # a second invocation while the first runs
    store.finish(_note("vs-1", "Succeeded", code="Success", message=""))
    assert store.begin("vs-1", {}, []) == "succeeded"
    assert store.begin("vs-2", {}, []) == "new"
    store.finish(_note("vs-2", "Failed", code="MediaDecodeFailed", message="bad"))
    assert store.begin("vs-2", {}, []) == "failed"
    record = store.get("vs-2")
    assert record is not None
    assert record["Progress"] == 0
    assert record["Code"] == "MediaDecodeFailed"


def test_a_failed_task_can_be_retried_once(clients: Clients) -> None:
    store = _store(clients, Clock())
    store.begin("vs-1", {}, [])
    store.finish(_note("vs-1", "Failed", code="X", message="m"))
    assert store.retry("vs-1") is True
    assert store.retry("vs-1") is False  # someone else already took it
    record = store.get("vs-1")
    assert record is not None
    assert record["Status"] == "Running"
    assert "Code" not in record
    assert record["Attempts"] == 2


def test_a_stale_running_task_is_taken_over(clients: Clients) -> None:
    clock = Clock()
    store = _store(clients, clock)
    assert store.begin("vs-1", {}, []) == "new"
    clock.now += 899
    assert store.begin("vs-1", {}, []) == "running"
    clock.now += 2  # past the lease: the first invocation died
    assert store.begin("vs-1", {}, []) == "new"
    assert store.begin("vs-1", {}, []) == "running"  # exactly one taker
    record = store.get("vs-1")
    assert record is not None
    assert record["Attempts"] == 2


def test_release_lets_the_retry_take_over_at_once(clients: Clients) -> None:
    clock = Clock()
    store = _store(clients, clock)
    store.begin("vs-1", {}, [])
    store.release("vs-1", "ServiceUnavailable", "SlowDown")
    record = store.get("vs-1")
    assert record is not None
    assert record["Status"] == "Running"
    assert record["LastCode"] == "ServiceUnavailable"
    clock.now += 1
    assert store.begin("vs-1", {}, []) == "new"


def test_progress_is_throttled(clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 100.5, 101.0, 102.5, 103.0])
    monkeypatch.setattr("vidsnap.aws.taskstore.time.monotonic", lambda: next(ticks))
    store = _store(clients, Clock())
    store.begin("vs-1", {}, [])
    written = [store.progress("vs-1", pct) for pct in (10, 20, 30, 40.7, 50)]
    assert written == [True, False, False, True, False]
    record = store.get("vs-1")
    assert record is not None
    assert record["Progress"] == 40


def test_progress_never_touches_a_finished_task_and_never_raises(clients: Clients) -> None:
    store = _store(clients, Clock(), progress_interval=0)
    store.begin("vs-1", {}, [])
    store.finish(_note("vs-1", "Succeeded", code="Success", message=""))
    assert store.progress("vs-1", 10) is False  # conditional on Running: logged, not raised
    record = store.get("vs-1")
    assert record is not None
    assert record["Progress"] == 100
    assert TaskStore(clients, "no-such-table").progress("vs-1", 5) is False


def test_finish_rejects_unknown_status(clients: Clients) -> None:
    with pytest.raises(ValueError, match="status"):
        _store(clients, Clock()).finish(_note("vs-1", "Done"))


def test_missing_table_is_an_error(clients: Clients) -> None:
    from vidsnap.core.errors import NotFound

    with pytest.raises(NotFound):
        TaskStore(clients, "no-such-table").begin("vs-1", {}, [])

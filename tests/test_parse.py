"""The request languages → plan (README: Request languages; README: HTTP API, errors): vidsnap.core.lang."""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from vidsnap.core.errors import (
    EC_FORMAT,
    EC_HEIGHT,
    EC_MALFORMED,
    EC_MODE,
    EC_ROTATE,
    EC_TIME,
    EC_WIDTH,
    BadRequest,
    NotAllowed,
    NotSupportedYet,
    VidsnapError,
)
from vidsnap.core.lang import parse_process, parse_sync, parse_task
from vidsnap.core.plan import (
    DEFAULT_KEY_TEMPLATE,
    FirstFrame,
    ImageSpec,
    NotifyTarget,
    OutputTarget,
    Selection,
    SnapshotJob,
    SnapshotRequest,
    SourceRef,
    Task,
)


def b64(text: str | bytes, *, pad: bool = False, std: bool = False) -> str:
    raw = text.encode() if isinstance(text, str) else text
    enc = (base64.standard_b64encode if std else base64.urlsafe_b64encode)(raw).decode()
    return enc if pad else enc.rstrip("=")


def async_task(text: str) -> Task:
    result = parse_process(text)
    assert isinstance(result, Task)
    return result


def only_job(task: Task) -> SnapshotJob:
    assert len(task.jobs) == 1
    return task.jobs[0]


# =====================================================================================================
# Synchronous video/snapshot


def test_sync_seed_example() -> None:
    req = parse_sync("video/snapshot,t_7000,f_jpg,w_800,h_600")
    assert req == SnapshotRequest(
        time_ms=7000, exact=True, image=ImageSpec(format="jpg", width=800, height=600)
    )


def test_sync_docs_example_with_fast_and_ar() -> None:
    req = parse_sync("video/snapshot,t_7000,f_jpg,w_800,h_600,m_fast,ar_auto")
    assert req.time_ms == 7000
    assert req.exact is False
    assert req.image == ImageSpec(format="jpg", width=800, height=600, ar="auto")


def test_sync_defaults() -> None:
    assert parse_sync("video/snapshot") == SnapshotRequest()
    req = parse_sync("video/snapshot,t_0")
    assert (req.time_ms, req.exact, req.image) == (0, True, ImageSpec())


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("t_0", "time_ms", 0),
        ("t_007", "time_ms", 7),  # leading zeros are digits too
        ("t_" + "0" * 5000 + "42", "time_ms", 42),
        ("t_2147483647", "time_ms", 2147483647),
        ("w_0", "width", 0),
        ("w_4096", "width", 4096),
        ("h_1", "height", 1),
        ("h_4096", "height", 4096),
        ("f_jpg", "format", "jpg"),
        ("f_jpeg", "format", "jpg"),
        ("f_png", "format", "png"),
        ("f_PNG", "format", "png"),
        ("f_webp", "format", "webp"),
        ("f_avif", "format", "avif"),
        ("ar_auto", "ar", "auto"),
        ("ar_h", "ar", "h"),
        ("ar_w", "ar", "w"),
        ("m_fast", "exact", False),
        ("m_FAST", "exact", False),
    ],
)
def test_sync_every_parameter(text: str, field: str, value: object) -> None:
    req = parse_sync(f"video/snapshot,{text}")
    target = req if field in ("time_ms", "exact") else req.image
    assert getattr(target, field) == value


def test_sync_through_parse_process() -> None:
    assert parse_process("video/snapshot,t_1000,f_png") == parse_sync("video/snapshot,t_1000,f_png")


@pytest.mark.parametrize(
    "text",
    [
        "video%2Fsnapshot%2Ct_1000%2Cf_png",
        "video/snapshot%2Ct_1000%2cf_png",
        "x-oss-process=video/snapshot,t_1000,f_png",
        "  video/snapshot,t_1000,f_png\n",
    ],
)
def test_sync_encoded_and_prefixed(text: str) -> None:
    assert parse_sync(text) == SnapshotRequest(time_ms=1000, image=ImageSpec(format="png"))


# =====================================================================================================
# Asynchronous video/snapshots


def test_async_seed_example() -> None:
    task = async_task("video/snapshots,ss_11000,f_png,pw_50,ph_50,num_5,inter_4000")
    job = only_job(task)
    assert job.selection == Selection(
        mode="inter", start_ms=Fraction(11000), interval_ms=Fraction(4000), num=5
    )
    assert job.image == ImageSpec(format="png", pw=Fraction(50), ph=Fraction(50))
    assert job.output == OutputTarget(bucket=None, key_template=DEFAULT_KEY_TEMPLATE)
    assert (task.source, task.notify, task.user_data, task.style) == (None, None, None, "oss")


def test_async_defaults() -> None:
    job = only_job(async_task("video/snapshots,f_jpg"))
    assert job.selection == Selection()
    assert job.image == ImageSpec(format="jpg")
    assert job.output == OutputTarget()


@pytest.mark.parametrize(
    ("text", "where", "field", "value"),
    [
        ("ss_0", "sel", "start_ms", 0),
        ("ss_2147483647", "sel", "start_ms", 2147483647),
        ("m_inter", "sel", "mode", "inter"),
        ("m_key", "sel", "mode", "key"),
        ("m_avg", "sel", "mode", "avg"),
        ("m_dhash", "sel", "mode", "dhash"),
        ("m_DHASH", "sel", "mode", "dhash"),
        ("inter_0", "sel", "interval_ms", 0),
        ("inter_250", "sel", "interval_ms", 250),
        ("num_0", "sel", "num", 0),
        ("num_100000", "sel", "num", 100000),
        ("thr_0", "sel", "threshold", 0),
        ("thr_100", "sel", "threshold", 100),
        ("w_32", "img", "width", 32),
        ("w_4096", "img", "width", 4096),
        ("h_720", "img", "height", 720),
        ("pw_1", "img", "pw", 1),
        ("ph_200", "img", "ph", 200),
        ("scaletype_stretch", "img", "scale_type", "stretch"),
        ("scaletype_crop", "img", "scale_type", "crop"),
        ("scaletype_fill", "img", "scale_type", "fill"),
        ("scaletype_fit", "img", "scale_type", "fit"),
    ],
)
def test_async_every_parameter(text: str, where: str, field: str, value: object) -> None:
    job = only_job(async_task(f"video/snapshots,f_png,{text}"))
    target = job.selection if where == "sel" else job.image
    assert getattr(target, field) == value


@pytest.mark.parametrize(
    ("f", "fmt"), [("jpg", "jpg"), ("jpeg", "jpg"), ("png", "png"), ("webp", "webp"), ("avif", "avif")]
)
def test_async_formats(f: str, fmt: str) -> None:
    assert only_job(async_task(f"video/snapshots,f_{f}")).image.format == fmt


def test_oss_docs_style_async_example() -> None:
    o = b64("{barename}/frame_{index}.{autoext}")
    b = b64("out-bucket")
    topic = b64("arn:aws:sns:us-east-1:123456789012:snapshots-done")
    task = async_task(
        f"video/snapshots,ss_1000,f_jpg,m_key,num_10,w_640|sys/saveas,o_{o},b_{b}/notify,topic_{topic}"
    )
    job = only_job(task)
    assert job.selection == Selection(mode="key", start_ms=Fraction(1000), num=10)
    assert job.image == ImageSpec(format="jpg", width=640)
    assert job.output == OutputTarget("out-bucket", "{barename}/frame_{index}.{autoext}")
    assert task.notify == NotifyTarget("sns", "arn:aws:sns:us-east-1:123456789012:snapshots-done")


@pytest.mark.parametrize("sep", ["/", "|"])
def test_notify_separator_slash_or_pipe(sep: str) -> None:
    task = async_task(
        f"video/snapshots,f_jpg|sys/saveas,o_{b64('x/{index}.jpg')}{sep}notify,topic_{b64('done')}"
    )
    assert task.notify == NotifyTarget("sns", "done")
    assert only_job(task).output == OutputTarget(None, "x/{index}.jpg")


def test_notify_without_saveas_and_before_it() -> None:
    assert async_task(f"video/snapshots,f_jpg|notify,queue_{b64('jobs')}").notify == NotifyTarget(
        "sqs", "jobs"
    )
    task = async_task(f"video/snapshots,f_jpg|notify,queue_{b64('jobs')}|sys/saveas,o_{b64('a.jpg')}")
    assert task.notify == NotifyTarget("sqs", "jobs")
    assert only_job(task).output.key_template == "a.jpg"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("topic", "done"),
        ("topic", "done.fifo"),
        ("topic", "arn:aws:sns:eu-west-1:123456789012:done"),
        ("topic", "arn:aws-cn:sns:cn-north-1:123456789012:done"),
        ("queue", "jobs"),
        ("queue", "jobs.fifo"),
        ("queue", "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"),
        ("queue", "http://localhost:5000/123456789012/jobs"),
        ("queue", "arn:aws:sqs:eu-west-1:123456789012:jobs"),
    ],
)
def test_notify_targets(kind: str, value: str) -> None:
    task = async_task(f"video/snapshots,f_jpg|notify,{kind}_{b64(value)}")
    assert task.notify == NotifyTarget("sns" if kind == "topic" else "sqs", value)


@pytest.mark.parametrize(
    "encoded",
    [
        b64("out/{index}.jpg"),
        b64("out/{index}.jpg", pad=True),
        b64("out/{index}.jpg\n"),  # `echo "out/{index}.jpg" | base64`
        b64("out/{index}.jpg\n", pad=True),
        b64("out/{index}.jpg  \r\n"),
        b64("out/{index}.jpg", std=True, pad=True),
    ],
)
def test_base64_variants(encoded: str) -> None:
    task = async_task(f"video/snapshots,f_jpg|sys/saveas,o_{encoded}")
    assert only_job(task).output.key_template == "out/{index}.jpg"


def test_base64_standard_alphabet() -> None:
    name = "~~~>>>???.jpg"
    std, url = b64(name, std=True), b64(name)
    assert "+" in std
    assert "/" in std
    assert std != url
    for encoded in (std, url):
        assert (
            only_job(async_task(f"video/snapshots,f_jpg|sys/saveas,o_{encoded}")).output.key_template == name
        )


def test_base64_docs_example_out_jpg() -> None:
    # base64 of "out.jpg" (no padding needed either way) and of "out.jpg\n" from `echo`.
    assert b64("out.jpg") == "b3V0LmpwZw"
    for o in ("b3V0LmpwZw", "b3V0LmpwZw==", "b3V0LmpwZwo", "b3V0LmpwZwo="):
        assert (
            only_job(async_task(f"video/snapshots,f_jpg|sys/saveas,o_{o}")).output.key_template == "out.jpg"
        )


def test_saveas_bucket_optional_and_unicode_key() -> None:
    job = only_job(async_task(f"video/snapshots,f_jpg|sys/saveas,o_{b64('Ünïcødé/{index}.jpg')}"))
    assert job.output == OutputTarget(None, "Ünïcødé/{index}.jpg")


def test_url_encoded_async() -> None:
    o, b = b64("a/{index}.jpg", pad=True), b64("bk", pad=True)
    raw = f"video/snapshots,f_jpg,num_2|sys/saveas,o_{o},b_{b}"
    encoded = raw.replace(",", "%2C").replace("|", "%7C").replace("=", "%3D").replace("/", "%2F")
    assert parse_process(encoded) == parse_process(raw)
    assert parse_task(f"x-oss-async-process={encoded}") == parse_process(raw)


def test_parse_task_takes_a_raw_process_string() -> None:
    raw = f"video/snapshots,f_png,num_3|sys/saveas,o_{b64('k/{index}.png')}|notify,topic_{b64('t')}"
    assert parse_task(raw) == parse_process(raw)
    assert parse_task(raw.encode()) == parse_process(raw)


def test_canonical_is_stable() -> None:
    raw = "video/snapshots,ss_11000,f_png,pw_50,ph_50,num_5,inter_4000"
    assert async_task(raw).canonical() == async_task(raw).canonical()
    assert async_task(raw).canonical() != async_task(raw.replace("num_5", "num_6")).canonical()


# =====================================================================================================
# IMM


IMM_EXAMPLE: dict[str, Any] = {
    "ProjectName": "test-project",
    "Sources": [{"URI": "oss://media/videos/clip.mp4"}],
    "Targets": [
        {
            "Image": {
                "Snapshots": [
                    {
                        "Format": "jpg",
                        "StartTime": 1.5,
                        "Interval": 0.1,
                        "Number": 20,
                        "Mode": "interval",
                        "ScaleType": "crop",
                        "Width": 0.5,
                        "Height": 720,
                        "URI": "s3://out-bucket/{dirname}/{barename}/{index}.{autoext}",
                    },
                    {"Format": "png", "Mode": "dhash", "Threshold": 30, "Interval": 2},
                ],
                "Sprites": [],
            }
        },
        {"Image": {"Snapshots": [{"Format": "webp", "Mode": "keyframe", "Number": 3}]}},
    ],
    "Notification": {"SQS": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/done"}},
    "UserData": '{"id": 7}',
    "Tags": {"team": "video"},
}


def test_imm_example() -> None:
    task = parse_task(json.dumps(IMM_EXAMPLE))
    assert task.style == "imm"
    assert task.source == SourceRef(key="videos/clip.mp4", bucket="media")
    assert task.notify == NotifyTarget("sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/done")
    assert task.user_data == '{"id": 7}'
    first, second, third = task.jobs
    assert first.selection == Selection(
        mode="inter", start_ms=Fraction(1500), interval_ms=Fraction(100), num=20, exact=True
    )
    assert first.image == ImageSpec(format="jpg", width=0, height=720, pw=Fraction(50), scale_type="crop")
    assert first.output == OutputTarget("out-bucket", "{dirname}/{barename}/{index}.{autoext}")
    assert second.selection == Selection(mode="dhash", interval_ms=Fraction(2000), threshold=30)
    assert second.image.format == "png"
    assert second.output == OutputTarget()
    assert third.selection == Selection(mode="key", num=3)
    assert third.image.format == "webp"


def test_imm_mapping_and_bytes_agree() -> None:
    assert parse_task(IMM_EXAMPLE) == parse_task(json.dumps(IMM_EXAMPLE).encode())


@pytest.mark.parametrize(
    ("interval", "ms"),
    [
        (0.1, Fraction(100)),
        (0.3, Fraction(300)),
        (1 / 3, Fraction("0.3333333333333333") * 1000),
        (2, Fraction(2000)),
    ],
)
def test_imm_interval_is_exact(interval: float, ms: Fraction) -> None:
    doc = _imm_one({"Format": "jpg", "Interval": interval})
    assert only_job(parse_task(doc)).selection.interval_ms == ms


@pytest.mark.parametrize(
    ("mode", "expected"), [("interval", "inter"), ("keyframe", "key"), ("average", "avg"), ("dhash", "dhash")]
)
def test_imm_modes(mode: str, expected: str) -> None:
    assert only_job(parse_task(_imm_one({"Format": "jpg", "Mode": mode}))).selection.mode == expected


@pytest.mark.parametrize(
    ("width", "px", "pw"),
    [
        (0.25, 0, Fraction(25)),
        (0.01, 0, Fraction(1)),
        (0, 0, Fraction(100)),
        (32, 32, Fraction(100)),
        (1280.0, 1280, Fraction(100)),
    ],
)
def test_imm_width_ratio_or_px(width: float, px: int, pw: Fraction) -> None:
    image = only_job(parse_task(_imm_one({"Format": "jpg", "Width": width}))).image
    assert (image.width, image.pw) == (px, pw)


def test_imm_sns_notification_and_s3_source() -> None:
    doc = _imm_one({"Format": "png"})
    doc["Sources"] = [{"URI": "s3://src/a/b.mov"}]
    doc["Notification"] = {"SNS": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t"}}
    task = parse_task(doc)
    assert task.source == SourceRef("a/b.mov", "src")
    assert task.notify == NotifyTarget("sns", "arn:aws:sns:us-east-1:123456789012:t")


def test_imm_null_optional_fields_are_defaults() -> None:
    snap = {"Format": "jpg", "StartTime": None, "Number": None, "Mode": None, "Width": None, "URI": None}
    doc = _imm_one(snap)
    doc["Notification"] = None
    doc["UserData"] = None
    task = parse_task(doc)
    assert only_job(task) == SnapshotJob(Selection(), ImageSpec(format="jpg"), OutputTarget())
    assert task.notify is None
    assert task.user_data is None


def _imm_one(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"Sources": [{"URI": "s3://b/v.mp4"}], "Targets": [{"Image": {"Snapshots": [snapshot]}}]}


# =====================================================================================================
# MPS


MPS_EXAMPLE: dict[str, Any] = {
    "PipelineId": "abc",
    "Input": {"Bucket": "media", "Location": "oss-cn-hangzhou", "Object": "videos/my%20clip.mp4"},
    "SnapshotConfig": {
        "OutputFile": {"Bucket": "out", "Location": "oss-cn-hangzhou", "Object": "snaps/%7BCount%7D.jpg"},
        "Time": 5000,
        "Interval": 2,
        "Num": 10,
        "Width": 640,
        "Height": 360,
        "FrameType": "normal",
    },
    "UserData": "mine",
}


def test_mps_example() -> None:
    task = parse_task(MPS_EXAMPLE)
    assert task.style == "mps"
    assert task.source == SourceRef("videos/my clip.mp4", "media")
    assert task.user_data == "mine"
    job = only_job(task)
    assert job.selection == Selection(
        mode="inter", start_ms=Fraction(5000), interval_ms=Fraction(2000), num=10, exact=True
    )
    assert job.image == ImageSpec(format="jpg", width=640, height=360)
    assert job.output == OutputTarget("out", "snaps/{Count}.jpg")


_SKIP_BLACK = FirstFrame("skip_black")


def _mps(**config: Any) -> dict[str, Any]:
    return {"Input": {"Bucket": "b", "Object": "v.mp4"}, "SnapshotConfig": config}


@pytest.mark.parametrize(
    ("config", "selection"),
    [
        ({"Time": 1000}, Selection(mode="inter", start_ms=Fraction(1000), num=1, exact=False)),
        # A single snapshot at Time 0 skips black frames (README: posters).
        ({"Num": 1, "Interval": 5}, Selection(mode="inter", num=1, exact=False, first=_SKIP_BLACK)),
        ({"Num": 4}, Selection(mode="avg", num=4, exact=False)),
        ({"Num": 4, "Interval": 0}, Selection(mode="avg", num=4, exact=False)),
        ({"Num": 4, "Interval": 0.5}, Selection(mode="inter", interval_ms=Fraction(500), num=4, exact=False)),
        ({"Interval": 3}, Selection(mode="inter", interval_ms=Fraction(3000), num=0, exact=False)),
        ({"Num": 0, "Interval": 0}, Selection(mode="inter", num=1, exact=False, first=_SKIP_BLACK)),
        (
            {"Time": "2500", "Num": "3", "Interval": "1"},
            Selection("inter", Fraction(2500), Fraction(1000), 3, 0, False),
        ),
        ({"FrameType": "intra", "Num": 2}, Selection(mode="avg", num=2, exact=False)),
        ({"FrameType": "normal", "Num": 2}, Selection(mode="avg", num=2, exact=True)),
    ],
)
def test_mps_selection_rules(config: dict[str, Any], selection: Selection) -> None:
    assert only_job(parse_task(_mps(**config))).selection == selection


@pytest.mark.parametrize(
    ("config", "fmt"),
    [
        ({}, "jpg"),
        ({"OutputFile": {"Object": "a/{Count}.png"}}, "png"),
        ({"OutputFile": {"Object": "a/{Count}.JPEG"}}, "jpg"),
        ({"OutputFile": {"Object": "a/{Count}.{autoext}"}}, "jpg"),
        ({"OutputFile": {"Object": "a/{Count}.png"}, "Format": "webp"}, "webp"),
        ({"Format": "avif"}, "avif"),
    ],
)
def test_mps_format(config: dict[str, Any], fmt: str) -> None:
    job = only_job(parse_task(_mps(**config)))
    assert job.image.format == fmt
    if "OutputFile" in config:
        assert job.output.bucket is None


def test_mps_without_output_file_uses_default_location() -> None:
    assert only_job(parse_task(_mps(Num=3))).output == OutputTarget()


def test_mps_notification() -> None:
    doc = _mps(Num=2)
    doc["Notification"] = {"SNS": {"TopicArn": "done"}}
    assert parse_task(doc).notify == NotifyTarget("sns", "done")


def test_mps_empty_tileout_is_no_request() -> None:
    assert only_job(parse_task(_mps(Num=2, TileOut=None))).selection.num == 2
    assert only_job(parse_task(_mps(Num=2, TileOut={}))).selection.num == 2


# =====================================================================================================
# OSS JSON


def test_oss_json() -> None:
    process = f"video/snapshots,f_png,num_3|sys/saveas,o_{b64('x/{index}.png')}|notify,topic_{b64('t')}"
    body = {"Bucket": "media", "Key": "in/clip.mp4", "Process": process, "UserData": "u"}
    task = parse_task(json.dumps(body))
    assert task.source == SourceRef("in/clip.mp4", "media")
    assert task.user_data == "u"
    assert task.notify == NotifyTarget("sns", "t")
    assert task.style == "oss"
    assert only_job(task) == only_job(async_task(process))
    assert task == task.with_source(SourceRef("in/clip.mp4", "media"))


def test_oss_json_without_bucket_and_with_bom() -> None:
    body = '\ufeff{"Key": "a.mp4", "Process": "video/snapshots,f_jpg"}'
    assert parse_task(body).source == SourceRef("a.mp4", None)
    assert parse_task(body.encode("utf-8")).source == SourceRef("a.mp4", None)


def test_each_language_module_parses_its_own_style() -> None:
    from vidsnap.core.lang import imm, mps, oss

    oss_body = {"Key": "a.mp4", "Process": "video/snapshots,f_jpg"}
    assert imm.parse_body(IMM_EXAMPLE) == parse_task(IMM_EXAMPLE)
    assert mps.parse_body(MPS_EXAMPLE) == parse_task(MPS_EXAMPLE)
    assert oss.parse_body(oss_body) == parse_task(oss_body)
    assert oss.parse_async("video/snapshots,f_jpg") == parse_task("video/snapshots,f_jpg")


@pytest.mark.parametrize(
    ("uri", "outcome"),
    [
        ("S3://media/v.mp4", SourceRef("v.mp4", "media")),  # the scheme in any case
        ("Oss://media/a/v.mp4", SourceRef("a/v.mp4", "media")),
        ("s3:///v.mp4", "invalid value ''; valid: a bucket name of 1..255"),
        ("s3://media", "no object key in 's3://media'"),
        ("s3://media/", "no object key in 's3://media/'"),
        ("s3://", "no object key in 's3://'"),
        ("media/v.mp4", "invalid value 'media/v.mp4'; valid: s3://bucket/key or oss://bucket/key"),
    ],
)
def test_imm_source_uri(uri: str, outcome: SourceRef | str) -> None:
    body = _imm_one({"Format": "jpg"}) | {"Sources": [{"URI": uri}]}
    if isinstance(outcome, SourceRef):
        assert parse_task(body).source == outcome
        return
    with pytest.raises(BadRequest) as info:
        parse_task(body)
    assert info.value.message.startswith(f"Sources[0].URI: {outcome}")
    assert info.value.param == "URI"


# =====================================================================================================
# Malformed requests: exception class, param and EC


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


def _imm_snap(**fields: Any) -> dict[str, Any]:
    return _imm_one({"Format": "jpg", **fields})


def _imm_with(**top: Any) -> dict[str, Any]:
    return {**_imm_one({"Format": "jpg"}), **top}


SYNC = "video/snapshot,"
ASYNC = "video/snapshots,f_jpg"
OB64 = b64("out/{index}.jpg")
BAD_UTF8 = base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode()

MALFORMED: list[tuple[str, Callable[[Any], object], Any, type[VidsnapError], str | None, str | None]] = [
    # ---- sync (EC codes) ----
    ("t negative", parse_sync, SYNC + "t_-1", BadRequest, "t", EC_TIME),
    ("t signed", parse_sync, SYNC + "t_+5", BadRequest, "t", EC_TIME),
    ("t float", parse_sync, SYNC + "t_1.5", BadRequest, "t", EC_TIME),
    ("t exponent", parse_sync, SYNC + "t_1e3", BadRequest, "t", EC_TIME),
    ("t empty", parse_sync, SYNC + "t_", BadRequest, "t", EC_TIME),
    ("t space", parse_sync, SYNC + "t_ 5", BadRequest, "t", EC_TIME),
    ("t unicode digit", parse_sync, SYNC + "t_\u0663", BadRequest, "t", EC_TIME),
    ("t overflow", parse_sync, SYNC + "t_99999999999999999999", BadRequest, "t", EC_TIME),
    ("t past int32", parse_sync, SYNC + "t_2147483648", BadRequest, "t", EC_TIME),
    ("t 5000 digits", parse_sync, SYNC + "t_" + "9" * 5000, BadRequest, "t", EC_TIME),
    ("t 5000 zeros", parse_sync, SYNC + "t_" + "0" * 5000 + "9" * 11, BadRequest, "t", EC_TIME),
    ("w too big", parse_sync, SYNC + "w_4097", BadRequest, "w", EC_WIDTH),
    ("w negative", parse_sync, SYNC + "w_-1", BadRequest, "w", EC_WIDTH),
    ("h text", parse_sync, SYNC + "h_abc", BadRequest, "h", EC_HEIGHT),
    ("h too big", parse_sync, SYNC + "h_5000", BadRequest, "h", EC_HEIGHT),
    ("m slow", parse_sync, SYNC + "m_slow", BadRequest, "m", EC_MODE),
    ("m empty", parse_sync, SYNC + "m_", BadRequest, "m", EC_MODE),
    ("f gif", parse_sync, SYNC + "f_gif", BadRequest, "f", EC_FORMAT),
    ("f empty", parse_sync, SYNC + "f_", BadRequest, "f", EC_FORMAT),
    ("ar bad", parse_sync, SYNC + "ar_x", BadRequest, "ar", EC_ROTATE),
    ("unknown param", parse_sync, SYNC + "x_1", BadRequest, "x", EC_MALFORMED),
    ("upper-case name", parse_sync, SYNC + "T_1000", BadRequest, "T", EC_MALFORMED),
    ("async param in sync", parse_sync, SYNC + "ss_1000", BadRequest, "ss", EC_MALFORMED),
    ("duplicate", parse_sync, SYNC + "t_1,t_2", BadRequest, "t", EC_MALFORMED),
    ("no underscore", parse_sync, SYNC + "t1000", BadRequest, "t1000", EC_MALFORMED),
    ("no name", parse_sync, SYNC + "_1", BadRequest, "video/snapshot", EC_MALFORMED),
    ("empty item", parse_sync, SYNC + ",t_1", BadRequest, "video/snapshot", EC_MALFORMED),
    ("trailing comma", parse_sync, SYNC + "t_1,", BadRequest, "video/snapshot", EC_MALFORMED),
    ("async via parse_sync", parse_sync, ASYNC, BadRequest, "process", EC_MALFORMED),
    ("unknown action sync", parse_sync, "video/foo,t_1", BadRequest, "process", EC_MALFORMED),
    ("image action", parse_process, "image/resize,w_100", BadRequest, "process", EC_MALFORMED),
    ("video/foo", parse_process, "video/foo", BadRequest, "process", EC_MALFORMED),
    ("empty", parse_process, "", BadRequest, "process", EC_MALFORMED),
    ("blank", parse_sync, "   \n", BadRequest, "process", EC_MALFORMED),
    ("sync with saveas", parse_sync, SYNC + f"t_1|sys/saveas,o_{OB64}", BadRequest, "process", EC_MALFORMED),
    ("too long", parse_process, "video/snapshots" + ",f_jpg" * 2000, BadRequest, "process", EC_MALFORMED),
    ("not a string", parse_sync, 42, BadRequest, "process", EC_MALFORMED),
    # ---- async (no EC) ----
    ("f missing", parse_process, "video/snapshots,num_5", BadRequest, "f", None),
    ("f bmp", parse_process, "video/snapshots,f_bmp", BadRequest, "f", None),
    ("f duplicate", parse_process, ASYNC + ",f_png", BadRequest, "f", None),
    ("m fast async", parse_process, ASYNC + ",m_fast", BadRequest, "m", None),
    ("w below 32", parse_process, ASYNC + ",w_31", BadRequest, "w", None),
    ("w zero", parse_process, ASYNC + ",w_0", BadRequest, "w", None),
    ("h above 4096", parse_process, ASYNC + ",h_4097", BadRequest, "h", None),
    ("pw zero", parse_process, ASYNC + ",pw_0", BadRequest, "pw", None),
    ("ph 201", parse_process, ASYNC + ",ph_201", BadRequest, "ph", None),
    ("thr 101", parse_process, ASYNC + ",thr_101", BadRequest, "thr", None),
    ("num ceiling", parse_process, ASYNC + ",num_100001", BadRequest, "num", None),
    ("inter negative", parse_process, ASYNC + ",inter_-1", BadRequest, "inter", None),
    ("ss float", parse_process, ASYNC + ",ss_1.5", BadRequest, "ss", None),
    ("scaletype zoom", parse_process, ASYNC + ",scaletype_zoom", BadRequest, "scaletype", None),
    ("sync param in async", parse_process, ASYNC + ",t_100", BadRequest, "t", None),
    ("ar in async", parse_process, ASYNC + ",ar_auto", BadRequest, "ar", None),
    ("saveas without o", parse_process, ASYNC + f"|sys/saveas,b_{b64('bk')}", BadRequest, "o", None),
    ("o not base64", parse_process, ASYNC + "|sys/saveas,o_!!!", BadRequest, "o", None),
    ("o impossible length", parse_process, ASYNC + "|sys/saveas,o_a", BadRequest, "o", None),
    ("o empty", parse_process, ASYNC + "|sys/saveas,o_", BadRequest, "o", None),
    ("o not utf-8", parse_process, ASYNC + f"|sys/saveas,o_{BAD_UTF8}", BadRequest, "o", None),
    ("o only newline", parse_process, ASYNC + f"|sys/saveas,o_{b64(chr(10))}", BadRequest, "o", None),
    ("o unknown var", parse_process, ASYNC + f"|sys/saveas,o_{b64('{nope}.jpg')}", BadRequest, "o", None),
    ("o unbalanced", parse_process, ASYNC + f"|sys/saveas,o_{b64('{index.jpg')}", BadRequest, "o", None),
    ("o traversal", parse_process, ASYNC + f"|sys/saveas,o_{b64('../x.jpg')}", BadRequest, "o", None),
    ("o absolute", parse_process, ASYNC + f"|sys/saveas,o_{b64('/x.jpg')}", BadRequest, "o", None),
    (
        "o control char",
        parse_process,
        ASYNC + f"|sys/saveas,o_{b64('a' + chr(0) + 'b')}",
        BadRequest,
        "o",
        None,
    ),
    ("o duplicate", parse_process, ASYNC + f"|sys/saveas,o_{OB64},o_{OB64}", BadRequest, "o", None),
    ("b bad name", parse_process, ASYNC + f"|sys/saveas,o_{OB64},b_{b64('no/slash')}", BadRequest, "b", None),
    ("saveas unknown", parse_process, ASYNC + f"|sys/saveas,o_{OB64},x_1", BadRequest, "x", None),
    (
        "saveas twice",
        parse_process,
        ASYNC + f"|sys/saveas,o_{OB64}|sys/saveas,o_{OB64}",
        BadRequest,
        "sys/saveas",
        None,
    ),
    ("topic bad", parse_process, ASYNC + f"|notify,topic_{b64('bad topic!')}", BadRequest, "topic", None),
    ("queue ftp", parse_process, ASYNC + f"|notify,queue_{b64('ftp://x/q')}", BadRequest, "queue", None),
    ("notify empty", parse_process, ASYNC + "|notify", BadRequest, "notify", None),
    ("notify both", parse_process, ASYNC + f"|notify,topic_{OB64},queue_{OB64}", BadRequest, "notify", None),
    ("notify unknown", parse_process, ASYNC + "|notify,url_eA", BadRequest, "url", None),
    (
        "notify twice",
        parse_process,
        ASYNC + f"|notify,topic_{b64('t')}|notify,topic_{b64('t')}",
        BadRequest,
        "notify",
        None,
    ),
    ("chained op", parse_process, ASYNC + "|image/resize,w_100", BadRequest, "process", None),
    ("sync in task", parse_task, "video/snapshot,t_1", BadRequest, "process", None),
    # ---- JSON bodies ----
    ("bad json", parse_task, "{not json", BadRequest, "body", None),
    ("json list", parse_task, "[1, 2]", BadRequest, "body", None),
    ("json nan", parse_task, '{"Key": "a", "Process": NaN}', BadRequest, "body", None),
    ("deep nesting", parse_task, "[" * 100000 + "]" * 100000, BadRequest, "body", None),
    ("json too big", parse_task, '{"UserData": "' + "x" * 300000 + '"}', BadRequest, "body", None),
    (
        "duplicate keys",
        parse_task,
        '{"Key": "a", "Key": "b", "Process": "video/snapshots,f_jpg"}',
        BadRequest,
        "Key",
        None,
    ),
    ("not utf-8 bytes", parse_task, b"\xff\xfe{", BadRequest, "body", None),
    ("wrong python type", parse_task, 12, BadRequest, "body", None),
    ("unrecognised", parse_task, '{"foo": 1}', BadRequest, "body", None),
    ("imm no sources", parse_task, _json(_imm_with(Sources=[])), BadRequest, "Sources", None),
    (
        "imm two sources",
        parse_task,
        _json(_imm_with(Sources=[{"URI": "s3://b/a"}, {"URI": "s3://b/c"}])),
        BadRequest,
        "Sources",
        None,
    ),
    (
        "imm sources object",
        parse_task,
        _json(_imm_with(Sources={"URI": "s3://b/a"})),
        BadRequest,
        "Sources",
        None,
    ),
    (
        "imm http source",
        parse_task,
        _json(_imm_with(Sources=[{"URI": "http://b/a.mp4"}])),
        BadRequest,
        "URI",
        None,
    ),
    (
        "imm source no key",
        parse_task,
        _json(_imm_with(Sources=[{"URI": "s3://bucket"}])),
        BadRequest,
        "URI",
        None,
    ),
    (
        "imm source traversal",
        parse_task,
        _json(_imm_with(Sources=[{"URI": "s3://b/../x.mp4"}])),
        NotAllowed,
        "key",
        None,
    ),
    (
        "imm source field",
        parse_task,
        _json(_imm_with(Sources=[{"URI": "s3://b/a", "StartTime": 1}])),
        BadRequest,
        "StartTime",
        None,
    ),
    ("imm targets null", parse_task, _json(_imm_with(Targets=None)), BadRequest, "Targets", None),
    ("imm no snapshots", parse_task, _json(_imm_with(Targets=[{"Image": {}}])), BadRequest, "Targets", None),
    (
        "imm transcode target",
        parse_task,
        _json(_imm_with(Targets=[{"Container": "mp4"}])),
        BadRequest,
        "Container",
        None,
    ),
    ("imm image list", parse_task, _json(_imm_with(Targets=[{"Image": []}])), BadRequest, "Image", None),
    (
        "imm sprites",
        parse_task,
        _json(_imm_with(Targets=[{"Image": {"Sprites": [{"Format": "jpg", "TileWidth": 0}]}}])),
        BadRequest,
        "TileWidth",
        None,
    ),
    (
        "imm animations",
        parse_task,
        _json(_imm_with(Targets=[{"Image": {"Animations": [{}]}}])),
        BadRequest,
        "Interval",
        None,
    ),
    ("imm unknown top", parse_task, _json(_imm_with(Foo=1)), BadRequest, "Foo", None),
    ("imm format missing", parse_task, _json(_imm_one({"Number": 1})), BadRequest, "Format", None),
    ("imm format number", parse_task, _json(_imm_one({"Format": 5})), BadRequest, "Format", None),
    ("imm format gif", parse_task, _json(_imm_snap(Format="gif")), BadRequest, "Format", None),
    ("imm number string", parse_task, _json(_imm_snap(Number="5")), BadRequest, "Number", None),
    ("imm number bool", parse_task, _json(_imm_snap(Number=True)), BadRequest, "Number", None),
    ("imm number float", parse_task, _json(_imm_snap(Number=1.5)), BadRequest, "Number", None),
    ("imm number negative", parse_task, _json(_imm_snap(Number=-1)), BadRequest, "Number", None),
    ("imm number ceiling", parse_task, _json(_imm_snap(Number=100001)), BadRequest, "Number", None),
    ("imm number list", parse_task, _json(_imm_snap(Number=[5])), BadRequest, "Number", None),
    ("imm interval negative", parse_task, _json(_imm_snap(Interval=-0.5)), BadRequest, "Interval", None),
    ("imm interval nan", parse_task, _imm_snap(Interval=float("nan")), BadRequest, "Interval", None),
    ("imm start inf", parse_task, _imm_snap(StartTime=float("inf")), BadRequest, "StartTime", None),
    ("imm start huge", parse_task, _json(_imm_snap(StartTime=1e300)), BadRequest, "StartTime", None),
    ("imm mode fast", parse_task, _json(_imm_snap(Mode="fast")), BadRequest, "Mode", None),
    ("imm threshold 101", parse_task, _json(_imm_snap(Threshold=101)), BadRequest, "Threshold", None),
    ("imm scaletype", parse_task, _json(_imm_snap(ScaleType="zoom")), BadRequest, "ScaleType", None),
    ("imm width tiny ratio", parse_task, _json(_imm_snap(Width=0.005)), BadRequest, "Width", None),
    ("imm width small px", parse_task, _json(_imm_snap(Width=16)), BadRequest, "Width", None),
    ("imm width fraction px", parse_task, _json(_imm_snap(Width=800.5)), BadRequest, "Width", None),
    ("imm height negative", parse_task, _json(_imm_snap(Height=-1)), BadRequest, "Height", None),
    ("imm unknown snap field", parse_task, _json(_imm_snap(Quality=90)), BadRequest, "Quality", None),
    ("imm bad uri template", parse_task, _json(_imm_snap(URI="s3://b/{bad}.jpg")), BadRequest, "URI", None),
    ("imm uri no key", parse_task, _json(_imm_snap(URI="s3://b/")), BadRequest, "URI", None),
    ("imm uri bad scheme", parse_task, _json(_imm_snap(URI="file:///tmp/x")), BadRequest, "URI", None),
    (
        "imm notification mns",
        parse_task,
        _json(_imm_with(Notification={"MNS": {"TopicName": "t"}})),
        BadRequest,
        "MNS",
        None,
    ),
    (
        "imm notification both",
        parse_task,
        _json(_imm_with(Notification={"SNS": {"TopicArn": "t"}, "SQS": {"QueueUrl": "q"}})),
        BadRequest,
        "Notification",
        None,
    ),
    (
        "imm notification empty",
        parse_task,
        _json(_imm_with(Notification={})),
        BadRequest,
        "Notification",
        None,
    ),
    (
        "imm topic bad",
        parse_task,
        _json(_imm_with(Notification={"SNS": {"TopicArn": "no spaces"}})),
        BadRequest,
        "TopicArn",
        None,
    ),
    (
        "imm queue missing",
        parse_task,
        _json(_imm_with(Notification={"SQS": {}})),
        BadRequest,
        "QueueUrl",
        None,
    ),
    ("imm userdata number", parse_task, _json(_imm_with(UserData=5)), BadRequest, "UserData", None),
    (
        "imm userdata too long",
        parse_task,
        _json(_imm_with(UserData="x" * 2049)),
        BadRequest,
        "UserData",
        None,
    ),
    ("mps tileout", parse_task, _json(_mps(Num=5, TileOut={"Lines": 2})), BadRequest, "TileOutputFile", None),
    ("mps frametype", parse_task, _json(_mps(FrameType="key")), BadRequest, "FrameType", None),
    ("mps time negative", parse_task, _json(_mps(Time=-1)), BadRequest, "Time", None),
    ("mps time string junk", parse_task, _json(_mps(Time="5s")), BadRequest, "Time", None),
    ("mps num text", parse_task, _json(_mps(Num="abc")), BadRequest, "Num", None),
    ("mps width too big", parse_task, _json(_mps(Width="5000")), BadRequest, "Width", None),
    ("mps unknown config", parse_task, _json(_mps(WhiteLevel=30)), BadRequest, "WhiteLevel", None),
    ("mps no input", parse_task, _json({"SnapshotConfig": {}}), BadRequest, "Input", None),
    (
        "mps input no object",
        parse_task,
        _json({"Input": {"Bucket": "b"}, "SnapshotConfig": {}}),
        BadRequest,
        "Object",
        None,
    ),
    (
        "mps input traversal",
        parse_task,
        _json({"Input": {"Object": "../x.mp4"}, "SnapshotConfig": {}}),
        NotAllowed,
        "key",
        None,
    ),
    (
        "mps output traversal",
        parse_task,
        _json(_mps(OutputFile={"Object": "..%2Fx.jpg"})),
        BadRequest,
        "Object",
        None,
    ),
    (
        "mps output bad var",
        parse_task,
        _json(_mps(OutputFile={"Object": "{Cnt}.jpg"})),
        BadRequest,
        "Object",
        None,
    ),
    (
        "mps bad object escape",
        parse_task,
        _json(_mps(OutputFile={"Object": "%ff.jpg"})),
        BadRequest,
        "Object",
        None,
    ),
    ("mps no config", parse_task, _json({"Input": {"Object": "a.mp4"}}), BadRequest, "SnapshotConfig", None),
    (
        "oss json sync",
        parse_task,
        _json({"Key": "a.mp4", "Process": "video/snapshot,t_1"}),
        BadRequest,
        "process",
        None,
    ),
    ("oss json no key", parse_task, _json({"Process": "video/snapshots,f_jpg"}), BadRequest, "Key", None),
    ("oss json process number", parse_task, _json({"Key": "a", "Process": 5}), BadRequest, "Process", None),
    (
        "oss json unknown",
        parse_task,
        _json({"Key": "a", "Process": "video/snapshots,f_jpg", "X": 1}),
        BadRequest,
        "X",
        None,
    ),
    (
        "oss json bad bucket",
        parse_task,
        _json({"Bucket": "a b", "Key": "a", "Process": "video/snapshots,f_jpg"}),
        BadRequest,
        "Bucket",
        None,
    ),
    (
        "oss json bad process",
        parse_task,
        _json({"Key": "a", "Process": "video/snapshots,f_jpg,w_1"}),
        BadRequest,
        "w",
        None,
    ),
]


@pytest.mark.parametrize(
    ("fn", "request_", "exc", "param", "ec"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_malformed(
    fn: Callable[[Any], object], request_: Any, exc: type[VidsnapError], param: str | None, ec: str | None
) -> None:
    with pytest.raises(exc) as info:
        fn(request_)
    err = info.value
    assert type(err) is exc
    assert err.param == param
    assert err.ec == ec
    assert 0 < len(err.message) <= 600, err.message
    assert "\x00" not in err.message
    assert "\n" not in err.message


def test_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 40
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (SYNC + "t_-5", ["t", "'-5'", "0..2147483647"]),
        (SYNC + "t_99999999999999999999", ["t", "'99999999999999999999'", "out of range", "0..2147483647"]),
        (SYNC + "w_5000", ["w", "'5000'", "0..4096"]),
        (SYNC + "f_gif", ["f", "'gif'", "jpg", "png"]),
        (SYNC + "ar_z", ["ar", "'z'", "auto, h, w"]),
        (SYNC + "m_x", ["m", "'x'", "fast"]),
        (SYNC + "q_1", ["'q'", "t, w, h, m, f, ar"]),
    ],
)
def test_messages_name_param_value_and_range(text: str, fragments: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse_sync(text)
    for fragment in fragments:
        assert fragment in info.value.message


def test_json_messages_name_the_path() -> None:
    with pytest.raises(BadRequest) as info:
        parse_task(_imm_snap(Width=16))
    assert "Targets[0].Image.Snapshots[0].Width" in info.value.message
    assert "16" in info.value.message
    assert "32..4096" in info.value.message
    with pytest.raises(BadRequest, match=r"Targets\[0\]\.Image\.Sprites\[0\]\.Pad"):
        parse_task(
            _imm_with(Targets=[{"Image": {"Sprites": [{"Pad": -1}], "Snapshots": [{"Format": "jpg"}]}}])
        )


def test_offending_values_are_truncated() -> None:
    with pytest.raises(BadRequest) as info:
        parse_sync(SYNC + "f_" + "z" * 5000)
    assert len(info.value.message) < 300
    assert "…" in info.value.message


def test_errors_serialise() -> None:
    with pytest.raises(BadRequest) as info:
        parse_sync(SYNC + "t_x")
    body = info.value.to_dict("rid")
    assert body == {
        "Code": "InvalidArgument",
        "Message": info.value.message,
        "RequestId": "rid",
        "EC": EC_TIME,
    }
    not_yet = NotSupportedYet("a feature")
    assert not_yet.to_dict()["Code"] == "NotSupported"
    assert not_yet.status == 400


# =====================================================================================================
# Fuzz: whatever comes in, only VidsnapError goes out


_PIECES = [
    "video/snapshot", "video/snapshots", "sys/saveas", "notify", "/notify", "image/resize",
    ",", ",", "|", "_", "_", "t", "f", "w", "h", "m", "ar", "ss", "inter", "num", "thr", "pw", "ph",
    "scaletype", "o", "b", "topic", "queue", "jpg", "png", "fast", "auto", "key", "avg", "dhash",
    "0", "1", "7000", "-1", "99999999999999999999", "1.5", "%", "%2C", "%7C", "%ZZ", "%ff", "=", "==",
    "{", "}", "{index}", "..", "/", "\\", "\x00", "\n", " ", "é", "\ud800", "x-oss-process=",
    OB64, BAD_UTF8, b64("../x"), b64("{"), b64("arn:aws:sns:us-east-1:123456789012:t"),
]  # fmt: skip


def _random_process(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 25)))


def _expect_only_vidsnap_errors(fn: Callable[[Any], object], value: Any) -> None:
    try:
        fn(value)
    except VidsnapError:
        pass
    except Exception as exc:  # pragma: no cover - the assertion message is the point
        pytest.fail(f"{fn.__name__}({value!r:.200}) raised {type(exc).__name__}: {exc}")


def test_fuzz_process_strings() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        text = _random_process(rng)
        for fn in (parse_process, parse_sync, parse_task):
            _expect_only_vidsnap_errors(fn, text)


def test_fuzz_random_text_and_bytes() -> None:
    rng = random.Random(7)
    for _ in range(1500):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
        _expect_only_vidsnap_errors(parse_task, raw)
        text = "".join(chr(rng.randrange(0x20000)) for _ in range(rng.randint(0, 40)))
        for fn in (parse_process, parse_sync, parse_task):
            _expect_only_vidsnap_errors(fn, text)
            _expect_only_vidsnap_errors(fn, "{" + text)


_JUNK: list[Any] = [
    None, True, False, 0, -1, 1.5, 1e308, -1e308, float("nan"), float("inf"), 10**50, 10**5000,
    "", "5", "x" * 5000, "s3://", "s3://b/../x", "{", [], [None], {}, {"a": {"b": [1]}}, [[[[[]]]]],
    {1: "non-string key"}, b"bytes", ("tuple",), "\x00", "\ud800",
]  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: dict[str, Any], rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc))
        if not path:
            return rng.choice(_JUNK)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.3 and isinstance(parent, dict):
            parent[rng.choice(["Extra", "Width", "Mode", "Sprites", "TileOut"])] = rng.choice(_JUNK)
        else:
            parent[path[-1]] = rng.choice(_JUNK)
    return doc


def test_fuzz_json_documents() -> None:
    rng = random.Random(99)
    oss = {
        "Bucket": "b",
        "Key": "k.mp4",
        "Process": f"video/snapshots,f_jpg|sys/saveas,o_{OB64}",
        "UserData": "u",
    }
    seeds = [IMM_EXAMPLE, MPS_EXAMPLE, oss]
    for _ in range(1500):
        doc = _mutate(rng.choice(seeds), rng)
        _expect_only_vidsnap_errors(parse_task, doc)
        try:
            text = json.dumps(doc)
        except (TypeError, ValueError):
            continue  # not JSON-representable (bytes, tuple keys): the mapping form covered it
        _expect_only_vidsnap_errors(parse_task, text)
        _expect_only_vidsnap_errors(parse_task, text[: rng.randint(0, len(text))])


def test_seeds_still_parse() -> None:
    # The fuzz seeds are valid documents: the mutations, not the seeds, cause the errors.
    assert parse_task(IMM_EXAMPLE).jobs
    assert parse_task(MPS_EXAMPLE).jobs


@pytest.mark.parametrize(
    ("fn", "request_"),
    [
        (parse_sync, SYNC + "x" * 3000 + "_1"),
        (parse_sync, SYNC + "y" * 3000),
        (parse_task, {"Key": "a", "Process": "video/snapshots,f_jpg", "z" * 3000: 1}),
        (parse_task, '{"' + "k" * 3000 + '": 1, "' + "k" * 3000 + '": 2}'),
    ],
)
def test_param_names_are_truncated(fn: Callable[[Any], object], request_: Any) -> None:
    with pytest.raises(BadRequest) as info:
        fn(request_)
    assert info.value.param is not None
    assert 0 < len(info.value.param) <= 64
    assert len(info.value.message) < 400


@pytest.mark.parametrize(
    "plain",
    [
        None,
        {"jobs": "x"},
        {"jobs": [], "style": "xyz"},
        {"jobs": [], "unknown": 1},
        {"jobs": [{"selection": {"mode": "inter", "start_ms": "1/0"}, "image": {}}]},
        {"jobs": [{"selection": {"num": "3"}, "image": {}}]},
    ],
)
def test_a_handed_over_task_that_is_not_one_is_a_bad_request(plain: object) -> None:
    with pytest.raises(BadRequest) as err:
        Task.from_plain(plain)
    assert err.value.param == "task"

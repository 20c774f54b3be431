"""Bounds under attack (docs/LIMITS.md): claimed durations, decompression bombs, decode budget, extreme SAR.

Every case is a small synthesised file whose header lies or asks for too much; each must end
quickly with the frames that exist or a clear error, never run unbounded or answer 500.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import threading
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from conftest import MemorySink
from PIL import Image

from vidsnap.aws.settings import Settings
from vidsnap.core.decode import Video
from vidsnap.core.decode.budget import frames_allowed
from vidsnap.core.engine import Limits, run_task, snapshot
from vidsnap.core.errors import (
    BadRequest,
    DecodeBudgetExceeded,
    SourceEndsEarly,
    SourceTooLarge,
    TooLarge,
    UndecodableMedia,
)
from vidsnap.core.imaging import MAX_SIDE, encode, plan_geometry
from vidsnap.core.lang import parse_process, parse_sync
from vidsnap.core.plan import ImageSpec, Selection
from vidsnap.core.select import _Steps, select_frames
from vidsnap.local import synth

#: Generous: each case takes milliseconds once bounded; unbounded, it never ends.
TIMEOUT_S = 20.0


def bounded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a daemon thread; fail the test if it has not finished within TIMEOUT_S."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed back to the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    assert not thread.is_alive(), f"still running after {TIMEOUT_S} s: unbounded"
    if "error" in result:
        raise result["error"]
    return result["value"]


# -- 1. a huge claimed duration --------------------------------------------------------------------


def _patch_mkv_duration(data: bytes, ms: float) -> bytes:
    """Set the Segment Info Duration element (EBML id 0x4489, an 8-byte float in ms)."""
    i = data.find(b"\x44\x89\x88")
    assert i > 0, "no 8-byte Duration element"
    return data[: i + 3] + struct.pack(">d", ms) + data[i + 11 :]


@pytest.fixture(scope="module")
def huge_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 64×64 video at 25 fps whose header claims 10¹² ms."""
    folder = tmp_path_factory.mktemp("bounds")
    real = folder / "real.mkv"
    synth.make_video(real, duration_s=2, width=64, height=64, gop=10, bframes=0)
    path = folder / "huge.mkv"
    path.write_bytes(_patch_mkv_duration(real.read_bytes(), 1e12))
    with av.open(str(path)) as c:
        assert c.duration is not None
        assert c.duration >= 10**15
    return path


@pytest.mark.parametrize(
    ("process", "max_frames", "expected"),
    [
        ("video/snapshots,f_jpg,inter_1000,num_3", 1000, [0, 1000, 1960]),
        ("video/snapshots,f_jpg,m_dhash,num_3", 1000, [0, 1000, 1960]),
        ("video/snapshots,f_jpg,inter_1000", 1000, [0, 1000, 1960]),
        ("video/snapshots,f_jpg,m_dhash", 1000, [0, 1000, 1960]),
        ("video/snapshots,f_jpg,inter_100", 5, [0, 80, 200, 280, 400]),  # MAX_FRAMES stops it
        ("video/snapshots,f_jpg,m_avg", 1000, [0]),
    ],
)
def test_a_huge_claimed_duration_is_bounded(
    huge_mkv: Path, process: str, max_frames: int, expected: list[int]
) -> None:
    task = parse_process(process)
    outcome = bounded(lambda: run_task(task, huge_mkv, MemorySink(), limits=Limits(max_frames=max_frames)))
    assert [o.time_ms for o in outcome.outputs] == expected
    if max_frames == 5:
        assert any("MAX_FRAMES" in w for w in outcome.warnings)
    elif "num_3" not in process:
        # The frames that exist, and why there are no more.
        assert any("header claims" in w and "1000000000000 ms" in w for w in outcome.warnings), outcome
    # With num, the job ends at its count: nothing past the frames it needed is decoded or said.
    if "num_3" in process and "dhash" not in process:
        assert outcome.warnings == []


def test_selection_stops_at_the_real_end_with_any_decoders(huge_mkv: Path) -> None:
    for decoders in (1, 2):
        warnings: list[str] = []

        def run(decoders: int = decoders, warnings: list[str] = warnings) -> list[Fraction]:
            with Video(huge_mkv, bulk=True) as v:
                sel = Selection(mode="inter", interval_ms=Fraction(250))
                return [
                    p.time_ms
                    for p in select_frames(v, sel, max_frames=1000, warnings=warnings, decoders=decoders)
                ]

        got = bounded(run)
        # The frames at 0, 250, … 2000 ms (frames every 40 ms; 2000 is just past the last frame,
        # 1960, which is still shown there); 2250 is past the end: stop, and say so.
        assert got == [0, 240, 480, 720, 1000, 1240, 1480, 1720, 1960]
        assert len(warnings) == 1
        assert "ends" in warnings[0]


@pytest.fixture(scope="module")
def sparse_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames at 0, 40, 80 ms, then at 10¹² and 10¹² + 40 ms: the duration is true, the file tiny."""
    path = tmp_path_factory.mktemp("bounds") / "sparse.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "bframes": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        frame = av.VideoFrame(64, 64, "yuv420p")
        for pts in (0, 40, 80, 10**12, 10**12 + 40):
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("decoders", [1, 2])
def test_a_gap_in_the_timestamps_is_skipped(sparse_mkv: Path, decoders: int) -> None:
    """10⁹ planned times show the frame at 80 ms: the planner asks where the next frame is."""

    def run() -> tuple[list[Fraction], list[str]]:
        warnings: list[str] = []
        with Video(sparse_mkv, bulk=True) as v:
            sel = Selection(mode="inter", interval_ms=Fraction(1000))
            got = [
                p.time_ms for p in select_frames(v, sel, max_frames=50, warnings=warnings, decoders=decoders)
            ]
        return got, warnings

    got, warnings = bounded(run)
    assert got == [0, 80, 10**12]
    assert warnings == []


@pytest.mark.parametrize("decoders", [1, 2])
def test_chunks_change_no_frame(
    make_media: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, decoders: int
) -> None:
    """Planned times in chunks of 3 give the frames and warnings of one chunk (4 s, 25 fps)."""
    path = make_media("mp4_4s").path
    sels = [
        Selection(mode="inter", interval_ms=Fraction(300)),
        Selection(mode="dhash", interval_ms=Fraction(200), num=4),
        Selection(mode="avg", num=7),
        Selection(mode="inter", interval_ms=Fraction(500), exact=False),
    ]

    def run() -> list[tuple[list[int], list[str]]]:
        out = []
        for sel in sels:
            warnings: list[str] = []
            with Video(path, bulk=True) as v:
                picks = select_frames(v, sel, max_frames=1000, warnings=warnings, decoders=decoders)
                out.append(([p.pts for p in picks], warnings))
        return out

    whole = run()
    monkeypatch.setattr("vidsnap.core.select._CHUNK", 3)
    assert run() == whole
    # And asking for the next frame after every chunk ending on a repeated frame (keyframe mode
    # repeats each keyframe twice at 500 ms steps) skips nothing that would show another frame.
    monkeypatch.setattr("vidsnap.core.select._SKIP_RUN", 1)
    assert run() == whole
    assert [len(frames) for frames, _ in whole] == [14, 4, 7, 4]


def test_planned_steps_skip_and_end() -> None:
    steps = _Steps(Fraction(500), Fraction(1000), Fraction(10_000))
    assert steps.last() == 9500
    assert [next(steps), next(steps)] == [500, 1500]
    steps.skip_to(Fraction(7001))
    assert list(steps) == [7500, 8500, 9500]
    assert steps.last() is None
    steps.skip_to(Fraction(0))  # never backwards
    assert list(steps) == []


def test_a_single_frame_past_the_real_end_is_still_an_error(huge_mkv: Path) -> None:
    with Video(huge_mkv) as v, pytest.raises(SourceEndsEarly):
        v.frame_at(60_000)
    assert issubclass(SourceEndsEarly, UndecodableMedia)  # 422 MediaDecodeFailed, as before


def test_a_truncated_file_fails_the_task(tmp_path: Path, make_media: Callable[[str], Any]) -> None:
    """A cut MP4 still has its whole index: the frames it lists past the cut are missing, so the
    task fails (422) instead of reporting the frames before the cut as its result."""
    data = Path(make_media("mp4_4s").path).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    sink = MemorySink()
    with pytest.raises(SourceEndsEarly) as info:
        run_task(parse_process("video/snapshots,f_jpg,inter_500"), half, sink)
    assert info.value.status == 422


def test_a_huge_claimed_mp4_duration_is_bounded(tmp_path: Path) -> None:
    """MP4 headers (mvhd/tkhd/mdhd) claiming ~3.8 days: FFmpeg times the track from its sample
    table, so the claim never reaches the plan; pinned so that it stays bounded."""
    real = tmp_path / "real.mp4"
    synth.make_video(real, duration_s=2, width=64, height=64, gop=10, bframes=0)
    data = bytearray(real.read_bytes())
    for box, offset in ((b"mvhd", 20), (b"tkhd", 24), (b"mdhd", 20)):
        i = data.find(box)
        assert i > 0
        assert data[i + 4] == 0
        data[i + offset : i + offset + 4] = struct.pack(">I", 0xFFFFFFF0)
    path = tmp_path / "huge.mp4"
    path.write_bytes(bytes(data))
    outcome = bounded(lambda: run_task(parse_process("video/snapshots,f_jpg,inter_1000"), path, MemorySink()))
    assert [o.time_ms for o in outcome.outputs] == [0, 1000]


# -- 2. decompression bombs ------------------------------------------------------------------------


def _png(width: int, height: int, *, declare: tuple[int, int] | None = None, mode: str = "RGB") -> bytes:
    """A small real PNG; ``declare`` rewrites the size its IHDR claims (CRC fixed)."""
    out = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30) if mode == "RGB" else None).save(out, format="PNG")
    data = bytearray(out.getvalue())
    if declare is not None:
        data[16:24] = struct.pack(">II", *declare)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _deep_png(declare: tuple[int, int]) -> bytes:
    """A 16-bit RGBA PNG header (colour type 6, depth 16) declaring ``declare``."""
    data = bytearray(_png(8, 8, declare=declare))
    data[24:26] = bytes([16, 6])
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_a_png_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(64, 64, declare=(16000, 16000)))
    with pytest.raises(SourceTooLarge) as err:
        Video(bomb)
    assert err.value.status == 413
    assert err.value.code == "SourceTooLarge"
    assert "16000x16000" in err.value.message
    assert "MAX_SOURCE_PIXELS" in err.value.message
    # A file object too, and through the engine as a sync snapshot.
    with pytest.raises(SourceTooLarge):
        Video(io.BytesIO(bomb.read_bytes()))
    with pytest.raises(SourceTooLarge):
        snapshot(bomb, parse_sync("video/snapshot,t_0,f_jpg"))
    # The same picture at its true size is fine.
    fine = tmp_path / "fine.png"
    fine.write_bytes(_png(64, 64))
    assert snapshot(fine, parse_sync("video/snapshot,t_0,f_jpg")).width == 64


def test_a_jpeg_bomb_is_refused_from_its_frame_header(tmp_path: Path) -> None:
    """A JPEG's size is in its SOF segment, after the others: read from the first packet."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):  # walk the segments to the start of frame
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(SourceTooLarge, match="60000x60000"):
        Video(bomb)


def test_a_deep_png_counts_its_bytes(tmp_path: Path) -> None:
    # 6000² is under the 67 Mpx pixel limit, but 16-bit RGBA takes 8 bytes per pixel: 275 MiB.
    deep = tmp_path / "deep.png"
    deep.write_bytes(_deep_png((6000, 6000)))
    with pytest.raises(SourceTooLarge, match="64 bits per pixel"):
        Video(deep)


def test_a_cover_art_bomb_is_refused(tmp_path: Path) -> None:
    """A PNG cover inside an .m4a: FFmpeg would decode it while probing; its header says it all."""
    m4a = Path(synth.make_audio_with_cover(tmp_path / "cover.m4a"))
    data = bytearray(m4a.read_bytes())
    i = data.find(b"\x89PNG\r\n\x1a\n")
    assert i > 0
    data[i + 16 : i + 24] = struct.pack(">II", 16000, 16000)
    data[i + 29 : i + 33] = struct.pack(">I", zlib.crc32(bytes(data[i + 12 : i + 29])) & 0xFFFFFFFF)
    bomb = tmp_path / "bomb.m4a"
    bomb.write_bytes(bytes(data))
    with pytest.raises(SourceTooLarge, match="16000x16000"):
        Video(bomb)
    with Video(m4a) as v:  # the original cover is fine
        assert v.is_cover_art


def test_a_video_stream_over_the_limit_is_refused(make_media: Callable[[str], Any]) -> None:
    path = make_media("mkv").path  # 160×90
    with pytest.raises(SourceTooLarge, match="160x90"):
        Video(path, max_source_pixels=160 * 90 - 1)
    with Video(path, max_source_pixels=160 * 90) as v:
        assert v.coded_width == 160
    # The limit travels from the settings through the engine's limits.
    limits = Settings.from_env({"MAX_SOURCE_PIXELS": str(160 * 90 - 1)}).limits
    assert limits.max_source_pixels == 160 * 90 - 1
    with pytest.raises(SourceTooLarge):
        snapshot(path, parse_sync("video/snapshot,t_0,f_jpg"), limits=limits)
    with pytest.raises(SourceTooLarge):
        run_task(parse_process("video/snapshots,f_jpg,inter_1000"), path, MemorySink(), limits=limits)
    assert Settings.from_env({}).limits.max_source_pixels == 8192 * 8192


# -- 5. decode budget ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_keyframe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """10 s of 64×64 at 30 fps with a single keyframe, in MP4 (per-packet index), MKV (cues list
    keyframes only) and MPEG-TS (no index)."""
    folder = tmp_path_factory.mktemp("budget")
    paths = {}
    for ext in ("mp4", "mkv", "ts"):
        path = folder / f"onekey.{ext}"
        synth.make_video(path, duration_s=10, fps=30, width=64, height=64, gop=10_000, bframes=0)
        paths[ext] = path
    return paths


def test_the_decode_budget_is_estimated_from_the_index(one_keyframe: dict[str, Path]) -> None:
    with Video(one_keyframe["mp4"], decode_budget_frames=50) as v:
        assert synth.read_counter(v.frame_at(1000).frame) == 30  # 30 frames from the keyframe
        v2 = Video(one_keyframe["mp4"], decode_budget_frames=50)
        with v2, pytest.raises(DecodeBudgetExceeded, match=r"frames after the keyframe at 0\.000 s") as err:
            v2.frame_at(9000)
        assert err.value.status == 422
        assert err.value.code == "DecodeBudgetExceeded"
        assert "DECODE_BUDGET_FRAMES" in err.value.message
        assert v2._cursor.pulled <= 2  # refused before decoding towards the target
        # The keyframe (m_fast) decodes no frame in between, and a job stepping forward decodes
        # 30 frames a step.
        assert v.frame_at(1500, exact=False).time_ms == 0
        assert [
            synth.read_counter(p.frame) for p in v.frames_at([Fraction(t) for t in range(0, 10_000, 1000)])
        ] == [30 * i for i in range(10)]


@pytest.mark.parametrize("ext", ["mkv", "ts"])
def test_the_decode_budget_is_counted_without_an_index(one_keyframe: dict[str, Path], ext: str) -> None:
    with Video(one_keyframe[ext], decode_budget_frames=50) as v:
        assert synth.read_counter(v.frame_at(1000).frame) == 30
    with Video(one_keyframe[ext], decode_budget_frames=50) as v:
        with pytest.raises(DecodeBudgetExceeded, match="passed 51 frames"):
            v.frame_at(9000)
        assert v._cursor.pulled < 60  # stopped at the budget, not at the target (270 frames on)


def test_the_decode_budget_through_the_engine(one_keyframe: dict[str, Path]) -> None:
    limits = Settings.from_env({"DECODE_BUDGET_FRAMES": "50"}).limits
    assert limits.decode_budget_frames == 50
    with pytest.raises(DecodeBudgetExceeded):
        snapshot(one_keyframe["mp4"], parse_sync("video/snapshot,t_9000,f_jpg"), limits=limits)
    fast = snapshot(one_keyframe["mp4"], parse_sync("video/snapshot,t_1900,f_jpg,m_fast"), limits=limits)
    assert fast.time_ms == 0
    # Default: 6000 1080p frames, plenty for this file.
    assert snapshot(one_keyframe["mp4"], parse_sync("video/snapshot,t_9000,f_jpg")).time_ms > 8900


def test_the_decode_budget_scales_with_the_picture(one_keyframe: dict[str, Path]) -> None:
    with Video(one_keyframe["mp4"], decode_budget_frames=6000) as v:
        assert frames_allowed(6000, v.description, keyonly=False) == 6000  # small pictures: no more
        uhd = dataclasses.replace(v.description, coded_width=3840, coded_height=2160)
        assert frames_allowed(6000, uhd, keyonly=False) == 1500  # 4K: a quarter of the 1080p budget


# -- 7. extreme pixel aspect ratio -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_sar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640×64 at a sample aspect ratio of 150:1 (a 96000×64 display size), three grey frames.

    YUV4MPEG carries the ratio in its text header (``A150:1``); PyAV's encoders do not write one.
    """
    path = tmp_path_factory.mktemp("sar") / "sar150.y4m"
    frame = b"FRAME\n" + bytes([100]) * (640 * 64) + bytes([128]) * (640 * 64 // 2)
    path.write_bytes(b"YUV4MPEG2 W640 H64 F25:1 Ip A150:1 C420jpeg\n" + frame * 3)
    with Video(path) as v:
        assert v.sample_aspect_ratio == 150
    return path


@pytest.mark.parametrize("fmt", ["jpg", "webp", "avif", "png"])
def test_an_extreme_sar_is_bounded(wide_sar: Path, fmt: str) -> None:
    rendered = snapshot(wide_sar, parse_sync(f"video/snapshot,t_0,f_{fmt}"))
    assert (rendered.width, rendered.height) == (MAX_SIDE, 3)  # 96000×64 shrunk alike to 4096 wide
    with Image.open(io.BytesIO(rendered.data)) as img:
        assert img.size == (MAX_SIDE, 3)


def test_the_upscale_guard_compares_with_the_coded_size() -> None:
    spec = ImageSpec(format="png")
    assert plan_geometry(640, 64, Fraction(150), 0, spec).width == MAX_SIDE
    # 200 % of the bounded display is an upscale of the 640 coded columns beyond MAX_SIDE.
    with pytest.raises(BadRequest, match="upscale"):
        plan_geometry(640, 64, Fraction(150), 0, ImageSpec(format="png", pw=Fraction(200), ph=Fraction(200)))
    # Rotated: the stretched side is the height.
    g = plan_geometry(640, 64, Fraction(150), 90, spec)
    assert (g.width, g.height) == (3, MAX_SIDE)
    # Ordinary anamorphic video keeps its exact display size (720×576 at 64:45 is 1024×576).
    g = plan_geometry(720, 576, Fraction(64, 45), 0, spec)
    assert (g.width, g.height) == (1024, 576)
    # A source really that large is not upscaled: no bound below its own coded size.
    g = plan_geometry(8000, 100, Fraction(1), 0, spec)
    assert (g.width, g.height) == (8000, 100)


def test_encoder_limits_are_a_413_not_a_500() -> None:
    # A 20000-px-wide coded source is allowed at its own size, but WebP cannot hold it.
    with pytest.raises(TooLarge, match="webp"):
        plan_geometry(20000, 100, Fraction(1), 0, ImageSpec(format="webp"))
    assert plan_geometry(20000, 100, Fraction(1), 0, ImageSpec(format="jpg")).width == 20000
    # And anything an encoder still refuses is mapped, never raised raw.
    with pytest.raises(TooLarge, match="cannot be encoded as webp"):
        encode(Image.new("RGB", (16384, 2)), "webp")


# -- at the edge: statuses and bodies over HTTP ----------------------------------------------------


def test_the_http_answers(tmp_path: Path, one_keyframe: dict[str, Path], wide_sar: Path) -> None:
    from urllib.parse import quote

    from starlette.testclient import TestClient

    from vidsnap.aws.httpapp import create_app
    from vidsnap.aws.storage import LocalStore

    (tmp_path / "bomb.png").write_bytes(_png(64, 64, declare=(16000, 16000)))
    (tmp_path / "onekey.mp4").write_bytes(one_keyframe["mp4"].read_bytes())
    (tmp_path / "sar.y4m").write_bytes(wide_sar.read_bytes())
    settings = Settings.from_env({"DECODE_BUDGET_FRAMES": "50"})
    client = TestClient(create_app(settings=settings, store=LocalStore(tmp_path)))

    def get(key: str, process: str) -> Any:
        return client.get(f"/{quote(key)}?x-oss-process={process}")

    bomb = get("bomb.png", "video/snapshot,t_0,f_jpg")
    assert bomb.status_code == 413
    assert bomb.json()["Code"] == "SourceTooLarge"
    far = get("onekey.mp4", "video/snapshot,t_9000,f_jpg")
    assert far.status_code == 422
    assert far.json()["Code"] == "DecodeBudgetExceeded"
    assert get("onekey.mp4", "video/snapshot,t_1000,f_jpg").status_code == 200
    for fmt in ("jpg", "webp", "avif", "png"):
        wide = get("sar.y4m", f"video/snapshot,t_0,f_{fmt}")
        assert wide.status_code == 200, wide.text

"""Compositions end to end (README: Compositions): IMM Sprites and Animations, MPS TileOut and WebVTT
tracks, the OSS video/sprite and video/animation extensions, sync and async, and their errors."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conftest import MemorySink
from PIL import Image

from vidsnap.core.engine import Limits, run_task, snapshot
from vidsnap.core.errors import BadRequest, TooLarge
from vidsnap.core.lang import parse_process, parse_sync, parse_task
from vidsnap.core.plan import ComposeRequest, SourceRef, Task
from vidsnap.local import synth

SRC = "s3://in/videos/clip.mp4"
REF = SourceRef(key="videos/clip.mp4", bucket="in")


@pytest.fixture(scope="module")
def clip(make_media: Callable[[str], synth.SynthInfo]) -> synth.SynthInfo:
    return make_media("mp4_4s")  # 160x90, 4 s at 25 fps


def _shown(ms: float) -> Fraction:
    """The time of the frame shown at ``ms`` in a 25 fps clip."""
    return Fraction(int(ms // 40) * 40)


def _imm(**image: Any) -> dict[str, Any]:
    return {"Sources": [{"URI": SRC}], "Targets": [{"Image": image}]}


def _mps(**config: Any) -> dict[str, Any]:
    return {"Input": {"Bucket": "in", "Object": "videos/clip.mp4"}, "SnapshotConfig": config}


def _run(body: dict[str, Any] | str, clip: synth.SynthInfo, **kw: Any) -> tuple[Any, MemorySink]:
    sink = MemorySink()
    task = parse_task(body)
    # Every task here also survives the hand-over between invocations (JSON) unchanged.
    assert Task.from_plain(json.loads(json.dumps(task.plain()))) == task
    outcome = run_task(task, clip.path, sink, source_ref=REF, **kw)
    return outcome, sink


def _image(sink: MemorySink, uri: str) -> Image.Image:
    bucket, key = uri.removeprefix("mem://").split("/", 1)
    data, _ = sink.objects[(None if bucket == "-" else bucket, key)]
    return Image.open(io.BytesIO(data))


def _data(sink: MemorySink, uri: str) -> bytes:
    bucket, key = uri.removeprefix("mem://").split("/", 1)
    return sink.objects[(None if bucket == "-" else bucket, key)][0]


# -- IMM Sprites ---------------------------------------------------------------------------------


def test_imm_sprites_place_tiles_by_margin_and_pad_and_cut_the_last_sheet(clip: synth.SynthInfo) -> None:
    sprite = {
        "Format": "png",
        "Interval": 0.5,
        "TileWidth": 3,
        "TileHeight": 2,
        "ScaleWidth": 80,
        "ScaleHeight": 45,
        "Pad": 3,
        "Margin": 5,
        "URI": "s3://out/sprites/{barename}-{index}.{autoext}",
    }
    outcome, sink = _run(_imm(Sprites=[sprite]), clip)
    assert outcome.outputs == []  # sprites only: no single images
    sheets = [c for c in outcome.compositions if c.kind == "sprite"]
    assert [c.uri for c in sheets] == ["mem://out/sprites/clip-1.png", "mem://out/sprites/clip-2.png"]
    assert outcome.sheets == 2
    full, last = (_image(sink, c.uri) for c in sheets)
    assert full.size == (5 + 3 * 80 + 2 * 3 + 5, 5 + 2 * 45 + 3 + 5)
    assert last.size == (full.width, 5 + 45 + 5)  # 8 tiles: the second sheet uses one row
    times = [t for c in sheets for t in c.times_ms]
    assert times == [_shown(i * 500) for i in range(8)]
    tile = sheets[0].tiles[4]
    assert (tile.x, tile.y, tile.width, tile.height) == (5 + 83, 5 + 48, 80, 45)


def test_sprite_tiles_are_the_snapshots_pixel_for_pixel(clip: synth.SynthInfo) -> None:
    common = {"Interval": 0.7, "Number": 5, "Mode": "interval"}
    sprite = {**common, "Format": "png", "ScaleWidth": 64, "ScaleHeight": 36, "TileWidth": 5, "TileHeight": 1}
    snap = {**common, "Format": "png", "Width": 64, "Height": 36, "URI": "s3://out/s/{index}.png"}
    outcome, sink = _run(_imm(Sprites=[sprite], Snapshots=[snap]), clip)
    (sheet,) = [c for c in outcome.compositions if c.kind == "sprite"]
    assert list(sheet.times_ms) == [o.time_ms for o in outcome.outputs]
    picture = _image(sink, sheet.uri).convert("RGB")
    for tile, output in zip(sheet.tiles, outcome.outputs, strict=True):
        single = _image(sink, output.uri).convert("RGB")
        box = (tile.x, tile.y, tile.x + tile.width, tile.y + tile.height)
        assert picture.crop(box).tobytes() == single.tobytes()


def test_sprites_take_any_selection_mode(clip: synth.SynthInfo) -> None:
    outcome, _ = _run(_imm(Sprites=[{"Mode": "keyframe", "ScaleWidth": 0.25, "ScaleHeight": 0.25}]), clip)
    (sheet,) = outcome.compositions
    assert len(sheet.times_ms) == 4  # a keyframe a second
    assert (sheet.tiles[0].width, sheet.tiles[0].height) == (40, 23)  # 22.5 rounds half up


# -- MPS TileOut and tracks ----------------------------------------------------------------------


def _tile_out(**extra: Any) -> dict[str, Any]:
    return _mps(
        OutputFile={"Bucket": "out", "Object": "snaps/{Count}.jpg"},
        TileOutputFile={"Bucket": "out", "Object": "tiles/{TileCount}.jpg"},
        Interval=1,
        Num=4,
        Width=64,
        Height=36,
        **extra,
    )


def test_mps_tileout_defaults_and_kept_cells(clip: synth.SynthInfo) -> None:
    outcome, sink = _run(_tile_out(TileOut={}), clip)
    assert [o.uri for o in outcome.outputs] == [f"mem://out/snaps/0000{i}.jpg" for i in range(1, 5)]
    (sheet,) = outcome.compositions
    assert sheet.uri == "mem://out/tiles/00001.jpg"
    assert _image(sink, sheet.uri).size == (10 * 64, 36)  # 10 columns, one row used, no margin
    assert [(t.x, t.y) for t in sheet.tiles] == [(0, 0), (64, 0), (128, 0), (192, 0)]


def test_mps_tileout_without_cells_and_a_random_colour(clip: synth.SynthInfo) -> None:
    tile_out = {
        "Lines": 1,
        "Columns": 2,
        "Margin": 4,
        "Padding": 2,
        "Color": "random",
        "IsKeepCellPic": False,
    }
    first, sink1 = _run(_tile_out(TileOut=tile_out), clip)
    _, sink2 = _run(_tile_out(TileOut=tile_out), clip)
    assert first.outputs == []
    assert [c.uri for c in first.compositions] == ["mem://out/tiles/00001.jpg", "mem://out/tiles/00002.jpg"]
    assert sink1.objects == sink2.objects  # "random" is derived from the key: the same bytes again
    corner = _image(sink1, first.compositions[0].uri).convert("RGB").getpixel((0, 0))
    assert corner != (0, 0, 0)


def _cues(text: str) -> list[tuple[str, str, str]]:
    assert text.startswith("WEBVTT\n")
    return re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.+)", text)


def test_mps_vtt_track_points_at_the_snapshots(clip: synth.SynthInfo) -> None:
    outcome, sink = _run(_tile_out(Format="vtt"), clip)
    (track,) = [c for c in outcome.compositions if c.kind == "track"]
    assert track.uri == "mem://out/snaps/clip.vtt"
    assert sink.objects[("out", "snaps/clip.vtt")][1].startswith("text/vtt")
    cues = _cues(_data(sink, track.uri).decode())
    assert cues == [
        ("00:00:00.000", "00:00:01.000", "00001.jpg"),
        ("00:00:01.000", "00:00:02.000", "00002.jpg"),
        ("00:00:02.000", "00:00:03.000", "00003.jpg"),
        ("00:00:03.000", "00:00:04.000", "00004.jpg"),
    ]


def test_mps_vtt_with_sprite_fragments(clip: synth.SynthInfo) -> None:
    body = _tile_out(
        Format="vtt", SubOut={"IsSptFrag": True}, TileOut={"Lines": 1, "Columns": 3, "IsKeepCellPic": False}
    )
    outcome, sink = _run(body, clip)
    track = next(c for c in outcome.compositions if c.kind == "track")
    assert track.uri == "mem://out/snaps/clip.vtt"
    cues = _cues(_data(sink, track.uri).decode())
    assert [c[2] for c in cues] == [
        "../tiles/00001.jpg#xywh=0,0,64,36",
        "../tiles/00001.jpg#xywh=64,0,64,36",
        "../tiles/00001.jpg#xywh=128,0,64,36",
        "../tiles/00002.jpg#xywh=0,0,64,36",
    ]
    assert cues[-1][1] == "00:00:04.000"  # the last cue runs to the end of the video


# -- IMM Animations ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_imm_animations(clip: synth.SynthInfo, fmt: str) -> None:
    animation = {"Format": fmt, "Interval": 0.4, "Number": 10, "FrameRate": 5, "Width": 0.5, "Height": 0.5}
    outcome, sink = _run(_imm(Animations=[animation]), clip)
    (made,) = outcome.compositions
    assert made.uri == f"mem://-/clip/animation.{fmt}"
    assert made.frame_ms == 200
    assert list(made.times_ms) == [_shown(i * 400) for i in range(10)]
    with _image(sink, made.uri) as im:
        assert im.n_frames == 10
        assert im.size == (80, 45)
        im.seek(3)
        im.load()
        assert im.info["duration"] == 200
        assert im.info["loop"] == 0


def test_animation_real_time_by_default(clip: synth.SynthInfo) -> None:
    outcome, _ = _run(_imm(Animations=[{"Interval": 0.5, "Number": 3}]), clip)
    assert outcome.compositions[0].frame_ms == 500


# -- OSS extensions --------------------------------------------------------------------------------


def test_oss_sprite_async_with_saveas(clip: synth.SynthInfo) -> None:
    import base64

    o = base64.urlsafe_b64encode(b"sheets/{barename}_{index}.{autoext}").decode().rstrip("=")
    task = parse_process(f"video/sprite,inter_1000,w_64,h_36,tw_2,th_1,pad_0,margin_0|sys/saveas,o_{o}")
    sink = MemorySink()
    outcome = run_task(task, clip.path, sink, source_ref=REF)  # type: ignore[arg-type]
    assert [c.uri for c in outcome.compositions] == ["mem://-/sheets/clip_1.jpg", "mem://-/sheets/clip_2.jpg"]
    assert _image(sink, outcome.compositions[0].uri).size == (128, 36)


def test_oss_sprite_sync_answers_one_sheet(clip: synth.SynthInfo) -> None:
    req = parse_sync("video/sprite,inter_500,w_64,h_36,tw_4,th_2,f_png")
    assert isinstance(req, ComposeRequest)
    assert req.job.selection.num == 8  # one sheet's worth
    rendered = snapshot(clip.path, req)
    assert rendered.content_type == "image/png"
    with Image.open(io.BytesIO(rendered.data)) as im:
        assert im.size == (2 + 4 * 64 + 3 * 2 + 2, 2 + 2 * 36 + 2 + 2)
    assert rendered.time_ms == 0


def test_oss_animation_sync(clip: synth.SynthInfo) -> None:
    rendered = snapshot(clip.path, parse_sync("video/animation,inter_500,num_6,w_80,fps_4,f_webp"))
    assert rendered.content_type == "image/webp"
    with Image.open(io.BytesIO(rendered.data)) as im:
        assert im.n_frames == 6


def test_storyboard_track_links_sheets_that_hold_its_tiles(clip: synth.SynthInfo) -> None:
    req = parse_sync("video/sprite,inter_500,w_64,h_36,tw_2,th_2,pad_0,margin_0,f_vtt")
    rendered = snapshot(clip.path, req)
    assert rendered.content_type.startswith("text/vtt")
    cues = _cues(rendered.data.decode())
    assert len(cues) == 8
    assert cues[0][:2] == ("00:00:00.000", "00:00:00.500")
    assert cues[-1][1] == "00:00:04.000"
    url, frag = cues[5][2].split("#")
    assert (
        url == "?x-oss-process=video/sprite,ss_2000,inter_500,w_64,h_36,tw_2,th_2,pad_0,margin_0,num_4,f_jpg"
    )
    assert frag == "xywh=64,0,64,36"
    # the sheet that URL asks for holds the tile of that cue at that place
    sheet = snapshot(clip.path, parse_sync(url.removeprefix("?x-oss-process=")))
    assert sheet.time_ms == 2000
    with Image.open(io.BytesIO(sheet.data)) as im:
        assert im.size == (128, 72)


# -- budgets and errors ----------------------------------------------------------------------------


def test_tiles_count_against_the_frame_budget(clip: synth.SynthInfo) -> None:
    outcome, _ = _run(_imm(Sprites=[{"Interval": 0.1}]), clip, limits=Limits(max_frames=7))
    assert sum(len(c.times_ms) for c in outcome.compositions) == 7
    assert any("7" in w for w in outcome.warnings), outcome.warnings


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_tile_out(TileOut={"Lines": 0}), "Lines"),
        (_tile_out(TileOut={"Columns": 10001}), "Columns"),
        (_tile_out(TileOut={"Padding": -1}), "Padding"),
        (_tile_out(TileOut={"Color": "blurple"}), "Color"),
        (_tile_out(TileOut={"Margin": "x"}), "Margin"),
        (_tile_out(TileOut={"Bogus": 1}), "Bogus"),
        (_mps(Num=3, TileOut={"Lines": 2}), "TileOutputFile"),
        (_mps(Num=3, Format="vtt", SubOut={"IsSptFrag": True}), "IsSptFrag"),
        (_tile_out(SubOut={"IsSptFrag": True}, TileOut={}), "IsSptFrag"),
        (_tile_out(Format="vtt", TileOut={"IsKeepCellPic": False}), "IsKeepCellPic"),
        (_tile_out(TileOut={"IsKeepCellPic": "maybe"}), "IsKeepCellPic"),
        (_imm(Animations=[{"Format": "gif"}]), "Interval"),
        (_imm(Animations=[{"Interval": 1, "Format": "png"}]), "Format"),
        (_imm(Animations=[{"Interval": 1, "FrameRate": 0}]), "FrameRate"),
        (_imm(Sprites=[{"TileWidth": 0}]), "TileWidth"),
        (_imm(Sprites=[{"Pad": -2}]), "Pad"),
        (_imm(Sprites=[{"ScaleWidth": 1.5}]), "ScaleWidth"),
        (_imm(Sprites=[{"ScaleHeight": 4096}]), "ScaleHeight"),
        (_imm(Sprites=[{"Format": "avif"}]), "Format"),
        (_imm(Sprites=[{"Bogus": 1}]), "Bogus"),
    ],
)
def test_bad_composition_fields_are_named(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_task(body)
    assert info.value.status == 400
    assert info.value.param == param, info.value.message
    assert param in info.value.message


@pytest.mark.parametrize(
    ("process", "param"),
    [
        ("video/sprite,tw_0", "tw"),
        ("video/sprite,th_10001", "th"),
        ("video/sprite,pad_-1", "pad"),
        ("video/sprite,f_gif", "f"),
        ("video/sprite,t_5", "t"),
        ("video/animation,num_3", "inter"),
        ("video/animation,inter_100,fps_0", "fps"),
        ("video/animation,inter_100,f_jpg", "f"),
    ],
)
def test_bad_oss_composition_parameters(process: str, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_process(process)
    assert info.value.param == param, info.value.message


def test_sync_compositions_take_no_further_segments() -> None:
    with pytest.raises(BadRequest, match="no further segments"):
        parse_sync("video/sprite,inter_100|sys/saveas,o_eA")
    with pytest.raises(BadRequest, match="f_vtt"):
        snapshot_track_without_interval()


def snapshot_track_without_interval() -> None:
    from vidsnap.core.storyboard import storyboard_track

    req = parse_sync("video/sprite,m_key,f_vtt")
    assert isinstance(req, ComposeRequest)
    storyboard_track(req, _geometry(), Fraction(4000), max_tiles=10)


def _geometry() -> Any:
    from vidsnap.core.imaging import Geometry

    return Geometry(40, 24, 0, None, None, 40, 24)


def test_sheet_too_large_for_its_format_is_413(clip: synth.SynthInfo) -> None:
    body = _imm(Sprites=[{"Format": "webp", "TileWidth": 200, "TileHeight": 1, "ScaleWidth": 100}])
    with pytest.raises(TooLarge, match="webp allows") as info:
        _run(body, clip)
    assert info.value.status == 413


def test_animation_file_sizes_stay_small(clip: synth.SynthInfo, tmp_path: Path) -> None:
    """10 frames at 320 px: well under 1 MB (the number is printed for the notes)."""
    video = synth.make_video(tmp_path / "big.mp4", width=640, height=360, duration_s=5, gop=25)
    sizes = {}
    for fmt in ("gif", "webp"):
        body = {
            "Sources": [{"URI": SRC}],
            "Targets": [
                {"Image": {"Animations": [{"Format": fmt, "Interval": 0.5, "Number": 10, "Width": 320}]}}
            ],
        }
        outcome, _ = _run(body, video)
        sizes[fmt] = outcome.compositions[0].size
    print(f"animation of 10 frames at 320x180: {sizes}")
    assert sizes["gif"] < 1_000_000
    assert sizes["webp"] < sizes["gif"]


# -- the HTTP surface --------------------------------------------------------------------------------


def test_http_answers_sheets_tracks_and_animations(clip: synth.SynthInfo, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from vidsnap.aws.httpapp import create_app
    from vidsnap.aws.settings import Settings
    from vidsnap.aws.storage import LocalStore

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "clip.mp4").write_bytes(Path(clip.path).read_bytes())
    stored: dict[str, bytes] = {}

    def presign(key: str, data: bytes, content_type: str) -> str:
        stored[key] = data
        return f"https://results.example/{key}"

    app = create_app(settings=Settings(), store=LocalStore(tmp_path), presign=presign, max_inline=20_000)
    client = TestClient(app)
    sheet = client.get("/v/clip.mp4?x-oss-process=video/sprite,inter_500,w_64,h_36,tw_4,th_2")
    assert sheet.status_code == 200, sheet.text
    assert sheet.headers["content-type"] == "image/jpeg"
    assert sheet.headers["x-vidsnap-width"] == str(2 + 4 * 64 + 3 * 2 + 2)
    etag = sheet.headers["etag"]
    assert (
        client.get(
            "/v/clip.mp4?x-oss-process=video/sprite,inter_500,w_64,h_36,tw_4,th_2",
            headers={"If-None-Match": etag},
        ).status_code
        == 304
    )
    track = client.get("/v/clip.mp4?x-oss-process=video/sprite,inter_1000,w_64,h_36,tw_2,th_2,f_vtt")
    assert track.headers["content-type"].startswith("text/vtt")
    assert len(_cues(track.text)) == 4
    animation = client.get(
        "/v/clip.mp4?x-oss-process=video/animation,inter_200,num_15,w_160,h_90,fps_5,f_gif",
        follow_redirects=False,
    )
    assert animation.status_code == 302  # above max_inline: stored, and redirected to
    (key,) = stored
    assert key.endswith(".gif")
    assert animation.headers["location"] == f"https://results.example/{key}"
    bad = client.get("/v/clip.mp4?x-oss-process=video/sprite,tw_0")
    assert bad.status_code == 400
    assert "tw" in bad.json()["Message"]

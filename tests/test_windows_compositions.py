"""Windows of a long task with compositions: merged (and finished) they write what one pass writes.

Sprite sheets, thumbnail tracks and animations of OSS, IMM and MPS tasks: the same keys and bytes
(sheets pixel for pixel), ``{index}``/``{TileCount}`` numbering, composition entries and
``TileCount`` as the single pass, with each window writing only whole sheets.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CountingSink, handed_over, plan_of

from vidsnap.core.engine import Outcome, run_task, run_window
from vidsnap.core.errors import BadRequest
from vidsnap.core.lang import parse_process, parse_task
from vidsnap.core.plan import SourceRef, Task
from vidsnap.core.windows import WindowPlan, finish, merge_windows
from vidsnap.local import synth

REF = SourceRef(key="videos/clip.mp4", bucket="in")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def oss(process: str, template: str, *, intra: bool = False) -> Task:
    task = parse_process(f"{process}|sys/saveas,o_{b64(template)}")
    if intra:
        jobs = tuple(
            dataclasses.replace(j, selection=dataclasses.replace(j.selection, exact=False)) for j in task.jobs
        )
        task = dataclasses.replace(task, jobs=jobs)
    return task


def mps(**config: Any) -> Task:
    body = {"Input": {"Bucket": "in", "Object": "videos/clip.mp4"}, "SnapshotConfig": config}
    return parse_task(body)


def tile_out(**extra: Any) -> Task:
    config = {
        "OutputFile": {"Bucket": "out", "Object": "snaps/{Count}.jpg"},
        "TileOutputFile": {"Bucket": "out", "Object": "tiles/{TileCount}.jpg"},
        "Interval": 0.2,
        "Num": 30,
        "Width": 64,
        "Height": 36,
    }
    return mps(**{**config, **extra})


def imm(**image: Any) -> Task:
    return parse_task({"Sources": [{"URI": "s3://in/videos/clip.mp4"}], "Targets": [{"Image": image}]})


def jobs(*tasks: Task) -> Task:
    """One task of the jobs of ``tasks``."""
    return Task(jobs=tuple(j for t in tasks for j in t.jobs))


CASES = {
    "oss_sprite": lambda: oss("video/sprite,inter_160,w_64,h_36,tw_3,th_2,f_jpg", "s/{index}.{autoext}"),
    "oss_sprite_intra": lambda: oss(
        "video/sprite,inter_150,w_64,h_36,tw_2,th_1,f_png", "s/{index}.{autoext}", intra=True
    ),
    "oss_sprite_key": lambda: oss("video/sprite,m_key,w_64,h_36,tw_2,th_1,f_png", "k/{index}.{autoext}"),
    "oss_animation": lambda: oss("video/animation,inter_400,w_64,f_gif", "a/{index}.{autoext}"),
    "mps_tileout": lambda: tile_out(
        FrameType="normal", TileOut={"Lines": 2, "Columns": 2, "Color": "random"}
    ),
    "mps_tileout_intra": lambda: tile_out(Interval=0.1, TileOut={"Lines": 1, "Columns": 2}),
    "mps_vtt": lambda: tile_out(Format="vtt", TileOut={"Lines": 1, "Columns": 4}),
    "mps_vtt_fragments": lambda: tile_out(
        FrameType="normal",
        Format="vtt",
        SubOut={"IsSptFrag": True},
        TileOut={"Lines": 1, "Columns": 5, "IsKeepCellPic": False},
    ),
    # A sheet starting inside a GOP cuts the windows of the other jobs there too: exact, intra, key.
    "sprite_and_modes": lambda: jobs(
        oss("video/sprite,inter_120,w_64,h_36,tw_2,th_2,f_jpg", "s/{index}.{autoext}"),
        oss("video/snapshots,f_jpg,inter_250", "i/{index}.{autoext}", intra=True),
        oss("video/snapshots,f_jpg,inter_170", "e/{index}.{autoext}"),
        oss("video/snapshots,f_png,w_80,m_key", "k/{index}.{autoext}"),
    ),
    "imm_mixed": lambda: imm(
        Snapshots=[
            {"Interval": 0.3, "Width": 80, "Height": 45, "URI": "s3://out/s/{index}.png", "Format": "png"}
        ],
        Sprites=[{"Interval": 0.2, "TileWidth": 3, "TileHeight": 2, "ScaleWidth": 0.25, "ScaleHeight": 0.25}],
        Animations=[{"Interval": 0.5, "Number": 4, "Width": 0.25, "Height": 0.25}],
    ),
}


#: Cases whose sheets are small enough that the gops clip is cut in two windows at least.
SPLIT = {"oss_sprite", "mps_tileout", "mps_vtt_fragments", "sprite_and_modes"}


@pytest.fixture(scope="module")
def open_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s with open GOPs in MP4 (the index places keyframes a frame off their real pts)."""
    path = tmp_path_factory.mktemp("windows") / "open_gop.mp4"
    synth.make_video(path, duration_s=4, gop=24, bframes=3, open_gop=True, width=160, height=90)
    return path


@pytest.fixture(
    scope="module",
    params=["gops", "open_gop", "mp4_long_gop", "mp4_vfr", "mp4_offset", "mp4_cuts", "mp4_hevc"],
)
def clip(request: pytest.FixtureRequest, gops: Path, open_gop: Path, make_media: Any) -> Path:
    if request.param == "gops":
        return gops
    if request.param == "open_gop":
        return open_gop
    return Path(make_media(request.param).path)


def run_windows(task: Task, source: Path, plan: WindowPlan, sink: CountingSink) -> Outcome:
    """Every window on its own video (as its own invocation would), merged and finished."""
    task, windows = handed_over(task, plan)
    outcomes = [run_window(task, source, sink, w, totals=plan.totals, source_ref=REF) for w in windows]
    handed = WindowPlan.from_plain(json.loads(json.dumps(plan.plain())))  # to the merge step
    assert handed == plan
    return finish(task, handed, outcomes, sink, source_ref=REF)


def summary(outcome: Outcome) -> tuple[Any, ...]:
    return (
        [(o.uri, o.time_ms, o.width, o.height, o.size) for o in outcome.outputs],
        [dataclasses.astuple(c) for c in outcome.compositions],
        outcome.sheets,
        outcome.warnings,
    )


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("count", [2, 3, 5])
def test_windows_with_compositions_write_what_one_pass_writes(clip: Path, name: str, count: int) -> None:
    task = CASES[name]()
    one = CountingSink()
    single = run_task(task, clip, one, source_ref=REF)
    assert single.compositions
    plan = plan_of(task, clip, count=count)
    assert 1 <= len(plan.windows) <= count
    if clip.name == "gops.mp4" and name in SPLIT:
        assert len(plan.windows) >= 2
    many = CountingSink()
    merged = run_windows(task, clip, plan, many)
    assert summary(merged) == summary(single)
    assert many.objects == one.objects
    assert sorted(many.puts) == sorted(one.puts)  # no sheet, image or track is written twice


def test_each_window_writes_whole_sheets(gops: Path) -> None:
    task = CASES["oss_sprite"]()
    plan = plan_of(task, gops, count=3)
    assert len(plan.windows) == 3
    assert any(w.start_ms % 1200 for w in plan.windows)  # a window that starts inside a GOP
    for window in plan.windows:
        assert window.before[0] % 6 == 0
        sheets = run_window(task, gops, CountingSink(), window, totals=plan.totals)[0].compositions
        assert sheets
        assert all(len(s.tiles) == 6 for s in sheets[:-1])
        assert sheets[0].tiles[0].sheet == window.before[0] // 6


def test_an_animation_is_written_by_the_window_that_holds_all_its_frames(gops: Path) -> None:
    task = oss("video/animation,ss_2500,inter_200,num_5,w_64,f_gif", "a/{index}.{autoext}")
    plan = plan_of(task, gops, count=5)
    assert len(plan.windows) >= 2
    sinks = [CountingSink() for _ in plan.windows]
    for window, sink in zip(plan.windows, sinks, strict=True):
        run_window(task, gops, sink, window, totals=plan.totals)
    assert [len(s.puts) for s in sinks].count(1) == 1
    assert sum(len(s.puts) for s in sinks) == 1


def test_a_composing_window_run_twice_writes_the_same_keys(gops: Path) -> None:
    task = CASES["mps_vtt_fragments"]()
    plan = plan_of(task, gops, count=3)
    window = plan.windows[1]
    first, again = CountingSink(), CountingSink()
    a = run_window(task, gops, first, window, totals=plan.totals, source_ref=REF)
    b = run_window(task, gops, again, window, totals=plan.totals, source_ref=REF)
    assert first.puts == again.puts
    assert first.objects == again.objects
    assert summary(a[0]) == summary(b[0])
    assert a[0].stopped is not None


def test_finish_is_the_merge_for_a_task_without_tracks(gops: Path) -> None:
    task = CASES["oss_sprite"]()
    plan = plan_of(task, gops, count=2)
    sink = CountingSink()
    outcomes = [run_window(task, gops, sink, w, totals=plan.totals) for w in plan.windows]
    puts = list(sink.puts)
    assert finish(task, plan, outcomes, sink, source_ref=REF) == merge_windows(outcomes)
    assert sink.puts == puts


@pytest.mark.parametrize(
    "plain",
    [
        None,
        {"Windows": [], "Totals": [1]},
        {"Windows": [{"Index": 0}], "Totals": [1], "DurationMs": "10"},
        {"Windows": [], "Totals": ["1"], "DurationMs": "10"},
        {"Windows": [], "Totals": [-1], "DurationMs": "10"},
        {"Windows": [], "Totals": [1], "DurationMs": "x"},
    ],
)
def test_a_plan_that_is_not_one_is_a_bad_request(plain: Any) -> None:
    with pytest.raises(BadRequest) as err:
        WindowPlan.from_plain(plain)
    assert err.value.param == "window"

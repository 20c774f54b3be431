"""vidsnap.core.select: the TimeMs lists of every mode (README: Request languages) and their frames."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidsnap.core.decode import Video
from vidsnap.core.plan import Selection
from vidsnap.core.select import dhash, select_frames
from vidsnap.local import synth


def run(path: str, sel: Selection, max_frames: int = 1000) -> tuple[list[Fraction], list[str]]:
    warnings: list[str] = []
    with Video(path, bulk=True) as v:
        picks = list(select_frames(v, sel, max_frames=max_frames, warnings=warnings))
    return [p.time_ms for p in picks], warnings


@pytest.fixture(scope="module")
def four(make_media: Callable[[str], synth.SynthInfo]) -> str:
    """4 s at 25 fps, a keyframe every second, 2 B-frames."""
    return make_media("mp4_4s").path


def ms(*values: float) -> list[Fraction]:
    return [Fraction(v) for v in values]


def test_inter(four: str) -> None:
    assert run(four, Selection(mode="inter", interval_ms=Fraction(1000)))[0] == ms(0, 1000, 2000, 3000)
    assert run(four, Selection(mode="inter", interval_ms=Fraction(1000), start_ms=Fraction(500)))[0] == ms(
        480, 1480, 2480, 3480
    )
    assert run(four, Selection(mode="inter", interval_ms=Fraction(700), num=3))[0] == ms(0, 680, 1400)
    # Fractional intervals (IMM seconds) stay exact: 1/3 s steps land on 320, 640 (frames at 40 ms).
    got = run(four, Selection(mode="inter", interval_ms=Fraction(1000, 3), num=4))[0]
    assert got == ms(0, 320, 640, 1000)


def test_inter_every_frame(four: str) -> None:
    every, warnings = run(four, Selection(mode="inter", interval_ms=Fraction(0)))
    assert every == [Fraction(40 * i) for i in range(100)]
    assert not warnings
    # Below the frame interval means every frame too, from ss.
    assert run(four, Selection(mode="inter", interval_ms=Fraction(10), start_ms=Fraction(3850)))[0] == ms(
        3840, 3880, 3920, 3960
    )
    assert run(four, Selection(mode="inter", num=5))[0] == ms(0, 40, 80, 120, 160)


def test_max_frames_with_num_zero_warns(four: str) -> None:
    got, warnings = run(four, Selection(mode="inter"), max_frames=7)
    assert got == [Fraction(40 * i) for i in range(7)]
    assert len(warnings) == 1
    assert "7" in warnings[0]
    # Exactly as many frames as the limit: no warning.
    got, warnings = run(four, Selection(mode="inter", interval_ms=Fraction(1000)), max_frames=4)
    assert len(got) == 4
    assert not warnings


def test_key(four: str, make_media: Callable[[str], synth.SynthInfo]) -> None:
    assert run(four, Selection(mode="key"))[0] == ms(0, 1000, 2000, 3000)
    assert run(four, Selection(mode="key", start_ms=Fraction(1500)))[0] == ms(2000, 3000)
    assert run(four, Selection(mode="key", start_ms=Fraction(1000), num=2))[0] == ms(1000, 2000)
    ts = make_media("ts_open_gop")
    assert run(ts.path, Selection(mode="key"))[0] == [t * 1000 for t in ts.keyframe_times_s]


def test_avg(four: str) -> None:
    assert run(four, Selection(mode="avg", num=4))[0] == ms(0, 1000, 2000, 3000)
    assert run(four, Selection(mode="avg"))[0] == [Fraction(400 * i) for i in range(10)]
    assert run(four, Selection(mode="avg", num=2, start_ms=Fraction(2000)))[0] == ms(2000, 3000)


def test_intra_selection_uses_keyframes(four: str) -> None:
    """MPS FrameType intra: the keyframe at or before each time, each keyframe once."""
    got = run(four, Selection(mode="inter", interval_ms=Fraction(500), exact=False))[0]
    assert got == ms(0, 1000, 2000, 3000)
    assert run(four, Selection(mode="avg", num=4, exact=False, start_ms=Fraction(500)))[0] == ms(
        0, 1000, 2000, 3000
    )


def test_dhash_finds_scene_cuts(make_media: Callable[[str], synth.SynthInfo]) -> None:
    cuts = make_media("mp4_cuts").path  # cuts at 1.5, 2.5, 3.2 s; 25 fps
    sel = Selection(mode="dhash", interval_ms=Fraction(80), threshold=30)
    assert run(cuts, sel)[0] == ms(0, 1520, 2560, 3200)  # samples every 80 ms
    # num keeps the highest scores (the first sample scores 100), returned in time order.
    top2 = run(cuts, Selection(mode="dhash", interval_ms=Fraction(80), threshold=30, num=2))[0]
    assert len(top2) == 2
    assert top2[0] == 0
    assert top2[1] in ms(1520, 2560, 3200)
    top3 = run(cuts, Selection(mode="dhash", interval_ms=Fraction(80), threshold=30, num=3))[0]
    assert set(top2) <= set(top3)
    assert top3 == sorted(top3)
    # thr 100: nothing scores above 100.
    assert run(cuts, Selection(mode="dhash", threshold=100))[0] == []
    # Default interval 1000 ms, thr 0: every sample that changed at all.
    assert run(cuts, Selection(mode="dhash"))[0][0] == 0


def test_dhash_second_pass_matches_kept_frames(
    make_media: Callable[[str], synth.SynthInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsnap.core import select as select_mod

    cuts = make_media("mp4_cuts").path
    sel = Selection(mode="dhash", interval_ms=Fraction(80), threshold=30, num=3)
    kept, _ = run(cuts, sel)
    monkeypatch.setattr(select_mod, "_DHASH_KEEP_BYTES", 0)  # force the re-decode path
    again, _ = run(cuts, sel)
    assert kept == again


def test_dhash_function() -> None:
    ramp = np.tile(np.linspace(16, 235, 320).astype(np.uint8), (180, 1))
    up = av.VideoFrame.from_ndarray(np.stack([ramp] * 3, axis=-1), format="rgb24")
    down = av.VideoFrame.from_ndarray(np.stack([ramp[:, ::-1]] * 3, axis=-1), format="rgb24")
    assert dhash(up) == dhash(up)
    assert 0 <= dhash(up) < 1 << 64
    assert (dhash(up) ^ dhash(down)).bit_count() >= 48


def test_cover_art_is_the_only_frame(cover_m4a: Path) -> None:
    for mode in ("inter", "key", "avg", "dhash"):
        got, _ = run(str(cover_m4a), Selection(mode=mode, interval_ms=Fraction(100)))  # type: ignore[arg-type]
        assert got == [0]


def test_selected_frames_are_exact(four: str) -> None:
    """Frames of a selection are pixel-identical to single exact requests at their times."""
    with Video(four, bulk=True) as v:
        picks = list(select_frames(v, Selection(mode="avg", num=7), max_frames=100, warnings=[]))
        pixels = [(p.time_ms, p.frame.to_ndarray()) for p in picks]
    for t, px in pixels:
        with Video(four) as v:
            assert np.array_equal(v.frame_at(t).frame.to_ndarray(), px)
            assert synth.read_counter(v.frame_at(t).frame) == t / 40

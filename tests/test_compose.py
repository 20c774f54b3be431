"""vidsnap.core.compose: sheet geometry, sheet-by-sheet composition, WebVTT text, animations."""

from __future__ import annotations

import io
from fractions import Fraction

import pytest
from PIL import Image

from vidsnap.core.compose import (
    SheetComposer,
    SheetLayout,
    Tile,
    encode_animation,
    fragment,
    parse_color,
    random_color,
    relative_url,
    track_cues,
    vtt_time,
    webvtt,
)
from vidsnap.core.errors import BadRequest, TooLarge


def test_layout_places_tiles_from_margin_and_pad() -> None:
    layout = SheetLayout(columns=3, rows=2, cell_width=10, cell_height=5, pad=2, margin=4)
    assert layout.size() == (4 + 10 + 2 + 10 + 2 + 10 + 4, 4 + 5 + 2 + 5 + 4)
    assert layout.place(0) == (0, 4, 4)
    assert layout.place(2) == (0, 4 + 2 * 12, 4)
    assert layout.place(3) == (0, 4, 4 + 7)
    assert layout.place(6) == (1, 4, 4)  # the next sheet starts over
    assert layout.sheets(7) == 3 - 1
    assert layout.rows_used(1) == 1
    assert layout.rows_used(4) == 2


def test_layout_refuses_what_cannot_be_encoded_or_held() -> None:
    with pytest.raises(ValueError, match="columns"):
        SheetLayout(0, 1, 1, 1)
    with pytest.raises(ValueError, match="negative"):
        SheetLayout(1, 1, 1, 1, pad=-1)
    with pytest.raises(BadRequest, match="at most"):
        SheetLayout(10_001, 1, 1, 1).check("png", param="Columns")
    with pytest.raises(TooLarge, match="webp allows"):
        SheetLayout(200, 1, 100, 100).check("webp", param="TileOut")
    with pytest.raises(TooLarge, match="pixels"):
        SheetLayout(100, 100, 1000, 1000).check("png", param="TileOut")
    SheetLayout(10, 10, 160, 90).check("jpg", param="TileOut")


def _colour(n: int) -> tuple[int, int, int]:
    return (n * 40 % 256, 255 - n * 40 % 256, 100)


def test_composer_writes_full_sheets_then_cuts_the_last_to_its_rows() -> None:
    done: list[tuple[int, Image.Image, list[Tile]]] = []
    layout = SheetLayout(columns=2, rows=2, cell_width=8, cell_height=6, pad=1, margin=2)
    composer = SheetComposer(layout, (0, 0, 255), lambda n, im, tiles: done.append((n, im.copy(), tiles)))
    for i in range(5):
        tile = composer.add(Image.new("RGB", (8, 6), _colour(i)), Fraction(i * 1000))
        assert tile.sheet == i // 4
    assert len(done) == 1  # one sheet in memory at a time: the first left when it was full
    composer.finish()
    assert [n for n, _, _ in done] == [0, 1]
    first, last = done[0][1], done[1][1]
    assert first.size == layout.size()
    assert last.size == layout.size(1)  # one row used
    for n, sheet, tiles in done:
        for t in tiles:
            i = int(t.time_ms / 1000)
            assert sheet.getpixel((t.x, t.y)) == _colour(i)
            assert sheet.getpixel((t.x + t.width - 1, t.y + t.height - 1)) == _colour(i)
            assert (t.width, t.height) == (8, 6)
        assert sheet.getpixel((0, 0)) == (0, 0, 255)  # margin in the background colour
        assert n == tiles[0].sheet
    assert composer.count == 5
    assert composer.sheets == 2


def test_composer_centres_a_picture_of_another_shape() -> None:
    got: list[list[Tile]] = []
    composer = SheetComposer(SheetLayout(1, 1, 10, 10), (0, 0, 0), lambda _n, _im, tiles: got.append(tiles))
    composer.add(Image.new("RGB", (20, 10), "white"), Fraction(0))
    (tile,) = got[0]
    assert (tile.x, tile.y, tile.width, tile.height) == (0, 2, 10, 5)


def test_colours() -> None:
    assert parse_color("black") == (0, 0, 0)
    assert parse_color("#ff8000") == (255, 128, 0)
    assert parse_color("Random") == "random"
    with pytest.raises(BadRequest, match="Color: unknown colour") as info:
        parse_color("blurple")
    assert info.value.param == "Color"
    assert random_color("a/b.jpg") == random_color("a/b.jpg")
    assert random_color("a/b.jpg") != random_color("a/c.jpg")


def test_vtt_times_and_cues() -> None:
    assert vtt_time(Fraction(3_723_004_9, 10)) == "01:02:03.004"
    assert vtt_time(0) == "00:00:00.000"
    times = [Fraction(0), Fraction(2000), Fraction(4000, 3)]
    cues = track_cues(times[:2], Fraction(5000), ["a.jpg", "b.jpg"])
    assert [(c.start_ms, c.end_ms, c.target) for c in cues] == [
        (0, 2000, "a.jpg"),
        (2000, 5000, "b.jpg"),
    ]
    text = webvtt(cues)
    assert text.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:02.000\na.jpg\n")
    assert "00:00:02.000 --> 00:00:05.000\nb.jpg" in text
    # a last frame at the very end still gets a cue
    (cue,) = track_cues([Fraction(5000)], Fraction(5000), ["x.jpg"])
    assert vtt_time(cue.end_ms) == "00:00:05.001"


def test_relative_urls_and_fragments() -> None:
    assert relative_url("out/track.vtt", "out/sprite-1.jpg") == "sprite-1.jpg"
    assert relative_url("out/vtt/track.vtt", "out/img/a b.jpg") == "../img/a%20b.jpg"
    assert relative_url("track.vtt", "x/y#1.jpg") == "x/y%231.jpg"
    assert fragment("s.jpg", Tile(0, 3, 4, 160, 90, Fraction(0))) == "s.jpg#xywh=3,4,160,90"


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animations_loop_with_the_frame_rate(fmt: str) -> None:
    frames = [Image.new("RGB", (320, 180), _colour(i)) for i in range(10)]
    data = encode_animation(frames, Fraction(500), fmt)  # type: ignore[arg-type]
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt.upper()
        assert im.n_frames == 10
        assert im.info.get("loop") == 0
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()  # WebP reports a frame's duration once it is loaded
            durations.append(im.info["duration"])
        assert durations == [500] * 10
    assert len(data) < 100_000


def _gif_colour_tables(data: bytes) -> tuple[bool, int]:
    """(has a global colour table, number of local colour tables), read from the GIF's blocks."""
    assert data[:6] in (b"GIF87a", b"GIF89a")
    packed = data[10]
    pos = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    local = 0

    def skip_sub_blocks(pos: int) -> int:
        while data[pos]:
            pos += data[pos] + 1
        return pos + 1

    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        else:
            assert data[pos] == 0x2C, f"unexpected block {data[pos]:#x} at {pos}"
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:
                local += 1
                pos += 3 * 2 ** ((flags & 7) + 1)
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the data
    return bool(packed & 0x80), local


def test_gif_uses_one_shared_palette() -> None:
    frames = [Image.new("RGB", (64, 64), _colour(i)) for i in range(4)]
    data = encode_animation(frames, Fraction(100), "gif")
    assert _gif_colour_tables(data) == (True, 0)
    with Image.open(io.BytesIO(data)) as im:
        for i in range(im.n_frames):
            im.seek(i)
            assert im.convert("RGB").getpixel((5, 5)) == _colour(i)


def test_animation_formats() -> None:
    with pytest.raises(BadRequest, match="gif or webp"):
        encode_animation([Image.new("RGB", (2, 2))], Fraction(100), "png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        encode_animation([], Fraction(100), "gif")

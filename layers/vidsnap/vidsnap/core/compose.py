"""Compositions of captured frames: sprite sheets, WebVTT thumbnail tracks, animated previews.

README: Compositions documents the requests (IMM ``Sprites``/``Animations``, MPS ``TileOut`` and
``Format: vtt``, the ``video/sprite`` and ``video/animation`` extensions). This module is the pure
part: sheet geometry, composing tiles sheet by sheet, the WebVTT text and the animation encoders.
It never decodes: the engine feeds it the same pictures it renders as single snapshots, so the
tiles are those snapshots pixel for pixel, and memory stays at one sheet whatever the tile count.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal
from urllib.parse import quote

from PIL import Image, ImageColor

from vidsnap.core.errors import BadRequest, TooLarge
from vidsnap.core.imaging import MAX_ENCODER_SIDE
from vidsnap.core.plan import Format

__all__ = [
    "MAX_SHEET_PIXELS",
    "MAX_TILES_PER_SIDE",
    "AnimationFormat",
    "Cue",
    "SheetComposer",
    "SheetLayout",
    "Tile",
    "encode_animation",
    "fragment",
    "parse_color",
    "random_color",
    "relative_url",
    "track_cues",
    "vtt_time",
    "webvtt",
]

AnimationFormat = Literal["gif", "webp"]
RGB = tuple[int, int, int]

#: Rows or columns of one sheet at most (MPS accepts Lines/Columns up to 10000).
MAX_TILES_PER_SIDE = 10_000
#: Pixels of one sheet at most: one sheet is held in memory while it is composed (3 bytes a pixel),
#: so this bounds a composition's memory at ~250 MB whatever the tile count or cell size (36
#: full-size 1080p tiles, the IMM defaults, fit).
MAX_SHEET_PIXELS = 80 * 1024 * 1024


def parse_color(value: str, *, param: str = "Color") -> RGB | Literal["random"]:
    """A colour name (``black``, ``navy``), ``#rgb``/``#rrggbb`` or ``random``; BadRequest otherwise."""
    text = value.strip()
    if text.lower() == "random":
        return "random"
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise BadRequest(
            f"{param}: unknown colour {value[:40]!r}; use a colour name, #rrggbb or random", param=param
        ) from None
    return (rgb[0], rgb[1], rgb[2])


def random_color(seed: str) -> RGB:
    """The colour MPS calls ``random``, derived from ``seed`` (an output key) so that the same task
    always writes the same bytes (redelivered tasks overwrite instead of differing)."""
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    return (digest[0], digest[1], digest[2])


@dataclass(frozen=True)
class SheetLayout:
    """Where tiles go: ``columns`` × ``rows`` cells of ``cell_width`` × ``cell_height`` pixels,
    ``pad`` pixels between cells and ``margin`` pixels between the cells and the sheet's edge."""

    columns: int
    rows: int
    cell_width: int
    cell_height: int
    pad: int = 0
    margin: int = 0

    def __post_init__(self) -> None:
        for name in ("columns", "rows", "cell_width", "cell_height"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.pad < 0 or self.margin < 0:
            raise ValueError("pad and margin must not be negative")

    @property
    def per_sheet(self) -> int:
        """Tiles one sheet holds."""
        return self.columns * self.rows

    def size(self, rows: int | None = None) -> tuple[int, int]:
        """Width and height of a sheet with ``rows`` rows (None: all of them)."""
        used = self.rows if rows is None else rows
        width = 2 * self.margin + self.columns * self.cell_width + (self.columns - 1) * self.pad
        height = 2 * self.margin + used * self.cell_height + (used - 1) * self.pad
        return width, height

    def place(self, number: int) -> tuple[int, int, int]:
        """Sheet (0-based), x and y of the top left corner of tile ``number`` (0-based)."""
        sheet, cell = divmod(number, self.per_sheet)
        row, column = divmod(cell, self.columns)
        x = self.margin + column * (self.cell_width + self.pad)
        y = self.margin + row * (self.cell_height + self.pad)
        return sheet, x, y

    def sheets(self, tiles: int) -> int:
        """How many sheets ``tiles`` tiles fill."""
        return -(-tiles // self.per_sheet)

    def rows_used(self, tiles_on_sheet: int) -> int:
        """Rows of a sheet holding ``tiles_on_sheet`` tiles: the last sheet is cut to its rows."""
        return min(self.rows, -(-tiles_on_sheet // self.columns))

    def check(self, fmt: Format, *, param: str) -> None:
        """Refuse, before decoding, a sheet the encoder or the memory bound cannot take."""
        if self.columns > MAX_TILES_PER_SIDE or self.rows > MAX_TILES_PER_SIDE:
            raise BadRequest(f"{param}: at most {MAX_TILES_PER_SIDE} tiles per row or column", param=param)
        width, height = self.size()
        limit = MAX_ENCODER_SIDE.get(fmt)
        if limit is not None and max(width, height) > limit:
            raise TooLarge(f"{param}: a {width}x{height} sheet is larger than {fmt} allows ({limit} px)")
        if width * height > MAX_SHEET_PIXELS:
            raise TooLarge(
                f"{param}: a {width}x{height} sheet has more than {MAX_SHEET_PIXELS} pixels; "
                "use fewer rows or columns or smaller cells"
            )


@dataclass(frozen=True)
class Tile:
    """One tile: the sheet it is on (0-based), its box on that sheet and the time of its frame."""

    sheet: int
    x: int
    y: int
    width: int
    height: int
    time_ms: Fraction


#: Called with each finished sheet: its number (0-based), the picture and its tiles in order.
SheetDone = Callable[[int, Image.Image, list[Tile]], None]


class SheetComposer:
    """Composes tiles onto sheets, one sheet in memory at a time.

    A tile smaller than its cell (a picture of another aspect ratio) is centred in it. ``add``
    returns the tile's place, so a thumbnail track can point into the sheet before it is written.
    ``first``: the tiles placed before, elsewhere (a window of a long task starts at a sheet's first
    tile, so a multiple of the tiles a sheet holds): numbering goes on after them.
    """

    def __init__(self, layout: SheetLayout, background: RGB, on_sheet: SheetDone, *, first: int = 0) -> None:
        if first % layout.per_sheet:
            raise ValueError("tiles placed before must fill whole sheets")
        self.layout = layout
        self.background = background
        self.on_sheet = on_sheet
        self.count = first
        self.sheets = first // layout.per_sheet
        self._canvas: Image.Image | None = None
        self._tiles: list[Tile] = []

    def add(self, picture: Image.Image, time_ms: Fraction) -> Tile:
        """Place ``picture`` in the next cell; a full sheet is handed to ``on_sheet``."""
        layout = self.layout
        sheet, x, y = layout.place(self.count)
        if self._canvas is None:
            self._canvas = Image.new("RGB", layout.size(), self.background)
        if picture.size != (layout.cell_width, layout.cell_height):
            picture = _fit(picture, layout.cell_width, layout.cell_height)
        dx = (layout.cell_width - picture.width) // 2
        dy = (layout.cell_height - picture.height) // 2
        self._canvas.paste(picture.convert("RGB") if picture.mode != "RGB" else picture, (x + dx, y + dy))
        tile = Tile(sheet, x + dx, y + dy, picture.width, picture.height, time_ms)
        self._tiles.append(tile)
        self.count += 1
        if len(self._tiles) == layout.per_sheet:
            self._flush()
        return tile

    def finish(self) -> None:
        """Hand over the last, partly filled sheet (cut to the rows it uses)."""
        if self._tiles:
            self._flush()

    def _flush(self) -> None:
        assert self._canvas is not None
        canvas, tiles = self._canvas, self._tiles
        used = self.layout.rows_used(len(tiles))
        if used < self.layout.rows:
            canvas = canvas.crop((0, 0, canvas.width, self.layout.size(used)[1]))
        self._canvas, self._tiles = None, []
        number = self.sheets
        self.sheets += 1
        self.on_sheet(number, canvas, tiles)


def _fit(picture: Image.Image, width: int, height: int) -> Image.Image:
    """``picture`` scaled down to fit ``width`` × ``height``, keeping its aspect ratio."""
    scale = min(width / picture.width, height / picture.height, 1.0)
    if scale >= 1.0:
        return picture
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BICUBIC)


# -- WebVTT thumbnail tracks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    """One cue of a thumbnail track: from ``start_ms`` (inclusive) to ``end_ms`` (exclusive)."""

    start_ms: Fraction
    end_ms: Fraction
    target: str


def vtt_time(ms: Fraction | int) -> str:
    """``hh:mm:ss.ttt`` (WebVTT); milliseconds are floored so adjacent cues stay contiguous."""
    total = max(0, int(ms // 1)) if isinstance(ms, Fraction) else max(0, ms)
    seconds, millis = divmod(total, 1000)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}.{millis:03d}"


def track_cues(times: Sequence[Fraction], end_ms: Fraction, targets: Sequence[str]) -> list[Cue]:
    """Cues covering [tᵢ, tᵢ₊₁), the last to ``end_ms`` (the video's end), pointing at ``targets``.

    A frame that would show for no time (a time at or past the next one, or past the end) still gets
    a cue of one millisecond, so that every image is reachable from the track.
    """
    if len(times) != len(targets):
        raise ValueError("one target per time")
    cues: list[Cue] = []
    for i, (start, target) in enumerate(zip(times, targets, strict=True)):
        end = times[i + 1] if i + 1 < len(times) else end_ms
        if vtt_time(end) <= vtt_time(start):
            end = Fraction(int(start // 1) + 1)
        cues.append(Cue(start, end, target))
    return cues


def webvtt(cues: Sequence[Cue]) -> str:
    """The WebVTT text of a thumbnail track."""
    lines = ["WEBVTT", ""]
    for number, cue in enumerate(cues, 1):
        lines += [str(number), f"{vtt_time(cue.start_ms)} --> {vtt_time(cue.end_ms)}", cue.target, ""]
    return "\n".join(lines)


def relative_url(from_key: str, to_key: str) -> str:
    """The URL of ``to_key`` relative to the object ``from_key`` (a player resolves a track's cue
    payloads against the track's own URL), percent-encoded."""
    base = posixpath.dirname(from_key)
    path = posixpath.relpath(to_key, base) if base else to_key
    return quote(path, safe="/-._~")


def fragment(url: str, tile: Tile) -> str:
    """``url#xywh=x,y,w,h``: the tile's box as a media fragment (players' seek-preview convention)."""
    return f"{url}#xywh={tile.x},{tile.y},{tile.width},{tile.height}"


# -- animations ----------------------------------------------------------------------------------------

#: GIF frame delays are in hundredths of a second; players treat delays below 20 ms as 100 ms.
_GIF_MIN_DELAY_MS = 20


def encode_animation(
    frames: Sequence[Image.Image], frame_ms: Fraction, fmt: AnimationFormat, *, quality: int = 75
) -> bytes:
    """A looping animation of ``frames``, each shown ``frame_ms`` milliseconds.

    GIF: one palette shared by all frames (built from all of them), so the file holds one colour
    table and frames differ only where the picture changes; no dithering, which both keeps static
    areas identical from frame to frame (smaller files) and avoids crawling noise. WebP: lossy at
    ``quality``, which is far smaller than GIF for camera pictures.
    """
    if not frames:
        raise ValueError("an animation needs at least one frame")
    rgb = [f.convert("RGB") if f.mode != "RGB" else f for f in frames]
    if fmt == "gif":
        delay = max(_GIF_MIN_DELAY_MS, round(float(frame_ms) / 10) * 10)
        palette = _shared_palette(rgb)
        indexed = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in rgb]
        out = io.BytesIO()
        indexed[0].save(
            out,
            format="GIF",
            save_all=True,
            append_images=indexed[1:],
            duration=delay,
            loop=0,
            # Naming the palette makes Pillow write it once as the global table, not once a frame.
            palette=bytes(palette.getpalette() or []),
            optimize=False,
            disposal=1,
        )
        return out.getvalue()
    if fmt == "webp":
        out = io.BytesIO()
        rgb[0].save(
            out,
            format="WEBP",
            save_all=True,
            append_images=rgb[1:],
            duration=max(1, round(float(frame_ms))),
            loop=0,
            quality=quality,
            method=4,
        )
        return out.getvalue()
    raise BadRequest(f"Format: animations are gif or webp, not {fmt!r}", param="Format")


def _shared_palette(frames: Sequence[Image.Image]) -> Image.Image:
    """A 256-colour palette for all ``frames``: quantize a mosaic of small copies of them."""
    thumbs = [f.reduce(max(1, min(f.width, f.height) // 64)) for f in frames[:256]]
    width = max(t.width for t in thumbs)
    mosaic = Image.new("RGB", (width, sum(t.height for t in thumbs)))
    y = 0
    for t in thumbs:
        mosaic.paste(t, (0, y))
        y += t.height
    return mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)

"""What a job writes, in order: its single images, sprite sheets, thumbnail track and animation.

The engine (:mod:`vidsnap.core.engine`) decodes and selects frames and renders each once at the
job's sizes (:func:`render_frame`, on its render thread); a :class:`JobWriter` takes the rendered
frames in presentation order and writes them to a :class:`Sink`: every single image as it comes,
every sprite sheet as soon as it is full (one sheet in memory), and the track and the animation at
the end. One decode pass thus serves all the outputs of a job, and a tile is the very picture its
single snapshot was encoded from (README: Compositions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, Protocol

from vidsnap.core.compose import (
    SheetComposer,
    SheetLayout,
    Tile,
    encode_animation,
    fragment,
    random_color,
    relative_url,
    track_cues,
    webvtt,
)
from vidsnap.core.errors import TooLarge
from vidsnap.core.imaging import Geometry, encode, to_image
from vidsnap.core.naming import output_key, track_key
from vidsnap.core.plan import CONTENT_TYPES, SnapshotJob, SourceRef

if TYPE_CHECKING:
    import av
    from PIL import Image

__all__ = [
    "MAX_ANIMATION_PIXELS",
    "Composition",
    "JobWriter",
    "Outcome",
    "Output",
    "Position",
    "RenderedFrame",
    "Sink",
    "render_frame",
    "write_track",
]

#: Pixels of all the frames of one animation together: they are held until the file is encoded
#: (GIF needs every frame for its shared palette), so this bounds that memory at ~600 MB of RGB.
MAX_ANIMATION_PIXELS = 200_000_000


class Sink(Protocol):
    """Where outputs are written (a local folder, an S3 bucket)."""

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` (in ``bucket``, None: the default) and return its URI."""
        ...


@dataclass(frozen=True)
class Output:
    """One written single image of a task."""

    uri: str
    time_ms: Fraction
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class Composition:
    """One written composition: a sprite sheet, a thumbnail track or an animation.

    ``times_ms`` are the presentation times of the frames in it, in order; a sheet's ``tiles`` say
    where each frame is; an animation shows each frame ``frame_ms``.
    """

    kind: Literal["sprite", "track", "animation"]
    uri: str
    size: int
    width: int
    height: int
    times_ms: tuple[Fraction, ...]
    tiles: tuple[Tile, ...] = ()
    frame_ms: Fraction | None = None


@dataclass(frozen=True)
class Position:
    """How far a task got when an attempt stopped early (docs/LONG_TASKS.md), and where the next
    attempt resumes.

    Jobs before ``job`` are finished; ``counts`` says how many frames each of them wrote (tiles and
    animation frames included: they count against ``MAX_FRAMES``). Job ``job`` has written
    ``count`` frames (indexes 1..count), the last one ``pts`` at ``time_ms``; ``count`` 0: it has
    not started.
    """

    job: int
    counts: tuple[int, ...] = ()
    count: int = 0
    pts: int | None = None
    time_ms: Fraction = Fraction(0)


@dataclass
class Outcome:
    """What a task produced: its single images and compositions in order, and warnings.

    ``stopped``: the attempt stopped early (it was asked to, between frames) and this is where; the
    outcome then holds what this attempt wrote and the warnings of the jobs it finished.
    """

    outputs: list[Output] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compositions: list[Composition] = field(default_factory=list)
    stopped: Position | None = None

    @property
    def sheets(self) -> int:
        """How many sprite sheets were written (MPS ``TileCount``)."""
        return sum(1 for c in self.compositions if c.kind == "sprite")


@dataclass(frozen=True)
class RenderedFrame:
    """A frame rendered for every output of its job: encoded single image, tile and animation frame."""

    data: bytes | None
    width: int
    height: int
    tile: Image.Image | None = None
    still: Image.Image | None = None


def render_frame(
    frame: av.VideoFrame, job: SnapshotJob, geometry: Geometry, tile_geometry: Geometry | None
) -> RenderedFrame:
    """Render ``frame`` once per size the job needs (run on the engine's render thread).

    The single image, the animation frame and (when the cell has the image's size) the tile share
    one converted picture, so they are the same pixels.
    """
    picture = to_image(frame, geometry, fmt=job.image.format)
    data = encode(picture, job.image.format) if job.save_frames else None
    tile = None
    if job.sprite is not None and tile_geometry is not None:
        tile = picture if tile_geometry == geometry else to_image(frame, tile_geometry, fmt="jpg")
    still = picture if job.animation is not None else None
    return RenderedFrame(data, geometry.width, geometry.height, tile, still)


class JobWriter:
    """Writes one job's outputs to ``sink`` as rendered frames arrive (see the module docstring)."""

    def __init__(
        self, job: SnapshotJob, ref: SourceRef, sink: Sink, outcome: Outcome, *, done: int = 0
    ) -> None:
        # done: frames an earlier attempt (or the windows before this one) wrote: the next frame is
        # {index} done + 1. Compositions are resumed only where a sprite sheet starts (its tiles
        # then go on numbering sheets) and before an animation's first frame.
        self.done = done
        self.job = job
        self.ref = ref
        self.sink = sink
        self.outcome = outcome
        self.count = done
        self.times: list[Fraction] = []
        self.image_keys: list[str] = []
        self.tiles: list[Tile] = []
        self.sheet_keys: list[str] = []
        self._stills: list[Image.Image] = []
        self._still_pixels = 0
        self._composer: SheetComposer | None = None

    # -- per frame -----------------------------------------------------------------------------

    def add(self, rendered: RenderedFrame, time_ms: Fraction) -> None:
        """Write (or compose) the next frame, which shows at ``time_ms``."""
        self.count += 1
        self.times.append(time_ms)
        job = self.job
        if rendered.data is not None:
            key = output_key(job.output.key_template, index=self.count, ext=job.image.format, source=self.ref)
            uri = self.sink.put(job.output.bucket, key, rendered.data, CONTENT_TYPES[job.image.format])
            self.image_keys.append(key)
            self.outcome.outputs.append(
                Output(uri, time_ms, rendered.width, rendered.height, len(rendered.data))
            )
        if rendered.tile is not None:
            self.tiles.append(self._sheets(rendered.tile).add(rendered.tile, time_ms))
        if rendered.still is not None:
            self._still_pixels += rendered.still.width * rendered.still.height
            if self._still_pixels > MAX_ANIMATION_PIXELS:
                raise TooLarge(
                    f"the animation holds more than {MAX_ANIMATION_PIXELS} pixels of frames; "
                    "ask for fewer frames (Number) or a smaller size"
                )
            self._stills.append(rendered.still)

    def _sheets(self, tile: Image.Image) -> SheetComposer:
        if self._composer is None:
            spec = self.job.sprite
            assert spec is not None
            layout = SheetLayout(spec.columns, spec.rows, tile.width, tile.height, spec.pad, spec.margin)
            layout.check(spec.format, param="sprite")
            first_key = self._sheet_key(1)
            color = random_color(first_key) if spec.color == "random" else spec.color
            self._composer = SheetComposer(layout, color, self._write_sheet, first=self.done)
        return self._composer

    def _sheet_key(self, number: int) -> str:
        spec = self.job.sprite
        assert spec is not None
        return output_key(spec.output.key_template, index=number, ext=spec.format, source=self.ref)

    def _write_sheet(self, number: int, sheet: Image.Image, tiles: list[Tile]) -> None:
        spec = self.job.sprite
        assert spec is not None
        key = self._sheet_key(number + 1)
        data = encode(sheet, spec.format)
        uri = self.sink.put(spec.output.bucket, key, data, CONTENT_TYPES[spec.format])
        self.sheet_keys.append(key)
        self.outcome.compositions.append(
            Composition(
                "sprite",
                uri,
                len(data),
                sheet.width,
                sheet.height,
                tuple(t.time_ms for t in tiles),
                tuple(tiles),
            )
        )

    # -- at the end ------------------------------------------------------------------------------

    def finish(self, end_ms: Fraction) -> None:
        """Write the last sheet, then the track (its cues end at ``end_ms``) and the animation."""
        if self._composer is not None:
            self._composer.finish()
        if self.job.track is not None and self.times:
            self._write_track(end_ms)
        if self.job.animation is not None and self._stills:
            self._write_animation()

    def _write_track(self, end_ms: Fraction) -> None:
        self.outcome.compositions.append(
            write_track(
                self.job,
                self.ref,
                self.sink,
                times=self.times,
                end_ms=end_ms,
                image_keys=self.image_keys,
                sheet_keys=self.sheet_keys,
                tiles=self.tiles,
            )
        )

    def _write_animation(self) -> None:
        spec = self.job.animation
        assert spec is not None
        frame_ms = spec.frame_ms or self.job.selection.interval_ms or Fraction(1000)
        data = encode_animation(self._stills, frame_ms, spec.format)
        first = self._stills[0]
        self._stills = []
        key = output_key(spec.output.key_template, index=1, ext=spec.format, source=self.ref)
        uri = self.sink.put(spec.output.bucket, key, data, CONTENT_TYPES[spec.format])
        self.outcome.compositions.append(
            Composition(
                "animation", uri, len(data), first.width, first.height, tuple(self.times), frame_ms=frame_ms
            )
        )


def write_track(  # noqa: PLR0913
    job: SnapshotJob,
    ref: SourceRef,
    sink: Sink,
    *,
    times: Sequence[Fraction],
    end_ms: Fraction,
    image_keys: Sequence[str],
    sheet_keys: Sequence[str],
    tiles: Sequence[Tile],
) -> Composition:
    """Write the thumbnail track of ``job``'s frames (shown at ``times``; the last cue ends at
    ``end_ms``): cues point at the images (``image_keys``, one per frame) or, with fragments, at the
    tiles on their sheets (``sheet_keys`` by sheet number). Also called once all the windows of a
    long task are done (:func:`vidsnap.core.windows.finish`), from what they wrote."""
    track = job.track
    assert track is not None
    if track.output is not None:
        bucket, key = track.output.bucket, track_key(track.output.key_template, source=ref)
    else:
        bucket, key = job.output.bucket, track_key(job.output.key_template, source=ref)
    if track.fragments:
        targets = [fragment(relative_url(key, sheet_keys[t.sheet]), t) for t in tiles]
    else:
        targets = [relative_url(key, k) for k in image_keys]
    data = webvtt(track_cues(times, end_ms, targets)).encode("utf-8")
    uri = sink.put(bucket, key, data, CONTENT_TYPES["vtt"])
    return Composition("track", uri, len(data), 0, 0, tuple(times))

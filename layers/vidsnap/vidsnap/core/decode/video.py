"""The public face of the decoder: :class:`Video`, one video stream opened for frame-exact access.

A Video is a :class:`~vidsnap.core.decode.cursor.Cursor` (where its decoder stands) over a
:class:`~vidsnap.core.decode.stream.StreamDescription` (what opening learnt, frozen). It takes
times in milliseconds, hands out :class:`Picked` frames, and turns every PyAV/FFmpeg failure into
:class:`UnsupportedMedia` or :class:`UndecodableMedia` (docs/ARCHITECTURE.md, decode).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction

from vidsnap.core.decode.container import DecoderSettings, Source
from vidsnap.core.decode.cursor import Cursor
from vidsnap.core.decode.guard import AV_ERRORS
from vidsnap.core.decode.opening import open_cursor
from vidsnap.core.decode.stream import Picked, StreamDescription
from vidsnap.core.decode.threads import decoder_threads
from vidsnap.core.errors import UndecodableMedia, VidsnapError
from vidsnap.core.plan import DEFAULT_MAX_SOURCE_PIXELS

__all__ = ["Video"]


class Video:
    """One video stream of a media file, opened for frame-exact random access.

    Use as a context manager. ``bulk=True`` prepares the decoder for long sequential runs
    (asynchronous jobs), otherwise for one-frame requests. Attributes are described in
    docs/ARCHITECTURE.md; times are milliseconds from the first frame as exact fractions.
    """

    def __init__(
        self,
        source: Source,
        *,
        bulk: bool = False,
        max_source_pixels: int | None = DEFAULT_MAX_SOURCE_PIXELS,
        decode_budget_frames: int | None = None,
        threads: int | None = None,
    ) -> None:
        """Open ``source``; refuse it (:class:`SourceTooLarge`) when its picture is larger than
        ``max_source_pixels`` (None: no limit), before any frame is decoded. A request whose frame
        needs more than ``decode_budget_frames`` frames decoded from the nearest keyframe fails with
        :class:`DecodeBudgetExceeded` (None: no budget). ``threads``: the decoder's own threads
        (None: :func:`decoder_threads`)."""
        settings = DecoderSettings(
            bulk=bulk,
            threads=max(1, threads) if threads is not None else decoder_threads(),
            max_source_pixels=max_source_pixels,
            decode_budget=decode_budget_frames,
        )
        self._cursor = open_cursor(source, settings)

    @classmethod
    def _over(cls, cursor: Cursor) -> Video:
        """A Video around an open cursor (a clone)."""
        video = cls.__new__(cls)
        video._cursor = cursor
        return video

    # ------------------------------------------------------------------ what opening learnt

    @property
    def description(self) -> StreamDescription:
        """What opening learnt about the stream (frozen; shared with this Video's clones)."""
        return self._cursor.description

    @property
    def time_base(self) -> Fraction:
        """The stream's time base (seconds per pts tick)."""
        return self._cursor.description.time_base

    @property
    def start_pts(self) -> int:
        """The pts of the first frame in presentation order (t = 0)."""
        return self._cursor.description.start_pts

    @property
    def duration_ms(self) -> Fraction:
        """The video's duration (0 for cover art)."""
        return self._cursor.description.duration_ms

    @property
    def duration_note(self) -> str | None:
        """Why ``duration_ms`` may be short of the video's real length (None when it is not known to be)."""
        return self._cursor.description.duration_note

    @property
    def frame_interval_ms(self) -> Fraction | None:
        """The nominal interval between frames (None for cover art or without a frame rate)."""
        return self._cursor.description.frame_interval_ms

    @property
    def coded_width(self) -> int:
        """The width of the decoded picture."""
        return self._cursor.description.coded_width

    @property
    def coded_height(self) -> int:
        """The height of the decoded picture."""
        return self._cursor.description.coded_height

    @property
    def sample_aspect_ratio(self) -> Fraction:
        """The shape of one pixel (1 for square pixels)."""
        return self._cursor.description.sample_aspect_ratio

    @property
    def rotation(self) -> int:
        """CCW degrees (PyAV convention), normalised to 0/90/180/270."""
        return self._cursor.description.rotation

    @property
    def display_width(self) -> int:
        """The width shown, after SAR and rotation."""
        return self._cursor.description.display_width

    @property
    def display_height(self) -> int:
        """The height shown, after SAR and rotation."""
        return self._cursor.description.display_height

    @property
    def is_cover_art(self) -> bool:
        """An attached picture (audio with cover art): one frame, shown at every time."""
        return self._cursor.description.is_cover_art

    # ------------------------------------------------------------------ frames

    def frame_at(self, time_ms: Fraction | int, *, exact: bool = True) -> Picked:
        """The frame shown at ``time_ms`` (``exact=False``: the keyframe at or before it).

        Past the end, the last frame. Raises :class:`UndecodableMedia` when nothing decodes there.
        """
        cursor = self._cursor
        if cursor.description.is_cover_art:
            return cursor.cover()
        target = cursor.description.target(time_ms)
        try:
            return cursor.frame_at(target, exact=exact)
        except VidsnapError:
            cursor.check_read()
            raise
        except AV_ERRORS as exc:
            cursor.check_read()
            raise UndecodableMedia(f"cannot decode the video at {float(time_ms):.0f} ms: {exc}") from exc

    def frames_at(self, times_ms: Sequence[Fraction], *, exact: bool = True) -> Iterator[Picked]:
        """``frame_at`` for each time; ascending times decode forward instead of seeking each."""
        for t in times_ms:
            yield self.frame_at(t, exact=exact)

    def next_frame_ms(self, time_ms: Fraction | int, *, exact: bool = True) -> Fraction | None:
        """The time of the frame after the one shown at ``time_ms`` (``exact=False``: the next
        keyframe), or None when that one is the last.

        What a planner needs to skip times that would all show the same frame (a gap in the
        timestamps). The decoder is left positioned there, so a following :meth:`frame_at` for
        that time decodes nothing more.
        """
        cursor = self._cursor
        if cursor.description.is_cover_art:
            return None
        target = cursor.description.target(time_ms)
        try:
            following = cursor.next_after(target, exact=exact)
        except VidsnapError:
            raise
        except AV_ERRORS as exc:
            raise UndecodableMedia(f"cannot decode the video after {float(time_ms):.0f} ms: {exc}") from exc
        return following.time_ms if following is not None else None

    def every_frame(self, start_ms: Fraction = Fraction(0)) -> Iterator[Picked]:
        """The frame shown at ``start_ms`` and every frame after it, in presentation order."""
        cursor = self._cursor
        if cursor.description.is_cover_art:
            yield cursor.cover()
            return
        yield self.frame_at(start_ms)
        try:
            yield from cursor.following()
        except AV_ERRORS as exc:
            raise UndecodableMedia(f"decoding failed: {exc}") from exc

    def keyframes(self, start_ms: Fraction = Fraction(0)) -> Iterator[Picked]:
        """Every keyframe whose time is ≥ ``start_ms``, in presentation order."""
        cursor = self._cursor
        if cursor.description.is_cover_art:
            yield cursor.cover()
            return
        target = cursor.description.target(start_ms)
        try:
            yield from cursor.keyframes(target)
        except VidsnapError:
            raise
        except AV_ERRORS as exc:
            raise UndecodableMedia(f"decoding keyframes failed: {exc}") from exc

    # ------------------------------------------------------------------ parallel decoding

    def runs(self, times_ms: Sequence[Fraction]) -> list[range]:
        """Split planned times into runs that independent decoders can serve in parallel.

        A run is a slice of ``times_ms`` (as a range of indexes) that one decoder serves going
        forward from one seek: a new run starts where the times go backwards or where the next
        time's keyframe lies after the previous time, which is exactly where :meth:`frames_at`
        seeks anyway, so splitting there costs no extra decoding. Media without a keyframe index,
        or whose frame times come from their decoding order, form one run.
        """
        return self._cursor.description.runs(times_ms)

    def run_cost(self, times_ms: Sequence[Fraction]) -> int:
        """Decoding work (in ticks of presentation time) to serve ``times_ms`` as one run."""
        return self._cursor.description.run_cost(times_ms)

    @property
    def can_clone(self) -> bool:
        """Whether :meth:`clone` can work: a path, or a reader with ``clone()``, and frame times
        that do not depend on decoding from the start."""
        return self._cursor.can_clone

    def clone(self, *, threads: int | None = None) -> Video | None:
        """Another Video on the same source, for decoding on another thread; None if impossible.

        The source is opened again (a path), or cloned (a reader with a ``clone()`` method, such as
        :class:`~vidsnap.core.blockio.BlockReader`: own position, shared block cache). The clone is
        a new cursor over this video's description (start time, rotation, duration, keyframe
        table), so it costs one container open and no decoding. It is positioned nowhere: its
        first request seeks. ``threads`` caps its decoder's own threads (default: this video's),
        for when several decoders share the cores.
        """
        if not self.can_clone:
            return None
        cursor = self._cursor.clone(threads=threads)
        return Video._over(cursor) if cursor is not None else None

    def close(self) -> None:
        """Release the container, the decoder and its threads now (idempotent); frames already
        handed out stay valid (see :meth:`Cursor.close`)."""
        self._cursor.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

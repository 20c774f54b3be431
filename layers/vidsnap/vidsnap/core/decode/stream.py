"""What opening a video learns about its stream, once: an immutable description.

A :class:`StreamDescription` holds everything computed when a Video opens and never changed after
(docs/ARCHITECTURE.md, decode): the clock (time base, the first frame's pts, the frame interval),
the picture (sizes, sample aspect ratio, rotation), the duration, the keyframe table of the
container's index and the reorder delay between its DTS and the PTS, and the container quirks
that change how times are read (see :mod:`vidsnap.core.decode.quirks`). Decoding state lives in
a :class:`~vidsnap.core.decode.cursor.Cursor`; several cursors (a Video and its clones) share
one description, which is why it is frozen. Everything here that depends only on the description
(times to pts, the keyframe before a time, the runs a planner may split) is computed here.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av

from vidsnap.core.decode.guard import AV_ERRORS
from vidsnap.core.errors import UndecodableMedia

__all__ = ["Picked", "StreamDescription", "display_geometry", "frame_pts"]


@dataclass
class Picked:
    """A decoded frame with its presentation time (ms from the first frame, exact)."""

    frame: av.VideoFrame
    pts: int
    time_ms: Fraction
    key_frame: bool


def frame_pts(frame: av.VideoFrame) -> int:
    """A frame's pts (always set by ``Cursor.pull``; 0 only as a type-level fallback)."""
    return int(frame.pts) if frame.pts is not None else 0


def display_geometry(frame: av.VideoFrame, desc: StreamDescription) -> tuple[int, int, int]:
    """(rotation, display width, display height) of a stream whose pictures are like ``frame``:
    its display matrix's rotation (CCW degrees, normalised to 0/90/180/270) and the picture's
    size after SAR and rotation."""
    try:
        raw = float(frame.rotation or 0)
    except AV_ERRORS:
        raw = 0.0
    rotation = (round(raw / 90) * 90) % 360
    sar_w = round(desc.coded_width * desc.sample_aspect_ratio)
    w, h = max(1, sar_w), desc.coded_height
    if rotation in (90, 270):
        w, h = h, w
    return rotation, w, h


@dataclass(frozen=True, kw_only=True)
class StreamDescription:
    """One video stream as opening found it (times in the stream's time base unless named ``_ms``).

    Built in steps while the Video opens (each step a new frozen value: decoding the first frame
    fixes ``start_pts``, a count or a scan may fix the duration); complete once the Video is open.
    """

    #: The stream's position in its container (a clone or a reopened source finds it there again).
    stream_index: int
    #: An attached picture (audio with cover art): one frame, shown at every time.
    is_cover_art: bool
    time_base: Fraction
    coded_width: int
    coded_height: int
    sample_aspect_ratio: Fraction
    #: The nominal interval between frames (None for cover art or without a frame rate).
    frame_interval_ms: Fraction | None
    #: The nominal interval in ticks (at least 1): frames without timestamps are numbered by it.
    interval_ticks: int
    #: The stream's own start time (None when it declares none).
    stream_start: int | None
    #: The pts of the first frame in presentation order: t = 0.
    start_pts: int = 0
    #: CCW degrees (PyAV convention), normalised to 0/90/180/270.
    rotation: int = 0
    display_width: int = 0
    display_height: int = 0
    duration_ms: Fraction = Fraction(0)
    #: Why ``duration_ms`` may be short of the video's real length (None when it is not known to be).
    duration_note: str | None = None
    #: Keyframe timestamps (DTS) of the container's index, ascending; empty without an index.
    key_ts: tuple[int, ...] = ()
    #: Entries of the container's index (keyframes and others); 0 without an index.
    index_entries: int = 0
    #: How far the first keyframe's PTS runs ahead of its index DTS (the B-frame reorder delay).
    dts_shift: int = 0
    #: A raw elementary stream (AVFMT_NOTIMESTAMPS): timestamps invented from where reading started.
    no_timestamps: bool = False
    #: Frames carry no timestamps at all: the cursor numbers them at the nominal rate.
    synthetic_pts: bool = False
    #: Frame times come from the decoder's DTS (AVI with reordered frames).
    pts_from_dts: bool = False
    #: Frames right after a seek may be stamped differently from a sequential read (MPEG-PS).
    needs_lead_in: bool = False

    @property
    def numbered_in_order(self) -> bool:
        """Frame times come from their order (numbered by the cursor, or AVI DTS), not from their
        own pts: every frame must then be decoded for the numbering to hold."""
        return self.synthetic_pts or self.pts_from_dts

    @property
    def lowest_ts(self) -> int:
        """The lowest timestamp the stream can hold (a seek below it goes to the start)."""
        candidates = [self.start_pts]
        if self.stream_start is not None:
            candidates.append(self.stream_start)
        if self.key_ts:
            candidates.append(self.key_ts[0])
        return min(candidates)

    def target(self, time_ms: Fraction | int) -> int:
        """The largest pts that may be shown at ``time_ms`` (the frame at t: the last with pts ≤ it)."""
        if time_ms < 0:
            raise UndecodableMedia(f"negative time {time_ms} ms")
        exact = self.start_pts + Fraction(time_ms) / 1000 / self.time_base
        return math.floor(exact)  # pts are integers: pts ≤ exact ⇔ pts ≤ floor(exact)

    def time_ms(self, pts: int) -> Fraction:
        """A pts as milliseconds from the first frame (never negative)."""
        return max(Fraction(0), (pts - self.start_pts) * self.time_base * 1000)

    def key_index(self, target: int) -> int:
        """Position in ``key_ts`` (index DTS) of the keyframe at or before ``target``; -1 if none."""
        return bisect.bisect_right(self.key_ts, target - self.dts_shift) - 1

    def keyframe_before(self, target: int) -> int | None:
        """The presentation time (approximately: index DTS + reorder delay) of the keyframe at or
        before ``target``, from the index; None without one."""
        i = self.key_index(target)
        return self.key_ts[i] + self.dts_shift if i >= 0 else None

    def runs(self, times_ms: Sequence[Fraction]) -> list[range]:
        """Split planned times into runs that independent decoders can serve in parallel (see
        ``Video.runs``): a new run where the times go backwards or the next keyframe lies between."""
        n = len(times_ms)
        if n < 2 or not self.key_ts or self.is_cover_art or self.numbered_in_order:
            return [range(n)] if n else []
        bounds = [0]
        prev: int | None = None
        for i, t in enumerate(times_ms):
            target = self.target(t)
            key = self.keyframe_before(target)
            if prev is not None and (target < prev or (key is not None and key > prev)):
                bounds.append(i)
            prev = target
        bounds.append(n)
        return [range(a, b) for a, b in itertools.pairwise(bounds)]

    def run_cost(self, times_ms: Sequence[Fraction]) -> int:
        """Decoding work (in ticks of presentation time) to serve ``times_ms`` as one run."""
        last = self.target(times_ms[-1])
        key = self.keyframe_before(self.target(times_ms[0]))
        # A seek and its first keyframe cost about as much as a few frames of decoding.
        return max(0, last - (key if key is not None else last)) + 4 * self.interval_ticks

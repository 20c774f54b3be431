"""The decoding cursor: where one decoder stands in a stream, and how it moves to a time.

A :class:`Cursor` holds what changes while decoding (docs/ARCHITECTURE.md, decode): the open
container and its demuxer, the source and its read guard, the live decode run, frames pulled but
not consumed, the last frame consumed, the keyframe-only mode, what was read since the last seek.
What opening learnt is its :class:`~vidsnap.core.decode.stream.StreamDescription`, read-only and
shared: a clone (another decoder on the same source, for another thread) is a new cursor over the
same description, starting nowhere. Two things a cursor learns while decoding are about the
demuxer rather than the position (:class:`SeekHints`); a clone starts from them.

Seek strategy (why it is built this way):

* PyAV seeks to a keyframe and leaves the decoding forward to us. MP4/MOV index timestamps are
  DTS, which run behind the PTS by the B-frame reorder delay (the first entry is negative), but
  the MP4/MOV and Matroska demuxers of the FFmpeg bundled with PyAV 18 (8.1) *seek* by
  presentation time: ``seek(t)`` lands on the keyframe whose PTS ≤ t (measured: keyframe DTS
  82800, PTS 90000: ``seek(82800)`` lands a GOP earlier, ``seek(90000)`` on it). A seek therefore
  aims at the target itself; demuxers that seek by DTS (AVI) land late by the reorder delay once,
  then ``target − dts_shift`` is used for that file. (Aiming at ``target − dts_shift`` everywhere
  decoded a whole extra GOP whenever the target was a keyframe's time: 300 s in a 1080p GOP-250
  file, 250 extra frames.)
* After every seek the first clean decoded frame must have pts ≤ target; otherwise the seek
  landed late (MPEG-TS has no index and seeks by bisecting timestamps; open GOPs drop leading
  B-frames after a recovery point) and we seek again earlier, doubling the step back each time,
  down to the start of the stream.
* Requests for ascending times (``frames_at``, ``every_frame``) keep decoding forward while the
  next target's keyframe is not ahead of the decoder; they seek only when it is (keyframe table
  from ``stream.index_entries`` when the container has one, otherwise "more than the longest GOP
  seen so far ahead").
* ``exact=False`` and ``keyframes()`` decode with ``skip_frame = "NONKEY"``; for long GOPs with an
  index, ``keyframes()`` hops from keyframe to keyframe instead, reading only keyframe packets.
* Frames are never converted here: callers convert only what they output.
* Where a container's timestamps or seeking need special handling, :mod:`.quirks` says why.
* Truncation is judged at EOF by what was decoded and, in keyframe mode, by what the demuxer read.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
import av.error

from vidsnap.core.decode import budget, quirks
from vidsnap.core.decode.container import DecoderSettings, Source, configure_decoder, open_container
from vidsnap.core.decode.guard import (
    AV_ERRORS,
    INDEX_ERRORS,
    REOPEN_ERRORS,
    ReadGuard,
    raise_if_transient,
    raise_read_error,
)
from vidsnap.core.decode.stream import Picked, StreamDescription, frame_pts
from vidsnap.core.errors import SourceEndsEarly, UndecodableMedia

__all__ = ["Cursor", "SeekHints"]

# How many times a late seek is retried further back before seeking to the very start.
_MAX_SEEK_ATTEMPTS = 12
# keyframes(): hop from keyframe to keyframe through the index when GOPs average at least this
# many packets (reading one packet per GOP instead of all of them).
_HOP_MIN_GOP_PACKETS = 48
# Packets remembered for the NONREF skip decision when the target moves on (well above any
# reorder depth; a smaller window only skips less).
_SKIP_WINDOW = 64


def _entry_ts(entry: Any) -> int:
    return int(entry.timestamp)


@dataclass(frozen=True)
class SeekHints:
    """What decoding taught a cursor about seeking in its stream (not where it stands): a clone
    starts from its original's hints instead of learning them again."""

    #: The demuxer seeks by DTS (it landed late by the reorder delay once): aim ``dts_shift`` early.
    seek_by_dts: bool = False
    #: The longest distance between two keyframes decoded so far (None: not seen yet).
    gop_ticks: int | None = None


class Cursor:
    """One decoder's position in a described stream, and the moves that change it.

    Times here are pts in the stream's time base (``target``: the largest pts that may be shown);
    :class:`~vidsnap.core.decode.video.Video` converts milliseconds and maps errors.
    """

    def __init__(
        self,
        description: StreamDescription,
        *,
        source: Source,
        guard: ReadGuard | None,
        container: Any,
        settings: DecoderSettings,
        hints: SeekHints | None = None,
        owns_source: bool = False,
    ) -> None:
        """A cursor positioned nowhere on ``container`` (opened on ``source``, through ``guard``
        for a file object); its decoder is configured by ``settings`` before it opens. Raises
        IndexError when the container has no stream at ``description.stream_index``."""
        self.description = description  # replaced only while opening completes it
        self.settings = settings
        self.hints = hints or SeekHints()
        self.source = source
        self._guard = guard
        self._owns_source = owns_source  # a clone's own reader, closed with the cursor
        self.container: Any = container
        self.stream: Any = container.streams[description.stream_index]
        self.codec: Any = self.stream.codec_context
        configure_decoder(container, self.stream, settings)
        self.pulled = 0  # frames the decoder has produced (the budget's runtime count)
        self.first_pts_synthetic = False  # a frame came without pts or dts (see pull)
        self._cover: av.VideoFrame | None = None
        # Decoder state: a live decode run, frames pulled but not consumed, the last consumed
        # frame, and whether the sequence since the last seek is known complete ("anchored").
        self._it: Generator[av.VideoFrame, None, None] | None = None
        self._pending: collections.deque[av.VideoFrame] = collections.deque()
        self._prev: av.VideoFrame | None = None
        self._anchored = False
        self._eof = False
        self._keyonly = False
        # Skipping of frames that cannot be the answer (see _skip_mode): the pts target while
        # positioning, and the skip_frame value last given to the decoder.
        self._skip_target: int | None = None
        self._skip_state = "DEFAULT"
        #: The pts of the last frame out of the decoder (None: nothing since the last seek).
        self.last_pulled_pts: int | None = None
        self._last_key_pts: int | None = None
        # Timestamps of packets demuxed since the last seek reach this far (see _check_truncation).
        self._read_end: int | None = None
        # Whether the frames being decoded are stamped as a sequential read stamps them: reading
        # from the start, or (see quirks.needs_lead_in) from the second keyframe after a seek on.
        self._read_from_start = False
        self._keys_since_seek = 0
        self._trusted_from: int | None = None

    def check_read(self) -> None:
        """Raise the error a read of the source met, if any (see :class:`ReadGuard`).

        Called where a frame is handed out or the data ends: after a failed read FFmpeg sees the
        end of the data, so the last frames decoded (or their absence) are not the answer.
        """
        raise_read_error(self._guard)

    # ------------------------------------------------------------------ clones

    @property
    def can_clone(self) -> bool:
        """Whether :meth:`clone` can work: a path, or a reader with ``clone()``, and frame times
        that do not depend on decoding from the start (see ``numbered_in_order``)."""
        d = self.description
        if d.is_cover_art or d.numbered_in_order:
            return False
        source = self.source
        return isinstance(source, str | os.PathLike) or callable(getattr(source, "clone", None))

    def clone(self, *, threads: int | None = None) -> Cursor | None:
        """A new cursor over the same description, on the source opened again (a path) or cloned
        (a reader with ``clone()``); None when the container opened again lacks the stream.

        Nothing of this cursor's position is carried over, only its :class:`SeekHints`; the
        clone's first request seeks. ``threads`` caps the clone decoder's own threads (default:
        this one's).
        """
        source = self.source
        copy: Any = source if isinstance(source, str | os.PathLike) else source.clone()  # type: ignore[attr-defined]
        owns = copy is not source
        guard = None if isinstance(copy, str | os.PathLike) else ReadGuard(copy)
        try:
            container = open_container(guard or copy, max_pixels=self.settings.max_source_pixels)
        except BaseException:
            if owns:
                copy.close()
            raise_read_error(guard)
            raise
        settings = self.settings if threads is None else replace(self.settings, threads=max(1, threads))
        try:
            return Cursor(
                self.description,
                source=copy,
                guard=guard,
                container=container,
                settings=settings,
                hints=self.hints,
                owns_source=owns,
            )
        except INDEX_ERRORS:
            with contextlib.suppress(*AV_ERRORS):
                container.close()
            if owns:
                copy.close()
            return None

    # ------------------------------------------------------------------ opening

    def start(self) -> av.VideoFrame | None:
        """Start decoding where the container stands (its start, just opened) and return the
        first clean frame, left pending; None when nothing decodes."""
        self._it = self._decoded()
        self._read_from_start = True
        first = self.first_clean()
        self._anchored = first is not None
        return first

    def peek(self, count: int) -> list[av.VideoFrame]:
        """The next ``count`` frames (fewer at the end), pulled and put back."""
        frames: list[av.VideoFrame] = []
        while len(frames) < count:
            frame = self.pull()
            if frame is None:
                break
            frames.append(frame)
        self._pending.extend(frames)
        return frames

    def restart(self) -> None:
        """Read the source again from its start (opened again), positioned before its first frame."""
        self._reopen_or_fail()
        self._anchored = True

    def last_frame_up_to(self, target: int) -> av.VideoFrame | None:
        """The last frame up to ``target``, with the time a sequential read gives it, without the
        truncation check (which needs the duration this finds: see quirks.scan_duration). The
        cursor is left positioned nowhere: the next request seeks."""
        try:
            self.set_keyonly(False)
            self.seek_and_anchor(target)
            return self.restamped(self.advance_to(target), target)
        finally:
            self.forget_position()

    def decode_cover(self) -> av.VideoFrame:
        """The attached picture: one packet, decoded once and cached."""
        if self._cover is not None:
            return self._cover
        frames: list[av.VideoFrame] = []
        try:
            for packet in self.container.demux(self.stream):
                frames.extend(packet.decode())
                if frames:
                    break
        except AV_ERRORS as exc:
            raise UndecodableMedia(f"the cover art cannot be decoded: {exc}") from exc
        if not frames:
            raise UndecodableMedia("the cover art stream holds no decodable picture")
        self._cover = frames[0]
        self._cover.pts = 0
        return self._cover

    def reopen(self) -> bool:
        """Open the source again and position at its start; False when that is impossible.

        The last resort of a rewind, for demuxers that cannot seek back once they have read their
        data: a JPEG still through FFmpeg's image2 demuxer returns no packet at all after any seek,
        so a keyframe request (``m_fast``, ``m_key``) on it, which seeks, found nothing.
        """
        source = self.source
        try:
            if not isinstance(source, str | os.PathLike):
                source.seek(0)
            container = open_container(self._guard or source, max_pixels=self.settings.max_source_pixels)
        except REOPEN_ERRORS as exc:
            raise_if_transient(exc)  # throttled S3 is a 503 to retry, not an undecodable file
            return False
        try:
            stream = container.streams[self.description.stream_index]
        except INDEX_ERRORS:
            container.close()
            return False
        old, self.container = self.container, container
        with contextlib.suppress(*AV_ERRORS):
            old.close()
        self.stream = stream
        self.codec = stream.codec_context
        configure_decoder(container, stream, self.settings)
        self.codec.skip_frame = self._skip_state
        self.forget_position()
        self._read_from_start = True
        self._it = self._decoded()
        return True

    def _reopen_or_fail(self) -> None:
        if not self.reopen():
            raise UndecodableMedia("the source cannot be read again from its start")

    # ------------------------------------------------------------------ low-level decoding

    def _decoded(self) -> Generator[av.VideoFrame, None, None]:
        """Frames from the current demuxer position; errors end the run like an EOF.

        While a target is set (``self._skip_target``, by :meth:`advance_to`), packets that cannot
        hold the answer are decoded with ``skip_frame = "NONREF"``: see :meth:`_skip_mode`. The
        description is read as it is at each frame (opening completes it while a run is live).
        """
        demux = self.container.demux(self.stream)
        # Pts of packets decoded in full since the seek (a short window is enough, see _skip_mode).
        recent: collections.deque[int] = collections.deque(maxlen=_SKIP_WINDOW)
        best: list[int | None] = [None, None]  # [target the best was computed for, best pts ≤ it]
        last_dts: int | None = None  # of the last packet sent
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except AV_ERRORS:
                break  # truncated/corrupt container data: treat as the end, then drain
            if packet.dts is not None:
                last_dts = int(packet.dts)
            if packet.size:
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    end = int(ts) + int(packet.duration or 0)
                    self._read_end = end if self._read_end is None else max(self._read_end, end)
            if not self._keyonly:
                mode = self._skip_mode(packet.pts, recent, best)
                if mode != self._skip_state:
                    self.codec.skip_frame = mode
                    self._skip_state = mode
            try:
                frames = packet.decode()
                drained = self._keyonly and packet.is_keyframe and not self.description.numbered_in_order
                if drained:
                    frames.extend(quirks.drain_keyframe(self.codec))
                if packet.is_keyframe and len(frames) == 1 and (drained or not self.codec.has_b_frames):
                    # The one picture of a packet the container marks as a keyframe (a sync point:
                    # it decodes on its own). Some decoders do not flag it (Cinepak flags only the
                    # first picture of a file): keyframe mode then found no keyframe after 0 s.
                    frames[0].key_frame = True
            except av.error.EOFError:
                return
            except AV_ERRORS:
                continue  # one undecodable packet: skip it, later frames may still decode
            for frame in frames:
                if self.description.pts_from_dts:
                    last_dts = quirks.stamp_drained(frame, last_dts, self.description.interval_ticks)
                yield frame
        with contextlib.suppress(*AV_ERRORS):
            for frame in self.codec.decode(None):
                if self.description.pts_from_dts:
                    last_dts = quirks.stamp_drained(frame, last_dts, self.description.interval_ticks)
                yield frame

    def _skip_mode(self, pts: int | None, recent: collections.deque[int], best: list[int | None]) -> str:
        """``"NONREF"`` when the packet with ``pts`` cannot be the frame shown at the target.

        The answer is the last frame with pts ≤ target. A packet whose pts is below that of another
        packet already sent to the decoder in full with pts ≤ target is not the answer (nor the
        answer for any later target that needs no seek: those answers are at or after this one). If
        it is not a reference picture, the decoder may drop it: only the decoder knows which pictures
        are references, so ``skip_frame = "NONREF"`` leaves that choice to it, and reference pictures
        (everything later frames are predicted from) are always decoded. ``recent`` holds the pts of
        the packets decoded in full since the seek (a bounded window: when the target moves on, a
        shorter memory only skips less, never wrongly); ``best`` caches the largest of them ≤ target.

        Measured on the benchmark's 1080p H.264 (3 B-frames, pyramid), 600 frames from a keyframe:
        1.02 s with every frame, 0.47 s with NONREF (301 frames decoded).
        """
        target = self._skip_target
        if pts is None or self.description.pts_from_dts:
            # Frame times from DTS (AVI, see quirks.avi_times_are_dts) do not follow packet pts.
            return "DEFAULT"
        if target is not None:
            if best[0] != target:
                best[0] = target
                best[1] = max((q for q in recent if q <= target), default=None)
            top = best[1]
            if top is not None and pts < top:
                return "NONREF"
            if pts <= target:
                best[1] = pts
        recent.append(pts)
        return "DEFAULT"

    def pull(self) -> av.VideoFrame | None:
        """The next decoded frame (pts filled in best-effort when missing), or None at the end."""
        if self._pending:
            return self._pending.popleft()
        while True:
            if self._it is None or self._eof:
                return None
            try:
                frame = next(self._it)
            except StopIteration:
                self._eof = True
                self.check_read()  # the data ended because a read failed
                return None
            self.pulled += 1
            d = self.description
            if d.pts_from_dts:
                frame.pts = quirks.dts_pts(frame, self.last_pulled_pts, d.interval_ticks)
            if frame.pts is None:
                # Best-effort timestamp: the DTS, else one nominal interval after the previous
                # frame (numbered before the keyframe filter below, which must not renumber).
                if frame.dts is not None:
                    frame.pts = frame.dts
                else:
                    self.first_pts_synthetic = True
                    if self.last_pulled_pts is not None:
                        frame.pts = self.last_pulled_pts + d.interval_ticks
                    else:
                        frame.pts = d.start_pts
            pts = frame_pts(frame)
            self.last_pulled_pts = pts
            # Some decoders (VP9) ignore skip_frame: drop non-key frames here in keyframe mode.
            if not self._keyonly or frame.key_frame:
                break
        if frame.key_frame:
            self._keys_since_seek += 1
            if self._keys_since_seek == 2:
                self._trusted_from = pts
            if self._last_key_pts is not None and pts > self._last_key_pts:
                gap = pts - self._last_key_pts
                if gap > (self.hints.gop_ticks or 0):
                    self.hints = replace(self.hints, gop_ticks=gap)
            self._last_key_pts = pts
        return frame

    def first_clean(self) -> av.VideoFrame | None:
        """Pull frames up to the first one not flagged corrupt and leave it pending.

        Frames decoded right after a seek can reference pictures from before it (open GOP); the
        decoder flags them corrupt. They are dropped when a clean frame follows, kept otherwise.
        """
        corrupt: list[av.VideoFrame] = []
        while True:
            frame = self.pull()
            if frame is None:
                if corrupt:
                    self._pending.extend(corrupt)
                    return corrupt[0]
                return None
            if frame.is_corrupt:
                corrupt.append(frame)
                continue
            self._pending.appendleft(frame)
            return frame

    def forget_position(self) -> None:
        """Drop what was decoded since the last seek: the demuxer is about to be repositioned."""
        self._pending.clear()
        self._prev = None
        self._anchored = False
        self._eof = False
        self.last_pulled_pts = None
        self._last_key_pts = None
        self._read_end = None
        self._read_from_start = False
        self._keys_since_seek = 0
        self._trusted_from = None

    def _seek(self, ts: int) -> None:
        """Seek to the keyframe at or before ``ts`` (stream time base) and reset decode state."""
        self.forget_position()
        if self.description.no_timestamps:
            # A raw elementary stream's timestamps count from where reading started: rewinding
            # reopens the source (see quirks.has_no_timestamps).
            self._reopen_or_fail()
            return
        try:
            self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
        except AV_ERRORS:
            # Some demuxers refuse timestamps before their first entry: rewind to the start.
            try:
                self.container.seek(
                    self.description.lowest_ts, stream=self.stream, backward=True, any_frame=False
                )
            except AV_ERRORS:
                try:
                    self.container.seek(0, backward=True, any_frame=False)
                except AV_ERRORS:
                    # Demuxers that cannot seek at all (raw H.264/HEVC elementary streams: EPERM)
                    # start over from the beginning; the caller decodes forward from there.
                    if not self.reopen():
                        raise
                    return
        self._it = self._decoded()

    # ------------------------------------------------------------------ positioning

    def set_keyonly(self, keyonly: bool) -> None:
        """Decode keyframes only (``skip_frame = "NONKEY"``) or every frame from now on."""
        if keyonly != self._keyonly:
            self._keyonly = keyonly
            # Frames numbered by pull (no timestamps) must all be decoded to be numbered right:
            # then keyframe mode only filters (in pull); a skipping decoder gave a raw H.264
            # stream's keyframes at 0, 40, 80 … ms instead of 0, 1.2, 2.4 … s.
            self._skip_state = "NONKEY" if keyonly and not self.description.numbered_in_order else "DEFAULT"
            self.codec.skip_frame = self._skip_state
            self._anchored = False  # frames in flight were decoded under the other mode

    def _should_seek(self, target: int) -> bool:
        """Whether a seek reaches ``target`` cheaper than decoding forward from here."""
        if not self._anchored or self._it is None:
            return True
        if self._prev is not None and self._prev.pts is not None and target < self._prev.pts:
            return True  # going backwards
        d = self.description
        cur = self.last_pulled_pts
        if cur is None or target <= cur or d.no_timestamps:
            return False  # (a raw stream's seek is a rewind to its start: see _seek)
        if d.key_ts:
            # Seek only when the target's keyframe is ahead of what has been decoded already.
            key = d.keyframe_before(target)
            return key is not None and key > cur
        gop = self.hints.gop_ticks or round(Fraction(2) / d.time_base)
        return target - cur > gop

    def advance_to(self, target: int) -> av.VideoFrame | None:
        """Consume frames while the next one's pts ≤ target; return the last consumed.

        Within the decode budget (see :mod:`.budget`): refused before decoding when the index
        shows too many frames to the target, stopped when the frames decoded pass it.
        """
        d, requested, position = self.description, self.settings.decode_budget, self.last_pulled_pts
        allowed = budget.frames_allowed(requested, d, keyonly=self._keyonly)
        if allowed is not None:
            indexed = budget.indexed_frames(self.stream, d, position, target)
            if indexed is not None and indexed > allowed:
                raise budget.exceeded(
                    d, target, indexed, allowed=allowed, requested=requested, position=position
                )
        start = self.pulled
        self._skip_target = target
        try:
            while True:
                if allowed is not None and self.pulled - start > allowed:
                    decoded = self.pulled - start
                    raise budget.exceeded(d, target, decoded, allowed=allowed, requested=requested)
                frame = self.pull()
                if frame is None:
                    break
                if frame_pts(frame) > target:
                    self._pending.appendleft(frame)
                    break
                self._prev = frame
        finally:
            self._skip_target = None
        return self._prev

    def _prefetch_for(self, target: int) -> None:
        """Range-read sources: fetch the bytes from ``target``'s keyframe to ``target`` in one request.

        Without it the reader fetches them as the demuxer asks, one block (with read-ahead: two) per
        request: 5 round trips to S3 for 4 s of 14 Mbit/s video. The span comes from the container's
        per-packet index (MP4/MOV/AVI; Matroska cues list keyframes only, which would mean whole
        GOPs); it ends past the target by the reorder delay and two frames, so that the frame after
        the target (which tells that the target is the last one at or before t) is in it too. Only
        a hint: the reader caps it, and a seek that lands elsewhere simply reads on as before.
        """
        d = self.description
        prefetch = getattr(self.source, "prefetch", None)
        if not callable(prefetch) or d.index_entries <= len(d.key_ts):
            return
        i = d.key_index(target)
        if i < 0:
            return
        try:
            # index_entries is a lazy sequence in DTS order: bisect reads a few entries, not all.
            entries = self.stream.index_entries
            lo = bisect.bisect_left(entries, d.key_ts[i], key=_entry_ts)
            end_ts = target + d.dts_shift + 2 * d.interval_ticks
            hi = bisect.bisect_right(entries, end_ts, key=_entry_ts, lo=lo)
            span = [entries[j] for j in range(lo, hi)]
        except INDEX_ERRORS:
            return
        if span:
            prefetch(min(e.pos for e in span), max(e.pos + e.size for e in span))

    def seek_and_anchor(self, target: int) -> None:
        """Seek so that the decoder is positioned at or before ``target``, backing off as needed."""
        self._prefetch_for(target)
        d = self.description
        lowest = d.lowest_ts
        # First guess: the target itself (MP4/MOV/MKV seek by presentation time, see the module
        # docstring); demuxers that seek by DTS land late there once, then the shifted aim is used.
        seek_to = target - (d.dts_shift if self.hints.seek_by_dts else 0)
        step = max(self.hints.gop_ticks or 0, round(Fraction(1) / d.time_base), 1)
        rewind = quirks.rewind_ts(lowest, step, d.time_base)
        lead_in = d.needs_lead_in
        for _attempt in range(_MAX_SEEK_ATTEMPTS):
            at_start = seek_to < lowest
            self._seek(rewind if at_start else seek_to)
            first = self.first_clean()
            if first is not None and (frame_pts(first) <= target or frame_pts(first) <= d.start_pts):
                if frame_pts(first) <= d.start_pts:
                    self._read_from_start = True
                elif lead_in and not at_start:
                    # Land at least a second earlier and decode up to here: see quirks.needs_lead_in.
                    lead_in = False
                    seek_to = frame_pts(first) - step
                    continue
                self._anchored = True
                return
            if at_start:
                break
            if d.dts_shift and not self.hints.seek_by_dts:
                # Landed late by (up to) the reorder delay: this demuxer seeks by DTS.
                self.hints = replace(self.hints, seek_by_dts=True)
                seek_to = target - d.dts_shift
                continue
            if first is not None:
                seek_to = min(seek_to, frame_pts(first) - d.dts_shift)
            seek_to -= step
            step *= 2
        # At the start of the stream (or out of attempts): whatever decodes first is the earliest
        # frame there is; an empty result means nothing is decodable.
        self._seek(rewind)
        if self.first_clean() is None and not (self.reopen() and self.first_clean() is not None):
            raise UndecodableMedia("no decodable video frame near the requested time")
        self._anchored = True

    def _stamped_right(self, frame: av.VideoFrame) -> bool:
        """Whether ``frame``'s time is the one a sequential read gives it (see quirks.needs_lead_in)."""
        if self._read_from_start or not self.description.needs_lead_in:
            return True
        return self._trusted_from is not None and frame_pts(frame) >= self._trusted_from

    def restamped(self, frame: av.VideoFrame | None, target: int) -> av.VideoFrame | None:
        """``frame``, the last one up to ``target``, with the time a sequential read gives it.

        When it lies in the GOP a seek landed in, its time may be a guess (see
        quirks.needs_lead_in): land earlier, further back each time, and decode up to ``target``
        again.
        """
        back = max(self.hints.gop_ticks or 0, round(Fraction(1) / self.description.time_base), 1)
        for _attempt in range(_MAX_SEEK_ATTEMPTS):
            if frame is None or self._stamped_right(frame):
                break
            self.seek_and_anchor(min(frame_pts(frame), target) - back)
            frame = self.advance_to(target)
            back *= 2
        return frame

    def _frame_for(self, target: int, *, keyonly: bool) -> av.VideoFrame:
        self.set_keyonly(keyonly)
        if self._should_seek(target):
            self.seek_and_anchor(target)
        frame = self.restamped(self.advance_to(target), target)
        if frame is None:
            # Anchored at the stream start and the first frame is after the target: it is shown.
            frame = self.pull()
            if frame is None:
                raise UndecodableMedia("no decodable video frame near the requested time")
            self._prev = frame
        if not self._pending and self._eof:
            self._check_truncation(frame, target)
        return frame

    def _check_truncation(self, last: av.VideoFrame, target: int) -> None:
        """At EOF: refuse to present the last decodable frame of a truncated file as the answer."""
        d = self.description
        expected_end = d.start_pts + d.duration_ms / 1000 / d.time_base
        if not d.duration_ms:
            return
        dur = max(int(last.duration or 0), d.interval_ticks)
        # Frames should exist up to min(target, end); allow the last frame's own duration twice.
        needed = min(Fraction(target), expected_end - 2 * dur)
        reached = frame_pts(last)
        if self._keyonly and self._read_end is not None:
            # Keyframe mode decodes keyframes only: the last one can lie any distance before the
            # end (one keyframe in a 5 s clip, every 25 s in surveillance footage), and no guessed
            # GOP length tells a valid file from a cut one. What the demuxer read does: every
            # packet up to min(target, end) was read, so no keyframe before the target is missing.
            reached = max(reached, self._read_end - dur)
        if reached + 2 * dur < needed:
            error = SourceEndsEarly(
                "the video ends early (truncated or corrupt): no frame decodes near "
                f"{float((needed - d.start_pts) * d.time_base):.3f} s"
            )
            indexed = self._indexed_end()
            error.truncated = indexed is not None and indexed > reached + max(
                4 * dur, round(Fraction(1, 5) / d.time_base)
            )
            raise error

    def _indexed_end(self) -> int | None:
        """The timestamp of the last packet the container's index lists (None without an index).

        Tells a cut file (the index names frames the data no longer holds) from a header that only
        claims a longer duration. Index timestamps are decode times, a few frames early at most.
        """
        if not self.description.index_entries:
            return None
        try:
            return max(int(e.timestamp) for e in self.stream.index_entries)
        except AV_ERRORS:
            return None

    def picked(self, frame: av.VideoFrame) -> Picked:
        """``frame`` handed out, with its time (never a frame decoded after a failed read)."""
        self.check_read()
        d = self.description
        pts = frame_pts(frame) if frame.pts is not None else d.start_pts
        return Picked(frame=frame, pts=pts, time_ms=d.time_ms(pts), key_frame=bool(frame.key_frame))

    # ------------------------------------------------------------------ requests (in pts)

    def cover(self) -> Picked:
        """The cover art picture (an attached picture is shown at every time)."""
        return self.picked(self.decode_cover())

    def frame_at(self, target: int, *, exact: bool) -> Picked:
        """The frame shown at ``target`` (``exact=False``: the keyframe at or before it)."""
        frame = self._frame_for(target, keyonly=not exact)
        if not exact and frame_pts(frame) > target:
            # No keyframe at or before t is shown: an edit list (MP4 cut without re-encoding)
            # starts the presentation mid-GOP and hides its keyframe. The next keyframe would
            # be a frame after t; the frame shown at t is the nearest one that is not.
            frame = self._frame_for(target, keyonly=False)
        return self.picked(frame)

    def next_after(self, target: int, *, exact: bool) -> Picked | None:
        """The frame (``exact=False``: keyframe) after the one shown at ``target``, left pending;
        None when that one is the last."""
        self._frame_for(target, keyonly=not exact)
        frame = self.pull()
        if frame is None:
            return None
        self._pending.appendleft(frame)
        return self.picked(frame)

    def following(self) -> Iterator[Picked]:
        """Every frame after the last one handed out, in presentation order."""
        while True:
            frame = self.pull()
            if frame is None:
                return
            self._prev = frame
            yield self.picked(frame)

    def keyframes(self, target: int) -> Iterator[Picked]:
        """Every keyframe whose pts is ≥ ``target``, in presentation order."""
        d = self.description
        if d.key_ts and d.index_entries >= _HOP_MIN_GOP_PACKETS * len(d.key_ts) and not d.numbered_in_order:
            yield from self._hop_keyframes(target)
            self.check_read()  # a failed read ends the hops early
            return
        self.set_keyonly(True)
        self.seek_and_anchor(target)
        last_pts: int | None = None
        while True:
            frame = self.pull()
            if frame is None:
                return
            self._prev = frame
            pts = frame_pts(frame)
            if pts >= target and (last_pts is None or pts > last_pts):
                last_pts = pts
                yield self.picked(frame)

    def _hop_keyframes(self, target: int) -> Iterator[Picked]:
        """Keyframes via the index: seek to each, decode its one packet, drain the decoder."""
        self.set_keyonly(True)
        d = self.description
        first = bisect.bisect_left(d.key_ts, target - d.dts_shift)
        # The keyframe just before may present at/after the target when DTS lags PTS.
        last_pts: int | None = None
        for ts in d.key_ts[max(0, first - 1) :]:
            # Aim at the keyframe's presentation time: demuxers seeking by PTS (MP4/MOV) land on
            # it, not on the keyframe before (which would mean demuxing a whole GOP of packets to
            # reach this one: the entire file for a keyframe job); those seeking by DTS land on
            # it too, the next keyframe being more than the reorder delay later.
            self._seek(ts + d.dts_shift)
            self._it = None
            frames: list[av.VideoFrame] = []
            try:
                for packet in self.container.demux(self.stream):
                    if packet.size == 0 or packet.dts is None or packet.dts < ts:
                        continue  # flush packet or a packet before the keyframe
                    frames.extend(packet.decode())
                    if packet.is_keyframe:
                        break
                frames.extend(self.codec.decode(None))
            except AV_ERRORS:
                continue
            self._anchored = False
            for frame in frames:
                if frame.pts is None:
                    continue
                pts = frame_pts(frame)
                if pts >= target and (last_pts is None or pts > last_pts):
                    last_pts = pts
                    yield self.picked(frame)

    # ------------------------------------------------------------------ release

    def close(self) -> None:
        """Release the container, the decoder and its threads now (idempotent).

        A decoder's threads and picture pool live as long as PyAV's codec context object, and that
        is freed only when nothing refers to it. A cursor refers to itself through its live decode
        run (a generator running one of its methods), so without this a closed cursor, its codec
        context and the decoder's threads waited for the cyclic garbage collector: a busy server
        held hundreds of idle FFmpeg threads and gigabytes of pictures. Closing ends the run,
        drops the frames held and every reference to the stream and codec context, then closes
        the container (which drops its streams): the decoder is freed on the spot. Frames already
        handed out stay valid (they hold their own picture buffers).
        """
        run, self._it = self._it, None
        if run is not None:
            with contextlib.suppress(Exception):
                run.close()
        self._pending = collections.deque()
        self._prev = None
        self._cover = None
        self.codec = None
        self.stream = None
        container, self.container = self.container, None
        if container is not None:
            with contextlib.suppress(*AV_ERRORS):
                container.close()
        if self._owns_source:
            self._owns_source = False
            self.source.close()  # type: ignore[union-attr]

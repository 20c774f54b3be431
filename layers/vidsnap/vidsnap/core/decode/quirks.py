"""Container and codec quirks: where a file's timestamps or seeking do not mean what they say.

Kept apart from the cursor so that its state machine reads as the general rule (seek to the
keyframe before t, decode forward to the last frame with pts ≤ t; docs/ARCHITECTURE.md, decode)
and each exception to it is found in one place, with the evidence that made it necessary (most
were found by ``bench/crosscheck.py``). Opening detects them once (the flags of
:class:`~vidsnap.core.decode.stream.StreamDescription`); the functions here are what the cursor
and opening do about them:

* AVI stores no presentation times: with reordered frames, times come from the decoder's DTS
  (:func:`avi_times_are_dts`, :func:`dts_pts`).
* Raw elementary streams (FFmpeg's AVFMT_NOTIMESTAMPS demuxers: ``.h264``, ``.hevc``, ``.m1v``
  ...) have timestamps invented from where reading started and a duration guessed from the bit
  rate: they are counted once (:func:`count_duration`) and never seeked (a rewind reopens).
* MPEG-TS has no index and seeks by bisecting timestamps: a seek below the start aims far below
  it (:func:`rewind_ts`).
* MPEG program streams stamp frames that do not start a PES packet by interpolation, differently
  after a seek (:func:`needs_lead_in`), and under-estimate their duration (:func:`scan_duration`).
* Open GOPs in keyframe mode: the decoder cannot order keyframes alone (:func:`drain_keyframe`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import av

from vidsnap.core.decode.guard import AV_ERRORS, REOPEN_ERRORS, raise_if_transient
from vidsnap.core.decode.stream import StreamDescription, frame_pts

__all__ = [
    "avi_times_are_dts",
    "count_duration",
    "drain_keyframe",
    "dts_pts",
    "has_no_timestamps",
    "is_avi",
    "needs_lead_in",
    "restamp_from_dts",
    "rewind_ts",
    "scan_duration",
    "stamp_drained",
]

# AVFMT_NOTIMESTAMPS: the demuxer reads a raw elementary stream (MPEG-1/2 video ``.m1v``/``.mpv``,
# H.264, HEVC, MPEG-4 Part 2 ...): its timestamps are invented by the parser at the nominal rate,
# counting from wherever reading started, and its duration is guessed from the bit rate.
_AVFMT_NOTIMESTAMPS = 0x0080


def _format_names(container: Any) -> list[str]:
    return (container.format.name or "").split(",")


def has_no_timestamps(container: Any) -> bool:
    """Whether the container is a raw elementary stream (AVFMT_NOTIMESTAMPS, see above).

    Its timestamps count from where reading started: after a seek, FFmpeg stamped an MPEG-1
    stream's first keyframe 40 ms late (m_fast / m_key gave 40, 760 … for keyframes at 0, 760 …).
    Only a read from the start gives every frame the time a sequential decode gives it, so the
    cursor rewinds by reopening, and the duration is counted (:func:`count_duration`).
    """
    return bool(int(container.format.flags or 0) & _AVFMT_NOTIMESTAMPS)


def is_avi(container: Any) -> bool:
    """Whether the container is AVI (see :func:`avi_times_are_dts`)."""
    return "avi" in _format_names(container)


def avi_times_are_dts(frames: Sequence[av.VideoFrame]) -> bool:
    """Whether an AVI stream's first decoded ``frames`` need their times from the decoder's DTS.

    AVI stores no presentation times, only a chunk count. With B-frames (H.264 in AVI, and
    MPEG-4 Part 2 with *packed* B-frames: DivX/Xvid) the pts FFmpeg gives decoded frames are
    their decode positions, which run backwards in display order (2, 4, 3, 6, 5 …), while the
    frames' DTS advance one chunk per displayed frame: FFmpeg's own ``best_effort_timestamp``
    (what the ffmpeg CLI shows) then uses the DTS, and so does vidsnap, for the whole stream.
    Before, the frame at t was the wrong one wherever a B-frame's pts crossed its neighbour's.
    Decided from the first frames after opening (a small cost, only for AVI with reordering
    decoders).
    """
    pairs = list(itertools.pairwise(frames))
    backwards = any(b.pts is not None and a.pts is not None and b.pts < a.pts for a, b in pairs)
    dts_ok = all(a.dts is not None and b.dts is not None and b.dts > a.dts for a, b in pairs[:-2])
    return backwards and dts_ok


def dts_pts(frame: av.VideoFrame, prev: int | None, interval_ticks: int) -> int:
    """A frame's time from its DTS; the frames drained at the end have none: one interval on."""
    if frame.dts is not None:
        return int(frame.dts)
    if prev is not None:
        return prev + interval_ticks
    return frame_pts(frame)


def restamp_from_dts(frames: Sequence[av.VideoFrame], interval_ticks: int) -> int | None:
    """Give already decoded ``frames`` their times from DTS (in place); the last time given."""
    prev: int | None = None
    for frame in frames:
        frame.pts = dts_pts(frame, prev, interval_ticks)
        prev = frame.pts
    return prev


def stamp_drained(frame: av.VideoFrame, last_dts: int | None, interval_ticks: int) -> int | None:
    """Times from DTS: a frame drained at the end (the flush packet) has no DTS; give it the one
    the next packet would have had (right even when a seek left no frame before). Returns the
    last DTS given out."""
    if frame.dts is None and last_dts is not None:
        last_dts += interval_ticks
        frame.dts = last_dts
    return last_dts


def needs_lead_in(container: Any) -> bool:
    """Whether the frames right after a seek can carry times a sequential read does not give.

    MPEG program streams (``.mpg``, ``.vob``) carry a timestamp only for a frame that starts a
    PES packet; FFmpeg interpolates the others from the frames read before, and after a seek
    from what the seek guessed: the keyframe it lands on and a few frames after it came out up
    to three frames late (the last picture of a 1 s clip at 1000 ms instead of 960 ms; the
    frame shown at 600 ms was frame 12, not 15, in a clip of small pictures). A read that starts
    a second earlier has resynchronised on real timestamps by then, as a sequential read has:
    the cursor trusts times from the second keyframe after a seek on, and seeks land that much
    earlier.
    """
    return "mpeg" in _format_names(container)


def drain_keyframe(codec: Any) -> list[av.VideoFrame]:
    """Keyframe mode: everything the decoder holds after a keyframe packet, then a reset.

    With the frames between keyframes skipped, a decoder cannot order the keyframes it keeps:
    H.264 infers the high bits of a picture's order count from the pictures before it, and
    recovery-point I-frames (open GOP: x264 ``open-gop``, broadcast streams) more than half
    the order-count range apart come out of its reorder buffer reversed, with pts that then
    run backwards, and the last one is lost (a 4 s open-GOP file gave its keyframes as
    2080, 1080, 0 ms; ``m_fast`` answered 2080 ms for t = 500). Each keyframe is intra coded:
    draining the decoder after it and flushing it before the next decodes every keyframe on
    its own, in order (draining returns every frame in flight, so none is lost). Non-key
    packets are still sent (the decoder skips them) and never drained.
    """
    frames = list(codec.decode(None))
    codec.flush_buffers()
    return frames


def rewind_ts(lowest: int, step: int, time_base: Fraction) -> int:
    """Where a seek aims to reach the very start of a stream whose lowest timestamp is ``lowest``.

    MPEG-TS bisects on timestamps and can land a GOP late even for a target just below its
    first timestamp; far below the start it reliably rewinds to the first packet.
    """
    return lowest - max(step, round(Fraction(10) / time_base))


def count_duration(container: Any, stream: Any, desc: StreamDescription) -> tuple[Fraction, str | None]:
    """The duration of a stream that declares none (or only a guess), by reading its packets.

    Raw elementary streams (``.h264``/``.hevc`` from cameras and recorders) and still pictures
    (PNG/JPEG through image2) carry no duration: without one, interval and average selections
    found nothing or only the first frame; a raw MPEG-1/2 stream of 5.4 s claimed 18 ms (estimated
    from its bit rate). The packets' own timestamps are used when there are any, otherwise their
    count at the nominal frame rate (the times the cursor gives such frames); a still picture
    lasts one frame. No decoding; the caller reads ``container`` from its start, and opens it
    again afterwards (such demuxers often cannot seek back). Rare, so the extra read is
    acceptable. Returns the duration and, when the data could not be read to its end, a note.
    """
    interval = desc.interval_ticks
    count, end, note = 0, None, None
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            count += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                stop = int(ts) + int(packet.duration or interval)
                end = stop if end is None else max(end, stop)
    except AV_ERRORS as exc:
        # Keep what was read: the frames up to the damage still decode.
        note = f"the source could not be read to its end ({exc}); its length is what could be read"
    ticks = count * interval
    if end is not None and end > desc.start_pts:
        ticks = max(ticks, end - desc.start_pts)
    return Fraction(max(ticks, interval)) * desc.time_base * 1000, note


def scan_duration(
    desc: StreamDescription, last_frame_up_to: Callable[[int], av.VideoFrame | None]
) -> tuple[Fraction, str | None]:
    """The duration of an MPEG program stream, from the last frame a decode reaches.

    FFmpeg estimates a program stream's duration from the last PES timestamps near its end,
    which frames without a PES timestamp of their own are not counted in: a 4 s clip of small
    pictures claimed 3.54 s (its last 11 frames), so interval and average selections missed the
    end. Decoding from the last keyframe to the end (as ``frame_at`` past the end does, through
    ``last_frame_up_to``) finds the last frame's real time. On failure the estimate
    (``desc.duration_ms``) stays, with a note.
    """
    estimate = desc.duration_ms
    tb = desc.time_base
    beyond = desc.start_pts + math.ceil(estimate / 1000 / tb) + round(10 / tb)
    try:
        last = last_frame_up_to(beyond)
    except REOPEN_ERRORS as exc:
        raise_if_transient(exc)  # a read to retry later is not a reason to keep an estimate
        last = None
    if last is None or last.pts is None:
        return estimate, "the video's duration is the container's estimate"
    interval = desc.interval_ticks
    ticks = frame_pts(last) - desc.start_pts + max(int(last.duration or 0), interval)
    return Fraction(max(ticks, interval)) * tb * 1000, None

"""Opening a video: the steps that build its stream description, with the cursor that decodes for them.

Some of what a description holds is only known by decoding (the first frame fixes t = 0 and
carries the display matrix; AVI tells its timing by its first frames; a raw stream's length by
counting it), so opening creates the Video's cursor over a provisional description and completes
the description step by step, each step a new frozen value (docs/ARCHITECTURE.md, decode). When
:func:`open_cursor` returns, the description is complete and never changes again.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from fractions import Fraction
from typing import Any

import av

from vidsnap.core.decode import quirks
from vidsnap.core.decode.container import (
    DecoderSettings,
    Source,
    check_picture_size,
    check_stream_size,
    open_container,
    picture_header,
    read_head,
)
from vidsnap.core.decode.cursor import Cursor
from vidsnap.core.decode.guard import AV_ERRORS, ReadGuard, raise_read_error
from vidsnap.core.decode.stream import StreamDescription, display_geometry, frame_pts
from vidsnap.core.errors import UndecodableMedia, UnsupportedMedia, VidsnapError

__all__ = ["open_cursor"]

# AVI with reordered frames: how many of the first frames tell whether times come from DTS.
_AVI_PROBE_FRAMES = 8


def open_cursor(source: Source, settings: DecoderSettings) -> Cursor:
    """Open ``source`` and learn its video stream; a cursor over the complete description.

    Refuses a picture over ``settings.max_source_pixels`` before decoding anything. Every failure
    is a vidsnap error; a failed read of a file object is raised as itself (see ReadGuard), not
    as the "unrecognised" or "corrupt" it looks like to FFmpeg.
    """
    limit = settings.max_source_pixels
    if limit is not None:
        # A PNG is decoded while probing: check what its header declares before (bit depth too).
        declared = picture_header(read_head(source, 64))
        if declared is not None:
            check_picture_size(*declared, limit)
    # PyAV reads a file object through a guard that records read failures (see ReadGuard).
    guard = None if isinstance(source, str | os.PathLike) else ReadGuard(source)
    try:
        container = open_container(guard or source, max_pixels=limit)
    except VidsnapError:
        raise_read_error(guard)  # a read failed: that, not "unrecognised", is why it cannot open
        raise
    cursor: Cursor | None = None
    try:
        cursor = Cursor(
            _provisional(container), source=source, guard=guard, container=container, settings=settings
        )
        _learn(cursor)
        cursor.check_read()  # what opening learnt must not rest on data cut short by a failure
        return cursor
    except VidsnapError:
        _close(cursor, container)
        raise_read_error(guard)
        raise
    except AV_ERRORS as exc:
        _close(cursor, container)
        raise_read_error(guard)
        raise UndecodableMedia(f"cannot decode the video: {exc}") from exc
    except BaseException:
        _close(cursor, container)
        raise


def _close(cursor: Cursor | None, container: Any) -> None:
    if cursor is not None:
        cursor.close()  # closes the container it holds (a reopen may have replaced this one)
    else:
        with contextlib.suppress(*AV_ERRORS):
            container.close()


def _provisional(container: Any) -> StreamDescription:
    """The stream to decode and what its headers tell, before any frame is decoded.

    The first video stream that is not an attached picture; else an attached picture (audio with
    cover art); else no picture to capture.
    """
    videos = list(container.streams.video)
    moving = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
    if moving:
        stream, is_cover_art = moving[0], False
    elif videos:
        stream, is_cover_art = videos[0], True
    elif container.streams.audio:
        raise UnsupportedMedia("audio file without cover art: there is no picture to capture")
    else:
        raise UnsupportedMedia("no video stream in the source")
    codec = stream.codec_context
    time_base = Fraction(stream.time_base or Fraction(1, 90000))
    sar = stream.sample_aspect_ratio
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return StreamDescription(
        stream_index=stream.index,
        is_cover_art=is_cover_art,
        time_base=time_base,
        coded_width=int(codec.width),
        coded_height=int(codec.height),
        sample_aspect_ratio=Fraction(sar) if sar else Fraction(1),
        frame_interval_ms=Fraction(1000) / Fraction(rate) if rate and not is_cover_art else None,
        interval_ticks=max(1, round(Fraction(1) / Fraction(rate) / time_base)) if rate else 1,
        stream_start=int(stream.start_time) if stream.start_time is not None else None,
        no_timestamps=quirks.has_no_timestamps(container),
        needs_lead_in=quirks.needs_lead_in(container),
    )


def _learn(cursor: Cursor) -> None:
    """Complete ``cursor.description``: size checks, then (decoding) t = 0, rotation, AVI timing,
    the seek shift, the duration."""
    d = cursor.description
    check_stream_size(
        cursor.container, cursor.stream, d.coded_width, d.coded_height, cursor.settings.max_source_pixels
    )
    if d.coded_width <= 0 or d.coded_height <= 0:
        raise UndecodableMedia("the video stream has no picture size (corrupt or unsupported codec)")
    if d.is_cover_art:
        cover = cursor.decode_cover()
        rotation, width, height = display_geometry(cover, d)
        cursor.description = replace(d, rotation=rotation, display_width=width, display_height=height)
        return

    # Keyframe table from the container index (MP4/MOV/MKV/WebM/AVI); empty for MPEG-TS.
    try:
        key_ts = tuple(sorted(e.timestamp for e in cursor.stream.index_entries if e.is_keyframe))
        n_entries = len(cursor.stream.index_entries)
    except AV_ERRORS:
        key_ts, n_entries = (), 0
    d = cursor.description = replace(d, key_ts=key_ts, index_entries=n_entries)

    # Decode the first frame now: it fixes start_pts (t = 0) and carries the display matrix.
    first = cursor.start()
    if first is None:
        raise UndecodableMedia("no decodable video frame in the source (empty, truncated or corrupt)")
    # Raw elementary streams have no timestamps at all: the cursor numbers their frames at the
    # nominal rate, which is only right while every frame is decoded (see Cursor.set_keyonly).
    d = cursor.description = replace(d, synthetic_pts=cursor.first_pts_synthetic)
    if quirks.is_avi(cursor.container) and cursor.codec.has_b_frames:
        frames = cursor.peek(_AVI_PROBE_FRAMES)
        if quirks.avi_times_are_dts(frames):
            d = cursor.description = replace(d, pts_from_dts=True)
            cursor.last_pulled_pts = quirks.restamp_from_dts(frames, d.interval_ticks)
        first = frames[0]
    start_pts = frame_pts(first)
    rotation, width, height = display_geometry(first, d)
    d = replace(
        d,
        start_pts=start_pts,
        rotation=rotation,
        display_width=width,
        display_height=height,
        # MP4/MOV index timestamps are DTS: the first keyframe's DTS runs behind its PTS by the
        # reorder delay. Seeks aim that much earlier once the demuxer is seen to seek by DTS.
        dts_shift=max(0, start_pts - key_ts[0]) if key_ts else 0,
    )
    d = cursor.description = replace(d, duration_ms=_declared_duration(cursor.container, cursor.stream, d))
    if not d.duration_ms or d.no_timestamps:
        # No duration, or one FFmpeg estimated from the bit rate: count (see quirks.count_duration).
        cursor.restart()
        duration, note = quirks.count_duration(cursor.container, cursor.stream, d)
        cursor.restart()
        cursor.description = replace(d, duration_ms=duration, duration_note=note)
    elif d.needs_lead_in:
        duration, note = quirks.scan_duration(d, cursor.last_frame_up_to)
        cursor.description = replace(d, duration_ms=duration, duration_note=note)


def _declared_duration(container: Any, stream: Any, d: StreamDescription) -> Fraction:
    """The duration the stream (else the container) declares, from the first frame on."""
    if stream.duration:
        # The stream's own span. (AVI with packed B-frames reports a start one frame before
        # the first decoded pts; the span is still the stream's duration.)
        return Fraction(stream.duration) * d.time_base * 1000
    if container.duration:
        # Container times are in AV_TIME_BASE (µs) from the container start.
        c_start = Fraction(container.start_time or 0, 1_000_000)
        end_s = c_start + Fraction(container.duration, 1_000_000)
        return max(Fraction(0), (end_s - d.start_pts * d.time_base) * 1000)
    return Fraction(0)

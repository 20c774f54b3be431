"""Frame-accurate random access to a video with PyAV (README: Request languages).

The rule everything here implements: *the frame shown at t* is the last frame, in presentation
order, whose pts ≤ ``start_pts + t / 1000 / time_base``, compared as exact rationals. ``start_pts``
is the pts of the first frame in presentation order (normally ``stream.start_time``; decoding
the first frame also covers AVI/MPEG-4 files whose header start time is off by the B-frame delay).

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
* Media without usable timestamps (found by ``bench/crosscheck.py``): raw H.264/HEVC elementary
  streams (no pts, no duration, no seeking: frames numbered at the nominal rate, duration from a
  packet count, rewinds by reopening) and AVI with reordered frames (pts from the decoder's DTS,
  see ``_check_avi_timestamps``); both decode every frame in keyframe mode so numbering holds.
* Raw elementary streams in general (FFmpeg's AVFMT_NOTIMESTAMPS demuxers: MPEG-1/2 ``.m1v``/``.mpv``
  too) get timestamps invented from where reading started and a duration guessed from the bit
  rate: they are counted once and never seeked (a rewind reopens). MPEG program streams stamp
  frames that do not start a PES packet by interpolation, differently after a seek: seeks land a
  second early and answers come from past the GOP a seek landed in (``_needs_lead_in``).
* Truncation is judged at EOF by what was decoded and, in keyframe mode, by what the demuxer read.

Every PyAV/FFmpeg or I/O failure is turned into :class:`UnsupportedMedia` (not a media file we can
read) or :class:`UndecodableMedia` (truncated, corrupt, nothing at the requested time) at this
boundary.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, NoReturn

import av
import av.error

from vidsnap.core.errors import (
    DecodeBudgetExceeded,
    SourceEndsEarly,
    SourceTooLarge,
    UndecodableMedia,
    UnsupportedMedia,
    VidsnapError,
)
from vidsnap.core.plan import DEFAULT_MAX_SOURCE_PIXELS

__all__ = ["Picked", "Video"]

# Probing: the default (5 MB / 5 s) reads far more than the stream parameters need for the
# containers we serve; a smaller probe keeps the first request on a range-read S3 object cheap.
_OPEN_OPTIONS = {"probesize": "2000000", "analyzeduration": "2000000"}
# How many times a late seek is retried further back before seeking to the very start.
_MAX_SEEK_ATTEMPTS = 12
# keyframes(): hop from keyframe to keyframe through the index when GOPs average at least this
# many packets (reading one packet per GOP instead of all of them).
_HOP_MIN_GOP_PACKETS = 48
# Packets remembered for the NONREF skip decision when the target moves on (well above any
# reorder depth; a smaller window only skips less).
_SKIP_WINDOW = 64
# AVFMT_NOTIMESTAMPS: the demuxer reads a raw elementary stream (MPEG-1/2 video ``.m1v``/``.mpv``,
# H.264, HEVC, MPEG-4 Part 2 ...): its timestamps are invented by the parser at the nominal rate,
# counting from wherever reading started, and its duration is guessed from the bit rate.
_AVFMT_NOTIMESTAMPS = 0x0080
#: The decode budget (``decode_budget_frames``) counts frames of this size; see _budget_frames.
_BUDGET_REFERENCE_PIXELS = 1920 * 1080

# Threading, measured on this 2-core machine (PyAV 18 / FFmpeg 8; synth 1920×1080 30 fps H.264,
# GOP 250, 2 B-frames, 60 s; open + one frame per call, mean of 10 calls at scattered times;
# before frames that cannot be the answer were skipped, see _skip_mode):
#                 exact frame   keyframe (m_fast)   frames_at every 10 s
#   SLICE           0.215 s        0.023 s              0.95 s
#   FRAME           0.327 s        0.064 s              1.22 s
#   AUTO (both)     0.192 s        0.052 s              0.74 s
# With non-reference frames skipped (skip_frame NONREF) what is left to decode is the chain of
# reference frames, each predicted from the one before: frame threads have little to overlap and
# keep their pipeline latency. Benchmark 1080p 14 Mbit/s, GOP 250, 3 B-frames (open + frame_at,
# median of 7 × 4 times): exact AUTO 145 ms / SLICE 140 ms; keyframe AUTO 70 ms / SLICE 42 ms.
# 900 frames from a keyframe, NONREF: FRAME 0.58-0.71 s (0.8 s CPU), SLICE 0.62 s (0.63 s CPU);
# every frame: FRAME 0.94-1.26 s, SLICE 1.14-1.63 s. Bulk jobs either skip (inter/avg/dhash) or
# are bound by converting and encoding the many frames they output (every frame, keyframes), so
# one decoding core is enough and the second one converts and encodes (engine pipelines them).
# The thread type must be fixed before the decoder opens, so it is chosen per Video.
_THREAD_TYPE_SINGLE = "SLICE"
_THREAD_TYPE_BULK = "SLICE"
# Threads of one decoder, at most. FFmpeg's automatic count (thread_count 0) is cores + 1, up to 16,
# and every open decoder keeps its threads until it is freed: a local server on a 16-core machine
# with 40 requests decoding at once ran 17 × 40 threads (issue 9). The one-frame and skipping bulk
# paths gain little past a few threads (the table above: one reference chain; x264 writes one
# slice per picture), and several decoders at once (vidsnap.core.parallel, a busy server) share the
# cores anyway, so a decoder gets one thread per core up to this cap unless told fewer.
MAX_DECODER_THREADS = 4

_AvError: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError, ValueError)
_REOPEN_ERRORS: tuple[type[BaseException], ...] = (VidsnapError, *_AvError)
_INDEX_ERRORS: tuple[type[BaseException], ...] = (IndexError, *_AvError)


@dataclass
class Picked:
    """A decoded frame with its presentation time (ms from the first frame, exact)."""

    frame: av.VideoFrame
    pts: int
    time_ms: Fraction
    key_frame: bool


def _pts(frame: av.VideoFrame) -> int:
    """A frame's pts (always set by ``Video._pull``; 0 only as a type-level fallback)."""
    return int(frame.pts) if frame.pts is not None else 0


# Leading bytes of the containers we read: a file that starts like one of them but that FFmpeg
# cannot open is a damaged media file (422), not a file of an unsupported kind (415).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/MOV"),
    (4, b"moov", "MOV"),
    (4, b"mdat", "MP4/MOV"),
    (4, b"wide", "MOV"),
    (4, b"free", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3"),
    (0, b"FLV", "FLV"),
)


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a Lambda sandbox or container sets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def decoder_threads(sharing: int = 1) -> int:
    """Threads for one decoder when ``sharing`` decoders run at once: the cores split between
    them, at least 1, at most :data:`MAX_DECODER_THREADS`."""
    return max(1, min(cpu_cores(), MAX_DECODER_THREADS) // max(1, sharing))


def _entry_ts(entry: Any) -> int:
    return int(entry.timestamp)


def _sniff(source: str | os.PathLike[str] | BinaryIO | _ReadGuard) -> str | None:
    """The container kind the first bytes announce, or None (never raises)."""
    head = _read_head(source, 16)
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


class _ReadGuard:
    """The file object PyAV reads a Python source through: a failed read is recorded, not raised.

    PyAV calls ``read``/``seek`` inside FFmpeg's I/O callbacks. An exception there is stashed for
    the next PyAV call that checks an FFmpeg result, but FFmpeg often takes a failed read as the end
    of the data and carries on: the stashed exception is then printed to stderr as a multi-line
    "PyAV library exception being dropped" traceback when the next one is stashed (noise in Lambda
    logs, issue 9), or raised later by an unrelated call on the same thread (the next request
    served by that thread), while this one fails as "truncated or corrupt" instead of with the
    read error. Here a failed read records its exception and returns ``b""`` (the end of the
    data for FFmpeg, and every later read too); :meth:`Video._check_read` raises the recorded error
    where the Video hands out a frame or meets the end of the data.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: BaseException | None = None

    def readable(self) -> bool:
        """Always True (PyAV asks)."""
        return True

    def seekable(self) -> bool:
        """Whether the source can seek (PyAV asks once, when opening)."""
        seekable = getattr(self.raw, "seekable", None)
        try:
            return bool(seekable()) if callable(seekable) else True
        except Exception:
            return False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the data and after a failed read."""
        if self.error is not None:
            return b""
        try:
            data = self.raw.read(size)
        except Exception as exc:
            self.error = exc
            return b""
        # PyAV copies from a bytes object only (anything else would be a TypeError in its callback).
        return data if isinstance(data, bytes) else bytes(data or b"")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """The new position, or a negative errno that FFmpeg takes as a failed seek."""
        try:
            return int(self.raw.seek(offset, whence))
        except OSError as exc:  # a position the source refuses (negative): FFmpeg copes
            return -(exc.errno or errno.EIO)
        except Exception as exc:
            self.error = self.error or exc
            return -errno.EIO

    def tell(self) -> int:
        """The current position (or a negative errno)."""
        try:
            return int(self.raw.tell())
        except Exception as exc:
            self.error = self.error or exc
            return -errno.EIO


def _raise_if_transient(exc: BaseException) -> None:
    """Re-raise a transient vidsnap error (throttling, a source read to retry) caught by a handler
    that gives up gracefully on damaged media: only a permanent failure may end in a fallback."""
    if isinstance(exc, VidsnapError) and exc.transient:
        raise exc


def _raise_read_error(guard: _ReadGuard | None) -> None:
    """Raise the error a read through ``guard`` met, if any: the source's own error (a
    VidsnapError from a range reader), or UndecodableMedia for an I/O error of a file object."""
    if guard is None or guard.error is None:
        return
    error = guard.error
    if isinstance(error, OSError):  # I/O failures are media errors at this boundary (module doc)
        raise UndecodableMedia(f"the source could not be read: {error}") from error
    raise error


def _open(source: str | os.PathLike[str] | BinaryIO | _ReadGuard, *, max_pixels: int | None = None) -> Any:
    """Open an input container; map every failure to a vidsnap error.

    ``max_pixels`` is handed to the decoders that probing opens: FFmpeg decodes a still picture
    (PNG, JPEG, cover art) while probing, to learn its size, and would allocate a bomb's whole
    picture before vidsnap sees the size; above the limit it decodes nothing (the size stays 0).
    """
    target: Any = os.fspath(source) if isinstance(source, str | os.PathLike) else source
    options = dict(_OPEN_OPTIONS)
    if max_pixels is not None:
        options["max_pixels"] = str(_ffmpeg_max_pixels(max_pixels))
    try:
        return av.open(target, mode="r", options=options)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise UnsupportedMedia(f"cannot open the source: {exc.strerror or exc}") from exc
    except _AvError as exc:
        kind = _sniff(source)
        if kind:
            raise UndecodableMedia(
                f"the source looks like {kind} but cannot be read (truncated or corrupt)"
            ) from exc
        raise UnsupportedMedia("not a media file vidsnap can read (unrecognised or empty)") from exc


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type → samples per pixel (palette pictures decode to one byte per pixel).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: JPEG start-of-frame markers (SOF0..SOF15 without DHT, JPG and DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _read_head(source: str | os.PathLike[str] | BinaryIO | _ReadGuard, size: int) -> bytes:
    """The first ``size`` bytes of the source (b"" when unreadable; a file object is rewound)."""
    try:
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as fh:
                return fh.read(size)
        source.seek(0)
        head = source.read(size)
        source.seek(0)
        return bytes(head or b"")
    except (OSError, ValueError, AttributeError):
        return b""


def _picture_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, bits per decoded pixel) a PNG or JPEG header declares, or None.

    Read without decoding anything, to refuse a decompression bomb before FFmpeg allocates its
    picture. Bits per pixel are those of the picture FFmpeg decodes to (16-bit PNG samples stay
    16-bit: a 16-bit RGBA picture takes 8 bytes per pixel); JPEG counts its components at full
    resolution, the worst case.
    """
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        depth, colour = data[24], data[25]
        bits = 8 if colour == 3 else _PNG_CHANNELS.get(colour, 4) * max(8, depth)
        return width, height, bits
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
                i += 2
                continue
            if marker in _JPEG_SOF:
                if i + 10 > len(data):
                    return None
                precision = data[i + 4]
                height, width = (
                    int.from_bytes(data[i + 5 : i + 7], "big"),
                    int.from_bytes(data[i + 7 : i + 9], "big"),
                )
                return width, height, data[i + 9] * max(8, precision)
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _ffmpeg_max_pixels(limit: int) -> int:
    """The ``max_pixels`` FFmpeg is given for a source limit of ``limit`` pixels.

    FFmpeg checks its buffers' size, whose width is padded to its stride alignment (a 160×90
    H.264 picture counts as 192×90), so a picture right at the limit would fail to decode. The
    exact limit is vidsnap's own check (:func:`_check_picture_size`); FFmpeg's, a quarter (at
    least a megapixel) above it, only stops what that check cannot see beforehand.
    """
    return limit + max(limit // 4, 1 << 20)


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} Mpx"


def _check_picture_size(width: int, height: int, bits_per_pixel: int, limit: int) -> None:
    """Refuse (:class:`SourceTooLarge`) a picture over ``limit`` pixels, or over ``limit`` pixels
    of 4 bytes (deep pictures: 16-bit RGBA takes 8 bytes per pixel, so half the pixels)."""
    pixels = width * height
    if pixels > limit:
        raise SourceTooLarge(
            f"the source picture is {width}x{height} ({_mpx(pixels)}), above the limit of "
            f"{_mpx(limit)} per picture (MAX_SOURCE_PIXELS); vidsnap refuses it before decoding"
        )
    frame_bytes = pixels * bits_per_pixel // 8
    if frame_bytes > limit * 4:
        raise SourceTooLarge(
            f"the source picture is {width}x{height} at {bits_per_pixel} bits per pixel: "
            f"{frame_bytes / 2**20:.0f} MiB per decoded picture, above the {limit * 4 / 2**20:.0f} MiB "
            f"that the limit of {_mpx(limit)} allows (MAX_SOURCE_PIXELS, at 4 bytes per pixel)"
        )


class Video:
    """One video stream of a media file, opened for frame-exact random access.

    Use as a context manager. ``bulk=True`` prepares the decoder for long sequential runs
    (asynchronous jobs), otherwise for one-frame requests. Attributes are described in
    docs/ARCHITECTURE.md; times are milliseconds from the first frame as exact fractions.
    """

    time_base: Fraction
    start_pts: int
    duration_ms: Fraction
    frame_interval_ms: Fraction | None
    coded_width: int
    coded_height: int
    sample_aspect_ratio: Fraction
    rotation: int
    display_width: int
    display_height: int
    is_cover_art: bool
    #: Why ``duration_ms`` may be short of the video's real length (None when it is not known to be).
    duration_note: str | None = None

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        bulk: bool = False,
        max_source_pixels: int | None = DEFAULT_MAX_SOURCE_PIXELS,
        decode_budget_frames: int | None = None,
        threads: int | None = None,
    ) -> None:
        """Open ``source``; refuse it (:class:`SourceTooLarge`) when its picture is larger than
        ``max_source_pixels`` (None: no limit), before any frame is decoded. A request whose frame
        needs more than ``decode_budget_frames`` frames decoded from the nearest keyframe fails with
        :class:`DecodeBudgetExceeded` (None: no budget); see :meth:`_check_budget`. ``threads``:
        the decoder's own threads (None: :func:`decoder_threads`)."""
        self._source = source
        self._max_source_pixels = max_source_pixels
        self._decode_budget = decode_budget_frames
        self._pulled = 0  # frames the decoder has produced (the budget's runtime count)
        if max_source_pixels is not None:
            # A PNG is decoded while probing: check what its header declares before (bit depth too).
            declared = _picture_header(_read_head(source, 64))
            if declared is not None:
                _check_picture_size(*declared, max_source_pixels)
        # The decoder's own threads (None: decoder_threads()); fixed before the decoder opens.
        self._threads = max(1, threads) if threads is not None else decoder_threads()
        # PyAV reads a file object through a guard that records read failures (see _ReadGuard).
        self._guard = None if isinstance(source, str | os.PathLike) else _ReadGuard(source)
        try:
            self._container = _open(self._guard or source, max_pixels=max_source_pixels)
        except VidsnapError:
            self._check_read()  # a read failed: that, not "unrecognised", is why it cannot open
            raise
        try:
            self._setup(bulk)
            self._check_read()  # what opening learnt must not rest on data cut short by a failure
        except VidsnapError:
            self.close()
            self._check_read()
            raise
        except _AvError as exc:
            self.close()
            self._check_read()
            raise UndecodableMedia(f"cannot decode the video: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _check_read(self) -> None:
        """Raise the error a read of the source met, if any (see :class:`_ReadGuard`).

        Called where a frame is handed out or the data ends: after a failed read FFmpeg sees the
        end of the data, so the last frames decoded (or their absence) are not the answer.
        """
        _raise_read_error(getattr(self, "_guard", None))

    # ------------------------------------------------------------------ setup

    def _setup(self, bulk: bool) -> None:
        videos = list(self._container.streams.video)
        moving = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)]
        if moving:
            stream = moving[0]
            self.is_cover_art = False
        elif videos:
            stream = videos[0]
            self.is_cover_art = True
        elif self._container.streams.audio:
            raise UnsupportedMedia("audio file without cover art: there is no picture to capture")
        else:
            raise UnsupportedMedia("no video stream in the source")
        self._stream = stream
        # Demux only the chosen stream (the demuxer then drops audio/subtitle packets early): see
        # _configure_decoder.
        self._bulk = bulk
        self._codec = stream.codec_context
        self._configure_decoder()
        self.time_base = Fraction(stream.time_base or Fraction(1, 90000))
        self.coded_width = int(self._codec.width)
        self.coded_height = int(self._codec.height)
        self._check_source_size()
        if self.coded_width <= 0 or self.coded_height <= 0:
            raise UndecodableMedia("the video stream has no picture size (corrupt or unsupported codec)")
        sar = stream.sample_aspect_ratio
        self.sample_aspect_ratio = Fraction(sar) if sar else Fraction(1)

        # Decoder state: a live decode iterator, frames pulled but not consumed, the last consumed
        # frame, and whether the sequence since the last seek is known complete ("anchored").
        self._it: Iterator[av.VideoFrame] | None = None
        self._pending: collections.deque[av.VideoFrame] = collections.deque()
        self._prev: av.VideoFrame | None = None
        self._anchored = False
        self._eof = False
        self._keyonly = False
        # Skipping of frames that cannot be the answer (see _skip_mode): the pts target while
        # positioning, and the skip_frame value last given to the decoder.
        self._skip_target: int | None = None
        self._skip_state = "DEFAULT"
        self._last_pulled_pts: int | None = None
        self._last_key_pts: int | None = None
        self._gop_ticks: int | None = None
        self._cover: av.VideoFrame | None = None
        self._synthetic_pts = False
        self._first_pts_synthetic = False
        self._pts_from_dts = False
        # Timestamps of packets demuxed since the last seek reach this far (see _check_truncation).
        self._read_end: int | None = None
        # Whether the frames being decoded are stamped as a sequential read stamps them: reading
        # from the start, or (see _needs_lead_in) from the second keyframe after a seek on.
        self._read_from_start = True
        self._keys_since_seek = 0
        self._trusted_from: int | None = None
        self._no_timestamps = bool(int(self._container.format.flags or 0) & _AVFMT_NOTIMESTAMPS)

        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.frame_interval_ms = Fraction(1000) / Fraction(rate) if rate and not self.is_cover_art else None
        self._interval_ticks = max(1, round(Fraction(1) / Fraction(rate) / self.time_base)) if rate else 1

        if self.is_cover_art:
            cover = self._decode_cover()
            self.start_pts = 0
            self.duration_ms = Fraction(0)
            self.frame_interval_ms = None
            self._set_rotation(cover)
            self._key_ts: list[int] = []
            self._dts_shift = 0
            self._seek_by_dts = False
            return

        # Keyframe table from the container index (MP4/MOV/MKV/WebM/AVI); empty for MPEG-TS.
        try:
            self._key_ts = sorted(e.timestamp for e in stream.index_entries if e.is_keyframe)
            n_entries = len(stream.index_entries)
        except _AvError:
            self._key_ts, n_entries = [], 0
        self._index_entries = n_entries

        # Decode the first frame now: it fixes start_pts (t = 0) and carries the display matrix.
        self._it = self._decoded()
        first = self._first_clean()
        if first is None:
            raise UndecodableMedia("no decodable video frame in the source (empty, truncated or corrupt)")
        self._anchored = True
        # Raw elementary streams have no timestamps at all: _pull numbers their frames at the
        # nominal rate, which is only right while every frame is decoded (see _set_keyonly).
        self._synthetic_pts = self._first_pts_synthetic
        if "avi" in (self._container.format.name or "").split(",") and self._codec.has_b_frames:
            first = self._check_avi_timestamps()
        self.start_pts = _pts(first)
        self._set_rotation(first)
        # MP4/MOV index timestamps are DTS: the first keyframe's DTS runs behind its PTS by the
        # reorder delay. Aim seeks that much earlier so they land on the right keyframe.
        self._dts_shift = max(0, self.start_pts - self._key_ts[0]) if self._key_ts else 0
        self._seek_by_dts = False  # learnt on the first late landing (see _seek_and_anchor)
        self.duration_ms = self._compute_duration()
        if not self.duration_ms or self._no_timestamps:
            # No duration, or one FFmpeg estimated from the bit rate (a raw MPEG-1/2 stream of 5.4 s
            # claimed 18 ms, and interval/average selections returned one frame): count.
            self.duration_ms = self._count_duration()
        elif self._needs_lead_in:
            self.duration_ms = self._scan_duration()

    def _check_source_size(self) -> None:
        """Refuse a source whose declared picture exceeds ``max_source_pixels`` (before decoding).

        The size is the stream's (codec parameters, from headers or probing); the decoded format's
        bits per pixel count too. A still picture over the limit was not decoded while probing
        (see :func:`_open`), so its stream has no size: its first packet's header tells it.
        """
        limit = self._max_source_pixels
        if limit is None:
            return
        if self.coded_width > 0 and self.coded_height > 0:
            try:
                fmt = self._codec.format
                bits = int(fmt.padded_bits_per_pixel) if fmt is not None else 0
            except _AvError:
                bits = 0
            _check_picture_size(self.coded_width, self.coded_height, bits, limit)
            return
        try:
            packet = next((p for p in self._container.demux(self._stream) if p.size), None)
        except _AvError:
            return
        declared = _picture_header(bytes(packet)) if packet is not None else None
        if declared is not None:
            _check_picture_size(*declared, limit)

    def _check_avi_timestamps(self) -> av.VideoFrame:
        """AVI with reordered frames: take presentation times from the decoder's DTS.

        AVI stores no presentation times, only a chunk count. With B-frames (H.264 in AVI, and
        MPEG-4 Part 2 with *packed* B-frames: DivX/Xvid) the pts FFmpeg gives decoded frames are
        their decode positions, which run backwards in display order (2, 4, 3, 6, 5 …), while the
        frames' DTS advance one chunk per displayed frame: FFmpeg's own ``best_effort_timestamp``
        (what the ffmpeg CLI shows) then uses the DTS, and so does vidsnap, for the whole stream.
        Before, the frame at t was the wrong one wherever a B-frame's pts crossed its neighbour's.
        Decided from the first frames after opening (they are put back: a small cost, only for AVI
        with reordering decoders); returns the first frame.
        """
        frames: list[av.VideoFrame] = []
        while len(frames) < 8:
            frame = self._pull()
            if frame is None:
                break
            frames.append(frame)
        pairs = list(itertools.pairwise(frames))
        backwards = any(b.pts is not None and a.pts is not None and b.pts < a.pts for a, b in pairs)
        dts_ok = all(a.dts is not None and b.dts is not None and b.dts > a.dts for a, b in pairs[:-2])
        if backwards and dts_ok:
            self._pts_from_dts = True
            prev: int | None = None
            for frame in frames:
                frame.pts = self._dts_pts(frame, prev)
                prev = frame.pts
            self._last_pulled_pts = prev
        self._pending.extend(frames)
        return frames[0]

    def _dts_pts(self, frame: av.VideoFrame, prev: int | None) -> int:
        """A frame's time from its DTS; the frames drained at the end have none: one interval on."""
        if frame.dts is not None:
            return int(frame.dts)
        if prev is not None:
            return prev + self._interval_ticks
        return _pts(frame)

    def _count_duration(self) -> Fraction:
        """The duration of a stream that declares none, by reading its packets (no decoding).

        Raw elementary streams (``.h264``/``.hevc`` from cameras and recorders) and still pictures
        (PNG/JPEG through image2) carry no duration: without one, interval and average selections
        found nothing or only the first frame. The packets' own timestamps are used when there are
        any, otherwise their count at the nominal frame rate (the timestamps ``_pull`` gives such
        frames); a still picture lasts one frame. The source is then opened again at its start
        (such demuxers often cannot seek back). Rare, so the extra read is acceptable.
        """
        if not self._reopen():
            raise UndecodableMedia("the source cannot be read again from its start")
        count, end = 0, None
        try:
            for packet in self._container.demux(self._stream):
                if not packet.size:
                    continue
                count += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    stop = int(ts) + int(packet.duration or self._interval_ticks)
                    end = stop if end is None else max(end, stop)
        except _AvError as exc:
            # Keep what was read: the frames up to the damage still decode.
            self.duration_note = (
                f"the source could not be read to its end ({exc}); its length is what could be read"
            )
        ticks = count * self._interval_ticks
        if end is not None and end > self.start_pts:
            ticks = max(ticks, end - self.start_pts)
        if not self._reopen():
            raise UndecodableMedia("the source cannot be read again from its start")
        self._anchored = True
        return Fraction(max(ticks, self._interval_ticks)) * self.time_base * 1000

    def _scan_duration(self) -> Fraction:
        """The duration of an MPEG program stream, from the last frame a decode reaches.

        FFmpeg estimates a program stream's duration from the last PES timestamps near its end,
        which frames without a PES timestamp of their own are not counted in: a 4 s clip of small
        pictures claimed 3.54 s (its last 11 frames), so interval and average selections missed the
        end. Decoding from the last keyframe to the end (as ``frame_at`` past the end does) finds
        the last frame's real time. On failure the estimate stays, with a note.
        """
        estimate = self.duration_ms
        beyond = self.start_pts + math.ceil(estimate / 1000 / self.time_base) + round(10 / self.time_base)
        try:
            # No truncation check here: that compares with the duration being found.
            self._set_keyonly(False)
            self._seek_and_anchor(beyond)
            last = self._restamped(self._advance_to(beyond), beyond)
        except _REOPEN_ERRORS as exc:
            _raise_if_transient(exc)  # a read to retry later is not a reason to keep an estimate
            last = None
        self._forget_position()  # the next request seeks
        if last is None or last.pts is None:
            self.duration_note = "the video's duration is the container's estimate"
            return estimate
        ticks = _pts(last) - self.start_pts + max(int(last.duration or 0), self._interval_ticks)
        return Fraction(max(ticks, self._interval_ticks)) * self.time_base * 1000

    def _configure_decoder(self) -> None:
        """Per-Video decoder settings (before the decoder opens), discarding the other streams."""
        for other in self._container.streams:
            if other is not self._stream:
                other.discard = av.stream.Discard.all
        self._codec.thread_type = _THREAD_TYPE_BULK if self._bulk else _THREAD_TYPE_SINGLE
        self._codec.thread_count = self._threads  # never 0 (FFmpeg's cores + 1): see MAX_DECODER_THREADS
        if self._max_source_pixels is not None:
            # The decoder refuses pictures over the limit too: a stream whose picture grows
            # mid-stream (a new sequence header) cannot make it allocate a bomb.
            limit = _ffmpeg_max_pixels(self._max_source_pixels)
            self._codec.options = {**self._codec.options, "max_pixels": str(limit)}

    def _reopen(self) -> bool:
        """Open the source again and position at its start; False when that is impossible.

        The last resort of a rewind, for demuxers that cannot seek back once they have read their
        data: a JPEG still through FFmpeg's image2 demuxer returns no packet at all after any seek,
        so a keyframe request (``m_fast``, ``m_key``) on it, which seeks, found nothing.
        """
        source = self._source
        try:
            if not isinstance(source, str | os.PathLike):
                source.seek(0)
            container = _open(self._guard or source, max_pixels=self._max_source_pixels)
        except _REOPEN_ERRORS as exc:
            _raise_if_transient(exc)  # throttled S3 is a 503 to retry, not an undecodable file
            return False
        try:
            stream = container.streams[self._stream.index]
        except _INDEX_ERRORS:
            container.close()
            return False
        old, self._container = self._container, container
        with contextlib.suppress(*_AvError):
            old.close()
        self._stream = stream
        self._codec = stream.codec_context
        self._configure_decoder()
        self._codec.skip_frame = self._skip_state
        self._forget_position()
        self._read_from_start = True
        self._it = self._decoded()
        return True

    def _set_rotation(self, frame: av.VideoFrame) -> None:
        try:
            raw = float(frame.rotation or 0)
        except _AvError:
            raw = 0.0
        self.rotation = (round(raw / 90) * 90) % 360
        sar_w = round(self.coded_width * self.sample_aspect_ratio)
        w, h = max(1, sar_w), self.coded_height
        if self.rotation in (90, 270):
            w, h = h, w
        self.display_width, self.display_height = w, h

    def _compute_duration(self) -> Fraction:
        stream = self._stream
        if stream.duration:
            # The stream's own span. (AVI with packed B-frames reports a start one frame before
            # the first decoded pts; the span is still the stream's duration.)
            return Fraction(stream.duration) * self.time_base * 1000
        if self._container.duration:
            # Container times are in AV_TIME_BASE (µs) from the container start.
            c_start = Fraction(self._container.start_time or 0, 1_000_000)
            end_s = c_start + Fraction(self._container.duration, 1_000_000)
            return max(Fraction(0), (end_s - self.start_pts * self.time_base) * 1000)
        return Fraction(0)

    def _decode_cover(self) -> av.VideoFrame:
        """The attached picture: one packet, decoded once and cached."""
        if self._cover is not None:
            return self._cover
        frames: list[av.VideoFrame] = []
        try:
            for packet in self._container.demux(self._stream):
                frames.extend(packet.decode())
                if frames:
                    break
        except _AvError as exc:
            raise UndecodableMedia(f"the cover art cannot be decoded: {exc}") from exc
        if not frames:
            raise UndecodableMedia("the cover art stream holds no decodable picture")
        self._cover = frames[0]
        self._cover.pts = 0
        return self._cover

    # ------------------------------------------------------------------ low-level decoding

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Frames from the current demuxer position; errors end the run like an EOF.

        While a target is set (``self._skip_target``, by :meth:`_advance_to`), packets that cannot
        hold the answer are decoded with ``skip_frame = "NONREF"``: see :meth:`_skip_mode`.
        """
        demux = self._container.demux(self._stream)
        # Pts of packets decoded in full since the seek (a short window is enough, see _skip_mode).
        recent: collections.deque[int] = collections.deque(maxlen=_SKIP_WINDOW)
        best: list[int | None] = [None, None]  # [target the best was computed for, best pts ≤ it]
        last_dts: int | None = None  # of the last packet sent
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except _AvError:
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
                    self._codec.skip_frame = mode
                    self._skip_state = mode
            try:
                frames = packet.decode()
                drained = self._keyonly and packet.is_keyframe and not self._numbered_in_order
                if drained:
                    frames.extend(self._drain_keyframe())
                if packet.is_keyframe and len(frames) == 1 and (drained or not self._codec.has_b_frames):
                    # The one picture of a packet the container marks as a keyframe (a sync point:
                    # it decodes on its own). Some decoders do not flag it (Cinepak flags only the
                    # first picture of a file): keyframe mode then found no keyframe after 0 s.
                    frames[0].key_frame = True
            except av.error.EOFError:
                return
            except _AvError:
                continue  # one undecodable packet: skip it, later frames may still decode
            for frame in frames:
                if self._pts_from_dts and frame.dts is None and last_dts is not None:
                    # Drained at the end (the flush packet): the DTS the next packets would have
                    # had (see _check_avi_timestamps), right even when a seek left no frame before.
                    last_dts += self._interval_ticks
                    frame.dts = last_dts
                yield frame
        with contextlib.suppress(*_AvError):
            for frame in self._codec.decode(None):
                if self._pts_from_dts and frame.dts is None and last_dts is not None:
                    last_dts += self._interval_ticks
                    frame.dts = last_dts
                yield frame

    def _drain_keyframe(self) -> list[av.VideoFrame]:
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
        frames = list(self._codec.decode(None))
        self._codec.flush_buffers()
        return frames

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
        if pts is None or self._pts_from_dts:
            # Frame times from DTS (AVI, see _check_avi_timestamps) do not follow packet pts.
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

    def _pull(self) -> av.VideoFrame | None:
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
                self._check_read()  # the data ended because a read failed
                return None
            self._pulled += 1
            if self._pts_from_dts:
                frame.pts = self._dts_pts(frame, self._last_pulled_pts)
            if frame.pts is None:
                # Best-effort timestamp: the DTS, else one nominal interval after the previous
                # frame (numbered before the keyframe filter below, which must not renumber).
                if frame.dts is not None:
                    frame.pts = frame.dts
                else:
                    self._first_pts_synthetic = True
                    if self._last_pulled_pts is not None:
                        frame.pts = self._last_pulled_pts + self._interval_ticks
                    else:
                        frame.pts = getattr(self, "start_pts", 0)
            pts = _pts(frame)
            self._last_pulled_pts = pts
            # Some decoders (VP9) ignore skip_frame: drop non-key frames here in keyframe mode.
            if not self._keyonly or frame.key_frame:
                break
        if frame.key_frame:
            self._keys_since_seek += 1
            if self._keys_since_seek == 2:
                self._trusted_from = pts
            if self._last_key_pts is not None and pts > self._last_key_pts:
                gap = pts - self._last_key_pts
                self._gop_ticks = max(self._gop_ticks or 0, gap)
            self._last_key_pts = pts
        return frame

    def _first_clean(self) -> av.VideoFrame | None:
        """Pull frames up to the first one not flagged corrupt and leave it pending.

        Frames decoded right after a seek can reference pictures from before it (open GOP); the
        decoder flags them corrupt. They are dropped when a clean frame follows, kept otherwise.
        """
        corrupt: list[av.VideoFrame] = []
        while True:
            frame = self._pull()
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

    def _forget_position(self) -> None:
        """Drop what was decoded since the last seek: the demuxer is about to be repositioned."""
        self._pending.clear()
        self._prev = None
        self._anchored = False
        self._eof = False
        self._last_pulled_pts = None
        self._last_key_pts = None
        self._read_end = None
        self._read_from_start = False
        self._keys_since_seek = 0
        self._trusted_from = None

    def _seek(self, ts: int) -> None:
        """Seek to the keyframe at or before ``ts`` (stream time base) and reset decode state."""
        self._forget_position()
        if self._no_timestamps:
            # A raw elementary stream's timestamps count from where reading started: after a seek,
            # FFmpeg stamped an MPEG-1 stream's first keyframe 40 ms late (m_fast / m_key gave 40,
            # 760 … for keyframes at 0, 760 …). Only a read from the start gives every frame the
            # time a sequential decode gives it, so rewinding reopens the source.
            if not self._reopen():
                raise UndecodableMedia("the source cannot be read again from its start")
            return
        try:
            self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
        except _AvError:
            # Some demuxers refuse timestamps before their first entry: rewind to the start.
            try:
                self._container.seek(self._lowest_ts(), stream=self._stream, backward=True, any_frame=False)
            except _AvError:
                try:
                    self._container.seek(0, backward=True, any_frame=False)
                except _AvError:
                    # Demuxers that cannot seek at all (raw H.264/HEVC elementary streams: EPERM)
                    # start over from the beginning; the caller decodes forward from there.
                    if not self._reopen():
                        raise
                    return
        self._it = self._decoded()

    def _lowest_ts(self) -> int:
        candidates = [self.start_pts]
        if self._stream.start_time is not None:
            candidates.append(int(self._stream.start_time))
        if self._key_ts:
            candidates.append(self._key_ts[0])
        return min(candidates)

    # ------------------------------------------------------------------ positioning

    @property
    def _numbered_in_order(self) -> bool:
        """Frame times come from their order (numbered by _pull, or AVI DTS), not from their own
        pts: every frame must then be decoded for the numbering to hold."""
        return self._synthetic_pts or self._pts_from_dts

    def _set_keyonly(self, keyonly: bool) -> None:
        if keyonly != self._keyonly:
            self._keyonly = keyonly
            # Frames numbered by _pull (no timestamps) must all be decoded to be numbered right:
            # then keyframe mode only filters (in _pull); a skipping decoder gave a raw H.264
            # stream's keyframes at 0, 40, 80 … ms instead of 0, 1.2, 2.4 … s.
            self._skip_state = "NONKEY" if keyonly and not self._numbered_in_order else "DEFAULT"
            self._codec.skip_frame = self._skip_state
            self._anchored = False  # frames in flight were decoded under the other mode

    def _should_seek(self, target: int) -> bool:
        """Whether a seek reaches ``target`` cheaper than decoding forward from here."""
        if not self._anchored or self._it is None:
            return True
        if self._prev is not None and self._prev.pts is not None and target < self._prev.pts:
            return True  # going backwards
        cur = self._last_pulled_pts
        if cur is None or target <= cur or self._no_timestamps:
            return False  # (a raw stream's seek is a rewind to its start: see _seek)
        if self._key_ts:
            # Seek only when the target's keyframe is ahead of what has been decoded already.
            key = self._keyframe_before(target)
            return key is not None and key > cur
        gop = self._gop_ticks or round(Fraction(2) / self.time_base)
        return target - cur > gop

    def _advance_to(self, target: int) -> av.VideoFrame | None:
        """Consume frames while the next one's pts ≤ target; return the last consumed."""
        budget = self._budget_frames()
        if budget is not None:
            self._check_budget(target, budget)
        start = self._pulled
        self._skip_target = target
        try:
            while True:
                if budget is not None and self._pulled - start > budget:
                    self._over_budget(target, None, self._pulled - start, budget, counted=True)
                frame = self._pull()
                if frame is None:
                    break
                if _pts(frame) > target:
                    self._pending.appendleft(frame)
                    break
                self._prev = frame
        finally:
            self._skip_target = None
        return self._prev

    def _budget_frames(self) -> int | None:
        """The decode budget for one requested frame at this picture size; None: no budget.

        ``decode_budget_frames`` counts 1080p frames: decoding costs about in proportion to the
        pixels, so a larger picture gets proportionally fewer (4K: a quarter), a smaller one no
        more (decoding tiny frames still costs per frame). Keyframe requests decode keyframes only.
        """
        budget = self._decode_budget
        if budget is None or (self._keyonly and not self._numbered_in_order):
            return None
        pixels = self.coded_width * self.coded_height
        if pixels > _BUDGET_REFERENCE_PIXELS:
            budget = max(1, budget * _BUDGET_REFERENCE_PIXELS // pixels)
        return budget

    def _check_budget(self, target: int, budget: int) -> None:
        """Before decoding towards ``target``: refuse when the index shows more frames than ``budget``
        between the decoder's position (after a seek: the keyframe it landed on) and ``target``.

        Only containers with a per-packet index (MP4/MOV/AVI) can tell; the others (Matroska cues
        list keyframes only, MPEG-TS and raw streams have none) are bounded in :meth:`_advance_to`
        by counting the frames as they decode. The count comes from the index, not from the
        duration, so a target past the real end costs no more than the frames that exist.
        """
        cur = self._last_pulled_pts
        if cur is None or target <= cur or self._index_entries <= len(self._key_ts):
            return
        try:
            entries = self._stream.index_entries
            lo = bisect.bisect_right(entries, cur - self._dts_shift, key=_entry_ts)
            hi = bisect.bisect_right(entries, target, key=_entry_ts, lo=lo)
        except _INDEX_ERRORS:
            return
        if hi - lo > budget:
            self._over_budget(target, cur, hi - lo, budget, counted=False)

    def _over_budget(
        self, target: int, start: int | None, frames: int, budget: int, *, counted: bool
    ) -> NoReturn:
        at = float((target - self.start_pts) * self.time_base)
        scaled = (
            f" for this {self.coded_width}x{self.coded_height} picture"
            if self._decode_budget is not None and budget != self._decode_budget
            else ""
        )
        if counted:
            what = f"decoding towards the frame at {at:.3f} s passed {frames} frames"
        else:
            key = float((max(start or 0, self.start_pts) - self.start_pts) * self.time_base)
            what = f"the frame at {at:.3f} s is {frames} frames after the keyframe at {key:.3f} s"
        raise DecodeBudgetExceeded(
            f"{what}: more than the decode budget of {budget} frames{scaled} (DECODE_BUDGET_FRAMES). "
            "Ask for the keyframe before it instead (m_fast), or re-encode the video with keyframes "
            "more often"
        )

    def _prefetch_for(self, target: int) -> None:
        """Range-read sources: fetch the bytes from ``target``'s keyframe to ``target`` in one request.

        Without it the reader fetches them as the demuxer asks, one block (with read-ahead: two) per
        request: 5 round trips to S3 for 4 s of 14 Mbit/s video. The span comes from the container's
        per-packet index (MP4/MOV/AVI; Matroska cues list keyframes only, which would mean whole
        GOPs); it ends past the target by the reorder delay and two frames, so that the frame after
        the target (which tells that the target is the last one at or before t) is in it too. Only
        a hint: the reader caps it, and a seek that lands elsewhere simply reads on as before.
        """
        prefetch = getattr(self._source, "prefetch", None)
        if not callable(prefetch) or self._index_entries <= len(self._key_ts):
            return
        i = self._key_index(target)
        if i < 0:
            return
        try:
            # index_entries is a lazy sequence in DTS order: bisect reads a few entries, not all.
            entries = self._stream.index_entries
            lo = bisect.bisect_left(entries, self._key_ts[i], key=_entry_ts)
            end_ts = target + self._dts_shift + 2 * self._interval_ticks
            hi = bisect.bisect_right(entries, end_ts, key=_entry_ts, lo=lo)
            span = [entries[j] for j in range(lo, hi)]
        except _INDEX_ERRORS:
            return
        if span:
            prefetch(min(e.pos for e in span), max(e.pos + e.size for e in span))

    def _seek_and_anchor(self, target: int) -> None:
        """Seek so that the decoder is positioned at or before ``target``, backing off as needed."""
        self._prefetch_for(target)
        lowest = self._lowest_ts()
        # First guess: the target itself (MP4/MOV/MKV seek by presentation time, see the module
        # docstring); demuxers that seek by DTS land late there once, then the shifted aim is used.
        seek_to = target - (self._dts_shift if self._seek_by_dts else 0)
        step = max(self._gop_ticks or 0, round(Fraction(1) / self.time_base), 1)
        # MPEG-TS bisects on timestamps and can land a GOP late even for a target just below its
        # first timestamp; far below the start it reliably rewinds to the first packet.
        rewind = lowest - max(step, round(Fraction(10) / self.time_base))
        lead_in = self._needs_lead_in
        for _attempt in range(_MAX_SEEK_ATTEMPTS):
            at_start = seek_to < lowest
            self._seek(rewind if at_start else seek_to)
            first = self._first_clean()
            if first is not None and (_pts(first) <= target or _pts(first) <= self.start_pts):
                if _pts(first) <= self.start_pts:
                    self._read_from_start = True
                elif lead_in and not at_start:
                    # Land at least a second earlier and decode up to here: see _needs_lead_in.
                    lead_in = False
                    seek_to = _pts(first) - step
                    continue
                self._anchored = True
                return
            if at_start:
                break
            if self._dts_shift and not self._seek_by_dts:
                # Landed late by (up to) the reorder delay: this demuxer seeks by DTS.
                self._seek_by_dts = True
                seek_to = target - self._dts_shift
                continue
            if first is not None:
                seek_to = min(seek_to, _pts(first) - self._dts_shift)
            seek_to -= step
            step *= 2
        # At the start of the stream (or out of attempts): whatever decodes first is the earliest
        # frame there is; an empty result means nothing is decodable.
        self._seek(rewind)
        if self._first_clean() is None and not (self._reopen() and self._first_clean() is not None):
            raise UndecodableMedia("no decodable video frame near the requested time")
        self._anchored = True

    @property
    def _needs_lead_in(self) -> bool:
        """Whether the frames right after a seek can carry times a sequential read does not give.

        MPEG program streams (``.mpg``, ``.vob``) carry a timestamp only for a frame that starts a
        PES packet; FFmpeg interpolates the others from the frames read before, and after a seek
        from what the seek guessed: the keyframe it lands on and a few frames after it came out up
        to three frames late (the last picture of a 1 s clip at 1000 ms instead of 960 ms; the
        frame shown at 600 ms was frame 12, not 15, in a clip of small pictures). A read that starts
        a second earlier has resynchronised on real timestamps by then, as a sequential read has.
        """
        return "mpeg" in (self._container.format.name or "").split(",")

    def _stamped_right(self, frame: av.VideoFrame) -> bool:
        """Whether ``frame``'s time is the one a sequential read gives it (see _needs_lead_in)."""
        if self._read_from_start or not self._needs_lead_in:
            return True
        return self._trusted_from is not None and _pts(frame) >= self._trusted_from

    def _restamped(self, frame: av.VideoFrame | None, target: int) -> av.VideoFrame | None:
        """``frame``, the last one up to ``target``, with the time a sequential read gives it.

        When it lies in the GOP a seek landed in, its time may be a guess (see _needs_lead_in):
        land earlier, further back each time, and decode up to ``target`` again.
        """
        back = max(self._gop_ticks or 0, round(Fraction(1) / self.time_base), 1)
        for _attempt in range(_MAX_SEEK_ATTEMPTS):
            if frame is None or self._stamped_right(frame):
                break
            self._seek_and_anchor(min(_pts(frame), target) - back)
            frame = self._advance_to(target)
            back *= 2
        return frame

    def _frame_for(self, target: int, *, keyonly: bool) -> av.VideoFrame:
        self._set_keyonly(keyonly)
        if self._should_seek(target):
            self._seek_and_anchor(target)
        frame = self._restamped(self._advance_to(target), target)
        if frame is None:
            # Anchored at the stream start and the first frame is after the target: it is shown.
            frame = self._pull()
            if frame is None:
                raise UndecodableMedia("no decodable video frame near the requested time")
            self._prev = frame
        if not self._pending and self._eof:
            self._check_truncation(frame, target)
        return frame

    def _check_truncation(self, last: av.VideoFrame, target: int) -> None:
        """At EOF: refuse to present the last decodable frame of a truncated file as the answer."""
        expected_end = self.start_pts + self.duration_ms / 1000 / self.time_base
        if not self.duration_ms:
            return
        dur = max(int(last.duration or 0), self._interval_ticks)
        # Frames should exist up to min(target, end); allow the last frame's own duration twice.
        needed = min(Fraction(target), expected_end - 2 * dur)
        reached = _pts(last)
        if self._keyonly and self._read_end is not None:
            # Keyframe mode decodes keyframes only: the last one can lie any distance before the
            # end (one keyframe in a 5 s clip, every 25 s in surveillance footage), and no guessed
            # GOP length tells a valid file from a cut one. What the demuxer read does: every
            # packet up to min(target, end) was read, so no keyframe before the target is missing.
            reached = max(reached, self._read_end - dur)
        if reached + 2 * dur < needed:
            error = SourceEndsEarly(
                "the video ends early (truncated or corrupt): no frame decodes near "
                f"{float((needed - self.start_pts) * self.time_base):.3f} s"
            )
            indexed = self._indexed_end()
            error.truncated = indexed is not None and indexed > reached + max(
                4 * dur, round(Fraction(1, 5) / self.time_base)
            )
            raise error

    def _indexed_end(self) -> int | None:
        """The timestamp of the last packet the container's index lists (None without an index).

        Tells a cut file (the index names frames the data no longer holds) from a header that only
        claims a longer duration. Index timestamps are decode times, a few frames early at most.
        """
        if not self._index_entries:
            return None
        try:
            return max(int(e.timestamp) for e in self._stream.index_entries)
        except _AvError:
            return None

    def _target(self, time_ms: Fraction | int) -> int:
        if time_ms < 0:
            raise UndecodableMedia(f"negative time {time_ms} ms")
        exact = self.start_pts + Fraction(time_ms) / 1000 / self.time_base
        return math.floor(exact)  # pts are integers: pts ≤ exact ⇔ pts ≤ floor(exact)

    def _picked(self, frame: av.VideoFrame) -> Picked:
        self._check_read()  # never hand out a frame decoded after a failed read
        pts = _pts(frame) if frame.pts is not None else self.start_pts
        time_ms = max(Fraction(0), (pts - self.start_pts) * self.time_base * 1000)
        return Picked(frame=frame, pts=pts, time_ms=time_ms, key_frame=bool(frame.key_frame))

    # ------------------------------------------------------------------ public API

    def frame_at(self, time_ms: Fraction | int, *, exact: bool = True) -> Picked:
        """The frame shown at ``time_ms`` (``exact=False``: the keyframe at or before it).

        Past the end, the last frame. Raises :class:`UndecodableMedia` when nothing decodes there.
        """
        if self.is_cover_art:
            return self._picked(self._decode_cover())
        target = self._target(time_ms)
        try:
            frame = self._frame_for(target, keyonly=not exact)
            if not exact and _pts(frame) > target:
                # No keyframe at or before t is shown: an edit list (MP4 cut without re-encoding)
                # starts the presentation mid-GOP and hides its keyframe. The next keyframe would
                # be a frame after t; the frame shown at t is the nearest one that is not.
                frame = self._frame_for(target, keyonly=False)
            return self._picked(frame)
        except VidsnapError:
            self._check_read()
            raise
        except _AvError as exc:
            self._check_read()
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
        if self.is_cover_art:
            return None
        target = self._target(time_ms)
        try:
            self._frame_for(target, keyonly=not exact)
            frame = self._pull()
        except VidsnapError:
            raise
        except _AvError as exc:
            raise UndecodableMedia(f"cannot decode the video after {float(time_ms):.0f} ms: {exc}") from exc
        if frame is None:
            return None
        self._pending.appendleft(frame)
        return self._picked(frame).time_ms

    def runs(self, times_ms: Sequence[Fraction]) -> list[range]:
        """Split planned times into runs that independent decoders can serve in parallel.

        A run is a slice of ``times_ms`` (as a range of indexes) that one decoder serves going
        forward from one seek: a new run starts where the times go backwards or where the next
        time's keyframe lies after the previous time, which is exactly where :meth:`frames_at`
        seeks anyway, so splitting there costs no extra decoding. Media without a keyframe index,
        or whose frame times come from their decoding order, form one run.
        """
        n = len(times_ms)
        if n < 2 or not self._key_ts or self.is_cover_art or self._numbered_in_order:
            return [range(n)] if n else []
        bounds = [0]
        prev: int | None = None
        for i, t in enumerate(times_ms):
            target = self._target(t)
            key = self._keyframe_before(target)
            if prev is not None and (target < prev or (key is not None and key > prev)):
                bounds.append(i)
            prev = target
        bounds.append(n)
        return [range(a, b) for a, b in itertools.pairwise(bounds)]

    def run_cost(self, times_ms: Sequence[Fraction]) -> int:
        """Decoding work (in ticks of presentation time) to serve ``times_ms`` as one run."""
        last = self._target(times_ms[-1])
        key = self._keyframe_before(self._target(times_ms[0]))
        # A seek and its first keyframe cost about as much as a few frames of decoding.
        return max(0, last - (key if key is not None else last)) + 4 * self._interval_ticks

    def _key_index(self, target: int) -> int:
        """Position in ``_key_ts`` (index DTS) of the keyframe at or before ``target``; -1 if none."""
        return bisect.bisect_right(self._key_ts, target - self._dts_shift) - 1

    def _keyframe_before(self, target: int) -> int | None:
        """The presentation time (approximately: index DTS + reorder delay) of the keyframe at or
        before ``target``, from the index; None without one."""
        i = self._key_index(target)
        return self._key_ts[i] + self._dts_shift if i >= 0 else None

    @property
    def can_clone(self) -> bool:
        """Whether :meth:`clone` can work: a path, or a reader with ``clone()``, and frame times
        that do not depend on decoding from the start (see ``_numbered_in_order``)."""
        if self.is_cover_art or self._numbered_in_order:
            return False
        source = self._source
        return isinstance(source, str | os.PathLike) or callable(getattr(source, "clone", None))

    def clone(self, *, threads: int | None = None) -> Video | None:
        """Another Video on the same source, for decoding on another thread; None if impossible.

        The source is opened again (a path), or cloned (a reader with a ``clone()`` method, such as
        :class:`~vidsnap.core.blockio.BlockReader`: own position, shared block cache). What opening
        learnt (start time, rotation, duration, keyframe table, seek behaviour) is copied instead
        of being found again, so a clone costs one container open and no decoding. The clone is
        positioned nowhere: its first request seeks. ``threads`` caps its decoder's own threads
        (default: this video's), for when several decoders share the cores.
        """
        if not self.can_clone:
            return None
        source = self._source
        copy_source = source if isinstance(source, str | os.PathLike) else source.clone()  # type: ignore[attr-defined]
        owns = copy_source is not source
        guard = None if isinstance(copy_source, str | os.PathLike) else _ReadGuard(copy_source)
        try:
            container = _open(guard or copy_source, max_pixels=self._max_source_pixels)
        except BaseException:
            if owns:
                copy_source.close()  # type: ignore[union-attr]
            _raise_read_error(guard)
            raise
        other = object.__new__(Video)
        other.__dict__.update(self.__dict__)
        # Nothing of this video's decoding state may be shared: a clone that fails below is closed,
        # and closing ends its decode run and drops its frames (see close).
        other._it = None
        other._pending = collections.deque()
        other._prev = None
        other._cover = None
        if threads is not None:
            other._threads = max(1, threads)
        other._source = copy_source
        other._guard = guard
        other._owns_source = owns
        other._container = container
        try:
            other._stream = container.streams[self._stream.index]
        except _INDEX_ERRORS:
            other.close()
            return None
        other._codec = other._stream.codec_context
        other._configure_decoder()
        other._skip_state = "DEFAULT"
        other._keyonly = False
        other._skip_target = None
        other._forget_position()
        return other

    def every_frame(self, start_ms: Fraction = Fraction(0)) -> Iterator[Picked]:
        """The frame shown at ``start_ms`` and every frame after it, in presentation order."""
        if self.is_cover_art:
            yield self._picked(self._decode_cover())
            return
        first = self.frame_at(start_ms)
        yield first
        try:
            while True:
                frame = self._pull()
                if frame is None:
                    return
                self._prev = frame
                yield self._picked(frame)
        except _AvError as exc:
            raise UndecodableMedia(f"decoding failed: {exc}") from exc

    def keyframes(self, start_ms: Fraction = Fraction(0)) -> Iterator[Picked]:
        """Every keyframe whose time is ≥ ``start_ms``, in presentation order."""
        if self.is_cover_art:
            yield self._picked(self._decode_cover())
            return
        target = self._target(start_ms)
        try:
            if (
                self._key_ts
                and self._index_entries >= _HOP_MIN_GOP_PACKETS * len(self._key_ts)
                and not self._numbered_in_order
            ):
                yield from self._hop_keyframes(target)
                self._check_read()  # a failed read ends the hops early
                return
            self._set_keyonly(True)
            self._seek_and_anchor(target)
            last_pts: int | None = None
            while True:
                frame = self._pull()
                if frame is None:
                    return
                self._prev = frame
                pts = _pts(frame)
                if pts >= target and (last_pts is None or pts > last_pts):
                    last_pts = pts
                    yield self._picked(frame)
        except VidsnapError:
            raise
        except _AvError as exc:
            raise UndecodableMedia(f"decoding keyframes failed: {exc}") from exc

    def _hop_keyframes(self, target: int) -> Iterator[Picked]:
        """Keyframes via the index: seek to each, decode its one packet, drain the decoder."""
        self._set_keyonly(True)
        first = bisect.bisect_left(self._key_ts, target - self._dts_shift)
        # The keyframe just before may present at/after the target when DTS lags PTS.
        last_pts: int | None = None
        for ts in self._key_ts[max(0, first - 1) :]:
            # Aim at the keyframe's presentation time: demuxers seeking by PTS (MP4/MOV) land on
            # it, not on the keyframe before (which would mean demuxing a whole GOP of packets to
            # reach this one: the entire file for a keyframe job); those seeking by DTS land on
            # it too, the next keyframe being more than the reorder delay later.
            self._seek(ts + self._dts_shift)
            self._it = None
            frames: list[av.VideoFrame] = []
            try:
                for packet in self._container.demux(self._stream):
                    if packet.size == 0 or packet.dts is None or packet.dts < ts:
                        continue  # flush packet or a packet before the keyframe
                    frames.extend(packet.decode())
                    if packet.is_keyframe:
                        break
                frames.extend(self._codec.decode(None))
            except _AvError:
                continue
            self._anchored = False
            for frame in frames:
                if frame.pts is None:
                    continue
                pts = _pts(frame)
                if pts >= target and (last_pts is None or pts > last_pts):
                    last_pts = pts
                    yield self._picked(frame)

    def close(self) -> None:
        """Release the container, the decoder and its threads now (idempotent).

        A decoder's threads and picture pool live as long as PyAV's codec context object, and that
        is freed only when nothing refers to it. A Video refers to itself through its live decode
        run (a generator running one of its methods), so without this a closed Video, its codec
        context and the decoder's threads waited for the cyclic garbage collector: a busy server
        held hundreds of idle FFmpeg threads and gigabytes of pictures (issue 9). Closing ends the
        run, drops the frames held and every reference to the stream and codec context, then closes
        the container (which drops its streams): the decoder is freed on the spot. Frames already
        handed out stay valid (they hold their own picture buffers).
        """
        run, self._it = getattr(self, "_it", None), None
        if run is not None:
            with contextlib.suppress(Exception):
                run.close()  # type: ignore[attr-defined]
        self._pending = collections.deque()
        self._prev = None
        self._cover = None
        self._codec = None
        self._stream = None
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            with contextlib.suppress(*_AvError):
                container.close()
        if getattr(self, "_owns_source", False):
            self._owns_source = False
            self._source.close()  # type: ignore[union-attr]

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Opening a container, the picture-size limit checked before decoding, and the decoder's settings.

A failure to open is told apart here: a file that starts like a container we read but cannot be
opened is damaged (:class:`UndecodableMedia`), anything else is not media we read
(:class:`UnsupportedMedia`). A picture over the size limit is refused from what headers declare,
before FFmpeg allocates it (:class:`SourceTooLarge`; docs/LIMITS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import av

from vidsnap.core.decode.guard import AV_ERRORS, ReadGuard
from vidsnap.core.decode.threads import THREAD_TYPE_BULK, THREAD_TYPE_SINGLE
from vidsnap.core.errors import SourceTooLarge, UndecodableMedia, UnsupportedMedia

__all__ = [
    "DecoderSettings",
    "Source",
    "check_picture_size",
    "check_stream_size",
    "configure_decoder",
    "ffmpeg_max_pixels",
    "open_container",
    "picture_header",
    "read_head",
]

#: What a Video reads: a path, or a seekable binary file object (read through a ReadGuard).
Source = str | os.PathLike[str] | BinaryIO

# Probing: the default (5 MB / 5 s) reads far more than the stream parameters need for the
# containers we serve; a smaller probe keeps the first request on a range-read S3 object cheap.
_OPEN_OPTIONS = {"probesize": "2000000", "analyzeduration": "2000000"}

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type → samples per pixel (palette pictures decode to one byte per pixel).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: JPEG start-of-frame markers (SOF0..SOF15 without DHT, JPG and DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class DecoderSettings:
    """How a Video was asked to decode: fixed when it opens, shared by its clones (a clone may
    have fewer ``threads``)."""

    #: Prepared for long sequential runs (asynchronous jobs) rather than one-frame requests.
    bulk: bool
    #: The decoder's own threads (never 0, FFmpeg's cores + 1: see MAX_DECODER_THREADS).
    threads: int
    #: Pictures above this many pixels are refused (None: no limit).
    max_source_pixels: int | None
    #: Frames one requested frame may need decoded from its keyframe, in 1080p frames (None: any).
    decode_budget: int | None


def read_head(source: Source | ReadGuard, size: int) -> bytes:
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


def _sniff(source: Source | ReadGuard) -> str | None:
    """The container kind the first bytes announce, or None (never raises)."""
    head = read_head(source, 16)
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def open_container(source: Source | ReadGuard, *, max_pixels: int | None = None) -> Any:
    """Open an input container; map every failure to a vidsnap error.

    ``max_pixels`` is handed to the decoders that probing opens: FFmpeg decodes a still picture
    (PNG, JPEG, cover art) while probing, to learn its size, and would allocate a bomb's whole
    picture before vidsnap sees the size; above the limit it decodes nothing (the size stays 0).
    """
    target: Any = os.fspath(source) if isinstance(source, str | os.PathLike) else source
    options = dict(_OPEN_OPTIONS)
    if max_pixels is not None:
        options["max_pixels"] = str(ffmpeg_max_pixels(max_pixels))
    try:
        return av.open(target, mode="r", options=options)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise UnsupportedMedia(f"cannot open the source: {exc.strerror or exc}") from exc
    except AV_ERRORS as exc:
        kind = _sniff(source)
        if kind:
            raise UndecodableMedia(
                f"the source looks like {kind} but cannot be read (truncated or corrupt)"
            ) from exc
        raise UnsupportedMedia("not a media file vidsnap can read (unrecognised or empty)") from exc


def configure_decoder(container: Any, stream: Any, settings: DecoderSettings) -> None:
    """A Video's decoder settings (before the decoder opens), discarding the other streams (the
    demuxer then drops their packets early)."""
    for other in container.streams:
        if other is not stream:
            other.discard = av.stream.Discard.all
    codec = stream.codec_context
    codec.thread_type = THREAD_TYPE_BULK if settings.bulk else THREAD_TYPE_SINGLE
    codec.thread_count = settings.threads  # never 0 (FFmpeg's cores + 1): see MAX_DECODER_THREADS
    if settings.max_source_pixels is not None:
        # The decoder refuses pictures over the limit too: a stream whose picture grows
        # mid-stream (a new sequence header) cannot make it allocate a bomb.
        limit = ffmpeg_max_pixels(settings.max_source_pixels)
        codec.options = {**codec.options, "max_pixels": str(limit)}


def picture_header(data: bytes) -> tuple[int, int, int] | None:
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


def ffmpeg_max_pixels(limit: int) -> int:
    """The ``max_pixels`` FFmpeg is given for a source limit of ``limit`` pixels.

    FFmpeg checks its buffers' size, whose width is padded to its stride alignment (a 160×90
    H.264 picture counts as 192×90), so a picture right at the limit would fail to decode. The
    exact limit is vidsnap's own check (:func:`check_picture_size`); FFmpeg's, a quarter (at
    least a megapixel) above it, only stops what that check cannot see beforehand.
    """
    return limit + max(limit // 4, 1 << 20)


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} Mpx"


def check_picture_size(width: int, height: int, bits_per_pixel: int, limit: int) -> None:
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


def check_stream_size(container: Any, stream: Any, width: int, height: int, limit: int | None) -> None:
    """Refuse a stream whose declared picture exceeds ``limit`` pixels (before decoding).

    The size is the stream's (codec parameters, from headers or probing); the decoded format's
    bits per pixel count too. A still picture over the limit was not decoded while probing
    (see :func:`open_container`), so its stream has no size: its first packet's header tells it.
    """
    if limit is None:
        return
    if width > 0 and height > 0:
        try:
            fmt = stream.codec_context.format
            bits = int(fmt.padded_bits_per_pixel) if fmt is not None else 0
        except AV_ERRORS:
            bits = 0
        check_picture_size(width, height, bits, limit)
        return
    try:
        packet = next((p for p in container.demux(stream) if p.size), None)
    except AV_ERRORS:
        return
    declared = picture_header(bytes(packet)) if packet is not None else None
    if declared is not None:
        check_picture_size(*declared, limit)

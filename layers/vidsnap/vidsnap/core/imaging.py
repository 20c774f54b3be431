"""From a decoded frame to output image bytes: geometry, one swscale pass, encoders, contact sheets.

The pipeline is split in two so that the expensive part happens once and at the smallest size:

1. :func:`plan_geometry` (pure arithmetic, no media) turns the source's coded size, sample aspect
   ratio and display-matrix rotation plus an :class:`~vidsnap.core.plan.ImageSpec` into a
   :class:`Geometry`: the size to scale the *unrotated* decoded picture to, the rotation to apply
   afterwards, an optional centre-crop box, an optional pad canvas, and the final size.
2. :func:`render` does colour conversion *and* scaling in one swscale call
   (``frame.reformat(width, height, format="rgb24")``) straight to the output size, then rotates,
   crops or pads the already small RGB image with Pillow (cheap), then encodes it.

Converting a 4K frame to RGB at full size and resizing it afterwards would cost ~10x more time and
memory for the same picture, which matters on Lambda where CPU is billed per millisecond.

Rotation convention (verified against the ffmpeg 5.1 CLI, see ``tests/test_imaging.py``):
``rotation`` is the display-matrix angle in *counter-clockwise* degrees, as PyAV reports it in
``VideoFrame.rotation`` and writes it with ``VideoStream.set_display_rotation``. The picture to
show is the decoded picture rotated counter-clockwise by that angle. ffmpeg's autorotate uses
``theta = -rotation`` and transposes clockwise for ``theta == 90``: the same thing. A phone portrait
clip reports -90 (= 270): the decoded landscape picture is turned 90 degrees clockwise.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

import av
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image

if TYPE_CHECKING:
    from PIL import ImageFont

from vidsnap.core.decode import decoder_threads
from vidsnap.core.errors import EC_FORMAT, EC_HEIGHT, EC_WIDTH, BadRequest, TooLarge, UndecodableMedia
from vidsnap.core.plan import FORMATS, Format, ImageSpec

__all__ = [
    "MAX_ENCODER_SIDE",
    "MAX_SIDE",
    "SAME_SIZE_SUBSAMPLED_FLAGS",
    "SCALE_FLAGS",
    "Box",
    "Geometry",
    "contact_sheet",
    "encode",
    "plan_geometry",
    "render",
    "to_image",
]

#: Largest output side reachable by *upscaling*. A side may exceed it only when the source itself is
#: that large (an 8K source at its own size is fine; a 200 % of a 4K source is not).
MAX_SIDE = 4096

#: swscale flags for the single conversion pass. Measured on a 1080p yuv420p test pattern (2 cores):
#: to 640x360, BICUBIC 2.5 ms / 25.3 dB, AREA 1.1 ms / 23.9 dB, LANCZOS 3.7 ms / 25.6 dB, and
#: BICUBIC + ACCURATE_RND + FULL_CHR_H_INT 3.5 ms / 27.1 dB (PSNR against a Lanczos reference).
#: At 1:1 size the plain flags take swscale's fast path with nearest-neighbour chroma (blocky
#: colour edges, 34.9 dB); the accurate flags cost ~11 ms per 1080p frame and fix it. That is
#: small next to decoding and encoding, so one flag set is used for every size.
SCALE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

#: swscale flags when the picture keeps its size (no luma scaling) and the output format subsamples
#: chroma 4:2:0 again (JPEG, WebP, AVIF). Nearest-neighbour chroma + accurate rounding: the
#: encoder's 2×2 chroma averaging then gives back the source's chroma samples instead of a blurred
#: copy. Measured against ground-truth RGB pictures put through yuv420p (1080p, 2 cores):
#:                       smooth picture         detailed picture
#:   SCALE_FLAGS         10.7 ms  JPEG 43.95 dB  12.8 ms  JPEG 28.53 dB
#:   these flags          4.3 ms  JPEG 44.04 dB   6.3 ms  JPEG 29.06 dB
#:   plain BICUBIC        0.7 ms  JPEG 41.92 dB   0.6 ms  JPEG 28.97 dB (fast path, coarse rounding)
#: WebP and AVIF gain alike (+0.03..0.6 dB). PNG keeps 4:4:4, where SCALE_FLAGS is much better
#: (51.8 against 44.0 dB on the smooth picture), so PNG and every scaled output use SCALE_FLAGS.
SAME_SIZE_SUBSAMPLED_FLAGS = Interpolation.POINT | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
#: Output formats whose encoders subsample chroma 4:2:0 with vidsnap's settings (Pillow defaults).
_SUBSAMPLED_FORMATS = frozenset({"jpg", "webp", "avif"})

# Encoder settings, measured on this machine kind (1080p test pattern, 2 cores):
#   JPEG q90: 3.6 ms / 118 KiB (optimize=True: 6.5 ms, -11 %: not worth it on the hot path).
#   PNG level 2: 31 ms / 222 KiB (level 6: 45 ms / 206 KiB; levels 1-3 are all alike).
#   WebP q85 method 2: 40 ms / 62 KiB (method 0: 30 ms / 80 KiB; method 4: 84 ms / 59 KiB).
#   AVIF q75 speed 8: ~70-125 ms / 54 KiB (speed 10: 25-35 ms / 72 KiB; speed 6: 146 ms / 49 KiB).
JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 2
WEBP_QUALITY = 85
WEBP_METHOD = 2
AVIF_QUALITY = 75
AVIF_SPEED = 8

_BLACK = (0, 0, 0)

#: Largest side each encoder writes (libjpeg 65500; libwebp 16383; AVIF through libaom 65536);
#: PNG's limit (2³¹ − 1) is never reached. Checked while planning, so that a request the encoder
#: would refuse fails before decoding, with a clear 413 instead of an encoder exception.
MAX_ENCODER_SIDE: dict[str, int] = {"jpg": 65500, "webp": 16383, "avif": 65536}


class Box(NamedTuple):
    """A rectangle in pixels, Pillow style: ``left``/``top`` inclusive, ``right``/``bottom`` exclusive."""

    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class Geometry:
    """Everything needed to turn a decoded frame into the output image.

    Steps, in order (see :func:`to_image`):

    1. scale the *unrotated* decoded picture to ``scale_width`` × ``scale_height`` (one swscale
       pass, colour conversion included; the sample aspect ratio is absorbed here);
    2. rotate it counter-clockwise by ``rotation`` degrees (0, 90, 180 or 270);
    3. ``crop``: keep this box of the rotated picture (scale type ``crop``);
    4. ``pad``: paste the picture at this box of a black ``width`` × ``height`` canvas (``fill``).

    ``width`` × ``height`` is the final output size.
    """

    scale_width: int
    scale_height: int
    rotation: int
    crop: Box | None
    pad: Box | None
    width: int
    height: int


def _round(x: Fraction) -> int:
    """Round half up, at least 1 (Python's round() is banker's rounding, which is surprising here)."""
    return max(1, math.floor(x + Fraction(1, 2)))


def _normalise_rotation(rotation: int) -> int:
    """Any angle → 0/90/180/270 CCW; angles between right angles snap to the nearest one, as
    ffmpeg's autorotate only handles multiples of 90 degrees too."""
    return (round(rotation / 90) * 90) % 360


def plan_geometry(
    coded_width: int,
    coded_height: int,
    sar: Fraction,
    rotation: int,
    spec: ImageSpec,
    *,
    max_pixels: int | None = None,
) -> Geometry:
    """Plan how a ``coded_width`` × ``coded_height`` picture becomes the image ``spec`` asks for.

    ``sar`` is the sample (pixel) aspect ratio; 0 or negative means unknown and counts as 1.
    ``rotation`` is the display-matrix angle in counter-clockwise degrees (PyAV's
    ``VideoFrame.rotation``: -90 or 270 for a phone portrait clip).

    The source display size is ``coded_width × sar`` by ``coded_height``, then rotated; a sample
    aspect ratio stretches it to at most :data:`MAX_SIDE` per side (or the coded size along that
    side, when larger), both sides shrinking alike. ``spec.ar``
    may add a 90° clockwise turn (``h``: force portrait, ``w``: force landscape); sizes in ``spec``
    apply to that final orientation. Sizes are rounded half up, never below 1.

    Raises :class:`~vidsnap.core.errors.TooLarge` when the output has more than ``max_pixels`` pixels,
    or more than the format's encoder can write per side (:data:`MAX_ENCODER_SIDE`),
    :class:`~vidsnap.core.errors.BadRequest` for an upscale beyond :data:`MAX_SIDE` px per side (compared
    with the coded pixels along that side), and
    :class:`~vidsnap.core.errors.UndecodableMedia` for a source without a usable size.

    Plan with the decoded frame's own ``width``/``height`` when they may differ from the stream's
    (mid-stream resolution changes): it is cheap.
    """
    if coded_width <= 0 or coded_height <= 0:
        raise UndecodableMedia(f"the video has no usable picture size ({coded_width}x{coded_height})")
    if spec.width < 0 or spec.height < 0:
        raise BadRequest(
            f"negative output size {spec.width}x{spec.height}", param="w" if spec.width < 0 else "h"
        )
    sar = Fraction(sar) if sar and sar > 0 else Fraction(1)

    rot = _normalise_rotation(rotation)
    # Display size before and after the display matrix, kept exact so derived sizes are not
    # skewed by an early rounding (720x576 at SAR 64:45 is exactly 1024x576).
    dw, dh = Fraction(coded_width) * sar, Fraction(coded_height)
    # The coded pixels along each display side: what the upscale guard compares with (a sample
    # aspect ratio stretches a side without adding picture to it).
    cw, ch = coded_width, coded_height
    if rot in (90, 270):
        dw, dh = dh, dw
        cw, ch = ch, cw
    # A sample aspect ratio may only stretch the display size up to MAX_SIDE per side (or the
    # coded size, when larger): 640x64 at SAR 150:1 would otherwise be shown 96000x64, an
    # upscale nobody asked for. The aspect ratio is kept: both sides shrink alike.
    shrink = min(Fraction(1), Fraction(max(MAX_SIDE, cw)) / dw, Fraction(max(MAX_SIDE, ch)) / dh)
    dw, dh = dw * shrink, dh * shrink
    # ar: one more quarter turn, clockwise (= 270 CCW), after the display matrix.
    if (spec.ar == "h" and dw > dh) or (spec.ar == "w" and dh > dw):
        rot = (rot + 270) % 360
        dw, dh = dh, dw
        cw, ch = ch, cw

    crop: Box | None = None
    pad: Box | None = None
    if spec.width == 0 and spec.height == 0:
        params = ("pw", "ph")
        sw, sh = _round(dw * Fraction(spec.pw) / 100), _round(dh * Fraction(spec.ph) / 100)
        out_w, out_h = sw, sh
    elif spec.width == 0 or spec.height == 0:
        params = ("w", "w") if spec.width else ("h", "h")
        if spec.width:
            sw, sh = spec.width, _round(spec.width * dh / dw)
        else:
            sw, sh = _round(spec.height * dw / dh), spec.height
        out_w, out_h = sw, sh
    else:
        params = ("w", "h")
        box_w, box_h = spec.width, spec.height
        if spec.scale_type == "stretch":
            sw, sh = box_w, box_h
            out_w, out_h = sw, sh
        elif spec.scale_type == "crop":
            # Cover the box: the side with the larger ratio is exact, the other one overflows.
            s = max(Fraction(box_w) / dw, Fraction(box_h) / dh)
            sw, sh = max(box_w, _round(dw * s)), max(box_h, _round(dh * s))
            left, top = (sw - box_w) // 2, (sh - box_h) // 2
            if (sw, sh) != (box_w, box_h):
                crop = Box(left, top, left + box_w, top + box_h)
            out_w, out_h = box_w, box_h
        elif spec.scale_type in ("fill", "fit"):
            s = min(Fraction(box_w) / dw, Fraction(box_h) / dh)
            sw, sh = min(box_w, _round(dw * s)), min(box_h, _round(dh * s))
            if spec.scale_type == "fill":
                left, top = (box_w - sw) // 2, (box_h - sh) // 2
                if (sw, sh) != (box_w, box_h):
                    pad = Box(left, top, left + sw, top + sh)
                out_w, out_h = box_w, box_h
            else:
                out_w, out_h = sw, sh
        else:
            raise BadRequest(
                f"scaletype {spec.scale_type!r} is not one of stretch, crop, fill, fit", param="scaletype"
            )

    # Refuse absurd upscales: a side beyond MAX_SIDE is fine only when the source has that many
    # coded pixels along it (no upscaling; a sample aspect ratio adds none); this also bounds the
    # intermediate picture of a crop.
    for side, source_side, param in ((sw, cw, params[0]), (sh, ch, params[1])):
        if side > MAX_SIDE and side > source_side:
            ec = EC_WIDTH if param == "w" else EC_HEIGHT if param == "h" else None
            raise BadRequest(
                f"{param}: scaling the {_round(dw)}x{_round(dh)} picture to {sw}x{sh} is an upscale beyond "
                f"{MAX_SIDE} px per side",
                param=param,
                ec=ec,
            )
    if max_pixels is not None and out_w * out_h > max_pixels:
        raise TooLarge(f"the output image {out_w}x{out_h} has more than the allowed {max_pixels} pixels")
    encoder_side = MAX_ENCODER_SIDE.get(spec.format)
    if encoder_side is not None and max(out_w, out_h) > encoder_side:
        raise TooLarge(
            f"the output image {out_w}x{out_h} is larger than {spec.format} can be encoded "
            f"({encoder_side} px per side); ask for a smaller size or png"
        )

    # The swscale target is in the decoded (unrotated) orientation.
    scale_w, scale_h = (sh, sw) if rot in (90, 270) else (sw, sh)
    return Geometry(scale_w, scale_h, rot, crop, pad, out_w, out_h)


def _has_alpha(fmt: av.VideoFormat) -> bool:
    """Whether a pixel format may carry transparency (cover art: RGBA or palette PNGs)."""
    return fmt.has_palette or any(c.is_alpha for c in fmt.components)


_TRANSPOSE = {
    90: Image.Transpose.ROTATE_90,  # Pillow's ROTATE_* are counter-clockwise, like our angles
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


_local = threading.local()
#: swscale output format for each Pillow mode that to_image produces.
_SWS_FORMATS = {"RGB": "rgb24", "RGBX": "rgb0", "RGBA": "rgba"}
#: swscale threads: one per core, at most decode.MAX_DECODER_THREADS. (Its automatic choice measured
#: slower here: 1080p POINT flags 4.9-5.2 ms against 3.6 ms with 2 threads; SCALE_FLAGS 10.5 against
#: 8.7 ms.) Bounded: each thread that converts keeps its context and its threads (see _reformatter);
#: one per core of a 64-core machine in each of a server's worker threads was thousands.
_SWS_THREADS = decoder_threads()


def _reformatter() -> VideoReformatter:
    """This thread's swscale context holder, reused across frames of the same size and format.

    ``frame.reformat`` builds a new SwsContext for every frame; reusing one saves its set-up
    (1080p to RGB on 2 cores: ~1.5 ms of ~12 ms per frame; identical pixels). Thread-local because
    an SwsContext must not be used by two threads at once.
    """
    reformatter: VideoReformatter | None = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter


def to_image(frame: av.VideoFrame, geometry: Geometry, *, fmt: Format | None = None) -> Image.Image:
    """Apply ``geometry`` to ``frame``: one swscale pass, then rotate/crop/pad the small image.

    Returns an ``RGB`` image (``RGBX`` when ``fmt`` is ``jpg``), or ``RGBA`` when the source carries
    real transparency (cover art).
    Colour conversion follows the frame's own colour metadata (matrix and range): full-range
    ``yuvj*`` and limited-range ``yuv*`` both give correct RGB; untagged frames use BT.601, as
    ffmpeg does. ``fmt``, the format the image will be encoded in, picks the swscale flags (see
    :data:`SAME_SIZE_SUBSAMPLED_FLAGS`); without it, :data:`SCALE_FLAGS`.
    """
    alpha = _has_alpha(frame.format)
    same_size = (geometry.scale_width, geometry.scale_height) == (frame.width, frame.height)
    if same_size and geometry.crop is None and fmt in _SUBSAMPLED_FORMATS:
        flags = SAME_SIZE_SUBSAMPLED_FLAGS
    else:
        flags = SCALE_FLAGS
    # For JPEG, 4-byte RGBX pixels: Pillow's own layout, so the swscale buffer is used as is (RGB24
    # costs an unpacking copy: 1080p ~5 ms, against ~1.5 ms more for swscale to write RGB0).
    mode = "RGBA" if alpha else "RGBX" if fmt == "jpg" else "RGB"
    try:
        if not alpha and _hdr_transfer(frame) is not None:
            image = _hdr_image(frame, geometry, flags)
        else:
            image = _sdr_image(frame, geometry, flags, mode)
    except (av.FFmpegError, ValueError) as exc:
        raise UndecodableMedia(f"cannot convert a {frame.format.name} frame to RGB: {exc}") from exc
    if alpha and image.getchannel("A").getextrema()[0] == 255:
        # Opaque after all (most palette PNGs): drop the channel so JPEG works and files stay small.
        image = image.convert("RGB")

    if geometry.rotation:
        image = image.transpose(_TRANSPOSE[geometry.rotation])
    if geometry.crop is not None:
        image = image.crop(geometry.crop)
    if geometry.pad is not None:
        canvas = Image.new(
            image.mode, (geometry.width, geometry.height), _BLACK + ((255,) if image.mode == "RGBA" else ())
        )
        canvas.paste(image, (geometry.pad.left, geometry.pad.top))
        image = canvas
    return image


#: FFmpeg's transfer characteristics that are tone-mapped (SMPTE ST 2084 PQ, ARIB STD-B67 HLG):
#: the numbers of :data:`vidsnap.core.tonemap.TRANSFERS`, here so that SDR frames need no numpy.
_HDR_TRANSFERS = frozenset({16, 18})


def _hdr_transfer(frame: av.VideoFrame) -> int | None:
    """The frame's HDR transfer (PQ or HLG), or None for SDR (and frames that cannot tell)."""
    try:
        trc = int(frame.color_trc)
    except (AttributeError, TypeError, ValueError):
        return None
    return trc if trc in _HDR_TRANSFERS else None


def _hdr_image(frame: av.VideoFrame, geometry: Geometry, flags: Interpolation) -> Image.Image:
    """An HDR frame at the output size, tone-mapped to SDR BT.709 (:mod:`vidsnap.core.tonemap`).

    swscale scales it straight to 16-bit RGB (its own matrix, BT.2020, and range): tone mapping then
    costs what the output's pixels cost, not the source's.
    """
    import numpy as np  # HDR only: SDR snapshots never import numpy

    from vidsnap.core.tonemap import tone_map

    transfer = _hdr_transfer(frame)
    assert transfer is not None
    scaled = _reformatter().reformat(
        frame,
        width=geometry.scale_width,
        height=geometry.scale_height,
        format="rgb48le",
        interpolation=flags,
        threads=_SWS_THREADS,
    )
    plane = scaled.planes[0]
    w, h = scaled.width, scaled.height
    rows = np.frombuffer(memoryview(plane), dtype=np.uint16).reshape(h, plane.line_size // 2)
    sdr = tone_map(rows[:, : 3 * w].reshape(h, w, 3), transfer)
    return Image.frombuffer("RGB", (w, h), sdr.tobytes(), "raw", "RGB", 0, 1)


def _sdr_image(frame: av.VideoFrame, geometry: Geometry, flags: Interpolation, mode: str) -> Image.Image:
    """One swscale pass straight to the Pillow mode's pixels, at the output size."""
    scaled = _reformatter().reformat(
        frame,
        width=geometry.scale_width,
        height=geometry.scale_height,
        format=_SWS_FORMATS[mode],
        interpolation=flags,
        threads=_SWS_THREADS,
    )
    # Straight from the swscale buffer into Pillow (honouring the row stride): no numpy, whose
    # import alone costs ~100 ms of a one-snapshot CLI run. RGBX/RGBA images map the buffer
    # (read-only, keeping the frame alive); operations below return new images.
    plane = scaled.planes[0]
    size = (scaled.width, scaled.height)
    # VideoPlane exposes the buffer protocol; Pillow's stubs only name bytes and array types.
    return Image.frombuffer(mode, size, plane, "raw", mode, plane.line_size, 1)  # type: ignore[arg-type]


def encode(image: Image.Image, fmt: Format) -> bytes:
    """Encode a Pillow image as ``jpg``, ``png``, ``webp`` or ``avif`` with vidsnap's fast settings.

    Transparency is kept where the format has it; JPEG gets the picture flattened onto black
    (the colour used for padding too).
    """
    if fmt not in FORMATS:
        raise BadRequest(
            f"f: unsupported image format {fmt!r}; valid: {', '.join(FORMATS)}", param="f", ec=EC_FORMAT
        )
    if image.mode == "RGBX" and fmt != "jpg":
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBX", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    try:
        return _save(image, fmt)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        # Encoders refuse what plan_geometry did not foresee (sizes are checked there): never a 500.
        raise TooLarge(f"the {image.width}x{image.height} image cannot be encoded as {fmt}: {exc}") from exc


def _save(image: Image.Image, fmt: Format) -> bytes:
    out = io.BytesIO()
    if fmt == "jpg":
        if image.mode == "RGBA":
            flat = Image.new("RGB", image.size, _BLACK)
            flat.paste(image, mask=image.getchannel("A"))
            image = flat
        # optimize=False: Huffman optimisation costs ~80 % more time for ~10 % smaller files.
        image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    elif fmt == "png":
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "webp":
        image.save(out, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    else:
        image.save(out, format="AVIF", quality=AVIF_QUALITY, speed=AVIF_SPEED)
    return out.getvalue()


def render(frame: av.VideoFrame, geometry: Geometry, fmt: Format) -> bytes:
    """Turn a decoded frame into encoded image bytes of ``geometry.width`` × ``geometry.height``.

    Handles any pixel format swscale reads (8/10-bit YUV in limited or full range, gray, RGB,
    palette) with one conversion pass at the output size; see :func:`to_image` and :func:`encode`.
    """
    return encode(to_image(frame, geometry, fmt=fmt), fmt)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (FreeType builds), or its small bitmap font."""
    from PIL import ImageFont  # contact sheets only: keeps snapshot imports lean

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # very old Pillow or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(
    items: Sequence[tuple[bytes, str]],
    *,
    columns: int = 4,
    thumb_width: int = 320,
    fmt: Format = "png",
) -> bytes:
    """A grid of thumbnails, each captioned below (e.g. ``"t=11000 ms"``), encoded as ``fmt``.

    ``items`` are ``(image bytes, caption)`` pairs in any format Pillow reads (vidsnap's outputs).
    Each thumbnail is ``thumb_width`` px wide keeping its aspect ratio; rows are as tall as their
    tallest thumbnail. PNG by default, because captions stay crisp.
    """
    if not items:
        raise ValueError("contact_sheet needs at least one image")
    if columns < 1 or thumb_width < 1:
        raise ValueError(f"columns ({columns}) and thumb_width ({thumb_width}) must be positive")
    font_size = max(10, thumb_width // 20)
    font = _font(font_size)
    gap, label_h = 8, font_size + 8

    thumbs: list[tuple[Image.Image, str]] = []
    for data, caption in items:
        with Image.open(io.BytesIO(data)) as src:
            src.load()
            img = src.convert("RGB")
        height = max(1, round(img.height * thumb_width / img.width))
        thumbs.append(
            (img.resize((thumb_width, height), Image.Resampling.LANCZOS, reducing_gap=3.0), caption)
        )

    columns = min(columns, len(thumbs))
    rows = [thumbs[i : i + columns] for i in range(0, len(thumbs), columns)]
    row_heights = [max(t.height for t, _ in row) + label_h for row in rows]
    sheet_w = columns * thumb_width + (columns + 1) * gap
    sheet_h = sum(row_heights) + (len(rows) + 1) * gap
    sheet = Image.new("RGB", (sheet_w, sheet_h), (32, 32, 32))
    from PIL import ImageDraw  # contact sheets only

    draw = ImageDraw.Draw(sheet)
    y = gap
    for row, row_h in zip(rows, row_heights, strict=True):
        for col, (thumb, caption) in enumerate(row):
            x = gap + col * (thumb_width + gap)
            sheet.paste(thumb, (x, y))
            draw.text((x + 2, y + thumb.height + 3), caption, fill=(235, 235, 235), font=font)
        y += row_h + gap
    return encode(sheet, fmt)

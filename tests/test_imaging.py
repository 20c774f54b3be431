"""vidsnap.core.imaging: geometry planning (pure), rendering (pixel checks), encoders, contact sheet.

Media is synthesised in memory with ``av.VideoFrame.from_ndarray``; nothing here needs ffmpeg.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from vidsnap.core.errors import BadRequest, TooLarge, UndecodableMedia
from vidsnap.core.imaging import (
    MAX_SIDE,
    Box,
    Geometry,
    contact_sheet,
    encode,
    plan_geometry,
    render,
    to_image,
)
from vidsnap.core.plan import ImageSpec

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
BLACK = (0, 0, 0)
ONE = Fraction(1)


def spec(**kw: object) -> ImageSpec:
    return ImageSpec(**kw)  # type: ignore[arg-type]


def plan(cw: int, ch: int, sar: Fraction = ONE, rotation: int = 0, **kw: object) -> Geometry:
    return plan_geometry(cw, ch, sar, rotation, spec(**kw))


def size(g: Geometry) -> tuple[int, int]:
    return g.width, g.height


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def near(pixel: object, colour: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))  # type: ignore[call-overload]


# -- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, (1280, 720)),  # source display size
        ({"pw": Fraction(50), "ph": Fraction(50)}, (640, 360)),
        ({"pw": Fraction(50)}, (640, 720)),  # pw and ph are independent
        ({"pw": Fraction(1), "ph": Fraction(1)}, (13, 7)),  # 12.8 → 13, 7.2 → 7
        ({"width": 640}, (640, 360)),  # derived keeping the aspect ratio
        ({"height": 360}, (640, 360)),
        ({"height": 100}, (178, 100)),  # 177.78 rounds half up
        ({"width": 1}, (1, 1)),  # 0.5625 → 1 (never 0)
        ({"width": 640, "pw": Fraction(10)}, (640, 360)),  # pw ignored where w is set
    ],
)
def test_sizes_without_box(kw: dict[str, Any], expected: tuple[int, int]) -> None:
    g = plan(1280, 720, **kw)
    assert size(g) == expected
    assert (g.scale_width, g.scale_height) == expected
    assert g.rotation == 0
    assert g.crop is None
    assert g.pad is None


@pytest.mark.parametrize(
    ("scale_type", "scale", "crop", "pad", "final"),
    [
        ("stretch", (400, 400), None, None, (400, 400)),
        # cover: 400/720 wins → 711.1 x 400, centre 400 columns kept
        ("crop", (711, 400), Box(155, 0, 555, 400), None, (400, 400)),
        # fit inside: 400 x 225, centred on a 400x400 black canvas
        ("fill", (400, 225), None, Box(0, 87, 400, 312), (400, 400)),
        ("fit", (400, 225), None, None, (400, 225)),
    ],
)
def test_scale_types(
    scale_type: str, scale: tuple[int, int], crop: Box | None, pad: Box | None, final: tuple[int, int]
) -> None:
    g = plan(1280, 720, width=400, height=400, scale_type=scale_type)
    assert g == Geometry(scale[0], scale[1], 0, crop, pad, final[0], final[1])


@pytest.mark.parametrize(
    ("scale_type", "final"),
    [("stretch", (320, 180)), ("crop", (320, 180)), ("fill", (320, 180)), ("fit", (320, 180))],
)
def test_box_with_the_source_aspect_needs_no_crop_or_pad(scale_type: str, final: tuple[int, int]) -> None:
    g = plan(1280, 720, width=320, height=180, scale_type=scale_type)
    assert size(g) == final
    assert g.crop is None
    assert g.pad is None


def test_fit_of_a_portrait_box_keeps_the_aspect() -> None:
    g = plan(1920, 1080, width=500, height=1000, scale_type="fit")
    assert size(g) == (500, 281)
    g = plan(1920, 1080, width=500, height=1000, scale_type="fill")
    assert size(g) == (500, 1000)
    assert g.pad == Box(0, 359, 500, 640)
    g = plan(1920, 1080, width=500, height=1000, scale_type="crop")
    assert (g.scale_width, g.scale_height) == (1778, 1000)
    assert g.crop == Box(639, 0, 1139, 1000)


@pytest.mark.parametrize(
    ("sar", "display"),
    [(Fraction(16, 15), (768, 576)), (Fraction(64, 45), (1024, 576)), (Fraction(0), (720, 576))],
)
def test_sample_aspect_ratio(sar: Fraction, display: tuple[int, int]) -> None:
    g = plan(720, 576, sar)
    assert size(g) == display
    # SAR is absorbed by the one swscale pass: the scale size is the display size.
    assert (g.scale_width, g.scale_height) == display


def test_anamorphic_derived_sizes() -> None:
    assert size(plan(720, 576, Fraction(64, 45), width=512)) == (512, 288)
    assert size(plan(720, 576, Fraction(16, 15), height=288)) == (384, 288)
    g = plan(720, 576, Fraction(64, 45), width=300, height=300, scale_type="fill")
    assert g.pad == Box(0, 65, 300, 234)  # 300x169 (168.75) inside a square


@pytest.mark.parametrize(
    ("rotation", "normalised"), [(90, 90), (-90, 270), (270, 270), (-270, 90), (180, 180), (-180, 180)]
)
def test_rotation_swaps_display_size(rotation: int, normalised: int) -> None:
    g = plan(1280, 720, rotation=rotation)
    assert g.rotation == normalised
    if normalised == 180:
        assert size(g) == (1280, 720)
    else:
        assert size(g) == (720, 1280)
    # swscale always works on the unrotated decoded picture.
    assert (g.scale_width, g.scale_height) == (1280, 720)


def test_sizes_apply_to_the_rotated_picture() -> None:
    g = plan(1280, 720, rotation=-90, width=360)
    assert size(g) == (360, 640)
    assert (g.scale_width, g.scale_height) == (640, 360)
    g = plan(1920, 1080, rotation=90, width=300, height=300, scale_type="crop")
    assert (g.scale_width, g.scale_height) == (533, 300)  # unrotated: 533 wide, 300 high
    assert g.crop == Box(0, 116, 300, 416)  # in the rotated (portrait) picture


def test_rotation_snaps_to_right_angles() -> None:
    assert plan(64, 32, rotation=89).rotation == 90
    assert plan(64, 32, rotation=-44).rotation == 0
    assert plan(64, 32, rotation=360).rotation == 0


def test_rotation_and_sar_together() -> None:
    # 720x576 at 64:45 shows as 1024x576; turned a quarter it is 576x1024.
    g = plan(720, 576, Fraction(64, 45), rotation=-90, height=512)
    assert size(g) == (288, 512)
    assert (g.scale_width, g.scale_height) == (512, 288)


@pytest.mark.parametrize(
    ("rotation", "ar", "final", "total"),
    [
        (0, "auto", (1280, 720), 0),
        (0, "h", (720, 1280), 270),  # landscape forced to portrait: 90° clockwise
        (0, "w", (1280, 720), 0),  # already landscape
        (-90, "h", (720, 1280), 270),  # already portrait via the display matrix
        (-90, "w", (1280, 720), 180),  # the matrix's clockwise turn, then one more clockwise
        (90, "w", (1280, 720), 0),  # 90 CCW then 90 CW
        (180, "h", (720, 1280), 90),
    ],
)
def test_ar(rotation: int, ar: str, final: tuple[int, int], total: int) -> None:
    g = plan(1280, 720, rotation=rotation, ar=ar)
    assert size(g) == final
    assert g.rotation == total


def test_ar_sizes_apply_to_the_final_orientation() -> None:
    g = plan(1280, 720, ar="h", width=360)
    assert size(g) == (360, 640)
    assert (g.scale_width, g.scale_height) == (640, 360)
    g = plan(1280, 720, ar="h", width=100, height=200, scale_type="stretch")
    assert size(g) == (100, 200)
    assert (g.scale_width, g.scale_height) == (200, 100)


def test_square_source_is_never_turned_by_ar() -> None:
    assert plan(500, 500, ar="h").rotation == 0
    assert plan(500, 500, ar="w").rotation == 0


def test_max_pixels() -> None:
    assert size(plan_geometry(1280, 720, ONE, 0, ImageSpec(), max_pixels=1280 * 720)) == (1280, 720)
    with pytest.raises(TooLarge, match="1280x720"):
        plan_geometry(1280, 720, ONE, 0, ImageSpec(), max_pixels=1280 * 720 - 1)
    # The final size counts, not the source size.
    assert size(plan_geometry(7680, 4320, ONE, 0, ImageSpec(width=640), max_pixels=640 * 360)) == (640, 360)
    with pytest.raises(TooLarge):
        plan_geometry(7680, 4320, ONE, 0, ImageSpec(), max_pixels=4096 * 4096)


def test_no_absurd_upscales() -> None:
    # 8K at its own size is not an upscale.
    assert size(plan(7680, 4320)) == (7680, 4320)
    assert size(plan(1920, 1080, pw=Fraction(200), ph=Fraction(200))) == (3840, 2160)
    with pytest.raises(BadRequest) as err:
        plan(4096, 2160, pw=Fraction(200), ph=Fraction(200))
    assert err.value.param == "pw"
    with pytest.raises(BadRequest) as err:
        plan(1080, 1920, width=MAX_SIDE)  # derived height 7282
    assert err.value.param == "w"
    assert err.value.ec == "0053-00000104"
    with pytest.raises(BadRequest):
        plan(1920, 1080, width=32, height=4096, scale_type="crop")  # cover would be 7282 wide
    assert size(plan(1920, 1080, width=4096, height=2304)) == (4096, 2304)


def test_unusable_source_size() -> None:
    with pytest.raises(UndecodableMedia):
        plan(0, 720)


# -- rendering ----------------------------------------------------------------------------------


def corner_frame(fmt: str = "yuv420p") -> av.VideoFrame:
    """64x32: red top-left and green top-right 8x8 squares on grey."""
    img = np.full((32, 64, 3), 128, np.uint8)
    img[:8, :8] = RED
    img[:8, -8:] = GREEN
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    return frame if fmt == "rgb24" else frame.reformat(format=fmt)


def colour_at(img: Image.Image, fx: float, fy: float) -> tuple[int, ...]:
    """The pixel at fractions (fx, fy) of the image."""
    px = img.convert("RGB").getpixel((int(fx * (img.width - 1)), int(fy * (img.height - 1))))
    assert isinstance(px, tuple)
    return px


# Where the red (top-left) and green (top-right) squares of a 64x32 picture end up, per rotation.
# Measured with the ffmpeg 5.1 CLI (autorotate) on MP4s written by PyAV's
# set_display_rotation(deg): rotation 90 → 32x64 picture, red bottom-left, green top-left (a
# counter-clockwise turn); -90 → red top-right, green bottom-right; 180 → red bottom-right,
# green bottom-left. This table encodes that observation so the tests do not need ffmpeg.
FFMPEG_AUTOROTATE = {
    0: ((64, 32), (0.05, 0.05), (0.95, 0.05)),
    90: ((32, 64), (0.05, 0.95), (0.05, 0.05)),
    -90: ((32, 64), (0.95, 0.05), (0.95, 0.95)),
    270: ((32, 64), (0.95, 0.05), (0.95, 0.95)),
    180: ((64, 32), (0.95, 0.95), (0.05, 0.95)),
}


@pytest.mark.parametrize("rotation", sorted(FFMPEG_AUTOROTATE))
def test_render_rotates_like_ffmpeg(rotation: int) -> None:
    expected_size, red_at, green_at = FFMPEG_AUTOROTATE[rotation]
    g = plan_geometry(64, 32, ONE, rotation, ImageSpec(format="png"))
    img = decode(render(corner_frame(), g, "png"))
    assert img.size == expected_size
    assert near(colour_at(img, *red_at), RED, 40)
    assert near(colour_at(img, *green_at), GREEN, 40)


def test_display_rotation_round_trip_through_pyav(tmp_path: Path) -> None:
    """PyAV's set_display_rotation(90) reads back as frame.rotation 90 and renders CCW."""
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        frame = corner_frame("rgb24")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with av.open(str(path)) as src:
        decoded = next(src.decode(video=0))
    assert decoded.rotation == 90
    g = plan_geometry(decoded.width, decoded.height, ONE, decoded.rotation, ImageSpec())
    img = decode(render(decoded, g, "png"))
    assert img.size == (32, 64)
    assert near(colour_at(img, 0.05, 0.95), RED, 60)
    assert near(colour_at(img, 0.05, 0.05), GREEN, 60)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="optional cross-check against the ffmpeg CLI")
@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_matches_ffmpeg_cli_when_available(tmp_path: Path, degrees: int) -> None:
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(degrees)
        frame = corner_frame("rgb24")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    png = tmp_path / "ffmpeg.png"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(path), "-frames:v", "1", str(png)], check=True
    )
    theirs = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    with av.open(str(path)) as src:
        decoded = next(src.decode(video=0))
    g = plan_geometry(decoded.width, decoded.height, ONE, decoded.rotation, ImageSpec())
    ours = np.asarray(to_image(decoded, g), dtype=np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 4


def bands_frame(fmt: str = "yuv420p") -> av.VideoFrame:
    """160x90: red, green, blue vertical thirds (the middle third is 54 px wide)."""
    img = np.zeros((90, 160, 3), np.uint8)
    img[:, :53] = RED
    img[:, 53:107] = GREEN
    img[:, 107:] = BLUE
    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=fmt)


def test_fill_pads_with_black_bars() -> None:
    g = plan_geometry(160, 90, ONE, 0, ImageSpec(width=100, height=100, scale_type="fill"))
    img = decode(render(bands_frame(), g, "png"))
    assert img.size == (100, 100)
    assert img.mode == "RGB"
    # 100x56 picture at rows 22..77; black above and below.
    for y in (0, 10, 21, 79, 99):
        assert img.getpixel((50, y)) == BLACK
    assert near(colour_at(img, 0.5, 0.5), GREEN, 30)
    assert near(colour_at(img, 0.05, 0.5), RED, 30)
    assert near(colour_at(img, 0.95, 0.5), BLUE, 30)


def test_crop_keeps_the_centre() -> None:
    g = plan_geometry(160, 90, ONE, 0, ImageSpec(width=90, height=90, scale_type="crop"))
    img = decode(render(bands_frame(), g, "png"))
    assert img.size == (90, 90)
    # Columns 35..125 of the 160-wide picture: a little red, all the green, a little blue.
    assert near(colour_at(img, 0.5, 0.5), GREEN, 30)
    assert near(img.getpixel((2, 45)), RED, 30)  # type: ignore[arg-type]
    assert near(img.getpixel((87, 45)), BLUE, 30)  # type: ignore[arg-type]


def test_stretch_distorts_and_fit_shrinks() -> None:
    frame = bands_frame()
    img = decode(render(frame, plan_geometry(160, 90, ONE, 0, ImageSpec(width=30, height=90)), "png"))
    assert img.size == (30, 90)
    fit = plan_geometry(160, 90, ONE, 0, ImageSpec(width=100, height=100, scale_type="fit"))
    img = decode(render(frame, fit, "png"))
    assert img.size == (100, 56)
    assert near(colour_at(img, 0.5, 0.0), GREEN, 30)  # no bars


def test_anamorphic_render_is_widened() -> None:
    frame = av.VideoFrame.from_ndarray(np.full((576, 720, 3), 200, np.uint8), format="rgb24")
    g = plan_geometry(720, 576, Fraction(64, 45), 0, ImageSpec(width=256))
    assert decode(render(frame.reformat(format="yuv420p"), g, "jpg")).size == (256, 144)


# -- colour -------------------------------------------------------------------------------------


def yuv_frame(fmt: str, y: int, u: int, v: int, *, dtype: type = np.uint8) -> av.VideoFrame:
    h = w = 16
    planes: list[np.ndarray[Any, Any]] = [
        np.full((h, w), y, dtype),
        np.full((h // 4, w), u, dtype),
        np.full((h // 4, w), v, dtype),
    ]
    return av.VideoFrame.from_ndarray(np.concatenate(planes), format=fmt)


def rgb_of(frame: av.VideoFrame) -> tuple[int, ...]:
    g = plan_geometry(frame.width, frame.height, ONE, 0, ImageSpec(width=8))
    img = to_image(frame, g)
    px = img.getpixel((img.width // 2, img.height // 2))
    assert isinstance(px, tuple)
    return px


def test_limited_range_yuv() -> None:
    assert near(rgb_of(yuv_frame("yuv420p", 81, 90, 240)), RED, 4)  # BT.601 limited red
    assert near(rgb_of(yuv_frame("yuv420p", 16, 128, 128)), BLACK, 2)
    assert near(rgb_of(yuv_frame("yuv420p", 235, 128, 128)), (255, 255, 255), 2)


def test_full_range_yuv() -> None:
    assert near(rgb_of(yuv_frame("yuvj420p", 76, 85, 255)), RED, 4)  # BT.601 full-range red
    # Y=16 is black in limited range but dark grey in full range: a range mix-up shows here.
    assert near(rgb_of(yuv_frame("yuvj420p", 16, 128, 128)), (16, 16, 16), 2)
    tagged = yuv_frame("yuv420p", 16, 128, 128)
    tagged.color_range = 2  # AVCOL_RANGE_JPEG on a plain yuv420p frame (newer decoders do this)
    assert near(rgb_of(tagged), (16, 16, 16), 2)


def test_colour_matrix_follows_the_frame_tag() -> None:
    frame = yuv_frame("yuv420p", 63, 102, 240)  # BT.709 limited red
    frame.colorspace = 1  # AVCOL_SPC_BT709
    assert near(rgb_of(frame), RED, 4)


def test_10_bit_input() -> None:
    frame = yuv_frame("yuv420p10le", 81 * 4, 90 * 4, 240 * 4, dtype=np.uint16)
    assert near(rgb_of(frame), RED, 5)
    big = av.VideoFrame.from_ndarray(np.full((90, 160, 3), 50, np.uint8)).reformat(format="yuv420p10le")
    g = plan_geometry(160, 90, ONE, -90, ImageSpec(width=45))
    img = decode(render(big, g, "png"))
    assert img.size == (45, 80)
    assert img.mode == "RGB"
    assert near(colour_at(img, 0.5, 0.5), (50, 50, 50), 3)


def test_gray_and_rgb_inputs() -> None:
    gray = av.VideoFrame.from_ndarray(np.full((20, 40), 200, np.uint8), format="gray")
    assert near(rgb_of(gray), (200, 200, 200), 1)
    rgb = av.VideoFrame.from_ndarray(np.full((20, 40, 3), (10, 120, 230), np.uint8), format="rgb24")
    assert near(rgb_of(rgb), (10, 120, 230), 1)


def pal8_frame(alpha: int) -> av.VideoFrame:
    index = np.zeros((20, 40), np.uint8)
    index[:, 20:] = 1
    palette = np.zeros((256, 4), np.uint8)  # ARGB
    palette[0] = (255, 255, 0, 0)  # opaque red
    palette[1] = (alpha, 0, 0, 255)  # blue, maybe transparent
    return av.VideoFrame.from_ndarray((index, palette), format="pal8")  # type: ignore[arg-type]


def test_pal8_cover_art() -> None:
    g = plan_geometry(40, 20, ONE, 0, ImageSpec())
    img = to_image(pal8_frame(255), g)
    assert img.mode == "RGB"  # opaque palette: no alpha channel
    assert near(colour_at(img, 0.1, 0.5), RED, 2)
    assert near(colour_at(img, 0.9, 0.5), BLUE, 2)


def test_transparent_cover_art() -> None:
    g = plan_geometry(40, 20, ONE, 0, ImageSpec(width=40, height=40, scale_type="fill"))
    img = decode(render(pal8_frame(0), g, "png"))
    assert img.mode == "RGBA"
    assert img.size == (40, 40)
    assert img.getpixel((35, 20))[3] == 0  # type: ignore[index]
    assert img.getpixel((20, 2)) == (0, 0, 0, 255)  # padding is opaque black
    jpg = decode(render(pal8_frame(0), g, "jpg"))
    assert jpg.mode == "RGB"
    assert near(jpg.getpixel((35, 20)), BLACK, 8)  # type: ignore[arg-type]  # flattened onto black


# -- encoders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("avif", "AVIF")]
)
def test_every_format_decodes_back(fmt: str, pil_format: str) -> None:
    g = plan_geometry(160, 90, ONE, 0, ImageSpec(width=67))  # odd sizes on purpose
    img = decode(render(bands_frame(), g, fmt))  # type: ignore[arg-type]
    assert img.format == pil_format
    assert img.size == (67, 38)
    assert img.mode == "RGB"
    assert near(colour_at(img.convert("RGB"), 0.5, 0.5), GREEN, 40)


def test_encode_modes_and_errors() -> None:
    gray = Image.new("L", (10, 10), 77)
    assert decode(encode(gray, "jpg")).mode == "L"
    palette = Image.new("P", (10, 10))
    assert decode(encode(palette, "png")).mode == "RGB"
    with pytest.raises(BadRequest) as err:
        encode(gray, "gif")  # type: ignore[arg-type]
    assert err.value.param == "f"


# -- contact sheet ------------------------------------------------------------------------------


def test_contact_sheet() -> None:
    frame = bands_frame()
    g = plan_geometry(160, 90, ONE, 0, ImageSpec())
    items = [(render(frame, g, "jpg"), f"t={i * 1000} ms") for i in range(5)]
    sheet = decode(contact_sheet(items, columns=4, thumb_width=64))
    assert sheet.format == "PNG"
    # 4 columns of 64 px plus 5 gaps of 8; two rows of 36 px thumbnails with captions.
    assert sheet.width == 4 * 64 + 5 * 8
    assert sheet.height > 2 * 36
    # The caption is drawn in light pixels below the first thumbnail.
    label = np.asarray(sheet.convert("L").crop((8, 8 + 36, 8 + 64, 8 + 36 + 18)))
    assert label.max() > 150
    jpg = decode(contact_sheet(items[:1], thumb_width=50, fmt="jpg"))
    assert jpg.format == "JPEG"
    assert jpg.width == 50 + 2 * 8


def test_contact_sheet_needs_items() -> None:
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([])

"""Synthesise the clips that posters, scene detection and HDR are tested and measured on (PyAV, numpy).

Each clip is made from RGB pictures computed here (no ffmpeg filters: PyAV has no lavfi sources),
so a test knows what every frame shows:

- :func:`make_fade_clip`: 3 s of black, a 1 s fade-in, then a detailed picture panning slowly;
- :func:`make_blur_clip`: a fast pan with strong motion blur, a short sharp still in the middle;
- :func:`make_flash_clip`: a detailed picture with camera flashes (frames blown out to white);
- :func:`make_shots_clip`: six visually distinct shots (colour bars, SMPTE bars, a fractal zoom,
  gradients, RGB bars, a navy field with a yellow box), with the cut times;
- :func:`make_hdr_clip`: 10-bit HEVC tagged PQ or HLG with BT.2020 primaries, of known patches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

__all__ = [
    "HDR_PATCHES",
    "Clip",
    "hdr_encode",
    "make_blur_clip",
    "make_fade_clip",
    "make_flash_clip",
    "make_hdr_clip",
    "make_shots_clip",
    "write_rgb",
]

RGB = npt.NDArray[np.uint8]
FloatPic = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Clip:
    """A synthesised clip: its path, frame rate, frame count, and where its good frames lie (s)."""

    path: str
    fps: int
    frames: int
    #: (start, end) seconds of the frames a person would choose as a poster.
    good: tuple[tuple[float, float], ...] = ()
    #: Times (s) of the first frame of each shot after the first.
    cuts: tuple[float, ...] = ()


def _texture(width: int, height: int, seed: int = 7) -> FloatPic:
    """A detailed colourful picture (0..1 RGB, twice the width so frames can pan across it)."""
    rng = np.random.default_rng(seed)
    w2 = 2 * width
    y, x = np.mgrid[0:height, 0:w2].astype(np.float32)
    pic = np.empty((height, w2, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.01, 0.05), rng.uniform(0.01, 0.05), rng.uniform(0, 6)
        pic[..., c] = 0.45 + 0.2 * np.sin(x * fx + ph) * np.cos(y * fy)
    scale = width / 320
    for _ in range(60):  # rectangles and discs with hard edges: the detail blur takes away
        cx, cy = rng.uniform(0, w2), rng.uniform(0, height)
        r = rng.uniform(6, 30) * scale
        colour = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        if rng.uniform() < 0.5:
            mask = (np.abs(x - cx) < r) & (np.abs(y - cy) < r * 0.6)
        else:
            mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        pic[mask] = colour
    stripes = (np.sin(x * 0.9 / scale) > 0).astype(np.float32) * 0.12  # fine detail
    pic += stripes[..., None] * (y < height / 4)[..., None]
    return np.clip(pic, 0, 1)


def _pan(tex: FloatPic, width: int, offset: float) -> FloatPic:
    o = int(offset) % (tex.shape[1] - width)
    return tex[:, o : o + width]


def _motion_blur(pic: FloatPic, length: int) -> FloatPic:
    """A horizontal box blur of ``length`` px: what a fast pan looks like at a slow shutter."""
    if length <= 1:
        return pic
    c = np.cumsum(np.pad(pic, ((0, 0), (length, 0), (0, 0)), mode="edge"), axis=1, dtype=np.float32)
    return ((c[:, length:] - c[:, :-length]) / length).astype(np.float32)


def _to_rgb(pic: FloatPic) -> RGB:
    return np.ascontiguousarray((np.clip(pic, 0, 1) * 255 + 0.5).astype(np.uint8))


def write_rgb(
    path: str | os.PathLike[str],
    frames: Iterator[RGB],
    *,
    size: tuple[int, int],
    fps: int,
    gop: int,
) -> int:
    """Encode RGB pictures (h×w×3, 8-bit) as H.264 (yuv420p) in MP4; returns the frame count."""
    count = 0
    with av.open(os.fspath(path), mode="w") as out:
        opts = {"preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        vs = out.add_stream("libx264", rate=fps, options=opts)
        assert isinstance(vs, av.VideoStream)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = count
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame))
            count += 1
        out.mux(vs.encode(None))
    return count


def make_fade_clip(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (320, 180), fps: int = 25, gop: int = 25
) -> Clip:
    width, height = size
    """3 s of black, a 1 s fade-in from black, then 4 s of a detailed picture panning slowly."""
    tex = _texture(width, height)
    n = 8 * fps

    def frames() -> Iterator[RGB]:
        for i in range(n):
            t = i / fps
            alpha = min(1.0, max(0.0, t - 3.0))
            yield _to_rgb(_pan(tex, width, i * width / 200) * alpha)

    count = write_rgb(path, frames(), size=size, fps=fps, gop=gop)
    return Clip(os.fspath(path), fps, count, good=((4.0, 8.0),))


def make_blur_clip(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (320, 180), fps: int = 25, gop: int = 25
) -> Clip:
    width, height = size
    """A fast, motion-blurred pan for 8 s, except a sharp still from 2.5 s to 3.5 s."""
    tex = _texture(width, height, seed=11)
    n = 8 * fps
    speed = width / 16  # px per frame: a fast pan
    blur = max(2, round(speed))

    def frames() -> Iterator[RGB]:
        for i in range(n):
            t = i / fps
            if 2.5 <= t < 3.5:
                yield _to_rgb(_pan(tex, width, 2.5 * fps * speed))
            else:
                yield _to_rgb(_motion_blur(_pan(tex, width + blur, i * speed), blur)[:, blur:])

    count = write_rgb(path, frames(), size=size, fps=fps, gop=gop)
    return Clip(os.fspath(path), fps, count, good=((2.5, 3.5),))


def make_flash_clip(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (320, 180), fps: int = 25, gop: int = 25
) -> Clip:
    width, height = size
    """A detailed picture panning slowly for 8 s, blown out to white by a flash every 0.7 s for
    0.3 s (the frames at 0.0-0.3, 0.7-1.0, 1.4-1.7, ... s)."""
    tex = _texture(width, height, seed=5)
    n = 8 * fps

    def frames() -> Iterator[RGB]:
        for i in range(n):
            pic = _pan(tex, width, i * width / 200)
            if (i % round(0.7 * fps)) < round(0.3 * fps):
                pic = pic * 0.3 + 0.9  # a flash: most of the picture clipped to white
            yield _to_rgb(pic)

    count = write_rgb(path, frames(), size=size, fps=fps, gop=gop)
    period, lit = round(0.7 * fps) / fps, round(0.3 * fps) / fps
    good = tuple((k * period + lit, (k + 1) * period) for k in range(math.ceil(8 / period)))
    return Clip(os.fspath(path), fps, count, good=good)


# ---------------------------------------------------------------------------------------------------
# six shots


def _colour_bars(w: int, h: int, _t: float) -> FloatPic:
    """Seven 75 % bars: white, yellow, cyan, green, magenta, red, blue."""
    bars = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1]], np.float32)
    idx = np.minimum(np.arange(w) * 7 // w, 6)
    return np.broadcast_to(bars[idx][None] * 0.75, (h, w, 3)).copy()


def _smpte_bars(w: int, h: int, t: float) -> FloatPic:
    """SMPTE-like bars: the colour bars' top two thirds, reversed blue bars, a pluge row below."""
    pic = _colour_bars(w, h, t)
    top = 2 * h // 3
    rev = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]], np.float32)
    idx = np.minimum(np.arange(w) * 7 // w, 6)
    pic[top : top + h // 12] = rev[idx][None] * 0.75
    pluge = np.zeros((w, 3), np.float32)
    pluge[: w // 6] = [0.0, 0.13, 0.3]
    pluge[w // 6 : w // 3] = 1.0
    pluge[w // 3 : w // 2] = [0.2, 0.0, 0.4]
    pic[top + h // 12 :] = pluge[None]
    return pic


def _fractal(w: int, h: int, t: float) -> FloatPic:
    """A Mandelbrot zoom (numpy, 40 iterations): the picture changes every frame, smoothly."""
    zoom = 1.5 * 0.5 ** (t * 0.8)
    cx, cy = -0.743643887, 0.131825904
    xs = np.linspace(cx - zoom * w / h, cx + zoom * w / h, w, dtype=np.float64)
    ys = np.linspace(cy - zoom, cy + zoom, h, dtype=np.float64)
    c = xs[None, :] + 1j * ys[:, None]
    z = np.zeros_like(c)
    count = np.zeros(c.shape, np.float32)
    for _ in range(40):
        inside = np.abs(z) <= 2
        z[inside] = z[inside] ** 2 + c[inside]
        count += inside
    v = count / 40
    return np.stack([v, v**0.5 * 0.8, 1 - v], axis=-1).astype(np.float32)


def _gradients(w: int, h: int, t: float) -> FloatPic:
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    shift = (t * 0.1) % 1
    planes = [np.broadcast_to((x + shift) % 1, (h, w)), np.broadcast_to(y, (h, w)), 1 - x * y]
    return np.stack(planes, axis=-1)


def _rgb_bars(w: int, h: int, _t: float) -> FloatPic:
    pic = np.zeros((h, w, 3), np.float32)
    for k in range(3):
        pic[k * h // 3 : (k + 1) * h // 3, :, k] = 1.0
    return pic


def _navy_box(w: int, h: int, t: float) -> FloatPic:
    """A navy field with a yellow box drifting right."""
    pic = np.empty((h, w, 3), np.float32)
    pic[:] = [0.0, 0.0, 0.5]
    x0 = int(w * (0.3 + 0.05 * t))
    pic[h // 3 : 2 * h // 3, x0 : x0 + w // 5] = [1.0, 1.0, 0.0]
    return pic


_SHOTS: tuple[Callable[[int, int, float], FloatPic], ...] = (
    _colour_bars,
    _navy_box,
    _smpte_bars,
    _fractal,
    _gradients,
    _rgb_bars,
)


def make_shots_clip(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (320, 180),
    fps: int = 25,
    shot_s: float = 2.0,
    gop: int = 250,
) -> Clip:
    """Six shots of ``shot_s`` seconds: colour bars, a navy field with a yellow box (right after the
    bars: their gray pictures are alike), SMPTE bars, a fractal zoom, gradients, RGB bars."""
    width, height = size
    per = round(shot_s * fps)

    def frames() -> Iterator[RGB]:
        for shot in _SHOTS:
            for i in range(per):
                yield _to_rgb(shot(width, height, i / fps))

    count = write_rgb(path, frames(), size=size, fps=fps, gop=gop)
    cuts = tuple(k * per / fps for k in range(1, len(_SHOTS)))
    return Clip(os.fspath(path), fps, count, cuts=cuts)


# ---------------------------------------------------------------------------------------------------
# HDR

#: Known patches of the HDR test clip: (name, linear BT.2020 RGB in cd/m², or None for the ramp).
HDR_PATCHES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("black", (0.0, 0.0, 0.0)),
    ("grey20", (20.0, 20.0, 20.0)),
    ("grey100", (100.0, 100.0, 100.0)),
    ("white203", (203.0, 203.0, 203.0)),
    ("white1000", (1000.0, 1000.0, 1000.0)),
    ("red", (120.0, 10.0, 10.0)),
    ("green", (10.0, 120.0, 10.0)),
    ("blue", (10.0, 10.0, 120.0)),
)


def _pq_oetf(nits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """SMPTE ST 2084 inverse EOTF: cd/m² (0..10000) → signal 0..1."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.clip(nits / 10000, 0, 1) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def _hlg_oetf(nits: npt.NDArray[np.float64], peak: float = 1000.0) -> npt.NDArray[np.float64]:
    """BT.2100 HLG for a ``peak`` cd/m² display: display light → signal 0..1, with the OOTF's system
    gamma 1.2 undone per component (as vidsnap's tone mapping applies it: README, posters)."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    scene = np.clip(nits / peak, 0, 1) ** (1 / 1.2)
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)


def hdr_encode(nits: npt.NDArray[np.float64], transfer: str) -> npt.NDArray[np.float64]:
    """Linear BT.2020 RGB in cd/m² → non-linear PQ (``pq``) or HLG (``hlg``) signal 0..1."""
    return _pq_oetf(nits) if transfer == "pq" else _hlg_oetf(nits)


def _yuv10(signal: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.uint16], ...]:
    """Non-linear R'G'B' 0..1 → 10-bit limited-range Y'CbCr planes (BT.2020 NCL), 4:2:0."""
    kr, kb = 0.2627, 0.0593
    r, g, b = signal[..., 0], signal[..., 1], signal[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    yq = np.round(64 + 876 * y).astype(np.uint16)

    def sub(p: npt.NDArray[np.float64]) -> npt.NDArray[np.uint16]:
        q = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4
        return np.round(512 + 896 * q).astype(np.uint16)

    return yq, sub(cb), sub(cr)


def hdr_patch_picture(width: int, height: int) -> npt.NDArray[np.float64]:
    """The HDR test picture in linear BT.2020 cd/m²: one column per patch of :data:`HDR_PATCHES`
    over the top half, a grey ramp 0..1000 cd/m² over the bottom half."""
    pic = np.zeros((height, width, 3), np.float64)
    n = len(HDR_PATCHES)
    for k, (_, rgb) in enumerate(HDR_PATCHES):
        pic[: height // 2, k * width // n : (k + 1) * width // n] = rgb
    ramp = np.linspace(0, 1000, width)
    pic[height // 2 :] = ramp[None, :, None]
    return pic


def make_hdr_clip(
    path: str | os.PathLike[str],
    *,
    transfer: str = "pq",
    size: tuple[int, int] = (320, 180),
    frames: int = 5,
    fps: int = 25,
) -> Clip:
    """10-bit HEVC (libx265, yuv420p10le) tagged BT.2020 / PQ or HLG / BT.2020 NCL, of the
    :func:`hdr_patch_picture` (values computed here, so a test knows what every pixel means)."""
    if transfer not in ("pq", "hlg"):
        raise ValueError(f"transfer must be pq or hlg, not {transfer!r}")
    width, height = size
    y, cb, cr = _yuv10(hdr_encode(hdr_patch_picture(width, height), transfer))
    trc = 16 if transfer == "pq" else 18  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67
    with av.open(os.fspath(path), mode="w") as out:
        params = "log-level=error:keyint=25:colorprim=bt2020:colormatrix=bt2020nc:range=limited"
        params += ":transfer=" + ("smpte2084" if transfer == "pq" else "arib-std-b67")
        vs = out.add_stream("libx265", rate=fps, options={"preset": "ultrafast", "x265-params": params})
        assert isinstance(vs, av.VideoStream)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p10le"
        ctx = vs.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 9, trc, 9, 1
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p10le")
            for plane, data in zip(frame.planes, (y, cb, cr), strict=True):
                rows = np.frombuffer(memoryview(plane), np.uint16).reshape(plane.height, -1)
                rows[:, : data.shape[1]] = data
            frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range = 9, trc, 9, 1
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return Clip(os.fspath(path), fps, frames)

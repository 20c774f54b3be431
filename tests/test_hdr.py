"""HDR (PQ / HLG, BT.2020) sources give tone-mapped BT.709 SDR thumbnails; SDR sources are untouched.

The HDR clips are 10-bit HEVC made here (vidsnap.local.synthposters.make_hdr_clip) from patches of
known light; the expected SDR values are computed below with plain scalar math (not the module's
numpy tables): PQ/HLG → cd/m² → BT.2390 EETF to 203 cd/m² → BT.2020 to BT.709 → gamma 2.4.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidsnap.core import imaging, tonemap
from vidsnap.core.engine import snapshot
from vidsnap.core.plan import ImageSpec, SnapshotRequest
from vidsnap.local.synth import make_video
from vidsnap.local.synthposters import HDR_PATCHES, make_hdr_clip

SIZE = (320, 180)


@pytest.fixture(scope="module", params=["pq", "hlg"])
def hdr(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    transfer = str(request.param)
    path = tmp_path_factory.mktemp("hdr") / f"{transfer}.mp4"
    make_hdr_clip(path, transfer=transfer, size=SIZE)
    return transfer, path


# --- an independent scalar reference ----------------------------------------------------------------

M1, M2 = 2610 / 16384, 2523 / 4096 * 128
C1, C2, C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32


def _pq(nits: float) -> float:
    y = (min(max(nits, 0.0), 10000.0) / 10000) ** M1
    return float(((C1 + C2 * y) / (1 + C3 * y)) ** M2)


def _pq_inv(e: float) -> float:
    p = e ** (1 / M2)
    return float(10000 * (max(p - C1, 0.0) / (C2 - C3 * p)) ** (1 / M1))


def _eetf(nits: float, peak: float = 1000.0, target: float = 203.0) -> float:
    src = _pq(peak)
    e1 = min(_pq(nits) / src, 1.0)
    max_lum = _pq(target) / src
    ks = 1.5 * max_lum - 0.5
    if e1 < ks:
        e2 = e1
    else:
        t = (e1 - ks) / (1 - ks)
        e2 = (
            (2 * t**3 - 3 * t**2 + 1) * ks
            + (t**3 - 2 * t**2 + t) * (1 - ks)
            + (-2 * t**3 + 3 * t**2) * max_lum
        )
    return _pq_inv(e2 * src)


BT709_FROM_BT2020 = [
    [1.660491, -0.587641, -0.072850],
    [-0.124550, 1.132900, -0.008349],
    [-0.018151, -0.100579, 1.118730],
]


def _expected(nits: tuple[float, float, float]) -> list[int]:
    linear = [_eetf(v) / 203 for v in nits]
    out = []
    for row in BT709_FROM_BT2020:
        v = min(max(sum(m * c for m, c in zip(row, linear, strict=True)), 0.0), 1.0)
        out.append(round(255 * v ** (1 / 2.4)))
    return out


def _patch(picture: np.ndarray, k: int) -> np.ndarray:
    w, h = SIZE
    n = len(HDR_PATCHES)
    x0, x1 = k * w // n + 6, (k + 1) * w // n - 6
    mean: np.ndarray = picture[h // 8 : 3 * h // 8, x0:x1].reshape(-1, 3).mean(axis=0)
    return mean


def _picture(data: bytes) -> np.ndarray:
    picture: np.ndarray = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)
    return picture


# --- HDR ------------------------------------------------------------------------------------------


def test_patches_match_the_reference(hdr: tuple[str, Path]) -> None:
    _, path = hdr
    picture = _picture(snapshot(path, SnapshotRequest(image=ImageSpec(format="png"))).data)
    for k, (name, nits) in enumerate(HDR_PATCHES):
        got = _patch(picture, k)
        want = _expected(nits)
        assert np.abs(got - want).max() <= 8, (name, got.round(1).tolist(), want)


def test_not_flat_and_grey(hdr: tuple[str, Path]) -> None:
    """Without tone mapping, a PQ picture is flat: 100 cd/m² grey sits near half signal and the
    1000 cd/m² highlight far from white. Tone-mapped, grey is a light grey and the highlight white.
    (HLG is made to look acceptable untouched; it is checked against the reference only.)"""
    transfer, path = hdr
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        naive = frame.to_ndarray(format="rgb24").astype(np.float64)
    mapped = _picture(snapshot(path, SnapshotRequest(image=ImageSpec(format="png"))).data)
    grey100, white1000 = 2, 4
    assert _patch(mapped, white1000).mean() >= 250
    if transfer == "pq":
        assert _patch(mapped, grey100).mean() > _patch(naive, grey100).mean() + 40
        assert _patch(naive, white1000).mean() < 235
        assert mapped[: SIZE[1] // 2].std() > naive[: SIZE[1] // 2].std()
    # The ramp (bottom half, 0..1000 cd/m² left to right) follows the reference and rises.
    w = SIZE[0]
    ramp = mapped[3 * SIZE[1] // 4, :, 1]
    for x in (8, 40, 100, 160, 240, 310):
        nits = 1000 * x / (w - 1)
        assert abs(ramp[x] - _expected((nits, nits, nits))[1]) <= 8, x
    blocks = ramp[: w - w % 8].reshape(-1, 8).mean(axis=1)  # coding noise is steep in the dark end
    assert np.all(np.diff(blocks) >= -1)


def test_scaled_and_jpeg(hdr: tuple[str, Path]) -> None:
    """Tone mapping happens at the output size, whatever the size and format."""
    _, path = hdr
    rendered = snapshot(path, SnapshotRequest(image=ImageSpec(format="jpg", width=160)))
    assert (rendered.width, rendered.height) == (160, 90)
    picture = np.asarray(Image.open(io.BytesIO(rendered.data)).convert("RGB")).astype(np.float64)
    grey = picture[10:35, 2 * 160 // 8 + 4 : 3 * 160 // 8 - 4].mean()
    assert abs(grey - _expected((100.0, 100.0, 100.0))[0]) <= 10


def test_tone_map_tables() -> None:
    # Black stays black, reference white lands near SDR white, the peak is white.
    code = np.array([[[0, 0, 0], [0, 0, 0]]], np.uint16)
    assert tonemap.tone_map(code, tonemap.PQ).tolist() == [[[0, 0, 0], [0, 0, 0]]]
    peak = np.full((1, 1, 3), round(_pq(1000.0) * 65535), np.uint16)
    assert tonemap.tone_map(peak, tonemap.PQ)[0, 0].tolist() == [255, 255, 255]
    assert tonemap.eetf(np.array([1000.0]))[0] == pytest.approx(203, rel=0.01)
    assert tonemap.eetf(np.array([5.0]))[0] == pytest.approx(5.0, rel=1e-6)  # below the knee: unchanged
    assert float(tonemap.pq_eotf(tonemap.pq_inverse_eotf(np.array(100.0)))) == pytest.approx(100)
    with pytest.raises(ValueError, match="not an HDR transfer"):
        tonemap.tone_map(code, 1)


# --- SDR is untouched ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg"])
@pytest.mark.parametrize("size", [(320, 180), (160, 90)])
def test_sdr_bit_for_bit(tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    """An SDR frame gives exactly the pixels of one plain swscale pass, as before HDR support."""
    path = tmp_path / "sdr.mp4"
    make_video(path, duration_s=0.2, width=320, height=180)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert imaging._hdr_transfer(frame) is None
    spec = ImageSpec(format="png" if fmt == "png" else "jpg", width=size[0], height=size[1])
    geometry = imaging.plan_geometry(frame.width, frame.height, Fraction(1), 0, spec)
    got = imaging.to_image(frame, geometry, fmt=spec.format).convert("RGB")
    same = size == (frame.width, frame.height) and fmt == "jpg"
    flags = imaging.SAME_SIZE_SUBSAMPLED_FLAGS if same else imaging.SCALE_FLAGS
    plain = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation=flags)
    assert got.tobytes() == plain.to_ndarray().tobytes()


def test_hdr_transfer_detection() -> None:
    frame = av.VideoFrame(16, 16, "yuv420p10le")
    assert imaging._hdr_transfer(frame) is None
    frame.color_trc = tonemap.PQ
    assert imaging._hdr_transfer(frame) == tonemap.PQ
    frame.color_trc = tonemap.HLG
    assert imaging._hdr_transfer(frame) == tonemap.HLG
    assert math.isclose(_pq(10000.0), 1.0)

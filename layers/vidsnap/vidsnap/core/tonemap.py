"""HDR (PQ or HLG, BT.2020) to SDR (BT.709) for thumbnails, in numpy at the output size.

swscale converts matrices and ranges but does not tone-map: a PQ or HLG picture converted to 8-bit
RGB as if it were SDR looks flat and grey (100 cd/m² grey lands at ~50 % signal, the brightest
highlight at ~75 %). So :func:`vidsnap.core.imaging.to_image` has swscale scale the frame to the
output size as 16-bit RGB (BT.2020 matrix, full range) and this module does the rest on those few
pixels (README: Request languages, posters; the measurements in docs/POSTERS.md):

1. EOTF: PQ (SMPTE ST 2084) signal → display light in cd/m²; HLG (BT.2100) signal → scene light →
   display light of a 1000 cd/m² display (the OOTF's system gamma 1.2, applied per component);
2. BT.2390 EETF (the hermite knee in the PQ domain) per component, from the source peak
   (:data:`SOURCE_PEAK`) to :data:`SDR_WHITE`, the HDR reference white that becomes SDR white;
3. BT.2020 → BT.709 primaries (3×3 matrix on linear light), clipped to the SDR gamut;
4. the inverse of BT.1886 (gamma 2.4): the signal an SDR rendition of the video would carry.

Steps 1-2 and 4 are lookup tables (built once per transfer), so a thumbnail costs three table
lookups and one 3×3 product per pixel.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

__all__ = [
    "HLG",
    "PQ",
    "SDR_WHITE",
    "SOURCE_PEAK",
    "TRANSFERS",
    "eetf",
    "hlg_eotf",
    "pq_eotf",
    "pq_inverse_eotf",
    "tone_map",
]

#: FFmpeg's AVColorTransferCharacteristic values of the HDR transfers.
PQ = 16  # AVCOL_TRC_SMPTE2084
HLG = 18  # AVCOL_TRC_ARIB_STD_B67
TRANSFERS = frozenset({PQ, HLG})
#: The brightest light a source is taken to hold (cd/m²): the common mastering peak of PQ video
#: and the nominal peak of HLG displays.
SOURCE_PEAK = 1000.0
#: HDR reference ("graphics") white, BT.2408: it becomes SDR white.
SDR_WHITE = 203.0
#: BT.2020 RGB → BT.709 RGB, linear light (BT.2087).
BT2020_TO_BT709 = np.array(
    [
        [1.660491, -0.587641, -0.072850],
        [-0.124550, 1.132900, -0.008349],
        [-0.018151, -0.100579, 1.118730],
    ],
    np.float32,
)
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073
#: Entries of the output table: linear light quantised to 12 bits before the 8-bit signal.
_OUT_STEPS = 4096

Floats = npt.NDArray[np.float64]


def pq_eotf(signal: Floats) -> Floats:
    """SMPTE ST 2084: signal 0..1 → display light, cd/m² (0..10000)."""
    e = np.clip(signal, 0, 1) ** (1 / _M2)
    return 10000 * (np.maximum(e - _C1, 0) / (_C2 - _C3 * e)) ** (1 / _M1)


def pq_inverse_eotf(nits: Floats) -> Floats:
    """SMPTE ST 2084 inverse: display light, cd/m² → signal 0..1."""
    y = np.clip(nits / 10000, 0, 1) ** _M1
    return ((_C1 + _C2 * y) / (1 + _C3 * y)) ** _M2


def hlg_eotf(signal: Floats, peak: float = SOURCE_PEAK) -> Floats:
    """BT.2100 HLG: signal 0..1 → display light of a ``peak`` cd/m² display (system gamma 1.2,
    per component: the luminance form needs all three components of a pixel, the tables only one)."""
    e = np.clip(signal, 0, 1)
    scene = np.where(e <= 0.5, e * e / 3, (np.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12)
    return peak * np.clip(scene, 0, 1) ** 1.2


def eetf(nits: Floats, source_peak: float = SOURCE_PEAK, target_peak: float = SDR_WHITE) -> Floats:
    """BT.2390 EETF: display light up to ``source_peak`` → up to ``target_peak`` (cd/m²).

    In the PQ domain, normalised to the source peak: identity below the knee start
    ``KS = 1.5·maxLum − 0.5``, a hermite spline from there to ``maxLum`` (the target peak).
    """
    src = float(pq_inverse_eotf(np.array(source_peak)))
    max_lum = float(pq_inverse_eotf(np.array(target_peak))) / src
    e1 = np.clip(pq_inverse_eotf(nits) / src, 0, 1)
    ks = 1.5 * max_lum - 0.5
    t = np.clip((e1 - ks) / (1 - ks), 0, 1)
    spline = (
        (2 * t**3 - 3 * t**2 + 1) * ks + (t**3 - 2 * t**2 + t) * (1 - ks) + (-2 * t**3 + 3 * t**2) * max_lum
    )
    e2 = np.where(e1 < ks, e1, spline)
    return pq_eotf(e2 * src)


@functools.cache
def _input_table(transfer: int) -> npt.NDArray[np.float32]:
    """16-bit signal → tone-mapped linear light relative to SDR white (0..1), per component."""
    signal = np.arange(65536, dtype=np.float64) / 65535
    nits = pq_eotf(signal) if transfer == PQ else hlg_eotf(signal)
    return (eetf(nits) / SDR_WHITE).astype(np.float32)


@functools.cache
def _output_table() -> npt.NDArray[np.uint8]:
    """Linear light 0..1 (in :data:`_OUT_STEPS` steps) → 8-bit signal, inverse BT.1886 (gamma 2.4)."""
    linear = np.arange(_OUT_STEPS, dtype=np.float64) / (_OUT_STEPS - 1)
    return np.round(255 * linear ** (1 / 2.4)).astype(np.uint8)


def tone_map(rgb48: npt.NDArray[np.uint16], transfer: int) -> npt.NDArray[np.uint8]:
    """A 16-bit full-range BT.2020 R'G'B' picture (h×w×3) of ``transfer`` (:data:`PQ`, :data:`HLG`)
    → 8-bit BT.709 SDR R'G'B' (h×w×3)."""
    if transfer not in TRANSFERS:
        raise ValueError(f"not an HDR transfer: {transfer}")
    linear = _input_table(transfer)[rgb48]
    bt709 = linear @ BT2020_TO_BT709.T
    index = (np.clip(bt709, 0, 1) * (_OUT_STEPS - 1) + 0.5).astype(np.uint16)
    out: npt.NDArray[np.uint8] = _output_table()[index]
    return out

"""Which frame makes a good poster, and which frames are black: pure scoring on small gray pictures.

No media here: the callers (:mod:`vidsnap.core.select`) decode candidates and hand over small 8-bit
gray pictures (about 256 px wide, full-range luma) as numpy arrays; this module only measures them.
README: Request languages, posters; docs/POSTERS.md for the measurements behind the weights.

A poster frame should be what a person would pick by hand: not black or nearly flat (a title card
fading in, a black gap), not blurred (a fast pan), not a fade or the middle of a dissolve (it looks
unlike both of its neighbours), and well exposed (no flash). Each candidate gets features
(:class:`Features`) and a score (:func:`scores`); the best score wins, ties going to the earlier
candidate, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Features",
    "Gray",
    "best_index",
    "black_fraction",
    "features",
    "is_black",
    "scores",
    "sharpness",
]

Gray = npt.NDArray[np.uint8]

#: A pixel this dark (of 255) is "dark" for the exposure score; a frame mostly this dark is a black frame.
_DARK = 24
#: A pixel this bright is clipped (a flash, a blown-out sky).
_CLIPPED = 245
#: A frame whose luma standard deviation is below this is flat (a black or single-colour card).
_FLAT_STD = 6.0
#: Mean absolute difference to the neighbours (0..1) above which a frame is counted as in a
#: transition: a fade over a second moves ~0.05-0.2 between candidates a few hundred ms apart.
_UNSTABLE = 0.08
#: Subtracted from the score of a frame that no one would choose (black, flat): it only wins when
#: every candidate is like it.
_REJECT = 2.0


def black_fraction(gray: Gray, threshold: int) -> float:
    """The fraction of pixels darker than ``threshold`` (0..255), 0..1."""
    return float(np.count_nonzero(gray < threshold)) / max(1, gray.size)


def is_black(gray: Gray, level: int, threshold: int) -> bool:
    """Whether more than ``level`` % of the pixels are darker than ``threshold`` (MPS ``BlackLevel``)."""
    return black_fraction(gray, threshold) * 100 > level


def sharpness(gray: Gray) -> float:
    """Variance of the 4-neighbour Laplacian: high for detail, low for blur and flat pictures."""
    g = gray.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def _entropy(gray: Gray) -> float:
    """Shannon entropy of the luma histogram in bits (0..8): how much of the tonal range is used."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / max(1, gray.size)
    return float(-(p * np.log2(p)).sum())


@dataclass(frozen=True)
class Features:
    """What scoring needs of one candidate (luma 0..255, fractions 0..1)."""

    mean: float
    std: float
    dark: float
    clipped: float
    sharpness: float
    entropy: float


def features(gray: Gray) -> Features:
    """The features of one small gray picture."""
    g = gray.astype(np.float32)
    return Features(
        mean=float(g.mean()),
        std=float(g.std()),
        dark=black_fraction(gray, _DARK),
        clipped=float(np.count_nonzero(gray > _CLIPPED)) / max(1, gray.size),
        sharpness=sharpness(gray),
        entropy=_entropy(gray),
    )


def _difference(a: Gray, b: Gray) -> float:
    """Mean absolute difference of two pictures of one size, 0..1."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) / 255


def _instability(grays: Sequence[Gray]) -> list[float]:
    """Per candidate, the smaller of its differences to the previous and next candidate (0..1).

    A frame in a fade or a dissolve differs from both neighbours; a frame right before or after a
    cut differs from one only, and a frame of a steady shot from neither.
    """
    n = len(grays)
    diffs = [_difference(grays[i], grays[i + 1]) for i in range(n - 1)]
    out = []
    for i in range(n):
        near = diffs[max(0, i - 1) : i + 1]  # the differences to the previous and to the next
        out.append(min(near) if near else 0.0)
    return out


def _score(f: Features, sharp_rel: float, unstable: float) -> float:
    exposure = 1 - min(1.0, abs(f.mean - 118) / 110)
    contrast = min(1.0, f.std / 50)
    tones = f.entropy / 8
    steady = 1 - min(1.0, unstable / _UNSTABLE)
    score = (
        0.2 * exposure
        + 0.15 * contrast
        + 0.3 * sharp_rel
        + 0.1 * tones
        + 0.25 * steady
        - 0.6 * max(0.0, f.dark - 0.3)
        - 0.8 * f.clipped
    )
    if f.dark > 0.9 or f.std < _FLAT_STD:
        score -= _REJECT
    return score


def scores(grays: Sequence[Gray]) -> list[float]:
    """A poster score per candidate (higher is better), candidates in time order, all one size.

    Sharpness counts relative to the sharpest acceptable candidate, so the score does not depend
    on the picture's size or content kind; stability compares each candidate with its neighbours.
    """
    if not grays:
        return []
    feats = [features(g) for g in grays]
    usable = [f.sharpness for f in feats if f.dark <= 0.9 and f.std >= _FLAT_STD]
    top = max(usable or [f.sharpness for f in feats]) or 1.0
    unstable = _instability(grays)
    return [_score(f, min(1.0, f.sharpness / top), u) for f, u in zip(feats, unstable, strict=True)]


def best_index(grays: Sequence[Gray]) -> int:
    """The index of the best poster among ``grays`` (the earliest on ties); 0 for one candidate."""
    values = scores(grays)
    if not values:
        raise ValueError("best_index needs at least one candidate")
    return int(np.argmax(np.asarray(values)))  # argmax returns the first of equal maxima

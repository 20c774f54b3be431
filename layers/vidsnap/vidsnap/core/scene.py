"""Shot boundaries for the ``scene`` selection mode: pure measures on small RGB pictures (numpy).

README: Request languages (``m_scene``, IMM ``Mode: "scene"``). The content measure is the one of
PySceneDetect's ContentDetector: each picture is converted to HSV (OpenCV's 8-bit convention: H
0..179, S and V 0..255) and the change between two pictures is the mean of the mean absolute
differences of the H, S and V channels (0..255; a cut between unrelated shots scores ~30-120,
motion within a shot ~1-10). Unlike a difference hash on a 9×8 gray picture, it sees colour: a navy
field after colour bars has a like gray layout but nothing like their hue and saturation.

Fades are found apart from cuts (a fade changes little from one sample to the next): a picture
whose mean brightness is below :data:`FADE_LEVEL` is dark, and the first bright picture after dark
ones starts a shot (a fade-in, or a cut from black); a cut *to* a dark picture starts none.
The decoding side (sampling, finding the exact cut frame, the frames returned) is
:func:`vidsnap.core.select.select_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_THRESHOLD",
    "FADE_LEVEL",
    "FADE_SCORE",
    "FIRST_SCORE",
    "Sample",
    "content_change",
    "hsv",
    "is_dark",
    "sharpness",
    "shot_starts",
]

RGB = npt.NDArray[np.uint8]
HSV = npt.NDArray[np.float32]

#: The cut threshold when the request gives none (``thr`` 0): PySceneDetect's default, 27.
DEFAULT_THRESHOLD = 27
#: A picture whose mean V (0..255) is below this is dark (PySceneDetect's ThresholdDetector: 12).
FADE_LEVEL = 12.0
#: The score of the first shot (it is always kept first by ``num``), and of a fade-in.
FIRST_SCORE = 1000.0
FADE_SCORE = 255.0


def hsv(rgb: RGB) -> HSV:
    """An RGB picture (h×w×3, 8-bit) as HSV planes (3×h×w float32) in OpenCV's 8-bit convention."""
    c = rgb.astype(np.float32)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    v = c.max(axis=-1)
    span = v - c.min(axis=-1)
    s = np.where(v > 0, span * 255 / np.maximum(v, 1), 0)
    safe = np.maximum(span, 1e-6)
    h = np.where(
        v == r,
        60 * (g - b) / safe,
        np.where(v == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe),
    )
    h = np.where(span > 0, np.mod(h, 360) / 2, 0)
    return np.stack([h, s, v]).astype(np.float32)


def content_change(a: HSV, b: HSV) -> float:
    """PySceneDetect's content value between two HSV pictures of one size (0..255)."""
    return float(np.abs(a - b).mean(axis=(1, 2)).mean())


def is_dark(picture: HSV) -> bool:
    """Whether a picture is dark enough to be part of a fade (mean V below :data:`FADE_LEVEL`)."""
    return float(picture[2].mean()) < FADE_LEVEL


def sharpness(picture: HSV) -> float:
    """Variance of the 4-neighbour Laplacian of V: the sharpest frame of a shot has the most."""
    v = picture[2]
    lap = v[1:-1, :-2] + v[1:-1, 2:] + v[:-2, 1:-1] + v[2:, 1:-1] - 4 * v[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


@dataclass(frozen=True)
class Sample:
    """What the shot finder keeps of one sampled picture: its change from the sample before
    (None for the first), whether it is dark, and its sharpness."""

    change: float | None
    dark: bool
    sharp: float = 0.0


def shot_starts(samples: Sequence[Sample], threshold: float) -> list[tuple[int, float, str]]:
    """(sample index, score, kind) of each sample that starts a shot, in order.

    ``kind`` is ``first`` (the first bright sample), ``cut`` (a change above ``threshold`` to a
    bright sample) or ``fade`` (a bright sample after a dark one). Dark samples start no shot.
    """
    starts: list[tuple[int, float, str]] = []
    prev_dark = True  # a video that opens dark starts its first shot where it gets bright
    for i, sample in enumerate(samples):
        if sample.dark:
            prev_dark = True
            continue
        if not starts:
            starts.append((i, FIRST_SCORE, "first"))
        elif prev_dark:
            starts.append((i, FADE_SCORE, "fade"))
        elif sample.change is not None and sample.change > threshold:
            starts.append((i, sample.change, "cut"))
        prev_dark = False
    return starts

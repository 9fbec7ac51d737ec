"""Drawing target shared by the SynthFaces render steps: a render-resolution image plus the
template -> render-pixel mapping, in 1/16 px for OpenCV's ``shift=4`` sub-pixel drawing."""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["Canvas", "col"]


def col(c: Iterable[float]) -> tuple[float, float, float]:
    """A colour clamped to [0, 255] as the float triple OpenCV takes."""
    r, g, b = (float(v) for v in c)
    return (min(255.0, max(0.0, r)), min(255.0, max(0.0, g)), min(255.0, max(0.0, b)))


class Canvas:
    """``img`` (drawn in place) at ``ss`` times the output ``size``; ``scale_px`` converts
    template units of the aligned face to render pixels (for radii and line widths)."""

    SHIFT = 4

    def __init__(self, img: np.ndarray, k: float, ss: int, scale_px: float):
        self.img = img
        self.scale_px = scale_px
        # output pixel centres -> render pixel centres (INTER_AREA downsample convention),
        # in 1/16 px: ((p * k + 0.5) * ss - 0.5) * 16
        self.A, self.B = k * ss * 16.0, (0.5 * ss - 0.5) * 16.0

    def poly(self, pts: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(pts) * self.A + self.B).astype(np.int32).reshape(-1, 1, 2)

    def pt(self, p: np.ndarray) -> tuple[int, int]:
        return int(round(float(p[0]) * self.A + self.B)), int(round(float(p[1]) * self.A + self.B))

    def rad(self, r: float) -> int:
        return max(1, int(round(r * self.scale_px * 16)))

    def th(self, t: float) -> int:
        return max(1, int(round(t * self.scale_px)))

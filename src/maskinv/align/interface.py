"""The detector interface: what every face detector backend returns and implements.

A backend is any object with ``name`` and ``detect(image) -> list[Face]`` where ``image`` is uint8
RGB (H, W, 3) and every :class:`Face` carries the five ArcFace points (image-left eye, image-right
eye, nose tip, image-left and image-right mouth corner). Backends: :mod:`maskinv.align.dlib`,
:mod:`maskinv.align.mtcnn`, :mod:`maskinv.align.yunet`; names: :mod:`maskinv.align.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataFormatError, MaskinvError

__all__ = ["Face", "FaceDetector", "DetectorUnavailableError", "five_from_68", "downscaled"]


class DetectorUnavailableError(MaskinvError, ImportError):
    """The optional dependency of a detector backend is not installed."""


@dataclass
class Face:
    """One detected face. Coordinates are in pixels of the photo it was found in."""

    box: np.ndarray                      # (4,) float: x0, y0, x1, y1
    landmarks: np.ndarray                # (5, 2) float32, ArcFace point order
    score: float                         # backend confidence (dlib: HOG margin, higher is surer)
    landmarks68: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (box, five landmarks, score)."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """ArcFace five points from the iBUG 68-point layout.

    Eye centres = mean of each eye contour (36-41 is the eye on the image left, 42-47 the
    other), nose tip = 30, mouth corners = 48 and 54 (outer lip corners, as MTCNN marks them).
    """
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise DataFormatError(f"expected (68, 2) landmarks, got shape {p.shape}")
    five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
    return five.astype(np.float32)


def downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A detector's input: ``(image checked as uint8 (H, W, 3), copy shrunk so its longer side is at most
    ``max_side`` (area interpolation; the image itself when small enough), scale factor <= 1)``.
    Detections on the small copy map back by dividing by the factor."""
    import cv2

    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise DataFormatError(f"expected a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    small = img if factor == 1.0 else cv2.resize(img, (round(w * factor), round(h * factor)),
                                                 interpolation=cv2.INTER_AREA)
    return img, small, factor


class FaceDetector:
    """Interface of a detector backend. Subclasses implement :meth:`detect`."""

    name = "base"

    def detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        """All faces in a uint8 RGB (H, W, 3) image, largest first."""
        raise NotImplementedError

"""Field constants (REFERENCE §4): input convention and the ArcFace alignment template."""
from __future__ import annotations

import numpy as np

#: Network input side for ArcFace-aligned crops.
INPUT_SIZE = 112
#: Pixel normalisation of all published models: (x/255 - 0.5) / 0.5, RGB order.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5
CHANNEL_ORDER = "RGB"

#: Five-point ArcFace template for 112x112 crops, (x, y), image-left first:
#: left eye, right eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def template_for_size(size: int | tuple[int, int]) -> np.ndarray:
    """The five-point template scaled to a square (or (h, w)) crop of another size."""
    if isinstance(size, int):
        h = w = size
    else:
        h, w = size
    scale = np.array([w / 112.0, h / 112.0], dtype=np.float32)
    return ARCFACE_TEMPLATE_112 * scale

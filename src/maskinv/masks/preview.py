"""A picture grid of many seeded masks on a few faces (``maskinv mask --preview``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..utils.images import image_grid
from ..utils.seeds import derive_seed
from .kinds import MASK_KINDS
from .render import apply_mask, image_rng

__all__ = ["mask_preview"]

#: Side of one preview cell in pixels.
CELL = 112


def mask_preview(faces: Sequence[np.ndarray], landmarks: Sequence[np.ndarray | None], kind: str, seed: int,
                 n_masks: int) -> np.ndarray:
    """Grid (uint8 RGB) under a header naming the columns: one row per face, the clean face
    first, then ``n_masks`` masks.

    With kind "random" the columns cycle through every kind (paper included) so each appears.
    Masks use the streams ``image_rng(seed, 10**6 + row * 1000 + column)``, far from the
    per-file streams ``image_rng(seed, i)``.
    """
    import cv2

    kinds = [(MASK_KINDS[c % len(MASK_KINDS)] if kind == "random" else kind) for c in range(n_masks)]
    cells = []
    for r, (face, lm) in enumerate(zip(faces, landmarks)):
        h, w = face.shape[:2]
        cells.append(cv2.resize(face, (CELL, CELL), interpolation=cv2.INTER_AREA))
        for c, k in enumerate(kinds):
            res = apply_mask(face, lm, image_rng(seed, derive_seed(seed, "mask_preview", r, c)), k)
            scale = CELL / max(h, w)
            cells.append(cv2.resize(res.image, (CELL, CELL), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    grid = image_grid(np.stack(cells), n_masks + 1)
    header = np.full((18, grid.shape[1], 3), 255, np.uint8)
    for c, text in enumerate(["clean"] + kinds):
        cv2.putText(header, text, (c * CELL + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, grid], 0)

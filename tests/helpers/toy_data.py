"""Small deterministic RecordIO training sets for the tests (no SynthFaces needed).

Each class is a fixed random pattern of coloured blobs on a background; each image adds a
small random shift and pixel noise, so a tiny network can learn the classes in a few steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_toy_recordio(out_dir: str | Path, *, classes: int = 8, per_class: int = 8, size: int = 32,
                      seed: int = 0) -> Path:
    """Write ``train.rec/.idx/property`` (InsightFace layout) of ``classes x per_class`` JPEGs."""
    import cv2

    from maskinv.data.recordio import write_insightface_recordio

    rng = np.random.default_rng(seed)
    items = []
    for c in range(classes):
        base = np.empty((size, size, 3), dtype=np.float32)
        base[:] = rng.uniform(40, 215, size=3)
        for _ in range(4):
            cx, cy = rng.uniform(0.15, 0.85, size=2) * size
            r = rng.uniform(0.08, 0.25) * size
            yy, xx = np.mgrid[:size, :size]
            base[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, size=3)
        for _ in range(per_class):
            dx, dy = rng.integers(-1, 2, size=2)
            img = np.roll(base, (int(dy), int(dx)), axis=(0, 1)) + rng.normal(0, 8, size=base.shape)
            img = np.clip(img, 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            items.append((c, buf.tobytes()))
    return write_insightface_recordio(out_dir, items, classes, size)


def export_tiny_teacher(path: str | Path, *, seed: int = 5, size: int = 32) -> Path:
    """A frozen-teacher checkpoint the training tests share: r18 x0.125, 32-d, ``size`` px input."""
    from maskinv.models import export_backbone, get_model

    export_backbone(get_model("r18", embedding_size=32, width_mult=0.125, input_size=size, seed=seed), path)
    return Path(path)

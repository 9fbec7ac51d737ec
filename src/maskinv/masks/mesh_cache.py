"""Face meshes computed once per image (fp16, keyed by the image's hash) and the meshes of aligned
training crops: what the ``mesh`` renderer draws on without running the mesh network again."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError

__all__ = ["MeshCache", "crop_meshes", "image_key"]


def crop_meshes(crops) -> np.ndarray:
    """Face meshes (M, 468, 3) float32 of aligned crops (uint8 (M, H, W, 3), ArcFace-aligned:
    the five template points scaled to the crop size place the mesh's input region). The
    training mask bank of ``masks.renderer: mesh`` is rendered on these."""
    from ..align.mesh import mesh_points
    from ..constants import template_for_size

    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[0] < 1 or c.shape[3] != 3 or c.dtype != np.uint8:
        raise DataFormatError(f"crop_meshes: expected uint8 (M, H, W, 3) crops, got {c.dtype} {c.shape}")
    lm = template_for_size((c.shape[1], c.shape[2]))
    return np.asarray(mesh_points(list(c), lm).points, np.float32)


# ----------------------------------------------------------------------------- cache
def image_key(image: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixel bytes (the cache key)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


class MeshCache:
    """Face meshes computed once per image: ``{image_key: fp16 (468, 3)}``, saved as one ``.npz``.

    ``get(image, landmarks5)`` returns the cached mesh or computes it (:func:`maskinv.align.mesh.
    mesh_points`) and stores it; ``save()`` writes atomically. The fp16 rounding moves a point by
    at most 1/2048 of its coordinate (0.06 px at 112 px)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._d: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys, vals = z["keys"], z["meshes"]
            except (OSError, KeyError, ValueError) as exc:
                raise DataFormatError(f"{self.path}: not a mesh cache ({exc})") from None
            if vals.ndim != 3 or vals.shape[1:] != (468, 3) or len(keys) != len(vals):
                raise DataFormatError(f"{self.path}: mesh cache arrays have shapes {keys.shape}, {vals.shape}")
            self._d = {str(k): v for k, v in zip(keys, vals)}

    def __len__(self) -> int:
        return len(self._d)

    def get(self, image: np.ndarray, landmarks5) -> np.ndarray:
        key = image_key(image)
        m = self._d.get(key)
        if m is None:
            from ..align.mesh import mesh_points

            self.misses += 1
            m = mesh_points(image, landmarks5).points[0].astype(np.float16)
            self._d[key] = m
        else:
            self.hits += 1
        return m.astype(np.float32)

    def save(self) -> None:
        if self.path is None:
            raise ConfigError("MeshCache.save: the cache has no path")
        import io

        from ..utils.io import atomic_write_bytes

        buf = io.BytesIO()
        keys = np.array(sorted(self._d), dtype="U64")
        np.savez(buf, keys=keys, meshes=np.stack([self._d[k] for k in keys]) if len(keys) else
                 np.zeros((0, 468, 3), np.float16))
        atomic_write_bytes(self.path, buf.getvalue())

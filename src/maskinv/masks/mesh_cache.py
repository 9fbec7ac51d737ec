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
    return crop_meshes_scored(crops)[0]


def crop_meshes_scored(crops, *, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crop_meshes` and the face scores (M,) float32 (sigmoid of the mesh network's face
    logit) of the same crops, from one pass of the fast runner (align/mesh_fast.py)."""
    from ..align.mesh import mesh_points
    from ..constants import template_for_size

    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[0] < 1 or c.shape[3] != 3 or c.dtype != np.uint8:
        raise DataFormatError(f"crop_meshes: expected uint8 (M, H, W, 3) crops, got {c.dtype} {c.shape}")
    lm = template_for_size((c.shape[1], c.shape[2]))
    r = mesh_points(list(c), lm, batch_size=batch_size)
    return np.asarray(r.points, np.float32), np.asarray(r.score, np.float32)


# ----------------------------------------------------------------------------- cache
def image_key(image: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixel bytes (the cache key)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, vals = z["keys"], z["meshes"]
            scores = z["scores"] if "scores" in z.files else np.full(len(keys), np.nan, np.float32)
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a mesh cache ({exc})") from None
    if vals.ndim != 3 or vals.shape[1:] != (468, 3) or len(keys) != len(vals) or scores.shape != (len(keys),):
        raise DataFormatError(f"{path}: mesh cache arrays have shapes {keys.shape}, {vals.shape}, {scores.shape}")
    return keys, vals, scores


class MeshCache:
    """Face meshes computed once per image: ``{image_key: fp16 (468, 3)}`` plus each face score
    (float32; NaN for entries of files written before scores were stored), saved as one ``.npz``.

    ``get(image, landmarks5)`` returns the cached mesh or computes it (:func:`maskinv.align.mesh.
    mesh_points`) and stores it; :meth:`get_many` does a batch (and returns the scores);
    ``save()`` writes atomically. ``read``: more cache files loaded read-only (e.g. the shards
    other ranks wrote). The fp16 rounding moves a point by at most 1/2048 of its coordinate
    (0.06 px at 112 px)."""

    def __init__(self, path: str | os.PathLike | None = None, *, read=()):
        self.path = Path(path) if path is not None else None
        self._d: dict[str, np.ndarray] = {}
        self._s: dict[str, float] = {}
        self.hits = self.misses = 0
        self.added = 0                       # entries computed (or replaced) since loading
        files = [Path(p) for p in read]
        if self.path is not None and self.path.is_file():
            files.append(self.path)
        for f in files:
            keys, vals, scores = _read(f)
            for k, v, s in zip(keys, vals, scores):
                self._put(str(k), v, float(s))

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: str) -> bool:
        return key in self._d

    def _put(self, key: str, mesh: np.ndarray, score: float) -> None:
        if key in self._d and np.isnan(score) and not np.isnan(self._s.get(key, np.nan)):
            return                           # never forget a known score for an unknown one
        self._d[key] = np.asarray(mesh, np.float16)
        self._s[key] = float(score)

    def put(self, key: str, mesh: np.ndarray, score: float) -> None:
        """Store one computed mesh ((468, 3), stored fp16) and its face score under ``key``."""
        m = np.asarray(mesh)
        if m.shape != (468, 3):
            raise DataFormatError(f"MeshCache.put: a mesh must have shape (468, 3), got {m.shape}")
        self._put(key, m, score)
        self.added += 1

    def lookup(self, key: str) -> tuple[np.ndarray, float] | None:
        """(mesh float32 (468, 3), score) of ``key``, or None when it is not cached."""
        m = self._d.get(key)
        return None if m is None else (m.astype(np.float32), self._s.get(key, float("nan")))

    def get(self, image: np.ndarray, landmarks5) -> np.ndarray:
        key = image_key(image)
        m = self._d.get(key)
        if m is None:
            from ..align.mesh import mesh_points

            self.misses += 1
            r = mesh_points(image, landmarks5)
            self.put(key, r.points[0], float(r.score[0]))
            m = self._d[key]
        else:
            self.hits += 1
        return m.astype(np.float32)

    def get_many(self, images, landmarks5, *, keys=None, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Meshes (N, 468, 3) float32 and face scores (N,) of uint8 (N, H, W, 3) ``images`` (one
        size) with ``landmarks5`` ((5, 2) for all, or (N, 5, 2)); misses, and entries whose score
        is unknown, run through the mesh network in batches. ``keys``: the images' keys if known."""
        from ..align.mesh import mesh_points

        imgs = np.asarray(images)
        keys = [image_key(im) for im in imgs] if keys is None else list(keys)
        if len(keys) != len(imgs):
            raise DataFormatError(f"MeshCache.get_many: {len(imgs)} images but {len(keys)} keys")
        lms = np.asarray(landmarks5, np.float64)
        if lms.ndim == 2:
            lms = np.repeat(lms[None], len(imgs), 0)
        todo = [i for i, k in enumerate(keys) if k not in self._d or np.isnan(self._s.get(k, np.nan))]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            r = mesh_points(list(imgs[todo]), lms[todo], batch_size=batch_size)
            for j, i in enumerate(todo):
                self.put(keys[i], r.points[j], float(r.score[j]))
        meshes = np.stack([self._d[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 468, 3), np.float32)
        return meshes, np.array([self._s.get(k, np.nan) for k in keys], np.float32)

    def save(self) -> None:
        if self.path is None:
            raise ConfigError("MeshCache.save: the cache has no path")
        import io

        from ..utils.io import atomic_write_bytes

        buf = io.BytesIO()
        keys = np.array(sorted(self._d), dtype="U64")
        np.savez(buf, keys=keys, meshes=np.stack([self._d[k] for k in keys]) if len(keys) else
                 np.zeros((0, 468, 3), np.float16), scores=np.array([self._s.get(k, np.nan) for k in keys], np.float32))
        atomic_write_bytes(self.path, buf.getvalue())

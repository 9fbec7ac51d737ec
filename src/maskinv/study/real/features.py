"""Frozen-trunk features computed once per (image, mask draw) and shared by every row.

The trunk (SFace stem + blocks 1..k) is frozen in every row of the study, so its output on an
image is the same for all of them: it is computed once, stored as float16 ``.npy`` under
``cache/features/<trunk id>/<xx>/<item key>.npy`` and read by every row for training and testing.
The trunk id hashes the weights fingerprint and k; the item key hashes the aligned crop's bytes
and the view (``clean`` or ``<renderer>:seed<S>:draw<D>``). Each item is written atomically, so
an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskinv.errors import DataFormatError

__all__ = ["FeatureCache", "view_name"]


def view_name(renderer: str | None, seed: int = 0, draw: int = 0) -> str:
    """``clean`` (renderer None) or ``<revision>:seed0:draw0`` with the renderer's revision
    (:func:`maskinv.masks.mesh.renderer_revision`: ``v1:seed0:draw0``, ``mesh-r3+1a2b3c4d:seed0:draw0``),
    so that features of masks drawn by an older revision of a renderer are never reused."""
    if renderer is None:
        return "clean"
    from maskinv.masks.mesh import renderer_revision

    return f"{renderer_revision(renderer)}:seed{int(seed)}:draw{int(draw)}"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)


class FeatureCache:
    """Trunk features on disk. ``trunk`` maps a float NCHW batch (maskinv's standard tensor) to
    features; ``weights_fingerprint`` names the weights (sha256 of the file for real SFace)."""

    def __init__(self, root: Path, trunk: Any, weights_fingerprint: str, split_k: int, *,
                 batch_size: int = 32, log: Callable[[str], None] | None = None):
        self.trunk = trunk
        self.batch_size = int(batch_size)
        self.log = log or (lambda _m: None)
        self.trunk_id = hashlib.sha256(f"{weights_fingerprint}|k={int(split_k)}".encode()).hexdigest()[:20]
        self.root = Path(root) / self.trunk_id
        self.computed = 0
        self.reused = 0
        self.seconds = 0.0

    def item_key(self, crop: np.ndarray, view: str) -> str:
        h = hashlib.sha256(np.ascontiguousarray(crop).tobytes())
        h.update(f"|{view}".encode())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def ensure(self, n: int, crops_of: Callable[[np.ndarray], np.ndarray], item_keys: Sequence[str],
               what: str = "features") -> None:
        """Compute the missing items. ``crops_of(indices)`` returns their uint8 crops (masked or not)."""
        import torch

        from maskinv.preprocess import to_tensor
        from maskinv.utils.io import atomic_write_with

        missing = np.array([i for i in range(n) if not self._path(item_keys[i]).is_file()], np.int64)
        self.reused += n - missing.size
        if missing.size == 0:
            return
        self.log(f"{what}: computing {missing.size} of {n} trunk features ({n - missing.size} cached)")
        t0 = time.perf_counter()
        self.trunk.eval()
        for b0 in range(0, missing.size, self.batch_size):
            idx = missing[b0:b0 + self.batch_size]
            with torch.no_grad():
                f = self.trunk(to_tensor(crops_of(idx))).to(torch.float16).numpy()
            if not np.isfinite(f).all():
                raise DataFormatError(f"{what}: the trunk gave non-finite features (fp16 overflow?) for item "
                                      f"{item_keys[int(idx[0])]}")
            for j, i in enumerate(idx):
                arr = np.ascontiguousarray(f[j])
                atomic_write_with(self._path(item_keys[int(i)]), lambda tmp, a=arr: _save_npy(tmp, a))
            done = b0 + idx.size
            if done % (self.batch_size * 20) < self.batch_size or done == missing.size:
                el = time.perf_counter() - t0
                self.log(f"{what}: {done}/{missing.size} ({1000 * el / done:.0f} ms/image)")
        self.computed += int(missing.size)
        self.seconds += time.perf_counter() - t0

    def load(self, item_keys: Sequence[str]) -> np.ndarray:
        """Stacked float16 features of ``item_keys`` (all must be cached)."""
        arrs = []
        for k in item_keys:
            p = self._path(k)
            try:
                arrs.append(np.load(p))
            except (OSError, ValueError) as e:
                raise DataFormatError(f"{p}: unreadable cached feature ({e}); delete it to recompute") from e
        return np.stack(arrs) if arrs else np.zeros((0,), np.float16)

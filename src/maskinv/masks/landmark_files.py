"""Landmarks for ``maskinv mask`` from a file: one set for every image, or one per image.

``.npy``: a (K, 2) array for all images or (N, K, 2) in the images' order; ``.json``: an
object mapping relative image paths to ``[[x, y], ...]``.  K is 5 (ArcFace order) or 68
(iBUG); shapes are checked later by :func:`maskinv.masks.geometry.as_landmarks`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

__all__ = ["load_landmarks"]


def load_landmarks(path: str | os.PathLike, rel_paths: list[str]) -> list[np.ndarray]:
    """Landmarks per image, aligned with ``rel_paths``, from a ``.npy`` or ``.json`` file.

    A single-image JSON with one entry is accepted whatever its key.  Raises
    :class:`DataFormatError` naming the file (and the missing image) when it does not fit.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a plain .npy array ({exc})") from None
        if arr.ndim == 2:
            return [arr] * len(rel_paths)
        if arr.ndim == 3 and arr.shape[0] == len(rel_paths):
            return list(arr)
        raise DataFormatError(f"{path}: landmarks of shape {arr.shape} do not fit {len(rel_paths)} image(s); "
                              "expected (K, 2) or (N, K, 2)")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}: expected an object mapping relative image paths to landmarks")
        missing = [r for r in rel_paths if r not in data]
        if missing and len(rel_paths) == 1 and len(data) == 1:
            return [np.asarray(next(iter(data.values())), dtype=np.float64)]
        if missing:
            raise DataFormatError(f"{path}: no landmarks for {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [np.asarray(data[r], dtype=np.float64) for r in rel_paths]
    raise DataFormatError(f"{path}: landmarks file must be .npy or .json")

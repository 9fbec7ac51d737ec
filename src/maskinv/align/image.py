"""Decode the image inputs the facade accepts into uint8 RGB (H, W, 3) arrays.

Accepted: a path (str / ``os.PathLike``), encoded bytes (JPEG, PNG, ... anything OpenCV
decodes), or a NumPy array. Arrays are taken as **RGB** uint8 (H, W, 3); (H, W) grey
and (H, W, 4) RGBA are converted. Float arrays are refused (their scale is ambiguous).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError
from ..utils.images import decode_image

__all__ = ["read_image", "describe_source"]


def describe_source(src: Any, index: int | None = None) -> str:
    """Short human name of an image input for error messages."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    kind = "bytes" if isinstance(src, (bytes, bytearray, memoryview)) else type(src).__name__
    return f"{kind} input #{index}" if index is not None else f"{kind} input"


def _decode(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise DataFormatError(f"{name}: empty image data")
    try:
        return decode_image(data, name)  # the one BGR -> RGB decode site
    except DataFormatError:
        raise DataFormatError(f"{name}: not a decodable image (OpenCV could not read it)") from None


def read_image(src: Any, *, name: str | None = None) -> np.ndarray:
    """Return ``src`` as a contiguous uint8 RGB (H, W, 3) array (never a view of the input)."""
    label = name or describe_source(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if path.is_dir():
            raise DataFormatError(f"{path}: is a folder, expected an image file")
        if not path.is_file():
            raise DataFormatError(f"{path}: image file not found")
        return _decode(path.read_bytes(), str(path))
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(bytes(src), label)
    if isinstance(src, np.ndarray):
        arr = src
        if arr.dtype != np.uint8:
            raise DataFormatError(f"{label}: expected a uint8 RGB array, got dtype {arr.dtype} "
                                  "(convert with (x * 255).round().astype(np.uint8) if it is in [0, 1])")
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif arr.ndim == 3 and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise DataFormatError(f"{label}: expected an (H, W, 3) RGB image, got shape {src.shape}")
        return np.array(arr, dtype=np.uint8, copy=True, order="C")
    raise DataFormatError(f"{label}: unsupported image input of type {type(src).__name__} "
                          "(use a path, encoded bytes or a uint8 RGB array)")

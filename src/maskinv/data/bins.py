"""Verification ``.bin`` files (LFW, CFP-FP, AgeDB-30, ...) read without running their code.

A ``.bin`` is a pickle of ``(bins, issame)``: ``bins`` holds 2N encoded images (pair i is
images 2i and 2i+1), ``issame`` N booleans as a list or a NumPy bool array (REFERENCE §5).
``pickle.load`` on a downloaded file executes whatever the file asks for, so
:func:`load_bin` uses a restricted unpickler: only the constructors needed to rebuild a
NumPy **bool** array or bool scalar can be looked up, each behind a wrapper that checks
its arguments, and everything else is refused before anything is called.  Files written
by Python 2 (images as ``STRING``/``BINSTRING``) are read with ``encoding='bytes'``.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError, UnsafePickleError
from maskinv.utils.io import atomic_write_bytes

__all__ = ["load_bin", "save_bin", "decode_bin", "bin_info"]

_BOOL_SPECS = {"b1", "?", "bool", "|b1"}


def _as_str(x: Any) -> Any:
    return x.decode("latin1") if isinstance(x, bytes) else x


def _is_bool_dtype(d: Any) -> bool:
    return isinstance(d, np.dtype) and d == np.dtype(bool)


def _safe_dtype(spec: Any, align: Any = 0, copy: Any = 0) -> np.dtype:
    if _as_str(spec) not in _BOOL_SPECS:
        raise UnsafePickleError(f"dtype {spec!r} is not allowed (only bool arrays occur in .bin files)")
    return np.dtype(bool)


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` in the unpickler: usable only as _reconstruct's argument."""

    __slots__ = ()


_NDARRAY = _NdarrayToken()


def _safe_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _NDARRAY:
        raise UnsafePickleError(f"array reconstruction of {cls!r} is not allowed")
    if not (isinstance(shape, tuple) and all(isinstance(s, int) for s in shape)):
        raise UnsafePickleError("malformed array reconstruction arguments")
    return np.ndarray.__new__(np.ndarray, shape, _as_str(typecode) if typecode else "b")


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not _is_bool_dtype(dtype):
        raise UnsafePickleError(f"array of dtype {dtype!r} is not allowed")
    data = bytes(buf)
    arr = np.frombuffer(data, dtype=bool).copy()
    return arr.reshape(shape, order=_as_str(order) or "C")


def _safe_scalar(dtype: Any, data: Any = None) -> np.bool_:
    if not _is_bool_dtype(dtype) or not isinstance(data, (bytes, str)) or len(data) != 1:
        raise UnsafePickleError(f"NumPy scalar of dtype {dtype!r} is not allowed")
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, dtype=bool)[0]


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or _as_str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError("only _codecs.encode(str, 'latin1') is allowed")
    return obj.encode("latin1")


_ALLOWED = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; any other lookup raises before a call."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed")


def _unpickle(data: bytes, path: Path) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: unsafe pickle, nothing was executed: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise DataFormatError(f"{path}: not a readable verification .bin pickle ({type(exc).__name__}: {exc})") from None


def _validate(obj: Any, path: Path) -> tuple[list[bytes], np.ndarray]:
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(f"{path}: expected a pickled (bins, issame) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise DataFormatError(f"{path}: bins must be a list of encoded images, got {type(bins).__name__}")
    images: list[bytes] = []
    for i, b in enumerate(bins):
        if isinstance(b, (bytes, bytearray)):
            images.append(bytes(b))
        elif isinstance(b, np.ndarray) and b.dtype == np.uint8 and b.ndim == 1:
            images.append(b.tobytes())
        else:
            raise DataFormatError(f"{path}: image {i} is a {type(b).__name__}, expected encoded image bytes")
    if isinstance(issame, np.ndarray):
        if issame.dtype != bool or issame.ndim != 1:
            raise DataFormatError(f"{path}: issame must be a 1-D bool array, got {issame.dtype} {issame.shape}")
        flags = issame.copy()
    elif isinstance(issame, (list, tuple)):
        for i, v in enumerate(issame):
            if not isinstance(v, (bool, np.bool_)):
                raise DataFormatError(f"{path}: issame[{i}] is a {type(v).__name__}, expected a boolean")
        flags = np.array(issame, dtype=bool).reshape(-1)
    else:
        raise DataFormatError(f"{path}: issame must be a list of booleans or a bool array, got {type(issame).__name__}")
    if len(images) != 2 * flags.size:
        raise DataFormatError(f"{path}: {len(images)} images for {flags.size} pairs; expected exactly 2 per pair")
    return images, flags


def load_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read a verification ``.bin`` safely: (2N encoded images, bool array of N ``issame``).

    Raises :class:`UnsafePickleError` (nothing executed) for any global outside the
    bool-array allow-list, :class:`DataFormatError` for other malformed content.
    """
    path = Path(path)
    data = path.read_bytes()
    return _validate(_unpickle(data, path), path)


def save_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool] | np.ndarray) -> None:
    """Write ``(list of encoded images, list of bools)`` in the ``.bin`` format (atomic).

    Pickle protocol 4 with plain ``bytes`` and ``bool`` objects: readable by InsightFace
    loaders and by :func:`load_bin`.
    """
    imgs = [bytes(b) for b in images]
    flags = [bool(v) for v in np.asarray(issame, dtype=bool).reshape(-1)]
    if len(imgs) != 2 * len(flags):
        raise ConfigError(f"save_bin: {len(imgs)} images for {len(flags)} pairs; expected exactly 2 per pair")
    atomic_write_bytes(path, pickle.dumps((imgs, flags), protocol=4))


def decode_bin(path: str | os.PathLike, image_size: int | tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load and decode a ``.bin``: ((2N, H, W, 3) uint8 RGB, (N,) bool).

    ``image_size`` (int or (H, W)) resizes every image to that size; without it all images
    must share one size.
    """
    import cv2

    from maskinv.utils.images import decode_image

    path = Path(path)
    images, issame = load_bin(path)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    else:
        size = None
    out: np.ndarray | None = None
    for i, data in enumerate(images):
        img = decode_image(data, f"{path}: image {i}")
        if size is None:
            size = img.shape[:2]
        if img.shape[:2] != tuple(size):
            if image_size is None:
                raise DataFormatError(f"{path}: image {i} is {img.shape[1]}x{img.shape[0]}, image 0 is {size[1]}x{size[0]}; pass image_size to resize")
            interp = cv2.INTER_AREA if img.shape[0] > size[0] else cv2.INTER_LINEAR
            img = cv2.resize(img, (size[1], size[0]), interpolation=interp)
        if out is None:
            out = np.empty((len(images), size[0], size[1], 3), dtype=np.uint8)
        out[i] = img
    if out is None:
        h, w = size if size is not None else (0, 0)
        out = np.zeros((0, h, w, 3), dtype=np.uint8)
    return out, issame


def bin_info(path: str | os.PathLike) -> dict:
    """Summary for ``maskinv data info``: pairs, genuine pairs, image size (first image)."""
    from maskinv.utils.images import decode_image

    path = Path(path)
    images, issame = load_bin(path)
    size = None
    if images:
        img = decode_image(images[0], f"{path}: image 0")
        size = [int(img.shape[0]), int(img.shape[1])]
    return {
        "format": "bin",
        "path": str(path),
        "num_pairs": int(issame.size),
        "num_genuine": int(issame.sum()),
        "num_images": len(images),
        "image_size": size,
    }

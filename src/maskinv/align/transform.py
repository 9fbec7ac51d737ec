"""Five-point similarity alignment to the ArcFace template (REFERENCE §4).

The transform is the least-squares similarity (rotation, uniform scale, translation;
no shear, no reflection) from detected points to the template, solved in closed form
(Umeyama 1991). ``cv2.warpAffine`` then resamples the crop.
"""
from __future__ import annotations

import numpy as np

from ..constants import INPUT_SIZE, template_for_size
from ..errors import DataFormatError

__all__ = ["umeyama", "similarity_matrix", "transform_points", "invert_affine", "warp_to_template"]


def _as_points(points, name: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
        raise DataFormatError(f"{name}: expected (N, 2) points with N >= 2, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise DataFormatError(f"{name}: points contain NaN or infinity")
    return pts


def umeyama(src, dst, *, allow_reflection: bool = False) -> np.ndarray:
    """Least-squares similarity ``dst ~ s * R @ src + t`` as a 2x3 float64 matrix.

    ``src`` and ``dst`` are (N, 2) point sets in corresponding order. Reflections are
    excluded unless ``allow_reflection`` (a mirrored face must not be "aligned" by flipping).
    Degenerate input (all source points equal) raises :class:`DataFormatError`.
    """
    src = _as_points(src, "source landmarks")
    dst = _as_points(dst, "template")
    if src.shape != dst.shape:
        raise DataFormatError(f"landmarks {src.shape} and template {dst.shape} differ in shape")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = float((sc**2).sum(1).mean())
    if var_s < 1e-12:
        raise DataFormatError("source landmarks are degenerate (all points coincide)")
    cov = dc.T @ sc / len(src)
    u, sing, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if not allow_reflection and np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # closest proper rotation
    rot = u @ np.diag(d) @ vt
    scale = float((sing * d).sum() / var_s)
    trans = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, trans[:, None]])


def similarity_matrix(landmarks, size: int | tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """The 2x3 matrix taking image points to the ArcFace template scaled to ``size``."""
    return umeyama(landmarks, template_for_size(size))


def transform_points(matrix, points) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    m = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (maps crop coordinates back into the photo)."""
    m = np.asarray(matrix, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.hstack([a_inv, (-a_inv @ m[:, 2])[:, None]])


def warp_to_template(image: np.ndarray, landmarks, size: int | tuple[int, int] = INPUT_SIZE,
                     *, border_value: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` (uint8 (H, W, 3)) so ``landmarks`` (5, 2) meet the template.

    Returns ``(crop, matrix)``: the aligned (h, w, 3) uint8 crop and the 2x3 matrix used.
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise DataFormatError(f"expected a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}")
    h, w = (size, size) if isinstance(size, int) else size
    matrix = similarity_matrix(landmarks, (h, w))
    crop = cv2.warpAffine(np.ascontiguousarray(img), matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(border_value,) * 3)
    return crop, matrix

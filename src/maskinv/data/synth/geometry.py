"""SynthFaces per-image geometry: expression, head pose, simulated detection and alignment.

Everything here moves landmarks (template units, 112x112 crop); nothing draws pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from maskinv.constants import ARCFACE_TEMPLATE_112

__all__ = ["Pose", "pose_face", "five_points"]

_TEMPLATE = ARCFACE_TEMPLATE_112.astype(np.float64)


def _expression(shape: np.ndarray, rng: np.random.Generator, d: float) -> tuple[np.ndarray, dict]:
    s = shape.copy()
    smile = float(min(1.0, rng.uniform(0, 1) ** 2 * d * 1.2))
    opened = float(min(1.0, rng.uniform(0, 1) * d)) if rng.random() < 0.3 else 0.0
    brow = float(rng.uniform(-1, 1) * d)
    eye_open = float(np.clip(1.0 - rng.uniform(0, 0.45) * d, 0.25, 1.0))
    # smile: corners out and up
    for i, sg in ((48, -1), (60, -1), (54, 1), (64, 1)):
        s[i, 0] += sg * 2.2 * smile
        s[i, 1] -= 2.6 * smile
    for i, sg in ((49, -1), (59, -1), (53, 1), (55, 1)):
        s[i, 0] += sg * 1.0 * smile
        s[i, 1] -= 1.2 * smile
    # open mouth: lower lip and jaw drop
    drop = 5.5 * opened
    s[[55, 56, 57, 58, 59], 1] += drop * np.array([0.6, 0.9, 1.0, 0.9, 0.6])
    s[[65, 66, 67], 1] += drop * np.array([0.9, 1.0, 0.9])
    s[[61, 62, 63], 1] -= 0.4 * opened
    s[4:13, 1] += 3.0 * opened * np.sin(np.linspace(0.3, np.pi - 0.3, 9))
    s[17:27, 1] -= 2.0 * brow
    # intra-class variation of the identity's own shape (day-to-day, lens, grooming):
    # region-wise scale jitter, so two images of one identity never match exactly
    def scale_region(idx, sx, sy):
        c = s[idx, :2].mean(0)
        s[idx, 0] = c[0] + (s[idx, 0] - c[0]) * sx
        s[idx, 1] = c[1] + (s[idx, 1] - c[1]) * sy

    scale_region(slice(48, 68), 1 + rng.normal(0, 0.05 * d), 1 + rng.normal(0, 0.10 * d))
    scale_region(slice(31, 36), 1 + rng.normal(0, 0.07 * d), 1.0)
    s[28:36, 1] += rng.normal(0, 0.8 * d)
    scale_region(slice(0, 17), 1 + rng.normal(0, 0.025 * d), 1 + rng.normal(0, 0.03 * d))
    for sl in (slice(36, 42), slice(42, 48)):
        f = 1 + rng.normal(0, 0.05 * d)
        scale_region(sl, f, f)
    s[:, :2] += rng.normal(0, 0.2 * d, (68, 2)).astype(np.float32)
    for up, lo, c in (((37, 38), (40, 41), (36, 39)), ((43, 44), (46, 47), (42, 45))):
        cy = (s[c[0], 1] + s[c[1], 1]) / 2
        for i in up:
            s[i, 1] = cy + (s[i, 1] - cy) * eye_open
        for i in lo:
            s[i, 1] = cy + (s[i, 1] - cy) * (0.5 + 0.5 * eye_open)
    return s, {"smile": smile, "open": opened, "eye_open": eye_open}


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rx @ ry


_POSE_CENTRE = np.array([0.0, 62.0, -28.0])


def _project(pts: np.ndarray, R: np.ndarray) -> np.ndarray:
    q = (pts.astype(np.float64) - _POSE_CENTRE) @ R.T + _POSE_CENTRE
    return q[:, :2]


def five_points(lm68: np.ndarray) -> np.ndarray:
    """ArcFace 5 points from 68 iBUG landmarks: eye centres, nose tip, mouth corners."""
    lm = np.asarray(lm68)
    out = np.stack([lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2), lm[..., 30, :], lm[..., 48, :], lm[..., 54, :]], -2)
    return out.astype(np.float32)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst, 2x3."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = (s**2).sum()
    a = (s * d).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    M = np.array([[a, -b], [b, a]])
    return np.concatenate([M, (md - M @ ms)[:, None]], 1)


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ M[:, :2].T + M[:, 2]




@dataclass
class Pose:
    """Landmarks of one image after expression, head pose and alignment (template units)."""

    lm: np.ndarray                   # (68, 2) aligned 68 iBUG points
    extras: dict[str, np.ndarray]    # aligned drawing anchors (skull, hairline, ears, ...)
    scale: float                     # template units -> aligned units (the aligner's zoom)
    expr: dict                       # expression amounts (smile, open, eye_open)
    yaw: float                       # radians
    pitch: float


def pose_face(shape: np.ndarray, extras: dict[str, np.ndarray], rng: np.random.Generator, d: float) -> Pose:
    """Expression, head pose, then a simulated detector (noisy 5 points) and the usual
    similarity alignment onto the ArcFace template: the residual in-plane rotation/scale/
    shift is that of a real aligner.  ``rng`` draws in a fixed order (expression, yaw,
    pitch, detector noise) so rendered bytes stay stable."""
    shape, expr = _expression(shape, rng, d)
    yaw = math.radians(rng.uniform(-18, 18) * d)
    pitch = math.radians(rng.uniform(-10, 10) * d)
    rot = _rotation(yaw, pitch)
    lm = _project(shape, rot)
    lm[:, 0] += 56.0
    ex = {}
    for name, pts in extras.items():
        q = _project(pts, rot) if len(pts) else np.zeros((0, 2))
        q[:, 0] += 56.0
        ex[name] = q
    det = five_points(lm).astype(np.float64) + rng.normal(0, 1.1 * d, (5, 2))
    M = _similarity(det, _TEMPLATE)
    lm = _apply(M, lm)
    ex = {n: _apply(M, q) for n, q in ex.items()}
    return Pose(lm, ex, float(np.hypot(M[0, 0], M[1, 0])), expr, yaw, pitch)

"""SynthFaces: a seeded procedural generator of face identities with exact landmarks.

Design (see ``docs/synthfaces.md``):

* **Identity** (:func:`sample_identity`) is a set of parameters drawn from
  ``default_rng([seed, 0x1D, index])`` — identity ``k`` of seed ``s`` is the same face
  whatever else is generated.  Most of the identity signal lives in the **lower face**
  (jaw and chin outline, nose length/width/nostrils/tip, mouth width, lip thickness and
  colour, cupid's bow, facial hair, nasolabial folds, moles and freckles on cheeks and
  chin).  The upper face carries less: skin tone, hair and iris colours come from small
  shared palettes, hair style changes per image with a high probability, and eye/brow
  shape vary over narrow ranges — so a mask over nose, mouth and chin removes a real
  part of the identity (REFERENCE §9, pitfall 2).
* **Per image** (``default_rng([seed, 0x1A, identity, image_index])``): expression (smile,
  open mouth, brow raise, eye openness), head pose (yaw/pitch applied to the 3-D
  landmark model, so the picture and the landmarks move together), a simulated detector
  (noisy 5 points) followed by the similarity alignment onto the ArcFace template, which
  leaves the residual in-plane rotation/scale/shift of a real aligner, illumination
  direction/strength/tint, background, glasses/cap, blur, sensor noise and JPEG quality.
  Backgrounds are smooth two-colour gradients from a shared palette and noise is weak:
  no per-image nuisance is more identifying than the face (pitfall 1).
* **Rendering** draws everything from the posed landmarks with anti-aliased OpenCV
  primitives (sub-pixel ``shift``), at ``supersample`` times the output size when the
  output is small, so the 68 iBUG landmarks and the 5 ArcFace points of every image are
  exact in output pixel coordinates (``constants.template_for_size`` convention).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from maskinv.constants import ARCFACE_TEMPLATE_112
from maskinv.utils.images import decode_image, encode_image

__all__ = [
    "DIFFICULTIES",
    "FaceIdentity",
    "sample_identity",
    "sample_identities",
    "render_face",
    "render_faces",
    "five_points",
    "encode_jpeg",
    "generate_dataset",
    "preview_grid",
]

#: Named difficulty levels: a multiplier on every per-image nuisance and intra-class
#: variation amplitude.  1.0 ("default") was calibrated with ``benchmarks/bench_data.py
#: --calibrate`` (docs/synthfaces.md): a ~0.4 M-parameter CNN trained on 600 x 12 images at
#: 64 px reaches ~97 % 10-fold accuracy on held-out identities.
DIFFICULTIES = {"easy": 0.5, "default": 1.0, "hard": 1.5}
# Internal amplitudes are written for a unit that turned out too easy (98.5 % U-U);
# the calibrated default is 1.5 of those units.
_AMPLITUDE_PER_UNIT = 1.5

_ID_TAG = 0x1D  # seed-sequence tags keep identity, image and pair streams independent
_IMG_TAG = 0x1A
_PAIR_TAG = 0x9A

# Shared palettes (RGB).  Small on purpose: the upper face must not identify on its own.
_SKIN = np.array([[236, 198, 170], [224, 177, 140], [198, 146, 108], [160, 110, 78], [112, 76, 54]], np.float32)
_HAIR = np.array([[25, 20, 18], [72, 48, 30], [128, 88, 52], [205, 170, 110], [150, 60, 30], [150, 150, 150]], np.float32)
_IRIS = np.array([[70, 45, 30], [40, 28, 22], [70, 110, 160], [80, 120, 70]], np.float32)
_IRIS_P = np.array([0.45, 0.3, 0.15, 0.1])
_BG = np.array(
    [[200, 200, 205], [120, 130, 140], [60, 70, 80], [180, 160, 130], [90, 110, 90], [150, 170, 200],
     [210, 190, 170], [40, 40, 45], [170, 120, 110], [100, 90, 130], [230, 230, 220], [130, 150, 120]],
    np.float32,
)
_N_HAIR_STYLES = 7  # 0 shaved, 1 short, 2 side part, 3 long, 4 fringe, 5 curly, 6 receding
_FACIAL_HAIR = ("none", "stubble", "mustache", "goatee", "beard", "chinstrap", "mustache_goatee")
_FACIAL_HAIR_P = np.array([0.40, 0.13, 0.12, 0.10, 0.12, 0.06, 0.07])


def _difficulty(d: str | float) -> float:
    """Named or numeric difficulty -> internal amplitude multiplier."""
    return _difficulty_level(d) * _AMPLITUDE_PER_UNIT


def _difficulty_level(d: str | float) -> float:
    if isinstance(d, str):
        try:
            return DIFFICULTIES[d]
        except KeyError:
            from maskinv.errors import ConfigError

            raise ConfigError(f"unknown SynthFaces difficulty {d!r}; use one of {sorted(DIFFICULTIES)} or a number >= 0") from None
    d = float(d)
    if not (d >= 0 and math.isfinite(d)):
        from maskinv.errors import ConfigError

        raise ConfigError(f"SynthFaces difficulty must be a finite number >= 0, got {d}")
    return d


# ----------------------------------------------------------------------------------
# Canonical 3-D landmark model (template units: 112x112 crop, x centred on 0).
def _canonical() -> tuple[np.ndarray, np.ndarray]:
    p = np.zeros((68, 2), np.float32)
    # jaw 0..16 is rebuilt per identity; brows
    p[17:22] = [[-27, 43.5], [-22.5, 40.5], [-17, 39.5], [-11.5, 40], [-6.5, 41.5]]
    p[22:27] = [[6.5, 41.5], [11.5, 40], [17, 39.5], [22.5, 40.5], [27, 43.5]]
    # nose bridge and tip, nostril base
    p[27:31] = [[0, 52], [0, 58.5], [0, 65], [0, 71.7]]
    p[31:36] = [[-8, 75], [-4, 76.5], [0, 77.2], [4, 76.5], [8, 75]]
    # eyes, iBUG order for both: left corner, upper lid left->right, right corner, lower lid
    # right->left (36 is the image-left eye's outer corner, 42 the image-right eye's inner)
    for base, cx in ((36, -17.6), (42, 17.6)):
        hw = 6.5
        p[base : base + 6] = [[cx - hw, 51.6], [cx - 2.3, 48.6], [cx + 2.3, 48.6], [cx + hw, 51.6], [cx + 2.3, 54.0], [cx - 2.3, 54.0]]
    # outer lips 48..59, inner lips 60..67
    p[48:60] = [[-14.6, 92.3], [-9, 89.3], [-3.5, 87.6], [0, 88.3], [3.5, 87.6], [9, 89.3], [14.6, 92.3],
                [9, 96.5], [4.5, 98.3], [0, 98.8], [-4.5, 98.3], [-9, 96.5]]
    p[60:68] = [[-12.5, 92.3], [-4, 91.6], [0, 91.8], [4, 91.6], [12.5, 92.3], [4, 92.8], [0, 93.0], [-4, 92.8]]
    z = np.zeros(68, np.float32)
    z[17:27] = 3.0
    z[27:31] = [7, 11, 15, 19]
    z[31:36] = [9, 11, 12, 11, 9]
    z[36:48] = 0.0
    z[[36, 45]] = -2.0
    z[48:68] = 8.0
    z[[48, 54, 60, 64]] = 5.5
    return p, z


_BASE68, _Z68 = _canonical()
_TEMPLATE = ARCFACE_TEMPLATE_112.astype(np.float64)


@dataclass
class FaceIdentity:
    """Parameters of one SynthFaces identity (drawn by :func:`sample_identity`)."""

    index: int
    seed: int
    params: dict[str, Any] = field(repr=False)
    #: neutral 3-D landmarks (68, 3) in template units, x centred on 0
    shape: np.ndarray = field(repr=False)
    #: extra 3-D anchor points used for drawing (forehead, hairline, ears, marks ...)
    extras: dict[str, np.ndarray] = field(repr=False)


def _jaw(a: float, y0: float, chin_y: float, n: float, chin_w: float) -> np.ndarray:
    t = np.linspace(0.0, np.pi, 17)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / n
    x = -a * np.sign(c) * np.abs(c) ** e - np.sign(c) * chin_w * s**6
    y = y0 + (chin_y - y0) * s**e
    return np.stack([x, y], 1).astype(np.float32)


def sample_identity(seed: int, index: int) -> FaceIdentity:
    """Identity ``index`` of generator ``seed`` (independent of how many are drawn)."""
    rng = np.random.default_rng([int(seed), _ID_TAG, int(index)])
    u = rng.uniform
    P: dict[str, Any] = {}
    # ---- lower face: strong identity ------------------------------------------
    P["jaw_a"] = u(33.0, 41.0)
    P["jaw_y0"] = u(47.0, 53.0)
    P["chin_y"] = u(104.0, 117.0)
    P["jaw_n"] = u(1.9, 4.2)
    P["chin_w"] = u(0.0, 7.0)
    P["chin_cleft"] = rng.random() < 0.2
    P["nose_tip_dy"] = u(-4.0, 3.0)
    P["nose_w"] = u(5.0, 11.0)
    P["nose_base_dy"] = u(2.5, 6.5)
    P["nose_tip_r"] = u(2.2, 4.8)
    P["nose_bend"] = u(-1.6, 1.6)
    P["nostril_dark"] = u(0.25, 0.65)
    P["bridge_w"] = u(2.0, 5.0)
    P["mouth_hw"] = u(11.0, 18.0)
    P["mouth_dy"] = u(-3.5, 3.5)
    P["lip_up"] = u(1.2, 5.0)
    P["lip_lo"] = u(1.8, 6.5)
    P["cupid"] = u(0.0, 2.2)
    P["mouth_droop"] = u(-1.8, 1.8)
    P["lip_rgb"] = np.array([u(120, 215), u(45, 120), u(55, 125)], np.float32)
    P["fh_type"] = int(rng.choice(len(_FACIAL_HAIR), p=_FACIAL_HAIR_P))
    P["fh_rgb"] = _HAIR[rng.integers(0, 5)] * u(0.7, 1.0)
    P["fh_density"] = u(0.55, 1.0)
    P["nasolabial"] = u(0.0, 1.0)
    P["blush"] = u(0.0, 0.22)
    P["dimples"] = rng.random() < 0.2
    n_moles = int(rng.poisson(1.6))
    P["moles"] = np.stack([u(-24, 24, n_moles), u(72, 108, n_moles), u(0.6, 1.6, n_moles)], 1).astype(np.float32)
    n_frk = int(rng.integers(14, 34)) if rng.random() < 0.3 else 0
    P["freckles"] = np.stack([u(-26, 26, n_frk), u(60, 90, n_frk)], 1).astype(np.float32)
    # ---- upper face: weak identity (small palettes / narrow ranges) ---------------
    P["skin"] = _SKIN[rng.integers(0, len(_SKIN))] + rng.normal(0, 3.0, 3).astype(np.float32)
    P["hair_style"] = int(rng.integers(0, _N_HAIR_STYLES))
    P["hair_rgb"] = _HAIR[rng.integers(0, len(_HAIR))].copy()
    P["hairline"] = u(20.0, 30.0)
    P["iris_rgb"] = _IRIS[rng.choice(len(_IRIS), p=_IRIS_P)].copy()
    P["eye_hw"] = u(6.0, 7.0)
    P["eye_h"] = u(0.9, 1.1)
    P["eye_tilt"] = u(-0.8, 0.8)
    P["brow_t"] = u(1.4, 2.6)
    P["brow_arch"] = u(0.0, 2.5)
    P["brow_dy"] = u(-1.2, 1.2)
    P["ear_s"] = u(0.9, 1.1)
    shape, extras = _identity_geometry(P)
    return FaceIdentity(int(index), int(seed), P, shape, extras)


def sample_identities(n: int, seed: int, start: int = 0) -> list[FaceIdentity]:
    """Identities ``start .. start+n-1`` of generator ``seed``."""
    return [sample_identity(seed, start + i) for i in range(n)]


def _identity_geometry(P: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    p = _BASE68.copy()
    z = _Z68.copy()
    p[0:17] = _jaw(P["jaw_a"], P["jaw_y0"], P["chin_y"], P["jaw_n"], P["chin_w"])
    zj = -9.0 + 11.0 * np.sin(np.linspace(0, np.pi, 17)) ** 2
    z[0:17] = zj
    # nose
    tip_y = 71.7 + P["nose_tip_dy"]
    p[28:31, 1] = [52 + (tip_y - 52) * 0.35, 52 + (tip_y - 52) * 0.7, tip_y]
    p[28:31, 0] += np.array([0.3, 0.65, 1.0]) * P["nose_bend"]
    base_y = tip_y + P["nose_base_dy"]
    w = P["nose_w"]
    p[31:36, 0] = np.array([-w, -w * 0.5, 0, w * 0.5, w]) + P["nose_bend"] * 0.8
    p[31:36, 1] = np.array([base_y - 2.0, base_y - 0.6, base_y, base_y - 0.6, base_y - 2.0])
    # mouth: scale the canonical lips to width/thickness, then move
    m = p[48:68].copy()
    cy = 92.3
    m[:, 0] *= P["mouth_hw"] / 14.6
    up = m[:, 1] < cy
    m[up, 1] = cy - (cy - m[up, 1]) * (P["lip_up"] / 4.3)
    lo = m[:, 1] > cy
    m[lo, 1] = cy + (m[lo, 1] - cy) * (P["lip_lo"] / 6.5)
    inner = np.arange(60, 68) - 48
    m[inner, 1] = cy + (m[inner, 1] - cy) * 0.35
    # cupid's bow: dip at 51 between peaks 50/52, never deeper than 40 % of the upper lip
    dip = min(P["cupid"] * 0.6, 0.4 * (m[62 - 48, 1] - m[51 - 48, 1]))
    m[51 - 48, 1] += dip
    m[[50 - 48, 52 - 48], 1] -= P["cupid"] * 0.4
    m[[0, 6, 12, 16], 1] += P["mouth_droop"]
    m[:, 1] += P["mouth_dy"]
    # keep the mouth above the chin for extreme combinations
    over = m[:, 1].max() - (P["chin_y"] - 7.0)
    if over > 0:
        m[:, 1] -= over
    p[48:68] = m
    # eyes
    for base in (36, 42):
        e = p[base : base + 6].copy()
        c = e.mean(0)
        e[:, 0] = c[0] + (e[:, 0] - c[0]) * (P["eye_hw"] / 6.5)
        e[:, 1] = c[1] + (e[:, 1] - c[1]) * P["eye_h"]
        sgn = -1 if base == 36 else 1
        e[:, 1] += sgn * (e[:, 0] - c[0]) / 6.5 * (-P["eye_tilt"])
        p[base : base + 6] = e
    # brows
    for sl in (slice(17, 22), slice(22, 27)):
        p[sl, 1] += P["brow_dy"]
        p[sl.start + 1 : sl.start + 4, 1] -= P["brow_arch"] * np.array([0.6, 1.0, 0.6])
    shape = np.concatenate([p, z[:, None]], 1).astype(np.float32)

    a, y0 = P["jaw_a"], P["jaw_y0"]
    ex: dict[str, np.ndarray] = {}
    t = np.linspace(0, np.pi, 13)
    # forehead/skull outline from right temple over the top to the left temple
    ex["skull"] = np.stack([(a + 1.0) * np.cos(t), y0 - (y0 - 2.0) * np.sin(t) ** 0.8, -6 * np.sin(t)], 1)
    ex["hair_outer"] = np.stack([(a + 3.5) * np.cos(t), y0 + 2 - (y0 + 6.0) * np.sin(t) ** 0.7, -8 * np.sin(t)], 1)
    hl = P["hairline"]
    ex["hairline"] = np.stack([(a - 0.5) * np.cos(t), (y0 - 4) - (y0 - 4 - hl) * np.sin(t) ** 0.6, -2 * np.sin(t)], 1)
    ex["ears"] = np.array([[-(a + 1.5), 60.0, -14.0], [a + 1.5, 60.0, -14.0]], np.float32)
    jl, jr = p[4], p[12]
    ex["neck"] = np.array([[jl[0] + 4, jl[1], -6], [-20, 140, -8], [20, 140, -8], [jr[0] - 4, jr[1], -6]], np.float32)
    # cheek/chin marks: keep them inside the jaw outline at their height
    def jaw_w(y):  # half face width at height y (from the left half of the jaw)
        return np.interp(y, p[0:9, 1], -p[0:9, 0])

    mol = P["moles"]
    if len(mol):
        xs = np.clip(mol[:, 0], -0.8 * jaw_w(mol[:, 1]), 0.8 * jaw_w(mol[:, 1]))
        ys = np.minimum(mol[:, 1], P["chin_y"] - 4)
        ex["moles"] = np.stack([xs, ys, np.full_like(xs, 4.0)], 1)
    else:
        ex["moles"] = np.zeros((0, 3), np.float32)
    frk = P["freckles"]
    ex["freckles"] = np.stack([np.clip(frk[:, 0], -0.85 * jaw_w(frk[:, 1]), 0.85 * jaw_w(frk[:, 1])), frk[:, 1], np.full(len(frk), 5.0)], 1) if len(frk) else np.zeros((0, 3))
    # nasolabial folds: nostril side -> beside the mouth corner
    nl = []
    for s_, i_n, i_m in ((-1, 31, 48), (1, 35, 54)):
        a0 = p[i_n] + [s_ * 3.0, -1.0]
        a2 = p[i_m] + [s_ * 3.0, 2.0]
        a1 = (a0 + a2) / 2 + [s_ * 3.0, 0]
        nl.append(np.array([[*a0, 6], [*a1, 5], [*a2, 4]]))
    ex["nasolabial"] = np.concatenate(nl, 0)
    ex = {k: np.asarray(v, np.float32).reshape(-1, 3) for k, v in ex.items()}
    return shape, ex


# ----------------------------------------------------------------------------------
# Per-image variation, pose and alignment.
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


# ----------------------------------------------------------------------------------
# Rendering.
_RAMP_N = 8  # smooth fields are computed on an 8x8 grid and upsampled bilinearly
_RAMP_V = (np.arange(_RAMP_N, dtype=np.float32) + 0.5) / _RAMP_N - 0.5


def _ramp(cx: float, cy: float) -> np.ndarray:
    """8x8 samples of the linear field ``cx * x + cy * y`` over the image (x, y in [-0.5, 0.5])."""
    return (cx * _RAMP_V)[None, :] + (cy * _RAMP_V)[:, None]


def _upsample(small: np.ndarray, n: int) -> np.ndarray:
    import cv2

    return cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)


_NOISE_BANK: dict[int, np.ndarray] = {}


def _noise_patch(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit Gaussian noise (n, n, 3) cut from a fixed bank at a random offset/orientation.

    A shared bank (fixed seed) instead of fresh noise per image: cheaper, and the noise
    of one image is not a unique fingerprint a network could memorise (pitfall 1).
    """
    bank = _NOISE_BANK.get(n)
    if bank is None:
        bank = np.random.default_rng(0x5EED).standard_normal((2 * n, 2 * n, 3), dtype=np.float32)
        _NOISE_BANK[n] = bank
    y, x = rng.integers(0, n, 2)
    patch = bank[y : y + n, x : x + n]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch[:, :, rng.permutation(3)])


def _col(c: Iterable[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in c)
    return (min(255.0, max(0.0, r)), min(255.0, max(0.0, g)), min(255.0, max(0.0, b)))


def render_face(
    identity: FaceIdentity,
    rng: np.random.Generator,
    *,
    size: int = 112,
    difficulty: str | float = "default",
    supersample: int | None = None,
    clean: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one image of ``identity``: (uint8 RGB (size, size, 3), landmarks (68, 2), info).

    ``rng`` drives every per-image choice.  ``clean=True`` turns off the photometric
    nuisance (illumination, blur, noise, glasses, cap) but keeps pose and expression —
    useful for tests.  ``info`` holds the per-image choices (e.g. ``jpeg_quality``).
    """
    import cv2

    d = _difficulty(difficulty)
    P = identity.params
    if supersample is None:
        supersample = 2 if size < 96 else 1
    ss = int(supersample)
    R = size * ss  # render resolution
    k = size / 112.0  # template -> output pixels

    shape, expr = _expression(identity.shape, rng, d)
    yaw = math.radians(rng.uniform(-18, 18) * d)
    pitch = math.radians(rng.uniform(-10, 10) * d)
    rot = _rotation(yaw, pitch)
    lm = _project(shape, rot)
    lm[:, 0] += 56.0
    ex = {}
    for name, pts in identity.extras.items():
        q = _project(pts, rot) if len(pts) else np.zeros((0, 2))
        q[:, 0] += 56.0
        ex[name] = q
    # simulated detector: noisy 5 points, then the usual similarity alignment
    det = five_points(lm).astype(np.float64) + rng.normal(0, 1.1 * d, (5, 2))
    M = _similarity(det, _TEMPLATE)
    lm = _apply(M, lm)
    ex = {n: _apply(M, q) for n, q in ex.items()}
    scale_px = float(np.hypot(M[0, 0], M[1, 0])) * k * ss  # template units -> render px

    # output pixel centres -> render pixel centres (INTER_AREA downsample convention),
    # in 1/16 px for cv2's shift=4 sub-pixel drawing: ((p * k + 0.5) * ss - 0.5) * 16
    A, B = k * ss * 16.0, (0.5 * ss - 0.5) * 16.0

    def px(pts: np.ndarray) -> np.ndarray:
        return np.asarray(pts) * A + B

    def poly(pts: np.ndarray) -> np.ndarray:
        return np.round(px(pts)).astype(np.int32).reshape(-1, 1, 2)

    def pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(float(p[0]) * A + B)), int(round(float(p[1]) * A + B))

    def rad(r: float) -> int:
        return max(1, int(round(r * scale_px * 16)))

    def th(t: float) -> int:
        return max(1, int(round(t * scale_px)))

    AA = cv2.LINE_AA
    SH = 4

    # -- background: smooth gradient between two shared palette colours -------------
    ia, ib = rng.integers(0, len(_BG), 2)
    ang = rng.uniform(0, 2 * np.pi)
    bg_jit = rng.uniform(0.85, 1.15)
    t = np.clip(_ramp(math.cos(ang), math.sin(ang)) + 0.5, 0, 1)[..., None]
    img = _upsample(((_BG[ia] * (1 - t) + _BG[ib] * t) * bg_jit).clip(0, 255).astype(np.uint8), R)

    skin = P["skin"] * rng.uniform(0.97, 1.03)
    hair_rgb = P["hair_rgb"] * rng.uniform(0.85, 1.15)
    style = P["hair_style"]
    if rng.random() < min(0.9, 0.4 * d):  # hair is done differently today
        style = int(rng.integers(0, _N_HAIR_STYLES))
    hair = _col(hair_rgb)
    skin_c = _col(skin)

    # long hair falls behind the head
    if style == 3:
        ho = ex["hair_outer"]
        back = np.concatenate([[ho[0] + [2, 0]], ho, [ho[-1] - [2, 0]], [[ho[-1][0] - 4, 130]], [[ho[0][0] + 4, 130]]])
        cv2.fillPoly(img, [poly(back)], hair, AA, SH)
    elif style == 5:
        ho = ex["hair_outer"]
        c = ho.mean(0)
        big = c + (ho - c) * 1.18
        cv2.fillPoly(img, [poly(np.concatenate([big, [[big[-1][0], lm[2][1]], [big[0][0], lm[14][1]]]]))], hair, AA, SH)

    # neck and ears
    cv2.fillPoly(img, [poly(ex["neck"])], _col(skin * 0.78), AA, SH)
    ear_ax = (rad(3.4 * P["ear_s"]), rad(8.0 * P["ear_s"]))
    for e in ex["ears"]:
        cv2.ellipse(img, pt(e), ear_ax, 0, 0, 360, _col(skin * 0.9), -1, AA, SH)
    # face: jaw outline + forehead
    face = np.concatenate([lm[0:17], ex["skull"]])
    cv2.fillPoly(img, [poly(face)], skin_c, AA, SH)
    # hair on top
    hline = ex["hairline"].copy()
    if style == 0:  # shaved: faint tint on the skull
        cap = np.concatenate([ex["skull"], hline[::-1]])
        cv2.fillPoly(img, [poly(cap)], _col(skin * 0.55 + hair_rgb * 0.45), AA, SH)
    else:
        if style == 2:  # side part: hairline lower on one side
            hline[:, 1] += np.linspace(3, -2, len(hline)) * np.sin(np.linspace(0, np.pi, len(hline)))
        elif style == 4:  # fringe: low jagged hairline
            hline[:, 1] += 9.0 * np.sin(np.linspace(0, np.pi, len(hline))) ** 2
            hline[1::2, 1] += 2.0
        elif style == 6:  # receding
            hline[:, 1] -= 6.0 * np.sin(np.linspace(0, np.pi, len(hline))) ** 8
        elif style == 5:
            hline[:, 1] += 2.0
        hp = np.concatenate([ex["hair_outer"], hline[::-1]])
        cv2.fillPoly(img, [poly(hp)], hair, AA, SH)

    # cheeks, folds, dimples
    if P["blush"] > 0.02:
        bl = _col(skin * (1 - P["blush"]) + np.array([220, 90, 90]) * P["blush"])
        for i, j in ((2, 31), (14, 35)):
            c = lm[i] * 0.45 + lm[j] * 0.55
            cv2.ellipse(img, pt(c), (rad(6), rad(4)), 0, 0, 360, bl, -1, AA, SH)
    nl_strength = min(1.0, P["nasolabial"] + expr["smile"] * 0.5)
    if nl_strength > 0.15:
        col = _col(skin * (1 - 0.22 * nl_strength))
        nl = ex["nasolabial"]
        cv2.polylines(img, [poly(nl[:3]), poly(nl[3:])], False, col, th(0.9), AA, SH)
    for q in ex["freckles"]:
        cv2.circle(img, pt(q), rad(0.45), _col(skin * 0.72), -1, AA, SH)
    for q, r in zip(ex["moles"], P["moles"][:, 2] if len(P["moles"]) else []):
        if rng.random() < 0.15 * d:  # hidden by make-up / lighting
            continue
        cv2.circle(img, pt(q), rad(r * 0.6), _col(skin * 0.35), -1, AA, SH)
    if P["dimples"]:
        for i in (48, 54):
            cv2.circle(img, pt(lm[i] + [(-3.2 if i == 48 else 3.2), 0.5]), rad(0.6), _col(skin * 0.75), -1, AA, SH)
    if P["chin_cleft"]:
        cv2.line(img, pt(lm[8] + [0, -5]), pt(lm[8] + [0, -2]), _col(skin * 0.75), th(0.8), AA, SH)

    # facial hair
    fht = _FACIAL_HAIR[P["fh_type"]]
    # grooming changes between photos: trimmed to stubble, or unshaven
    if rng.random() < (0.12 if fht != "none" else 0.06) * d:
        fht = "stubble" if fht != "stubble" else "none"
    info_fh = fht
    if fht != "none":
        dens = float(np.clip(P["fh_density"] * rng.uniform(1 - 0.15 * d, 1 + 0.1 * d), 0.2, 1.0))
        fh = P["fh_rgb"] * dens + skin * (1 - dens)
        stubble = skin * 0.6 + fh * 0.4
        if fht in ("beard", "stubble", "chinstrap"):
            if fht == "chinstrap":  # a band along the jaw line
                inner = lm[3:14] + (np.array([56.0, 85.0]) - lm[3:14]) * 0.18
            else:  # cheeks and chin below the line jaw-point 2 -> mouth -> jaw-point 14
                inner = np.concatenate([[lm[2]], [lm[48] + [-2, 0]], lm[59:54:-1] + [0, 2.0], [lm[54] + [2, 0]], [lm[14]]])
            outer = lm[3:14][::-1] if fht == "chinstrap" else lm[2:15][::-1]
            cv2.fillPoly(img, [poly(np.concatenate([inner, outer]))], _col(stubble if fht == "stubble" else fh), AA, SH)
        if fht in ("mustache", "beard", "mustache_goatee", "stubble"):
            # nostril base down to the upper lip, corner to corner
            mst = np.concatenate([[lm[48] + [-1.5, 1.5]], lm[31:36] + [0, 1.0], [lm[54] + [1.5, 1.5]], lm[53:48:-1] + [0, -0.3]])
            cv2.fillPoly(img, [poly(mst)], _col(stubble if fht == "stubble" else fh), AA, SH)
        if fht in ("goatee", "mustache_goatee"):
            g = np.concatenate([lm[[59, 58, 57, 56, 55]] + [0, 1.0], [lm[9] + [-1, 0]], [lm[8] + [0, 0.5]], [lm[7] + [1, 0]]])
            cv2.fillPoly(img, [poly(g)], _col(fh), AA, SH)

    # nose: bridge sides, tip, alar base, nostrils
    ns = _col(skin * (1 - 0.16))
    bw = P["bridge_w"]
    for sgn in (-1, 1):
        side = lm[27:31] + [sgn * bw * 0.55, 0]
        side[-1] = lm[31 if sgn < 0 else 35] + [-sgn * 1.0, -2.5]
        cv2.polylines(img, [poly(side)], False, ns, th(0.7), AA, SH)
    cv2.circle(img, pt(lm[30] + [0, 0.8]), rad(P["nose_tip_r"] * 0.75), _col(skin * 1.05), -1, AA, SH)
    cv2.polylines(img, [poly(lm[31:36])], False, _col(skin * 0.7), th(0.9), AA, SH)
    nd = _col(skin * (1 - P["nostril_dark"]) * 0.8)
    for i in (32, 34):
        cv2.ellipse(img, pt(lm[i] + [0, -0.9]), (rad(0.35 * P["nose_w"] * 0.5 + 0.6), rad(0.9)), 0, 0, 360, nd, -1, AA, SH)

    # mouth
    lip = _col(P["lip_rgb"] * (1 + rng.uniform(-0.08, 0.08, 3) * d))
    cv2.fillPoly(img, [poly(lm[48:60])], lip, AA, SH)
    if expr["open"] > 0.12:
        cv2.fillPoly(img, [poly(lm[60:68])], (40, 15, 20), AA, SH)
        teeth = np.concatenate([lm[60:65], lm[[64, 63, 62, 61, 60]] * 0.6 + lm[[64, 65, 66, 67, 60]] * 0.4])
        cv2.fillPoly(img, [poly(teeth)], (228, 222, 205), AA, SH)
    cv2.polylines(img, [poly(np.concatenate([lm[60:65], lm[[65, 66, 67, 60]]]))], True, _col(P["lip_rgb"] * 0.55), th(0.7), AA, SH)

    # eyes
    iris = _col(P["iris_rgb"])
    for base in (36, 42):
        e = lm[base : base + 6]
        cv2.fillPoly(img, [poly(e)], (235, 232, 228), AA, SH)
        c = e.mean(0) + [0, -0.2]
        open_h = np.linalg.norm(e[1] - e[5]) * 0.5
        r = max(0.8, min(2.7, open_h * 1.15))
        cv2.circle(img, pt(c), rad(r), iris, -1, AA, SH)
        cv2.circle(img, pt(c), rad(r * 0.45), (12, 10, 10), -1, AA, SH)
        cv2.polylines(img, [poly(e[[0, 1, 2, 3]])], False, (35, 25, 22), th(1.0), AA, SH)
        cv2.polylines(img, [poly(e[[3, 4, 5, 0]])], False, _col(skin * 0.6), th(0.6), AA, SH)
    # brows
    brow = _col(hair_rgb * 0.8 if hair_rgb.mean() < 140 else hair_rgb * 0.6)
    for sl in (slice(17, 22), slice(22, 27)):
        b = lm[sl]
        tb = P["brow_t"] * np.array([0.8, 1.0, 1.0, 0.95, 0.85])[:, None]
        if sl.start == 22:
            tb = tb[::-1]
        cv2.fillPoly(img, [poly(np.concatenate([b - [0, 0.5] * tb, (b + [0, 0.5] * tb)[::-1]]))], brow, AA, SH)

    info: dict[str, Any] = {"style": style, "facial_hair": info_fh, **expr, "yaw": math.degrees(yaw), "pitch": math.degrees(pitch)}
    if not clean:
        # accessories: weakly-identifying upper-face clutter
        if rng.random() < 0.12 * d:
            gc = _col(rng.uniform(10, 160, 3))
            for base in (36, 42):
                c = lm[base : base + 6].mean(0)
                cv2.ellipse(img, pt(c), (rad(8.5), rad(6.0)), 0, 0, 360, gc, th(0.9), AA, SH)
            cv2.line(img, pt(lm[39] + [1.5, -1]), pt(lm[42] + [-1.5, -1]), gc, th(0.9), AA, SH)
            info["glasses"] = True
        if rng.random() < 0.08 * d:
            cc = _col(rng.uniform(20, 230, 3))
            brim_y = min(lm[19][1], lm[24][1]) - rng.uniform(4, 9)
            capp = np.concatenate([ex["hair_outer"] + [0, -3], [[lm[16][0] + 8, brim_y], [lm[0][0] - 8, brim_y]]])
            capp[:, 1] = np.minimum(capp[:, 1], brim_y)
            cv2.fillPoly(img, [poly(capp)], cc, AA, SH)
            info["cap"] = True

    if ss > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)

    if not clean:
        la = rng.uniform(0, 2 * np.pi)
        strength = rng.uniform(0.0, 0.45) * d
        ambient = rng.uniform(0.82, 1.12) if d > 0 else 1.0
        tint = 1.0 + rng.uniform(-0.07, 0.07, 3).astype(np.float32) * d
        light = (ambient + strength * _ramp(math.cos(la), math.sin(la)))[..., None] * tint
        f = img.astype(np.float32)
        sigma = rng.uniform(0.0, 1.1) * d * k if rng.random() < 0.55 else 0.0
        if sigma > 0.15:
            f = cv2.GaussianBlur(f, (0, 0), sigma)
        f = cv2.multiply(f, _upsample(light.astype(np.float32), size))
        noise = rng.uniform(0.0, 4.0) * d
        if noise > 0.2:
            f = cv2.scaleAdd(_noise_patch(rng, size), noise, f)
        np.clip(f, 0, 255, out=f)
        img = (f + 0.5).astype(np.uint8)
        info.update(light_strength=strength, blur_sigma=sigma, noise=noise)
    q_lo = int(round(max(30.0, 95 - 40 * d)))
    info["jpeg_quality"] = int(rng.integers(q_lo, 96)) if not clean else 95
    return img, (lm * k).astype(np.float32), info


def _image_rng(seed: int, identity: int, image_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _IMG_TAG, int(identity), int(image_index)])


def render_faces(
    identities: Sequence[int] | np.ndarray,
    *,
    seed: int = 0,
    image_indices: Sequence[int] | np.ndarray | None = None,
    size: int = 112,
    difficulty: str | float = "default",
    clean: bool = False,
    jpeg: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a batch in memory: ((N, size, size, 3) uint8 RGB, (N, 68, 2) float32 landmarks).

    ``identities[i]`` is an identity index of generator ``seed``; ``image_indices[i]``
    (default ``0, 1, 2, ...``) picks which of that identity's images (pose, expression,
    nuisance), so ``(seed, identity, image_index)`` always gives the same picture.
    ``jpeg=True`` passes each image through JPEG at its per-image quality, as stored
    datasets are.  Use :func:`five_points` for the 5 ArcFace points.
    """

    ids = np.asarray(identities, dtype=np.int64).reshape(-1)
    idx = np.arange(ids.size) if image_indices is None else np.asarray(image_indices, np.int64).reshape(-1)
    if idx.size != ids.size:
        raise ValueError(f"render_faces: {ids.size} identities but {idx.size} image indices")
    cache: dict[int, FaceIdentity] = {}
    imgs = np.empty((ids.size, size, size, 3), np.uint8)
    lms = np.empty((ids.size, 68, 2), np.float32)
    for n, (i, j) in enumerate(zip(ids.tolist(), idx.tolist())):
        ident = cache.get(i)
        if ident is None:
            ident = cache[i] = sample_identity(seed, i)
        img, lm, info = render_face(ident, _image_rng(seed, i, j), size=size, difficulty=difficulty, clean=clean)
        if jpeg:
            img = decode_image(encode_jpeg(img, info["jpeg_quality"]))
        imgs[n] = img
        lms[n] = lm
    return imgs, lms


def encode_jpeg(img_rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode uint8 RGB as JPEG (OpenCV writes BGR, as the reference RecordIO files do)."""
    return encode_image(img_rgb, "jpg", quality)


# ----------------------------------------------------------------------------------
# Dataset generation.
def _render_job(args: tuple) -> tuple[bytes, np.ndarray]:
    seed, ident, j, size, difficulty = args
    face = _ident_cached(seed, ident)
    img, lm, info = render_face(face, _image_rng(seed, ident, j), size=size, difficulty=difficulty)
    return encode_jpeg(img, info["jpeg_quality"]), lm


_IDENT_CACHE: dict[tuple[int, int], FaceIdentity] = {}


def _ident_cached(seed: int, i: int) -> FaceIdentity:
    key = (seed, i)
    f = _IDENT_CACHE.get(key)
    if f is None:
        if len(_IDENT_CACHE) > 4096:
            _IDENT_CACHE.clear()
        f = _IDENT_CACHE[key] = sample_identity(seed, i)
    return f


def _map(jobs: list[tuple], workers: int, progress: bool, desc: str):
    it: Iterable
    if workers > 1 and len(jobs) > 64:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(workers)
        it = pool.imap(_render_job, jobs, chunksize=32)
    else:
        pool = None
        it = map(_render_job, jobs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(jobs), desc=desc, unit="img", leave=False)
    try:
        for r in it:
            yield r
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    identities: int,
    images_per_identity: int,
    seed: int,
    size: int = 112,
    val_identities: int = 0,
    val_pairs: int = 0,
    difficulty: str | float = "default",
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Write a SynthFaces training set and (optionally) a held-out verification bin.

    Files in ``out_dir``: ``train.rec``/``train.idx``/``property`` (InsightFace layout,
    record 0 header, keys ``1..identities*images_per_identity`` images labelled with the
    identity, then one identity record per class), ``landmarks.npy`` (float32
    ``(max_key + 1, 68, 2)`` indexed by record key, NaN for non-image records), and when
    ``val_pairs > 0``: ``synth_val.bin`` (pairs of held-out identities
    ``identities .. identities+val_identities-1``, alternately genuine and impostor) with
    ``synth_val_landmarks.npy`` ((2 * val_pairs, 68, 2)), plus ``synth_meta.json``.
    Output bytes depend only on the arguments (not on ``workers``).  Returns a summary dict.
    """
    from maskinv.data.bins import save_bin
    from maskinv.data.recordio import write_insightface_recordio
    from maskinv.errors import ConfigError
    from maskinv.utils.io import atomic_path, atomic_write_json

    for name, v, lo in (("identities", identities, 1), ("images_per_identity", images_per_identity, 1), ("size", size, 16),
                        ("val_identities", val_identities, 0), ("val_pairs", val_pairs, 0), ("workers", workers, 1)):
        if int(v) != v or v < lo:
            raise ConfigError(f"generate_dataset: {name} must be an integer >= {lo}, got {v!r}")
    if val_pairs and val_identities < 2:
        raise ConfigError("generate_dataset: val_pairs needs val_identities >= 2 (impostor pairs need two identities)")
    _difficulty(difficulty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = identities * images_per_identity
    jobs = [(seed, i, j, size, difficulty) for i in range(identities) for j in range(images_per_identity)]
    lms = np.full((n + 1 + identities, 68, 2), np.nan, np.float32)

    def items():
        for key, (data, lm) in enumerate(_map(jobs, workers, progress, "synth train"), start=1):
            lms[key] = lm
            yield (key - 1) // images_per_identity, data

    write_insightface_recordio(out, items(), num_classes=identities, image_size=size)
    with atomic_path(out / "landmarks.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, lms)
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "train_rec": str(out / "train.rec"),
        "landmarks": str(out / "landmarks.npy"),
        "num_images": n,
        "num_classes": identities,
        "image_size": size,
        "seed": seed,
        "difficulty": difficulty,
    }
    if val_pairs:
        prng = np.random.default_rng([int(seed), _PAIR_TAG])
        vjobs = []
        issame = np.zeros(val_pairs, bool)
        for p in range(val_pairs):
            genuine = p % 2 == 0  # alternate: every contiguous fold stays balanced
            a = int(prng.integers(0, val_identities))
            b = a if genuine else int((a + prng.integers(1, val_identities)) % val_identities)
            issame[p] = genuine
            # image indices of held-out identities are unique per pair slot
            vjobs.append((seed, identities + a, 2 * p, size, difficulty))
            vjobs.append((seed, identities + b, 2 * p + 1, size, difficulty))
        vimgs, vlms = [], np.empty((2 * val_pairs, 68, 2), np.float32)
        for i, (data, lm) in enumerate(_map(vjobs, workers, progress, "synth val")):
            vimgs.append(data)
            vlms[i] = lm
        save_bin(out / "synth_val.bin", vimgs, issame)
        with atomic_path(out / "synth_val_landmarks.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vlms)
        summary.update(val_bin=str(out / "synth_val.bin"), val_landmarks=str(out / "synth_val_landmarks.npy"),
                       num_pairs=int(val_pairs), num_genuine=int(issame.sum()), val_identities=int(val_identities))
    meta = {"generator": "SynthFaces", "version": 1, **{k: v for k, v in summary.items() if k != "out_dir"},
            "images_per_identity": images_per_identity, "landmarks_convention": "68 iBUG points, output pixel coordinates"}
    atomic_write_json(out / "synth_meta.json", meta)
    return summary


def preview_grid(path: str | os.PathLike, *, seed: int = 0, identities: int = 8, images_per_identity: int = 8,
                 size: int = 112, difficulty: str | float = "default", landmarks: bool = False) -> Path:
    """Write a PNG grid: one row per identity, one column per image (optionally landmarks)."""
    import cv2

    from maskinv.utils.io import atomic_write_bytes

    ids = np.repeat(np.arange(identities), images_per_identity)
    idx = np.tile(np.arange(images_per_identity), identities)
    imgs, lms = render_faces(ids, seed=seed, image_indices=idx, size=size, difficulty=difficulty, jpeg=True)
    if landmarks:
        imgs = imgs.copy()
        for im, lm in zip(imgs, lms):
            for q in lm:
                cv2.circle(im, (int(round(q[0] * 4)), int(round(q[1] * 4))), 4, (0, 255, 0), -1, cv2.LINE_AA, 2)
    grid = imgs.reshape(identities, images_per_identity, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(identities * size, images_per_identity * size, 3)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    path = Path(path)
    atomic_write_bytes(path, buf.tobytes())
    return path

"""SynthFaces identities: seeded per-identity parameters and neutral 3-D geometry.

Identity ``k`` of seed ``s`` is drawn from ``default_rng([s, 0x1D, k])`` alone, so it is
the same face whatever else is generated (see the package docstring and docs/synthfaces.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DIFFICULTIES", "FaceIdentity", "sample_identity", "sample_identities"]

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



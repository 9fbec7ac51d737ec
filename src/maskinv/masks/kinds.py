"""Mask kinds: parameter ranges (sampled from an explicit Generator) and outlines from anchors.

Every kind is described by a plain dict of parameters (JSON-able, returned in
:class:`~maskinv.masks.render.MaskResult.params`), so a mask can be reproduced from its
parameters alone and any parameter can be pinned by the caller (``apply_mask(..., width=1.1)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnknownNameError
from ..utils.registry import Registry
from .geometry import Anchors


@dataclass(frozen=True)
class MaskKind:
    """One mask kind of the v1 renderer: its palette (RGB 0..255), the share of masks drawn over
    the nose, the share with a texture, whether ``kind="random"`` draws it and whether its top
    edge always stays clear of the eyes. The outline itself is :func:`build_outline`'s branch."""

    name: str
    palette: tuple[tuple[int, int, int], ...]
    over_nose_p: float
    texture_p: float
    random: bool = True
    below_eye: bool = True


# Realistic colours per kind (RGB, 0..255).
_WHITE, _OFFWHITE, _BLACK, _GREY = (236, 236, 232), (224, 220, 208), (38, 38, 42), (150, 152, 156)

#: The kinds, in the order that fixes their bank seeds (BatchMasker): never reorder.
KINDS: Registry[MaskKind] = Registry("mask kind")
for _k in (
    MaskKind("surgical", ((150, 196, 226), (118, 178, 222), _WHITE, (150, 206, 186), (236, 186, 202), _BLACK,
                          (176, 180, 186)), 0.85, 0.1),
    MaskKind("n95", (_WHITE, _OFFWHITE, (200, 200, 196), (232, 226, 190)), 1.0, 0.0),
    MaskKind("kn95", (_WHITE, _BLACK, _GREY, (236, 190, 200), (160, 196, 228)), 1.0, 0.1),
    MaskKind("cloth", ((38, 50, 92), _BLACK, (118, 118, 124), (168, 40, 52), (214, 194, 164), (108, 114, 70),
                       (70, 96, 132), (110, 32, 46), (226, 160, 180), _WHITE, (60, 120, 90)), 0.85, 0.75),
    MaskKind("wide", ((150, 196, 226), _BLACK, _WHITE, (150, 206, 186), (118, 118, 124), (38, 50, 92)), 0.7, 0.3),
    MaskKind("round", ((150, 196, 226), _BLACK, _WHITE, (214, 194, 164), (118, 118, 124), (168, 40, 52)), 0.6, 0.3),
    # Paper mode reaches the lower eyelids at its largest training shift (as in the MaskInv recipe).
    MaskKind("paper", ((128, 128, 128),), 1.0, 0.0, random=False, below_eye=False),
):
    KINDS.register(_k.name, _k)
del _k

#: Every kind apply_mask accepts besides "random".
MASK_KINDS: tuple[str, ...] = tuple(KINDS.names())
#: Kinds drawn by kind="random": the realistic ones (paper mode is opt-in).
RANDOM_KINDS: tuple[str, ...] = tuple(n for n, k in KINDS.items() if k.random)
#: Kinds whose top edge stays clear of the eyes for every parameter value (tests rely on it).
#: Paper mode does only at shift (0, 0): its training shift (up to 10 px up on a 112 crop)
#: can reach the lower eyelids, as in the MaskInv recipe.
BELOW_EYE_KINDS: tuple[str, ...] = tuple(n for n, k in KINDS.items() if k.below_eye)
TEXTURES: tuple[str, ...] = ("none", "stripes", "checks", "dots", "noise", "floral")
PALETTES: dict[str, list[tuple[int, int, int]]] = {n: list(k.palette) for n, k in KINDS.items()}
_OVER_NOSE_P = {n: k.over_nose_p for n, k in KINDS.items()}
_TEXTURE_P = {n: k.texture_p for n, k in KINDS.items()}


def resolve_kind(kind: str, rng: np.random.Generator) -> str:
    """Validate ``kind``; "random" draws one of :data:`RANDOM_KINDS` from ``rng``."""
    if kind == "random":
        return RANDOM_KINDS[int(rng.integers(len(RANDOM_KINDS)))]
    if kind not in MASK_KINDS:
        raise UnknownNameError(f"unknown mask kind {kind!r}; known: random, {', '.join(MASK_KINDS)}")
    return kind


def _colour(kind: str, rng: np.random.Generator, p_random: float = 0.25) -> list[int]:
    if rng.random() < p_random:
        return [int(c) for c in rng.integers(0, 256, size=3)]
    pal = PALETTES[kind]
    base = np.array(pal[int(rng.integers(len(pal)))], dtype=np.float64)
    return [int(c) for c in np.clip(np.round(base + rng.normal(0, 8, size=3)), 0, 255)]


def sample_params(kind: str, rng: np.random.Generator) -> dict:
    """Draw every parameter of ``kind`` (already resolved) from ``rng``. JSON-able dict."""
    p: dict = {"kind": kind}
    if kind == "paper":
        p["shift"] = [float(rng.uniform(-10, 10)), float(rng.uniform(-40, 40))]  # template px (x, y)
        p["color"] = [int(c) for c in rng.integers(0, 256, size=3)]
        return p
    p["coverage"] = "over" if rng.random() < _OVER_NOSE_P[kind] else "below"
    p["top"] = float(rng.uniform(0.0, 1.0))
    p["width"] = float(rng.uniform(0.92, 1.1))
    p["bottom"] = float(rng.uniform(0.92, 1.08))
    p["color"] = _colour(kind, rng)
    if rng.random() < _TEXTURE_P[kind]:
        p["texture"] = TEXTURES[1 + int(rng.integers(len(TEXTURES) - 1))]
    else:
        p["texture"] = "none"
    # Second texture colour: a contrasting palette/random colour.
    p["color2"] = _colour("cloth", rng, p_random=0.4)
    p["texture_scale"] = float(rng.uniform(0.12, 0.3))      # pattern period, interocular units
    p["texture_angle"] = float(rng.uniform(-np.pi / 2, np.pi / 2))
    lx, ly = rng.uniform(-0.7, 0.7, size=2)
    p["light"] = [float(lx), float(ly), 1.0]
    p["ambient"] = float(rng.uniform(0.45, 0.65))
    p["shadow"] = float(rng.uniform(0.15, 0.4))
    p["softness"] = float(rng.uniform(0.45, 0.9))           # edge blur sigma, px at 112
    p["loops"] = bool(kind != "wide" and rng.random() < 0.9)
    p["loop_color"] = [236, 236, 232] if rng.random() < 0.6 else list(p["color"])
    p["pleats"] = int(rng.integers(2, 4)) if kind == "surgical" else 0
    p["seed"] = int(rng.integers(0, 2**31 - 1))              # for the noise texture
    return p


def _lerp(a, b, t):
    return a + (b - a) * t


def _chaikin(points: np.ndarray, sharp: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Closed-curve corner cutting; vertices flagged ``sharp`` stay as corners."""
    pts, sh = np.asarray(points, dtype=np.float64), np.asarray(sharp, dtype=bool)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        # Per vertex i: [vertex i if sharp], 3/4-1/4 point and 1/4-3/4 point of edge i -> i+1.
        cand = np.stack([pts, 0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], 1)
        keep = np.stack([sh, np.ones_like(sh), np.ones_like(sh)], 1)
        flags = np.stack([sh, np.zeros_like(sh), np.zeros_like(sh)], 1)
        pts, sh = cand[keep], flags[keep]
    return pts


def _quad_curve(a, c, b, n=24) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t**2 * b


def build_outline(a: Anchors, p: dict) -> dict:
    """Outline polygon, strap/loop polylines and crease/pleat polylines for a kind.

    Returns ``{"poly": (N, 2), "loops": [(M, 2), ...], "creases": [...], "pleats": [...]}``
    in image pixel coordinates.
    """
    kind = p["kind"]
    fr = a.frame
    ex = fr.ex
    mouth = a.mouth_mid
    top, width, bottom = p["top"], p["width"], p["bottom"]
    if p["coverage"] == "over":
        top_rng = {"n95": (0.0, 0.35), "kn95": (0.0, 0.3)}.get(kind, (0.05, 0.6))
        top_c = _lerp(a.bridge, a.nose_tip, _lerp(*top_rng, top))
        fs = 0.05 + 0.1 * top            # side corners: fraction from cheek towards jaw
    else:
        top_c = _lerp(a.under_nose, mouth, 0.05 + 0.25 * top)
        fs = 0.35 + 0.15 * top
    bot_c = mouth + (a.chin - mouth) * bottom
    mid_x = a.nose_tip  # reference for widening: along ex through the nose

    def widen(q, w=width):
        d = float((q - mid_x) @ ex)
        return q + (w - 1.0) * d * ex

    tl = widen(_lerp(a.cheek_l, a.jaw_l, fs))
    tr = widen(_lerp(a.cheek_r, a.jaw_r, fs))
    jl, jr = widen(a.jaw_l), widen(a.jaw_r)
    ll, lr = widen(a.jaw_low_l), widen(a.jaw_low_r)
    loops: list[np.ndarray] = []
    creases: list[np.ndarray] = []
    pleats: list[np.ndarray] = []
    up = -fr.ey * fr.em

    if kind == "surgical":
        bl, br = _lerp(jl, ll, 0.55), _lerp(jr, lr, 0.55)
        ctrl = [top_c, _lerp(top_c, tr, 0.5) + 0.02 * up, tr, _lerp(tr, br, 0.5) + 0.02 * fr.d_io * ex,
                br, bot_c, bl, _lerp(tl, bl, 0.5) - 0.02 * fr.d_io * ex, tl, _lerp(top_c, tl, 0.5) + 0.02 * up]
        sharp = [False, False, True, False, True, False, True, False, True, False]
        for i in range(p.get("pleats", 0)):
            f = (i + 1) / (p["pleats"] + 1)
            s, e = _lerp(tl, bl, f), _lerp(tr, br, f)
            pleats.append(_quad_curve(s, (s + e) / 2 + 0.04 * fr.em * fr.ey + f * 0.1 * (bot_c - top_c), e))
        loop_pts = [(tr, a.ear_r, br), (tl, a.ear_l, bl)]
    elif kind == "n95":
        ctrl = [top_c, widen(_lerp(tr, a.nose_tip, 0.25)), _lerp(tr, jr, 0.5), lr, bot_c,
                ll, _lerp(tl, jl, 0.5), widen(_lerp(tl, a.nose_tip, 0.25))]
        sharp = [False] * len(ctrl)
        loop_pts = [(_lerp(tr, jr, 0.3), a.ear_r, None), (_lerp(tl, jl, 0.3), a.ear_l, None),
                    (_lerp(jr, lr, 0.5), a.ear_r + 0.6 * fr.em * fr.ey, None),
                    (_lerp(jl, ll, 0.5), a.ear_l + 0.6 * fr.em * fr.ey, None)]
        creases.append(_quad_curve(_lerp(tl, jl, 0.6), _lerp(top_c, bot_c, 0.6), _lerp(tr, jr, 0.6)))
    elif kind == "kn95":
        bl, br = _lerp(jl, ll, 0.35), _lerp(jr, lr, 0.35)
        ctrl = [top_c, tr, _lerp(tr, br, 0.5) + 0.03 * fr.d_io * ex, br, bot_c + 0.03 * fr.em * fr.ey,
                bl, _lerp(tl, bl, 0.5) - 0.03 * fr.d_io * ex, tl]
        sharp = [True, False, False, False, True, False, False, False]
        creases.append(np.stack([top_c, _lerp(top_c, bot_c, 0.5) + 0.0 * ex, bot_c]))
        loop_pts = [(tr, a.ear_r, br), (tl, a.ear_l, bl)]
    elif kind == "cloth":
        ctrl = [top_c, widen(_lerp(top_c, tr, 0.55)) + 0.04 * up, tr, jr, lr, bot_c + 0.04 * fr.em * fr.ey,
                ll, jl, tl, widen(_lerp(top_c, tl, 0.55)) + 0.04 * up]
        sharp = [False] * len(ctrl)
        creases.append(_quad_curve(top_c, _lerp(top_c, bot_c, 0.5), bot_c))
        loop_pts = [(tr, a.ear_r, _lerp(jr, lr, 0.5)), (tl, a.ear_l, _lerp(jl, ll, 0.5))]
    elif kind == "wide":
        wl, wr = _lerp(tl, a.ear_l, 0.55), _lerp(tr, a.ear_r, 0.55)
        bl = widen(_lerp(ll, a.ear_l, 0.3)) + 0.35 * fr.em * fr.ey
        br = widen(_lerp(lr, a.ear_r, 0.3)) + 0.35 * fr.em * fr.ey
        ctrl = [top_c, wr, br, bot_c + 0.3 * fr.em * fr.ey, bl, wl]
        sharp = [False, True, True, False, True, True]
        loop_pts = []
    elif kind == "round":
        centre = _lerp(top_c, bot_c, 0.5)
        ctrl = [top_c, _lerp(centre, _lerp(tr, jr, 0.5), 0.85), _lerp(centre, jr, 0.9), _lerp(centre, lr, 0.9),
                bot_c, _lerp(centre, ll, 0.9), _lerp(centre, jl, 0.9), _lerp(centre, _lerp(tl, jl, 0.5), 0.85)]
        sharp = [False] * len(ctrl)
        loop_pts = [(_lerp(centre, _lerp(tr, jr, 0.5), 0.85), a.ear_r, None),
                    (_lerp(centre, _lerp(tl, jl, 0.5), 0.85), a.ear_l, None)]
    else:  # pragma: no cover - paper mode has its own renderer
        raise UnknownNameError(f"no outline for kind {kind!r}")

    poly = _chaikin(np.array(ctrl, dtype=np.float64), np.array(sharp))
    if p.get("loops"):
        for start, ear, end in loop_pts:
            if end is None:   # a strap going straight out towards the ear / back of the head
                loops.append(_quad_curve(start, _lerp(start, ear, 0.5) + 0.05 * up, ear))
            else:             # an ear loop: mask corner -> behind the ear -> lower corner
                loops.append(np.concatenate([_quad_curve(start, _lerp(start, ear, 0.6) + 0.1 * up, ear),
                                             _quad_curve(ear, _lerp(end, ear, 0.7) - 0.1 * up, end)]))
    return {"poly": poly, "loops": loops, "creases": creases, "pleats": pleats}

"""Mask layers: an outline rasterised with supersampling, textured, shaded and composited onto a face.
Shared by both renderers (``v1`` in :mod:`.render`, ``mesh`` in :mod:`.mesh`), below both."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .geometry import Anchors
from .kinds import TEXTURES, build_outline

__all__ = ["composite", "render_layers"]

_SS = 4  # supersampling factor for rasterising outlines and loops


def _raster_fill(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    canvas = np.zeros((h * _SS, w * _SS), np.uint8)
    pts = np.round(poly * _SS * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _raster_lines(lines, h: int, w: int, thickness_px: float) -> np.ndarray:
    import cv2

    canvas = np.zeros((h * _SS, w * _SS), np.uint8)
    t = max(1, int(round(thickness_px * _SS)))
    for line in lines:
        pts = np.round(np.asarray(line) * _SS * 16).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 255, thickness=t, lineType=cv2.LINE_AA, shift=4)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _gauss(x: np.ndarray, sigma: float, radius: int | None = None) -> np.ndarray:
    import cv2

    if sigma <= 0:
        return x
    r = radius if radius is not None else max(1, int(np.ceil(2.5 * sigma)))
    return cv2.GaussianBlur(x, (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_CONSTANT)


# ----------------------------------------------------------------------------- textures
def _texture(name: str, X: np.ndarray, Y: np.ndarray, p: dict, em_over_dio: float) -> np.ndarray:
    """Procedural pattern in [0, 1] on face-frame coordinates (follows roll and face size)."""
    if name == "none":
        return np.zeros_like(X)
    per = p["texture_scale"]
    c, s = np.cos(p["texture_angle"]), np.sin(p["texture_angle"])
    Yd = Y * em_over_dio  # both axes in interocular units
    U, V = c * X + s * Yd, -s * X + c * Yd
    if name == "stripes":
        return np.clip(np.sin(2 * np.pi * U / per) * 2.5 + 0.5, 0, 1)
    if name == "checks":
        return np.clip(np.sin(2 * np.pi * U / per) * np.sin(2 * np.pi * V / per) * 6 + 0.5, 0, 1)
    if name in ("dots", "floral"):
        cell = per * (1.0 if name == "dots" else 1.8)
        # Offset every other row by half a cell: a staggered lattice looks like printed fabric.
        row = np.floor(V / cell)
        fx = (U / cell + 0.5 * (row % 2)) % 1.0 - 0.5
        fy = (V / cell) % 1.0 - 0.5
        r = np.hypot(fx, fy)
        soft = 0.06
        if name == "dots":
            return np.clip((0.24 - r) / soft + 0.5, 0, 1)
        th = np.arctan2(fy, fx)
        petal = 0.36 * (0.45 + 0.55 * np.abs(np.cos(2.5 * th)))   # five petals
        flower = np.clip((petal - r) / soft + 0.5, 0, 1)
        centre = np.clip((0.08 - r) / soft + 0.5, 0, 1)
        return flower * (1 - centre)
    if name == "noise":
        import cv2

        g = np.random.default_rng(p["seed"])
        h, w = X.shape
        acc = np.zeros((h, w), np.float32)
        for cells, amp in ((5, 1.0), (11, 0.5), (23, 0.25)):
            acc += amp * cv2.resize(g.random((cells, cells)).astype(np.float32), (w, h),
                                    interpolation=cv2.INTER_CUBIC)
        acc = (acc - acc.min()) / max(float(np.ptp(acc)), 1e-6)
        return np.clip((acc - 0.5) * 2.5 + 0.5, 0, 1)
    raise ConfigError(f"unknown texture {name!r}; known: {', '.join(TEXTURES)}")


# ----------------------------------------------------------------------------- layers
def render_layers(shape, anchors: Anchors, p: dict, *, outline: dict | None = None) -> dict[str, np.ndarray]:
    """Float32 (H, W) layers of a realistic kind: alpha, shade, pattern, shadow, loops.
    ``outline``: a prebuilt outline (the mesh renderer's); default :func:`build_outline`."""
    import cv2

    h, w = int(shape[0]), int(shape[1])
    fr = anchors.frame
    px = fr.d_io / 35.24  # pixels per "112-crop pixel": all widths scale with the face
    out = outline if outline is not None else build_outline(anchors, p)
    fill_hard = _raster_fill(out["poly"], h, w)
    alpha = np.clip(_gauss(fill_hard, p["softness"] * px), 0.0, 1.0)

    # Pixel grid in face-frame coordinates.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)
    dx, dy = xs - np.float32(fr.origin[0]), ys - np.float32(fr.origin[1])
    X = (dx * np.float32(fr.ex[0]) + dy * np.float32(fr.ex[1])) / np.float32(fr.d_io)
    Y = (dx * np.float32(fr.ey[0]) + dy * np.float32(fr.ey[1])) / np.float32(fr.em)
    Xn, _ = fr.to_local(anchors.nose_tip)

    # Dome height from the distance to the rim, plus the face cylinder's horizontal turn.
    inside = (fill_hard > 0.5).astype(np.uint8)
    dt = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    dmax = max(float(dt.max()), 1.0)
    d = dt / np.float32(dmax)
    bulge = {"n95": 0.9, "kn95": 0.6, "surgical": 0.35, "cloth": 0.5, "wide": 0.3, "round": 0.5}[p["kind"]]
    height = np.float32(bulge * dmax) * (1.0 - (1.0 - d) ** 2)
    # Smooth away the distance transform's medial-axis ridges (they would read as folds).
    height = _gauss(height.astype(np.float32), 1.5 * px)
    gy, gx = np.gradient(height)
    tilt = np.clip((X - np.float32(Xn)) * np.float32(0.7) + np.float32(fr.yaw), -0.85, 0.85)  # cylinder turn
    nx = -gx + tilt * np.float32(fr.ex[0])
    ny = -gy + tilt * np.float32(fr.ex[1])
    norm = np.sqrt(nx * nx + ny * ny + 1.0)
    L = np.asarray(p["light"], dtype=np.float64)
    L = L / np.linalg.norm(L)
    lam = np.clip((nx * np.float32(L[0]) + ny * np.float32(L[1]) + np.float32(L[2])) / norm, 0.0, 1.0)
    amb = p["ambient"]
    shade = np.float32(amb) + np.float32((1.0 - amb) / L[2]) * lam

    # Folds: pleats (surgical) and creases (kn95 centre fold, n95 seam, cloth centre seam).
    if out["pleats"]:
        pl = _gauss(_raster_lines(out["pleats"], h, w, 0.9 * px), 0.6 * px)
        shade = shade * (1.0 - 0.28 * pl)
    if out["creases"]:
        cr = _gauss(_raster_lines(out["creases"], h, w, 0.7 * px), 0.5 * px)
        shade = shade * (1.0 - 0.22 * cr)
    if p["kind"] == "kn95":
        # Two flat panels meeting at the centre fold: one side faces the light more.
        top_x, _ = fr.to_local(out["poly"][0])
        side = np.tanh((X - top_x) * 12.0)
        shade = shade * (1.0 + 0.12 * side * L[0] * fr.ex[0] + 0.12 * side * L[1] * fr.ex[1])
    if p["kind"] == "n95":
        shade = shade * (1.0 - 0.12 * np.clip(1.0 - d / 0.12, 0, 1))  # stiff rim
    shade = np.clip(shade, 0.0, 1.25)

    pattern = _texture(p["texture"], X, Y, p, fr.em / fr.d_io).astype(np.float32)

    # Contact shadow: the rim's silhouette, shifted away from the light and blurred a little;
    # bounded kernel so it never reaches further than a few pixels.
    off = -L[:2] / max(np.linalg.norm(L[:2]), 1e-6) * min(np.linalg.norm(L[:2]), 1.0) * 1.2 * px
    M = np.float32([[1, 0, off[0]], [0, 1, off[1]]])
    shifted = cv2.warpAffine(fill_hard, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    spread = _gauss(np.maximum(shifted, fill_hard), 1.0 * px, radius=max(1, int(round(2 * px))))
    shadow = np.clip(spread - alpha, 0.0, 1.0) * p["shadow"]

    loops = np.zeros((h, w), np.float32)
    if out["loops"]:
        loops = np.clip(_raster_lines(out["loops"], h, w, 0.85 * px), 0, 1) * (1.0 - alpha)

    return {
        "alpha": alpha.astype(np.float32),
        "shade": shade.astype(np.float32),
        "pattern": pattern,
        "shadow": shadow.astype(np.float32),
        "loops": loops.astype(np.float32),
    }


def composite(image: np.ndarray, layers: dict, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Blend layers onto a copy of ``image`` (float, clipped once). Returns (uint8 image, alpha)."""
    f = image.astype(np.float32)
    a = layers["alpha"][..., None]
    al = layers["loops"][..., None]
    P = layers["pattern"][..., None]
    c1 = np.asarray(p["color"], np.float32)
    c2 = np.asarray(p["color2"], np.float32)
    rgb = np.clip((c1 * (1 - P) + c2 * P) * layers["shade"][..., None], 0.0, 255.0)
    out = f * (1.0 - layers["shadow"][..., None])
    out = out * (1 - a) + rgb * a
    loop_rgb = np.asarray(p["loop_color"], np.float32) * 0.95
    out = out * (1 - al) + loop_rgb * al
    alpha = 1.0 - (1.0 - layers["alpha"]) * (1.0 - layers["loops"])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha.astype(np.float32)

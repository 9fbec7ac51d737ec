"""Per-image mask rendering (NumPy + OpenCV): :func:`apply_mask`, :func:`mask_pair_images`.

Rendering a realistic kind:
  anchors (geometry.py) -> outline + straps + creases (kinds.py) -> layers:
  ``alpha`` (anti-aliased fill, Gaussian-softened edge), ``shade`` (Lambert shading of a dome
  on a cylinder, lit from ``params["light"]``, with pleats/creases), ``pattern`` (procedural
  texture in face-frame coordinates, 0 = colour, 1 = colour2), ``shadow`` (contact shadow just
  outside the rim, offset away from the light) and ``loops`` (ear loops / straps alpha).
  The composite is computed in float and clipped once: colours never wrap around.

"paper" mode reproduces the MaskInv recipe: one grey template shape, a homography from the
template's five points (shifted by ``params["shift"]`` template px) onto the true landmarks,
one random colour, clipped (MaskInv wrapped it around through uint8).
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

import numpy as np

from ..constants import ARCFACE_TEMPLATE_112
from ..errors import ConfigError, DataFormatError
from .geometry import Anchors, as_landmarks, face_anchors, five_points
from .kinds import TEXTURES, build_outline, resolve_kind, sample_params
from .protocols import check_protocol, masked_indices

#: Template canvas of paper mode: the 112x112 aligned frame at 4x, so the MaskInv shift ranges
#: (x +-10, y +-40 template px) move the mask by +-2.5 / +-10 px on a 112x112 crop.
PAPER_TEMPLATE_SCALE = 4
_SS = 4  # supersampling factor for rasterising outlines and loops


@dataclass
class MaskResult:
    """Output of :func:`apply_mask`.

    ``image``: new uint8 (H, W, 3) RGB array; ``alpha``: float32 (H, W) coverage of mask and
    loops in [0, 1]; ``params``: the JSON-able parameters that produced it (kind included).
    """

    image: np.ndarray
    alpha: np.ndarray
    params: dict


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The Generator for image ``index`` of a seeded run: depends on (seed, index) only.

    Used by :func:`mask_pair_images` and ``mask-bin`` so any image (or subset) can be
    regenerated alone. Both must be non-negative integers.
    """
    for name, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < 0:
            raise ConfigError(f"image_rng: {name} must be a non-negative integer, got {v!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}")


def _check_image(image, source: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise DataFormatError(f"{source}: expected a uint8 (H, W, 3) RGB array, got {desc}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise DataFormatError(f"{source}: image too small for a mask: {image.shape}")
    return image


# ----------------------------------------------------------------------------- rasterising
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


# ----------------------------------------------------------------------------- paper mode
@functools.lru_cache(maxsize=1)
def paper_template() -> tuple[np.ndarray, np.ndarray]:
    """(template float32 (S, S, 2) = grey shading, alpha; its five points (5, 2)), S = 112*scale."""
    s = 112 * PAPER_TEMPLATE_SCALE
    anchors = face_anchors(None, (s, s))
    p = {"kind": "surgical", "coverage": "over", "top": 0.45, "width": 1.0, "bottom": 1.0,
         "pleats": 3, "loops": False}
    out = build_outline(anchors, p)
    alpha = _gauss(_raster_fill(out["poly"], s, s), 0.6 * PAPER_TEMPLATE_SCALE)
    pl = _gauss(_raster_lines(out["pleats"], s, s, 1.0 * PAPER_TEMPLATE_SCALE), 0.6 * PAPER_TEMPLATE_SCALE)
    grey = 0.92 - 0.2 * pl
    tpl = np.stack([grey, alpha], -1).astype(np.float32)
    tpl.setflags(write=False)
    pts = (ARCFACE_TEMPLATE_112 * PAPER_TEMPLATE_SCALE).astype(np.float32)
    pts.setflags(write=False)
    return tpl, pts


def paper_layers(shape, landmarks5: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Warp the paper template onto ``landmarks5``: float32 (grey, alpha) each (H, W)."""
    import cv2

    tpl, tpts = paper_template()
    src = tpts - np.asarray(p["shift"], np.float32)  # mask moves by +shift (template px)
    H, _ = cv2.findHomography(src, landmarks5.astype(np.float32), 0)
    if H is None:
        raise DataFormatError("paper mask: could not fit a homography to the landmarks")
    h, w = int(shape[0]), int(shape[1])
    warped = cv2.warpPerspective(tpl, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
    return warped[..., 0], np.clip(warped[..., 1], 0.0, 1.0)


def _paper(image: np.ndarray, pts: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    grey, alpha = paper_layers(image.shape, five_points(pts), p)
    rgb = np.clip(grey[..., None] * np.asarray(p["color"], np.float32) * 1.25, 0, 255)  # clipped, no wrap
    a = alpha[..., None]
    out = image.astype(np.float32) * (1 - a) + rgb * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha.astype(np.float32)


# ----------------------------------------------------------------------------- public API
def apply_mask(image, landmarks=None, rng=0, kind: str = "random", *, renderer: str = "v1", mesh=None,
               **params) -> MaskResult:
    """Draw a mask on a copy of ``image``.

    renderer: ``"v1"`` (default: outlines from the 5/68 landmarks, kinds.py's palettes) or
    ``"mesh"`` (outlines from the 468-point face mesh, real-world looks: masks/mesh.py); with
    ``"mesh"``, ``mesh`` gives the (468, 2|3) points in image pixels, else they are computed
    from ``landmarks`` (:func:`maskinv.align.mesh.mesh_points`; ``None`` = the template).

    image: uint8 (H, W, 3) RGB, never mutated. landmarks: (5, 2) ArcFace-order or (68, 2) iBUG
    points in pixels; ``None`` = the 112x112 ArcFace template scaled to the image (aligned crops).
    rng: ``numpy.random.Generator`` or integer seed. kind: one of :data:`MASK_KINDS` or "random".
    params: pin any sampled parameter (see ``MaskResult.params`` for names), e.g. ``color=(0,0,0)``,
    ``coverage="below"``, ``texture="stripes"``, ``shift=(0, 0)`` (paper mode).
    """
    from .mesh import check_renderer, render_mesh_mask, sample_mesh_params

    image = _check_image(image)
    g = _as_rng(rng)
    check_renderer(renderer, "apply_mask: renderer")
    if renderer == "mesh":
        p = sample_mesh_params(kind, g)
        k = p["kind"]
    else:
        if mesh is not None:
            raise ConfigError("apply_mask: mesh points are used only by renderer='mesh'")
        k = resolve_kind(kind, g)
        p = sample_params(k, g)
    unknown = sorted(set(params) - set(p))
    if unknown:
        raise ConfigError(f"apply_mask: unknown parameter(s) {unknown} for kind {k!r}; known: {sorted(p)}")
    for key, val in params.items():
        p[key] = [float(v) if isinstance(v, float) else int(v) for v in val] if isinstance(val, (tuple, list, np.ndarray)) else val
    if p.get("coverage", "over") not in ("over", "below"):
        raise ConfigError(f"apply_mask: coverage must be 'over' or 'below', got {p['coverage']!r}")
    pts = as_landmarks(landmarks, image.shape)
    if renderer == "mesh":
        if mesh is None:
            from ..align.mesh import mesh_points

            mesh = mesh_points(image, five_points(pts)).points[0]
        out, alpha = render_mesh_mask(image, mesh, p)
    elif k == "paper":
        out, alpha = _paper(image, pts, p)
    else:
        anchors = face_anchors(pts, image.shape)
        out, alpha = composite(image, render_layers(image.shape, anchors, p), p)
    return MaskResult(image=out, alpha=alpha, params=p)


def mask_photo(image, landmarks, rng=0, kind: str = "random", *, renderer: str = "v1", mesh=None,
               **params) -> MaskResult:
    """:func:`apply_mask` on a full photo (any size, several faces possible): the mask is
    rendered only in a square of 5 eye distances around the face given by ``landmarks`` (a mask
    never reaches further) and pasted back, so masking one face of a 512x512 photo costs about
    what an aligned crop costs. ``landmarks``: (5, 2) ArcFace-order or (68, 2) iBUG points in
    photo pixels (e.g. a detector's). ``renderer``/``mesh``: as :func:`apply_mask` (mesh points
    in photo pixels). Returns the whole photo with the mask alpha over it."""
    image = _check_image(image)
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape not in ((5, 2), (68, 2)):
        raise DataFormatError(f"mask_photo: landmarks must be (5, 2) or (68, 2), got {pts.shape}")
    eyes = (pts[36:42].mean(0), pts[42:48].mean(0)) if len(pts) == 68 else (pts[0], pts[1])
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    cx, cy = pts.mean(0)
    h, w = image.shape[:2]
    x0, y0 = max(0, int(cx - 2.5 * iod)), max(0, int(cy - 2.5 * iod))
    x1, y1 = min(w, int(cx + 2.5 * iod)), min(h, int(cy + 2.5 * iod))
    if x1 <= x0 or y1 <= y0:
        raise DataFormatError(f"mask_photo: the face at ({cx:.0f}, {cy:.0f}) lies outside the {w}x{h} photo")
    if renderer == "mesh" and mesh is None:
        from ..align.mesh import mesh_points

        mesh = mesh_points(image, five_points(pts)).points[0]   # on the whole photo: no cut-off ROI
    sub_mesh = None if mesh is None else np.asarray(mesh, np.float64)[:, :2] - [x0, y0]
    res = apply_mask(image[y0:y1, x0:x1], pts - [x0, y0], rng, kind, renderer=renderer, mesh=sub_mesh, **params)
    out, alpha = image.copy(), np.zeros(image.shape[:2], res.alpha.dtype)
    out[y0:y1, x0:x1], alpha[y0:y1, x0:x1] = res.image, res.alpha
    return MaskResult(image=out, alpha=alpha, params=res.params)


def mask_pair_images(images, protocol: str, seed: int, kind: str = "random", *, landmarks=None) -> np.ndarray:
    """Masked copy of a pair list ``images`` (2N, H, W, 3) uint8 under a verification protocol.

    ``"uu"``: unchanged copy; ``"mu"``: exactly the second image of every pair (odd indices) is
    masked; ``"mm"``: every image. Image ``i`` is masked with :func:`image_rng` ``(seed, i)``
    alone, so for the same seed the probe of pair ``j`` (index ``2j+1``) gets the *same* mask
    in ``mu`` and ``mm`` runs, and the ``mm`` gallery image (``2j``) an independent one.
    ``landmarks``: None (template), one (K, 2) set for all, or (2N, K, 2).
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] % 2:
        raise DataFormatError(f"mask_pair_images: expected uint8 (2N, H, W, 3) images, got {arr.dtype} {arr.shape}")
    idx = masked_indices(arr.shape[0], check_protocol(protocol, "mask_pair_images: protocol"))
    lm = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    if lm is not None and lm.ndim == 3 and lm.shape[0] != arr.shape[0]:
        raise DataFormatError(f"mask_pair_images: {lm.shape[0]} landmark sets for {arr.shape[0]} images")
    out = arr.copy()
    for i in idx:
        li = lm[i] if (lm is not None and lm.ndim == 3) else lm
        out[i] = apply_mask(arr[i], li, image_rng(seed, i), kind).image
    return out

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
from .geometry import as_landmarks, face_anchors, five_points
from .kinds import build_outline, resolve_kind, sample_params
from .layers import _gauss, _raster_fill, _raster_lines, composite, render_layers  # noqa: F401  (re-exported)
from .protocols import check_protocol, masked_indices

#: Template canvas of paper mode: the 112x112 aligned frame at 4x, so the MaskInv shift ranges
#: (x +-10, y +-40 template px) move the mask by +-2.5 / +-10 px on a 112x112 crop.
PAPER_TEMPLATE_SCALE = 4


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

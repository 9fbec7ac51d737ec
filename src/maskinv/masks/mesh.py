"""The ``mesh`` renderer: mask outlines from the 468-point face mesh, real-world looks, face lighting.

Renderer versions (``masks.renderer``, recorded in results and fingerprints):

* ``v1`` — the original renderer (render.py): anchors from 5 or 68 points, kinds and palettes of
  kinds.py. The default until the studies that pin it have committed.
* ``mesh`` — this module: the outline follows the mesh's face oval from cheek to cheek and from
  the nose bridge to under the chin (so it turns with the head), ear loops run to the face edge,
  looks are drawn from :data:`LOOKS` (what people wore: docs/masks.md), fabric grain and folds
  are procedural, and the mask is lit like the face next to it (brightness and the left/right
  light balance are measured on the skin the mask does not cover).

The mesh comes from :func:`maskinv.align.mesh.mesh_points` (on a photo from a detector's five
points, on an aligned crop from the template) or from a :class:`MeshCache` (fp16, keyed by the
SHA-256 of the image bytes: computed once per training image, then only rendering runs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, DataFormatError
from .geometry import Anchors, face_frame
from .kinds import _chaikin, _quad_curve

__all__ = ["RENDERERS", "DEFAULT_RENDERER", "RENDERER_REVISIONS", "renderer_revision", "Look", "LOOKS", "MESH_KINDS", "check_renderer", "mesh_five",
           "mesh_anchors", "mesh_outline", "sample_mesh_params", "face_light", "render_mesh_mask", "MeshCache",
           "image_key", "crop_meshes"]

#: Renderer versions. ``DEFAULT_RENDERER`` is the drawing tools' default (``apply_mask``,
#: ``maskinv mask``, ``mask-realism``); training (``masks.renderer``) and ``maskinv study-real``
#: default to ``mesh``.
RENDERERS: tuple[str, ...] = ("v1", "mesh")
DEFAULT_RENDERER = "v1"
#: The revision of each renderer's looks. Bump a revision whenever what it draws changes visibly
#: (tests/test_mesh_guard.py fails until you do): caches of masked features are keyed by
#: :func:`renderer_revision`, so a stale revision silently reuses the old masks' features.
#: mesh-r2: round 2 (commit f5aaaea; caches made then were keyed "mesh" only); mesh-r3: round 3.
RENDERER_REVISIONS: dict[str, str] = {"v1": "v1", "mesh": "mesh-r3"}
#: Kinds the mesh renderer draws (outlines of its own).
MESH_KINDS: tuple[str, ...] = ("surgical", "n95", "kn95", "cloth")

# Mesh indices (MediaPipe topology, Apache-2.0).
from ..align.mesh import FACE_OVAL, NOSE_BRIDGE  # noqa: E402  (kept next to their use)

_OVAL = np.asarray(FACE_OVAL)
_R_EDGE, _CHIN_I, _L_EDGE = 8, 18, 28       # oval positions of 454, 152, 234 (image right, chin, image left)
_EYE_R = (33, 133, 159, 145)                # image-left eye ring (subject's right)
_EYE_L = (263, 362, 386, 374)
_MOUTH = (61, 291)
_UPPER_LIP = 0
_UNDER_NOSE = 2


def check_renderer(name: str, source: str = "masks.renderer") -> str:
    """Validate a renderer name (see :data:`RENDERERS`)."""
    if name not in RENDERERS:
        raise ConfigError(f"{source}: unknown mask renderer {name!r}; known: {', '.join(RENDERERS)}")
    return name


def renderer_revision(name: str) -> str:
    """The identity of renderer ``name``'s drawings, for results, provenance and cache keys:
    ``v1`` (unchanged since it was written), or the mesh renderer's revision plus the first 8 hex
    digits of the SHA-256 of its looks table (so an edited mix changes it even without a bump),
    e.g. ``mesh-r3+1a2b3c4d``."""
    check_renderer(name)
    if name == "v1":
        return RENDERER_REVISIONS["v1"]
    import hashlib
    import json

    table = json.dumps([asdict(lk) for lk in LOOKS], sort_keys=True).encode()
    return f"{RENDERER_REVISIONS[name]}+{hashlib.sha256(table).hexdigest()[:8]}"


@dataclass(frozen=True)
class Look:
    """One real-world mask look: kind, colour name, base RGB, share of the mix, texture."""

    kind: str
    colour: str
    rgb: tuple[int, int, int]
    weight: float
    texture: str = "none"


#: The default mix (relative weights, normalised when drawn: they sum to 0.96, so a look's share
#: is weight / 0.96). Source: docs/masks.md. Kinds and colours of the real masks of RMFD's dev
#: identities (benchmarks/splits/rmfd_dev.txt), read by eye from contact sheets: black and dark
#: cloth, white, light-blue surgical, few others. Round 2 (benchmarks/realism_diagnose.py on
#: rmfd_dev): real black masks photograph as dark grey and white ones below pure white (mouth-box
#: luma deciles 10 % / 90 %: real 52 / 221, round 1 29 / 234), and dark masks were over-drawn
#: (luma < 85: real 30 %, round 1 36 %): blacks and whites moved in, black cloth 0.22 -> 0.17.
#: Round 3 (mesh-r3; SFace's aligned crops of rmfd_dev, mouth box, median colour per crop): white
#: masks still photographed brighter than real ones (luma median 240 vs 214, IQR 221-248 vs
#: 199-232) and black ones darker (51 vs 58): whites 218-224 -> 204-210 (slightly bluish, as real
#: ones), blacks 50-52 -> 55-56; per-mask brightness jitter 0.93-1.05 -> 0.85-1.08 (real luma
#: spreads within a colour are wider: dark IQR 40-73 vs 41-61).
LOOKS: tuple[Look, ...] = (
    Look("surgical", "light-blue", (150, 196, 226), 0.16),
    Look("surgical", "white", (206, 208, 214), 0.10),
    Look("surgical", "black", (56, 56, 60), 0.06),
    Look("cloth", "black", (55, 55, 60), 0.17),
    Look("cloth", "navy", (52, 62, 92), 0.08),
    Look("cloth", "grey", (96, 98, 104), 0.09),
    Look("cloth", "white", (204, 205, 209), 0.05),
    Look("n95", "white", (210, 210, 210), 0.07),
    Look("kn95", "white", (208, 208, 210), 0.06),
    Look("kn95", "black", (56, 56, 60), 0.04),
    Look("surgical", "mint", (150, 206, 186), 0.02),
    Look("cloth", "beige", (206, 186, 160), 0.03),
    Look("cloth", "pink", (230, 178, 190), 0.02),
    Look("cloth", "patterned", (50, 62, 110), 0.01, "dots"),
)


def _look_table(kind: str) -> tuple[list[Look], np.ndarray]:
    looks = [lk for lk in LOOKS if kind in ("random", lk.kind)]
    if not looks:
        raise ConfigError(f"mesh renderer: no look of kind {kind!r}; kinds: random, {', '.join(MESH_KINDS)}")
    w = np.array([lk.weight for lk in looks], np.float64)
    return looks, w / w.sum()


def sample_mesh_params(kind: str, rng: np.random.Generator) -> dict:
    """Draw a look and every shape/lighting parameter of the mesh renderer. JSON-able dict."""
    if kind != "random" and kind not in MESH_KINDS:
        raise ConfigError(f"mesh renderer: unknown mask kind {kind!r}; known: random, {', '.join(MESH_KINDS)}")
    looks, w = _look_table(kind)
    lk = looks[int(rng.choice(len(looks), p=w))]
    base = np.asarray(lk.rgb, np.float64)
    col = np.clip(np.round(base * rng.uniform(0.85, 1.08) + rng.normal(0, 5, 3)), 0, 255)
    p: dict = {"renderer": "mesh", "kind": lk.kind, "look": f"{lk.kind}/{lk.colour}", "coverage": "over"}
    p["top"] = float(rng.uniform(0.0, 1.0))            # along the nose bridge (0 high .. 1 low)
    p["side"] = float(rng.uniform(0.0, 1.0))           # where the side edge meets the face oval
    p["expand"] = float(rng.uniform(0.0, 0.04))        # stand-off beyond the face contour
    p["bottom"] = float(rng.uniform(0.0, 0.06))        # below the chin, in eye-to-mouth units
    p["color"] = [int(c) for c in col]
    p["texture"] = lk.texture
    c2 = np.clip(base + (120 if base.mean() < 128 else -120), 0, 255)
    p["color2"] = [int(c) for c in c2]
    p["texture_scale"] = float(rng.uniform(0.12, 0.22))
    p["texture_angle"] = float(rng.uniform(-0.3, 0.3))
    p["ambient"] = float(rng.uniform(0.55, 0.7))
    p["shadow"] = float(rng.uniform(0.15, 0.35))
    p["softness"] = float(rng.uniform(0.5, 0.9))
    p["grain"] = float(rng.uniform(0.02, 0.05) if lk.kind in ("surgical", "n95", "kn95") else rng.uniform(0.04, 0.08))
    p["folds"] = int(rng.integers(0, 3))
    p["loops"] = bool(rng.random() < 0.85)
    p["loop_color"] = list(p["color"]) if (lk.kind == "cloth" or rng.random() < 0.5) else [232, 232, 228]
    p["pleats"] = int(rng.integers(2, 4)) if lk.kind == "surgical" else 0
    p["seed"] = int(rng.integers(0, 2**31 - 1))
    return p


def _check_mesh(mesh, source: str = "mesh") -> np.ndarray:
    m = np.asarray(mesh, np.float64)
    if m.ndim != 2 or m.shape[0] != 468 or m.shape[1] not in (2, 3):
        raise DataFormatError(f"{source}: expected (468, 2|3) face-mesh points, got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DataFormatError(f"{source}: face-mesh points contain NaN or infinite values")
    return m


def mesh_five(mesh) -> np.ndarray:
    """ArcFace-order five points (image-left eye, image-right eye, nose tip, mouth l, mouth r)."""
    m = _check_mesh(mesh)[:, :2]
    return np.stack([m[list(_EYE_R)].mean(0), m[list(_EYE_L)].mean(0), m[1], m[_MOUTH[0]], m[_MOUTH[1]]])


def mesh_anchors(mesh, *, source: str = "mesh") -> Anchors:
    """:class:`Anchors` from a mesh (the face frame for shading and textures, the cheeks, jaw and
    chin from the face oval, the bridge and nose from the nose line)."""
    m = _check_mesh(mesh, source)[:, :2]
    p5 = mesh_five(m)
    fr = face_frame(p5, source=source)
    ov = m[_OVAL]
    centre = m[1]
    return Anchors(
        frame=fr, eye_l=p5[0], eye_r=p5[1], bridge=m[NOSE_BRIDGE[2]].copy(), nose_tip=m[1].copy(),
        under_nose=m[_UNDER_NOSE].copy(), mouth_l=p5[3], mouth_r=p5[4],
        cheek_l=ov[_L_EDGE - 1].copy(), cheek_r=ov[_R_EDGE + 1].copy(),
        jaw_l=ov[_L_EDGE - 4].copy(), jaw_r=ov[_R_EDGE + 4].copy(),
        jaw_low_l=ov[_CHIN_I + 4].copy(), jaw_low_r=ov[_CHIN_I - 4].copy(), chin=ov[_CHIN_I].copy(),
        ear_l=ov[_L_EDGE] + 0.1 * (ov[_L_EDGE] - centre), ear_r=ov[_R_EDGE] + 0.1 * (ov[_R_EDGE] - centre),
        extra={"oval": ov},
    )


def _along(poly: np.ndarray, t: float) -> np.ndarray:
    """Point at fraction ``t`` of a polyline's length."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    x = float(np.clip(t, 0, 1)) * s[-1]
    i = int(np.clip(np.searchsorted(s, x, side="right") - 1, 0, len(seg) - 1))
    f = (x - s[i]) / max(seg[i], 1e-9)
    return poly[i] + f * (poly[i + 1] - poly[i])


def _oval_at(ov: np.ndarray, pos: float) -> np.ndarray:
    i = int(np.floor(pos))
    f = pos - i
    return ov[i % len(ov)] * (1 - f) + ov[(i + 1) % len(ov)] * f


def mesh_outline(mesh, anchors: Anchors, p: dict) -> dict:
    """Outline polygon, loops, creases and pleats of a mesh-renderer mask (image pixels).

    The top edge crosses the nose bridge (``top``: 0 just below the eyes .. 1 half-way down the
    nose; round 3 widened the range upwards, from 20-50 % to 5-50 % of the bridge, N95/KN95 15-35 %
    to 8-45 %: more real masks are pulled up to the eyes, SFace-crop row of the top edge at the
    bridge, 10th percentile 53 against 57 on rmfd_dev) and meets the face oval on both sides between the cheekbone and the nose-tip level
    (``side``); from there the edge follows the oval down the jaw and under the chin, pushed out
    by ``expand`` (the mask stands off the face) and ``bottom`` below the chin.
    """
    m = _check_mesh(mesh)[:, :2]
    fr = anchors.frame
    ov = m[_OVAL]
    kind = p["kind"]
    bridge = m[list(NOSE_BRIDGE)]
    top_rng = {"n95": (0.08, 0.45), "kn95": (0.08, 0.45)}.get(kind, (0.05, 0.5))   # round 3: higher (real spread)
    top_c = _along(bridge, top_rng[0] + (top_rng[1] - top_rng[0]) * p["top"])
    # Side corners: oval positions between just below 454/234 (eye level) and 361/132 (nose tip).
    side = 0.3 + 0.9 * p["side"]
    r_pos, l_pos = _R_EDGE + side, _L_EDGE - side
    e = 1.0 + p["expand"]
    # The visible lower face: mesh points below the top edge's level. Its centroid lies inside
    # the face in any pose (the nose tip does not: under strong yaw it is on the silhouette).
    _, yy = fr.to_local(m)
    _, y_top = fr.to_local(top_c)
    low = m[yy > y_top - 0.05]
    centre = low.mean(0)
    rel = low - centre
    ang_l, rad_l = np.arctan2(rel[:, 1], rel[:, 0]), np.linalg.norm(rel, axis=1)

    def ang(q):
        d = np.asarray(q) - centre
        return float(np.arctan2(d[1], d[0]))

    def sil(a: float) -> float:
        """Silhouette radius of the lower face in direction ``a`` (farthest mesh point within +-10 deg)."""
        dd = np.abs(np.angle(np.exp(1j * (ang_l - a))))
        near = dd < np.deg2rad(10)
        return float(rad_l[near].max()) if near.any() else float(rad_l[int(np.argmin(dd))])

    # The soft edge (Gaussian of sigma ``softness``) lies outside the silhouette, not on it: the
    # face contour itself stays covered (alpha >= ~0.93 at 1.5 sigma inside the outline).
    margin = 1.5 * p["softness"] * fr.d_io / 35.24

    def at(a: float, f: float = e) -> np.ndarray:
        return centre + (f * sil(a) + margin) * np.array([np.cos(a), np.sin(a)])

    # The lower edge sweeps the silhouette from the right corner's direction, under the chin, to
    # the left corner's (the image's y axis points down: angles grow through the chin), so the
    # outline is star-shaped around the centroid: no fold-overs when the mesh's far side is hidden.
    a_r, a_c, a_l = ang(_oval_at(ov, r_pos)), ang(ov[_CHIN_I]), ang(_oval_at(ov, l_pos))
    d1 = (a_c - a_r) % (2 * np.pi)
    d2 = (a_l - a_c) % (2 * np.pi)
    if d1 + d2 >= 2 * np.pi - 1e-6:      # degenerate mesh (corners not around the chin): frontal defaults
        a_r, a_c, a_l = ang(centre + fr.ex), ang(centre + fr.ey), ang(centre - fr.ex)
        d1, d2 = (a_c - a_r) % (2 * np.pi), (a_l - a_c) % (2 * np.pi)
    n_low = 21
    t = np.linspace(0.0, 1.0, n_low + 2)[1:-1]
    angles = a_r + t * (d1 + d2)
    tr, tl = at(a_r), at(a_l)
    down = fr.ey * fr.em * p["bottom"]
    # Push the part around the chin down: masks wrap under the chin.
    a_rel = np.abs(np.angle(np.exp(1j * (angles - (a_r + d1)))))
    w_chin = np.clip(1.0 - a_rel / max(min(d1, d2), 1e-6), 0.0, 1.0)
    lower = [at(a) + down * w for a, w in zip(angles, w_chin)]
    # A side is hidden (strong yaw) when the oval's edge point lies well inside the silhouette.
    hidden = {}
    for name, k in (("r", _R_EDGE), ("l", _L_EDGE)):
        a_k = ang(ov[k])
        hidden[name] = float(np.linalg.norm(ov[k] - centre)) < 0.95 * sil(a_k)
    up = -fr.ey * fr.em
    lift = {"cloth": 0.10, "surgical": 0.03, "n95": 0.12, "kn95": 0.06}[kind]

    def top_curve(a, b, sag):
        # From the bridge point to a side corner: rises over the cheekbone a little (lift).
        mid = (a + b) / 2 + sag * up
        return _quad_curve(a, mid, b, n=8)[1:-1]

    right_top = top_curve(top_c, tr, lift)
    left_top = top_curve(tl, top_c, lift)
    # Eye guard: across each eye's width the top edge stays below its lower lid (a turned face's
    # far eye sits close to the nose, where the silhouette corner would otherwise reach it).
    guard = []
    for ring in (_EYE_R, _EYE_L):
        ex_, ey_ = fr.to_local(m[list(ring)])
        guard.append((float(ex_.min()) - 0.2, float(ex_.max()) + 0.2, float(ey_.max()) + 0.1))

    def below_eyes(q):
        X, Y = fr.to_local(q)
        for x0, x1, y_min in guard:
            if x0 <= X <= x1 and Y < y_min:
                q = q + (y_min - Y) * fr.em * fr.ey
        return q

    top_c, tr, tl = below_eyes(top_c), below_eyes(tr), below_eyes(tl)
    right_top = [below_eyes(q) for q in right_top]
    left_top = [below_eyes(q) for q in left_top]
    lower = [below_eyes(q) for q in lower]
    ctrl = [top_c, *right_top, tr, *lower, tl, *left_top]
    sharp = [kind == "kn95"] + [False] * len(right_top) + [True] + [False] * len(lower) + [True] + [False] * len(left_top)
    if kind == "kn95":
        k = int(np.argmin([abs(i - len(lower) / 2) for i in range(len(lower))]))
        sharp[1 + len(right_top) + 1 + k] = True
    poly = _chaikin(np.asarray(ctrl, np.float64), np.asarray(sharp), iterations=3)
    # the smoothed outline keeps the eye guard too
    Xp, Yp = fr.to_local(poly)
    for x0, x1, y_min in guard:
        lift_down = np.where((Xp >= x0) & (Xp <= x1) & (Yp < y_min), y_min - Yp, 0.0)
        poly = poly + lift_down[:, None] * fr.em * fr.ey[None, :]
        Xp, Yp = fr.to_local(poly)
    creases: list[np.ndarray] = []
    pleats: list[np.ndarray] = []
    chin = lower[len(lower) // 2]
    if kind == "kn95" or kind == "cloth":
        creases.append(_quad_curve(top_c, (top_c + chin) / 2 + 0.02 * fr.d_io * fr.ex, chin, n=12))
    lo_r, lo_l = lower[len(lower) // 4], lower[(3 * len(lower)) // 4]
    if kind == "n95":
        creases.append(_quad_curve(lo_r, (top_c + chin) / 2 + 0.25 * fr.em * fr.ey, lo_l))
    for i in range(p.get("pleats", 0)):
        f = (i + 1) / (p["pleats"] + 1) * 0.8
        s_, t_ = _along(np.stack([tl, lo_l]), f), _along(np.stack([tr, lo_r]), f)
        mid = _along(np.stack([top_c, chin]), 0.15 + f)
        pleats.append(_quad_curve(s_, 2 * mid - (s_ + t_) / 2, t_, n=16))
    loops: list[np.ndarray] = []
    if p.get("loops"):
        for corner, k, low_pt, hid in ((tr, _R_EDGE, lower[2], hidden["r"]), (tl, _L_EDGE, lower[-3], hidden["l"])):
            if hid:        # the ear is behind the face
                continue
            edge = ov[k]
            ear = below_eyes(edge + 0.04 * (edge - centre))
            loops.append(np.concatenate([_quad_curve(corner, (corner + ear) / 2 + 0.08 * fr.em * (-fr.ey), ear, 10),
                                         _quad_curve(ear, (ear + low_pt) / 2 + 0.05 * (ear - centre), low_pt, 10)]))
    return {"poly": poly, "loops": loops, "creases": creases, "pleats": pleats}


def _luma(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def face_light(image: np.ndarray, mesh, fill: np.ndarray, anchors: Anchors) -> tuple[float, float]:
    """(brightness factor, left/right balance) of the skin the mask leaves visible.

    Skin = mesh points outside the mask fill, away from the eyes; brightness = median luma / 135
    (a well-lit skin), clipped to [0.4, 1.2]; balance = (right - left) / median in the face
    frame, clipped to [-0.8, 0.8] (positive: lit from the image right)."""
    m = _check_mesh(mesh)[:, :2]
    h, w = image.shape[:2]
    fr = anchors.frame
    xi = np.clip(np.round(m[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(m[:, 1]).astype(int), 0, h - 1)
    inside_img = (m[:, 0] >= 0) & (m[:, 0] < w) & (m[:, 1] >= 0) & (m[:, 1] < h)
    d_eye = np.minimum(np.linalg.norm(m - anchors.eye_l, axis=1), np.linalg.norm(m - anchors.eye_r, axis=1))
    keep = inside_img & (fill[yi, xi] < 0.05) & (d_eye > 0.3 * fr.d_io)
    if keep.sum() < 12:
        return 1.0, 0.0
    lum = _luma(image)[yi[keep], xi[keep]]
    med = float(np.median(lum))
    X, _ = fr.to_local(m[keep])
    right, left = lum[X > 0.15], lum[X < -0.15]
    bal = 0.0
    if right.size >= 4 and left.size >= 4 and med > 1:
        bal = float(np.clip((np.median(right) - np.median(left)) / med * 2.0, -0.8, 0.8))
    return float(np.clip(med / 135.0, 0.4, 1.2)), bal


def render_mesh_mask(image: np.ndarray, mesh, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Draw the mask ``p`` (:func:`sample_mesh_params`) on a copy of ``image`` from ``mesh``.
    Returns (uint8 image, float32 alpha)."""
    from .layers import composite

    layers, q = mesh_layers(image, mesh, p)
    return composite(image, layers, q)


def mesh_layers(image: np.ndarray, mesh, p: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The float32 (H, W) layers (alpha, shade, pattern, shadow, loops) of a mesh-renderer mask
    lit like the face in ``image``, and the parameters to composite them with."""
    from .layers import _gauss, _raster_fill, render_layers

    anchors = mesh_anchors(mesh)
    outline = mesh_outline(mesh, anchors, p)
    h, w = image.shape[:2]
    fill = _raster_fill(outline["poly"], h, w)
    bright, bal = face_light(image, mesh, fill, anchors)
    fr = anchors.frame
    lx = bal
    light = [float(lx * fr.ex[0]), float(lx * fr.ex[1] - 0.25), 1.0]
    q = dict(p, light=light)
    layers = render_layers(image.shape, anchors, q, outline=outline)
    g = np.random.default_rng(p["seed"])
    px = fr.d_io / 35.24
    # Fabric grain (fine noise) and soft folds (low-frequency ridges), then the face's brightness.
    grain = g.standard_normal((h, w)).astype(np.float32)
    grain = _gauss(grain, 0.6 * px) * np.float32(p["grain"])
    shade = layers["shade"] * (1.0 + grain)
    if p.get("folds", 0):
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(p["folds"])):
            ang = g.uniform(-0.5, 0.5)
            d = (xs - fr.origin[0]) * np.cos(ang) * fr.ey[0] + (ys - fr.origin[1]) * np.cos(ang) * fr.ey[1] \
                + (xs - fr.origin[0]) * np.sin(ang) * fr.ex[0] + (ys - fr.origin[1]) * np.sin(ang) * fr.ex[1]
            c0 = g.uniform(0.7, 1.5) * fr.em
            shade = shade * (1.0 - 0.08 * np.exp(-((d - c0) / (1.2 * px)) ** 2)).astype(np.float32)
    layers["shade"] = np.clip(shade * np.float32(bright), 0.0, 1.25).astype(np.float32)
    q["loop_color"] = [int(c * bright) for c in p["loop_color"]]
    return layers, q


def looks_table() -> list[dict]:
    """The mix as JSON-able rows (docs, results)."""
    return [asdict(lk) for lk in LOOKS]


from .mesh_cache import MeshCache, crop_meshes, image_key  # noqa: E402,F401  (re-exported: their old home)

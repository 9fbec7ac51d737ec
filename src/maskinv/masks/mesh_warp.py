"""The thin-plate warp of :class:`~maskinv.masks.mesh_batch.MeshBatchRenderer`: control points in
the terms of the per-image outline, and the spline through them on a coarse grid.

Round 2 warped a bank entry with one global cubic (least squares over the mesh and the silhouette):
on turned faces its mask left the visible silhouette by a few pixels (alpha IoU with the per-image
renderer 0.88-0.92 at 20-25 deg of yaw, 0.65-0.81 at 35). The outline of the per-image renderer is
star-shaped around the centroid of the lower face and sweeps its silhouette between two corner
directions, so the control points here are that silhouette (and a ring outside it) at directions
spread evenly between the corners, plus the top edge's bridge point and a few interior points: the
same construction on the image's mesh and on the bank entry's, one to one, with the entry's own
parameters (``top``, ``side``). A thin-plate spline (slightly regularised) through them maps
image pixels to bank pixels.
"""
from __future__ import annotations

import numpy as np

EYES = ((33, 133, 159, 145), (263, 362, 386, 374))
TPS_STEP = 8                    # the thin-plate map is evaluated every ~8 px and upsampled (bilinear)
_DIRS = 15                      # silhouette directions of the outline control points
#: Interior control points: nose bridge (168..1), under the nose, lips, both eye rings.
_INNER = (168, 6, 197, 195, 5, 4, 1, 2, 0, 17, 61, 291) + EYES[0] + EYES[1]


def _tps_u(d2: np.ndarray) -> np.ndarray:
    """Thin-plate kernel r^2 log r^2 of squared distances (0 at 0)."""
    return d2 * np.log(np.maximum(d2, 1e-12))


def _wrap(a: np.ndarray) -> np.ndarray:
    """Angles to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def outline_ctrl(m: np.ndarray, top: np.ndarray, side: np.ndarray, top_lo: np.ndarray, top_hi: np.ndarray) -> np.ndarray:
    """Control points of the thin-plate warp, in the terms of the per-image outline
    (:func:`maskinv.masks.mesh.mesh_outline`), batched: m (N, 468, 2), the entries' ``top`` and
    ``side`` parameters and top ranges (N,) -> (N, K, 2).

    The outline is star-shaped around the centroid of the lower face (mesh points below the top
    edge's level) and sweeps, from the right corner's direction under the chin to the left's, the
    lower face's silhouette (farthest point within +-10 deg). The points: that silhouette at
    ``_DIRS`` directions evenly spread between the corners, the same directions at 1.35x the
    radius (so the map outside the face stays radial, not an extrapolation), the top edge's bridge
    point, the interior set and the centroid. Image and bank points correspond one to one."""
    from ..align.mesh import FACE_OVAL, NOSE_BRIDGE

    n = len(m)
    ar = np.arange(n)
    eye_a, eye_b = m[:, list(EYES[0])].mean(1), m[:, list(EYES[1])].mean(1)
    ex = (eye_b - eye_a) + (m[:, 291] - m[:, 61])
    ex /= np.maximum(np.linalg.norm(ex, axis=1, keepdims=True), 1e-9)
    ey = np.stack([-ex[:, 1], ex[:, 0]], -1)
    origin = (eye_a + eye_b) / 2
    em = np.maximum(np.einsum("nc,nc->n", (m[:, 61] + m[:, 291]) / 2 - origin, ey), 1e-6)
    # the top edge's bridge point: fraction f of the nose line's length
    br = m[:, list(NOSE_BRIDGE)]
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(np.linalg.norm(np.diff(br, axis=1), axis=2), 1)], 1)
    x = (top_lo + (top_hi - top_lo) * top) * cum[:, -1]
    i = np.clip((cum <= x[:, None]).sum(1) - 1, 0, br.shape[1] - 2)
    f = (x - cum[ar, i]) / np.maximum(cum[ar, i + 1] - cum[ar, i], 1e-9)
    top_c = br[ar, i] + f[:, None] * (br[ar, i + 1] - br[ar, i])
    yy = np.einsum("nkc,nc->nk", m - origin[:, None], ey) / em[:, None]
    y_top = np.einsum("nc,nc->n", top_c - origin, ey) / em
    low = yy > (y_top - 0.05)[:, None]
    centre = (m * low[..., None]).sum(1) / np.maximum(low.sum(1), 1)[:, None]
    rel = m - centre[:, None]
    ang = np.arctan2(rel[..., 1], rel[..., 0])
    rad = np.where(low, np.hypot(rel[..., 0], rel[..., 1]), -1.0)
    ov = m[:, list(FACE_OVAL)]

    def oval_at(pos):
        k = np.floor(pos).astype(np.int64)
        t = (pos - k)[:, None]
        return ov[ar, k % 36] * (1 - t) + ov[ar, (k + 1) % 36] * t

    def ang_of(q):
        d = q - centre
        return np.arctan2(d[:, 1], d[:, 0])

    sd = 0.3 + 0.9 * side
    a_r, a_c, a_l = ang_of(oval_at(8 + sd)), ang_of(ov[:, 18]), ang_of(oval_at(28 - sd))
    d1, d2 = (a_c - a_r) % (2 * np.pi), (a_l - a_c) % (2 * np.pi)
    bad = d1 + d2 >= 2 * np.pi - 1e-6                  # degenerate: frontal directions
    a_r = np.where(bad, np.arctan2(ex[:, 1], ex[:, 0]), a_r)
    span = np.where(bad, np.pi, d1 + d2)
    A = a_r[:, None] + np.linspace(0.0, 1.0, _DIRS)[None] * span[:, None]          # (N, D)
    # silhouette radius per direction: the farthest lower-face point within ~+-10 deg (2-degree
    # angle bins, +-5 bins; a direction with no point there takes the widest window's)
    nb = 180
    bins = (np.floor((ang + np.pi) * (nb / (2 * np.pi))).astype(np.int64) % nb) + nb * ar[:, None]
    r_bin = np.full(n * nb, -1.0)
    np.maximum.at(r_bin, bins.ravel(), rad.ravel())
    r_bin = r_bin.reshape(n, nb)
    b = np.floor((_wrap(A) + np.pi) * (nb / (2 * np.pi))).astype(np.int64)
    sil = np.full(A.shape, -1.0)
    for half in (5, 15, 45, 90):
        if (sil >= 0).all():
            break
        win = r_bin[ar[:, None, None], (b[..., None] + np.arange(-half, half + 1)) % nb].max(2)
        sil = np.where(sil < 0, win, sil)
    sil = np.maximum(sil, 0.0)
    u = np.stack([np.cos(A), np.sin(A)], -1)
    ring = centre[:, None] + sil[..., None] * u
    outer = centre[:, None] + 1.35 * sil[..., None] * u
    return np.concatenate([ring, outer, top_c[:, None], m[:, list(_INNER)], centre[:, None]], 1)




def tps_eval(P: np.ndarray, Q: np.ndarray, grid: np.ndarray, reg: float) -> np.ndarray:
    """Thin-plate splines through control points P (N, K, 2) -> Q (N, K, 2), regularised by
    ``reg`` (added to the kernel's diagonal), evaluated at ``grid`` (G, 2) float32: (N, G, 2) float32."""
    n, k = P.shape[:2]
    L = np.zeros((n, k + 3, k + 3))
    L[:, :k, :k] = _tps_u(((P[:, :, None] - P[:, None]) ** 2).sum(-1)) + reg * np.eye(k)
    L[:, :k, k] = 1.0
    L[:, :k, k + 1:] = P
    L[:, k, :k] = 1.0
    L[:, k + 1:, :k] = P.transpose(0, 2, 1)
    rhs = np.zeros((n, k + 3, 2))
    rhs[:, :k] = Q
    sol = np.linalg.solve(L, rhs).astype(np.float32)                          # (N, K + 3, 2)
    g = grid
    P32 = P.astype(np.float32)
    # squared distances grid -> control points as |g|^2 + |p|^2 - 2 g.p (one matmul), float32
    d2 = (g * g).sum(1)[None, :, None] + (P32 * P32).sum(2)[:, None, :] - 2.0 * (g[None] @ P32.transpose(0, 2, 1))
    np.maximum(d2, np.float32(1e-12), out=d2)
    return (d2 * np.log(d2)) @ sol[:, :k] + sol[:, k:k + 1] + g[None] @ sol[:, k + 1:]

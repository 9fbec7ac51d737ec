"""Mesh masks at training speed: each image's own cached mesh, a pre-rendered bank, one warp.

The per-image ``mesh`` renderer (:func:`maskinv.masks.mesh.render_mesh_mask`, ~4 ms of CPU per
112 px crop) rasterises, shades and blurs every mask from scratch. For the training loop, where every
image's mesh is cached (:class:`~maskinv.masks.mesh.MeshCache`), :class:`MeshBatchRenderer` renders a
seeded bank once (looks drawn from :data:`~maskinv.masks.mesh.LOOKS` on bank meshes, e.g. cached
meshes of training crops) and then, per image:

1. maps the image's own mesh onto the bank entry's mesh, so the mask follows *this* face's
   silhouette, nose bridge and chin (pose, size, roll), not a bank face's: ``warp="tps"``
   (default) a thin-plate spline through control points built like the per-image outline (the
   lower face's silhouette between the entry's corner directions, a ring outside it, the bridge
   point of the top edge, interior points; :mod:`maskinv.masks.mesh_warp`), evaluated every 8 px
   and upsampled; ``warp="cubic"`` (round 2) a cubic least-squares map over the 468 points and,
   weighted x2, the oval pushed out to the cheeks;
2. warps the entry's blend planes (coverage, colour weights, loops: the blend form of
   :mod:`maskinv.masks.batched`) through that map (``cv2.remap``), only inside the face's box;
3. lights it like the face: the median luma of the mesh points the mask leaves visible (eyes
   excluded) scales the mask as in :func:`~maskinv.masks.mesh.face_light`, and the left/right skin
   balance becomes a horizontal brightness ramp across the mask (the per-image renderer instead
   moves the light; the ramp is the cheap approximation);
4. composites with the entry's colours plus per-call colour noise, clipped once.

Measured against the per-image renderer with the same parameters on posed meshes (alpha IoU) and
timed beside it in benchmarks/bench_masks_mesh.py (docs/masks.md).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataFormatError
from .mesh_warp import EYES as _EYES, TPS_STEP, outline_ctrl, tps_eval

__all__ = ["MeshBatchRenderer"]

# image_rng stream offset of bank entries (apart from batched.py's streams).
_STREAM = 7_000_000


#: (power of y, power of x) of each monomial of :func:`_basis`.
_POWERS = ((0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0), (0, 3), (1, 2), (2, 1), (3, 0))


def _basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cubic monomials of normalised coordinates, stacked on the last axis (a quadratic map
    followed faces turned by 25 deg of yaw visibly worse in a trial on the test meshes)."""
    x2, y2 = x * x, y * y
    return np.stack([np.ones_like(x), x, y, x2, x * y, y2, x2 * x, x2 * y, x * y2, y2 * y], -1)


_BINS = 90                      # 4 deg angle bins for the silhouette
_WIN = 3                        # +-3 bins = +-12 deg
_WIN_IDX = (np.arange(_BINS)[:, None] + np.arange(-_WIN, _WIN + 1)[None, :]) % _BINS


def _silhouette(m: np.ndarray) -> np.ndarray:
    """The face oval with each point pushed out to the farthest lower-face mesh point within
    ~12 deg of its direction from the nose tip (under yaw the far side's edge is the cheek): the
    rule of :func:`maskinv.masks.mesh.mesh_outline`, on 4-degree angle bins. m: (N, 468, 2) ->
    (N, 36, 2)."""
    from ..align.mesh import FACE_OVAL

    n = m.shape[0]
    c = m[:, 1:2]
    e = m[:, list(_EYES[1])].sum(1) - m[:, list(_EYES[0])].sum(1)
    ey = np.stack([-e[:, 1], e[:, 0]], -1)                            # down the face (any length)
    d = m - c
    low = np.einsum("nkc,nc->nk", m - m[:, 168:169], ey) > 0
    ang = np.arctan2(d[..., 1], d[..., 0])
    rad = np.where(low, np.hypot(d[..., 0], d[..., 1]), 0.0)
    bins = (np.floor((ang + np.pi) / (2 * np.pi) * _BINS).astype(np.int64) % _BINS) + _BINS * np.arange(n)[:, None]
    r_bin = np.zeros(n * _BINS)
    np.maximum.at(r_bin, bins.ravel(), rad.ravel())
    r_win = r_bin.reshape(n, _BINS)[:, _WIN_IDX].max(2)                # (N, BINS)
    ov = list(FACE_OVAL)
    r_o = np.hypot(d[:, ov, 0], d[:, ov, 1])
    b_o = bins[:, ov] - _BINS * np.arange(n)[:, None]
    scale = np.maximum(r_o, np.take_along_axis(r_win, b_o, 1)) / np.maximum(r_o, 1e-9)
    return c + d[:, ov] * scale[..., None]


class MeshBatchRenderer:
    """Draw ``mesh`` masks on images whose meshes are known (cached), fast.

    Args:
        image_size: side (or (H, W)) of the images it will be called on and of the bank.
        meshes: (M, 468, 2|3) bank meshes in image pixels at ``image_size`` (e.g. cached meshes of
            aligned training crops); bank entries are rendered on them in turn.
        per_kind: bank entries per mesh kind (surgical, n95, kn95, cloth); the looks mix sets
            which kind each entry is.
        seed: bank seed (same seed, size and meshes: same bank).
    """

    def __init__(self, image_size=112, *, meshes, per_kind: int = 24, seed: int = 0, warp: str = "tps",
                 tps_reg: float = 1e-2):
        from .mesh import MESH_KINDS, _check_mesh, face_light, mesh_anchors, mesh_layers, mesh_outline, \
            sample_mesh_params
        from .render import _raster_fill, image_rng

        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        h, w = self.image_size
        if min(h, w) < 16:
            raise ConfigError(f"MeshBatchRenderer: image_size too small: {self.image_size}")
        if per_kind < 1:
            raise ConfigError(f"MeshBatchRenderer: per_kind must be >= 1, got {per_kind}")
        if warp not in ("tps", "cubic"):
            raise ConfigError(f"MeshBatchRenderer: warp must be 'tps' or 'cubic', got {warp!r}")
        self.warp, self.tps_reg = warp, float(tps_reg)
        ms = np.asarray(meshes, np.float64)
        if ms.ndim != 3 or ms.shape[0] < 1 or ms.shape[1] != 468 or ms.shape[2] not in (2, 3):
            raise ConfigError(f"MeshBatchRenderer: meshes must have shape (M, 468, 2|3), got {ms.shape}")
        grey = np.full((h, w, 3), 128, np.uint8)
        planes, colours, loop_cols, bank_mesh, bright0, kinds, params = [], [], [], [], [], [], []
        for j in range(per_kind * len(MESH_KINDS)):
            g = image_rng(seed, _STREAM + j)
            m = _check_mesh(ms[j % len(ms)], f"MeshBatchRenderer: bank mesh {j % len(ms)}")[:, :2]
            p = sample_mesh_params("random", g)
            L, q = mesh_layers(grey, m, p)
            a, al = L["alpha"], L["loops"]
            C = 1.0 - (1.0 - L["shadow"]) * (1.0 - a) * (1.0 - al)
            K1 = a * (1.0 - al) * np.clip(L["shade"], 0.0, 1.25)
            planes.append(np.stack([C, K1, K1 * L["pattern"], al], -1).astype(np.float32))
            colours.append(np.array([p["color"], p["color2"]], np.float32))
            loop_cols.append(np.asarray(q["loop_color"], np.float32) * 0.95)
            bank_mesh.append(m)
            # The bank is lit for a mid-grey face: the brightness factor it got (face_light).
            anchors = mesh_anchors(m)
            fill = _raster_fill(mesh_outline(m, anchors, p)["poly"], h, w)
            bright0.append(face_light(grey, m, fill, anchors)[0])
            kinds.append(p["kind"])
            params.append(p)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        # The light ramp's planes: K1 X and K2 X, X = the bank face's abscissa (interocular units
        # from the nose tip along the eye line, clipped to +-1.5): after the warp X is the image
        # face's abscissa, so K (1 + r X) = K + r (K X) is linear in the warped planes.
        self._ramp_planes = []
        for pl, m in zip(planes, bank_mesh):
            e_l, e_r = m[list(_EYES[0])].mean(0), m[list(_EYES[1])].mean(0)
            d_io = max(float(np.linalg.norm(e_r - e_l)), 1e-6)
            X = np.clip(((xs - m[1, 0]) * (e_r - e_l)[0] + (ys - m[1, 1]) * (e_r - e_l)[1]) / d_io ** 2, -1.5, 1.5)
            self._ramp_planes.append((pl[..., 1:3] * X[..., None].astype(np.float32)).astype(np.float32))
        self.colours = np.stack(colours)        # (N, 2, 3)
        self.loop_colours = np.stack(loop_cols)
        self.bank_mesh = np.stack(bank_mesh)    # (N, 468, 2)
        self._bank_fit = np.concatenate([self.bank_mesh, 2.0 * _silhouette(self.bank_mesh)], 1)   # (N, 504, 2)
        self.bank_bright = np.asarray(bright0)
        self.kinds = kinds
        self.entry_params = params               # each entry's sample_mesh_params (JSON-able)
        self._s = 0.5 * max(h, w)
        tr = {"n95": (0.15, 0.35), "kn95": (0.15, 0.35)}
        self._e_top = np.array([p["top"] for p in params], np.float64)
        self._e_side = np.array([p["side"] for p in params], np.float64)
        self._e_lo = np.array([tr.get(p["kind"], (0.2, 0.5))[0] for p in params])
        self._e_hi = np.array([tr.get(p["kind"], (0.2, 0.5))[1] for p in params])
        self._bank_tps = outline_ctrl(self.bank_mesh, self._e_top, self._e_side, self._e_lo, self._e_hi)
        # The thin-plate map's coarse grid: n_y x n_x samples at the pixel centres that cv2.resize
        # (bilinear, scale h / n_y, w / n_x) maps back onto, so the upsampled map is exact there.
        self._grid_n = (-(-h // TPS_STEP), -(-w // TPS_STEP))
        gy = (np.arange(self._grid_n[0]) + 0.5) * h / self._grid_n[0]
        gx = (np.arange(self._grid_n[1]) + 0.5) * w / self._grid_n[1]
        G = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        self._grid32 = np.stack(self._norm(G), -1).astype(np.float32)           # (G, 2) normalised
        nx, ny = (xs[0] - 0.5 * w) / self._s, (ys[:, 0] - 0.5 * h) / self._s   # as _norm, one row / column
        self._rows_pow = (ny[:, None] ** np.arange(4)[None, :]).astype(np.float32)          # (H, 4): y^b
        self._cols_pow = np.ascontiguousarray((nx[:, None] ** np.arange(4)[None, :]).T, np.float32)   # (4, W)
        # Bank planes as remapped (H, W, 4) float32: keep = 1 - C (outside the bank: 1, no mask), K1,
        # K2 = K1 x pattern, K3 (the blend form of masks/batched.py, shade clipped to 1.25).
        self._keep_planes = [np.concatenate([1.0 - pl[..., :1], pl[..., 1:]], -1) for pl in planes]

    def __len__(self) -> int:
        return len(self._keep_planes)

    def _norm(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.image_size
        return (p[..., 0] - 0.5 * w) / self._s, (p[..., 1] - 0.5 * h) / self._s

    def _tps_maps(self, m: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Thin-plate maps image -> bank pixels on the coarse grid: (N, n_y, n_x, 2) float32."""
        P = np.stack(self._norm(outline_ctrl(m, self._e_top[e], self._e_side[e], self._e_lo[e], self._e_hi[e])), -1)
        out = tps_eval(P, self._bank_tps[e], self._grid32, self.tps_reg)
        return out.reshape(len(m), self._grid_n[0], self._grid_n[1], 2)

    def render_batch(self, images: np.ndarray, meshes: np.ndarray, entries: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Masked copies of ``images`` (uint8 (N, H, W, 3)) from their meshes ((N, 468, 2|3)) with
        bank ``entries`` (N,). Returns (uint8 (N, H, W, 3), float32 (N, H, W) coverage)."""
        import cv2

        h, w = self.image_size
        n = len(images)
        m = np.asarray(meshes, np.float64)[..., :2]
        if n == 0:
            return images.copy(), np.zeros((0, h, w), np.float32)
        if not np.all(np.isfinite(m)):
            raise DataFormatError("MeshBatchRenderer: meshes contain NaN or infinite values")
        # 1. Image mesh -> bank mesh: a thin-plate spline through the silhouette and interior control
        #    points (warp "tps"), or a cubic least-squares fit over the 468 points and the silhouette
        #    (warp "cubic", round 2); both in normalised image coordinates, to bank pixels.
        if self.warp == "tps":
            grids = self._tps_maps(m, entries)
        else:
            A = _basis(*self._norm(np.concatenate([m, _silhouette(m)], 1)))        # (N, 504, 10)
            A[:, 468:] *= 2.0
            At = A.transpose(0, 2, 1)
            coef = np.linalg.solve(At @ A, At @ self._bank_fit[entries]).astype(np.float32)   # (N, 10, 2)
            cm = np.zeros((n, 2, 4, 4), np.float32)
            for k, (pb, pa) in enumerate(_POWERS):
                cm[:, :, pb, pa] = coef[:, k, :]
        # 2. Per image: the map (tps: the coarse grid upsampled; cubic: separable, rows^b (H, 4) @
        #    coefficients (4, 4) @ columns^a (4, W)), only inside the face's box grown by 35 % (no
        #    extrapolated fold-back far from the face; outside it nothing is drawn), and the warped planes.
        lo, hi = m.min(1), m.max(1)
        pad = 0.35 * (hi - lo)
        x0 = np.clip(np.floor(lo[:, 0] - pad[:, 0]), 0, w).astype(int)
        y0 = np.clip(np.floor(lo[:, 1] - pad[:, 1]), 0, h).astype(int)
        x1 = np.clip(np.ceil(hi[:, 0] + pad[:, 0]), 0, w).astype(int)
        y1 = np.clip(np.ceil(hi[:, 1] + pad[:, 1]), 0, h).astype(int)
        P = np.empty((n, h, w, 4), np.float32)            # keep = 1 - C, K1, K2, K3
        R = np.empty((n, h, w, 2), np.float32)            # K1 X, K2 X
        for i in range(n):
            if y1[i] <= y0[i] or x1[i] <= x0[i]:          # the face is off the image
                P[i] = (1.0, 0.0, 0.0, 0.0)
                R[i] = 0.0
                continue
            if self.warp == "tps":
                mx = cv2.resize(grids[i, ..., 0], (w, h), interpolation=cv2.INTER_LINEAR)
                my = cv2.resize(grids[i, ..., 1], (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                mx = self._rows_pow @ cm[i, 0] @ self._cols_pow
                my = self._rows_pow @ cm[i, 1] @ self._cols_pow
            for mp in (mx, my):
                mp -= np.float32(0.5)                     # cv2's pixel centres
                mp[:y0[i]] = -1e4
                mp[y1[i]:] = -1e4
                mp[:, :x0[i]] = -1e4
                mp[:, x1[i]:] = -1e4
            e = int(entries[i])
            cv2.remap(self._keep_planes[e], mx, my, cv2.INTER_LINEAR, dst=P[i], borderMode=cv2.BORDER_CONSTANT,
                      borderValue=(1.0, 0.0, 0.0, 0.0))
            cv2.remap(self._ramp_planes[e], mx, my, cv2.INTER_LINEAR, dst=R[i], borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0)
        keep_px = P[..., 0]
        # 3. Light: median luma of the visible skin at mesh points (eyes excluded), left/right balance.
        xi = np.clip(np.round(m[..., 0]).astype(np.int64), 0, w - 1)
        yi = np.clip(np.round(m[..., 1]).astype(np.int64), 0, h - 1)
        e_l, e_r = m[:, list(_EYES[0])].mean(1, keepdims=True), m[:, list(_EYES[1])].mean(1, keepdims=True)
        d_io = np.maximum(np.linalg.norm(e_r - e_l, axis=-1), 1e-6)            # (N, 1)
        ex = (e_r - e_l)[:, 0] / d_io                                           # (N, 2)
        d_eye = np.minimum(np.linalg.norm(m - e_l, axis=-1), np.linalg.norm(m - e_r, axis=-1))
        ii = np.arange(n)[:, None]
        inside = (m[..., 0] >= 0) & (m[..., 0] < w) & (m[..., 1] >= 0) & (m[..., 1] < h)
        keep = inside & (keep_px[ii, yi, xi] > 0.95) & (d_eye > 0.3 * d_io)
        lum = images[ii, yi, xi].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])   # (N, 468)
        X = np.einsum("nkc,nc->nk", m - m[:, 1:2], ex) / d_io

        def med(sel):
            cnt = sel.sum(1)
            v = np.where(sel, lum, np.nan)
            v[cnt == 0] = 0.0
            return np.nanmedian(v, 1), cnt

        med_all, cnt = med(keep)
        med_r, cnt_r = med(keep & (X > 0.15))
        med_l, cnt_l = med(keep & (X < -0.15))
        ok = cnt >= 12
        bright = np.where(ok, np.clip(med_all / 135.0, 0.4, 1.2), 1.0)
        ok_bal = ok & (cnt_r >= 4) & (cnt_l >= 4) & (med_all > 1)
        bal = np.where(ok_bal, np.clip((med_r - med_l) / np.where(ok_bal, med_all, 1.0) * 2.0, -0.8, 0.8), 0.0)
        gain = bright / self.bank_bright[entries]
        # 4. Composite: x (1 - C) + [K1, K2, K3, K1 X, K2 X] @ [c1; c2 - c1; c_loop; r c1; r (c2 - c1)]
        #    x gain (r = 0.25 x balance: the ramp), rounded and saturated once (cv2.convertScaleAbs:
        #    the mask term is (1 + r X) K1 (c1 (1 - pattern) + c2 pattern) >= 0, |r X| <= 0.3).
        cols = np.clip(self.colours[entries] + rng.normal(0.0, 4.0, (n, 2, 3)), 0, 255)
        r = (0.25 * bal)[:, None]
        W = np.stack([cols[:, 0], cols[:, 1] - cols[:, 0], self.loop_colours[entries], r * cols[:, 0],
                      r * (cols[:, 1] - cols[:, 0])], 1)
        W = (W * gain[:, None, None]).astype(np.float32)                       # (N, 5, 3)
        W4 = np.concatenate([np.zeros((n, 1, 3), np.float32), W[:, :3]], 1)     # C's row: 0
        o = images.reshape(n, h * w, 3).astype(np.float32)
        o *= keep_px.reshape(n, h * w, 1)
        Pf, Rf = P.reshape(n, h * w, 4), R.reshape(n, h * w, 2)
        for i in range(n):
            o[i] += Pf[i] @ W4[i]
            o[i] += Rf[i] @ W[i, 3:]
        out = cv2.convertScaleAbs(o.reshape(n * h, w * 3)).reshape(n, h, w, 3)
        return out, 1.0 - keep_px

    def render(self, image: np.ndarray, mesh, entry: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One image: (uint8 (H, W, 3) masked copy, float32 (H, W) coverage) with bank ``entry``."""
        out, _, _, cover = self(image[None], np.asarray(mesh)[None], rng, entries=np.array([int(entry)]))
        return out[0], cover[0]

    def __call__(self, images, meshes, rng=0, prob: float = 1.0, *, entries=None):
        """Mask each image (probability ``prob``) from its own mesh.

        images: uint8 (B, H, W, 3) RGB, never modified; meshes: (B, 468, 2|3) in those images'
        pixels (e.g. :meth:`MeshCache.get <maskinv.masks.mesh.MeshCache.get>`); rng:
        ``numpy.random.Generator`` or integer seed (all draws come from it); entries: pin the bank
        entry of each image (B,) instead of drawing it. Returns (uint8 (B, H, W, 3) new array, bool
        (B,) applied, int (B,) bank entries (-1 where not applied), float32 (B, H, W) coverage)."""
        from .render import _as_rng

        g = _as_rng(rng)
        imgs = np.asarray(images)
        ms = np.asarray(meshes)
        h, w = self.image_size
        if imgs.ndim != 4 or imgs.shape[1:] != (h, w, 3) or imgs.dtype != np.uint8:
            raise DataFormatError(f"MeshBatchRenderer: expected uint8 (B, {h}, {w}, 3) images, got "
                                  f"{imgs.dtype} {imgs.shape}")
        if ms.ndim != 3 or ms.shape[:2] != (len(imgs), 468) or ms.shape[2] not in (2, 3):
            raise DataFormatError(f"MeshBatchRenderer: {len(imgs)} images but meshes of shape {ms.shape}; "
                                  f"expected ({len(imgs)}, 468, 2|3)")
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"MeshBatchRenderer: prob must be in [0, 1], got {prob}")
        applied = g.random(len(imgs)) < prob
        drawn = g.integers(0, len(self), len(imgs))
        if entries is not None:
            drawn = np.asarray(entries, np.int64).reshape(-1)
            if drawn.shape != (len(imgs),) or drawn.min(initial=0) < 0 or drawn.max(initial=0) >= len(self):
                raise ConfigError(f"MeshBatchRenderer: entries must be {len(imgs)} indices in [0, {len(self)})")
        entries = np.where(applied, drawn, -1)
        if applied.all():
            out, cover = self.render_batch(imgs, ms, entries, g)
            return out, applied, entries, cover
        sel = np.nonzero(applied)[0]
        out = imgs.copy()
        cover = np.zeros((len(imgs), h, w), np.float32)
        o, c = self.render_batch(imgs[sel], ms[sel], entries[sel], g)
        out[sel], cover[sel] = o, c
        return out, applied, entries, cover

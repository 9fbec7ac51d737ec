"""Batched torch masker for the training step (CPU or GPU, also in DataLoader workers).

At construction a seeded *bank* of rendered masks is built per kind at the target image size
with the NumPy renderer on the template landmarks (aligned crops). Each bank entry is stored in
a linear "blend form" of four planes:

    C  = 1 - (1 - shadow)(1 - alpha)(1 - loops)   coverage (how much of the image is replaced)
    K1 = alpha (1 - loops) shade                  weight of colour 1
    K2 = K1 * pattern                             weight of (colour 2 - colour 1)
    K3 = loops                                    weight of the loop colour

    out = x (1 - C) + K1 c1 + K2 (c2 - c1) + K3 c_loop

Shade is clipped to [0, 1] in the bank, so ``out`` is a convex mix of values in [0, 255]: no
overflow, no wrap-around. The bank keeps ``1 - C`` (padded with 1) instead of ``C``. Per call,
each selected image picks an entry, a random integer shift (a window of the padded bank; or,
with ``jitter="affine"``, a rotation/scale/shift/mirror through ``grid_sample``) and random
colours; the blend is one batched matmul and one fused multiply-add over the rows a mask can
reach.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError
from .geometry import face_anchors
from .kinds import MASK_KINDS, RANDOM_KINDS, resolve_kind, sample_params
from .render import image_rng, paper_layers, render_layers

# Kind index offset inside image_rng streams used for bank entries (bank seeds never collide).
_KIND_STRIDE = 1_000_000


def _expand_kinds(kinds) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    out: list[str] = []
    for k in kinds:
        if k == "random":
            out.extend(x for x in RANDOM_KINDS if x not in out)
        else:
            resolve_kind(k, np.random.default_rng(0))  # validates the name
            if k not in out:
                out.append(k)
    if not out:
        raise ConfigError("BatchMasker: kinds is empty")
    return tuple(out)


def build_mesh_bank(image_size, per_kind: int, seed: int, meshes):
    """The ``mesh`` renderer's bank: ``per_kind x len(MESH_KINDS)`` entries, each a look drawn
    from the real-world mix (masks/mesh.py) on one of ``meshes`` ((M, 468, 2|3) face meshes in
    the bank's pixel coordinates, e.g. a :class:`~maskinv.masks.mesh.MeshCache` of aligned
    training crops) moved by the v1 bank's random similarity and mirrored half of the time; lit
    for a mid-grey face. Returns planes, colours and kind ids (indices into MESH_KINDS)."""
    from .mesh import MESH_KINDS, mesh_layers, sample_mesh_params

    h, w = image_size
    ms = np.asarray(meshes, np.float64)
    if ms.ndim != 3 or ms.shape[0] < 1 or ms.shape[1] != 468 or ms.shape[2] not in (2, 3):
        raise ConfigError(f"BatchMasker: renderer 'mesh' needs meshes of shape (M, 468, 2|3), got {ms.shape}")
    centre = np.array([w / 2.0, h / 2.0])
    grey = np.full((h, w, 3), 128, np.uint8)
    planes, colours, ids = [], [], []
    for j in range(per_kind * len(MESH_KINDS)):
        g = image_rng(seed, len(MASK_KINDS) * _KIND_STRIDE + j)
        ang = np.deg2rad(g.uniform(-7, 7))
        sc = g.uniform(0.94, 1.06)
        R = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        shift = np.array([g.uniform(-0.02, 0.02) * w, g.uniform(-0.03, 0.03) * h])
        m = ms[int(g.integers(len(ms)))][:, :2]
        m = (m - centre) @ R.T + centre + shift
        mirror = bool(g.random() < 0.5)
        p = sample_mesh_params("random", g)
        L, _ = mesh_layers(grey, m, p)
        a, al = L["alpha"], L["loops"]
        C = 1.0 - (1.0 - L["shadow"]) * (1.0 - a) * (1.0 - al)
        K1 = a * (1.0 - al) * np.clip(L["shade"], 0.0, 1.0)
        pl = np.stack([C, K1, K1 * L["pattern"], al]).astype(np.float32)
        if mirror:
            pl = pl[:, :, ::-1]
        planes.append(np.ascontiguousarray(pl))
        colours.append(np.array([p["color"], p["color2"]], np.float32))
        ids.append(MESH_KINDS.index(p["kind"]))
    return np.stack(planes), np.stack(colours), np.array(ids, np.int64)


def build_bank(image_size, kinds: Sequence[str], per_kind: int, seed: int):
    """NumPy bank: planes float32 (N, 4, H, W), colours float32 (N, 2, 3), kind ids int64 (N,).

    Each entry is rendered on the template landmarks moved by a random similarity (roll
    +-7 deg, scale 0.94-1.06, shift +-2 % / +-3 %) and mirrored half of the time, so the
    bank already carries geometric variety; calls then only add integer shifts (fast).
    """
    from ..constants import template_for_size

    h, w = image_size
    tpl = template_for_size((h, w)).astype(np.float64)
    centre = np.array([w / 2.0, h / 2.0])
    planes, colours, ids = [], [], []
    for ki, kind in enumerate(kinds):
        k_global = MASK_KINDS.index(kind)
        for j in range(per_kind):
            g = image_rng(seed, k_global * _KIND_STRIDE + j)
            ang = np.deg2rad(g.uniform(-7, 7))
            sc = g.uniform(0.94, 1.06)
            R = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
            shift = np.array([g.uniform(-0.02, 0.02) * w, g.uniform(-0.03, 0.03) * h])
            lm = (tpl - centre) @ R.T + centre + shift
            mirror = bool(g.random() < 0.5)
            p = sample_params(kind, g)
            if kind == "paper":
                grey, a = paper_layers((h, w), lm, p)
                shade = np.clip(grey * 1.25, 0, 1)
                C, K1, K2, K3 = a, a * shade, np.zeros_like(a), np.zeros_like(a)
                c1 = c2 = p["color"]
            else:
                L = render_layers((h, w), face_anchors(lm, (h, w)), p)
                a, al = L["alpha"], L["loops"]
                C = 1.0 - (1.0 - L["shadow"]) * (1.0 - a) * (1.0 - al)
                K1 = a * (1.0 - al) * np.clip(L["shade"], 0.0, 1.0)
                K2 = K1 * L["pattern"]
                K3 = al
                c1, c2 = p["color"], p["color2"]
            pl = np.stack([C, K1, K2, K3]).astype(np.float32)
            if mirror:
                pl = pl[:, :, ::-1]
            planes.append(np.ascontiguousarray(pl))
            colours.append(np.array([c1, c2], np.float32))
            ids.append(ki)
    return np.stack(planes), np.stack(colours), np.array(ids, np.int64)


_JITTER_MODES = ("shift", "affine", "none")


class BatchMasker:
    """Mask a batch of aligned face tensors; returns ``(new_images, applied)``.

    Args:
        image_size: side (or (H, W)) of the images it will be called on.
        kinds: kinds to draw from; "random" = every realistic kind (not "paper").
        device: where the bank lives first (moved on demand to the images' device).
        per_kind: bank entries rendered per kind (more = more shape/texture variety).
        seed: bank seed (the bank is identical for the same seed, size and kinds).
        jitter: per-call geometric jitter of each bank entry: "shift" (default; integer shift
            up to +-3 % of the width and +-6 % of the height, cheap on CPU and GPU), "affine"
            (rotation +-6 deg, scale, shift and mirror through ``grid_sample``; slow on CPU),
            or "none". (Roll, scale and mirror variety is already baked into the bank.)
        float_range: value range of float inputs; default (-1, 1), the network convention
            ``(x/255 - 0.5)/0.5``. uint8 inputs are 0..255.
        p_random_colour: share of masks with a uniformly random RGB colour instead of the
            bank entry's (palette) colour; default 0.3 for ``v1``, 0 for ``mesh`` (its looks mix
            sets the colours).
        renderer: ``"v1"`` (default) or ``"mesh"``: the bank is rendered by the mesh renderer on
            ``meshes`` ((M, 468, 2|3) face meshes at ``image_size``, e.g. from a
            :class:`~maskinv.masks.mesh.MeshCache` of aligned training crops), ``per_kind`` entries
            per mesh kind with looks drawn from the real-world mix (``kinds`` must be "random").
    """

    def __init__(self, image_size=112, kinds=("random",), device=None, *, per_kind: int = 24, seed: int = 0,
                 jitter: str = "shift", float_range=(-1.0, 1.0), p_random_colour: float | None = None,
                 renderer: str = "v1", meshes=None):
        import torch

        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if min(self.image_size) < 16:
            raise ConfigError(f"BatchMasker: image_size too small: {self.image_size}")
        if per_kind < 1:
            raise ConfigError(f"BatchMasker: per_kind must be >= 1, got {per_kind}")
        if jitter is True:
            jitter = "shift"
        elif jitter is False or jitter is None:
            jitter = "none"
        if jitter not in _JITTER_MODES:
            raise ConfigError(f"BatchMasker: jitter must be one of {_JITTER_MODES}, got {jitter!r}")
        self.jitter = jitter
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        from .mesh import MESH_KINDS, check_renderer

        self.renderer = check_renderer(renderer, "BatchMasker: renderer")
        if renderer == "mesh":
            if tuple([kinds] if isinstance(kinds, str) else kinds) != ("random",):
                raise ConfigError(f"BatchMasker: renderer 'mesh' draws its kinds from the looks mix; kinds must be "
                                  f"('random',), got {kinds!r}")
            if meshes is None:
                raise ConfigError("BatchMasker: renderer 'mesh' needs meshes= (face meshes at the image size)")
            self.kinds = MESH_KINDS
        else:
            if meshes is not None:
                raise ConfigError("BatchMasker: meshes= is used only by renderer='mesh'")
            self.kinds = _expand_kinds(kinds)
        if p_random_colour is None:
            p_random_colour = 0.0 if renderer == "mesh" else 0.3
        lo, hi = float(float_range[0]), float(float_range[1])
        if not hi > lo:
            raise ConfigError(f"BatchMasker: float_range must be (low, high) with high > low, got {float_range}")
        self.float_range = (lo, hi)
        self.p_random_colour = float(p_random_colour)
        if renderer == "mesh":
            planes, colours, ids = build_mesh_bank(self.image_size, per_kind, seed, meshes)
        else:
            planes, colours, ids = build_bank(self.image_size, self.kinds, per_kind, seed)
        h, w = self.image_size
        self._py, self._px = max(1, round(0.06 * h)), max(1, round(0.03 * w))
        # Region every (shifted) entry stays inside: the blend only touches these pixels.
        support = (planes[:, 0] > 0).any(0)
        rows = np.nonzero(support.any(1))[0]
        if rows.size == 0:
            raise ConfigError("BatchMasker: rendered mask bank is empty")  # pragma: no cover
        # Rows only: loops reach the image sides, and full-width rows keep each image's region
        # one contiguous block (fast copies).
        self._roi = (max(0, int(rows[0]) - self._py), min(h, int(rows[-1]) + 1 + self._py), 0, w)
        padded = np.pad(planes, ((0, 0), (0, 0), (self._py, self._py), (self._px, self._px)))
        # Store plane 0 as keep = 1 - C (saves a pass per call); outside the image keep = 1.
        padded[:, 0] = 1.0 - padded[:, 0]
        dev = self.device
        self._host = (torch.from_numpy(padded), torch.from_numpy(colours))
        self._banks: dict = {}
        self._bank(dev)
        self.kind_ids = ids

    def __len__(self) -> int:
        return len(self.kind_ids)

    def _bank(self, device):
        import torch

        key = torch.device(device)
        if key.type == "cuda" and key.index is None:
            key = torch.device("cuda", torch.cuda.current_device())
        if key not in self._banks:
            self._banks[key] = tuple(t.to(key) for t in self._host)
        return self._banks[key]

    def __call__(self, images, prob: float = 1.0, generator=None):
        """Mask each image with probability ``prob``.

        images: (B, 3, H, W) uint8 (0..255) or float (``float_range``) tensor, never modified.
        generator: ``torch.Generator`` (CPU or on the images' device); all draws come from it,
        so the same generator state gives the same output. None = a freshly seeded one.
        Returns (new tensor of the same dtype/device, applied BoolTensor (B,) on that device).
        """
        import torch
        import torch.nn.functional as F

        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise DataFormatError(f"BatchMasker: expected a (B, 3, H, W) tensor, got {shape}")
        if tuple(images.shape[2:]) != self.image_size:
            raise DataFormatError(
                f"BatchMasker: images are {tuple(images.shape[2:])}, the mask bank was built for {self.image_size}")
        is_u8 = images.dtype == torch.uint8
        if not is_u8 and not images.is_floating_point():
            raise DataFormatError(f"BatchMasker: images must be uint8 or float, got {images.dtype}")
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"BatchMasker: prob must be in [0, 1], got {prob}")
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        dev = images.device
        gdev = generator.device
        B = images.shape[0]
        n_bank = len(self.kind_ids)
        py, px = self._py, self._px

        # All random draws happen here, on the generator's device, in a fixed order, so the
        # output depends on the generator state only (not on the images' device).
        u = torch.rand(B, generator=generator, device=gdev)
        pick = torch.randint(0, n_bank, (B,), generator=generator, device=gdev)
        jit = torch.rand(B, 6, generator=generator, device=gdev)
        col_noise = torch.randn(B, 2, 3, generator=generator, device=gdev)
        col_rand = torch.rand(B, 2, 3, generator=generator, device=gdev) * 255.0
        col_mode = torch.rand(B, 2, generator=generator, device=gdev)

        applied = (u < prob).to(dev)
        out = images.clone()
        sel_cpu = torch.nonzero(u < prob, as_tuple=False).flatten().cpu()
        n = int(sel_cpu.numel())
        if n == 0:
            return out, applied
        sel = sel_cpu.to(dev)
        planes, colours = self._bank(dev)
        idx_cpu = pick.cpu()[sel_cpu]
        idx = idx_cpu.to(dev)
        j = jit.to(dev)[sel]
        H, W = self.image_size
        if self.jitter == "affine":
            r0, r1, q0, q1 = 0, H, 0, W
            m = planes.index_select(0, idx)[:, :, py:py + H, px:px + W]
            ang = (j[:, 0] * 2 - 1) * math.radians(6.0)
            sc = 0.95 + 0.1 * j[:, 1]
            sx = sc * (0.94 + 0.1 * j[:, 2]) * torch.where(j[:, 5] < 0.5, -1.0, 1.0)  # mirror half
            tx, ty = (j[:, 3] * 2 - 1) * 0.04, (j[:, 4] * 2 - 1) * 0.08
            cos, sin = torch.cos(ang), torch.sin(ang)
            theta = torch.stack([torch.stack([cos * sx, -sin * sc, tx], -1),
                                 torch.stack([sin * sx, cos * sc, ty], -1)], 1).to(m.dtype)
            grid = F.affine_grid(theta, list(m.shape), align_corners=False)
            m = torch.cat([1.0 - m[:, 0:1], m[:, 1:]], 1)  # zero padding must mean "no mask": use C
            m = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            m[:, 0:1] = 1.0 - m[:, 0:1]
        else:
            r0, r1, q0, q1 = self._roi
            jc = jit.cpu()[sel_cpu]
            if self.jitter == "shift":
                dx = (jc[:, 3] * (2 * px + 1)).long().clamp_(0, 2 * px) - px
                dy = (jc[:, 4] * (2 * py + 1)).long().clamp_(0, 2 * py) - py
            else:
                dx = dy = torch.zeros(n, dtype=torch.long)
            # A shift by (dx, dy) is a window of the padded plane.
            if dev.type == "cpu":  # one view per image, one copy: cheapest on CPU
                m = torch.stack([
                    planes[int(k), :, py - int(yy) + r0:py - int(yy) + r1, px - int(xx) + q0:px - int(xx) + q1]
                    for k, xx, yy in zip(idx_cpu.tolist(), dx.tolist(), dy.tolist())
                ])
            else:  # one gather kernel instead of a launch per image
                rows = (torch.arange(r0, r1, device=dev) + py)[None, :] - dy.to(dev)[:, None]   # (n, h)
                cols = (torch.arange(q0, q1, device=dev) + px)[None, :] - dx.to(dev)[:, None]   # (n, w)
                ch = torch.arange(planes.shape[1], device=dev)
                m = planes[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None],
                           cols[:, None, None, :]]
        # Colours: bank colour + small noise, or (p_random_colour) a random RGB, clipped to 0..255.
        mode = col_mode.to(dev)[sel]
        noisy = colours.index_select(0, idx) + 10.0 * col_noise.to(dev)[sel]
        rnd = mode[:, 0] < self.p_random_colour
        c = torch.where(rnd[:, None, None], col_rand.to(dev)[sel], noisy).clamp_(0.0, 255.0)
        c1, c2 = c[:, 0], c[:, 1]
        lc = torch.where((mode[:, 1] < 0.6)[:, None], torch.full_like(c1, 224.0), c1 * 0.95)
        # paint = K1 c1 + K2 (c2 - c1) + K3 c_loop as one batched matmul over the planes.
        cmat = torch.stack([c1, c2 - c1, lc], -1).to(m.dtype)  # (n, 3 rgb, 3 planes)
        hh, ww = r1 - r0, q1 - q0
        paint = torch.bmm(cmat, m[:, 1:4].reshape(n, 3, hh * ww)).view(n, 3, hh, ww)
        keep = m[:, 0:1]
        full = n == B
        region = images[:, :, r0:r1, q0:q1]
        x = (region if full else region.index_select(0, sel)).to(m.dtype)
        if is_u8:
            # The mix is convex in [0, 255]; +0.5 then truncation = rounding (clamp guards fp error).
            res = paint.add_(0.5).addcmul_(x, keep).clamp_(0.0, 255.0).to(torch.uint8)
        else:
            lo, hi = self.float_range
            s = (hi - lo) / 255.0
            # (x - lo)(1 - C) + lo + paint*s, written so unmasked pixels stay exactly x.
            res = paint.mul_(s).add_((1.0 - keep) * lo).addcmul_(x, keep).to(images.dtype)
        if full:
            out[:, :, r0:r1, q0:q1] = res
        else:
            out[:, :, r0:r1, q0:q1].index_copy_(0, sel, res)
        return out, applied

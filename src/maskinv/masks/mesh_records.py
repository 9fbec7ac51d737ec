"""The training masker of ``masks.renderer: mesh``: every record masked from its own cached mesh.

:class:`RecordMeshMasker` holds one face mesh per training record (from the mesh pre-pass over a
:class:`~maskinv.masks.mesh_cache.MeshCache`: fp16, keyed by the SHA-256 of the image) and, per
batch, draws each selected image's mask with :class:`~maskinv.masks.mesh_batch.MeshBatchRenderer`
from that record's mesh: the mask follows this face's pose, size and roll.

**Failed meshes.** A record whose face score (sigmoid of the mesh network's face logit) is below
``min_score`` has no trustworthy mesh (e.g. non-face or tiny images; SynthFaces and LFW crops at
112 px score >= 0.97, docs/masks.md).
Those records fall back to the bank masks of ``BatchMasker(renderer="mesh")``: mesh looks rendered
on the meshes of the best-scoring records, pasted at the aligned-crop position with a random shift
(v1-shaped: the mask follows the template, not the face). ``failed`` counts them; the trainer
records the count in summary.json.

The masker is called on the *unflipped* batch with the batch's record indices; the training step
flips afterwards (a flipped image's own mesh would be the mirrored mesh with left and right
swapped), so masks and flips commute by construction.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataFormatError

__all__ = ["RecordMeshMasker"]


class RecordMeshMasker:
    """Mask training batches from each record's own mesh (see the module docstring).

    Args:
        image_size: side (or (H, W)) of the training images.
        meshes: (N, 468, 2|3) one mesh per record, in its image's pixels (fp16 is fine).
        scores: (N,) face scores; records below ``min_score`` use the fallback bank.
        seed: bank seed (the run's seed).
        min_score: face-score threshold of a usable mesh.
        per_kind: bank entries per mesh kind (both banks).
        bank_records: how many of the best-scoring records' meshes the banks are rendered on.
        device: device of the fallback bank (the returned images are on the input's device).
    """

    renderer = "mesh"
    needs_indices = True

    def __init__(self, image_size, meshes, scores, *, seed: int = 0, min_score: float = 0.5, per_kind: int = 24,
                 bank_records: int = 32, device=None):
        from .mesh_batch import MeshBatchRenderer

        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        ms = np.asarray(meshes)
        sc = np.asarray(scores, np.float32)
        if ms.ndim != 3 or ms.shape[1] != 468 or ms.shape[2] not in (2, 3) or len(ms) < 1:
            raise ConfigError(f"RecordMeshMasker: meshes must have shape (N, 468, 2|3), got {ms.shape}")
        if sc.shape != (len(ms),):
            raise ConfigError(f"RecordMeshMasker: {len(ms)} meshes but scores of shape {sc.shape}")
        if not 0.0 <= float(min_score) <= 1.0:
            raise ConfigError(f"RecordMeshMasker: min_score must be in [0, 1], got {min_score}")
        self.meshes = np.ascontiguousarray(ms[..., :2], np.float16)
        self.scores = sc
        self.min_score = float(min_score)
        # NaN scores (unknown) count as failed: never draw on a mesh nobody checked.
        self.ok = np.nan_to_num(sc, nan=-1.0) >= self.min_score
        self.failed = int((~self.ok).sum())
        # Bank meshes: up to bank_records of the best-scoring usable records (ties by index); when no
        # record passes, the best-scoring ones anyway (only the fallback bank is built then).
        key = np.nan_to_num(sc, nan=-1.0)
        cand = np.nonzero(self.ok)[0] if self.ok.any() else np.arange(len(sc))
        order = cand[np.argsort(-key[cand], kind="stable")][:max(1, int(bank_records))]
        self.bank_records = np.sort(order)
        bank = ms[self.bank_records][..., :2].astype(np.float64)
        self.device = device
        self.batch_renderer = None
        if self.failed < len(self.meshes):
            self.batch_renderer = MeshBatchRenderer(self.image_size, meshes=bank, per_kind=per_kind, seed=seed)
        self._fallback = None
        if self.failed:
            from .batched import BatchMasker

            self._fallback = BatchMasker(image_size=self.image_size, kinds=("random",), device=device,
                                         per_kind=per_kind, seed=seed, renderer="mesh", meshes=bank)
        self.drawn_mesh = self.drawn_fallback = 0     # masks drawn so far, by path

    def info(self) -> dict:
        """What summary.json records: records, failed meshes and the threshold."""
        return {"records": int(len(self.meshes)), "failed_meshes": self.failed, "min_score": self.min_score,
                "fallback": "bank masks at the aligned position (BatchMasker renderer mesh)"}

    def __call__(self, images, prob: float = 1.0, generator=None, *, indices=None):
        """Masked copy of uint8 ``images`` (B, 3, H, W) torch tensor whose records are ``indices``
        (B,); each is masked with probability ``prob``. All draws come from ``generator`` (a torch
        Generator: one 63-bit seed for the mesh path, then the fallback bank's own draws).
        Returns (new uint8 tensor on the images' device, applied BoolTensor (B,))."""
        import torch

        if indices is None:
            raise ConfigError("masks.renderer: mesh needs each batch's record indices (the step got none)")
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 \
                or tuple(images.shape[2:]) != self.image_size or images.dtype != torch.uint8:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise DataFormatError(f"RecordMeshMasker: expected uint8 (B, 3, {self.image_size[0]}, "
                                  f"{self.image_size[1]}) images, got {getattr(images, 'dtype', '?')} {shape}")
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, np.int64).reshape(-1)
        b = images.shape[0]
        if idx.shape != (b,) or (b and (idx.min() < 0 or idx.max() >= len(self.meshes))):
            raise ConfigError(f"RecordMeshMasker: {b} images need {b} record indices in [0, {len(self.meshes)})")
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"RecordMeshMasker: prob must be in [0, 1], got {prob}")
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        dev = images.device
        out = images.clone()
        applied = torch.zeros(b, dtype=torch.bool, device=dev)
        ok = self.ok[idx]
        sel = np.nonzero(ok)[0]
        if sel.size:
            sub = images if sel.size == b else images[torch.from_numpy(sel).to(dev)]
            x = sub.permute(0, 2, 3, 1).contiguous().cpu().numpy()     # NHWC, contiguous (torch copies faster)
            o, a, _, _ = self.batch_renderer(x, self.meshes[idx[sel]].astype(np.float32), rng, prob)
            if a.any():
                keep = sel[a]
                t = torch.from_numpy(o if a.all() else o[a]).to(dev).permute(0, 3, 1, 2)
                out[torch.from_numpy(keep).to(dev)] = t
                applied[torch.from_numpy(keep).to(dev)] = True
            self.drawn_mesh += int(a.sum())
        rest = np.nonzero(~ok)[0]
        if rest.size:
            r = torch.from_numpy(rest).to(dev)
            o, a = self._fallback(images.index_select(0, r), prob=prob, generator=generator)
            out[r] = o
            applied[r] = a.to(dev)
            self.drawn_fallback += int(a.sum())
        return out, applied

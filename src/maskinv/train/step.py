"""One optimisation step of the MaskInv trainer: views, forward passes, loss, backward, update.

For a batch of clean uint8 images the step

1. draws a horizontal flip per sample and applies it to the clean batch (the only augmentation);
2. masks a copy of that batch (each sample with probability ``mask_prob``, ``BatchMasker``) —
   the **student** input; the flipped **clean** batch is the **teacher** input, so the teacher sees
   exactly the student's sample without the mask;
3. student forward under autocast, margin-head loss in float32, plus ``λ · kd_loss`` against the
   frozen teacher's embeddings (from the teacher-template cache when enabled);
4. backward (through the GradScaler in fp16), unscale, clip the backbone's gradient norm, step.

All randomness of a step (flips, masks, ElasticFace margins, PartialFC sampling) comes from
generators seeded by ``(seed, rank, step)``, so a resumed run repeats the same draws and ranks
draw differently.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from maskinv.preprocess import normalize_uint8_tensor


def step_seed(seed: int, rank: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, rank, step, stream)`` (SeedSequence mixing, no collisions by design)."""
    a, b = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(step), int(stream)]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def freeze_bn_stats(module: nn.Module) -> None:
    """BatchNorm layers to eval mode (running statistics used and left unchanged; their weights
    still train). Re-applied before every forward: anything may call ``.train()`` in between."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.eval()


class StudentNet(nn.Module):
    """Backbone + (full) margin head as one module, so DDP synchronises both.

    ``forward(x, labels, generator)`` returns ``(embeddings, head_loss)``; the head runs in float32
    outside autocast. With PartialFC the head is ``None`` and the loss is computed outside.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None, autocast: Callable[[], Any],
                 freeze_bn_stats: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self._autocast = autocast
        self.freeze_bn_stats = bool(freeze_bn_stats)

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None):
        if self.freeze_bn_stats:
            freeze_bn_stats(self.backbone)
        with self._autocast():
            emb = self.backbone(x)
        emb = emb.float()
        if self.head is None:
            return emb, None
        with torch.autocast(device_type=x.device.type, enabled=False):
            loss = self.head.loss(emb, labels, generator=generator)
        return emb, loss


@dataclass
class StepResult:
    """Detached scalars of one step (``kd_loss`` 0 without KD) and the per-sample mask flags."""

    loss: float
    head_loss: float
    kd_loss: float
    masked_fraction: float
    applied: torch.Tensor
    flips: torch.Tensor
    finite: bool
    grad_norm: float | None = None


def prepare_views(images: torch.Tensor, *, flip: bool, masker, mask_prob: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student_u8, teacher_u8, flips, applied) from clean uint8 images (B, 3, H, W).

    The teacher view is the flipped clean batch; the student view is a masked copy of it (the
    masker returns a new tensor, the clean batch is never modified).
    """
    b = images.shape[0]
    dev = images.device
    if flip:
        flips = torch.rand(b, generator=generator, device=generator.device).to(dev) < 0.5
        clean = torch.where(flips[:, None, None, None], images.flip(3), images)
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=dev)
        clean = images
    if masker is not None and mask_prob > 0:
        student, applied = masker(clean, prob=mask_prob, generator=generator)
        applied = applied.to(dev)
    else:
        student, applied = clean, torch.zeros(b, dtype=torch.bool, device=dev)
    return student, clean, flips, applied


class TrainStep:
    """Holds the modules and settings of the step; ``__call__`` performs one update.

    ``model``: :class:`StudentNet` (optionally DDP-wrapped); ``backbone``: the unwrapped student
    backbone (for gradient clipping); ``pfc``: optional :class:`PartialFC`; ``teacher``: frozen
    teacher or None; ``cache``: optional :class:`TeacherCache`.
    """

    def __init__(self, *, model: nn.Module, backbone: nn.Module, optimizers: list, scaler=None, pfc=None,
                 teacher=None, cache=None, masker=None, mask_prob: float = 0.0, kd_weight: float = 0.0,
                 flip: bool = True, clip_grad_norm: float | None = None, autocast: Callable[[], Any] = contextlib.nullcontext,
                 channels_last: bool = False, device: torch.device | str = "cpu", seed: int = 0, rank: int = 0):
        self.model = model
        self.backbone = backbone
        self.optimizers = optimizers
        self.scaler = scaler
        self.pfc = pfc
        self.teacher = teacher
        self.cache = cache
        self.masker = masker
        self.mask_prob = float(mask_prob)
        self.kd_weight = float(kd_weight)
        self.flip = bool(flip)
        self.clip = clip_grad_norm
        self.autocast = autocast
        self.channels_last = channels_last
        self.device = torch.device(device)
        self.seed = int(seed)
        self.rank = int(rank)
        self.mask_device = torch.device(getattr(masker, "device", None) or self.device) if masker is not None else self.device

    def to_input(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float network input on the step's device (and layout)."""
        x = normalize_uint8_tensor(u8.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def teacher_forward(self, u8: torch.Tensor) -> torch.Tensor:
        """The teacher's float32 embeddings (B, D) of uint8 images (B, 3, H, W), under the step's
        autocast, without the cache (the cache pre-pass fills the cache with these)."""
        with self.autocast():
            return self.teacher(self.to_input(u8)).float()

    def teacher_embeddings(self, clean_u8: torch.Tensor, indices: torch.Tensor | None, flips: torch.Tensor) -> torch.Tensor:
        """Teacher embeddings (B, D) float32 of the clean views (cache hits skip the forward)."""
        if self.cache is None or indices is None:
            return self.teacher_forward(clean_u8)
        idx = indices.cpu().numpy()
        fl = flips.cpu().numpy().astype(np.int64)
        cached, hit = self.cache.lookup(idx, fl)
        out = cached.to(self.device)
        miss = np.flatnonzero(~hit)
        if miss.size:
            sel = torch.from_numpy(miss).to(clean_u8.device)
            fresh = self.teacher_forward(clean_u8.index_select(0, sel))
            self.cache.store(idx[miss], fl[miss], fresh)
            out[torch.from_numpy(miss).to(self.device)] = fresh
        return out

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, step: int, indices: torch.Tensor | None = None) -> StepResult:
        """One update on clean uint8 images (B, 3, H, W) with integer labels (B,)."""
        g_aug = make_generator(step_seed(self.seed, self.rank, step, 0), self.mask_device)
        g_head = make_generator(step_seed(self.seed, self.rank, step, 1), "cpu")
        images = images.to(self.mask_device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True).long()
        student_u8, teacher_u8, flips, applied = prepare_views(
            images, flip=self.flip, masker=self.masker, mask_prob=self.mask_prob, generator=g_aug)

        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        emb, head_loss = self.model(self.to_input(student_u8), labels, g_head)
        if self.pfc is not None:
            head_loss = self.pfc(emb, labels, generator=g_head)
        loss = head_loss
        kd = None
        if self.teacher is not None and self.kd_weight > 0:
            from maskinv.distill import kd_loss

            t_emb = self.teacher_embeddings(teacher_u8, indices, flips)
            kd = kd_loss(emb, t_emb, self.kd_weight)
            loss = kd if loss is None else loss + kd  # no head (head.name none): distillation only
        loss_v = float(loss.detach())
        finite = bool(np.isfinite(loss_v))
        head_v = float(head_loss.detach()) if head_loss is not None else 0.0
        kd_v = float(kd.detach()) if kd is not None else 0.0
        masked = float(applied.float().mean()) if applied.numel() else 0.0
        if not finite:  # leave the weights untouched; the trainer stops the run
            return StepResult(loss_v, head_v, kd_v, masked, applied, flips, False)

        gnorm = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            for opt in self.optimizers:
                self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.clip is not None:
            gnorm = float(torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), self.clip))
        if self.scaler is not None:
            for opt in self.optimizers:
                self.scaler.step(opt)
            self.scaler.update()
        else:
            for opt in self.optimizers:
                opt.step()
        return StepResult(loss_v, head_v, kd_v, masked, applied, flips, True, gnorm)

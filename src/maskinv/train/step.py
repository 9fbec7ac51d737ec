"""One optimisation step of the MaskInv trainer: views, forward passes, loss, backward, update.

For a batch of clean uint8 images the step

1. draws a horizontal flip per sample and applies it to the clean batch (the only augmentation);
2. masks a copy of that batch (each sample with probability ``mask_prob``, ``BatchMasker``; with
   ``masks.renderer: mesh`` each record's own mesh draws its mask on the unflipped image, which is
   then flipped) — the **student** input; the flipped **clean** batch is the **teacher** input, so
   the teacher sees exactly the student's sample without the mask;
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
from maskinv.utils.seeds import step_seed


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
    """The scalars of one step (``kd_loss`` 0 without KD) and the per-sample mask flags.

    The scalars are detached 0-d tensors on the training device (or plain floats): reading one
    with ``float()`` waits for the device, so the loop reads them only at log steps
    (:class:`~.metrics.TrainMeter`). ``finite`` is a bool when the step checked the loss (and then
    skipped the update of a non-finite one), None when it did not (``check_finite=False``).
    """

    loss: Any
    head_loss: Any
    kd_loss: Any
    masked_fraction: Any
    applied: torch.Tensor
    flips: torch.Tensor
    finite: bool | None
    grad_norm: Any = None

    def scalars(self) -> dict[str, float]:
        """The losses as Python floats (waits for the device)."""
        return {"loss": float(self.loss), "head_loss": float(self.head_loss), "kd_loss": float(self.kd_loss)}


def prepare_views(images: torch.Tensor, *, flip: bool, masker, mask_prob: float,
                  generator: torch.Generator, indices: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student_u8, teacher_u8, flips, applied) from clean uint8 images (B, 3, H, W).

    The teacher view is the flipped clean batch; the student view is a masked copy of it (the
    masker returns a new tensor, the clean batch is never modified). A masker that draws from each
    record's own face mesh (``needs_indices``: ``masks.renderer: mesh``) masks the *unflipped*
    images with the batch's record ``indices`` and the flip is applied after (the cached mesh is the
    unflipped face's); the flips are drawn first either way.
    """
    b = images.shape[0]
    dev = images.device
    if flip:
        flips = torch.rand(b, generator=generator, device=generator.device).to(dev) < 0.5
        clean = torch.where(flips[:, None, None, None], images.flip(3), images)
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=dev)
        clean = images
    if masker is not None and mask_prob > 0 and getattr(masker, "needs_indices", False):
        masked, applied = masker(images, prob=mask_prob, generator=generator, indices=indices)
        student = masked                  # the masker's own new tensor: flip its flipped rows in place
        if flip and bool(flips.any()):
            sel = flips.nonzero().flatten()
            student[sel] = student.index_select(0, sel).flip(3)
        applied = applied.to(dev)
    elif masker is not None and mask_prob > 0:
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
                 channels_last: bool = False, device: torch.device | str = "cpu", seed: int = 0, rank: int = 0,
                 check_finite: bool = True):
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
        # True: read the loss on the host every step and skip the update of a non-finite one (a
        # device sync per step); False: no sync, the loop checks at log/checkpoint steps
        self.check_finite = bool(check_finite)
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
        x = self.to_input(u8)
        # inference mode: no autograd bookkeeping at all; the clone makes the result an ordinary
        # tensor that the KD loss may save for backward (same values as under no_grad)
        with torch.inference_mode(), self.autocast():
            out = self.teacher(x).float()
        return out.clone()

    def teacher_embeddings(self, clean_u8: torch.Tensor, indices: torch.Tensor | None, flips: torch.Tensor) -> torch.Tensor:
        """Teacher embeddings (B, D) float32 of the clean views (cache hits skip the forward)."""
        if self.cache is None or indices is None:
            return self.teacher_forward(clean_u8)
        idx = indices.cpu().numpy()
        fl = flips.cpu().numpy().astype(np.int64)
        cached, hit = self.cache.lookup(idx, fl)
        if self.device.type == "cuda":  # page-locked: the copy does not wait for the device
            cached = cached.pin_memory()
        out = cached.to(self.device, non_blocking=True)
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
            images, flip=self.flip, masker=self.masker, mask_prob=self.mask_prob, generator=g_aug, indices=indices)

        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        emb, head_loss = self.model(self.to_input(student_u8), labels, g_head)
        if self.pfc is not None:
            head_loss = self.pfc(emb, labels, generator=g_head)
        loss = head_loss
        kd = None
        if self.teacher is not None and self.kd_weight > 0:
            from .distill import kd_loss

            t_emb = self.teacher_embeddings(teacher_u8, indices, flips)
            kd = kd_loss(emb, t_emb, self.kd_weight)
            loss = kd if loss is None else loss + kd  # no head (head.name none): distillation only
        loss_d = loss.detach()
        kd_d = kd.detach() if kd is not None else 0.0
        head_t = head_loss.detach() if head_loss is not None else 0.0
        masked = applied.float().mean() if applied.numel() else 0.0
        finite = None
        if self.check_finite:
            loss_d, head_d = float(loss_d), float(head_t)
            kd_d, masked = float(kd_d), float(masked)
            finite = bool(np.isfinite(loss_d))
            if not finite:  # leave the weights untouched; the trainer stops the run
                return StepResult(loss_d, head_d, kd_d, masked, applied, flips, False)
        else:
            head_d = head_t

        gnorm = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            for opt in self.optimizers:
                self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), self.clip).detach()
            if self.check_finite:
                gnorm = float(gnorm)
        if self.scaler is not None:
            for opt in self.optimizers:
                self.scaler.step(opt)
            self.scaler.update()
        else:
            for opt in self.optimizers:
                opt.step()
        return StepResult(loss_d, head_d, kd_d, masked, applied, flips, finite, gnorm)

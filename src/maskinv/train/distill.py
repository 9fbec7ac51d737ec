"""Template-level knowledge distillation (MaskInv, REFERENCE §1).

``kd_loss`` is λ · MSE(normalize(student), normalize(teacher)) averaged over all B × D
elements, the reference averaging, so the paper's λ (100 "LG", 3000 "HG") mean the same here:
per sample it equals λ/D · ‖s − t‖² = λ/D · (2 − 2 cos(s, t)).

``FrozenTeacher`` wraps a loaded backbone so it can never train: eval mode forever (even
when ``.train()`` is called on an enclosing module), no parameter requires grad, forward
under ``torch.no_grad()``; it refuses a model that did not come from
:func:`maskinv.models.load_backbone` unless ``allow_random=True`` (tests only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskinv.errors import CheckpointError

__all__ = ["kd_loss", "FrozenTeacher", "load_teacher"]


def kd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * mean((normalize(s) - normalize(t))**2)`` over B × D; no gradient to the teacher.

    Computed in float32 (safe under autocast). Shapes must match: (B, D).
    """
    if student_emb.shape != teacher_emb.shape or student_emb.dim() != 2:
        raise ValueError(
            f"kd_loss: student {tuple(student_emb.shape)} and teacher {tuple(teacher_emb.shape)} "
            "embeddings must both be (B, D)"
        )
    s = F.normalize(student_emb.float(), dim=1)
    t = F.normalize(teacher_emb.detach().float(), dim=1)
    return float(weight) * F.mse_loss(s, t, reduction="mean")


class FrozenTeacher(nn.Module):
    """A backbone that stays frozen: eval mode, ``requires_grad=False``, no-grad forward.

    ``model`` must carry ``maskinv_source`` (set by :func:`maskinv.models.load_backbone`);
    otherwise :class:`CheckpointError` is raised unless ``allow_random=True``.
    Exposes ``arch``, ``maskinv_source`` and ``embedding_size`` of the wrapped model.
    """

    def __init__(self, model: nn.Module, *, allow_random: bool = False):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"FrozenTeacher needs an nn.Module, got {type(model).__name__}")
        source = getattr(model, "maskinv_source", None)
        if source is None and not allow_random:
            raise CheckpointError(
                "teacher has no loaded weights (build it with maskinv.models.load_backbone / "
                "maskinv.train.distill.load_teacher); a randomly initialised teacher needs allow_random=True"
            )
        self.model = model
        self.maskinv_source = source if source is not None else "<random>"
        self.arch = getattr(model, "arch", None)
        self.embedding_size = getattr(model, "embedding_size", None)
        model.requires_grad_(False)
        super().train(False)
        model.eval()

    def train(self, mode: bool = True) -> "FrozenTeacher":
        """Ignore ``mode``: the teacher is always in eval mode (BN statistics, dropout fixed)."""
        super().train(False)  # sets self and children to eval
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, E) under ``torch.no_grad()``; re-asserts eval mode first."""
        if self.model.training:  # e.g. someone called .train() on the inner model directly
            self.model.eval()
        with torch.no_grad():
            return self.model(x)


def load_teacher(path: str | os.PathLike, name: str | None = None, **kw: Any) -> FrozenTeacher:
    """Load a backbone checkpoint strictly and wrap it in :class:`FrozenTeacher`.

    ``name``/``kw`` as in :func:`maskinv.models.load_backbone`. A missing file, an unreadable
    one, or one that does not match the architecture raises :class:`CheckpointError`.
    """
    from maskinv.models import load_backbone
    from maskinv.models.recognizer import is_named_model

    if is_named_model(path):  # a named torch recogniser (e.g. sface)
        from maskinv.models.loading import load_named

        rec = load_named(os.fspath(path))
        if rec.module is None:
            raise CheckpointError(f"teacher {path}: not a torch model; it runs as a cached teacher only "
                                  "(teacher.cache.enabled=true, teacher.cache.mode=prepass)")
        rec.module.maskinv_source = f"{os.fspath(path)} ({rec.fingerprint})"
        return FrozenTeacher(rec.module)
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: teacher checkpoint not found")
    return FrozenTeacher(load_backbone(p, name, **kw))

"""Training the trainable tail (SFace blocks k+1..13 + FC/BN) of each row on cached trunk features.

Every row starts from SFace's own tail. One step: a batch of photos drawn by a seeded permutation;
each sample is shown masked with probability ``mask_prob`` (its cached masked-draw features, else its
clean ones); loss = ElasticFace-Arc (labelled rows) + ``kd_loss(student, teacher_clean, λ)`` (λ on
maskinv's per-element scale: per-sample weight λ/D). The teacher is SFace's frozen tail on the clean
features of the same photo (computed once). BatchNorm statistics stay frozen (``freeze_bn``: the
small fine-tuning batches would otherwise replace SFace's running statistics); their affine
parameters train. SGD, momentum 0.9, weight decay 5e-4, cosine decay of the learning rate.
Deterministic for the same seed, torch version and thread count (tested).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from maskinv.errors import ConfigError

__all__ = ["RowSpec", "TrainSet", "train_tail", "teacher_embeddings", "embed_features", "class_centres"]


@dataclass
class RowSpec:
    """One trained row. ``lam``: KD weight (0 = Aug); ``head``: train with the margin head."""

    name: str
    lam: float
    head: bool
    lr: float
    epochs: float
    batch_size: int = 64
    mask_prob: float = 0.5
    seed: int = 0
    init: str = "sface"          # "sface" or the name of a row whose result it continues (HG: "lg")
    unlabelled: bool = False     # adds the photos of one-photo people (label-free row only)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    freeze_bn: bool = True
    s: float = 64.0
    m: float = 0.5
    std: float = 0.0125

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainSet:
    clean: np.ndarray       # (N, C, H, W) float16 trunk features, clean
    masked: np.ndarray      # (N, C, H, W) float16, one renderer-v1 draw
    teacher: np.ndarray     # (N, D) float32 SFace embeddings of the clean photo
    labels: np.ndarray      # (N,) int64 class index, -1 = unlabelled


def _batches(tail: Any, x: np.ndarray, batch_size: int = 256):
    import torch

    for b0 in range(0, x.shape[0], batch_size):
        yield b0, torch.from_numpy(np.asarray(x[b0:b0 + batch_size], np.float32))


def embed_features(tail: Any, feats: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """L2-normalised embeddings (N, D) float32 of cached trunk features (no flip)."""
    import torch

    was = tail.training
    tail.eval()
    out = []
    try:
        with torch.no_grad():
            for _, x in _batches(tail, feats, batch_size):
                e = tail(x).float()
                out.append(torch.nn.functional.normalize(e, dim=1).numpy())
    finally:
        tail.train(was)
    emb = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if not np.isfinite(emb).all():
        from maskinv.errors import DataFormatError

        raise DataFormatError("embed_features: non-finite embeddings")
    return emb


def teacher_embeddings(tail: Any, clean: np.ndarray) -> np.ndarray:
    """The frozen teacher's raw -> normalised embeddings of clean features (float32)."""
    return embed_features(tail, clean)


def class_centres(teacher: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(D, C) head kernel: each person's mean normalised SFace embedding, renormalised."""
    d = teacher.shape[1]
    sums = np.zeros((num_classes, d), np.float64)
    np.add.at(sums, labels, teacher.astype(np.float64))
    if np.any(np.bincount(labels, minlength=num_classes) == 0):
        raise ConfigError("class_centres: a class has no photo")
    c = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return c.T.astype(np.float32).copy()


def _freeze_bn(module: Any) -> None:
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def train_tail(tail: Any, data: TrainSet, spec: RowSpec, *, head_state: dict | None = None,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``tail`` in place on ``data`` following ``spec``. Returns the log summary and the
    trained head's state (None without a head). ``head_state``: a head to continue (HG)."""
    import torch

    from maskinv.train.distill import kd_loss
    from maskinv.train.heads import get_head

    log = log or (lambda _m: None)
    if spec.lam < 0 or spec.lr <= 0 or spec.epochs <= 0 or spec.batch_size < 1 or not 0 <= spec.mask_prob <= 1:
        raise ConfigError(f"row {spec.name}: lam >= 0, lr > 0, epochs > 0, batch_size >= 1 and mask_prob in [0, 1] "
                          f"are required, got {spec.to_dict()}")
    if not spec.head and spec.lam == 0:
        raise ConfigError(f"row {spec.name}: no head and λ = 0 leaves nothing to train")
    labels = np.asarray(data.labels, np.int64)
    use = np.arange(labels.shape[0]) if (spec.unlabelled or not spec.head) else np.flatnonzero(labels >= 0)
    if spec.head and np.any(labels[use] < 0):
        raise ConfigError(f"row {spec.name}: a labelled row got unlabelled photos")
    n = int(use.size)
    if n == 0:
        raise ConfigError(f"row {spec.name}: no training photos")
    bs = min(spec.batch_size, n)
    steps = max(1, int(math.ceil(spec.epochs * n / bs)))
    g = torch.Generator().manual_seed(int(spec.seed))
    head = None
    params = [p for p in tail.parameters()]
    for p in params:
        p.requires_grad_(True)
    if spec.head:
        num_classes = int(labels[use].max()) + 1
        head = get_head("elastic_arc", data.teacher.shape[1], num_classes, s=spec.s, m=spec.m, std=spec.std,
                        seed=int(spec.seed))
        if head_state is not None:
            head.load_state_dict(head_state)
        else:
            centres = class_centres(data.teacher[use], labels[use], num_classes)
            with torch.no_grad():
                head.kernel.copy_(torch.from_numpy(centres))
        params += list(head.parameters())
    opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    teacher = torch.from_numpy(np.ascontiguousarray(data.teacher, np.float32))
    lab = torch.from_numpy(labels)
    d = data.teacher.shape[1]
    log(f"train {spec.name}: {n} photos, {steps} steps of {bs} ({spec.epochs:g} epochs), λ = {spec.lam:g} "
        f"(λ/D = {spec.lam / d:.4g} per sample), lr {spec.lr:g}, head {'elastic_arc' if spec.head else 'none'}")
    tail.train()
    if spec.freeze_bn:
        _freeze_bn(tail)
    t0 = time.perf_counter()
    order = torch.empty(0, dtype=torch.int64)
    pos = 0
    hist: list[dict[str, float]] = []
    run = {"loss": 0.0, "head": 0.0, "kd": 0.0, "k": 0}
    for step in range(steps):
        if pos + bs > order.numel():
            order = torch.from_numpy(use)[torch.randperm(n, generator=g)]
            pos = 0
        idx = order[pos:pos + bs]
        pos += bs
        lr = 0.5 * spec.lr * (1.0 + math.cos(math.pi * step / steps))
        for grp in opt.param_groups:
            grp["lr"] = lr
        masked = torch.rand(idx.numel(), generator=g) < spec.mask_prob
        ii = idx.numpy()
        x = np.where(masked.numpy()[:, None, None, None], data.masked[ii], data.clean[ii])
        emb = tail(torch.from_numpy(x.astype(np.float32)))
        loss = emb.new_zeros(())
        lh = lk = 0.0
        if head is not None:
            hl = head.loss(emb, lab[idx], generator=g)
            loss = loss + hl
            lh = float(hl.detach())
        if spec.lam > 0:
            kl = kd_loss(emb, teacher[idx], spec.lam)
            loss = loss + kl
            lk = float(kl.detach())
        if not torch.isfinite(loss):
            from maskinv.errors import DataFormatError

            raise DataFormatError(f"row {spec.name}: loss is not finite at step {step} (lower the lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run["loss"] += float(loss.detach())
        run["head"] += lh
        run["kd"] += lk
        run["k"] += 1
        if (step + 1) % 25 == 0 or step + 1 == steps:
            k = run.pop("k")
            rec = {"step": step + 1, "lr": lr, **{key: v / k for key, v in run.items()}}
            hist.append(rec)
            el = time.perf_counter() - t0
            log(f"train {spec.name}: step {step + 1}/{steps} loss {rec['loss']:.4f} (head {rec['head']:.4f}, "
                f"kd {rec['kd']:.5f}) {1000 * el / ((step + 1) * bs):.0f} ms/sample")
            run = {"loss": 0.0, "head": 0.0, "kd": 0.0, "k": 0}
    tail.eval()
    for p in tail.parameters():
        p.requires_grad_(False)
    secs = time.perf_counter() - t0
    return {"row": spec.to_dict(), "lambda_per_sample": spec.lam / d, "embedding_size": d, "photos": n,
            "steps": steps, "batch_size": bs, "seconds": secs, "ms_per_sample": 1000 * secs / (steps * bs),
            "history": hist, "head_state": copy.deepcopy(head.state_dict()) if head is not None else None}

"""Margin-based softmax heads (REFERENCE §2): ArcFace, CosFace, combined margin, ElasticFace.

Every head owns its class-centre matrix ``kernel`` of shape ``(embedding_size, num_classes)``
initialised N(0, 0.01) (the ElasticFace name, shape and init, so ``*header.pth`` files load)
and computes logits ``s * f(cos θ)`` where only the true-class column is changed:

============================  ===========================================  =====================
head                          target logit / s                             defaults
============================  ===========================================  =====================
``arcface``                   cos(θ + m)                                   s 64, m 0.5
``cosface``                   cos θ − m                                    s 64, m 0.35
``combined``                  cos(m1·θ + m2) − m3                          s 64, 1.0 / 0.3 / 0.2
``elastic_arc``               cos(θ + m_i),  m_i ~ N(m, σ)                 s 64, m 0.5, σ 0.05
``elastic_cos``               cos θ − m_i,   m_i ~ N(m, σ)                 s 64, m 0.35, σ 0.05
``elastic_arc_plus``          as elastic_arc, margins sorted (see below)   s 64, m 0.5, σ 0.0175
``elastic_cos_plus``          as elastic_cos, margins sorted               s 64, m 0.35, σ 0.025
============================  ===========================================  =====================

Numerics (documented choices):

* ``acos`` is taken of cosines clamped to ``[-1+eps, 1-eps]`` (its derivative is infinite at
  ±1); the non-target logits are the unclamped ``s·cos``.
* Angular heads beyond the valid range: ``cos(m1·θ + m2)`` stops decreasing once
  ``m1·θ + m2 > π`` (i.e. ``θ > θ_t = (π − m2)/m1``) and would *reward* moving away from the
  class centre. There the target becomes ``cos θ − (1 + cos θ_t) − m3``: continuous at ``θ_t``
  (both sides equal ``−1 − m3``), monotone decreasing in θ, still below the plain ``cos θ``
  (a penalty), and with the finite, non-zero gradient of ``cos θ``. This is arcface_torch's
  "threshold" fallback (``cos θ − m·sin m``) made continuous.
* Elastic "+": the n margins drawn for a batch are sorted descending and handed out by the
  *rank* of cos θ_y (the inverse of the argsort permutation), so the sample farthest from its
  centre gets the largest margin. (The public code indexes with the argsort permutation
  itself, which leaves margin and cos θ_y uncorrelated.) Ranking is among the rows of the
  batch/shard that have a positive column (``label != -1``).

Margin draws use the ``generator`` argument, else the head's own ``torch.Generator`` (seeded
by the ``seed`` option, fresh entropy when ``None``); the global RNG is never touched.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskinv.errors import CheckpointError, ConfigError, DataFormatError, UnknownNameError
from maskinv.utils.registry import Registry
from maskinv.utils.seeds import derive_seed

__all__ = [
    "MarginHead",
    "ArcFace",
    "CosFace",
    "CombinedMargin",
    "ElasticArcFace",
    "ElasticCosFace",
    "get_head",
    "list_heads",
]


class MarginHead(nn.Module):
    """Base class: owns ``kernel`` (E, C); subclasses define :meth:`target_logit`."""

    name = "margin"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 64.0,
        eps: float = 1e-6,
        seed: int | None = None,
    ):
        super().__init__()
        if int(embedding_size) < 1 or int(num_classes) < 1:
            raise ConfigError(
                f"{self.name}: embedding_size and num_classes must be positive, got {embedding_size}, {num_classes}"
            )
        if not s > 0:
            raise ConfigError(f"{self.name}: scale s must be positive, got {s}")
        if not 0 < eps < 0.1:
            raise ConfigError(f"{self.name}: eps must be in (0, 0.1), got {eps}")
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.s = float(s)
        self.eps = float(eps)
        self.seed = seed
        self._generator: torch.Generator | None = None
        init_gen = torch.Generator()
        if seed is None:
            init_gen.seed()
        else:
            init_gen.manual_seed(int(seed))
        kernel = torch.empty(self.embedding_size, self.num_classes)
        kernel.normal_(0.0, 0.01, generator=init_gen)
        self.kernel = nn.Parameter(kernel)
        #: margins used in the last call, per row (NaN where label == -1); None for fixed margins.
        self.last_margins: torch.Tensor | None = None

    # ------------------------------------------------------------------ randomness
    @property
    def generator(self) -> torch.Generator:
        """The head's private CPU generator for margin draws (created on first use)."""
        if self._generator is None:
            g = torch.Generator()
            if self.seed is None:
                g.seed()
            else:
                # Distinct stream from the kernel initialisation that used the same seed.
                g.manual_seed(derive_seed(int(self.seed), "head_margins"))
            self._generator = g
        return self._generator

    def _normal(self, mean: float, std: float, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        g = generator if generator is not None else self.generator
        draws = torch.normal(mean, std, size=(n,), generator=g, device=g.device)
        return draws.to(device=device, dtype=torch.float32)

    # ------------------------------------------------------------------ margins
    def target_logit(self, cos_y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Unscaled target logit f(cos θ_y) for the rows that have a positive (float32, (n,))."""
        raise NotImplementedError

    def apply_margin(
        self, cosine: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scaled logits from a cosine matrix (B, C'); ``labels`` index its columns.

        ``labels[i] == -1`` means row i has no positive column here (PartialFC shard /
        sampled centres): that row is just ``s * cos``. Returns float32 (B, C'); the input is
        not modified.
        """
        if cosine.dim() != 2:
            raise ConfigError(f"{self.name}: cosine must be (B, C), got shape {tuple(cosine.shape)}")
        labels = labels.reshape(-1).long()
        if labels.numel() != cosine.shape[0]:
            raise DataFormatError(
                f"{self.name}: {labels.numel()} labels for {cosine.shape[0]} rows of the cosine matrix"
            )
        cos = cosine.float()
        if labels.device.type == "cpu" and labels.numel():  # cheap check; avoids a GPU sync
            lo, hi = int(labels.min()), int(labels.max())
            if lo < -1 or hi >= cos.shape[1]:
                raise DataFormatError(
                    f"{self.name}: labels must be -1 or in [0, {cos.shape[1]}), got range [{lo}, {hi}]"
                )
        rows = torch.nonzero(labels != -1, as_tuple=True)[0]
        cols = labels[rows]
        self.last_margins = None
        if rows.numel() == 0:
            return cos * self.s
        cos_y = cos[rows, cols].clamp(-1.0 + self.eps, 1.0 - self.eps)
        target = self.target_logit(cos_y, generator)
        if self.last_margins is not None:  # scatter per-row margins to batch positions
            full = torch.full((cos.shape[0],), float("nan"), device=cos.device)
            full[rows] = self.last_margins
            self.last_margins = full
        logits = cos.index_put((rows, cols), target)
        return logits * self.s

    # ------------------------------------------------------------------ module API
    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """normalize(embeddings) @ normalize(kernel, dim=0) in float32, (B, C)."""
        return F.normalize(embeddings.float(), dim=1) @ F.normalize(self.kernel.float(), dim=0)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Logits (B, C) = apply_margin(normalize(emb) @ normalize(kernel))."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ConfigError(
                f"{self.name}: embeddings must be (B, {self.embedding_size}), got {tuple(embeddings.shape)}"
            )
        return self.apply_margin(self.cosine(embeddings), labels, generator)

    def loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean cross-entropy of :meth:`forward` (labels must all be real classes here)."""
        return F.cross_entropy(self.forward(embeddings, labels, generator), labels.reshape(-1).long())

    def load_header(self, src: str | os.PathLike | Mapping) -> None:
        """Load the class centres from a header state dict or file.

        Accepts ``{"kernel": (E, C)}`` (ElasticFace/MaskInv ``*header.pth``), with an optional
        ``module.`` prefix, nested under ``head``/``header`` (training checkpoints), or an
        arcface_torch-style ``weight`` of shape (C, E) (transposed on load).
        """
        source = "<state_dict>"
        obj: Any = src
        if isinstance(src, (str, os.PathLike)):
            source = str(src)
            if not os.path.isfile(src):
                raise CheckpointError(f"{source}: header checkpoint not found")
            try:
                obj = torch.load(src, map_location="cpu", weights_only=True)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CheckpointError(f"{source}: cannot read header checkpoint: {first}") from exc
        if isinstance(obj, Mapping):
            for nest in ("head", "header"):
                if isinstance(obj.get(nest), Mapping):
                    obj = obj[nest]
                    break
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{source}: expected a header state dict, got {type(obj).__name__}")
        flat = {str(k).removeprefix("module."): v for k, v in obj.items()}
        want = tuple(self.kernel.shape)
        if isinstance(flat.get("kernel"), torch.Tensor):
            w = flat["kernel"]
        elif isinstance(flat.get("weight"), torch.Tensor) and flat["weight"].dim() == 2:
            w = flat["weight"].t()
        else:
            raise CheckpointError(f"{source}: no 'kernel' tensor in header checkpoint (keys: {sorted(flat)[:5]})")
        if tuple(w.shape) != want:
            raise CheckpointError(f"{source}: kernel shape {tuple(w.shape)} does not match head {want} (embedding x classes)")
        with torch.no_grad():
            self.kernel.copy_(w.to(self.kernel.dtype))

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, s={self.s}"


def _angular_target(cos_y: torch.Tensor, m1: float | torch.Tensor, m2: float | torch.Tensor, m3: float) -> torch.Tensor:
    """cos(m1·θ + m2) − m3 with the continuous monotone fallback beyond θ_t = (π − m2)/m1."""
    theta = torch.acos(cos_y)
    phi = m1 * theta + m2
    m2t = torch.as_tensor(m2, dtype=cos_y.dtype, device=cos_y.device)
    theta_t = (math.pi - m2t) / m1
    fallback = cos_y - (1.0 + torch.cos(theta_t))
    return torch.where(phi <= math.pi, torch.cos(phi), fallback) - m3


class ArcFace(MarginHead):
    """Additive angular margin: target s·cos(θ + m)."""

    name = "arcface"

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.5, **kw: Any):
        super().__init__(embedding_size, num_classes, s=s, **kw)
        if not 0 <= m < math.pi:
            raise ConfigError(f"{self.name}: m must be in [0, pi), got {m}")
        self.m = float(m)

    def target_logit(self, cos_y, generator):
        return _angular_target(cos_y, 1.0, self.m, 0.0)


class CosFace(MarginHead):
    """Additive cosine margin: target s·(cos θ − m)."""

    name = "cosface"

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.35, **kw: Any):
        super().__init__(embedding_size, num_classes, s=s, **kw)
        self.m = float(m)

    def target_logit(self, cos_y, generator):
        return cos_y - self.m


class CombinedMargin(MarginHead):
    """InsightFace combined margin: target s·(cos(m1·θ + m2) − m3)."""

    name = "combined"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        **kw: Any,
    ):
        super().__init__(embedding_size, num_classes, s=s, **kw)
        if not m1 > 0 or not 0 <= m2 < math.pi:
            raise ConfigError(f"{self.name}: need m1 > 0 and 0 <= m2 < pi, got m1={m1}, m2={m2}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def target_logit(self, cos_y, generator):
        return _angular_target(cos_y, self.m1, self.m2, self.m3)


class _Elastic(MarginHead):
    """Shared ElasticFace logic: per-sample margins m_i ~ N(m, std), optionally rank-sorted."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 64.0,
        m: float,
        std: float,
        plus: bool = False,
        **kw: Any,
    ):
        super().__init__(embedding_size, num_classes, s=s, **kw)
        if not std >= 0:
            raise ConfigError(f"{self.name}: std must be >= 0, got {std}")
        self.m, self.std, self.plus = float(m), float(std), bool(plus)

    def draw_margins(self, cos_y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Per-row margins (n,) for the rows with a positive; rank-sorted for the "+" variants."""
        margins = self._normal(self.m, self.std, cos_y.shape[0], generator, cos_y.device)
        if self.plus and cos_y.shape[0] > 1:
            with torch.no_grad():
                order = torch.argsort(cos_y.detach())  # ascending: farthest from centre first
                ranks = torch.empty_like(order)
                ranks[order] = torch.arange(order.numel(), device=order.device)  # inverse permutation
                margins = torch.sort(margins, descending=True).values[ranks]
        self.last_margins = margins.detach()
        return margins


class ElasticArcFace(_Elastic):
    """ElasticFace-Arc: target s·cos(θ + m_i), m_i ~ N(m, std) per sample per step."""

    name = "elastic_arc"

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.5, std: float = 0.05, plus: bool = False, **kw: Any):
        super().__init__(embedding_size, num_classes, s=s, m=m, std=std, plus=plus, **kw)
        if plus:
            self.name = "elastic_arc_plus"

    def target_logit(self, cos_y, generator):
        # Draws are clipped to [0, pi) so the angular fallback stays well defined (|z| > 10 sigma).
        m = self.draw_margins(cos_y, generator).clamp(0.0, math.pi - 1e-3)
        return _angular_target(cos_y, 1.0, m, 0.0)


class ElasticCosFace(_Elastic):
    """ElasticFace-Cos: target s·(cos θ − m_i), m_i ~ N(m, std) per sample per step."""

    name = "elastic_cos"

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.35, std: float = 0.05, plus: bool = False, **kw: Any):
        super().__init__(embedding_size, num_classes, s=s, m=m, std=std, plus=plus, **kw)
        if plus:
            self.name = "elastic_cos_plus"

    def target_logit(self, cos_y, generator):
        return cos_y - self.draw_margins(cos_y, generator)


#: name -> (class, default kwargs)
HEADS: Registry[tuple[type[MarginHead], dict[str, Any]]] = Registry("head")
HEADS.register("arcface", (ArcFace, {"s": 64.0, "m": 0.5}))
HEADS.register("cosface", (CosFace, {"s": 64.0, "m": 0.35}))
HEADS.register("combined", (CombinedMargin, {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}))
HEADS.register("elastic_arc", (ElasticArcFace, {"s": 64.0, "m": 0.5, "std": 0.05}))
HEADS.register("elastic_cos", (ElasticCosFace, {"s": 64.0, "m": 0.35, "std": 0.05}))
HEADS.register("elastic_arc_plus", (ElasticArcFace, {"s": 64.0, "m": 0.5, "std": 0.0175, "plus": True}))
HEADS.register("elastic_cos_plus", (ElasticCosFace, {"s": 64.0, "m": 0.35, "std": 0.025, "plus": True}))
_COMMON = {"eps", "seed"}


def list_heads() -> list[str]:
    """Names accepted by :func:`get_head`."""
    return HEADS.names()


def get_head(name: str, embedding_size: int, num_classes: int, **kw: Any) -> MarginHead:
    """Build a margin head by name with its published defaults; ``kw`` overrides them.

    Unknown name -> :class:`UnknownNameError`; unknown option -> :class:`ConfigError`.
    The head carries ``head.spec = {"name", "kwargs"}`` (JSON-able).
    """
    key = str(name).strip().lower().replace("-", "_").replace("+", "_plus")
    if key not in HEADS:
        raise UnknownNameError(f"unknown head {name!r}; known: {', '.join(list_heads())}")
    cls, defaults = HEADS.get(key)
    allowed = set(defaults) | _COMMON
    bad = sorted(set(kw) - allowed)
    if bad:
        raise ConfigError(f"head {key}: unknown option(s) {bad}; allowed: {sorted(allowed - {'plus'})}")
    if "plus" in kw and bool(kw["plus"]) != bool(defaults.get("plus", False)):
        raise ConfigError(f"head {key}: 'plus' is fixed by the name; use {key.removesuffix('_plus')}[_plus]")
    params = {**defaults, **kw}
    head = cls(int(embedding_size), int(num_classes), **params)
    head.spec = {"name": key, "kwargs": {k: v for k, v in params.items() if k != "plus"}}
    return head

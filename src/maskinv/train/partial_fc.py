"""PartialFC: class centres sharded over ranks, with sampled negatives (InsightFace's idea).

Each rank holds the centres of a contiguous slice of the classes. Per step the embeddings and
labels of the whole global batch are all-gathered (the embeddings with gradient); each rank
computes cosines against its (sampled) centres, applies the margin of the configured head to the
columns it owns (``head.apply_margin`` with label ``-1`` where the positive lives on another
shard), and the softmax cross-entropy is completed with two all-reduces (max, then sum of
exponentials and the target logit). At ``sample_rate=1`` the loss equals the full softmax.

Sampling: a shard keeps every class that is a positive of the global batch plus random other
classes up to ``ceil(sample_rate * shard_size)`` columns. Note: weight decay and momentum still
move unsampled centres (plain torch optimisers); InsightFace restricts the update to the sampled
rows. The ElasticFace "+" heads sort margins within the rows whose positive is on the shard.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maskinv.errors import CheckpointError, ConfigError

from . import distributed as D


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """Class range ``[start, end)`` held by ``rank`` (sizes differ by at most one)."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    size = base + (1 if rank < extra else 0)
    return start, start + size


class PartialFC(nn.Module):
    """Sharded margin-softmax loss. ``head`` supplies ``apply_margin`` (its own kernel is unused).

    Parameters: ``kernel`` of shape (embedding_size, shard_size), initialised N(0, 0.01) like the
    heads' kernels (drawn from ``generator`` when given).
    """

    def __init__(self, head: nn.Module, embedding_size: int, num_classes: int, *, sample_rate: float = 1.0,
                 rank: int | None = None, world_size: int | None = None, generator: torch.Generator | None = None):
        super().__init__()
        info = D.dist_info()
        self.rank = info.rank if rank is None else rank
        self.world_size = info.world_size if world_size is None else world_size
        if num_classes < self.world_size:
            raise ConfigError(f"head.partial_fc: needs at least one class per rank, got num_classes={num_classes} "
                              f"with world_size={self.world_size}")
        if not (0.0 < sample_rate <= 1.0):
            raise ConfigError(f"head.partial_fc.sample_rate: must be in (0, 1], got {sample_rate!r}")
        self.num_classes = num_classes
        self.sample_rate = float(sample_rate)
        self.start, self.end = shard_range(num_classes, self.rank, self.world_size)
        self.margin_head = head
        w = torch.empty(embedding_size, self.end - self.start)
        w.normal_(0.0, 0.01, generator=generator)
        self.kernel = nn.Parameter(w)

    def load_full_kernel(self, kernel: torch.Tensor) -> None:
        """Copy this rank's columns out of a full (embedding_size, num_classes) kernel."""
        if tuple(kernel.shape) != (self.kernel.shape[0], self.num_classes):
            raise CheckpointError(f"PartialFC.load_full_kernel: kernel shape {tuple(kernel.shape)} does not match "
                                  f"(embedding_size, num_classes) = {(self.kernel.shape[0], self.num_classes)}")
        with torch.no_grad():
            self.kernel.copy_(kernel[:, self.start : self.end])

    def _sample(self, labels_all: torch.Tensor, generator: torch.Generator | None):
        n_local = self.end - self.start
        on_shard = (labels_all >= self.start) & (labels_all < self.end)
        local = labels_all - self.start
        if self.sample_rate >= 1.0:
            index = None
            col = torch.where(on_shard, local, torch.full_like(local, -1))
            return index, col
        positives = torch.unique(local[on_shard])
        num_sample = max(int(math.ceil(self.sample_rate * n_local)), positives.numel())
        dev = self.kernel.device
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        score = torch.rand(n_local, generator=generator, device=gen_dev).to(dev)
        score[positives.to(dev)] = 2.0  # positives always kept
        index = torch.topk(score, num_sample).indices.sort().values
        col = torch.full_like(local, -1)
        if on_shard.any():
            col[on_shard] = torch.searchsorted(index, local[on_shard].to(dev))
        return index, col

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean margin-softmax loss over the *global* batch (same value on every rank)."""
        emb_all = D.all_gather_with_grad(embeddings.float())
        labels_all = D.all_gather_nograd(labels.long())
        index, col = self._sample(labels_all, generator)
        w = self.kernel if index is None else self.kernel[:, index]
        cosine = F.normalize(emb_all, dim=1) @ F.normalize(w.float(), dim=0)
        logits = self.margin_head.apply_margin(cosine, col, generator=generator).float()
        row_max = D.all_reduce_max_nograd(logits.max(dim=1).values)
        shifted = logits - row_max[:, None]
        denom = D.all_reduce_sum_replicated(shifted.exp().sum(dim=1))
        has = col >= 0
        safe = torch.where(has, col, torch.zeros_like(col))
        target = shifted.gather(1, safe[:, None]).squeeze(1) * has.to(shifted.dtype)
        target = D.all_reduce_sum_replicated(target)
        return (denom.log() - target).mean()

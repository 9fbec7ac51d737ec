"""Distributed helpers: the torchrun environment, process-group setup and autograd collectives.

The process group is created by the CLI entry point (``maskinv train`` under ``torchrun``) via
:func:`init_process_group_from_env`, never at import time; :func:`run_training` only reads the
current state (:func:`dist_info`), so it runs unchanged in a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    """Rank/world of this process (``rank=0, world_size=1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when torchrun's environment (RANK/WORLD_SIZE/LOCAL_RANK) is present."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_process_group_from_env(device: str = "auto") -> DistInfo:
    """Create the default process group from torchrun's environment (gloo on CPU, NCCL on CUDA).

    Does nothing (returns rank 0 of 1) outside torchrun or when already initialised.
    """
    import torch.distributed as dist

    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend)
    return dist_info()


def dist_info() -> DistInfo:
    """The current rank/world from the default process group (if any)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, src: int = 0):
    """Broadcast a picklable object from ``src`` (identity when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_flag(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (used for stop signals)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class _AllGatherGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over ranks and keeps this rank's slice.

    The backward also multiplies by the world size: the backbone that produced the local
    embeddings is wrapped in DDP, which *averages* gradients over ranks, whereas the gathered
    loss already is the global-batch mean; the factor makes the pair give the gradient of that
    global mean (the same convention as InsightFace's PartialFC).
    """

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        ws = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.ws = ws
        ctx.n = x.shape[0]
        out = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        lo = ctx.rank * ctx.n
        return grad[lo : lo + ctx.n] * ctx.ws


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks, differentiably."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGatherGrad.apply(x)


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks (no gradient)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


class _AllReduceSumReplicated(torch.autograd.Function):
    """all_reduce(SUM) whose backward is the identity.

    Valid when every rank evaluates the same (replicated) loss from the reduced value: the
    gradient of that loss w.r.t. this rank's summand equals its gradient w.r.t. the sum.
    """

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad


def all_reduce_sum_replicated(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllReduceSumReplicated.apply(x)


def all_reduce_max_nograd(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    y = x.detach().clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(y, op=dist.ReduceOp.MAX)
    return y

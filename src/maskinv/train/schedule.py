"""Learning-rate schedules as pure functions of the global step (exact on resume)."""
from __future__ import annotations

import bisect
import math

from .config import ScheduleConfig


def total_steps(sched: ScheduleConfig, steps_per_epoch: int) -> int:
    """Number of optimiser steps of the whole schedule (``epochs`` may be fractional)."""
    return max(1, int(math.ceil(sched.epochs * steps_per_epoch - 1e-9)))


def lr_factor(step: int, sched: ScheduleConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs`` (from 1/warmup_steps to 1), then:
    ``step``: the public MaskInv/ElasticFace rule ``gamma ** |{m in milestones : m - 1 <= epoch}|``
    with ``epoch = step / steps_per_epoch`` counted from 0. A milestone ``m`` is the 1-based
    epoch that first runs at the lower rate: ``[8, 14, 20, 25]`` drops the rate after 7, 13, 19
    and 24 finished epochs (at the start of 0-based epochs 7, 13, 19 and 24), exactly as the
    public code's per-epoch ``LambdaLR``. Fractional milestones drop mid-epoch at the same
    position; a milestone ``<= 1`` is in force from step 0. ``poly``: ``(1 - t) ** power`` over
    the post-warm-up steps; ``constant``: 1. The result never falls below ``min_lr_factor``
    (except during warm-up).
    """
    spe = max(1, int(steps_per_epoch))
    warm = int(round(sched.warmup_epochs * spe))
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if sched.kind == "constant":
        f = 1.0
    elif sched.kind == "step":
        epoch = step / spe
        # count milestones with m - 1 <= epoch; a tiny tolerance keeps integer epochs exact
        n = bisect.bisect_right([float(m) - 1.0 for m in sched.milestones], epoch + 1e-12)
        f = sched.gamma ** n
    elif sched.kind == "poly":
        total = total_steps(sched, spe)
        span = max(1, total - warm)
        t = min(1.0, max(0.0, (step - warm) / span))
        f = (1.0 - t) ** sched.power
    else:  # validated earlier
        raise ValueError(f"unknown schedule kind {sched.kind!r}")
    return max(f, sched.min_lr_factor)


def make_scheduler(optimizer, sched: ScheduleConfig, steps_per_epoch: int):
    """A ``LambdaLR`` stepping once per optimiser step with :func:`lr_factor`."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda s: lr_factor(s, sched, steps_per_epoch)
    )

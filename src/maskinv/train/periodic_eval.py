"""Verification during training: every ``runtime.eval_every`` steps (rank 0 only) the student
backbone is scored on ``data.val_bins`` and the flat results go to the metrics log."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maskinv.errors import DataFormatError

from .config import TrainConfig


def resolve_bin(path: str, data_root: Path) -> Path:
    """``data.val_bins`` entry: as given when it exists (or is absolute), else looked up in the data folder."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    alt = data_root / p
    return alt if alt.exists() else p


def flatten_eval(res: Any, prefix: str = "") -> dict[str, float]:
    """Nested eval results -> flat {"bin/protocol/metric": float} (arrays and non-finite values dropped)."""
    out: dict[str, float] = {}
    if isinstance(res, dict):
        for k, v in res.items():
            if k == "scores":
                continue
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten_eval(v, key))
            elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
                fv = float(v)
                if math.isfinite(fv):
                    out[key] = fv
    return out


class PeriodicEval:
    """``__call__(step, force=False)`` evaluates when due; ``last`` holds the newest flat results.

    Inactive (every call a no-op) when ``eval_every`` is 0 or on ranks other than 0.
    """

    def __init__(self, cfg: TrainConfig, data_root: Path, *, backbone, logger, is_main: bool):
        self.every = cfg.runtime.eval_every
        self.backbone = backbone
        self.logger = logger
        self.last: dict | None = None
        self.cb = None
        if not self.every or not is_main:
            return
        bins = [resolve_bin(b, data_root) for b in cfg.data.val_bins]
        for b in bins:
            if not b.is_file():
                raise DataFormatError(f"data.val_bins: verification file not found: {b}")
        from maskinv.evaluate import VerificationCallback

        self.cb = VerificationCallback([str(b) for b in bins], self.every,
                                       protocols=tuple(cfg.runtime.eval_protocols), seed=cfg.runtime.seed,
                                       batch_size=cfg.runtime.eval_batch_size)

    def __call__(self, step: int, force: bool = False) -> dict | None:
        if self.cb is None:
            return None
        if not force and step % self.every:
            return None
        res = self.cb(self.backbone, step, force=force)
        if res:
            flat = flatten_eval(res)
            self.logger.log_eval(step, flat)
            self.last = flat
            self.backbone.train()
        return res

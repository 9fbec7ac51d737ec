"""Periodic verification during training (the trainer calls it with ``(model, step)``).

Bins are decoded and masked once, on first use, and kept in memory: masks depend on
``(seed, image index)`` only, so every evaluation sees the same bytes and numbers are
comparable across steps. The model's train/eval flags are restored after each run (the public
MaskInv code left the model in eval mode after its evaluation).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from maskinv.errors import ConfigError
from maskinv.masks.protocols import MU, UU

from .protocols import evaluate_arrays, load_bench, masked_images, parse_protocols


class VerificationCallback:
    """Evaluate a model on verification bins every ``every_steps`` steps.

    Args:
        bins: ``.bin`` paths (or ``(name, (images, issame))`` tuples for in-memory sets).
        every_steps: run when ``step % every_steps == 0`` (and ``step > 0``); ``force=True``
            in :meth:`__call__` runs regardless.
        protocols: protocols per bin, e.g. ``("uu", "mu")``.
        seed, mask_kind: mask seeding, as ``maskinv eval``.
        flip, batch_size, precision, folds: passed to the embedding/metrics.
        log_fn: called with ``(metrics_dict, step)`` after each run (e.g. a JSONL/TensorBoard logger).

    Calling it returns ``None`` when it is not time, else a flat dict
    ``{"<bin>/<protocol>/accuracy": float, ".../accuracy_std", ".../eer", ".../fmr100"}``
    (values may be ``None`` when undefined) plus ``"eval_seconds"``.
    """

    def __init__(
        self,
        bins: Sequence[str | os.PathLike | tuple[str, Any]],
        every_steps: int,
        protocols: Iterable[str] | str = (UU, MU),
        *,
        seed: int = 0,
        mask_kind: str = "random",
        flip: bool = True,
        batch_size: int = 256,
        precision: str = "auto",
        folds: int = 10,
        log_fn: Callable[[dict, int], Any] | None = None,
    ) -> None:
        if int(every_steps) < 1:
            raise ConfigError(f"verification every_steps must be >= 1, got {every_steps!r}")
        self.bins = list(bins)
        self.every_steps = int(every_steps)
        self.protocols = parse_protocols(protocols)
        self.seed = int(seed)
        self.mask_kind = mask_kind
        self.flip = bool(flip)
        self.batch_size = int(batch_size)
        self.precision = precision
        self.folds = int(folds)
        self.log_fn = log_fn
        self._cache: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] | None = None
        self.history: list[tuple[int, dict]] = []

    def _prepare(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
        if self._cache is None:
            cache = []
            names: list[str] = []
            for b in self.bins:
                if isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], str) and not isinstance(b[1], (str, os.PathLike)):
                    name, src = b
                else:
                    name, src = Path(b).stem, b
                base, k = name, 2
                while name in names:
                    name, k = f"{base}-{k}", k + 1
                names.append(name)
                images, issame, _ = load_bench(src)
                cache.append((name, images, issame, masked_images(images, self.protocols, self.seed, self.mask_kind)))
            self._cache = cache
        return self._cache

    def due(self, step: int) -> bool:
        """Whether :meth:`__call__` would run at ``step``."""
        return step > 0 and step % self.every_steps == 0

    def __call__(self, model: Any, step: int, force: bool = False) -> dict[str, Any] | None:
        if not (force or self.due(step)):
            return None
        t0 = time.perf_counter()
        inner = getattr(model, "module", model)  # evaluate the bare network under DDP
        out: dict[str, Any] = {}
        for name, images, issame, masked in self._prepare():
            res = evaluate_arrays(
                inner, images, issame, masked, self.protocols, flip=self.flip, batch_size=self.batch_size,
                precision=self.precision, folds=self.folds,
            )
            for proto, m in res.items():
                key = f"{name}/{proto}"
                out[f"{key}/accuracy"] = m["accuracy_mean"]
                out[f"{key}/accuracy_std"] = m["accuracy_std"]
                out[f"{key}/eer"] = m["eer"]
                out[f"{key}/fmr100"] = m["fmr100"]
        out["eval_seconds"] = time.perf_counter() - t0
        self.history.append((int(step), out))
        if self.log_fn is not None:
            self.log_fn(out, int(step))
        return out

"""Training: typed run configs, the MaskInv trainer, checkpoints/resume, teacher cache, PartialFC.

Public API (imported lazily, so ``import maskinv.train`` does not import torch)::

    load_config(path, overrides) -> TrainConfig
    config_from_dict(dict) -> TrainConfig        # or build the dataclasses directly
    run_training(cfg, out_dir, *, max_steps=None, resume=False) -> dict
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_getattr

_EXPORTS = {
    "TrainConfig": "config",
    "load_config": "config",
    "config_from_dict": "config",
    "config_to_dict": "config",
    "apply_overrides": "config",
    "validate_config": "config",
    "save_config": "config",
    "config_hash": "config",
    "run_training": "trainer",
    "TrainingDivergedError": "trainer",
    "TeacherCache": "teacher_cache",
    "PartialFC": "partial_fc",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Training: typed run configs, the MaskInv trainer, checkpoints/resume, teacher cache, PartialFC.

Public API (imported lazily, so ``import maskinv.train`` does not import torch)::

    load_config(path, overrides) -> TrainConfig
    config_from_dict(dict) -> TrainConfig        # or build the dataclasses directly
    run_training(cfg, out_dir, *, max_steps=None, resume=False) -> dict
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": "TrainConfig load_config config_from_dict config_to_dict apply_overrides validate_config save_config config_hash",
    "trainer": "run_training TrainingDivergedError",
    "teacher_cache": "TeacherCache",
    "partial_fc": "PartialFC",
})

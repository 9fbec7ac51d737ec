"""Validation of the label-free (distillation-only) settings: ``head.name: none``,
``data.labels: ignore``, ``model.init_from_teacher`` and teachers that run only in the cache
pre-pass (ONNX, dlib). Called by :func:`maskinv.train.config.validate_config`."""
from __future__ import annotations

from typing import Callable, NoReturn

from maskinv.models.recognizer import runs_in_prepass_only

from .config_schema import TrainConfig


def is_external_teacher(path: str | None) -> bool:
    """A teacher that cannot run inside the step: an ONNX model or a named recogniser without a torch
    module (dlib): its templates are cached once by the pre-pass."""
    return runs_in_prepass_only(path)


def check_label_free(cfg: TrainConfig, bad: Callable[..., NoReturn]) -> None:
    """``head.name: none``, ``data.labels``, ``model.init_from_teacher``/``freeze_bn_stats`` and
    external (ONNX/dlib) teachers: the distillation-only (``maskinv adapt``) settings."""
    if cfg.data.labels not in ("use", "ignore"):
        bad("data.labels", f"must be use or ignore, got {cfg.data.labels!r}")
    if cfg.head.name == "none":
        if cfg.kd.weight <= 0:
            bad("kd.weight", "head.name none trains by distillation only: kd.weight must be > 0", "head.name")
        if cfg.head.partial_fc.enabled:
            bad("head.partial_fc.enabled", "PartialFC needs a margin head (head.name is none)", "head.name")
        if cfg.head.init:
            bad("head.init", "there is no head to initialise (head.name is none)", "head.name")
    elif cfg.data.labels == "ignore":
        bad("data.labels", f"ignore needs head.name none (the {cfg.head.name} head trains on labels)", "head.name")
    if cfg.model.init_from_teacher:
        if not cfg.teacher.path:
            bad("model.init_from_teacher", "needs teacher.path (the student is a copy of the teacher)")
        if cfg.model.init:
            bad("model.init", "give model.init or model.init_from_teacher, not both", "model.init_from_teacher")
        if is_external_teacher(cfg.teacher.path):
            bad("model.init_from_teacher", f"teacher {cfg.teacher.path} is not a torch model we can copy; "
                "train a student of model.name instead", "teacher.path")
    if is_external_teacher(cfg.teacher.path) and cfg.kd.weight > 0:
        if not cfg.teacher.cache.enabled or cfg.teacher.cache.mode != "prepass":
            bad("teacher.cache.mode", f"teacher {cfg.teacher.path} runs only in the cache pre-pass: set "
                "teacher.cache.enabled=true and teacher.cache.mode=prepass", "teacher.cache.enabled", "teacher.path")
        if cfg.teacher.name is not None or cfg.teacher.kwargs:
            bad("teacher.name", f"teacher {cfg.teacher.path} carries its own architecture", "teacher.kwargs")

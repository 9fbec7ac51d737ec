"""Building a run's parts from its config: device, precision/autocast, the student (backbone +
margin head or PartialFC), the frozen teacher, optimisers, schedulers, GradScaler and masker.

Nothing here runs a step; :mod:`.trainer` calls these in a fixed order (the order of random
draws at construction time is part of a run's determinism).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from maskinv.errors import CheckpointError, ConfigError
from maskinv.utils.seeds import derive_seed

from . import checkpoint as ckpt_mod
from . import distributed as D
from .config import TrainConfig
from .schedule import make_scheduler
from .step import StudentNet


def resolve_device(spec: str) -> torch.device:
    """``runtime.device`` -> a torch device (``auto``: this rank's GPU if CUDA is available, else CPU)."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device: {spec!r} requested but CUDA is not available")
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


def resolve_precision(mode: str, device: torch.device) -> str:
    """The one meaning of ``auto`` (:mod:`maskinv.utils.precision`); fp16 needs CUDA."""
    from maskinv.utils.precision import resolve_precision as _resolve

    return _resolve(mode, device, training=True)


def autocast_factory(precision: str, device: torch.device) -> Callable[[], Any]:
    """A zero-argument context factory: autocast to bf16/fp16, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def pin_memory(cfg: TrainConfig, device: torch.device) -> bool:
    """``runtime.pin_memory`` (null: on CUDA): page-locked batches make host->device copies asynchronous."""
    pm = cfg.runtime.pin_memory
    return device.type == "cuda" if pm is None else bool(pm) and torch.cuda.is_available()


def fused_optimizer(cfg: TrainConfig, device: torch.device) -> bool:
    """``runtime.fused_optimizer`` (null: on CUDA only, where one fused kernel replaces the
    per-parameter update loop; CPU keeps the default implementation and its exact numbers)."""
    f = cfg.runtime.fused_optimizer
    return device.type == "cuda" if f is None else bool(f)


def maybe_compile(cfg: TrainConfig, backbone: nn.Module) -> nn.Module:
    """``runtime.compile``: compile the backbone in place (``nn.Module.compile``: the module and its
    state-dict keys stay the same, so checkpoints and exports are unchanged)."""
    if cfg.runtime.compile:
        backbone.compile(mode=None if cfg.runtime.compile_mode == "default" else cfg.runtime.compile_mode)
    return backbone


def memory_format(cfg: TrainConfig) -> torch.memory_format:
    return torch.channels_last if cfg.precision.channels_last else torch.contiguous_format


def build_models(cfg: TrainConfig, num_classes: int, image_size: int, *, rank: int = 0):
    """``(backbone, head, pfc)`` on the CPU: ``head`` is the full margin head, or None when PartialFC
    (``pfc``, this rank's class-centre shard) holds the centres. ``model.init``/``head.init`` are loaded."""
    from .heads import get_head
    from maskinv.models import get_model, load_backbone, load_state_dict_strict

    kw = dict(cfg.model.kwargs)
    if "input_size" in kw and int(kw["input_size"]) != image_size:
        raise ConfigError(f"model.kwargs.input_size={kw['input_size']} but the training images are {image_size}x{image_size}")
    kw["input_size"] = image_size
    if "embedding_size" in kw:
        raise ConfigError("model.kwargs.embedding_size: set model.embedding_size instead")
    if cfg.model.init_from_teacher:
        backbone = _teacher_copy(cfg, image_size)
    else:
        backbone = get_model(cfg.model.name, embedding_size=cfg.model.embedding_size, seed=cfg.runtime.seed, **kw)
    if cfg.model.init:
        src = load_backbone(cfg.model.init)
        load_state_dict_strict(backbone, src.state_dict(), source=cfg.model.init)
    if cfg.head.name == "none":  # distillation only: no class centres, labels unused
        return backbone, None, None
    hkw = dict(cfg.head.kwargs)
    hkw.setdefault("seed", derive_seed(cfg.runtime.seed, "head"))
    pfc = None
    if cfg.head.partial_fc.enabled:
        from .partial_fc import PartialFC

        margin = get_head(cfg.head.name, cfg.model.embedding_size, 1, **hkw)
        g = torch.Generator().manual_seed(derive_seed(cfg.runtime.seed, "partial_fc", rank))
        pfc = PartialFC(margin, cfg.model.embedding_size, num_classes,
                        sample_rate=cfg.head.partial_fc.sample_rate, generator=g)
        if cfg.head.init:
            full = get_head(cfg.head.name, cfg.model.embedding_size, num_classes, **hkw)
            full.load_header(header_source(cfg.head.init))
            pfc.load_full_kernel(full.kernel.detach())
        head = None
    else:
        head = get_head(cfg.head.name, cfg.model.embedding_size, num_classes, **hkw)
        if cfg.head.init:
            head.load_header(header_source(cfg.head.init))
    return backbone, head, pfc


def _teacher_copy(cfg: TrainConfig, image_size: int) -> nn.Module:
    """``model.init_from_teacher``: a trainable copy of the teacher (its architecture and weights)."""
    from maskinv.models import load_backbone
    from maskinv.models.embedding import model_input_size

    from maskinv.models.recognizer import is_named_model

    p = Path(cfg.teacher.path)
    if is_named_model(cfg.teacher.path):  # a named torch recogniser (e.g. sface): copy its module
        import copy

        from maskinv.models.loading import load_named

        backbone = copy.deepcopy(load_named(cfg.teacher.path).module)
    elif not p.is_file():
        raise CheckpointError(f"teacher.path: {p}: teacher checkpoint not found (model.init_from_teacher)")
    else:
        backbone = load_backbone(p, cfg.teacher.name, **dict(cfg.teacher.kwargs))
    size = model_input_size(backbone)
    if size is not None and int(size) != image_size:
        raise ConfigError(f"model.init_from_teacher: teacher {p} takes {size}x{size} crops but the training "
                          f"images are {image_size}x{image_size}")
    backbone.requires_grad_(True)
    return backbone.train()


def header_source(path: str):
    """What ``head.init`` names, for ``load_header``: our training checkpoint's state, else the path."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"head.init: header checkpoint not found: {p}")
    try:
        return ckpt_mod.load_state(p)  # our training checkpoint: load_header finds its "head"
    except CheckpointError:
        return str(p)


def build_teacher(cfg: TrainConfig, teacher_module: nn.Module | None = None) -> nn.Module | None:
    """The frozen teacher: ``teacher_module`` when given, else ``teacher.path`` when KD is on, else None."""
    if teacher_module is not None:
        return teacher_module
    if not cfg.teacher.path or cfg.kd.weight <= 0:
        return None
    from .config import is_external_teacher

    if is_external_teacher(cfg.teacher.path):
        from .external_teacher import load_external_teacher

        teacher = load_external_teacher(cfg.teacher.path, data_root=cfg.data.path)
    else:
        from .distill import load_teacher

        teacher = load_teacher(cfg.teacher.path, cfg.teacher.name, **dict(cfg.teacher.kwargs))
    size = getattr(teacher, "embedding_size", None)
    if cfg.head.name == "none" and not cfg.model.init_from_teacher and size and int(size) != cfg.model.embedding_size:
        raise ConfigError(f"model.embedding_size={cfg.model.embedding_size} but teacher {cfg.teacher.path} "
                          f"gives {size}-d templates (distillation needs the same size)")
    return teacher


def build_optimizers(cfg: TrainConfig, world_size: int, params_main, params_pfc, *,
                     fused: bool = False) -> tuple[list, float]:
    """``([main, (pfc)], lr)``: one optimiser per parameter group, lr scaled by the global batch.
    ``fused``: the fused implementation (``fused=True``; left out otherwise, so the default stays)."""
    o = cfg.optim
    extra = {"fused": True} if fused else {}
    global_batch = cfg.runtime.batch_size * world_size
    lr = o.lr * (global_batch / o.lr_reference_batch if o.lr_reference_batch else 1.0)

    def make(params):
        if o.name == "sgd":
            cls, kw = torch.optim.SGD, dict(momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
        else:
            cls, kw = torch.optim.AdamW, dict(betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        if not extra:
            return cls(params, lr=lr, **kw)
        try:
            return cls(params, lr=lr, **kw, **extra)
        except (RuntimeError, TypeError, ValueError) as exc:  # fused kernels missing for this device/torch
            raise ConfigError(f"runtime.fused_optimizer: fused {o.name} is not available here: {exc}") from exc

    opts = [make(params_main)]
    if params_pfc:
        opts.append(make(params_pfc))
    return opts, lr


def build_masker(cfg: TrainConfig, image_size: int, device: torch.device, sample_images=None, record_meshes=None):
    """The batched synthetic-mask renderer, or None when ``masks.prob`` is 0.

    ``masks.renderer: mesh``: with ``record_meshes`` (what the trainer passes: a callable returning
    ``(meshes (N, 468, 2), scores (N,), info)``, one mesh per training record from the mesh
    pre-pass, :func:`maskinv.train.mesh_masks.record_meshes`) a
    :class:`~maskinv.masks.mesh_records.RecordMeshMasker` that masks every image from its own mesh
    (records whose face score is below :data:`MIN_FACE_SCORE` fall back to bank masks); with only
    ``sample_images()`` (uint8 (M, H, W, 3) aligned crops) a ``BatchMasker`` bank rendered on those
    crops' meshes and pasted at the aligned position."""
    if cfg.masks.prob <= 0:
        return None
    from maskinv.masks import BatchMasker

    # the run's seed drives the mask bank too (seed 0 = the bank every run used before)
    if cfg.masks.renderer == "mesh":
        if record_meshes is not None:
            from maskinv.masks.mesh_records import RecordMeshMasker

            meshes, scores, info = record_meshes()
            mk = RecordMeshMasker(image_size, meshes, scores, seed=cfg.runtime.seed, min_score=MIN_FACE_SCORE,
                                  device=device)
            mk.prepass = info
            return mk
        from maskinv.masks.mesh import crop_meshes

        if sample_images is None:
            raise ConfigError("masks.renderer: mesh needs training crops to take face meshes from")
        return BatchMasker(image_size=image_size, kinds=tuple(cfg.masks.kinds), device=device, seed=cfg.runtime.seed,
                           renderer="mesh", meshes=crop_meshes(sample_images()))
    return BatchMasker(image_size=image_size, kinds=tuple(cfg.masks.kinds), device=device, seed=cfg.runtime.seed)


#: Face score (sigmoid of the mesh network's face logit) below which a training record's mesh is not
#: used (the record gets bank masks). Measured (docs/masks.md): SynthFaces and LFW aligned crops score
#: >= 0.97; the toy blob images of the tests score near 0.
MIN_FACE_SCORE = 0.5


@dataclass
class Student:
    """The trained parts: ``optimizers[0]``/``schedulers[0]`` drive backbone + head, ``[1]`` the
    PartialFC shard (when on). ``model`` is the :class:`StudentNet`, DDP-wrapped under torchrun."""

    backbone: nn.Module
    head: nn.Module | None
    pfc: nn.Module | None
    model: nn.Module
    optimizers: list
    schedulers: list
    scaler: Any
    base_lr: float


def assemble_student(cfg: TrainConfig, info: D.DistInfo, device: torch.device, precision: str,
                     backbone: nn.Module, head: nn.Module | None, pfc: nn.Module | None,
                     autocast: Callable[[], Any], steps_per_epoch: int) -> Student:
    """Wrap the (already placed) modules for training: StudentNet (+ DDP), optimisers, schedules, scaler."""
    net = StudentNet(backbone, head, autocast, freeze_bn_stats=cfg.model.freeze_bn_stats)
    model: nn.Module = net
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # default buffer broadcast: every forward starts from rank 0's BN statistics
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    params_main = [p for p in net.parameters() if p.requires_grad]
    params_pfc = [p for p in pfc.parameters()] if pfc is not None else []
    optimizers, lr = build_optimizers(cfg, info.world_size, params_main, params_pfc,
                                      fused=fused_optimizer(cfg, device))
    schedulers = [make_scheduler(o, cfg.schedule, steps_per_epoch) for o in optimizers]
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return Student(backbone, head, pfc, model, optimizers, schedulers, scaler, lr)

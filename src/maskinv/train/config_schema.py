"""Run-config schema: one dataclass per section of a :class:`TrainConfig`, its field docs, and
the conversion of plain (YAML) values into those typed fields.

Loading, ``key.sub=value`` overrides, validation, saving and hashing live in
:mod:`maskinv.train.config` (the public face: import everything from there). Field annotations
drive the conversion (``float`` fields accept ``1e-3``, which YAML 1.1 reads as text);
``metadata=PATH`` marks file paths (stored relative to the run folder when they lie inside it).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from maskinv.errors import ConfigError
from maskinv.masks.protocols import MU, UU

__all__ = [
    "DataConfig", "SynthSpec", "ModelConfig", "HeadConfig", "PartialFCConfig", "TeacherConfig",
    "TeacherCacheConfig", "MaskConfig", "KDConfig", "OptimConfig", "ScheduleConfig",
    "PrecisionConfig", "RuntimeConfig", "TrainConfig", "PATH", "Origin", "coerce", "dataclass_from_dict",
    "path_keys",
]

PATH = {"path": True}  # dataclass field metadata of path-valued fields


@dataclass
class SynthSpec:
    """SynthFaces generation parameters (``data.source: synth``), see ``maskinv data synth``."""

    identities: int = 64
    images_per_identity: int = 8
    seed: int = 0
    size: int = 112
    val_identities: int = 0
    val_pairs: int = 0
    difficulty: str = "default"


@dataclass
class DataConfig:
    """Training data and validation bins.

    ``source``: ``recordio`` (InsightFace ``train.rec/.idx/property`` folder), ``folder`` (one
    sub-folder per identity) or ``synth`` (a SynthFaces RecordIO folder; generated into
    ``path`` from ``synth`` when the folder has no ``train.rec`` yet).
    ``val_bins``: verification ``.bin`` files; a relative path that does not exist from the
    working directory is looked up inside ``path`` (so ``synth_val.bin`` works for synth data).
    ``in_memory``: decode every image once into RAM and batch by indexing (fast on CPU for
    small sets; needs N*H*W*3 bytes).
    """

    source: str = "recordio"
    path: Optional[str] = field(default=None, metadata=PATH)
    synth: Optional[SynthSpec] = None
    flip: bool = True
    in_memory: bool = False
    val_bins: list[str] = field(default_factory=list)
    labels: str = "use"  # "ignore": every label reads -1 (label-free runs: head.name none, `maskinv adapt`)


@dataclass
class ModelConfig:
    """Student backbone: ``maskinv.models.get_model(name, embedding_size=..., **kwargs)``.

    ``init``: optional backbone file to start from (MaskInv-HG starts from a trained student).
    ``input_size`` defaults to the dataset's image size.
    ``init_from_teacher``: the student is a copy of the teacher (its architecture and weights,
    loaded from ``teacher.path``); ``name``/``embedding_size``/``kwargs`` are then not used.
    ``freeze_bn_stats``: BatchNorm layers run in eval mode while training (running statistics
    frozen, affine weights still train): a small unlabeled adaptation set must not drift them.
    """

    name: str = "r100"
    embedding_size: int = 512
    kwargs: dict = field(default_factory=dict)
    init: Optional[str] = field(default=None, metadata=PATH)
    init_from_teacher: bool = False
    freeze_bn_stats: bool = False


@dataclass
class PartialFCConfig:
    """PartialFC: class centres sharded over ranks, ``sample_rate`` of each shard sampled per step."""

    enabled: bool = False
    sample_rate: float = 1.0


@dataclass
class HeadConfig:
    """Margin head: ``maskinv.train.heads.get_head(name, embedding_size, num_classes, **kwargs)``;
    ``name: none`` trains without a head (distillation only, labels unused)."""

    name: str = "elastic_arc"
    kwargs: dict = field(default_factory=dict)
    init: Optional[str] = field(default=None, metadata=PATH)
    partial_fc: PartialFCConfig = field(default_factory=PartialFCConfig)


@dataclass
class TeacherCacheConfig:
    """Teacher-template cache (opt-in): teacher embeddings per record x flip in a memory-mapped file.

    ``mode``: ``lazy`` (filled as batches arrive) or ``prepass`` (all records and both flips
    computed before training). ``path`` defaults to ``<out_dir>/teacher_cache``.
    """

    enabled: bool = False
    mode: str = "lazy"
    path: Optional[str] = field(default=None, metadata=PATH)
    dtype: str = "float32"


@dataclass
class TeacherConfig:
    """Frozen teacher: a backbone file (with sidecar, or ``name`` + ``kwargs``) or none.

    ``path`` may also be an ``.onnx`` model or ``dlib`` (dlib's descriptor): such teachers
    cannot run inside the step, so they need ``cache.enabled`` with ``cache.mode: prepass``.
    """

    path: Optional[str] = field(default=None, metadata=PATH)
    name: Optional[str] = None
    kwargs: dict = field(default_factory=dict)
    cache: TeacherCacheConfig = field(default_factory=TeacherCacheConfig)


@dataclass
class MaskConfig:
    """Mask augmentation of the student input: each sample masked with probability ``prob``.

    ``renderer``: ``mesh`` (default: each training image's own 468-point face mesh, cached once per
    image, real-world looks; ``kinds`` must be ``[random]``) or ``v1`` (5-point outlines, kinds.py's
    kinds; the synthetic study pins it). Checkpoints saved before the field existed resume as ``v1``."""

    prob: float = 0.0
    kinds: list[str] = field(default_factory=lambda: ["random"])
    renderer: str = "mesh"


@dataclass
class KDConfig:
    """Template-level distillation: loss += ``weight`` * MSE(normalize(student), normalize(teacher))."""

    weight: float = 0.0


@dataclass
class OptimConfig:
    """Optimiser. ``lr`` is the learning rate for ``lr_reference_batch`` images of global batch;
    the effective rate is ``lr * global_batch / lr_reference_batch`` (null: no scaling)."""

    name: str = "sgd"
    lr: float = 0.1
    lr_reference_batch: Optional[int] = 512
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    clip_grad_norm: Optional[float] = 5.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over ``epochs`` (may be fractional).

    ``kind``: ``step`` (x ``gamma`` at each epoch in ``milestones``), ``poly``
    (``(1 - t/T) ** power``) or ``constant``; all with a linear warm-up of ``warmup_epochs``.
    """

    kind: str = "step"
    epochs: float = 26
    milestones: list[float] = field(default_factory=lambda: [8, 14, 20, 25])
    gamma: float = 0.1
    power: float = 2.0
    warmup_epochs: float = 0.0
    min_lr_factor: float = 0.0


@dataclass
class PrecisionConfig:
    """``mode``: ``auto`` (bf16 where the device has native bf16, else fp32 on CPU and fp16 +
    GradScaler on CUDA; see :func:`maskinv.utils.precision.choose_precision`), ``fp32``, ``bf16``,
    ``fp16`` (CUDA only). ``channels_last``: NHWC memory format (measure: slower for tiny CPU nets)."""

    mode: str = "auto"
    channels_last: bool = False


@dataclass
class RuntimeConfig:
    """Batch per device, loader workers, intervals (0 = never), seed, device, threads, throughput knobs."""

    batch_size: int = 128
    workers: int = 0
    log_every: int = 50
    eval_every: int = 0
    eval_protocols: list[str] = field(default_factory=lambda: [UU, MU])
    eval_batch_size: int = 256
    checkpoint_every: int = 2000
    keep_last: int = 3
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    progress: bool = True
    tensorboard: bool = True
    # --- throughput (docs/training.md "Speed"); none of these changes what is trained
    # (compile/fused: float rounding only), so they may change between a run and its resume
    prefetch_factor: int = 4                  # batches each loader worker keeps ready
    pin_memory: Optional[bool] = None         # page-locked batches; null: on CUDA only
    nan_check: str = "auto"                   # step | log (within log_every steps, no sync); auto: log on CUDA
    fused_optimizer: Optional[bool] = None    # fused SGD/AdamW kernels; null: on CUDA only
    compile: bool = False                     # torch.compile the student backbone (opt-in)
    compile_mode: str = "default"             # torch.compile mode


@dataclass
class TrainConfig:
    """A whole run. ``name`` labels the run (default output folder ``runs/<name>``)."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------- plain values -> typed fields

class Origin:
    """Where each value came from: the config file, or the override that set its key."""

    def __init__(self, file: str | None = None, overrides: dict[str, str] | None = None):
        self.file = file
        # key path -> what last set it, e.g. "command-line override 'optim.lr=abc'"
        self.overrides = overrides or {}

    def where(self, *keys: str) -> str:
        for key in keys:
            k = key.split("[", 1)[0]
            while k:  # an override of `data.synth` also set `data.synth.identities`
                if k in self.overrides:
                    return f" in {self.overrides[k]}"
                k = k.rpartition(".")[0]
        return f" in {self.file}" if self.file else ""


# Python/PyTorch number spellings (1e-3, 5e-4, 1.0e30, -2E+3, 1_000) that YAML 1.1 leaves as text
_DIGITS = r"\d(?:_?\d)*"
_NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")


def _number(value: Any) -> int | float | None:
    """``value`` as a number if it is one (not a bool) or a string spelling one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        s = value.strip()
        return int(s) if re.fullmatch(rf"[+-]?{_DIGITS}", s) else float(s)
    return None


def coerce(value: Any, tp: Any, key: str, origin: Origin) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; raise ConfigError naming ``key``.

    The one conversion of plain values into typed fields: the run config's fields, the overrides
    (:mod:`maskinv.train.config_overrides`) and the study's settings (:mod:`maskinv.study.settings`)
    all use it. ``tuple`` (bare) takes a list or tuple."""
    def bad(expected: str):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}{origin.where(key)}", key=key.split("[", 1)[0])

    o = typing.get_origin(tp)
    if o is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key, origin)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}{origin.where(key)}", key=key)
        return dataclass_from_dict(tp, value, key, origin)
    if tp is bool:
        if isinstance(value, bool):
            return value
        bad("true/false")
    if tp is int:
        n = _number(value)
        if isinstance(n, float) and n.is_integer():
            return int(n)
        if not isinstance(n, int):
            bad("an integer")
        return n
    if tp is float:
        n = _number(value)
        if n is None:
            bad("a number")
        if isinstance(value, str) and not math.isfinite(n):
            bad("a finite number")
        return float(n)
    if tp is str:
        if not isinstance(value, str):
            bad("a string")
        return value
    if tp is list or o is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            bad("a list")
        item = (typing.get_args(tp) or (Any,))[0]
        out = []
        for i, v in enumerate(value):
            if item is float and _number(v) is not None and not isinstance(v, str):
                out.append(v)  # keep YAML ints as ints (epoch milestones 8, 14): the config hash sees them
            elif item in (float, str):
                out.append(coerce(v, item, f"{key}[{i}]", origin))
            else:
                out.append(copy.deepcopy(v))
        return out
    if tp is tuple:
        if not isinstance(value, (list, tuple)):
            bad("a list")
        return tuple(value)
    if tp is dict or o is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            bad("a mapping")
        return copy.deepcopy(value)
    return value


def dataclass_from_dict(cls, data: dict, prefix: str, origin: Origin):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            path = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(
                f"unknown config key '{path}'{origin.where(path)} (known: {', '.join(sorted(names))})", key=path
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            path = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = coerce(data[f.name], hints[f.name], path, origin)
    return cls(**kwargs)


def path_keys(cls: Any = TrainConfig, prefix: str = "") -> list[str]:
    """Key paths of the path-valued fields (``metadata=PATH`` in the schema), e.g. ``data.path``."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if typing.get_origin(tp) is Union:
            tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        if f.metadata.get("path"):
            out.append(key)
        elif dataclasses.is_dataclass(tp):
            out += path_keys(tp, key)
    return out

"""Typed run configuration: one YAML file per run, ``key.sub=value`` overrides, strict validation.

A run is described by a :class:`TrainConfig` made of one dataclass per section
(``data``, ``model``, ``head``, ``teacher``, ``masks``, ``kd``, ``optim``, ``schedule``,
``precision``, ``runtime``). Unknown keys, wrong types and out-of-range values raise
:class:`maskinv.errors.ConfigError` naming the key path (``optim.lr``) and the file.

Build one with :func:`load_config` (YAML + overrides), :func:`config_from_dict` (a plain
dict, e.g. from Python code), or by constructing the dataclasses directly; call
:func:`validate_config` after editing fields by hand (``run_training`` validates again).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from maskinv.errors import ConfigError

__all__ = [
    "DataConfig", "SynthSpec", "ModelConfig", "HeadConfig", "PartialFCConfig", "TeacherConfig",
    "TeacherCacheConfig", "MaskConfig", "KDConfig", "OptimConfig", "ScheduleConfig",
    "PrecisionConfig", "RuntimeConfig", "TrainConfig",
    "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "validate_config",
    "config_to_yaml", "save_config", "config_hash",
]


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
    path: Optional[str] = None
    synth: Optional[SynthSpec] = None
    flip: bool = True
    in_memory: bool = False
    val_bins: list = field(default_factory=list)


@dataclass
class ModelConfig:
    """Student backbone: ``maskinv.models.get_model(name, embedding_size=..., **kwargs)``.

    ``init``: optional backbone file to start from (MaskInv-HG starts from a trained student).
    ``input_size`` defaults to the dataset's image size.
    """

    name: str = "r100"
    embedding_size: int = 512
    kwargs: dict = field(default_factory=dict)
    init: Optional[str] = None


@dataclass
class PartialFCConfig:
    """PartialFC: class centres sharded over ranks, ``sample_rate`` of each shard sampled per step."""

    enabled: bool = False
    sample_rate: float = 1.0


@dataclass
class HeadConfig:
    """Margin head: ``maskinv.heads.get_head(name, embedding_size, num_classes, **kwargs)``."""

    name: str = "elastic_arc"
    kwargs: dict = field(default_factory=dict)
    init: Optional[str] = None
    partial_fc: PartialFCConfig = field(default_factory=PartialFCConfig)


@dataclass
class TeacherCacheConfig:
    """Teacher-template cache (opt-in): teacher embeddings per record x flip in a memory-mapped file.

    ``mode``: ``lazy`` (filled as batches arrive) or ``prepass`` (all records and both flips
    computed before training). ``path`` defaults to ``<out_dir>/teacher_cache``.
    """

    enabled: bool = False
    mode: str = "lazy"
    path: Optional[str] = None
    dtype: str = "float32"


@dataclass
class TeacherConfig:
    """Frozen teacher: a backbone file (with sidecar, or ``name`` + ``kwargs``) or none."""

    path: Optional[str] = None
    name: Optional[str] = None
    kwargs: dict = field(default_factory=dict)
    cache: TeacherCacheConfig = field(default_factory=TeacherCacheConfig)


@dataclass
class MaskConfig:
    """Mask augmentation of the student input: each sample masked with probability ``prob``."""

    prob: float = 0.0
    kinds: list = field(default_factory=lambda: ["random"])


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
    betas: list = field(default_factory=lambda: [0.9, 0.999])
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
    milestones: list = field(default_factory=lambda: [8, 14, 20, 25])
    gamma: float = 0.1
    power: float = 2.0
    warmup_epochs: float = 0.0
    min_lr_factor: float = 0.0


@dataclass
class PrecisionConfig:
    """``mode``: ``auto`` (bf16 autocast on CPU, fp16 + GradScaler on CUDA), ``fp32``, ``bf16``,
    ``fp16`` (CUDA only). ``channels_last``: NHWC memory format (measure: slower for tiny CPU nets)."""

    mode: str = "auto"
    channels_last: bool = False


@dataclass
class RuntimeConfig:
    """Batch per device, loader workers, intervals (0 = never), seed, device and threads."""

    batch_size: int = 128
    workers: int = 0
    log_every: int = 50
    eval_every: int = 0
    eval_protocols: list = field(default_factory=lambda: ["uu", "mu"])
    eval_batch_size: int = 256
    checkpoint_every: int = 2000
    keep_last: int = 3
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    progress: bool = True
    tensorboard: bool = True


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


# ----------------------------------------------------------------------------- dict <-> dataclass

def _where(origin: str | None) -> str:
    return f" in {origin}" if origin else ""


def _coerce(value: Any, tp: Any, key: str, origin: str | None) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; raise ConfigError naming ``key``."""
    o = typing.get_origin(tp)
    if o is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, origin)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}{_where(origin)}")
        return _from_dict(tp, value, key, origin)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}{_where(origin)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}{_where(origin)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}{_where(origin)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}{_where(origin)}")
        return value
    if tp is list or o is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}{_where(origin)}")
        return copy.deepcopy(value)
    if tp is dict or o is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}{_where(origin)}")
        return copy.deepcopy(value)
    return value


def _from_dict(cls, data: dict, prefix: str, origin: str | None):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            path = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(
                f"unknown config key '{path}'{_where(origin)} (known: {', '.join(sorted(names))})"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            path = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], path, origin)
    return cls(**kwargs)


def config_from_dict(data: dict, *, origin: str | None = None, validate: bool = True) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a nested dict (missing keys take defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping at top level{_where(origin)}")
    cfg = _from_dict(TrainConfig, data, "", origin)
    if validate:
        validate_config(cfg, origin=origin)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config as plain nested dicts/lists (YAML/JSON-able)."""
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- overrides

def _parse_override(item: str) -> tuple[list[str], Any]:
    import yaml

    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{item}': bad key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, returning a copy.

    Keys are checked against the dataclasses so a typo fails with the full key path; free-form
    mappings (``model.kwargs``, ``head.kwargs``, ``teacher.kwargs``) accept new keys.
    """
    out = copy.deepcopy(data) if data else {}
    for item in overrides or []:
        parts, value = _parse_override(item)
        cls: Any = TrainConfig
        node = out
        for i, p in enumerate(parts):
            path = ".".join(parts[: i + 1])
            if cls is not None:
                hints = typing.get_type_hints(cls)
                if p not in hints:
                    raise ConfigError(f"unknown config key '{path}' in override '{item}'")
                tp = hints[p]
                if typing.get_origin(tp) is Union:
                    tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
                cls = tp if dataclasses.is_dataclass(tp) else None
            if i == len(parts) - 1:
                node[p] = value
            else:
                nxt = node.get(p)
                if not isinstance(nxt, dict):  # absent or null section: start an empty mapping
                    nxt = {}
                    node[p] = nxt
                node = nxt
    return out


# ----------------------------------------------------------------------------- validation

_HEADS_HINT = ("arcface", "cosface", "combined", "elastic_arc", "elastic_cos", "elastic_arc_plus", "elastic_cos_plus")


def validate_config(cfg: TrainConfig, *, origin: str | None = None) -> TrainConfig:
    """Check value ranges and cross-section consistency; raise ConfigError naming the key."""
    w = _where(origin)

    def bad(key: str, msg: str):
        raise ConfigError(f"{key}: {msg}{w}")

    d = cfg.data
    if d.source not in ("recordio", "folder", "synth"):
        bad("data.source", f"must be recordio, folder or synth, got {d.source!r}")
    if d.source in ("recordio", "folder") and not d.path:
        bad("data.path", f"required for source {d.source!r}")
    if d.source == "synth" and d.synth is None and not d.path:
        bad("data.synth", "source 'synth' needs data.path (an existing SynthFaces folder) or data.synth parameters")
    if d.synth is not None:
        if d.synth.identities < 2:
            bad("data.synth.identities", "must be >= 2")
        if d.synth.images_per_identity < 1:
            bad("data.synth.images_per_identity", "must be >= 1")
        if d.synth.size < 16:
            bad("data.synth.size", "must be >= 16")
    if not all(isinstance(b, str) for b in d.val_bins):
        bad("data.val_bins", "must be a list of paths")

    if cfg.model.embedding_size < 1:
        bad("model.embedding_size", "must be >= 1")
    if cfg.head.partial_fc.enabled and not (0.0 < cfg.head.partial_fc.sample_rate <= 1.0):
        bad("head.partial_fc.sample_rate", "must be in (0, 1]")

    if cfg.teacher.cache.mode not in ("lazy", "prepass"):
        bad("teacher.cache.mode", f"must be lazy or prepass, got {cfg.teacher.cache.mode!r}")
    if cfg.teacher.cache.dtype not in ("float32", "float16"):
        bad("teacher.cache.dtype", "must be float32 or float16")
    if not (0.0 <= cfg.masks.prob <= 1.0):
        bad("masks.prob", f"must be in [0, 1], got {cfg.masks.prob}")
    if not cfg.masks.kinds or not all(isinstance(k, str) for k in cfg.masks.kinds):
        bad("masks.kinds", "must be a non-empty list of mask kind names")
    if cfg.kd.weight < 0:
        bad("kd.weight", "must be >= 0")
    if cfg.kd.weight > 0 and not cfg.teacher.path:
        bad("teacher.path", f"kd.weight={cfg.kd.weight} needs a teacher checkpoint (teacher.path)")
    if cfg.teacher.cache.enabled and not cfg.teacher.path:
        bad("teacher.cache.enabled", "the teacher cache needs teacher.path")

    o = cfg.optim
    if o.name not in ("sgd", "adamw"):
        bad("optim.name", f"must be sgd or adamw, got {o.name!r}")
    if o.lr <= 0:
        bad("optim.lr", "must be > 0")
    if o.lr_reference_batch is not None and o.lr_reference_batch < 1:
        bad("optim.lr_reference_batch", "must be >= 1 or null")
    if o.weight_decay < 0:
        bad("optim.weight_decay", "must be >= 0")
    if not (0 <= o.momentum < 1):
        bad("optim.momentum", "must be in [0, 1)")
    if len(o.betas) != 2:
        bad("optim.betas", "must be two numbers")
    if o.clip_grad_norm is not None and o.clip_grad_norm <= 0:
        bad("optim.clip_grad_norm", "must be > 0 or null")

    s = cfg.schedule
    if s.kind not in ("step", "poly", "constant"):
        bad("schedule.kind", f"must be step, poly or constant, got {s.kind!r}")
    if s.epochs <= 0:
        bad("schedule.epochs", "must be > 0")
    if any(not isinstance(m, (int, float)) or isinstance(m, bool) for m in s.milestones):
        bad("schedule.milestones", "must be a list of epoch numbers")
    if list(s.milestones) != sorted(s.milestones):
        bad("schedule.milestones", "must be increasing")
    if not (0 < s.gamma <= 1):
        bad("schedule.gamma", "must be in (0, 1]")
    if s.warmup_epochs < 0 or s.warmup_epochs >= s.epochs:
        bad("schedule.warmup_epochs", "must be in [0, epochs)")
    if not (0 <= s.min_lr_factor < 1):
        bad("schedule.min_lr_factor", "must be in [0, 1)")

    if cfg.precision.mode not in ("auto", "fp32", "bf16", "fp16"):
        bad("precision.mode", f"must be auto, fp32, bf16 or fp16, got {cfg.precision.mode!r}")

    r = cfg.runtime
    for key in ("batch_size",):
        if getattr(r, key) < 1:
            bad(f"runtime.{key}", "must be >= 1")
    for key in ("workers", "log_every", "eval_every", "checkpoint_every"):
        if getattr(r, key) < 0:
            bad(f"runtime.{key}", "must be >= 0")
    if r.keep_last < 1:
        bad("runtime.keep_last", "must be >= 1")
    if r.eval_every and not d.val_bins:
        bad("runtime.eval_every", "is set but data.val_bins is empty")
    if any(p not in ("uu", "mu", "mm") for p in r.eval_protocols):
        bad("runtime.eval_protocols", "entries must be uu, mu or mm")
    if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
        bad("runtime.device", f"must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    if r.threads is not None and r.threads < 1:
        bad("runtime.threads", "must be >= 1 or null")
    return cfg


# ----------------------------------------------------------------------------- files

def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML run config, apply ``key.sub=value`` overrides and validate it.

    ``path`` may be None to start from the defaults. Unknown keys and bad values raise
    :class:`ConfigError` naming the key path and the file.
    """
    import yaml

    data: dict = {}
    origin = None
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
    data = apply_overrides(data, overrides)
    return config_from_dict(data, origin=origin)


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (sections in dataclass order)."""
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config atomically as YAML."""
    from maskinv.utils.io import atomic_write_text

    atomic_write_text(path, "# resolved maskinv training config\n" + config_to_yaml(cfg))
    return Path(path)


# Keys that may change between a run and its resume without changing what is trained.
_HASH_EXCLUDE = {
    ("runtime", "workers"), ("runtime", "log_every"), ("runtime", "eval_every"),
    ("runtime", "checkpoint_every"), ("runtime", "keep_last"), ("runtime", "progress"),
    ("runtime", "tensorboard"), ("runtime", "threads"), ("runtime", "eval_batch_size"),
    ("runtime", "eval_protocols"), ("data", "val_bins"), ("data", "in_memory"),
    ("teacher", "cache"), ("name",),
}


def config_hash(cfg: TrainConfig) -> str:
    """sha256 of the fields that define the training trajectory (not logging/eval/loader knobs)."""
    d = config_to_dict(cfg)
    for path in _HASH_EXCLUDE:
        node = d
        for p in path[:-1]:
            node = node.get(p, {})
        node.pop(path[-1], None)
    blob = json.dumps(d, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def config_diff(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Key paths whose values differ between two configs (for resume errors)."""
    out: list[str] = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(prefix)

    walk(config_to_dict(a), config_to_dict(b), "")
    return out

"""Typed run configuration: one YAML file per run, ``key.sub=value`` overrides, strict validation.

A run is described by a :class:`TrainConfig` made of one dataclass per section
(``data``, ``model``, ``head``, ``teacher``, ``masks``, ``kd``, ``optim``, ``schedule``,
``precision``, ``runtime``; defined in :mod:`maskinv.train.config_schema`, importable from
here). Unknown keys, wrong types and out-of-range values raise
:class:`maskinv.errors.ConfigError` naming the key path (``optim.lr``) and where the value came
from: the file, or the command-line override (``command-line override 'optim.lr=abc'``).

Build one with :func:`load_config` (YAML + overrides), :func:`config_from_dict` (a plain
dict, e.g. from Python code), or by constructing the dataclasses directly; call
:func:`validate_config` after editing fields by hand (``run_training`` validates again).

Numbers: YAML 1.1 reads ``1e-3`` (no dot) as a string; ``float``/``int`` fields convert such
strings per the dataclass annotation, so the loader itself stays plain ``yaml.safe_load``.

Run folders: :func:`save_config` stores paths that lie inside the folder of the saved file
relative to it (listed under ``paths_relative_to_this_file``) and :func:`load_config` resolves
them against that folder, so a moved run folder still finds its data; :func:`config_hash` /
:func:`config_diff` with ``run_dir`` compare such paths in the same run-relative form.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any

from maskinv.errors import ConfigError
from maskinv.masks.protocols import PROTOCOLS

from .config_schema import (DataConfig, HeadConfig, KDConfig, MaskConfig, ModelConfig, OptimConfig, Origin,
                            PartialFCConfig, PrecisionConfig, RuntimeConfig, ScheduleConfig, SynthSpec,
                            TeacherCacheConfig, TeacherConfig, TrainConfig, coerce, dataclass_from_dict, path_keys)
from .config_overrides import Overrides, apply_overrides, apply_overrides_traced, yaml_problem

from .config_label_free import check_label_free as _check_label_free, is_external_teacher

__all__ = [
    "DataConfig", "SynthSpec", "ModelConfig", "HeadConfig", "PartialFCConfig", "TeacherConfig",
    "TeacherCacheConfig", "MaskConfig", "KDConfig", "OptimConfig", "ScheduleConfig",
    "PrecisionConfig", "RuntimeConfig", "TrainConfig",
    "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "Overrides", "validate_config",
    "config_to_yaml", "save_config", "config_hash", "config_diff", "path_keys", "is_external_teacher",
]

RELATIVE_KEY = "paths_relative_to_this_file"  # top-level list in a saved run config, not a config field


def _as_origin(origin: str | Origin | None) -> Origin:
    return origin if isinstance(origin, Origin) else Origin(origin)


def config_from_dict(data: dict, *, origin: str | Origin | None = None, validate: bool = True) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a nested dict (missing keys take defaults).

    ``origin``: where the dict came from (a file name), used in error messages.
    """
    origin = _as_origin(origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping at top level{origin.where('')}")
    cfg = dataclass_from_dict(TrainConfig, data, "", origin)
    if validate:
        validate_config(cfg, origin=origin)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config as plain nested dicts/lists (YAML/JSON-able)."""
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- validation

def _check_backbone(section: str, name: str | None, kwargs: dict, owned: dict[str, str], origin: Origin) -> None:
    """``name``/``kwargs`` must be what :func:`maskinv.models.get_model` accepts (read from its signature).

    ``owned``: get_model parameters the trainer sets itself (kwarg -> what to do instead).
    Numbers written as text (``1e-1``) are converted per get_model's annotations, in place.
    """
    import inspect

    from maskinv.errors import UnknownNameError
    from maskinv.models import canonical_name, get_model

    if name is not None:
        try:
            canonical_name(name)
        except UnknownNameError as exc:
            raise ConfigError(f"{section}.name: {exc}{origin.where(f'{section}.name')}", key=f"{section}.name") from None
    params = inspect.signature(get_model).parameters
    accepted = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k not in owned)
    hints = typing.get_type_hints(get_model)
    for k in list(kwargs):
        key = f"{section}.kwargs.{k}"
        if k in owned:
            raise ConfigError(f"{key}: {owned[k]}{origin.where(key)}", key=key)
        if k not in accepted:
            raise ConfigError(f"{section}.kwargs: unknown backbone kwarg {k!r} for {name or 'the backbone'} "
                              f"(accepted: {', '.join(accepted)}){origin.where(key)}", key=key)
        if hints.get(k) in (int, float) and isinstance(kwargs[k], str):
            kwargs[k] = coerce(kwargs[k], hints[k], key, origin)


def validate_config(cfg: TrainConfig, *, origin: str | Origin | None = None) -> TrainConfig:
    """Check value ranges and cross-section consistency; raise ConfigError naming the key.

    Backbone kwargs (``model.kwargs``, ``teacher.kwargs``) are checked against what
    :func:`maskinv.models.get_model` accepts; numbers written there as text are converted in place.
    """
    origin = _as_origin(origin)

    def bad(key: str, msg: str, *causes: str):
        raise ConfigError(f"{key}: {msg}{origin.where(key, *causes)}", key=key)

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
    _check_backbone("model", cfg.model.name, cfg.model.kwargs, {
        "embedding_size": "set model.embedding_size instead", "seed": "set runtime.seed instead"}, origin)
    if cfg.teacher.name is not None or cfg.teacher.kwargs:
        _check_backbone("teacher", cfg.teacher.name, cfg.teacher.kwargs, {
            "seed": "not used: the teacher's weights are loaded, not initialised"}, origin)
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
    from maskinv.masks.mesh import RENDERERS

    if cfg.masks.renderer not in RENDERERS:
        bad("masks.renderer", f"must be one of {', '.join(RENDERERS)}, got {cfg.masks.renderer!r}")
    elif cfg.masks.renderer == "mesh" and list(cfg.masks.kinds) != ["random"]:
        bad("masks.kinds", f"renderer mesh (the default) draws its kinds from the real-world looks mix: kinds must "
            f"be [random], got {cfg.masks.kinds}; set masks.renderer: v1 to train with v1's kinds", "masks.renderer")
    if cfg.kd.weight < 0:
        bad("kd.weight", "must be >= 0")
    if cfg.kd.weight > 0 and not cfg.teacher.path:
        bad("teacher.path", f"kd.weight={cfg.kd.weight} needs a teacher checkpoint (teacher.path)", "kd.weight")
    if cfg.teacher.cache.enabled and not cfg.teacher.path:
        bad("teacher.cache.enabled", "the teacher cache needs teacher.path")
    _check_label_free(cfg, bad)

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
        bad("runtime.eval_every", "is set but data.val_bins is empty", "data.val_bins")
    if any(p not in PROTOCOLS for p in r.eval_protocols):
        bad("runtime.eval_protocols", f"entries must be among {', '.join(PROTOCOLS)}")
    if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
        bad("runtime.device", f"must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    if r.threads is not None and r.threads < 1:
        bad("runtime.threads", "must be >= 1 or null")
    if r.prefetch_factor < 1:
        bad("runtime.prefetch_factor", "must be >= 1")
    if r.nan_check not in ("auto", "step", "log"):
        bad("runtime.nan_check", f"must be auto, step or log, got {r.nan_check!r}")
    if r.compile_mode not in (modes := ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")):
        bad("runtime.compile_mode", f"must be one of {', '.join(modes)}, got {r.compile_mode!r}")
    return cfg


# ----------------------------------------------------------------------------- paths and run folders

def _get(d: dict, key: str) -> Any:
    for p in key.split("."):
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _set(d: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


def _inside(value: str, folder: str | os.PathLike) -> str | None:
    """``value`` relative to ``folder`` (posix) when it lies inside it, else None (relative = from cwd)."""
    try:
        return Path(value).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return None


def _run_relative_dict(cfg: TrainConfig, run_dir: str | os.PathLike | None, mark: str = "") -> tuple[dict, list[str]]:
    """The config dict with paths inside ``run_dir`` replaced by ``mark + relative path``; the keys replaced."""
    d = config_to_dict(cfg)
    keys = []
    if run_dir is not None:
        for key in path_keys():
            v = _get(d, key)
            rel = _inside(v, run_dir) if isinstance(v, str) and v else None
            if rel is not None:
                _set(d, key, mark + rel)
                keys.append(key)
    return d, keys


def _resolve_relative(data: dict, folder: Path, where: str) -> dict:
    """Undo :func:`save_config`'s run-relative paths: join the listed keys' values onto ``folder``."""
    keys = data.pop(RELATIVE_KEY, None) or []
    known = path_keys()
    if not isinstance(keys, list) or any(k not in known for k in keys):
        raise ConfigError(f"{RELATIVE_KEY}: expected a list of path keys ({', '.join(known)}), got {keys!r} in {where}")
    for key in keys:
        v = _get(data, key)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            _set(data, key, str(folder / v))
    return data


# ----------------------------------------------------------------------------- files

#: First line of a run's resolved config.yaml (:func:`save_config`).
RESOLVED_HEADER = "# resolved maskinv training config\n"


def saved_run_defaults(d: dict) -> dict:
    """A config a run saved (its config.yaml, or a checkpoint's dict) with the values of fields the
    run predates: ``masks.renderer`` was added when v1 was the only renderer, so a saved config
    without it drew v1 masks, although a new config without it means ``mesh``."""
    if isinstance(d, dict) and "renderer" not in (d.get("masks") or {}):
        d = {**d, "masks": {**(d.get("masks") or {}), "renderer": "v1"}}
    return d


def load_config(path: str | Path | None, overrides: Overrides = None) -> TrainConfig:
    """Read a YAML run config, apply overrides (``key.sub=value`` items or a typed mapping, see
    :mod:`maskinv.train.config_overrides`) and validate it.

    ``path`` may be None to start from the defaults. Unknown keys and bad values raise
    :class:`ConfigError` naming the key path and the file or override that set it. Keys listed
    under ``paths_relative_to_this_file`` (written by :func:`save_config`) are resolved
    against the file's folder.
    """
    import yaml

    data: dict = {}
    file = None
    if path is not None:
        p = Path(path)
        file = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        text = p.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML{yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        data = _resolve_relative(data, Path(os.path.abspath(p.parent)), file)
        if text.startswith(RESOLVED_HEADER):
            data = saved_run_defaults(data)
    data, set_by = apply_overrides_traced(data, overrides)
    return config_from_dict(data, origin=Origin(file, set_by))


def config_to_yaml(cfg: TrainConfig, relative_to: str | os.PathLike | None = None) -> str:
    """The resolved config as YAML text (sections in dataclass order).

    ``relative_to``: write paths inside that folder relative to it, listed first under
    ``paths_relative_to_this_file`` (what :func:`load_config` resolves against the file's folder).
    """
    import yaml

    d, rel = _run_relative_dict(cfg, relative_to)
    head = ""
    if rel:
        head = (f"# the paths of the keys under {RELATIVE_KEY} are relative to this file's folder\n"
                + yaml.safe_dump({RELATIVE_KEY: rel}, default_flow_style=None))
    return head + yaml.safe_dump(d, sort_keys=False, default_flow_style=None)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config atomically as YAML.

    Paths that lie inside the file's folder (the run folder: ``data.path``,
    ``teacher.cache.path``, ...) are written relative to it, so the run folder can be moved.
    """
    from maskinv.utils.io import atomic_write_text

    atomic_write_text(path, RESOLVED_HEADER + config_to_yaml(cfg, Path(path).parent))
    return Path(path)


# Keys that may change between a run and its resume without changing what is trained.
_HASH_EXCLUDE = {
    ("runtime", "workers"), ("runtime", "log_every"), ("runtime", "eval_every"),
    ("runtime", "checkpoint_every"), ("runtime", "keep_last"), ("runtime", "progress"),
    ("runtime", "tensorboard"), ("runtime", "threads"), ("runtime", "eval_batch_size"),
    ("runtime", "eval_protocols"), ("data", "val_bins"), ("data", "in_memory"),
    ("teacher", "cache"), ("name",),
    ("runtime", "prefetch_factor"), ("runtime", "pin_memory"), ("runtime", "nan_check"),
    ("runtime", "fused_optimizer"), ("runtime", "compile"), ("runtime", "compile_mode"),
}


# Fields added after runs were saved: hashed only when set, so older runs keep their hash.
_HASH_IF_SET = {("data", "labels"): "use", ("model", "init_from_teacher"): False, ("model", "freeze_bn_stats"): False,
                ("masks", "renderer"): "v1"}


def _identity(cfg: TrainConfig, run_dir: str | os.PathLike | None) -> dict:
    """The fields that define the training trajectory; paths inside ``run_dir`` as ``<run>/...``."""
    d, _ = _run_relative_dict(cfg, run_dir, mark="<run>/")
    for (section, key), default in _HASH_IF_SET.items():
        if d.get(section, {}).get(key) == default:
            d[section].pop(key)
    for path in _HASH_EXCLUDE:
        node = d
        for p in path[:-1]:
            node = node.get(p, {})
        node.pop(path[-1], None)
    return d


def config_hash(cfg: TrainConfig, run_dir: str | os.PathLike | None = None) -> str:
    """sha256 of the fields that define the training trajectory (not logging/eval/loader knobs).

    With ``run_dir`` (the run folder), paths inside it are hashed run-relative, so the hash of
    a run's config does not change when the folder is moved (and is the plain hash otherwise).
    """
    blob = json.dumps(_identity(cfg, run_dir), sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def config_diff(a: TrainConfig, b: TrainConfig, run_dir: str | os.PathLike | None = None) -> list[str]:
    """Key paths whose hashed values differ between two configs (for resume errors; see :func:`config_hash`)."""
    out: list[str] = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(prefix)

    walk(_identity(a, run_dir), _identity(b, run_dir), "")
    return out

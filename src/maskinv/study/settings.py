"""The study's knobs: defaults and the ``--quick`` variant from ``demo.yaml`` (package data),
``--set`` overrides, ``--minutes`` scaling.

``--set KEY=VALUE`` with a dotted key (``optim.momentum=0.85``) is a trainer-config override:
checked at once against :mod:`maskinv.train.config` (its parser, its key and type checks) and
applied to every run after the recipe. A plain key names a study knob (``size=48``) and is typed
by the field it sets, with the run config's own coercion.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

from maskinv.errors import ConfigError


@lru_cache(maxsize=1)
def study_yaml() -> dict[str, Any]:
    """``demo.yaml`` shipped inside the package (works installed; read once)."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("maskinv.study").joinpath("demo.yaml").read_text(encoding="utf-8"))


def recipe() -> dict[str, Any]:
    """The trainer config every run of the study starts from (a fresh copy)."""
    return copy.deepcopy(study_yaml()["recipe"])


@dataclass
class DemoSettings:
    """Everything that defines a study run (saved as ``OUT/demo_settings.json`` and in
    ``results.json``). Defaults: :func:`default_settings`."""

    seed: int
    minutes: float
    identities: int
    images_per_identity: int
    size: int
    val_identities: int
    val_pairs: int
    select_identities: int
    select_pairs: int
    difficulty: str
    backbone: str
    width_mult: float
    embedding_size: int
    batch_size: int
    teacher_steps: int
    student_steps: int
    hg_steps: int
    lr: float
    hg_lr: float
    mask_prob: float
    lambda_lg: float
    lambda_hg: float
    with_hg: bool
    with_control: bool
    head: str
    teacher_head_kwargs: dict
    head_kwargs: dict
    precision: str
    threads: Optional[int]
    parallel: bool
    teacher_cache: bool
    with_adapt: bool
    adapt_identities: int
    adapt_images_per_identity: int
    adapt_batch_size: int
    adapt_steps: int
    adapt_evals: int
    adapt_patience: int
    adapt_lr: Optional[float]
    adapt_overrides: list
    protocols: tuple
    eval_seed: Optional[int]
    mask_kind: str
    flip: bool
    eval_precision: str
    bootstrap: int
    train_overrides: list
    # issue 23 (a settings file written before these existed records none of them: NEW_KEY_ABSENT says
    # what their absence means)
    accuracy: str = "exact"
    lambda_hg_factor: Optional[float] = None
    aug_lr: Optional[float] = None
    aug_s: Optional[float] = None
    with_aug_init: bool = False
    with_aug_long: bool = False
    heldout_mask_kind: Optional[str] = None

    @property
    def lambda_hg_used(self) -> float:
        """HG's λ: ``lambda_hg_factor × lambda_lg`` when the factor is set (the paper's HG/LG = 30), else ``lambda_hg``."""
        return self.lambda_hg if self.lambda_hg_factor is None else self.lambda_hg_factor * self.lambda_lg

    def per_sample(self, lam: float) -> float:
        """λ/D: the weight of one sample's squared template distance (``kd_loss`` averages over the
        batch and the D dimensions, as the public code's ``MSELoss()``): the paper's LG 100/512 = 0.195,
        HG 3000/512 = 5.86."""
        return float(lam) / float(self.embedding_size)

    @property
    def train_mask_kinds(self) -> list[str]:
        """Mask kinds of training: all of the random kinds but ``heldout_mask_kind`` when it is set."""
        if self.heldout_mask_kind is None:
            return ["random"]
        from maskinv.masks.kinds import RANDOM_KINDS

        return [k for k in RANDOM_KINDS if k != self.heldout_mask_kind]

    @property
    def eval_mask_kind(self) -> str:
        """Mask kind of the test pairs: the held-out kind when set, else ``mask_kind``."""
        return self.heldout_mask_kind or self.mask_kind

    @property
    def mask_seed(self) -> int:
        """Seed of the evaluation masks: ``eval_seed``, else the study seed (each seed its own masks)."""
        return self.seed if self.eval_seed is None else self.eval_seed

    def scaled(self) -> "DemoSettings":
        """Step counts scaled by ``minutes / 10``: the default steps were sized for a 10-minute budget
        (measured: 10 min wall on the 2-core CI machine, evaluation included). ``adapt_steps`` is not
        scaled: it is epochs over the unlabeled photo set (10 x 2,400 / 64), not a share of the
        labelled training budget; the seed study at ``--minutes 3`` sets 5 epochs itself (chosen on
        validation at that scale, docs/adapt.md)."""
        if self.minutes <= 0:
            raise ConfigError(f"--minutes must be positive, got {self.minutes}")
        f = self.minutes / 10.0
        s = copy.deepcopy(self)
        s.teacher_steps = max(10, round(self.teacher_steps * f))
        s.student_steps = max(10, round(self.student_steps * f))
        s.hg_steps = max(5, round(self.hg_steps * f))
        return s


#: Settings of the adapt row: a study folder written before they existed is the same study when the
#: row is off, and one that differs only in them keeps its runs (the adapt run is added or redone).
#: Settings the adapt row once had (its own validation pairs, replaced by the study's validation
#: split): still adapt settings when an older folder records them.
RETIRED_ADAPT_KEYS = ("adapt_val_identities", "adapt_val_pairs")
ADAPT_KEYS = (tuple(f.name for f in dataclasses.fields(DemoSettings) if f.name.startswith("adapt_")) + ("with_adapt",)
              + RETIRED_ADAPT_KEYS)


#: Settings added after studies were committed, and the value their absence stands for (what the
#: study did before): a folder written earlier is the same study when the new setting has that value.
NEW_KEY_ABSENT: dict[str, Any] = {"accuracy": "grid", "lambda_hg_factor": None, "aug_lr": None, "aug_s": None,
                                  "with_aug_init": False, "with_aug_long": False, "heldout_mask_kind": None}
#: Settings of the evaluation alone: a finished folder that differs only in them keeps its runs and is
#: evaluated again (e.g. an older seed re-scored with exact accuracy and identity intervals).
EVAL_ONLY_KEYS = ("accuracy", "bootstrap")


def changed_settings(previous: dict, current: dict) -> list[str]:
    """The settings that differ between two ``dataclasses.asdict`` documents; while ``with_adapt`` is
    off, adapt settings that only one of them records (a folder written before the adapt row, or
    before one of its settings was retired) count as unchanged; a setting of :data:`NEW_KEY_ABSENT`
    that one of them lacks counts as that value."""
    previous = {**{k: v for k, v in NEW_KEY_ABSENT.items() if k not in previous}, **previous}
    current = {**{k: v for k, v in NEW_KEY_ABSENT.items() if k not in current}, **current}
    keys = set(previous) | set(current)
    if not current.get("with_adapt"):
        keys -= {k for k in ADAPT_KEYS if (k in previous) != (k in current)}
    return sorted(k for k in keys if previous.get(k) != current.get(k))


@lru_cache(maxsize=1)
def _field_types() -> dict[str, Any]:
    """The :class:`DemoSettings` field types, evaluated once: ``typing.get_type_hints`` evaluates every
    annotation, and calling it per key made building one settings object quadratic (18 ms, now 0.15 ms)."""
    return typing.get_type_hints(DemoSettings)


def _coerce(key: str, value: Any) -> Any:
    """``value`` typed by the :class:`DemoSettings` field ``key``, by the run config's one coercion
    (:func:`maskinv.train.config_schema.coerce`: numbers written as text like ``1e-3`` included)."""
    from maskinv.train.config_schema import Origin, coerce

    try:
        return coerce(value, _field_types()[key], key, Origin())
    except ConfigError as exc:
        raise ConfigError(f"demo setting {exc}", key=key) from None


def _build(values: dict[str, Any]) -> DemoSettings:
    names = {f.name for f in dataclasses.fields(DemoSettings)}
    unknown = sorted(set(values) - names)
    missing = sorted(names - set(values))
    if unknown or missing:
        raise ConfigError(f"demo.yaml settings: unknown {unknown}, missing {missing}")
    return DemoSettings(**{k: _coerce(k, copy.deepcopy(v)) for k, v in values.items()})


def default_settings(seed: int = 0) -> DemoSettings:
    """The full study (``maskinv demo``)."""
    return _build({**study_yaml()["settings"], "seed": seed})


def quick_settings(seed: int = 0) -> DemoSettings:
    """A seconds-scale configuration (tiny data, few steps): ``maskinv demo --quick``, the tests."""
    y = study_yaml()
    return _build({**y["settings"], **y["quick"], "seed": seed})


def apply_settings_overrides(s: DemoSettings, overrides: list[str]) -> DemoSettings:
    """``KEY=VALUE`` strings (YAML-typed values) applied to a copy of ``s``.

    Dotted keys are trainer-config overrides (validated now by :func:`maskinv.train.config.apply_overrides`,
    applied to every run); ``adapt.KEY=VALUE`` is an override of the adapt row's config only
    (``adapt.optim.weight_decay=0``); plain keys must name a study setting."""
    import yaml

    from maskinv.train.config import apply_overrides

    out = copy.deepcopy(s)
    fields = [f.name for f in dataclasses.fields(DemoSettings)]
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if sep and key.startswith("adapt."):
            from maskinv.adapt.config import ADAPT_DEFAULTS

            sub = item.strip()[len("adapt."):]
            apply_overrides(copy.deepcopy(ADAPT_DEFAULTS), [sub])  # unknown key / bad YAML -> ConfigError
            out.adapt_overrides = [*out.adapt_overrides, sub]
            continue
        if sep and "." in key:
            apply_overrides(recipe(), [item])  # unknown key / bad YAML -> ConfigError naming it
            out.train_overrides = [*out.train_overrides, item]
            continue
        if not sep or key not in fields or key in ("train_overrides", "adapt_overrides"):
            raise ConfigError(f"demo setting override {item!r}: expected KEY=VALUE with KEY one of "
                              f"{', '.join(f for f in fields if f not in ('train_overrides', 'adapt_overrides'))}, "
                              "a trainer-config key such as optim.momentum, or adapt.KEY for the adapt row only")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"demo setting {key}: cannot parse {raw!r}: {exc}") from None
        setattr(out, key, _coerce(key, value))
    return out

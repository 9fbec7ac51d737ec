"""Settings of the real SFace study (``maskinv study-real``): defaults, ``--set key=value``, select.json."""
from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from maskinv.errors import ConfigError

__all__ = ["RealSettings", "apply_overrides", "COSTS_MS"]

#: Per-image costs measured on this project's 2-core AMD EPYC (one thread), used for the printed
#: cost arithmetic before a run (the report also states the measured ones).
COSTS_MS = {"align": 71.0, "trunk": 62.0, "train_sample": 15.0, "tail_eval": 2.2}


@dataclass
class RealSettings:
    seed: int = 0                 # training order, margins, mask draws
    split_k: int = 11             # trunk = stem + blocks 1..k (frozen, features cached); tail trained
    mask_prob: float = 0.5        # probability a training sample is shown masked
    epochs: float = 1.0           # passes over the labelled photos (Aug, LG; adapt: over all its photos)
    hg_epochs: float = 1.0        # HG's passes, continuing from LG (paper: HG starts from a trained student)
    batch_size: int = 32
    lr_aug: float = 0.01
    lr_lg: float = 0.01           # also HG's
    lam_lg: float = 25.0          # maskinv's λ (per-element MSE): per-sample weight λ/D; paper LG 100/512 -> 25 at D=128
    hg_factor: float = 30.0       # λ_HG = 30 λ_LG (paper: 100 -> 3000; 25 -> 750 at D=128)
    lr_adapt: float = 0.05
    lam_adapt: float = 128.0      # KD-only loss: per-sample weight λ/D = 1
    adapt_unlabelled: bool = False  # MaskInv-adapt also uses the photos of one-photo people (2,203 more features)
    freeze_bn: bool = True
    detector: str = "mtcnn"
    renderer: str = "mesh"        # training and LFW test masks: mesh (468-point face mesh, default) or v1 (5-point)
    feature_batch: int = 32
    n_boot: int = 1000
    with_hg: bool = True
    with_adapt: bool = True
    # --select
    select_lrs: str = "0.003,0.01"      # Aug and LG
    select_adapt_lrs: str = "0.02,0.1"  # MaskInv-adapt (KD-only loss: smaller gradients)
    select_lambdas: str = ""            # extra λ_LG tried at LG's chosen lr ("" = keep lam_lg, the paper's)
    select_epochs: float = 1.0
    select_uu_tolerance: float = 0.5   # points of val U-U accuracy a candidate may lose to SFace
    select_rmfd_dev: bool = False
    select_adapt: bool = False          # also choose MaskInv-adapt's lr (select_adapt_lrs); off: lr_adapt as set
    select_val_folds: int = 1          # validation folds of lfw_val_pairs.txt used (600 pairs each)

    @property
    def lam_hg(self) -> float:
        return self.hg_factor * self.lam_lg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_hash(self) -> str:
        """What a trained row depends on (not n_boot, select_* or batch sizes of inference)."""
        d = {k: v for k, v in self.to_dict().items()
             if not k.startswith("select_") and k not in ("n_boot", "feature_batch", "with_hg", "with_adapt", "detector")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> "RealSettings":
        pos = ("epochs", "hg_epochs", "lr_aug", "lr_lg", "lr_adapt", "lam_adapt", "select_epochs", "hg_factor")
        for k in pos:
            if not float(getattr(self, k)) > 0:
                raise ConfigError(f"study-real setting {k} must be > 0, got {getattr(self, k)!r}")
        if not self.lam_lg >= 0 or not 0 <= self.mask_prob <= 1:
            raise ConfigError(f"study-real: lam_lg >= 0 and mask_prob in [0, 1] required, got {self.lam_lg}, {self.mask_prob}")
        if not 0 <= self.split_k <= 13:
            raise ConfigError(f"study-real setting split_k must be in 0..13, got {self.split_k}")
        if not 1 <= self.select_val_folds <= 2:
            raise ConfigError(f"study-real setting select_val_folds must be 1 or 2, got {self.select_val_folds}")
        from maskinv.masks.mesh import check_renderer

        check_renderer(self.renderer, "study-real setting renderer")
        if self.batch_size < 1 or self.feature_batch < 1 or self.n_boot < 1:
            raise ConfigError("study-real: batch_size, feature_batch and n_boot must be >= 1")
        for k in ("select_lrs", "select_adapt_lrs"):
            _floats(getattr(self, k), k)
        if str(self.select_lambdas).strip():
            _floats(self.select_lambdas, "select_lambdas")
        return self


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"study-real setting {what}: expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise ConfigError(f"study-real setting {what}: expected positive numbers, got {text!r}")
    return vals


def parse_list(text: str, what: str) -> list[float]:
    return _floats(text, what)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(name: str, typ: Any, text: str) -> Any:
    """``--set`` text as the field's type: numbers and strings through the run config's one
    conversion (:func:`maskinv.train.config_schema.coerce`: ``1e-3``, ``1_000``, ``2.0`` for an int);
    booleans also as yes/no, on/off, 1/0 (the schema takes only real booleans)."""
    from maskinv.train.config_schema import Origin, coerce

    if typ is bool:
        low = str(text).strip().lower()
        if low in _TRUE + _FALSE:
            return low in _TRUE
        raise ConfigError(f"study-real setting {name}: expected true/false, got {text!r}")
    return coerce(text, typ, f"study-real setting {name}", Origin())


def apply_overrides(s: RealSettings, items: Iterable[str]) -> RealSettings:
    """``key=value`` strings onto ``s`` (typed by the field), then validated."""
    known = typing.get_type_hints(RealSettings)
    for item in items:
        if "=" not in item:
            raise ConfigError(f"study-real --set {item!r}: expected KEY=VALUE")
        k, v = (x.strip() for x in item.split("=", 1))
        if k not in known:
            raise ConfigError(f"study-real --set {k}: unknown setting; known: {', '.join(sorted(known))}")
        setattr(s, k, _coerce(k, known[k], v))
    return s.validate()

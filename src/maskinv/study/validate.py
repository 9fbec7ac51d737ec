"""Check every study setting before any work (``maskinv demo`` must not fail after generating
the data): the data knobs, the evaluation knobs, each run's trainer config through
:mod:`maskinv.train.config` validation, and the backbone built once on the meta device (no
memory, no weights) with a forward pass at the study's input size."""
from __future__ import annotations

from pathlib import Path

from maskinv.errors import ConfigError, MaskinvError

from .settings import DemoSettings


def _int_at_least(s: DemoSettings, name: str, lo: int) -> None:
    v = getattr(s, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"demo setting {name}: must be an integer >= {lo}, got {v!r}")


def _check_adapt_config(s: DemoSettings, out: Path) -> None:
    """The adapt run's config (its defaults + the study's and the user's ``adapt.*`` overrides)
    through the trainer's typed validation, so a bad value stops the study before any run."""
    import copy

    from maskinv.adapt.config import ADAPT_DEFAULTS
    from maskinv.train.config import apply_overrides, config_from_dict

    from .adapt_row import adapt_job

    job = adapt_job(s, out / "teacher.pt", out / "adapt_data", out / "adapt_data" / "val.bin")
    d = copy.deepcopy(ADAPT_DEFAULTS)
    d["teacher"]["path"], d["data"]["path"] = job["adapt"]["teacher"], job["adapt"]["images"]
    try:
        config_from_dict(apply_overrides(d, job["adapt"]["overrides"]))
    except MaskinvError as exc:
        raise ConfigError(f"demo setting adapt_overrides: {exc}") from None


def check_settings(s: DemoSettings, out: str | Path = "demo_out") -> None:
    """Raise :class:`ConfigError` naming the first bad setting; writes nothing."""
    import numpy as np

    from maskinv.data.synth.dataset import _difficulty
    from maskinv.masks.kinds import resolve_kind
    from maskinv.masks.protocols import parse_protocols

    for name, lo in (("identities", 2), ("images_per_identity", 1), ("size", 16), ("val_identities", 2),
                     ("val_pairs", 2), ("batch_size", 1), ("embedding_size", 1), ("teacher_steps", 1),
                     ("student_steps", 1), ("hg_steps", 1)):
        _int_at_least(s, name, lo)
    if s.with_adapt:
        # the adapt row selects its step on the study's validation split (select_*)
        for name, lo in (("adapt_identities", 1), ("adapt_images_per_identity", 1), ("select_identities", 2),
                         ("select_pairs", 2), ("adapt_batch_size", 1), ("adapt_steps", 1), ("adapt_evals", 1),
                         ("adapt_patience", 1)):
            _int_at_least(s, name, lo)
        if s.adapt_lr is not None and not s.adapt_lr > 0:
            raise ConfigError(f"demo setting adapt_lr: expected a positive learning rate or null, got {s.adapt_lr!r}")
        _check_adapt_config(s, Path(out))
        if s.adapt_identities * s.adapt_images_per_identity < s.adapt_batch_size:
            raise ConfigError(f"demo setting adapt_batch_size: {s.adapt_batch_size} is more than the "
                              f"{s.adapt_identities * s.adapt_images_per_identity} adapt photos "
                              "(adapt_identities x adapt_images_per_identity)")
    if s.minutes <= 0:
        raise ConfigError(f"demo setting minutes: must be positive, got {s.minutes}")
    if s.threads is not None:
        _int_at_least(s, "threads", 1)
    for name in ("lambda_lg", "lambda_hg", "lr", "hg_lr"):
        if getattr(s, name) < 0:
            raise ConfigError(f"demo setting {name}: must be >= 0, got {getattr(s, name)}")
    if not 0.0 <= s.mask_prob <= 1.0:
        raise ConfigError(f"demo setting mask_prob: must be in [0, 1], got {s.mask_prob}")
    try:
        _difficulty(s.difficulty)
        parse_protocols(s.protocols)
        resolve_kind(s.mask_kind, np.random.default_rng(0))
    except MaskinvError as exc:
        raise ConfigError(f"demo setting: {exc}") from None
    if s.accuracy not in ("exact", "grid"):
        raise ConfigError(f"demo setting accuracy: expected exact or grid, got {s.accuracy!r}")
    for name in ("lambda_hg_factor", "aug_lr", "aug_s"):
        v = getattr(s, name)
        if v is not None and not v > 0:
            raise ConfigError(f"demo setting {name}: expected a positive number or null, got {v!r}")
    if s.heldout_mask_kind is not None:
        from maskinv.masks.kinds import RANDOM_KINDS

        if s.heldout_mask_kind not in RANDOM_KINDS:
            raise ConfigError(f"demo setting heldout_mask_kind: expected one of the random kinds "
                              f"{', '.join(RANDOM_KINDS)} (training draws the others), got {s.heldout_mask_kind!r}")
    if s.eval_precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"demo setting eval_precision: expected auto, fp32 or bf16, got {s.eval_precision!r}")
    _check_runs(s, Path(out))


# trainer-config keys set from a study setting: an error there names the setting to fix
_SETTING_OF = {"model.name": "backbone", "model.embedding_size": "embedding_size", "model.kwargs": "width_mult / size",
               "head.name": "head", "head.kwargs": "head_kwargs", "optim.lr": "lr / hg_lr", "masks.prob": "mask_prob",
               "kd.weight": "lambda_lg / lambda_hg / lambda_hg_factor", "precision.mode": "precision",
               "runtime.batch_size": "batch_size", "masks.kinds": "heldout_mask_kind",
               "runtime.threads": "threads"}


def _check_runs(s: DemoSettings, out: Path) -> None:
    """Each run's trainer config as the pipeline will build it (placeholder paths inside ``out``)."""
    import torch

    from maskinv.models import get_model

    from .recipe import study_plan, train_config

    cfg = None
    for run in study_plan(s):
        if run.role == "adapt":  # the adapt defaults with the teacher's architecture (adapt_model checks them)
            continue
        init = out / "runs" / run.init / "backbone.pt" if run.init else None
        teacher = out / "runs" / run.teacher / "backbone.pt" if run.teacher else None
        try:
            cfg = train_config(s, run, out / "data", teacher=teacher, init=init, cache_dir=out / "teacher_cache")
        except ConfigError as exc:
            key = exc.key or ""  # the trainer-config key at fault, carried by the error (None: no one key)
            hint = _SETTING_OF.get(key) or next((v for k, v in _SETTING_OF.items() if key.startswith(k + ".")), None)
            where = f" (demo setting {hint})" if hint else ""
            raise ConfigError(f"demo run {run.name}: {exc}{where}") from None
    from maskinv.train.heads import get_head

    m, h = cfg["model"], cfg["head"]
    try:
        with torch.device("meta"):
            get_head(h["name"], m["embedding_size"], s.identities, **(h.get("kwargs") or {}))
    except (MaskinvError, TypeError) as exc:
        raise ConfigError(f"demo setting head / head_kwargs: {exc}") from None
    try:  # shapes only: the meta device allocates nothing
        with torch.device("meta"):
            net = get_model(m["name"], embedding_size=m["embedding_size"], **(m.get("kwargs") or {}))
            net(torch.zeros(2, 3, s.size, s.size))
    except MaskinvError as exc:
        raise ConfigError(f"demo settings: backbone {m['name']}: {exc}") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(f"demo settings: backbone {m['name']} (width_mult {s.width_mult}) does not run on "
                          f"{s.size}x{s.size} images: {str(exc).splitlines()[0]}") from None

"""What the study trains: the plan of runs (who needs whose result) and each run's trainer config.

A run's config is the package recipe (``demo.yaml``, ``recipe``) plus that run's own values (typed:
a ``{"key.sub": value}`` mapping, never text parsed back) and then the user's ``--set`` overrides,
all applied by :func:`maskinv.train.config.apply_overrides` — the one override path, converting each
value with the config schema's coercion — so the study has no trainer recipe of its own in code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskinv.utils.seeds import derive_seed

from .settings import DemoSettings, recipe


#: ``runtime.seed = seed * 1000 + offset``. Every student of one seed shares one runtime seed, so
#: Aug, LG, HG and the control get the same initialisation, batch order, mask bank, mask draws and
#: margin draws: λ (and HG's starting point) is the only difference between them.
TEACHER_SEED_OFFSET = 1
STUDENT_SEED_OFFSET = 2


@dataclass
class RunPlan:
    """One training run of the study. ``teacher``/``init`` name earlier runs whose backbone
    this run needs (the frozen KD teacher; the student it starts from). ``role`` is
    ``teacher`` or ``student`` (head settings and runtime seed follow it), or ``adapt``: not a
    trainer config of this module but :func:`maskinv.adapt.pipeline.adapt_model` (:mod:`.adapt_row`)."""

    name: str
    steps: int
    mask_prob: float
    kd: float
    role: str = "student"
    teacher: str | None = None
    init: str | None = None
    lr: float | None = None
    #: the ElasticFace-Arc scale s of this run (None: the study's head_kwargs / teacher_head_kwargs)
    head_s: float | None = None
    needs: set = field(init=False)

    def __post_init__(self) -> None:
        self.needs = {self.teacher, self.init} - {None}

    @property
    def seed_offset(self) -> int:
        return TEACHER_SEED_OFFSET if self.role == "teacher" else STUDENT_SEED_OFFSET


def study_plan(s: DemoSettings) -> list[RunPlan]:
    """Teacher (clean images), ElasticFace-Arc-Aug (masks, λ=0), MaskInv-LG (masks + KD from the
    teacher); with ``with_hg`` MaskInv-HG (from LG's backbone and head, large λ, ``hg_lr``) and with
    ``with_control`` the control ``maskinv_lg_long``: LG continued for HG's steps at HG's rate with
    LG's λ, so that HG − control isolates the large λ from the extra steps; with ``with_adapt``
    ``maskinv_adapt``, the teacher adapted without labels (it needs only the teacher: it trains
    beside LG)."""
    aug = dict(lr=s.aug_lr, head_s=s.aug_s)  # Aug's own rate and scale (None: the study's)
    plan = [
        RunPlan("teacher", s.teacher_steps, 0.0, 0.0, role="teacher"),
        RunPlan("elasticface_arc_aug", s.student_steps, s.mask_prob, 0.0, **aug),
    ]
    if s.with_aug_long:  # the compute of the teacher and a student, from scratch
        plan.append(RunPlan("elasticface_arc_aug_long", s.teacher_steps + s.student_steps, s.mask_prob, 0.0, **aug))
    plan.append(RunPlan("maskinv_lg", s.student_steps, s.mask_prob, s.lambda_lg, teacher="teacher"))
    if s.with_aug_init:  # from the teacher's backbone and class centres: what KD starts from, without KD
        plan.append(RunPlan("elasticface_arc_aug_init", s.student_steps, s.mask_prob, 0.0, init="teacher", **aug))
    if s.with_adapt:
        from maskinv.adapt.config import ADAPT_DEFAULTS

        plan.append(RunPlan("maskinv_adapt", s.adapt_steps, ADAPT_DEFAULTS["masks"]["prob"],
                            ADAPT_DEFAULTS["kd"]["weight"], role="adapt", teacher="teacher"))
    if s.with_hg:
        plan.append(RunPlan("maskinv_hg", s.hg_steps, s.mask_prob, s.lambda_hg_used, teacher="teacher",
                            init="maskinv_lg", lr=s.hg_lr))
    if s.with_control:
        plan.append(RunPlan("maskinv_lg_long", s.hg_steps, s.mask_prob, s.lambda_lg, teacher="teacher",
                            init="maskinv_lg", lr=s.hg_lr))
    return plan


def stages(plan: list[RunPlan]) -> list[list[RunPlan]]:
    """Group the plan into stages: a run joins the current stage unless it needs a result of it
    (independent runs train side by side)."""
    out: list[list[RunPlan]] = []
    for run in plan:
        if out and not run.needs & {r.name for r in out[-1]}:
            out[-1].append(run)
        else:
            out.append([run])
    return out


def run_overrides(s: DemoSettings, run: RunPlan, data_dir: Path, *, teacher: Path | None, init: Path | None,
                  cache_dir: Path | None) -> dict[str, Any]:
    """The run's own values as typed trainer-config overrides (``{"key.sub": value}``)."""
    images = s.identities * s.images_per_identity
    epochs = run.steps * s.batch_size / images
    values = {
        "data.path": str(data_dir),
        "model.name": s.backbone,
        "model.embedding_size": s.embedding_size,
        "model.kwargs": {"width_mult": s.width_mult, "input_size": s.size},
        "model.init": str(init) if init else None,
        "head.name": s.head,
        "head.kwargs": {**(s.teacher_head_kwargs if run.role == "teacher" else s.head_kwargs),
                        **({"s": float(run.head_s)} if run.head_s is not None else {})},
        # a run that starts from a trained student starts from its class centres too
        "head.init": str(Path(init).parent / "head.pt") if init else None,
        "teacher.path": str(teacher) if teacher else None,
        # the frozen teacher sees only clean (flipped or not) images: its templates are computed
        # once per record and flip and shared by the KD runs (maskinv.train.teacher_cache)
        "teacher.cache.enabled": bool(teacher and cache_dir and s.teacher_cache),
        "teacher.cache.path": str(cache_dir) if cache_dir else None,
        "masks.prob": run.mask_prob,
        "masks.kinds": s.train_mask_kinds,  # all kinds but the held-out one when heldout_mask_kind is set
        "kd.weight": run.kd,
        # the rate is per batch of batch_size images (no rescaling): 0.1 per 128 by default
        "optim.lr": run.lr or s.lr,
        "optim.lr_reference_batch": s.batch_size,
        "schedule.epochs": epochs,
        # drops at 60 % and 85 % of the run. Milestones are 1-based epochs under the public code's
        # rule (x0.1 once m - 1 <= epoch, maskinv.train.schedule), hence the + 1
        "schedule.milestones": [epochs * 0.6 + 1, epochs * 0.85 + 1],
        "schedule.warmup_epochs": epochs * 0.05,
        "precision.mode": s.precision,
        "runtime.batch_size": s.batch_size,
        "runtime.checkpoint_every": max(run.steps // 2, 1),
        "runtime.seed": derive_seed(s.seed, "study_run", run.seed_offset),  # shared by all students of a seed
        "runtime.threads": s.threads,
    }
    return values


def train_config(s: DemoSettings, run: RunPlan, data_dir: Path, *, teacher: Path | None = None,
                 init: Path | None = None, cache_dir: Path | None = None, progress: bool = False) -> dict:
    """The run's trainer config as a dict (:mod:`maskinv.train.config`), checked: the recipe, the
    run's own values, then the user's ``train_overrides`` (they win)."""
    from maskinv.train.config import apply_overrides, config_from_dict

    ovr = run_overrides(s, run, data_dir, teacher=teacher, init=init, cache_dir=cache_dir)
    cfg = apply_overrides(recipe(), {**ovr, "runtime.progress": progress})
    cfg = apply_overrides(cfg, s.train_overrides)  # the user's `--set key.sub=value` text, last: they win
    config_from_dict(cfg)  # unknown keys / bad values fail here, before any run starts
    return cfg

"""The study's "MaskInv-adapt (no labels)" row: the seed's teacher adapted by
:func:`maskinv.adapt.pipeline.adapt_model` on unlabeled SynthFaces photos of other identities.

The photos come from another SynthFaces generator seed (:func:`adapt_data_seed`): identity ``k``
of seed ``s`` is drawn from ``default_rng([s, 0x1D, k])`` alone (:mod:`maskinv.data.synth.identity`),
so a different seed draws other identities than the training set and the test pairs (identities
``0 .. identities + val_identities - 1`` of the study seed); the test checks that no identity is
shared. The exported step is chosen on the study's validation split (``select_pairs`` pairs of the
``select_identities`` identities after the test ones, of the study seed: the split ``--select-lambda``
chooses λ on, written to ``adapt_data/val/synth_select.bin``), so the tolerance on U-U is measured in
the teacher's own domain, on identities neither the teacher, the adapt photos nor the test pairs
contain. The study's test pairs are never seen before the table.

The run goes through :mod:`.runs` like the other runs (spawned process, reused when finished);
its job config is ``{"adapt": {...}, "runtime": {...}}`` (:func:`adapt_job`), trained by
:func:`run_adapt`. The trainer's ``summary.json`` cannot mark it finished (validation may stop it
before the schedule's end, and ``backbone.pt`` is then replaced by the best step's), so
:func:`run_adapt` writes :data:`DONE` last.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from maskinv.utils.seeds import derive_seed

from .settings import DemoSettings

NAME = "maskinv_adapt"
DONE = "study_adapt.json"
#: the adapt photos' generator seed is the study seed + this (never the study seed itself)
DATA_SEED_OFFSET = 1_000_000


def adapt_data_seed(seed: int) -> int:
    return derive_seed(int(seed), "adapt_data")


def make_adapt_data(s: DemoSettings, data_dir: Path, say: Callable[[str], None]) -> Path:
    """The unlabeled photo set (RecordIO; its labels are ignored by adapt) and the study's validation
    split; returns the validation ``.bin``."""
    import shutil
    import sys

    from maskinv.data.synth import generate_dataset, generate_select_split

    if not (data_dir / "synth_meta.json").exists():
        say(f"[demo] adapt photos: {s.adapt_identities} other identities x {s.adapt_images_per_identity} images "
            f"(SynthFaces seed {adapt_data_seed(s.seed)})")
        if data_dir.exists():
            shutil.rmtree(data_dir)  # an interrupted generation: start over
        generate_dataset(data_dir, identities=s.adapt_identities, images_per_identity=s.adapt_images_per_identity,
                         seed=adapt_data_seed(s.seed), size=s.size, difficulty=s.difficulty, workers=1,
                         progress=sys.stderr.isatty())
    val = adapt_val_bin(data_dir)
    if not val.exists():  # written atomically: present means complete
        say(f"[demo] adapt validation: {s.select_pairs} pairs of {s.select_identities} further identities "
            f"of seed {s.seed} (the study's validation split)")
        generate_select_split(val.parent, seed=s.seed, identities=s.identities, val_identities=s.val_identities,
                              select_identities=s.select_identities, select_pairs=s.select_pairs, size=s.size,
                              difficulty=s.difficulty, workers=1, progress=sys.stderr.isatty())
    return val


def adapt_val_bin(data_dir: Path) -> Path:
    """Where :func:`make_adapt_data` writes the validation pairs."""
    return Path(data_dir) / "val" / "synth_select.bin"


def adapt_job(s: DemoSettings, teacher: Path, data_dir: Path, val: Path) -> dict[str, Any]:
    """The run's job config for :mod:`.runs`: :func:`adapt_model` arguments (the adapt defaults of
    :data:`maskinv.adapt.config.ADAPT_DEFAULTS`, ``adapt_steps`` steps of ``adapt_batch_size``); its
    ``overrides`` are typed (``{"key.sub": value}``), the user's ``adapt.*`` text read once, last."""
    from maskinv.train.config_overrides import overrides_dict

    from .recipe import STUDENT_SEED_OFFSET

    spe = s.adapt_identities * s.adapt_images_per_identity // s.adapt_batch_size
    evals = max(1, s.adapt_evals)
    ours: dict[str, Any] = {
        "runtime.seed": derive_seed(s.seed, "study_run", STUDENT_SEED_OFFSET),
        "runtime.device": "cpu",
        "runtime.batch_size": s.adapt_batch_size,
        # the schedule (linear decay) ends exactly at adapt_steps: total = ceil(epochs * steps_per_epoch)
        "schedule.epochs": s.adapt_steps / max(spe, 1),
        "runtime.checkpoint_every": max(s.adapt_steps // evals, 1),
        "precision.mode": s.precision,
        "masks.renderer": "v1",  # as every other run of the synthetic study (demo.yaml's recipe)
    }
    if s.adapt_lr is not None:
        ours["optim.lr"] = s.adapt_lr
    overrides = overrides_dict(ours, s.adapt_overrides)  # the user's, last: they win
    return {
        "adapt": {"teacher": str(teacher), "images": str(data_dir), "overrides": overrides, "val": str(val),
                  "eval_every": max(1, math.ceil(s.adapt_steps / evals)), "patience": s.adapt_patience,
                  "max_steps": s.adapt_steps},
        "runtime": {"threads": s.threads or 1, "progress": False},
    }


def run_adapt(job: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume) the adapt run of ``job`` into ``run_dir``; writes :data:`DONE` and returns
    it: the trainer's summary with ``backbone``/``weights_sha256`` of the exported (selected) step."""
    from maskinv.adapt.pipeline import adapt_model
    from maskinv.train.config_overrides import overrides_dict
    from maskinv.utils.hashing import file_sha256
    from maskinv.utils.io import atomic_write_json

    a, rt = job["adapt"], job["runtime"]
    out = Path(run_dir)
    overrides = overrides_dict(a["overrides"], {"runtime.threads": int(rt["threads"]),
                                                "runtime.progress": bool(rt.get("progress"))})
    resume = (out / "config.yaml").is_file()  # an interrupted run: continue it (exact)
    t0 = time.perf_counter()
    summary = adapt_model(None if resume else a["teacher"], None if resume else a["images"], out, resume=resume,
                          overrides=overrides, val=a["val"], eval_every=int(a["eval_every"]),
                          patience=int(a["patience"]), max_steps=int(a["max_steps"]))
    if summary.get("status") == "interrupted":
        return summary
    backbone = out / "backbone.pt"
    sel = summary.pop("selection", {}) or {}
    done = {**summary, "status": "completed", "trainer_status": summary.get("status"),
            "backbone": str(backbone), "weights_sha256": file_sha256(backbone),
            "backbone_step": summary.get("backbone_step") or summary.get("step"),
            "met_tolerance": sel.get("met_tolerance"),
            "stopped_early": bool(sel.get("stopped_early")),
            # the whole call (chunks + validations; the trainer's elapsed_s is the last chunk's)
            "elapsed_s": time.perf_counter() - t0, "trainer_elapsed_s": summary.get("elapsed_s"),
            "validation": {"teacher": sel.get("teacher"), "evals": sel.get("evals")}}
    atomic_write_json(out / DONE, done)
    return done


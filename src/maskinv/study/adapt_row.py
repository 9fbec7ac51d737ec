"""The study's "MaskInv-adapt (no labels)" row: the seed's teacher adapted by
:func:`maskinv.train.adapt.adapt_model` on unlabeled SynthFaces photos of other identities.

The photos come from another SynthFaces generator seed (:func:`adapt_data_seed`): identity ``k``
of seed ``s`` is drawn from ``default_rng([s, 0x1D, k])`` alone (:mod:`maskinv.data.synth.identity`),
so a different seed draws other identities than the training set and the test pairs (identities
``0 .. identities + val_identities - 1`` of the study seed); the test checks that no identity is
shared. The set's own held-out pairs (``adapt_data/synth_val.bin``) choose the exported step — the
study's test pairs are never seen before the table.

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

from .settings import DemoSettings

NAME = "maskinv_adapt"
DONE = "study_adapt.json"
#: the adapt photos' generator seed is the study seed + this (never the study seed itself)
DATA_SEED_OFFSET = 1_000_000


def adapt_data_seed(seed: int) -> int:
    return int(seed) + DATA_SEED_OFFSET


def make_adapt_data(s: DemoSettings, data_dir: Path, say: Callable[[str], None]) -> Path:
    """The unlabeled photo set (RecordIO; its labels are ignored by adapt) and its validation pairs;
    returns ``synth_val.bin`` of the set."""
    import shutil
    import sys

    from maskinv.data.synth import generate_dataset

    if not (data_dir / "synth_meta.json").exists():
        say(f"[demo] adapt photos: {s.adapt_identities} other identities x {s.adapt_images_per_identity} images "
            f"(SynthFaces seed {adapt_data_seed(s.seed)}), {s.adapt_val_pairs} validation pairs of "
            f"{s.adapt_val_identities} more")
        if data_dir.exists():
            shutil.rmtree(data_dir)  # an interrupted generation: start over
        generate_dataset(data_dir, identities=s.adapt_identities, images_per_identity=s.adapt_images_per_identity,
                         seed=adapt_data_seed(s.seed), size=s.size, val_identities=s.adapt_val_identities,
                         val_pairs=s.adapt_val_pairs, difficulty=s.difficulty, workers=1,
                         progress=sys.stderr.isatty())
    return data_dir / "synth_val.bin"


def adapt_job(s: DemoSettings, teacher: Path, data_dir: Path, val: Path) -> dict[str, Any]:
    """The run's job config for :mod:`.runs`: :func:`adapt_model` arguments (the adapt defaults of
    :data:`maskinv.train.adapt.ADAPT_DEFAULTS`, ``adapt_steps`` steps of ``adapt_batch_size``)."""
    from .recipe import STUDENT_SEED_OFFSET, override

    spe = s.adapt_identities * s.adapt_images_per_identity // s.adapt_batch_size
    evals = max(1, s.adapt_evals)
    overrides = [
        override("runtime.seed", s.seed * 1000 + STUDENT_SEED_OFFSET),
        override("runtime.device", "cpu"),
        override("runtime.batch_size", s.adapt_batch_size),
        # the schedule (linear decay) ends exactly at adapt_steps: total = ceil(epochs * steps_per_epoch)
        override("schedule.epochs", s.adapt_steps / max(spe, 1)),
        override("runtime.checkpoint_every", max(s.adapt_steps // evals, 1)),
        override("precision.mode", s.precision),
    ]
    return {
        "adapt": {"teacher": str(teacher), "images": str(data_dir), "overrides": overrides, "val": str(val),
                  "eval_every": max(1, math.ceil(s.adapt_steps / evals)), "patience": s.adapt_patience,
                  "max_steps": s.adapt_steps},
        "runtime": {"threads": s.threads or 1, "progress": False},
    }


def run_adapt(job: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume) the adapt run of ``job`` into ``run_dir``; writes :data:`DONE` and returns
    it: the trainer's summary with ``backbone``/``weights_sha256`` of the exported (selected) step."""
    from maskinv.train.adapt import adapt_model
    from maskinv.utils.hashing import file_sha256
    from maskinv.utils.io import atomic_write_json

    a, rt = job["adapt"], job["runtime"]
    out = Path(run_dir)
    overrides = [*a["overrides"], f"runtime.threads={int(rt['threads'])}",
                 f"runtime.progress={'true' if rt.get('progress') else 'false'}"]
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
            "backbone_step": sel.get("best_step") or summary.get("step"),
            "stopped_early": bool(sel.get("stopped_early")),
            # the whole call (chunks + validations; the trainer's elapsed_s is the last chunk's)
            "elapsed_s": time.perf_counter() - t0, "trainer_elapsed_s": summary.get("elapsed_s"),
            "validation": {"teacher": sel.get("teacher"), "evals": sel.get("evals")}}
    atomic_write_json(out / DONE, done)
    return done


"""The MaskInv study end to end on SynthFaces (``maskinv demo`` / ``make demo``).

Pipeline (all on the local machine, nothing downloaded):

1. generate SynthFaces: training identities (RecordIO) and held-out verification pairs (``.bin``);
2. train the teacher: ElasticFace-Arc, clean images only;
3. from the same data and the same schedule train the ElasticFace-Arc-Aug baseline (mask
   augmentation, λ = 0) and MaskInv-LG (mask augmentation + template-level KD from the frozen
   teacher, λ = 100); MaskInv-HG (λ = 3000, initialised from the LG student) when the budget allows;
4. evaluate every model on U-U, M-U and M-M with the full metric set;
5. write ``results.json`` (``{"seed", "models": {name: {"uu", "mu", "mm", "run"}}}``), ``report.md``
   (paper-style table, configs, timings), the evaluation module's report with ROC/DET curves
   and score histograms, and a mask gallery; print the table.

The sizes below were chosen so that the default run finishes in about ten minutes on a
2-core CPU (see README for the measured time); ``--minutes`` scales the step counts.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from maskinv.errors import ConfigError
from maskinv.utils.io import atomic_write_json, atomic_write_text

#: Display names of the models of the study, in table order.
MODEL_TITLES = {
    "teacher": "ElasticFace-Arc (teacher, no masks)",
    "elasticface_arc_aug": "ElasticFace-Arc-Aug (masks, λ=0)",
    "maskinv_lg": "MaskInv-LG (masks + KD, λ={lambda_lg:g})",
    "maskinv_hg": "MaskInv-HG (from LG, λ={lambda_hg:g})",
}


@dataclass
class DemoSettings:
    """Everything that defines a demo run (saved into ``results.json``)."""

    seed: int = 0
    minutes: float = 10.0
    # data
    identities: int = 600
    images_per_identity: int = 16
    size: int = 48
    val_identities: int = 200
    val_pairs: int = 3000
    difficulty: str = "default"
    # model and training
    backbone: str = "r18"
    width_mult: float = 0.25
    embedding_size: int = 128
    batch_size: int = 128
    teacher_steps: int = 750
    student_steps: int = 750
    hg_steps: int = 250
    lr: float = 0.1
    hg_lr: float = 0.01   # HG fine-tunes a trained student: a tenth of the from-scratch rate
    mask_prob: float = 0.5
    # λ multiplies an MSE averaged over the embedding's D elements. On this small setting λ = 100
    # tied with the Aug baseline on masked pairs while λ = 300 beat it (README, "Choosing λ").
    lambda_lg: float = 300.0
    lambda_hg: float = 3000.0
    with_hg: bool = True
    head: str = "elastic_arc"
    head_kwargs: dict = field(default_factory=lambda: {"s": 32.0, "m": 0.5, "std": 0.05})
    precision: str = "auto"  # bf16 only on CPUs with native bf16 (maskinv.utils.precision)
    threads: int | None = None
    parallel: bool = True
    teacher_cache: bool = True
    # evaluation
    protocols: tuple = ("uu", "mu", "mm")
    eval_seed: int = 0
    mask_kind: str = "random"
    flip: bool = True
    # "auto" = bf16 autocast on CPUs with native bf16 (2.7x faster than fp32 here; scores differ
    # by ~1e-4), else fp32: the evaluation module's default
    eval_precision: str = "auto"

    def scaled(self) -> "DemoSettings":
        """Step counts scaled by ``minutes / 10``: the default steps were sized for a 10-minute budget
        (measured: 10 min wall on the 2-core CI machine, evaluation included)."""
        if self.minutes <= 0:
            raise ConfigError(f"--minutes must be positive, got {self.minutes}")
        f = self.minutes / 10.0
        s = copy.deepcopy(self)
        s.teacher_steps = max(10, round(self.teacher_steps * f))
        s.student_steps = max(10, round(self.student_steps * f))
        s.hg_steps = max(5, round(self.hg_steps * f))
        return s


def apply_settings_overrides(s: DemoSettings, overrides: list[str]) -> DemoSettings:
    """``key=value`` strings (YAML-typed values) applied to a copy of ``s``; unknown keys are errors."""
    import yaml

    out = copy.deepcopy(s)
    fields = {f.name: f for f in dataclasses.fields(DemoSettings)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(f"demo setting override {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"demo setting {key}: cannot parse {raw!r}: {exc}") from None
        current = getattr(out, key)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise ConfigError(f"demo setting {key}: expected true/false, got {raw!r}")
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"demo setting {key}: expected a number, got {raw!r}")
            value = type(current)(value) if not (isinstance(current, int) and isinstance(value, float) and not value.is_integer()) else value
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(out, key, value)
    return out


def quick_settings(seed: int = 0) -> DemoSettings:
    """A seconds-scale configuration (tiny data, few steps) used by the tests."""
    return DemoSettings(
        seed=seed, minutes=10.0, identities=12, images_per_identity=6, size=32, val_identities=6,
        val_pairs=40, width_mult=0.125, embedding_size=32, batch_size=24, teacher_steps=6,
        student_steps=6, hg_steps=3, threads=1,
    )


def _train_config(s: DemoSettings, data_dir: Path, *, steps: int, mask_prob: float, kd: float,
                  teacher: Path | None, init: Path | None, seed_offset: int, cache_dir: Path | None = None,
                  lr: float | None = None) -> dict:
    """A trainer config (as a dict, see :mod:`maskinv.train.config`) for one model of the study."""
    images = s.identities * s.images_per_identity
    epochs = steps * s.batch_size / images
    return {
        "name": "demo",
        "data": {"source": "recordio", "path": str(data_dir), "flip": True, "in_memory": True, "val_bins": []},
        "model": {"name": s.backbone, "embedding_size": s.embedding_size,
                  "kwargs": {"width_mult": s.width_mult, "input_size": s.size},
                  "init": str(init) if init else None},
        # a run that starts from a trained student starts from its class centres too
        "head": {"name": s.head, "kwargs": dict(s.head_kwargs),
                 "init": str(Path(init).parent / "head.pt") if init else None},
        # the frozen teacher sees only clean (flipped or not) images: its templates are computed
        # once per record and flip and shared by the KD runs (maskinv.train.teacher_cache)
        "teacher": {"path": str(teacher) if teacher else None,
                    "cache": {"enabled": bool(teacher and cache_dir and s.teacher_cache), "mode": "prepass",
                              "path": str(cache_dir) if cache_dir else None}},
        "masks": {"prob": mask_prob, "kinds": ["random"]},
        "kd": {"weight": kd},
        # lr 0.1 per 512 images as in the paper recipe, linear warm-up, step decay
        "optim": {"name": "sgd", "lr": lr or s.lr, "lr_reference_batch": s.batch_size, "momentum": 0.9,
                  "weight_decay": 5e-4, "clip_grad_norm": 5.0},
        "schedule": {"kind": "step", "epochs": epochs, "milestones": [epochs * 0.6, epochs * 0.85],
                     "gamma": 0.1, "warmup_epochs": epochs * 0.05},
        "precision": {"mode": s.precision, "channels_last": False},
        "runtime": {"batch_size": s.batch_size, "workers": 0, "log_every": 50, "eval_every": 0,
                    "checkpoint_every": max(steps // 2, 1), "keep_last": 1, "seed": s.seed * 1000 + seed_offset,
                    "device": "cpu", "threads": s.threads, "progress": sys.stderr.isatty(),
                    "tensorboard": False},
    }


def _stages(plan: list) -> list[list]:
    """Group the plan into stages: a run joins the current stage unless it needs a result of it."""
    stages: list[list] = []
    for name, p in plan:
        needs = {p.get("teacher"), p.get("init")} - {None}
        if stages and not needs & {n for n, _ in stages[-1]}:
            stages[-1].append((name, p))
        else:
            stages.append([(name, p)])
    return stages


def _train_parallel(jobs: list, *, threads: int | None, parallel: bool):
    """Train each ``(name, cfg, run_dir)``; side by side in child processes when ``parallel``.

    Yields ``(name, cfg, summary)`` in job order. A failed run raises :class:`MaskinvError`
    with the tail of its log (``run_dir/train.log``).
    """
    import os
    import subprocess

    import yaml

    from maskinv.errors import MaskinvError
    from maskinv.train import run_training

    cores = os.cpu_count() or 1
    todo = []
    for name, cfg, run_dir in jobs:
        done = _finished_summary(run_dir)
        if done is not None:
            yield name, cfg, done
        else:
            todo.append((name, cfg, run_dir))
    jobs = todo
    if not jobs:
        return
    if not parallel or len(jobs) == 1:
        for name, cfg, run_dir in jobs:
            cfg = copy.deepcopy(cfg)
            cfg["runtime"]["threads"] = threads or min(cores, 4)
            yield name, cfg, run_training(cfg, run_dir, resume=True)
        return
    per_job = threads or max(1, cores // len(jobs))
    procs = []
    for name, cfg, run_dir in jobs:
        cfg = copy.deepcopy(cfg)
        cfg["runtime"]["threads"] = per_job
        cfg["runtime"]["progress"] = False
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "demo_config.yaml"
        atomic_write_text(cfg_path, yaml.safe_dump(cfg, sort_keys=False))
        env = dict(os.environ, OMP_NUM_THREADS=str(per_job))
        log = open(run_dir / "train.log", "w")
        cmd = [sys.executable, "-m", "maskinv", "train", str(cfg_path), "--resume", str(run_dir)]
        procs.append((name, cfg, run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    failed = None
    for name, cfg, run_dir, proc, log in procs:
        rc = proc.wait()
        log.close()
        if rc != 0 and failed is None:
            tail = (run_dir / "train.log").read_text(errors="replace").strip().splitlines()[-5:]
            failed = f"training {name} failed (exit {rc}); see {run_dir / 'train.log'}: " + " | ".join(tail)
    if failed:
        raise MaskinvError(failed)
    for name, cfg, run_dir, _, _ in procs:
        yield name, cfg, json.loads((run_dir / "summary.json").read_text())


def _finished_summary(run_dir: Path) -> dict | None:
    """The summary of a run that already completed in ``run_dir`` (a re-run of the demo reuses it)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") == "completed" and summary.get("backbone") and Path(summary["backbone"]).is_file():
        return summary
    return None


def _summary_view(summary: dict) -> dict:
    keep = ("backbone", "step", "status", "loss", "head_loss", "kd_loss", "images_per_s", "elapsed_s", "weights_sha256")
    return {k: summary.get(k) for k in keep}


def run_demo(out_dir: str | Path, settings: DemoSettings | None = None, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the whole study into ``out_dir``; returns the ``results.json`` document."""
    from maskinv.data.synth import generate_dataset
    from maskinv.evaluate.protocols import evaluate_arrays, load_bench, masked_images, resolve_precision
    from maskinv.evaluate.reports import file_sha256, new_results, versions, write_report
    from maskinv.models import load_backbone

    s = (settings or DemoSettings()).scaled()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # A re-run into the same folder with the same settings reuses what is done (finished runs
    # are kept, interrupted ones resume); other settings need another folder.
    settings_file = out / "demo_settings.json"
    current = json.loads(json.dumps(dataclasses.asdict(s)))
    if settings_file.exists():
        previous = json.loads(settings_file.read_text())
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise ConfigError(f"{out} holds a demo run with other settings ({', '.join(changed)}); "
                              "use another --out or delete that folder")
    atomic_write_json(settings_file, current)

    # 1. data ---------------------------------------------------------------------------------
    data_dir = out / "data"
    t0 = time.perf_counter()
    if not (data_dir / "synth_meta.json").exists():
        say(f"[demo] SynthFaces: {s.identities} identities x {s.images_per_identity} images at {s.size}px, "
            f"{s.val_pairs} held-out pairs of {s.val_identities} other identities")
        if data_dir.exists():
            import shutil

            shutil.rmtree(data_dir)  # an interrupted generation: start the data over
        generate_dataset(data_dir, identities=s.identities, images_per_identity=s.images_per_identity, seed=s.seed,
                         size=s.size, val_identities=s.val_identities, val_pairs=s.val_pairs, difficulty=s.difficulty,
                         workers=1, progress=sys.stderr.isatty())
    timings["data_s"] = time.perf_counter() - t0
    val_bin = data_dir / "synth_val.bin"

    # 2-3. training ---------------------------------------------------------------------------
    plan = [
        ("teacher", dict(steps=s.teacher_steps, mask_prob=0.0, kd=0.0, teacher=None, init=None, seed_offset=1)),
        ("elasticface_arc_aug", dict(steps=s.student_steps, mask_prob=s.mask_prob, kd=0.0, teacher=None, init=None, seed_offset=2)),
        ("maskinv_lg", dict(steps=s.student_steps, mask_prob=s.mask_prob, kd=s.lambda_lg, teacher="teacher", init=None, seed_offset=3)),
    ]
    if s.with_hg:
        plan.append(("maskinv_hg", dict(steps=s.hg_steps, mask_prob=s.mask_prob, kd=s.lambda_hg, teacher="teacher",
                                        init="maskinv_lg", seed_offset=4, lr=s.hg_lr)))
    runs: dict[str, dict] = {}
    # Independent runs share a stage and train side by side, one process each (the teacher and
    # the Aug baseline need nothing from each other); a small net trains faster as two
    # 1-thread processes than as one 2-thread process on a 2-core machine.
    for stage in _stages(plan):
        jobs = []
        for name, p in stage:
            p = dict(p)
            if p["teacher"]:
                p["teacher"] = Path(runs[p["teacher"]]["backbone"])
            if p["init"]:
                p["init"] = Path(runs[p["init"]]["backbone"])
            cfg = _train_config(s, data_dir, cache_dir=out / "teacher_cache", **p)
            say(f"[demo] training {name}: {p['steps']} steps x {s.batch_size} images, mask prob {p['mask_prob']}, λ {p['kd']}")
            jobs.append((name, cfg, out / "runs" / name))
        t0 = time.perf_counter()
        for name, cfg, summary in _train_parallel(jobs, threads=s.threads, parallel=s.parallel):
            runs[name] = {**_summary_view(summary), "config": cfg, "run_dir": str(out / "runs" / name)}
            timings[f"train_{name}_s"] = summary.get("elapsed_s") or 0.0
            say(f"[demo]   {name} done in {_num(summary.get('elapsed_s'), '.0f')} s: loss {_num(summary.get('loss'))} "
                f"(head {_num(summary.get('head_loss'))}, kd {_num(summary.get('kd_loss'))}), "
                f"{_num(summary.get('images_per_s'), '.0f')} img/s")
        timings["stage_" + "+".join(n for n, _ in stage) + "_s"] = time.perf_counter() - t0

    # 4. evaluation ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    eval_doc = new_results({"protocols": list(s.protocols), "seed": s.eval_seed, "flip": s.flip, "mask_kind": s.mask_kind,
                            "batch_size": 256, "precision": s.eval_precision,
                            "precision_used": resolve_precision(s.eval_precision), "folds": 10})
    eval_doc["benchmarks"]["synth_val"] = {"path": str(val_bin), "sha256": file_sha256(val_bin), "num_pairs": s.val_pairs}
    models_out: dict[str, dict] = {}
    # the masked copies depend only on (seed, image index): draw them once for all models
    images, issame, _ = load_bench(val_bin)
    masked = masked_images(images, s.protocols, s.eval_seed, s.mask_kind)
    for name in runs:
        model = load_backbone(runs[name]["backbone"])
        res = evaluate_arrays(model, images, issame, masked, s.protocols, flip=s.flip, precision=s.eval_precision)
        eval_doc["models"][name] = {"path": runs[name]["backbone"], "sha256": runs[name]["weights_sha256"]}
        entry: dict[str, Any] = {}
        for proto in s.protocols:
            eval_doc["results"].append({"model": name, "benchmark": "synth_val", "protocol": proto, "metrics": res[proto]})
            entry[proto] = {k: v for k, v in res[proto].items() if k not in ("scores", "genuine")}
        entry["run"] = runs[name]
        models_out[name] = entry
    timings["eval_s"] = time.perf_counter() - t0
    written = write_report(out / "eval", eval_doc)

    # 5. gallery, results, report -------------------------------------------------------------
    gallery = _mask_gallery(val_bin, out / "mask_gallery.png", seed=s.eval_seed)
    timings["total_s"] = time.perf_counter() - t_start
    doc = {
        "seed": s.seed,
        "models": models_out,
        "settings": dataclasses.asdict(s),
        "timings": timings,
        "versions": versions(),
        "data": {"dir": str(data_dir), "val_bin": str(val_bin), "val_bin_sha256": file_sha256(val_bin)},
        "files": {"eval_results": str(written["json"]), "plots": [str(p) for p in written["plots"]],
                  "mask_gallery": str(gallery) if gallery else None},
    }
    from maskinv.evaluate.reports import results_json

    atomic_write_json(out / "results.json", results_json(doc))
    table = results_table(doc)
    atomic_write_text(out / "report.md", _report_markdown(doc, table))
    print(table)
    say(f"[demo] wrote {out / 'results.json'}, {out / 'report.md'} and plots in {out / 'eval'} "
        f"({timings['total_s']:.0f} s in all)")
    return doc


def _mask_gallery(val_bin: Path, path: Path, seed: int) -> Path | None:
    """A grid of a few held-out faces with several random masks each."""
    import cv2
    import numpy as np

    from maskinv.data.bins import decode_bin
    from maskinv.masks import apply_mask, image_rng

    images, _ = decode_bin(val_bin)
    faces = images[: min(6, len(images)) * 2 : 2]
    rows = []
    for i, face in enumerate(faces):
        row = [face] + [apply_mask(face, rng=image_rng(seed + 1 + j, i)).image for j in range(5)]
        rows.append(np.concatenate(row, axis=1))
    grid = np.concatenate(rows, axis=0)
    scale = max(1, -(-112 // faces.shape[1]))  # show small crops at 112 px or more per face
    if scale > 1:
        grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    from maskinv.utils.images import encode_image
    from maskinv.utils.io import atomic_write_bytes

    atomic_write_bytes(path, encode_image(grid, "png"))
    return path


def model_title(name: str, settings: dict) -> str:
    """Table label of a model of the study, with the λ actually used."""
    return MODEL_TITLES.get(name, name).format(**settings)


def _num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def results_table(doc: dict) -> str:
    """The paper-style table: rows models, columns protocol x (accuracy, EER, FMR100)."""
    protos = [p for p in ("uu", "mu", "mm") if any(p in m for m in doc["models"].values())]
    label = {"uu": "U-U", "mu": "M-U", "mm": "M-M"}
    head = "| model | " + " | ".join(f"{label[p]} acc | {label[p]} EER | {label[p]} FMR100" for p in protos) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(protos))]
    for name, m in doc["models"].items():
        cells = []
        for p in protos:
            r = m.get(p, {})
            cells += [_pct(r.get("accuracy_mean")), _pct(r.get("eer")), _pct(r.get("fmr100"))]
        lines.append(f"| {model_title(name, doc['settings'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_markdown(doc: dict, table: str) -> str:
    s = doc["settings"]
    t = doc["timings"]
    lines = [
        "# maskinv demo — MaskInv on SynthFaces", "",
        f"Seed {doc['seed']}; {s['identities']} training identities × {s['images_per_identity']} images at "
        f"{s['size']}×{s['size']}; {s['val_pairs']} held-out verification pairs of {s['val_identities']} unseen identities. "
        f"Backbone {s['backbone']} (width ×{s['width_mult']}, {s['embedding_size']}-d), batch {s['batch_size']}, "
        f"{s['teacher_steps']} teacher / {s['student_steps']} student steps, mask probability {s['mask_prob']}.", "",
        f"Evaluation: flip test {'on' if s['flip'] else 'off'}, precision {s['eval_precision']}, mask seed {s['eval_seed']}. "
        "Accuracy: 10-fold LFW protocol (%). EER and FMR100 (FNMR at FMR ≤ 1 %) in %. "
        "U-U: no image masked; M-U: the second image of every pair masked; M-M: both masked (independent masks).", "",
        table, "",
        "## Training", "",
        "| model | steps | final loss | head loss | KD loss | img/s | time (s) |", "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in doc["models"].items():
        r = m["run"]
        lines.append(f"| {model_title(name, s)} | {r['step']} | {_num(r['loss'])} | {_num(r['head_loss'])} | "
                     f"{_num(r['kd_loss'], '.4f')} | {_num(r['images_per_s'], '.0f')} | {_num(r['elapsed_s'], '.0f')} |")
    lines += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k[:-2]} | {v:.1f} |" for k, v in t.items()]
    lines += ["", "## Configs", "", "Each run folder holds its resolved `config.yaml`; the configs as given:", ""]
    for name, m in doc["models"].items():
        lines += [f"### {name}", "", "```json", json.dumps(m["run"]["config"], indent=1), "```", ""]
    lines += ["Plots: `eval/` (ROC/DET per protocol, genuine/impostor score histograms); masks: `mask_gallery.png`.", ""]
    return "\n".join(lines)

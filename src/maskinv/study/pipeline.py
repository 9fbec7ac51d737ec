"""The MaskInv study end to end on SynthFaces (``maskinv demo`` / ``make demo``).

1. generate SynthFaces: training identities (RecordIO) and held-out verification pairs (``.bin``);
2. train the teacher (ElasticFace-Arc, clean images) and, from the same data and schedule, the
   ElasticFace-Arc-Aug baseline (masks, λ = 0) side by side; then MaskInv-LG (masks + KD from the
   frozen teacher, the same runtime seed as Aug); then MaskInv-HG (large λ, from the LG student)
   and its control (LG continued for the same steps) when ``with_hg``/``with_control``; with
   ``with_adapt`` MaskInv-adapt beside LG: the teacher adapted without labels on photos of other
   identities (:mod:`.adapt_row`) (:mod:`.recipe` says what each run is, :mod:`.runs` trains them);
3. evaluate every model on U-U, M-U and M-M with :func:`maskinv.evaluate.evaluate_models`
   (masks of the study seed, fp32 by default);
4. paired-bootstrap comparisons (LG − Aug, HG − Aug, control − Aug, HG − control, LG − teacher
   on U-U; adapt − teacher, adapt − LG on M-U) on the per-pair scores (:func:`maskinv.evaluate.bootstrap.results_comparisons`);
5. write ``results.json`` (``{"seed", "models": {name: {"uu", "mu", "mm", "run"}}, "comparisons": [...], ...}``),
   ``report.md`` (:mod:`.report`), the evaluation report with plots in ``eval/`` and a mask
   gallery; print the table.

A re-run into the same folder with the same settings reuses finished runs and resumes
interrupted ones; other settings are refused, except the adapt settings alone (the other runs
are kept, the adapt row is added).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from maskinv.errors import ConfigError, MaskinvError
from maskinv.masks.protocols import MM, MU, UU
from maskinv.utils.io import atomic_write_json, atomic_write_text

from .recipe import stages, study_plan, train_config
from .report import mask_gallery, num, report_markdown, results_table
from .runs import is_finished, train_runs
from .settings import ADAPT_KEYS, EVAL_ONLY_KEYS, DemoSettings, changed_settings, default_settings
from .validate import check_settings

_SUMMARY_KEYS = ("backbone", "step", "status", "loss", "head_loss", "kd_loss", "images_per_s", "elapsed_s",
                 "weights_sha256", "backbone_step", "met_tolerance")


#: per-seed bootstrap replicates (``{model|benchmark|protocol|metric: (B + 1,) points}``, the full list's
#: value first): what the seed study's two-level intervals resample
REPLICATES = "replicates.npz"

# what a demo writes into its folder (an unfinished demo with other settings is replaced: only these go)
_STUDY_OUTPUTS = ("data", "adapt_data", "runs", "teacher_cache", "eval", "results.json", "report.md", "mask_gallery.png",
                  REPLICATES)


def _check_settings(out: Path, s: DemoSettings, say: Callable[[str], None] = lambda msg: None) -> None:
    """Same folder, same settings: reuse. Other settings: a finished demo (``results.json``
    written) is kept and refused; an unfinished or failed one is started over."""
    settings_file = out / "demo_settings.json"
    current = json.loads(json.dumps(dataclasses.asdict(s)))
    if settings_file.exists():
        try:
            previous = json.loads(settings_file.read_text())
        except (OSError, ValueError):
            previous = {}
        changed = changed_settings(previous, current)
        adapt_changed = [k for k in changed if k in ADAPT_KEYS]
        eval_changed = [k for k in changed if k in EVAL_ONLY_KEYS]
        if changed and len(adapt_changed) + len(eval_changed) == len(changed):
            import shutil

            if adapt_changed:
                # the other runs do not depend on these: keep them (the adapt run's own folder is
                # reused only when its settings are unchanged)
                say(f"[demo] {out}: only the adapt settings changed ({', '.join(adapt_changed)}): keeping the other runs")
                for p in (out / "adapt_data", out / "runs" / "maskinv_adapt"):
                    if p.is_dir():
                        shutil.rmtree(p)
            if eval_changed:
                # the runs do not depend on these: keep them, evaluate again
                say(f"[demo] {out}: only evaluation settings changed ({', '.join(eval_changed)}): keeping the runs, "
                    "evaluating again")
                for name in ("eval", "results.json", "report.md", REPLICATES):
                    p = out / name
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    elif p.exists() or p.is_symlink():
                        p.unlink()
            changed = []
        if changed and (out / "results.json").is_file():
            raise ConfigError(f"{out} holds a finished demo run with other settings ({', '.join(changed)}); "
                              "use another --out (or delete that folder)")
        if changed:
            say(f"[demo] {out} holds an unfinished demo run with other settings ({', '.join(changed)}): replacing it")
            import shutil

            for name in _STUDY_OUTPUTS:
                p = out / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
    atomic_write_json(settings_file, current)


def _make_data(s: DemoSettings, data_dir: Path, say: Callable[[str], None], *, select: bool = False) -> dict[str, Path]:
    """SynthFaces for seed ``s.seed``: training identities, the test pairs (``synth_val.bin``) and,
    with ``select``, the validation pairs of further identities (``synth_select.bin``)."""
    from maskinv.data.synth import generate_dataset

    if not (data_dir / "synth_meta.json").exists():
        say(f"[demo] SynthFaces: {s.identities} identities x {s.images_per_identity} images at {s.size}px, "
            f"{s.val_pairs} test pairs of {s.val_identities} other identities"
            + (f", {s.select_pairs} validation pairs of {s.select_identities} further identities" if select else ""))
        if data_dir.exists():
            import shutil

            shutil.rmtree(data_dir)  # an interrupted generation: start the data over
        generate_dataset(data_dir, identities=s.identities, images_per_identity=s.images_per_identity, seed=s.seed,
                         size=s.size, val_identities=s.val_identities, val_pairs=s.val_pairs,
                         select_identities=s.select_identities if select else 0,
                         select_pairs=s.select_pairs if select else 0, difficulty=s.difficulty,
                         workers=1, progress=sys.stderr.isatty())
    out = {"test": data_dir / "synth_val.bin"}
    if select:
        out["select"] = data_dir / "synth_select.bin"
    return out


def _announce(say: Callable[[str], None], name: str, cfg: dict, out: Path, what: str) -> None:
    if is_finished(cfg, out / "runs" / name):
        say(f"[demo] reusing the finished {name} ({what}) in {out / 'runs' / name}")
    else:
        say(f"[demo] training {name}: {what}")


def _train(s: DemoSettings, out: Path, data_dir: Path, timings: dict, say: Callable[[str], None],
           plan: list | None = None) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for stage in stages(plan if plan is not None else study_plan(s)):
        jobs = []
        for run in stage:
            teacher = Path(runs[run.teacher]["backbone"]) if run.teacher else None
            if run.role == "adapt":
                from .adapt_row import adapt_job, adapt_val_bin

                job = adapt_job(s, teacher, out / "adapt_data", adapt_val_bin(out / "adapt_data"))
                _announce(say, run.name, job, out, f"{run.steps} steps x {s.adapt_batch_size} unlabeled images, "
                          f"mask prob {run.mask_prob}, λ {run.kd}, no head")
                jobs.append((run.name, job, out / "runs" / run.name))
                continue
            init = Path(runs[run.init]["backbone"]) if run.init else None
            cfg = train_config(s, run, data_dir, teacher=teacher, init=init, cache_dir=out / "teacher_cache",
                               progress=sys.stderr.isatty())
            _announce(say, run.name, cfg, out, f"{run.steps} steps x {s.batch_size} images, mask prob {run.mask_prob}, "
                      f"λ {run.kd}")
            jobs.append((run.name, cfg, out / "runs" / run.name))
        t0 = time.perf_counter()
        for name, cfg, summary in train_runs(jobs, threads=s.threads, parallel=s.parallel):
            if summary.get("status") != "completed" or not summary.get("backbone"):
                raise MaskinvError(f"training {name} stopped ({summary.get('status')}) at step {summary.get('step')}; "
                                   "run the same command again to resume it")
            runs[name] = {**{k: summary.get(k) for k in _SUMMARY_KEYS}, "config": cfg, "run_dir": str(out / "runs" / name)}
            timings[f"train_{name}_s"] = summary.get("elapsed_s") or 0.0
            say(f"[demo]   {name} done in {num(summary.get('elapsed_s'), '.0f')} s: loss {num(summary.get('loss'))} "
                f"(head {num(summary.get('head_loss'))}, kd {num(summary.get('kd_loss'))}), "
                f"{num(summary.get('images_per_s'), '.0f')} img/s")
        timings["stage_" + "+".join(r.name for r in stage) + "_s"] = time.perf_counter() - t0
    return runs


def demo_pairs(s: DemoSettings) -> list[tuple]:
    """The comparisons the study reports (B − A): each student against Aug on every protocol, HG
    against its step-matched control, LG against the teacher on unmasked pairs; MaskInv-adapt
    against the teacher on every protocol and against LG on M-U."""
    out: list[tuple] = [("elasticface_arc_aug", "maskinv_lg", None)]
    if s.with_aug_init:
        out.append(("elasticface_arc_aug_init", "maskinv_lg", None))
    if s.with_aug_long:
        out.append(("elasticface_arc_aug_long", "maskinv_lg", None))
    if s.with_hg:
        out.append(("elasticface_arc_aug", "maskinv_hg", None))
    if s.with_control:
        out.append(("elasticface_arc_aug", "maskinv_lg_long", None))
    if s.with_hg and s.with_control:
        out.append(("maskinv_lg_long", "maskinv_hg", None))
    out.append(("teacher", "maskinv_lg", [UU]))
    if s.with_adapt:
        out += [("teacher", "maskinv_adapt", [MU, MM, UU]), ("maskinv_lg", "maskinv_adapt", [MU])]
    return out


def split_groups(s: DemoSettings, split: str) -> "Any":
    """The (N, 2) identities of the study's test (``"val"``) or validation (``"select"``) pairs,
    recomputed from the settings (folders generated before the identities were written have none)."""
    from maskinv.data.synth.dataset import split_pair_identities

    ids, _ = split_pair_identities(split, seed=s.seed, identities=s.identities, val_identities=s.val_identities,
                                   val_pairs=s.val_pairs, select_identities=s.select_identities,
                                   select_pairs=s.select_pairs)
    return ids


def evaluate_runs(s: DemoSettings, runs: dict[str, dict], benches: dict[str, Path], out_dir: Path,
                  pairs: list[tuple], groups: dict[str, Any] | None = None,
                  replicates: dict | None = None) -> tuple[dict, dict[str, dict], list[dict]]:
    """Score every trained model on ``benches`` (masks of seed ``s.mask_seed`` and kind
    ``s.eval_mask_kind``, ``s.eval_precision``, accuracy ``s.accuracy``); returns the evaluation
    document, ``{model: {protocol: metrics}}`` and the paired-bootstrap ``comparisons`` of ``pairs``
    (none when ``s.bootstrap`` is 0), identities resampled where ``groups`` ``{bench: (N, 2)}`` has
    them. ``replicates``: receives every model's bootstrap replicates (:func:`results_comparisons`)."""
    import numpy as np

    from maskinv.evaluate import ModelSpec, evaluate_models
    from maskinv.evaluate.bootstrap import results_comparisons

    exact = s.accuracy == "exact"
    models = {name: ModelSpec(path=r["backbone"], sha256=r["weights_sha256"]) for name, r in runs.items()}
    ev = evaluate_models(models, benches, s.protocols, seed=s.mask_seed, mask_kind=s.eval_mask_kind,
                         flip=s.flip, precision=s.eval_precision, exact=exact, out_dir=out_dir)
    per_model: dict[str, dict[str, Any]] = {name: {} for name in runs}
    for e in ev["results"]:
        sc = np.asarray(e["metrics"]["scores"], np.float64)
        per_model[e["model"]][e["protocol"]] = {
            **{k: v for k, v in e["metrics"].items() if k not in ("scores", "genuine")},
            "score_min": float(sc.min()), "score_max": float(sc.max())}
    comparisons = []
    if s.bootstrap > 0:
        comparisons = results_comparisons(ev["results"], n_boot=s.bootstrap, seed=s.seed, pairs=pairs, groups=groups,
                                          exact=exact, replicates=replicates)
    return ev, per_model, comparisons


def run_warnings(s: DemoSettings, models: dict[str, dict]) -> list[dict[str, Any]]:
    """Signs of a collapsed or degenerate model, per model and protocol (:func:`maskinv.evaluate.metrics.collapse_warnings`),
    and a student whose training (head) loss fell below half the teacher's: at s = 64 with half the
    samples masked the objective does not penalise a collapse (issue 23: the collapsed Aug run's loss was
    the lowest)."""
    from maskinv.evaluate.metrics import collapse_warnings

    out: list[dict[str, Any]] = []
    for name, m in models.items():
        for proto, r in m.items():
            if proto == "run":
                continue
            for w in collapse_warnings(r):
                out.append({"model": name, "protocol": proto, **w})
    t = (models.get("teacher") or {}).get("run") or {}
    t_loss = t.get("head_loss") if t.get("head_loss") is not None else t.get("loss")
    t_s = _head_scale(t)
    for name, m in models.items():
        r = m.get("run") or {}
        loss = r.get("head_loss") if r.get("head_loss") is not None else r.get("loss")
        if name in ("teacher", "maskinv_adapt") or t_loss is None or loss is None:
            continue
        # the margin loss grows with the head's scale s (logits s·cos): compare per unit of s, so a
        # student tuned to s = 32 is not flagged for a loss that is low only because its s is
        r_s = _head_scale(r)
        ratio = (r_s / t_s) if (r_s and t_s) else 1.0
        if loss < 0.5 * t_loss * ratio:
            per = f" (scaled to the teacher's s {t_s:g}: {loss / ratio:.3f})" if ratio != 1.0 else ""
            out.append({"model": name, "protocol": None, "check": "training_loss",
                        "message": f"training (head) loss {loss:.3f}{per} is below half the teacher's {t_loss:.3f}: "
                                   "check for a collapse (the margin loss does not penalise one)"})
    return out


def _head_scale(run: dict) -> float | None:
    """The margin head's scale ``s`` a run trained with (its config), None when unrecorded."""
    kw = (((run.get("config") or {}).get("head") or {}).get("kwargs")) or {}
    s = kw.get("s")
    return float(s) if s else None


def _run_lambda(run: dict) -> float:
    """The KD weight λ a run trained with (its config), 0 for runs without KD."""
    cfg = run.get("config") or {}
    return float(((cfg.get("kd") or {}).get("weight")) or 0.0)


def save_replicates(path: Path, replicates: dict) -> None:
    """``{(model, benchmark, protocol): {metric: array}}`` as an ``.npz`` keyed ``model|benchmark|protocol|metric``."""
    import io

    import numpy as np

    from maskinv.utils.io import atomic_write_bytes

    arrays = {"|".join(map(str, k)) + "|" + m: np.asarray(v, np.float64) for k, d in replicates.items() for m, v in d.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_replicates(path: Path) -> dict | None:
    """What :func:`save_replicates` wrote (``{(model, benchmark, protocol, metric): array}``), None when absent."""
    import numpy as np

    if not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {tuple(k.split("|")): z[k] for k in z.files}


def run_demo(out_dir: str | Path, settings: DemoSettings | None = None, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the whole study into ``out_dir``; returns the ``results.json`` document."""
    from maskinv.evaluate.reports import results_json, versions
    from maskinv.utils.hashing import file_sha256

    s = (settings or default_settings()).scaled()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    check_settings(s, out)  # every setting and run config, before any file is written
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _check_settings(out, s, say)

    data_dir = out / "data"
    t0 = time.perf_counter()
    val_bin = _make_data(s, data_dir, say)["test"]
    if s.with_adapt:
        from .adapt_row import make_adapt_data

        make_adapt_data(s, out / "adapt_data", say)
    timings["data_s"] = time.perf_counter() - t0

    runs = _train(s, out, data_dir, timings, say)
    if "maskinv_adapt" in runs:  # the adapt row last in the table (it trains beside LG)
        runs = {**{k: v for k, v in runs.items() if k != "maskinv_adapt"}, "maskinv_adapt": runs["maskinv_adapt"]}

    # every model scores the same masked copies of the held-out pairs (masked once)
    t0 = time.perf_counter()
    replicates: dict = {}
    ev, models_out, comparisons = evaluate_runs(s, runs, {"synth_val": val_bin}, out / "eval", demo_pairs(s),
                                                groups={"synth_val": split_groups(s, "val")}, replicates=replicates)
    for name in runs:
        lam = None if name == "maskinv_adapt" else _run_lambda(runs[name])
        models_out[name]["run"] = {**runs[name], "lambda": lam, "lambda_per_sample": None if lam is None else s.per_sample(lam)}
    if replicates:
        save_replicates(out / REPLICATES, replicates)
    warnings = run_warnings(s, models_out)
    for w in warnings:
        say(f"[demo] WARNING {w['model']}{' ' + w['protocol'] if w['protocol'] else ''}: {w['message']}")
    timings["eval_s"] = time.perf_counter() - t0
    written = ev["report"]

    gallery = mask_gallery(val_bin, out / "mask_gallery.png", seed=s.mask_seed)
    timings["total_s"] = time.perf_counter() - t_start
    doc = {
        "seed": s.seed,
        "models": models_out,
        "comparisons": comparisons,
        "warnings": warnings,
        "accuracy_protocol": "exact-midpoints" if s.accuracy == "exact" else "insightface-grid",
        "resampling": sorted({c["resampling"] for c in comparisons}),
        "lambda": {"lg": s.lambda_lg, "hg": s.lambda_hg_used, "embedding_size": s.embedding_size,
                   "lg_per_sample": s.per_sample(s.lambda_lg), "hg_per_sample": s.per_sample(s.lambda_hg_used)},
        "settings": dataclasses.asdict(s),
        "timings": timings,
        "versions": versions(),
        "data": {"dir": str(data_dir), "val_bin": str(val_bin), "val_bin_sha256": file_sha256(val_bin),
                 "eval_mask_seed": s.mask_seed, "eval_mask_kind": s.eval_mask_kind,
                 "train_mask_kinds": s.train_mask_kinds},
        "files": {"eval_results": str(written["json"]), "plots": [str(p) for p in written["plots"]],
                  "mask_gallery": str(gallery) if gallery else None},
    }
    atomic_write_json(out / "results.json", results_json(doc))
    table = results_table(doc)
    atomic_write_text(out / "report.md", report_markdown(doc, table))
    print(table)
    say(f"[demo] wrote {out / 'results.json'}, {out / 'report.md'} and plots in {out / 'eval'} "
        f"({timings['total_s']:.0f} s in all)")
    return doc

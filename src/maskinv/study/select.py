"""Choosing λ without peeking at the test pairs (``maskinv demo --select-lambda 100,300,1000``).

One selection seed (not one of the seed study's) generates SynthFaces with a second held-out
split, the validation pairs (``synth_select.bin``: identities disjoint from training and from the
test pairs); the teacher and one MaskInv-LG student per candidate λ are trained with the demo
recipe (all students share the runtime seed, so λ is the only difference) and scored on the
validation pairs only. The pick: the highest M-U accuracy, a tie broken by the lower M-U EER,
then by the smaller λ. ``select_lambda.json`` and ``select_lambda.md`` record it; the demo's
``lambda_lg`` default changes only through such a recorded output.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from maskinv.errors import ConfigError
from maskinv.utils.io import atomic_write_json, atomic_write_text

from .pipeline import _check_settings, _make_data, _train, evaluate_runs
from .recipe import RunPlan
from .settings import DemoSettings

SELECT_PROTOCOL = "mu"


def parse_lambdas(text: str) -> list[float]:
    """``"100,300,1000"`` -> ``[100.0, 300.0, 1000.0]`` (positive, distinct)."""
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--select-lambda {text!r}: expected comma-separated numbers, e.g. 100,300,1000") from None
    if not vals or any(v <= 0 for v in vals) or len(set(vals)) != len(vals):
        raise ConfigError(f"--select-lambda {text!r}: expected distinct positive numbers, e.g. 100,300,1000")
    return vals


def run_name(lam: float) -> str:
    return f"maskinv_lg_l{lam:g}"


def selection_plan(s: DemoSettings, lambdas: list[float]) -> list[RunPlan]:
    """The teacher, then one LG student per λ (one stage: they train side by side)."""
    plan = [RunPlan("teacher", s.teacher_steps, 0.0, 0.0, role="teacher")]
    plan += [RunPlan(run_name(lam), s.student_steps, s.mask_prob, lam, teacher="teacher") for lam in lambdas]
    return plan


def pick(candidates: list[dict]) -> dict:
    """Highest validation M-U accuracy; ties: lower M-U EER, then smaller λ."""
    return min(candidates, key=lambda c: (-round(c["accuracy"], 9), round(c["eer"], 9), c["lambda"]))


def select_lambda(out_dir: str | Path, settings: DemoSettings, lambdas: list[float], *,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train and score the candidates into ``out_dir``; returns the ``select_lambda.json`` document."""
    from maskinv.evaluate.reports import results_json, versions
    from maskinv.utils.hashing import file_sha256

    s = settings.scaled()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if s.select_pairs < 2 or s.select_identities < 2:
        raise ConfigError("--select-lambda needs select_pairs >= 2 and select_identities >= 2 (validation pairs)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _check_settings(out, s)
    timings: dict[str, float] = {}
    bins = _make_data(s, out / "data", say, select=True)
    runs = _train(s, out, out / "data", timings, say, plan=selection_plan(s, lambdas))
    t0 = time.perf_counter()
    names = [run_name(lam) for lam in lambdas]
    pairs = [(a, b, [SELECT_PROTOCOL]) for i, a in enumerate(names) for b in names[i + 1:]]
    _, per_model, comparisons = evaluate_runs(s, runs, {"synth_select": bins["select"]}, out / "eval", pairs)
    timings["eval_s"] = time.perf_counter() - t0
    candidates = []
    pct = lambda v: None if v is None else 100 * v  # noqa: E731 (FMR100 needs >= 100 impostor pairs)
    for lam, name in zip(lambdas, names):
        m = per_model[name]
        candidates.append({"lambda": lam, "model": name, "accuracy": 100 * m[SELECT_PROTOCOL]["accuracy_mean"],
                           "eer": 100 * m[SELECT_PROTOCOL]["eer"],
                           "protocols": {p: {"accuracy": pct(v["accuracy_mean"]), "eer": pct(v["eer"]),
                                             "fmr100": pct(v["fmr100"])} for p, v in m.items()}})
    chosen = pick(candidates)
    timings["total_s"] = time.perf_counter() - t_start
    doc = {
        "task": "choose lambda_lg on validation pairs",
        "rule": "highest M-U accuracy on the validation pairs; tie -> lower M-U EER, then smaller lambda",
        "chosen_lambda": chosen["lambda"],
        "seed": s.seed,
        "benchmark": "synth_select (validation pairs; the test pairs synth_val.bin were not scored)",
        "candidates": candidates,
        "comparisons": comparisons,
        "teacher": {p: {"accuracy": 100 * v["accuracy_mean"], "eer": 100 * v["eer"]} for p, v in per_model["teacher"].items()},
        "settings": dataclasses.asdict(s),
        "timings": timings,
        "versions": versions(),
        "data": {"select_bin_sha256": file_sha256(bins["select"]), "eval_mask_seed": s.mask_seed},
        "runs": {n: {k: r.get(k) for k in ("step", "loss", "head_loss", "kd_loss", "elapsed_s", "weights_sha256")}
                 for n, r in runs.items()},
    }
    atomic_write_json(out / "select_lambda.json", results_json(doc))
    md = selection_markdown(doc)
    atomic_write_text(out / "select_lambda.md", md)
    print(md)
    say(f"[select] chose λ = {chosen['lambda']:g}; wrote {out / 'select_lambda.json'} ({timings['total_s']:.0f} s in all)")
    return json.loads(json.dumps(results_json(doc)))


def selection_markdown(doc: dict) -> str:
    from maskinv.evaluate.bootstrap import render_comparisons_markdown

    s = doc["settings"]
    lines = [
        "# Choosing λ (MaskInv-LG) on validation pairs", "",
        f"Selection seed {doc['seed']} (not a seed of the study); {s['identities']} training identities × "
        f"{s['images_per_identity']} images at {s['size']} px, {s['student_steps']} student steps "
        f"(--minutes {s['minutes']:g}); {s['select_pairs']} validation pairs of {s['select_identities']} identities "
        "disjoint from training and from the test pairs; evaluation precision "
        f"{s['eval_precision']}, mask seed {doc['data']['eval_mask_seed']}.", "",
        f"Rule: {doc['rule']}. **Chosen: λ = {doc['chosen_lambda']:g}.**", "",
        "| λ | U-U acc | U-U EER | M-U acc | M-U EER | M-U FMR100 | M-M acc | M-M EER |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["candidates"]:
        p = c["protocols"]
        cell = lambda proto, k: f"{p[proto][k]:.2f}" if p.get(proto, {}).get(k) is not None else "n/a"  # noqa: E731
        lines.append(f"| {c['lambda']:g} | {cell('uu', 'accuracy')} | {cell('uu', 'eer')} | {cell('mu', 'accuracy')} | "
                     f"{cell('mu', 'eer')} | {cell('mu', 'fmr100')} | {cell('mm', 'accuracy')} | {cell('mm', 'eer')} |")
    t = doc["teacher"]
    if "mu" in t:
        lines += ["", f"Teacher on the same pairs: U-U {t['uu']['accuracy']:.2f} %, M-U {t['mu']['accuracy']:.2f} %."
                  if "uu" in t else ""]
    names = {c["model"]: f"λ={c['lambda']:g}" for c in doc["candidates"]}
    if doc["comparisons"]:
        lines += ["", "Paired differences between candidates on M-U (B − A, points, 95 % paired bootstrap):", "",
                  render_comparisons_markdown(doc["comparisons"], names).rstrip()]
    return "\n".join(lines) + "\n"

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
from maskinv.masks.protocols import MM, MU, UU
from maskinv.utils.io import atomic_write_json, atomic_write_text

from .pipeline import _check_settings, _make_data, _train, evaluate_runs
from .recipe import RunPlan
from .settings import DemoSettings

SELECT_PROTOCOL = MU
#: λ_LG candidates at D = 128 (issue 23): λ/D 0.195, 0.59, 1.95, 5.86 — the paper's LG (100/512) and HG
#: (3000/512) per sample and two steps between (``maskinv demo --select-lambda`` without a list)
LAMBDA_GRID = (25.0, 75.0, 250.0, 750.0)
#: Aug's learning-rate candidates (per batch of batch_size images): the paper's per-image rate 0.1/512
#: at batch 128 is 0.025; the study's 0.1 is 4x that (``--select-aug`` without a list)
AUG_LR_GRID = (0.025, 0.05, 0.1)
#: Aug's ElasticFace-Arc scale candidates
AUG_S_GRID = (32.0, 64.0)


def parse_aug_grid(text: str | None) -> tuple[list[float], list[float]]:
    """``"0.025,0.05,0.1"`` (rates; s from :data:`AUG_S_GRID`) or ``"0.025,0.05/32,64"`` (rates/scales);
    None or empty: both default grids."""
    if not text:
        return list(AUG_LR_GRID), list(AUG_S_GRID)
    lr_text, _, s_text = str(text).partition("/")
    try:
        lrs = [float(x) for x in lr_text.split(",") if x.strip()]
        ss = [float(x) for x in s_text.split(",") if x.strip()] if s_text else list(AUG_S_GRID)
    except ValueError:
        raise ConfigError(f"--select-aug {text!r}: expected rates[/scales], e.g. 0.025,0.05,0.1/32,64") from None
    for what, v in (("rates", lrs), ("scales", ss)):
        if not v or any(x <= 0 for x in v) or len(set(v)) != len(v):
            raise ConfigError(f"--select-aug {text!r}: expected distinct positive {what}, e.g. 0.025,0.05,0.1/32,64")
    return lrs, ss


def aug_run_name(lr: float, s: float) -> str:
    return f"elasticface_arc_aug_lr{lr:g}_s{s:g}"


def aug_plan(s: DemoSettings, lrs: list[float], scales: list[float]) -> list[RunPlan]:
    """One Aug run per (rate, scale): one stage, same runtime seed (the rate and scale are the only differences)."""
    return [RunPlan(aug_run_name(lr, sc), s.student_steps, s.mask_prob, 0.0, lr=lr, head_s=sc) for lr in lrs for sc in scales]


def pick_aug(candidates: list[dict]) -> dict:
    """Highest validation M-U accuracy; ties: lower M-U EER, then the smaller rate, then the smaller scale."""
    return min(candidates, key=lambda c: (-round(c["accuracy"], 9), round(c["eer"], 9), c["lr"], c["s"]))


def select_aug(out_dir: str | Path, settings: DemoSettings, lrs: list[float], scales: list[float], *,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Tune the Aug baseline's rate and scale on the validation pairs, as λ is tuned for LG (the
    study sets ``aug_lr``/``aug_s`` from the recorded pick); writes ``select_aug.json``/``.md``."""
    # the plan's step counts come from the scaled settings (--minutes), as the recorded settings say
    plan = aug_plan(settings.scaled(), lrs, scales)
    meta = {r.name: {"lr": r.lr, "s": r.head_s} for r in plan}
    return _select(out_dir, settings, plan, [r.name for r in plan], meta, pick_aug, log=log, file="select_aug",
                   task="choose the Aug baseline's lr and s on validation pairs",
                   rule="highest M-U accuracy on the validation pairs; tie -> lower M-U EER, then smaller lr, then smaller s",
                   chosen_keys=("lr", "s"), title="Choosing the Aug baseline's learning rate and scale")


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
    names = [run_name(lam) for lam in lambdas]
    meta = {n: {"lambda": lam, "lambda_per_sample": settings.per_sample(lam)} for n, lam in zip(names, lambdas)}
    return _select(out_dir, settings, selection_plan(settings.scaled(), lambdas), names, meta, pick, log=log,
                   file="select_lambda", task="choose lambda_lg on validation pairs",
                   rule="highest M-U accuracy on the validation pairs; tie -> lower M-U EER, then smaller lambda",
                   chosen_keys=("lambda",), title="Choosing λ (MaskInv-LG) on validation pairs")


def _select(out_dir: str | Path, settings: DemoSettings, plan: list[RunPlan], names: list[str], meta: dict[str, dict],
            rule_fn: Callable[[list[dict]], dict], *, log: Callable[[str], None] | None, file: str, task: str, rule: str,
            chosen_keys: tuple[str, ...], title: str) -> dict[str, Any]:
    """Train ``plan``, score ``names`` on the validation pairs only, pick by ``rule_fn``; writes ``file``.json/.md."""
    from maskinv.evaluate.reports import results_json, versions
    from maskinv.utils.hashing import file_sha256

    from .pipeline import split_groups

    s = settings.scaled()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if s.select_pairs < 2 or s.select_identities < 2:
        raise ConfigError("selection needs select_pairs >= 2 and select_identities >= 2 (validation pairs)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _check_settings(out, s)
    timings: dict[str, float] = {}
    bins = _make_data(s, out / "data", say, select=True)
    runs = _train(s, out, out / "data", timings, say, plan=plan)
    t0 = time.perf_counter()
    pairs = [(a, b, [SELECT_PROTOCOL]) for i, a in enumerate(names) for b in names[i + 1:]]
    _, per_model, comparisons = evaluate_runs(s, runs, {"synth_select": bins["select"]}, out / "eval", pairs,
                                              groups={"synth_select": split_groups(s, "select")})
    timings["eval_s"] = time.perf_counter() - t0
    candidates = []
    pct = lambda v: None if v is None else 100 * v  # noqa: E731 (FMR100 needs >= 100 impostor pairs)
    for name in names:
        m = per_model[name]
        candidates.append({**meta[name], "model": name, "accuracy": 100 * m[SELECT_PROTOCOL]["accuracy_mean"],
                           "eer": 100 * m[SELECT_PROTOCOL]["eer"],
                           "protocols": {p: {"accuracy": pct(v["accuracy_mean"]), "eer": pct(v["eer"]),
                                             "fmr100": pct(v["fmr100"])} for p, v in m.items()}})
    chosen = rule_fn(candidates)
    timings["total_s"] = time.perf_counter() - t_start
    doc = {
        "task": task,
        "rule": rule,
        "title": title,
        **{f"chosen_{k}": chosen[k] for k in chosen_keys},
        "seed": s.seed,
        "benchmark": "synth_select (validation pairs; the test pairs synth_val.bin were not scored)",
        "accuracy_protocol": "exact-midpoints" if s.accuracy == "exact" else "insightface-grid",
        "candidates": candidates,
        "comparisons": comparisons,
        "teacher": {p: {"accuracy": 100 * v["accuracy_mean"], "eer": 100 * v["eer"]} for p, v in per_model["teacher"].items()}
        if "teacher" in per_model else {},
        "settings": dataclasses.asdict(s),
        "timings": timings,
        "versions": versions(),
        "data": {"select_bin_sha256": file_sha256(bins["select"]), "eval_mask_seed": s.mask_seed},
        "runs": {n: {k: r.get(k) for k in ("step", "loss", "head_loss", "kd_loss", "elapsed_s", "weights_sha256")}
                 for n, r in runs.items()},
    }
    atomic_write_json(out / f"{file}.json", results_json(doc))
    md = selection_markdown(doc)
    atomic_write_text(out / f"{file}.md", md)
    print(md)
    say(f"[select] chose {', '.join(f'{k} = {chosen[k]:g}' for k in chosen_keys)}; wrote {out / (file + '.json')} "
        f"({timings['total_s']:.0f} s in all)")
    return json.loads(json.dumps(results_json(doc)))


def selection_markdown(doc: dict) -> str:
    from maskinv.evaluate.bootstrap import render_comparisons_markdown

    s = doc["settings"]
    if "chosen_lambda" not in doc:
        return _aug_markdown(doc)
    lines = [
        "# Choosing λ (MaskInv-LG) on validation pairs", "",
        f"Selection seed {doc['seed']} (not a seed of the study); {s['identities']} training identities × "
        f"{s['images_per_identity']} images at {s['size']} px, {s['student_steps']} student steps "
        f"(--minutes {s['minutes']:g}); {s['select_pairs']} validation pairs of {s['select_identities']} identities "
        "disjoint from training and from the test pairs; evaluation precision "
        f"{s['eval_precision']}, mask seed {doc['data']['eval_mask_seed']}.", "",
        f"Rule: {doc['rule']}. **Chosen: λ = {doc['chosen_lambda']:g}.**", "",
        "| λ | λ/D | U-U acc | U-U EER | M-U acc | M-U EER | M-U FMR100 | M-M acc | M-M EER |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["candidates"]:
        p = c["protocols"]
        cell = lambda proto, k: f"{p[proto][k]:.2f}" if p.get(proto, {}).get(k) is not None else "n/a"  # noqa: E731
        per = c.get("lambda_per_sample")
        lines.append(f"| {c['lambda']:g} | {'n/a' if per is None else format(per, '.3g')} | {cell(UU, 'accuracy')} | "
                     f"{cell(UU, 'eer')} | {cell(MU, 'accuracy')} | "
                     f"{cell(MU, 'eer')} | {cell(MU, 'fmr100')} | {cell(MM, 'accuracy')} | {cell(MM, 'eer')} |")
    t = doc["teacher"]
    if MU in t:
        lines += ["", f"Teacher on the same pairs: U-U {t[UU]['accuracy']:.2f} %, M-U {t[MU]['accuracy']:.2f} %."
                  if UU in t else ""]
    names = {c["model"]: f"λ={c['lambda']:g}" for c in doc["candidates"]}
    if doc["comparisons"]:
        lines += ["", "Paired differences between candidates on M-U (B − A, points, 95 % paired bootstrap):", "",
                  render_comparisons_markdown(doc["comparisons"], names).rstrip()]
    return "\n".join(lines) + "\n"


def _aug_markdown(doc: dict) -> str:
    from maskinv.evaluate.bootstrap import render_comparisons_markdown

    s = doc["settings"]
    lines = [f"# {doc['title']}", "",
             f"Selection seed {doc['seed']}; {s['identities']} training identities, {s['student_steps']} steps "
             f"(--minutes {s['minutes']:g}); {s['select_pairs']} validation pairs of {s['select_identities']} identities "
             f"disjoint from training and test; accuracy {doc['accuracy_protocol']}.", "",
             f"Rule: {doc['rule']}. **Chosen: lr = {doc['chosen_lr']:g}, s = {doc['chosen_s']:g}.**", "",
             "| lr | s | U-U acc | U-U EER | M-U acc | M-U EER | M-M acc | M-M EER |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in doc["candidates"]:
        p = c["protocols"]
        cell = lambda proto, k: f"{p[proto][k]:.2f}" if p.get(proto, {}).get(k) is not None else "n/a"  # noqa: E731
        lines.append(f"| {c['lr']:g} | {c['s']:g} | {cell(UU, 'accuracy')} | {cell(UU, 'eer')} | {cell(MU, 'accuracy')} | "
                     f"{cell(MU, 'eer')} | {cell(MM, 'accuracy')} | {cell(MM, 'eer')} |")
    names = {c["model"]: f"lr={c['lr']:g},s={c['s']:g}" for c in doc["candidates"]}
    if doc["comparisons"]:
        lines += ["", "Paired differences between candidates on M-U (B − A, points, 95 % identity bootstrap):", "",
                  render_comparisons_markdown(doc["comparisons"], names).rstrip()]
    return "\n".join(lines) + "\n"

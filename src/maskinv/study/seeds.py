"""The multi-seed study (``maskinv study --seeds 1,2,3,4,5 --out DIR``).

Each seed is one whole :func:`~.pipeline.run_demo` into ``DIR/seed_N`` (its own identities,
held-out pairs, initialisation, batch order, training and evaluation masks). A re-run reuses a
seed whose ``results.json`` holds the same settings (and resumes its unfinished runs otherwise).
``summary.json`` / ``summary.md``: per model and protocol the mean ± sd over seeds; per
comparison (B − A) each seed's difference with its paired-bootstrap CI over pairs, and the mean
over seeds with its t-interval (:func:`maskinv.evaluate.bootstrap.seed_summary`) — the seed
interval is the one that speaks for "another training run", the per-seed one only for "other
test pairs".
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskinv.errors import ConfigError
from maskinv.evaluate.bootstrap import signed
from maskinv.masks.protocols import PROTOCOLS, TITLES
from maskinv.utils.io import atomic_write_json, atomic_write_text

from .pipeline import run_demo
from .report import SHORT_NAMES, adapt_vs_lg, adapt_vs_lg_markdown, meets_adapt_goals, model_title
from .settings import DemoSettings, changed_settings
from .validate import check_settings

_METRICS = (("accuracy_mean", "acc"), ("eer", "EER"), ("fmr100", "FMR100"))
_PROTO = {p: TITLES[p] for p in PROTOCOLS}


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` or ``"1-5"`` -> distinct non-negative integers."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds += list(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected integers such as 1,2,3,4,5 or 1-5") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: expected distinct non-negative integers")
    return seeds


def _finished(seed_dir: Path, s: DemoSettings) -> dict | None:
    """The seed's results when it already finished with these settings."""
    try:
        doc = json.loads((seed_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    want = json.loads(json.dumps(dataclasses.asdict(s.scaled())))
    return doc if not changed_settings(doc.get("settings") or {}, want) else None


def run_study(out_dir: str | Path, base: DemoSettings, seeds: Sequence[int], *,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or reuse) every seed, then write ``summary.json`` and ``summary.md``; returns the summary."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    for seed in seeds:  # a bad setting stops the study before any folder is made (as run_demo does)
        check_settings(dataclasses.replace(base, seed=int(seed)).scaled(), out / f"seed_{seed}")
    out.mkdir(parents=True, exist_ok=True)
    docs: dict[int, dict] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        s = dataclasses.replace(base, seed=int(seed))
        seed_dir = out / f"seed_{seed}"
        doc = _finished(seed_dir, s)
        if doc is None:
            say(f"[study] seed {seed} -> {seed_dir}")
            run_demo(seed_dir, s, log=say)
            doc = json.loads((seed_dir / "results.json").read_text())
        else:
            say(f"[study] seed {seed}: reusing {seed_dir / 'results.json'}")
        docs[int(seed)] = doc
    summary = summarize(docs)
    summary["wall_s_this_call"] = time.perf_counter() - t0
    atomic_write_json(out / "summary.json", summary)
    md = summary_markdown(summary)
    atomic_write_text(out / "summary.md", md)
    print(md)
    say(f"[study] wrote {out / 'summary.json'} and {out / 'summary.md'}")
    return summary


def _stat(x: list[float]) -> dict[str, Any]:
    a = np.asarray(x, np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else None, "values": [float(v) for v in a]}


def summarize(docs: dict[int, dict]) -> dict[str, Any]:
    """Per-model means/sds and per-comparison seed statistics from the seeds' ``results.json``."""
    from maskinv.evaluate.bootstrap import seed_summary

    seeds = sorted(docs)
    first = docs[seeds[0]]
    models: dict[str, dict] = {}
    for name in first["models"]:
        models[name] = {}
        for proto in _PROTO:
            if proto not in first["models"][name]:
                continue
            models[name][proto] = {}
            for k, _ in _METRICS:
                vals = [docs[sd]["models"][name][proto][k] for sd in seeds]
                # FMR100 is undefined with < 100 impostor pairs
                models[name][proto][k] = None if any(v is None for v in vals) else _stat([100 * v for v in vals])
    comps: dict[tuple, dict] = {}
    for sd in seeds:
        for e in docs[sd].get("comparisons") or []:
            key = (e["model_a"], e["model_b"], e["benchmark"], e["protocol"])
            c = comps.setdefault(key, {"model_a": key[0], "model_b": key[1], "benchmark": key[2], "protocol": key[3],
                                       "per_seed": []})
            c["per_seed"].append({"seed": sd, **{m: {"diff": e[m]["diff"], "ci95": e[m]["ci95"]}
                                                 for m in ("accuracy", "eer") if m in e}})
    comparisons = []
    for c in comps.values():
        for m in ("accuracy", "eer"):
            vals = [p[m]["diff"] for p in c["per_seed"] if m in p]
            if vals:
                c[m] = {**seed_summary(vals),
                        "seeds_ci_excludes_zero": sum(1 for p in c["per_seed"] if m in p and
                                                      (p[m]["ci95"][0] > 0 or p[m]["ci95"][1] < 0))}
        comparisons.append(c)
    s = first["settings"]
    goals = {sd: adapt_vs_lg(docs[sd]["models"]) for sd in seeds}
    adapt_goal = None
    if all(g is not None for g in goals.values()):
        mean = {k: float(np.mean([g[k] for g in goals.values()])) for k in ("lg_mu_gain", "adapt_mu_gain", "adapt_uu_change")}
        mean["share"] = mean["adapt_mu_gain"] / mean["lg_mu_gain"] if mean["lg_mu_gain"] > 0 else None
        adapt_goal = {"per_seed": {str(sd): g for sd, g in goals.items()}, "mean": mean,
                      "seeds_meeting_both": sum(1 for g in goals.values() if meets_adapt_goals(g))}
    return {
        "seeds": seeds,
        "adapt_vs_lg": adapt_goal,
        "settings": {k: v for k, v in s.items() if k != "seed"},
        "models": models,
        "comparisons": comparisons,
        "timings_s": {str(sd): docs[sd]["timings"].get("total_s") for sd in seeds},
        "titles": {n: model_title(n, s) for n in first["models"]},
    }


def _pm(st: dict) -> str:
    return f"{st['mean']:.2f} ± {st['sd']:.2f}" if st.get("sd") is not None else f"{st['mean']:.2f}"


def _ci(ci: list | None) -> str:
    return "n/a" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}]"


def summary_markdown(summary: dict) -> str:
    s = summary["settings"]
    seeds = summary["seeds"]
    protos = [p for p in _PROTO if any(p in m for m in summary["models"].values())]
    lines = [
        f"# MaskInv seed study on SynthFaces: seeds {', '.join(map(str, seeds))}", "",
        f"Per seed: {s['identities']} identities × {s['images_per_identity']} images at {s['size']} px, "
        f"{s['teacher_steps']} teacher / {s['student_steps']} student steps (HG and control +{s['hg_steps']}), "
        f"batch {s['batch_size']}, --minutes {s['minutes']:g}, λ LG {s['lambda_lg']:g} / HG {s['lambda_hg']:g}; "
        f"{s['val_pairs']} test pairs of unseen identities; evaluation {s['eval_precision']}, flip test "
        f"{'on' if s['flip'] else 'off'}, masks of the seed. Values in %, mean ± sd over {len(seeds)} seeds.", "",
        "| model | " + " | ".join(f"{_PROTO[p]} {lab}" for p in protos for _, lab in _METRICS) + " |",
        "|---|" + "---:|" * (len(protos) * len(_METRICS)),
    ]
    for name, m in summary["models"].items():
        cells = [_pm(m[p][k]) if m.get(p, {}).get(k) else "n/a" for p in protos for k, _ in _METRICS]
        lines.append(f"| {summary['titles'].get(name, name)} | " + " | ".join(cells) + " |")
    lines += ["", "## Differences (B − A, points)", "",
              "Mean over seeds with its 95 % t-interval (seeds as independent training runs); per seed the "
              "difference and its 95 % paired-bootstrap interval over test pairs. Positive accuracy / negative "
              "EER favour B.", "",
              "| B − A | protocol | metric | mean over seeds [95 % t-CI] | seeds whose CI excludes 0 | per seed: diff [bootstrap CI] |",
              "|---|---|---|---|---:|---|"]
    for c in summary["comparisons"]:
        a, b = SHORT_NAMES.get(c["model_a"], c["model_a"]), SHORT_NAMES.get(c["model_b"], c["model_b"])
        for m, lab in (("accuracy", "acc"), ("eer", "EER")):
            if m not in c:
                continue
            per = "; ".join(f"{p['seed']}: {signed(p[m]['diff'])} {_ci(p[m]['ci95'])}" for p in c["per_seed"] if m in p)
            lines.append(f"| {b} − {a} | {_PROTO.get(c['protocol'], c['protocol'])} | {lab} | "
                         f"{signed(c[m]['mean'])} {_ci(c[m]['ci95'])} | {c[m]['seeds_ci_excludes_zero']}/{c[m]['n']} | {per} |")
    goal = summary.get("adapt_vs_lg")
    if goal:
        lines += ["", "## MaskInv-adapt against MaskInv-LG (accuracy points, per seed; mean: the mean gains and their ratio)",
                  "", adapt_vs_lg_markdown({**goal["per_seed"], "mean": goal["mean"]}), "",
                  f"Seeds meeting both goals (share ≥ 50 %, U-U ≥ −1.00): {goal['seeds_meeting_both']}/{len(goal['per_seed'])}."]
    t = summary["timings_s"]
    lines += ["", "Wall time per seed (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in t.items() if v is not None), ""]
    return "\n".join(lines)

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
from maskinv.masks.protocols import MU, PROTOCOLS, TITLES, UU
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
    from .pipeline import REPLICATES, load_replicates

    reps = {sd: load_replicates(out / f"seed_{sd}" / REPLICATES) for sd in docs}
    summary = summarize(docs, reps if all(r is not None for r in reps.values()) else None)
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


#: Non-inferiority margin (points of accuracy): B is not worse than A when the lower bound of B − A is at least −1.
NONINFERIORITY_POINTS = 1.0
#: Replicates of the two-level bootstrap over seeds and identities
TWO_LEVEL_BOOT = 4000


def _two_level(reps: dict[int, dict], seeds: list[int], keys: dict[str, tuple], stat) -> dict[str, Any] | None:
    """:func:`two_level_bootstrap` of ``stat`` over ``seeds`` with ``keys`` ``{name: (model, bench, proto, metric)}``
    looked up in each seed's replicates; None when a seed lacks one."""
    from maskinv.evaluate.bootstrap import two_level_bootstrap

    per_seed = []
    for sd in seeds:
        d = reps.get(sd) or {}
        if any(k not in d for k in keys.values()):
            return None
        per_seed.append({name: d[k] for name, k in keys.items()})
    return two_level_bootstrap(per_seed, stat, n_boot=TWO_LEVEL_BOOT, seed=0)


def summarize(docs: dict[int, dict], replicates: dict[int, dict] | None = None) -> dict[str, Any]:
    """Per-model means/sds and per-comparison seed statistics from the seeds' ``results.json``;
    with every seed's bootstrap ``replicates`` (:func:`maskinv.study.pipeline.load_replicates`) also,
    per comparison and metric, the two-level interval (seeds, then identities) of the mean difference,
    accuracy non-inferiority (lower bound ≥ −1 point) and, with the adapt row, the interval of adapt's
    share of LG's M-U gain (a ratio of means over seeds)."""
    from maskinv.evaluate.bootstrap import contrast, gain_share, seed_summary

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
                if replicates is not None:
                    keys = {"a": (c["model_a"], c["benchmark"], c["protocol"], m),
                            "b": (c["model_b"], c["benchmark"], c["protocol"], m)}
                    tl = _two_level(replicates, seeds, keys, contrast("a", "b"))
                    if tl is not None:
                        c[m]["two_level"] = tl
                        if m == "accuracy" and tl["ci95"] is not None:
                            c[m]["non_inferior"] = tl["ci95"][0] >= -NONINFERIORITY_POINTS
        comparisons.append(c)
    s = first["settings"]
    goals = {sd: adapt_vs_lg(docs[sd]["models"]) for sd in seeds}
    adapt_goal = None
    if all(g is not None for g in goals.values()):
        mean = {k: float(np.mean([g[k] for g in goals.values()])) for k in ("lg_mu_gain", "adapt_mu_gain", "adapt_uu_change")}
        mean["share"] = mean["adapt_mu_gain"] / mean["lg_mu_gain"] if mean["lg_mu_gain"] > 0 else None
        adapt_goal = {"per_seed": {str(sd): g for sd, g in goals.items()}, "mean": mean,
                      "seeds_meeting_both": sum(1 for g in goals.values() if meets_adapt_goals(g))}
        if replicates is not None:
            bench = next((e["benchmark"] for e in docs[seeds[0]].get("comparisons") or []), "synth_val")
            keys = {n: (n, bench, MU, "accuracy") for n in ("teacher", "maskinv_lg", "maskinv_adapt")}
            adapt_goal["share_two_level"] = _two_level(replicates, seeds, keys,
                                                       gain_share("teacher", "maskinv_lg", "maskinv_adapt"))
            uu = {n: (n, bench, UU, "accuracy") for n in ("teacher", "maskinv_adapt")}
            adapt_goal["uu_two_level"] = _two_level(replicates, seeds, uu, contrast("teacher", "maskinv_adapt"))
    return {
        "seeds": seeds,
        "adapt_vs_lg": adapt_goal,
        "settings": {k: v for k, v in s.items() if k != "seed"},
        "models": models,
        "comparisons": comparisons,
        "timings_s": {str(sd): docs[sd]["timings"].get("total_s") for sd in seeds},
        # every seed is reported, collapsed ones included: what the collapse checks found per seed
        # (None: a seed evaluated before the checks existed)
        "warnings": {str(sd): docs[sd].get("warnings") for sd in seeds},
        "titles": {n: model_title(n, s) for n in first["models"]},
    }


def _pm(st: dict) -> str:
    return f"{st['mean']:.2f} ± {st['sd']:.2f}" if st.get("sd") is not None else f"{st['mean']:.2f}"


def _ci(ci: list | None) -> str:
    return "n/a" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}]"


def _hg_lambda(s: dict) -> float:
    """HG's λ as trained: ``lambda_hg_factor × lambda_lg`` when the factor is set (DemoSettings.lambda_hg_used)."""
    f = s.get("lambda_hg_factor")
    return float(s["lambda_hg"]) if f is None else float(f) * float(s["lambda_lg"])


def summary_markdown(summary: dict) -> str:
    s = summary["settings"]
    seeds = summary["seeds"]
    protos = [p for p in _PROTO if any(p in m for m in summary["models"].values())]
    lines = [
        f"# MaskInv seed study on SynthFaces: seeds {', '.join(map(str, seeds))}", "",
        f"Per seed: {s['identities']} identities × {s['images_per_identity']} images at {s['size']} px, "
        f"{s['teacher_steps']} teacher / {s['student_steps']} student steps (HG and control +{s['hg_steps']}), "
        f"batch {s['batch_size']}, --minutes {s['minutes']:g}, λ LG {s['lambda_lg']:g} / HG {_hg_lambda(s):g}; "
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
              "Two-level: the 95 % interval of the mean over seeds from a bootstrap of seeds, then of identities "
              "within each drawn seed (the claim across seeds rests on it, not on a count of seeds); non-inferior: "
              f"its lower bound on accuracy ≥ −{NONINFERIORITY_POINTS:g} point.", "",
              "| B − A | protocol | metric | mean over seeds [95 % t-CI] | two-level 95 % CI | per seed: diff [bootstrap CI] |",
              "|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        a, b = SHORT_NAMES.get(c["model_a"], c["model_a"]), SHORT_NAMES.get(c["model_b"], c["model_b"])
        for m, lab in (("accuracy", "acc"), ("eer", "EER")):
            if m not in c:
                continue
            per = "; ".join(f"{p['seed']}: {signed(p[m]['diff'])} {_ci(p[m]['ci95'])}" for p in c["per_seed"] if m in p)
            tl = c[m].get("two_level")
            two = "n/a (no replicates)" if not tl else _ci(tl["ci95"]) + (
                " non-inferior" if c[m].get("non_inferior") else (" not non-inferior" if m == "accuracy" else ""))
            lines.append(f"| {b} − {a} | {_PROTO.get(c['protocol'], c['protocol'])} | {lab} | "
                         f"{signed(c[m]['mean'])} {_ci(c[m]['ci95'])} | {two} | {per} |")
    goal = summary.get("adapt_vs_lg")
    if goal:
        lines += ["", "## MaskInv-adapt against MaskInv-LG (accuracy points, per seed; mean: the mean gains and their ratio)",
                  "", adapt_vs_lg_markdown({**goal["per_seed"], "mean": goal["mean"]}), "",
                  f"Seeds meeting both goals by point estimate (share ≥ 50 %, U-U ≥ −1.00): "
                  f"{goal['seeds_meeting_both']}/{len(goal['per_seed'])}."]
        sh, uu = goal.get("share_two_level"), goal.get("uu_two_level")
        if sh and sh["ci95"]:
            lines.append(f"Share of LG's M-U gain (ratio of the means over seeds): {100 * sh['estimate']:.0f} % "
                         f"[{100 * sh['ci95'][0]:.0f} %, {100 * sh['ci95'][1]:.0f} %] (two-level 95 %); the goal "
                         f"(≥ 50 %) is met by its bound: {'yes' if sh['ci95'][0] >= 0.5 else 'no'}.")
        if uu and uu["ci95"]:
            lines.append(f"adapt − teacher U-U: {signed(uu['estimate'])} {_ci(uu['ci95'])} (two-level 95 %); "
                         f"non-inferior (lower bound ≥ −1): {'yes' if uu['ci95'][0] >= -1 else 'no'}.")
    warn = summary.get("warnings") or {}
    if warn:
        from .report import SHORT_NAMES as _S

        lines += ["", "## Collapse checks per seed (every seed is in the tables above, collapsed ones included)", ""]
        for sd, ws in warn.items():
            if ws is None:
                lines.append(f"- seed {sd}: not checked (evaluated before the checks existed)")
            elif not ws:
                lines.append(f"- seed {sd}: no warning")
            else:
                lines += [f"- seed {sd}: **{_S.get(w['model'], w['model'])}**"
                          f"{' ' + _PROTO.get(w.get('protocol') or '', '') if w.get('protocol') else ''}: {w['message']}"
                          for w in ws]
    t = summary["timings_s"]
    lines += ["", "Wall time per seed (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in t.items() if v is not None), ""]
    return "\n".join(lines)

"""Paired bootstrap speed: 3,000 pairs x 1,000 replicates x 2 models (accuracy + EER).

Figures: seconds for one ``paired_bootstrap`` call (best of ``--repeat``), split into drawing
the replicates and re-running each metric on all replicates of one model; pairs x replicates
per second; the same with cluster resampling (100 identities). One thread, as a reviewer's
laptop would run it: set ``OMP_NUM_THREADS=1`` (NumPy's bincount/cumsum are single-threaded anyway).

Run: ``.venv/bin/python -m benchmarks.bench_bootstrap [--pairs 3000] [--boot 1000]``.
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks._common import report, timeit, write_result
from maskinv.evaluate.bootstrap import Resamples, metrics_on_resamples, paired_bootstrap


def two_models(n: int, seed: int = 0):
    """Correlated cosine-like scores of two models on the same pairs (half genuine)."""
    rng = np.random.default_rng(seed)
    g = rng.random(n) < 0.5
    z = rng.normal(size=n)
    a = np.where(g, 0.40, 0.05) + 0.15 * (0.8 * z + 0.6 * rng.normal(size=n))
    b = np.where(g, 0.44, 0.05) + 0.15 * (0.8 * z + 0.6 * rng.normal(size=n))
    return a.astype(np.float32), b.astype(np.float32), g


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    a, b, g = two_models(args.pairs)
    a64 = a.astype(np.float64)
    groups = np.arange(args.pairs) % 100

    t_call = timeit(lambda: paired_bootstrap(a, b, g, n_boot=args.boot), repeat=args.repeat)
    t_draw = timeit(lambda: Resamples.stratified(g, args.boot, np.random.default_rng(0), 10), repeat=args.repeat)
    rs = Resamples.stratified(g, args.boot, np.random.default_rng(0), 10)
    t_acc = timeit(lambda: metrics_on_resamples(a64, g, rs, ["accuracy"]), repeat=args.repeat)
    t_eer = timeit(lambda: metrics_on_resamples(a64, g, rs, ["eer"]), repeat=args.repeat)
    t_clu = timeit(lambda: paired_bootstrap(a, b, g, n_boot=args.boot, groups=groups), repeat=args.repeat)
    res = paired_bootstrap(a, b, g, n_boot=args.boot)
    figures = {
        "pairs": args.pairs, "replicates": args.boot, "models": 2,
        "paired_bootstrap_s": t_call,
        "draw_replicates_s": t_draw,
        "accuracy_one_model_s": t_acc,
        "eer_one_model_s": t_eer,
        "cluster_bootstrap_100_ids_s": t_clu,
        "pair_replicates_per_s": args.pairs * args.boot * 2 / t_call,
        "accuracy_diff_points": res["metrics"]["accuracy"]["diff"],
        "accuracy_ci95": res["metrics"]["accuracy"]["ci95"],
        "eer_diff_points": res["metrics"]["eer"]["diff"],
        "eer_ci95": res["metrics"]["eer"]["ci95"],
    }
    report("bootstrap", {
        f"paired_bootstrap {args.pairs} pairs x {args.boot} x 2 models (s)": t_call,
        "  draw replicates (s)": t_draw,
        "  accuracy, one model, all replicates (s)": t_acc,
        "  EER, one model, all replicates (s)": t_eer,
        "cluster bootstrap, 100 identities (s)": t_clu,
        "pair-replicates per second": figures["pair_replicates_per_s"],
        "accuracy B-A (points) [95% CI]": f"{figures['accuracy_diff_points']:+.2f} {figures['accuracy_ci95']}",
        "EER B-A (points) [95% CI]": f"{figures['eer_diff_points']:+.2f} {figures['eer_ci95']}",
    })
    print(f"  written {write_result('bootstrap', figures)}")
    return figures


if __name__ == "__main__":
    main()

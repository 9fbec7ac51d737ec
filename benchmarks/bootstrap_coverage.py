"""Coverage of the bootstrap intervals with identity effects (issue 23): pairs, one-way clusters
(the first image's identity) and the identity (vertex) bootstrap of both identities.

A simulated test set: ``ids`` identities x ``per`` pairs each (half genuine, impostor partners drawn
at random); each identity shifts both models' scores (sd ``id_sd``, a harder or easier face) and
model B's gain varies by identity (sd ``gain_sd``), so the pairs of an identity are correlated; the
scores otherwise follow two correlated models (as ``tests/test_bootstrap.py``). The true EER
difference is that of one very large draw (6,000 identities). For ``reps`` test sets, each interval
(``boot`` replicates) is checked for covering it; mean widths are reported too. Settings with no
identity effect show how conservative each interval is.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.bootstrap_coverage [--reps 120]`` (about a minute on
one core); writes ``benchmarks/results/bootstrap_coverage.json``.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks._common import report, write_result
from maskinv.evaluate.bootstrap import paired_bootstrap
from maskinv.evaluate.metrics import verification_metrics

MU_A, MU_B, MU_I, SD, RHO = 0.40, 0.45, 0.05, 0.15, 0.6


def draw(rng: np.random.Generator, n_ids: int, per: int, id_sd: float, gain_sd: float):
    """Scores of models A and B, genuine flags and the (N, 2) identities of a simulated test set."""
    n = n_ids * per
    a_id = np.repeat(np.arange(n_ids), per)
    g = np.arange(n) % 2 == 0
    b_id = np.where(g, a_id, (a_id + rng.integers(1, n_ids, n)) % n_ids)
    hard, gain = rng.normal(0, id_sd, n_ids), rng.normal(0, gain_sd, n_ids)
    z = rng.normal(size=n)
    c = math.sqrt(1 - RHO**2)
    eff = np.where(g, hard[a_id], (hard[a_id] + hard[b_id]) / 2)
    geff = np.where(g, gain[a_id], 0.0)
    a = np.where(g, MU_A, MU_I) - eff * np.where(g, 1, -1) + SD * (RHO * z + c * rng.normal(size=n))
    b = np.where(g, MU_B, MU_I) - eff * np.where(g, 1, -1) + geff + SD * (RHO * z + c * rng.normal(size=n))
    return a, b, g, np.stack([a_id, b_id], axis=1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=120)
    ap.add_argument("--boot", type=int, default=150)
    ap.add_argument("--ids", type=int, default=60)
    ap.add_argument("--per", type=int, default=12)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out: dict = {"reps": args.reps, "boot": args.boot, "ids": args.ids, "pairs_per_identity": args.per, "settings": []}
    for id_sd, gain_sd in ((0.12, 0.10), (0.0, 0.0)):
        a, b, g, _ = draw(np.random.default_rng(99), 6000, args.per, id_sd, gain_sd)
        true = 100 * (verification_metrics(b, g)["eer"] - verification_metrics(a, g)["eer"])
        res: dict[str, list] = {"pairs": [], "first identity": [], "both identities": []}
        for r in range(args.reps):
            a, b, g, ids = draw(np.random.default_rng(2000 + r), args.ids, args.per, id_sd, gain_sd)
            for k, grp in (("pairs", None), ("first identity", ids[:, 0]), ("both identities", ids)):
                lo, hi = paired_bootstrap(a, b, g, n_boot=args.boot, seed=r, groups=grp,
                                          metrics=("eer",))["metrics"]["eer"]["ci95"]
                res[k].append((lo <= true <= hi, hi - lo))
        row = {"identity_sd": id_sd, "gain_sd": gain_sd, "true_eer_diff": true,
               **{k: {"coverage": float(np.mean([c for c, _ in v])), "mean_width": float(np.mean([w for _, w in v]))}
                  for k, v in res.items()}}
        out["settings"].append(row)
        report(f"identity sd {id_sd}, gain sd {gain_sd} (true EER difference {true:+.2f} points)",
               {f"{k}: coverage / mean width": f"{row[k]['coverage']:.3f} / {row[k]['mean_width']:.2f}" for k in res})
    out["elapsed_s"] = time.perf_counter() - t0
    write_result("bootstrap_coverage", out)
    return out


if __name__ == "__main__":
    main()

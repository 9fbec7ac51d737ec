"""Verification metrics: sorted/cumulative-count implementation vs the public per-threshold loops.

Figures:
- all metrics (grid and exact accuracy, EER, FMR100/1000, FDR, AUC, TAR@FAR) on 1,000,000 pairs;
- speed ratio on 100,000 pairs against the reference protocol as InsightFace's
  ``verification.py`` runs it: for each of 10 folds, 400 grid thresholds on the training folds
  (plus the per-threshold TPR/FPR pass over the test fold) for accuracy, and 4,000 thresholds
  for VAL at FAR 1e-3 — written here as plain loops, in cosine form (``cos > 1 - t/2``);
  the accuracies must be identical.

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--pairs-large N] [--pairs-ref N]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import report, timeit, write_result
from maskinv.evaluate.metrics import fold_bounds, verification_metrics


def synthetic_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-like float32 scores: half genuine N(0.45, 0.18), half impostor N(0.02, 0.12)."""
    rng = np.random.default_rng(seed)
    genuine = rng.random(n) < 0.5
    s = np.where(genuine, rng.normal(0.45, 0.18, n), rng.normal(0.02, 0.12, n))
    return np.clip(s, -1, 1).astype(np.float32), genuine


def _acc(thr: float, s: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    predict = s > thr
    tp = np.sum(predict & same)
    fp = np.sum(predict & ~same)
    tn = np.sum(~predict & ~same)
    fn = np.sum(~predict & same)
    tpr = 0.0 if tp + fn == 0 else float(tp) / float(tp + fn)
    fpr = 0.0 if fp + tn == 0 else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / s.size


def reference_protocol(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> dict:
    """The public evaluation's loops (accuracy over 400 grid thresholds, VAL over 4,000)."""
    s = scores.astype(np.float64)
    n = s.shape[0]
    acc_thr = 1.0 - np.arange(0, 4, 0.01) / 2.0
    val_thr = 1.0 - np.arange(0, 4, 0.001) / 2.0
    bounds = fold_bounds(n, folds)
    accuracy = np.zeros(folds)
    vals = np.zeros(folds)
    for f in range(folds):
        test = np.arange(bounds[f], bounds[f + 1])
        train = np.setdiff1d(np.arange(n), test)
        acc_train = np.zeros(acc_thr.shape[0])
        for i, t in enumerate(acc_thr):
            acc_train[i] = _acc(t, s[train], same[train])[2]
        best = int(np.argmax(acc_train))
        for t in acc_thr:  # the public code also fills TPR/FPR per threshold on the test fold
            _acc(t, s[test], same[test])
        accuracy[f] = _acc(acc_thr[best], s[test], same[test])[2]
        # VAL @ FAR 1e-3: FAR per threshold on the training folds, interpolate the threshold
        far_train = np.zeros(val_thr.shape[0])
        st, gt = s[train], same[train]
        n_diff = np.sum(~gt)
        for i, t in enumerate(val_thr):
            far_train[i] = np.sum((st > t) & ~gt) / n_diff
        thr = float(np.interp(1e-3, far_train, val_thr)) if far_train.max() >= 1e-3 else 1.0
        p = s[test] > thr
        vals[f] = np.sum(p & same[test]) / max(1, np.sum(same[test]))
    return {"accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)), "val_mean": float(np.mean(vals))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs-large", type=int, default=1_000_000)
    ap.add_argument("--pairs-ref", type=int, default=100_000)
    args = ap.parse_args(argv)

    s_big, g_big = synthetic_scores(args.pairs_large, seed=1)
    t_big = timeit(lambda: verification_metrics(s_big, g_big), repeat=3)
    t_big_exact = timeit(lambda: verification_metrics(s_big, g_big, exact=True), repeat=2)

    s, g = synthetic_scores(args.pairs_ref, seed=2)
    t_ours = timeit(lambda: verification_metrics(s, g), repeat=5)
    ours = verification_metrics(s, g)
    t0 = time.perf_counter()
    ref = reference_protocol(s, g)
    t_ref = time.perf_counter() - t0
    identical = ours["accuracy_mean"] == ref["accuracy_mean"] and ours["accuracy_std"] == ref["accuracy_std"]
    figures = {
        "pairs_large": args.pairs_large,
        "all_metrics_s_large": t_big,
        "all_metrics_exact_s_large": t_big_exact,
        "pairs_ref": args.pairs_ref,
        "ours_s": t_ours,
        "reference_loops_s": t_ref,
        "speedup_vs_reference": t_ref / t_ours,
        "accuracy_ours": ours["accuracy_mean"],
        "accuracy_reference": ref["accuracy_mean"],
        "accuracy_identical": bool(identical),
        "tar_at_far_1e-3_ours": ours["tar_at_far"][1e-3],
        "val_at_far_1e-3_reference": ref["val_mean"],
        "target_speedup": 100.0,
    }
    report("bench_metrics", figures)
    write_result("bench_metrics", figures)
    if not identical:
        raise AssertionError(f"accuracy differs: ours {ours['accuracy_mean']!r} vs reference {ref['accuracy_mean']!r}")
    return figures


if __name__ == "__main__":
    main()

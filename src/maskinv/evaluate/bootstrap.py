"""Paired-bootstrap confidence intervals for the difference between two models on the same pairs.

Both models are scored on one pair list. Each bootstrap replicate draws one resample of the
pairs (the same indices for both models), re-runs every metric on it from scratch and records
``metric(B) - metric(A)``; the 95 % interval is the 2.5th/97.5th percentile of those
differences (percentile bootstrap). Differences are **B − A in percentage points**: a positive
accuracy difference and a negative EER difference mean B is better. See
``docs/evaluation.md`` ("Confidence intervals").

Resampling units
----------------
* ``groups=None``: pairs, drawn with replacement **within** the genuine and the impostor strata,
  so every resample keeps the numbers of genuine and impostor pairs.
* ``groups`` = one cluster id per comparison (e.g. the probe's identity): whole clusters are
  drawn with replacement, each bringing all its comparisons. Use it when comparisons share
  images or identities (probe/reference protocols): their scores are not independent and the
  pair bootstrap would be too narrow.
* ``groups`` of shape (N, 2) = the identities of both sides of every comparison (the pairs'
  identities, :func:`maskinv.evaluate.benchmarks.load_benchmark` ``pair_identity``; probe and
  reference subject): the identity (subject) bootstrap for dyadic data. Identities are drawn
  with replacement; identity ``i`` drawn ``m_i`` times brings each of its genuine pairs
  ``m_i`` times and each impostor pair ``(i, j)`` ``m_i · m_j`` times (every pair between the
  drawn copies; Snijders & Borgatti's vertex bootstrap). This is the resampling the identities
  of a test set call for: a pair of identities ``i, j`` shares both faces' effects with the
  other pairs of ``i`` and of ``j``.

Accuracy: ``exact=False`` re-runs the 10-fold accuracy on the InsightFace grid (0.005 in cosine),
``exact=True`` on every observed score (:func:`maskinv.evaluate.metrics.verification_metrics`
``exact=True``: the middle of the best training plateau); a model whose scores span less than a
grid step reads near 50 % on the grid whatever its ranking, so the study uses ``exact``.

Folds on a resample: the resampled pairs are put **in their original list order** (copies of a
pair next to each other) and split into contiguous folds with sklearn ``KFold(shuffle=False)``
sizes, as :func:`maskinv.evaluate.metrics.fold_bounds` does on the original list. The 10-fold
accuracy then picks each fold's threshold on the other folds of the resample over the
InsightFace grid. With every pair drawn once this is exactly ``verification_metrics`` (tested).

Speed: per model the scores are coded once (grid bin per pair, distinct-score rank per pair);
each replicate is then only histograms (``np.bincount``) and cumulative sums over all
replicates at once — no Python loop over replicates, folds or thresholds.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError, UnknownNameError
from maskinv.masks.protocols import PROBE_REF, TITLES
# the parts of the bootstrap, re-exported here (public names of this module)
from maskinv.evaluate.replicate_metrics import METRICS, metrics_on_resamples
from maskinv.evaluate.resampling import DyadicResamples, Resamples
from maskinv.evaluate.seed_stats import contrast, gain_share, seed_summary, t_quantile_975, two_level_bootstrap

__all__ = ["METRICS", "DyadicResamples", "Resamples", "comparison_entry", "contrast", "gain_share",
           "metrics_on_resamples", "paired_bootstrap", "render_comparisons_markdown", "results_comparisons",
           "seed_summary", "signed", "t_quantile_975", "two_level_bootstrap"]


# ----------------------------------------------------------------------------- input checks
def _validate(scores_a: Any, scores_b: Any, issame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, x in (("scores_a", scores_a), ("scores_b", scores_b)):
        s = np.asarray(x)
        if s.ndim != 1 or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
            raise DataFormatError(f"{name}: expected a 1-D numeric array, got shape {s.shape} dtype {s.dtype}")
        s = s.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(s))
        if bad.size:
            raise DataFormatError(f"{name}: pair {int(bad[0])} has a non-finite score; {bad.size} such pairs")
        arrays.append(s)
    g = np.asarray(issame)
    if g.ndim != 1:
        raise DataFormatError(f"issame: expected a 1-D array, got shape {g.shape}")
    if g.dtype != np.bool_:
        if not (np.issubdtype(g.dtype, np.integer) or np.issubdtype(g.dtype, np.floating)) or np.any((g != 0) & (g != 1)):
            raise DataFormatError("issame: labels must be booleans or 0/1")
        g = g == 1
    if not (arrays[0].shape == arrays[1].shape == g.shape):
        raise DataFormatError(f"scores_a, scores_b and issame differ in length: "
                              f"{arrays[0].shape[0]}, {arrays[1].shape[0]}, {g.shape[0]}")
    if g.all() or not g.any():
        raise DataFormatError(f"issame: all {g.shape[0]} pairs are {'genuine' if g.all() else 'impostor'}; "
                              "metrics need both genuine and impostor pairs")
    return arrays[0], arrays[1], g



# ----------------------------------------------------------------------------- public API
def paired_bootstrap(scores_a: Any, scores_b: Any, issame: Any, *, n_boot: int = 1000, seed: int = 0,
                     metrics: Sequence[str] = ("accuracy", "eer"), groups: Any = None,
                     folds: int = 10, memo: dict | None = None, exact: bool = False,
                     keep_replicates: bool = False) -> dict[str, Any]:
    """Paired bootstrap of ``metric(B) - metric(A)`` (percentage points) with 95 % percentile CIs.

    Args:
        scores_a, scores_b: (N,) similarities of models A and B on the same N pairs.
        issame: (N,) booleans or 0/1, True for genuine pairs.
        n_boot: bootstrap replicates.
        seed: seed of the ``numpy.random.Generator`` drawing the replicates.
        metrics: any of ``accuracy`` (10-fold, InsightFace grid), ``eer``, ``fmr100``, ``fmr1000``
            (FNMR at FMR <= 1e-3 = 1 - TAR at FAR 1e-3).
        groups: None (stratified pair bootstrap), (N,) cluster ids (clusters are resampled with
            all their comparisons) or (N, 2) identities of both sides of each comparison (the
            identity bootstrap: see the module docstring).
        folds: folds of the accuracy protocol.
        exact: accuracy with thresholds at the observed scores instead of the InsightFace grid.
        keep_replicates: also return ``replicates`` ``{"a": {metric: (B,) points}, "b": ...}``.
        memo: a dict shared by calls on the same pairs (same ``issame``/``groups`` objects, same
            ``n_boot``/``seed``/``folds``): the resamples and each score array's metrics are computed
            once (the results are the same as without it).

    Returns:
        ``{"difference": "b - a", "unit": "points", "n_boot", "seed", "resampling", "folds",
        "n_pairs", "n_genuine", "n_impostor", "n_clusters", "metrics": {name: {"a", "b",
        "diff", "ci95": [low, high], "se"}}}``; ``a``/``b``/``diff`` are the values on the full
        list, ``se`` the standard deviation of the bootstrap differences.
    """
    a, b, g = _validate(scores_a, scores_b, issame)
    metrics = list(dict.fromkeys(metrics))
    for m in metrics:
        if m not in METRICS:
            raise UnknownNameError(f"bootstrap metric {m!r}: known metrics are {', '.join(METRICS)}")
    if not metrics:
        raise ConfigError("paired_bootstrap: metrics is empty")
    if int(n_boot) < 1 or int(folds) < 1:
        raise ConfigError(f"paired_bootstrap: n_boot and folds must be >= 1, got {n_boot} and {folds}")
    n_boot, folds = int(n_boot), int(folds)
    n = g.shape[0]
    memo = {} if memo is None else memo
    refs = memo.setdefault("_refs", [])  # keep keyed objects alive: their id()s stay unique
    refs += [issame, groups, scores_a, scores_b]
    rs_key = ("rs", id(issame), id(groups), n_boot, int(seed), folds, tuple(metrics), bool(exact))
    if rs_key in memo:
        rs, n_clusters, unit = memo[rs_key]
    else:
        rs, n_clusters, unit = memo[rs_key] = _resamples(g, groups, n_boot, seed, folds)
    full = Resamples.identity(n, folds)

    def on(orig: Any, x: np.ndarray, which: str, r: Resamples) -> dict[str, np.ndarray]:
        key = (which, id(orig), rs_key)
        if key not in memo:
            memo[key] = metrics_on_resamples(x, g, r, metrics, exact=exact)
        return memo[key]

    out_metrics: dict[str, Any] = {}
    va, vb = on(scores_a, a, "full", full), on(scores_b, b, "full", full)
    ba = on(scores_a, a, "boot", rs)
    bb = ba if b is a or np.array_equal(a, b) else on(scores_b, b, "boot", rs)
    for m in metrics:
        d = 100.0 * (bb[m] - ba[m])
        lo, hi = np.percentile(d, [2.5, 97.5])
        out_metrics[m] = {"a": 100.0 * float(va[m][0]), "b": 100.0 * float(vb[m][0]),
                          "diff": 100.0 * float(vb[m][0] - va[m][0]), "ci95": [float(lo), float(hi)],
                          "se": float(np.std(d, ddof=1)) if n_boot > 1 else 0.0}
    out = {"difference": "b - a", "unit": "points", "n_boot": n_boot, "seed": int(seed), "resampling": unit,
           "folds": folds, "n_pairs": n, "n_genuine": int(g.sum()), "n_impostor": int((~g).sum()),
           "n_clusters": n_clusters, "accuracy_protocol": "exact-midpoints" if exact else "insightface-grid",
           "metrics": out_metrics}
    if keep_replicates:
        out["replicates"] = {"a": {m: 100.0 * ba[m] for m in metrics}, "b": {m: 100.0 * bb[m] for m in metrics}}
    return out


def _resamples(g: np.ndarray, groups: Any, n_boot: int, seed: int, folds: int) -> tuple[Resamples, int | None, str]:
    """The replicates of :func:`paired_bootstrap`: stratified pairs, or whole clusters of ``groups``."""
    rng = np.random.default_rng(seed)
    n = g.shape[0]
    if groups is None:
        rs, n_clusters, unit = Resamples.stratified(g, n_boot, rng, folds), None, "pairs within genuine/impostor strata"
    else:
        gr = np.asarray(groups)
        if gr.shape not in ((n,), (n, 2)):
            raise DataFormatError(f"groups: expected one cluster id per pair, shape ({n},), or the identities of "
                                  f"both sides of every pair, shape ({n}, 2); got {gr.shape}")
        _, codes = np.unique(gr.ravel(), return_inverse=True)
        codes = codes.reshape(gr.shape).astype(np.int64)
        n_clusters = int(codes.max()) + 1
        if n_clusters < 2:
            raise DataFormatError("groups: a single cluster; the cluster bootstrap needs at least 2")
        if gr.ndim == 2:  # replicates checked while drawn (and drawn again when unmeasurable)
            return Resamples.dyadic(codes, n_boot, rng, folds, genuine=g), n_clusters, "identities (both sides of every pair)"
        unit = "clusters (groups)"
        rs = Resamples.clustered(codes, n_boot, rng, folds)
        n_gen_rep = rs.per_replicate(g.astype(np.float64))
        if np.any(n_gen_rep == 0) or np.any(n_gen_rep == rs.sizes):
            raise DataFormatError("groups: a cluster resample holds only genuine or only impostor pairs; "
                                  "use more clusters or clusters that hold both kinds")
    return rs, n_clusters, unit


def comparison_entry(model_a: str, model_b: str, benchmark: str, protocol: str, result: dict) -> dict[str, Any]:
    """One entry of ``results.json``'s top-level ``comparisons`` list (see docs/evaluation.md)."""
    entry: dict[str, Any] = {"model_a": model_a, "model_b": model_b, "benchmark": benchmark, "protocol": protocol,
                             "difference": "model_b - model_a", "n_boot": result["n_boot"],
                             "resampling": result["resampling"], "unit": "points"}
    for m, v in result["metrics"].items():
        entry[m] = {"diff": round(v["diff"], 6), "ci95": [round(v["ci95"][0], 6), round(v["ci95"][1], 6)],
                    "a": round(v["a"], 6), "b": round(v["b"], 6)}
    return entry


def results_comparisons(results: Sequence[dict], *, n_boot: int = 1000, seed: int = 0,
                        pairs: Sequence[tuple] | None = None, metrics: Sequence[str] = ("accuracy", "eer"),
                        cluster_key: str = "probe_identity", cluster_protocols: Sequence[str] = (PROBE_REF,),
                        groups: Mapping[Any, Any] | None = None, exact: bool = False,
                        replicates: dict | None = None) -> list[dict[str, Any]]:
    """``comparisons`` entries for the per-pair scores of a results document's ``results`` list.

    ``results``: entries ``{"model", "benchmark", "protocol", "metrics": {"scores", "genuine", ...}}``
    (:func:`maskinv.evaluate.evaluate_models`). Two models are compared on the same benchmark and
    protocol, paired by pair index. ``pairs``: ``(model_a, model_b)`` or ``(model_a, model_b,
    protocols)`` to compare (B − A); default every pair of models in result order.

    Resampling unit of a cell (benchmark, protocol): ``groups[(benchmark, protocol)]`` or else
    ``groups[benchmark]`` when given (the (N, 2) pair identities of a benchmark, the same for its
    uu/mu/mm; the (N, 2) probe/reference subjects of probe_ref): the identity bootstrap; else a
    protocol of ``cluster_protocols`` (comparisons share images) by the ``cluster_key`` array of its
    metrics and skipped when that array is absent; else pairs (stratified), with ``resampling``
    saying so. ``exact``: accuracy with thresholds at the observed scores. ``replicates``: a dict
    that receives, per ``(model, benchmark, protocol)`` of every model of a compared cell, ``{metric:
    (B + 1,) points}`` (the full list's value first, then the replicates; every model of a cell on
    the same resamples), the material of :func:`two_level_bootstrap`.
    """
    by_key: dict[tuple, dict] = {}
    models: list[str] = []
    cells: list[tuple] = []
    for e in results:
        by_key[(e["model"], e["benchmark"], e["protocol"])] = e["metrics"]
        models += [e["model"]] if e["model"] not in models else []
        cells += [(e["benchmark"], e["protocol"])] if (e["benchmark"], e["protocol"]) not in cells else []
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    out: list[dict[str, Any]] = []
    memos: dict[tuple, dict] = {}  # per (benchmark, protocol): resamples and each model's metrics computed once
    for pair in pairs:
        a, b = pair[0], pair[1]
        protos = None if len(pair) < 3 or pair[2] is None else set(pair[2])
        for bench, proto in cells:
            ma, mb = by_key.get((a, bench, proto)), by_key.get((b, bench, proto))
            if ma is None or mb is None or (protos is not None and proto not in protos):
                continue
            if "scores" not in ma or "scores" not in mb:
                raise DataFormatError(f"comparison {b} - {a} on {bench} {proto}: the results hold no per-pair scores")
            ga, gb = np.asarray(ma["genuine"]), np.asarray(mb["genuine"])
            if ga.shape != gb.shape or not np.array_equal(ga, gb):
                raise DataFormatError(f"comparison {b} - {a} on {bench} {proto}: the models were not scored on the "
                                      f"same pairs ({ga.shape[0]} vs {gb.shape[0]} pairs or other labels)")
            cell_groups_given = None
            if groups is not None:
                cell_groups_given = groups.get((bench, proto), groups.get(bench))
            if cell_groups_given is None and proto in cluster_protocols:
                if cluster_key not in ma:
                    continue  # no identity clusters: a pair bootstrap would be too narrow
                cell_groups_given = ma[cluster_key]
            use = [m for m in metrics if not (m == "accuracy" and ma.get("accuracy_mean", 0) is None)]
            memo = memos.setdefault((bench, proto), {})
            # one labels/groups object per cell (the models' copies are equal): the resamples are shared
            cell_g, cell_groups = memo.setdefault("_cell", (ma["genuine"], cell_groups_given))
            res = paired_bootstrap(ma["scores"], mb["scores"], cell_g, n_boot=n_boot, seed=seed, metrics=use,
                                   groups=cell_groups, memo=memo, exact=exact, keep_replicates=replicates is not None)
            out.append(comparison_entry(a, b, bench, proto, res))
            if replicates is not None:
                memo.setdefault("_use", use)
                for name, side in ((a, "a"), (b, "b")):
                    replicates[(name, bench, proto)] = {
                        m: np.concatenate([[res["metrics"][m][side]], res["replicates"][side][m]]) for m in use}
    if replicates is not None:
        # every other model of a compared cell on the same resamples (e.g. the teacher on M-U for a gain ratio)
        for e in results:
            key = (e["model"], e["benchmark"], e["protocol"])
            memo = memos.get(key[1:])
            if key in replicates or memo is None or "_use" not in memo:
                continue
            cell_g, cell_groups = memo["_cell"]
            res = paired_bootstrap(e["metrics"]["scores"], e["metrics"]["scores"], cell_g, n_boot=n_boot, seed=seed,
                                   metrics=memo["_use"], groups=cell_groups, memo=memo, exact=exact,
                                   keep_replicates=True)
            replicates[key] = {m: np.concatenate([[res["metrics"][m]["a"]], res["replicates"]["a"][m]])
                               for m in memo["_use"]}
    return out


# ----------------------------------------------------------------------------- Markdown
_METRIC_NAMES = {"accuracy": "accuracy", "eer": "EER", "fmr100": "FMR100", "fmr1000": "FMR1000"}


def signed(x: float) -> str:
    """``+1.23`` / ``−1.23`` (a typographic minus): points in the Markdown tables of the project."""
    return f"{x:+.2f}".replace("-", "\u2212")


def render_comparisons_markdown(entries: Sequence[dict], names: dict[str, str] | None = None) -> str:
    """One Markdown list line per comparison, e.g.
    ``- LG − Aug, M-U: accuracy +0.40 [−0.10, +0.93] points; EER −0.50 [−0.90, −0.12] points``."""
    names = names or {}
    lines = []
    for e in entries:
        a, b = names.get(e["model_a"], e["model_a"]), names.get(e["model_b"], e["model_b"])
        proto = TITLES.get(str(e["protocol"]).lower(), e["protocol"])
        where = f"{e['benchmark']} {proto}" if e.get("benchmark") else proto
        parts = [f"{_METRIC_NAMES[m]} {signed(e[m]['diff'])} [{signed(e[m]['ci95'][0])}, {signed(e[m]['ci95'][1])}] "
                 f"{e.get('unit', 'points')}" for m in METRICS if m in e]
        lines.append(f"- {b} \u2212 {a}, {where}: " + "; ".join(parts))
    return "\n".join(lines) + ("\n" if lines else "")

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

import math
from typing import Any, Iterable, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError, UnknownNameError
from maskinv.evaluate.metrics import fold_bounds, insightface_cosine_thresholds
from maskinv.masks.protocols import TITLES

#: Metrics the bootstrap can re-run, all reported in percentage points.
METRICS = ("accuracy", "eer", "fmr100", "fmr1000")
_CHUNK_ELEMENTS = 8_000_000  # histogram cells per chunk of replicates (bounds memory, ~64 MB)


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


# ----------------------------------------------------------------------------- resampling
class Resamples:
    """Replicates as flat arrays sorted by (replicate, original pair index).

    ``rep[i]`` is the replicate of entry ``i``, ``pair[i]`` the original pair index, ``fold[i]``
    its fold inside the replicate; ``sizes[r]`` the number of pairs of replicate ``r``.
    """

    def __init__(self, rep: np.ndarray, pair: np.ndarray, sizes: np.ndarray, folds: int,
                 fold: np.ndarray | None = None):
        if np.any(sizes < folds):
            raise DataFormatError(f"a resample has {int(sizes.min())} pairs, fewer than {folds} folds")
        self.rep, self.pair, self.sizes, self.folds = rep, pair, sizes, folds
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        if fold is None:
            pos = np.arange(rep.shape[0], dtype=np.int64) - self.starts[:-1][rep]  # position in the replicate
            n = sizes[rep]
            q, r = n // folds, n % folds  # KFold(shuffle=False): the first n % folds folds get q + 1
            fold = np.where(pos < r * (q + 1), pos // (q + 1), r + (pos - r * (q + 1)) // q)
        self.fold = fold

    @property
    def count(self) -> int:
        return int(self.sizes.shape[0])

    @classmethod
    def identity(cls, n: int, folds: int) -> "Resamples":
        """The original list once: metrics on it equal ``verification_metrics``."""
        return cls(np.zeros(n, np.int64), np.arange(n, dtype=np.int64), np.array([n], np.int64), folds)

    @classmethod
    def stratified(cls, genuine: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int) -> "Resamples":
        gen, imp = np.flatnonzero(genuine), np.flatnonzero(~genuine)
        n = genuine.shape[0]
        offset = (np.arange(n_boot, dtype=np.int64) * n)[:, None]
        # multiplicity of each pair in each replicate, then the pairs in original order: O(B n), no sort
        counts = np.bincount((gen[rng.integers(0, gen.size, (n_boot, gen.size))] + offset).ravel(), minlength=n_boot * n)
        counts += np.bincount((imp[rng.integers(0, imp.size, (n_boot, imp.size))] + offset).ravel(), minlength=n_boot * n)
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), n_boot), counts)
        sizes = np.full(n_boot, n, np.int64)
        fold_of_pos = np.repeat(np.arange(folds, dtype=np.int64), np.diff(fold_bounds(n, folds)))
        return cls(np.repeat(np.arange(n_boot, dtype=np.int64), n), pair, sizes, folds, np.tile(fold_of_pos, n_boot))

    @classmethod
    def clustered(cls, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int) -> "Resamples":
        n = codes.shape[0]
        k = int(codes.max()) + 1
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=k)
        starts = np.cumsum(counts) - counts
        drawn = rng.integers(0, k, (n_boot, k)).ravel()
        cnt = counts[drawn]
        total = int(cnt.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        pair = order[np.repeat(starts[drawn], cnt) + within]
        sizes = cnt.reshape(n_boot, k).sum(axis=1)
        rep = np.repeat(np.arange(n_boot, dtype=np.int64), sizes)
        key = np.sort(rep * n + pair)  # original list order inside each replicate
        return cls(key // n, key % n, sizes, folds)

    def chunks(self, cells_per_replicate: int):
        """Slices of whole replicates holding at most ~_CHUNK_ELEMENTS histogram cells."""
        step = max(1, _CHUNK_ELEMENTS // max(1, cells_per_replicate))
        for r0 in range(0, self.count, step):
            r1 = min(self.count, r0 + step)
            yield r0, r1, slice(int(self.starts[r0]), int(self.starts[r1]))


# ----------------------------------------------------------------------------- batched metrics
def _accuracy(scores: np.ndarray, genuine: np.ndarray, rs: Resamples) -> np.ndarray:
    """10-fold accuracy (InsightFace grid) of every replicate, as ``verification_metrics``."""
    thr = insightface_cosine_thresholds()  # descending; "same" iff score > thr[k]
    K = thr.shape[0]
    # per pair: the first grid index k whose threshold it exceeds (k0 = #thresholds >= score)
    k0 = K - np.searchsorted(thr[::-1], scores, side="left")
    # Counts change only at grid indices that are some pair's k0, so the grid is cut into
    # segments starting at 0 and at each such index; all k of a segment give the same counts
    # and the first best k (np.argmax in grid order) is a segment start. Work per segment.
    cand = np.union1d([0], k0[k0 < K])
    C = cand.shape[0]
    code = np.searchsorted(cand, k0, side="left")  # first segment whose start >= k0; C = never "same"
    F = rs.folds
    out = np.empty(rs.count)
    for r0, r1, sl in rs.chunks(F * 2 * (C + 1)):
        p = rs.pair[sl]
        key = (((rs.rep[sl] - r0) * F + rs.fold[sl]) * 2 + genuine[p]) * (C + 1) + code[p]
        h = np.bincount(key, minlength=(r1 - r0) * F * 2 * (C + 1)).reshape(r1 - r0, F, 2, C + 1)
        # correct(j) = #genuine with score > thr + #impostors with score <= thr
        #            = cumsum(genuine - impostor)[j] + #impostors: one cumulative sum per fold
        d = np.cumsum(h[:, :, 1, :C] - h[:, :, 0, :C], axis=-1)  # (R, F, C)
        n_imp = h[:, :, 0, :].sum(axis=-1)
        # training folds: the other folds' sum; its constant #impostors does not move the argmax
        train = d.sum(axis=1, keepdims=True) - d if F > 1 else d
        best = np.argmax(train, axis=-1)[..., None]  # first best in grid order, as np.argmax
        correct = np.take_along_axis(d, best, axis=-1)[..., 0] + n_imp
        out[r0:r1] = (correct / (n_imp + h[:, :, 1, :].sum(axis=-1))).mean(axis=1)
    return out


def _operating(scores: np.ndarray, genuine: np.ndarray, rs: Resamples, far: float | None) -> np.ndarray:
    """EER (``far=None``) or the lowest FNMR at FMR <= far of every replicate.

    Cuts run over the distinct scores of the whole list; a cut at a value absent from a
    replicate repeats the replicate's next cut, which leaves the EER interpolation and the
    FNMR at a FMR target unchanged (the first cut with FMR <= FNMR, or FMR <= far, and the
    cut before it are real cuts of the replicate).
    """
    u, inv = np.unique(scores, return_inverse=True)
    U = u.shape[0]
    out = np.empty(rs.count)
    for r0, r1, sl in rs.chunks(2 * (U + 1)):
        p = rs.pair[sl]
        h = np.bincount(((rs.rep[sl] - r0) * 2 + genuine[p]) * U + inv[p],
                        minlength=(r1 - r0) * 2 * U).reshape(r1 - r0, 2, U)
        ih, gh = h[:, 0], h[:, 1]
        n_imp, n_gen = ih.sum(axis=1, keepdims=True), gh.sum(axis=1, keepdims=True)
        zero = np.zeros((r1 - r0, 1), np.int64)
        fa = np.concatenate([np.cumsum(ih[:, ::-1], axis=1)[:, ::-1], zero], axis=1)  # impostors >= u[j]
        fr = np.concatenate([zero, np.cumsum(gh, axis=1)], axis=1)  # genuine < u[j]
        fmr, fnmr = fa / n_imp, fr / n_gen
        rows = np.arange(r1 - r0)
        if far is None:
            d = fmr - fnmr  # 1 at the first cut, -1 at the last
            k = np.argmax(d <= 0, axis=1)
            dk, dk1 = d[rows, k], d[rows, k - 1]
            with np.errstate(invalid="ignore", divide="ignore"):
                a = np.where(dk == 0, 0.0, dk1 / (dk1 - dk))
            f0, f1 = fmr[rows, k - 1], fmr[rows, k]
            out[r0:r1] = np.where(dk == 0, f1, f0 + a * (f1 - f0))
        else:
            if np.any(n_imp[:, 0] * far < 1.0 - 1e-9):
                raise DataFormatError(f"a resample has {int(n_imp.min())} impostor pairs: FNMR at FMR <= {far:g} "
                                      f"needs >= {int(math.ceil(1.0 / far - 1e-9))}")
            j = np.argmax(fmr <= far, axis=1)
            out[r0:r1] = fnmr[rows, j]
    return out


def metrics_on_resamples(scores: np.ndarray, genuine: np.ndarray, rs: Resamples,
                         metrics: Iterable[str]) -> dict[str, np.ndarray]:
    """Each metric (a fraction, not points) of every replicate of ``rs``."""
    fns = {"accuracy": lambda: _accuracy(scores, genuine, rs),
           "eer": lambda: _operating(scores, genuine, rs, None),
           "fmr100": lambda: _operating(scores, genuine, rs, 1e-2),
           "fmr1000": lambda: _operating(scores, genuine, rs, 1e-3)}
    return {m: fns[m]() for m in metrics}


# ----------------------------------------------------------------------------- public API
def paired_bootstrap(scores_a: Any, scores_b: Any, issame: Any, *, n_boot: int = 1000, seed: int = 0,
                     metrics: Sequence[str] = ("accuracy", "eer"), groups: Any = None,
                     folds: int = 10, memo: dict | None = None) -> dict[str, Any]:
    """Paired bootstrap of ``metric(B) - metric(A)`` (percentage points) with 95 % percentile CIs.

    Args:
        scores_a, scores_b: (N,) similarities of models A and B on the same N pairs.
        issame: (N,) booleans or 0/1, True for genuine pairs.
        n_boot: bootstrap replicates.
        seed: seed of the ``numpy.random.Generator`` drawing the replicates.
        metrics: any of ``accuracy`` (10-fold, InsightFace grid), ``eer``, ``fmr100``, ``fmr1000``
            (FNMR at FMR <= 1e-3 = 1 - TAR at FAR 1e-3).
        groups: None (stratified pair bootstrap) or (N,) cluster ids (identity of each
            comparison): clusters are resampled with all their comparisons.
        folds: folds of the accuracy protocol.
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
    rs_key = ("rs", id(issame), id(groups), n_boot, int(seed), folds, tuple(metrics))
    if rs_key in memo:
        rs, n_clusters, unit = memo[rs_key]
    else:
        rs, n_clusters, unit = memo[rs_key] = _resamples(g, groups, n_boot, seed, folds)
    full = Resamples.identity(n, folds)

    def on(orig: Any, x: np.ndarray, which: str, r: Resamples) -> dict[str, np.ndarray]:
        key = (which, id(orig), rs_key)
        if key not in memo:
            memo[key] = metrics_on_resamples(x, g, r, metrics)
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
    return {"difference": "b - a", "unit": "points", "n_boot": n_boot, "seed": int(seed), "resampling": unit,
            "folds": folds, "n_pairs": n, "n_genuine": int(g.sum()), "n_impostor": int((~g).sum()),
            "n_clusters": n_clusters, "metrics": out_metrics}


def _resamples(g: np.ndarray, groups: Any, n_boot: int, seed: int, folds: int) -> tuple[Resamples, int | None, str]:
    """The replicates of :func:`paired_bootstrap`: stratified pairs, or whole clusters of ``groups``."""
    rng = np.random.default_rng(seed)
    n = g.shape[0]
    if groups is None:
        rs, n_clusters, unit = Resamples.stratified(g, n_boot, rng, folds), None, "pairs within genuine/impostor strata"
    else:
        gr = np.asarray(groups)
        if gr.shape != (n,):
            raise DataFormatError(f"groups: expected one cluster id per pair, shape ({n},), got {gr.shape}")
        _, codes = np.unique(gr, return_inverse=True)
        codes = codes.reshape(-1).astype(np.int64)
        n_clusters, unit = int(codes.max()) + 1, "clusters (groups)"
        if n_clusters < 2:
            raise DataFormatError("groups: a single cluster; the cluster bootstrap needs at least 2")
        rs = Resamples.clustered(codes, n_boot, rng, folds)
        n_gen_rep = np.bincount(rs.rep, weights=g[rs.pair], minlength=n_boot)
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
                        cluster_key: str = "probe_identity", cluster_protocols: Sequence[str] = ("probe_ref",),
                        ) -> list[dict[str, Any]]:
    """``comparisons`` entries for the per-pair scores of a results document's ``results`` list.

    ``results``: entries ``{"model", "benchmark", "protocol", "metrics": {"scores", "genuine", ...}}``
    (:func:`maskinv.evaluate.evaluate_models`). Two models are compared on the same benchmark and
    protocol, paired by pair index. ``pairs``: ``(model_a, model_b)`` or ``(model_a, model_b,
    protocols)`` to compare (B − A); default every pair of models in result order. A protocol of
    ``cluster_protocols`` (comparisons share images) is resampled by the ``cluster_key`` array of
    its metrics (the probe's identity) and skipped when that array is absent.
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
            groups = None
            if proto in cluster_protocols:
                if cluster_key not in ma:
                    continue  # no identity clusters: a pair bootstrap would be too narrow
                groups = ma[cluster_key]
            use = [m for m in metrics if not (m == "accuracy" and ma.get("accuracy_mean", 0) is None)]
            memo = memos.setdefault((bench, proto), {})
            # one labels/groups object per cell (the models' copies are equal): the resamples are shared
            cell_g, cell_groups = memo.setdefault("_cell", (ma["genuine"], groups))
            res = paired_bootstrap(ma["scores"], mb["scores"], cell_g, n_boot=n_boot, seed=seed, metrics=use,
                                   groups=cell_groups, memo=memo)
            out.append(comparison_entry(a, b, bench, proto, res))
    return out


# ----------------------------------------------------------------------------- across seeds
def _t_two_sided_prob(t: float, nu: int) -> float:
    """P(|T| < t) for Student's t with integer ``nu`` degrees of freedom (A&S 26.7.3/26.7.4)."""
    th = math.atan(t / math.sqrt(nu))
    c2, s = math.cos(th) ** 2, math.sin(th)
    if nu % 2:  # odd
        term, acc = 1.0, 1.0 if nu > 1 else 0.0
        for k in range(1, (nu - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            acc += term
        return (2.0 / math.pi) * (th + (s * math.cos(th) * acc if nu > 1 else 0.0))
    term, acc = 1.0, 1.0
    for k in range(1, nu // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        acc += term
    return s * acc


def t_quantile_975(nu: int) -> float:
    """The 97.5 % quantile of Student's t (bisection on the exact CDF; 1e-12 accurate)."""
    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_prob(mid, nu) < 0.95 else (lo, mid)
    return (lo + hi) / 2


def seed_summary(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean and 95 % t-interval of per-seed differences (one value per independent seed).

    ``ci95 = mean ± t(0.975, n-1) · sd / sqrt(n)`` with the sample standard deviation (ddof 1):
    the seeds are treated as independent draws of the whole training run. With one seed the
    interval is undefined (``None``).
    """
    x = np.asarray(diffs, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise DataFormatError(f"seed_summary: expected a non-empty 1-D list of finite differences, got {diffs!r}")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci95": None, "n": 1, "sd": None}
    sd = float(x.std(ddof=1))
    h = t_quantile_975(x.size - 1) * sd / math.sqrt(x.size)
    return {"mean": mean, "ci95": [mean - h, mean + h], "n": int(x.size), "sd": sd}


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

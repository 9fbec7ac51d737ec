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

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

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
    def from_counts(cls, counts: np.ndarray, folds: int) -> "Resamples":
        """Replicates given by the multiplicity of every pair: ``counts`` (B, n) ints."""
        b, n = counts.shape
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), b), counts.ravel())
        sizes = counts.sum(axis=1).astype(np.int64)
        return cls(np.repeat(np.arange(b, dtype=np.int64), sizes), pair, sizes, folds)

    @classmethod
    def dyadic(cls, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int,
               genuine: np.ndarray | None = None) -> "Resamples":
        """The identity (vertex) bootstrap: ``codes`` (n, 2) identity codes ``0..K-1`` of both sides of
        every pair; each replicate draws K identities with replacement; a pair ``(i, j)`` comes
        ``m_i · m_j`` times (``i != j``) or ``m_i`` times (``i == j``), ``m`` the draw counts.

        With ``genuine`` given, a replicate without genuine or without impostor pairs, or with fewer
        pairs than ``folds`` (possible only with few identities) is drawn again (up to 100 times, then
        :class:`DataFormatError`): the interval is conditional on a measurable replicate. The
        replicates are expanded chunk by chunk (:class:`DyadicResamples`)."""
        return DyadicResamples(codes, n_boot, rng, folds, genuine)

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

    def chunk_arrays(self, cells_per_replicate: int):
        """``(r0, r1, rep - r0, pair, fold)`` per chunk of whole replicates (:meth:`chunks`)."""
        for r0, r1, sl in self.chunks(cells_per_replicate):
            yield r0, r1, self.rep[sl] - r0, self.pair[sl], self.fold[sl]


def _fold_of_position(sizes: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicate (local) and fold of every entry of replicates of ``sizes`` laid end to end
    (``KFold(shuffle=False)`` sizes: the first ``n % folds`` folds get one more)."""
    rep = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pos = np.arange(rep.shape[0], dtype=np.int64) - starts[:-1][rep]
    n = sizes[rep]
    q, r = n // folds, n % folds
    return rep, np.where(pos < r * (q + 1), pos // (q + 1), r + (pos - r * (q + 1)) // q)


class DyadicResamples(Resamples):
    """The identity bootstrap (:meth:`Resamples.dyadic`) without holding every replicate: only the
    identities' draw counts (B, K) are kept, and each chunk of replicates is expanded when a metric
    needs it, so memory stays bounded for large probe/reference sets (P·R comparisons × B)."""

    _ROWS = 16  # replicates expanded at once while drawing (bounds the (rows, n) count matrix)

    def __init__(self, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int,
                 genuine: np.ndarray | None = None):
        self.codes, self.folds = codes, folds
        self._a, self._b = codes[:, 0], codes[:, 1]
        self._same = self._a == self._b
        k = int(codes.max()) + 1
        self.mult = np.zeros((n_boot, k), np.int64)
        sizes = np.empty(n_boot, np.int64)
        for r0 in range(0, n_boot, self._ROWS):
            r1 = min(n_boot, r0 + self._ROWS)
            for attempt in range(101):
                todo = np.arange(r0, r1) if attempt == 0 else bad
                m = np.zeros((todo.size, k), np.int64)
                np.add.at(m, (np.repeat(np.arange(todo.size), k), rng.integers(0, k, (todo.size, k)).ravel()), 1)
                self.mult[todo] = m
                c = self._counts_of(m)
                n_all = c.sum(axis=1)
                sizes[todo] = n_all
                if genuine is None:
                    break
                n_gen = c[:, genuine].sum(axis=1)
                bad = todo[(n_gen == 0) | (n_gen == n_all) | (n_all < folds)]
                if bad.size == 0:
                    break
            else:
                raise DataFormatError(f"identity bootstrap: {k} identities give replicates without genuine or "
                                      f"impostor pairs, or with fewer than {folds} pairs; use more identities")
        if np.any(sizes < folds):
            raise DataFormatError(f"a resample has {int(sizes.min())} pairs, fewer than {folds} folds")
        self.sizes = sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self._full: tuple | None = None

    def _counts_of(self, mult: np.ndarray) -> np.ndarray:
        return np.where(self._same, mult[:, self._a], mult[:, self._a] * mult[:, self._b])

    def _expand(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = self._counts_of(self.mult[r0:r1])
        n = counts.shape[1]
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), r1 - r0), counts.ravel())
        rep, fold = _fold_of_position(self.sizes[r0:r1], self.folds)
        return rep, pair, fold

    def chunk_arrays(self, cells_per_replicate: int):
        r0 = 0
        while r0 < self.count:
            r1 = r0 + 1  # whole replicates, at most ~_CHUNK_ELEMENTS cells and entries (at least one)
            while (r1 < self.count and (r1 + 1 - r0) * cells_per_replicate <= _CHUNK_ELEMENTS
                   and self.starts[r1 + 1] - self.starts[r0] <= _CHUNK_ELEMENTS):
                r1 += 1
            yield (r0, r1, *self._expand(r0, r1))
            r0 = r1

    def _materialize(self) -> tuple:
        if self._full is None:
            rep, pair, fold = self._expand(0, self.count)
            self._full = (rep, pair, fold)
        return self._full

    # the eager attributes, materialised on demand (small sets, tests)
    rep = property(lambda self: self._materialize()[0])
    pair = property(lambda self: self._materialize()[1])
    fold = property(lambda self: self._materialize()[2])


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
    for r0, r1, rep, p, fold in rs.chunk_arrays(F * 2 * (C + 1)):
        key = ((rep * F + fold) * 2 + genuine[p]) * (C + 1) + code[p]
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


def _accuracy_exact(scores: np.ndarray, genuine: np.ndarray, rs: Resamples) -> np.ndarray:
    """10-fold accuracy with thresholds at the observed scores of every replicate, as
    ``verification_metrics(exact=True)`` on the replicate (tested equal).

    Cuts run over the distinct scores ``u`` of the whole list: cut ``j`` accepts ``score >= u[j]``
    (``j = U`` accepts nothing). A replicate's own cuts are the cuts at its present values; a cut at
    an absent value repeats the next cut. Per fold: the training plateau of the best accuracy met
    first from the top (its highest cut ``j_hi``, down to ``j_lo``), the replicate's own threshold
    values at both ends (midpoints between the replicate's neighbouring present values, as
    :func:`maskinv.evaluate.metrics._cut_thresholds`), their middle ``v``, and the held-out fold's
    accuracy of ``score > v``.
    """
    u, inv = np.unique(scores, return_inverse=True)
    U = u.shape[0]
    F = rs.folds
    out = np.empty(rs.count)
    idx = np.arange(U, dtype=np.int64)

    def thr_between(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Own threshold of the cut between present values ``u[lo]`` (or none: -1) and ``u[hi]`` (or none: U)."""
        ul, uh = u[np.clip(lo, 0, U - 1)], u[np.clip(hi, 0, U - 1)]
        mid = ul + (uh - ul) / 2.0
        mid = np.where((mid >= ul) & (mid < uh), mid, ul)
        return np.where(lo < 0, np.nextafter(uh, -np.inf), np.where(hi >= U, ul, mid))

    for r0, r1, rep, p, fold in rs.chunk_arrays(F * 2 * (U + 1)):
        R = r1 - r0
        key = ((rep * F + fold) * 2 + genuine[p]) * U + inv[p]
        h = np.bincount(key, minlength=R * F * 2 * U).reshape(R, F, 2, U)
        zero = np.zeros((R, F, 1), np.int64)
        gen_tail = np.concatenate([np.cumsum(h[:, :, 1, ::-1], axis=-1)[..., ::-1], zero], axis=-1)  # genuine >= u[j]
        imp_head = np.concatenate([zero, np.cumsum(h[:, :, 0, :], axis=-1)], axis=-1)  # impostors < u[j]
        corr = gen_tail + imp_head  # (R, F, U + 1)
        total = corr.sum(axis=1, keepdims=True)
        train = total - corr if F > 1 else np.broadcast_to(total, corr.shape)
        best = train.max(axis=-1, keepdims=True)
        j_hi = U - np.argmax(train[..., ::-1] == best, axis=-1)  # (R, F): highest cut with the best accuracy
        below = (train != best) & (np.arange(U + 1) < j_hi[..., None])
        j_lo = np.where(below, np.arange(U + 1), -1).max(axis=-1) + 1  # lowest cut of that plateau
        present = h.sum(axis=(1, 2)) > 0  # (R, U): values the replicate holds
        nxt = np.minimum.accumulate(np.where(present, idx, U)[:, ::-1], axis=1)[:, ::-1]  # first present >= k
        prv = np.maximum.accumulate(np.where(present, idx, -1), axis=1)  # last present <= k
        nxt = np.concatenate([nxt, np.full((R, 1), U)], axis=1)  # index U: none
        prv = np.concatenate([np.full((R, 1), -1), prv], axis=1)  # prv[:, j] = last present < j
        rows = np.arange(R)[:, None]
        t_lo = thr_between(prv[rows, j_lo], nxt[rows, j_lo])
        t_hi = thr_between(prv[rows, j_hi], nxt[rows, j_hi])
        v = t_lo + (t_hi - t_lo) / 2.0
        j_v = np.searchsorted(u, v, side="right")  # "score > v" accepts the values from j_v on
        correct = np.take_along_axis(corr, j_v[..., None], axis=-1)[..., 0]
        n_fold = h.sum(axis=(2, 3))
        out[r0:r1] = (correct / n_fold).mean(axis=1)
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
    for r0, r1, rep, p, _ in rs.chunk_arrays(2 * (U + 1)):
        h = np.bincount((rep * 2 + genuine[p]) * U + inv[p],
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
                         metrics: Iterable[str], exact: bool = False) -> dict[str, np.ndarray]:
    """Each metric (a fraction, not points) of every replicate of ``rs`` (accuracy with thresholds
    at the observed scores when ``exact``)."""
    fns = {"accuracy": lambda: (_accuracy_exact if exact else _accuracy)(scores, genuine, rs),
           "eer": lambda: _operating(scores, genuine, rs, None),
           "fmr100": lambda: _operating(scores, genuine, rs, 1e-2),
           "fmr1000": lambda: _operating(scores, genuine, rs, 1e-3)}
    return {m: fns[m]() for m in metrics}


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


# ----------------------------------------------------------------------------- two levels: seeds, then identities
def two_level_bootstrap(per_seed: Sequence[Mapping[Any, np.ndarray]], statistic: Callable[[Mapping[Any, np.ndarray]], Any],
                        *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A statistic of the mean over seeds, with a 95 % interval from a two-level bootstrap: seeds
    drawn with replacement, then, for every drawn seed, one of its identity-bootstrap replicates.

    ``per_seed``: one mapping per seed, ``{key: (B_s + 1,) values}`` — the value on the seed's full
    test list first, then its replicates (:func:`results_comparisons` ``replicates``); within a seed
    every key's replicate ``r`` must come from the same resample (paired). ``statistic`` maps
    ``{key: values}`` (arrays of the mean over seeds) to an array of the same shape: e.g.
    ``lambda v: v["lg"] - v["aug"]`` (:func:`contrast`) or a ratio of two differences
    (:func:`gain_share`). The point estimate is the statistic of the means of the full-list
    values. Two levels carry both sources of variation (another training run, other test
    identities); the inner level adds the test-set variance a second time (each seed's mean already
    varies by it), so the interval errs wide. A replicate where the statistic is not finite (a ratio
    over a zero gain) is dropped; ``n_valid`` says how many were kept.

    Returns ``{"estimate", "ci95", "se", "n_seeds", "n_boot", "n_valid", "seed", "per_seed"}``.
    """
    if not per_seed:
        raise DataFormatError("two_level_bootstrap: no seeds")
    keys = list(per_seed[0])
    for i, d in enumerate(per_seed):
        if set(d) != set(keys):
            raise DataFormatError(f"two_level_bootstrap: seed {i} has keys {sorted(map(str, d))}, seed 0 {sorted(map(str, keys))}")
        sizes = {np.asarray(v).shape for v in d.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1 or next(iter(sizes))[0] < 2:
            raise DataFormatError(f"two_level_bootstrap: seed {i}: every key needs the same (B + 1,) values, "
                                  f"got shapes {sorted(sizes)}")
    if int(n_boot) < 1:
        raise ConfigError(f"two_level_bootstrap: n_boot must be >= 1, got {n_boot}")
    S = len(per_seed)
    rng = np.random.default_rng(seed)
    si = rng.integers(0, S, (int(n_boot), S))
    full = {k: np.array([float(np.asarray(d[k])[0]) for d in per_seed]) for k in keys}
    with np.errstate(divide="ignore", invalid="ignore"):
        est = float(np.asarray(statistic({k: v.mean() for k, v in full.items()})))
        per = [float(np.asarray(statistic({k: np.asarray(d[k])[0] for k in keys}))) for d in per_seed]
        means = {}
        nb = [np.asarray(d[keys[0]]).shape[0] - 1 for d in per_seed]
        ri = np.stack([rng.integers(1, nb[s] + 1, int(n_boot)) for s in range(S)], axis=1)  # replicate per seed slot
        for k in keys:
            table = [np.asarray(d[k], np.float64) for d in per_seed]
            vals = np.empty((int(n_boot), S))
            for s in range(S):  # slot s: seed si[:, s], its replicate ri[:, s] (bounded by that seed's B)
                for src in range(S):
                    sel = si[:, s] == src
                    vals[sel, s] = table[src][1 + (ri[sel, s] - 1) % nb[src]]
            means[k] = vals.mean(axis=1)
        stat = np.asarray(statistic(means), np.float64)
    ok = np.isfinite(stat)
    if not ok.any():
        return {"estimate": est, "ci95": None, "se": None, "n_seeds": S, "n_boot": int(n_boot), "n_valid": 0,
                "seed": int(seed), "per_seed": per}
    lo, hi = np.percentile(stat[ok], [2.5, 97.5])
    return {"estimate": est, "ci95": [float(lo), float(hi)], "se": float(np.std(stat[ok], ddof=1)) if ok.sum() > 1 else 0.0,
            "n_seeds": S, "n_boot": int(n_boot), "n_valid": int(ok.sum()), "seed": int(seed), "per_seed": per}


def contrast(a: Any, b: Any) -> Callable[[Mapping[Any, np.ndarray]], np.ndarray]:
    """The statistic ``B − A`` of :func:`two_level_bootstrap` (keys ``a``, ``b``)."""
    return lambda v: np.asarray(v[b]) - np.asarray(v[a])


def gain_share(base: Any, reference: Any, candidate: Any) -> Callable[[Mapping[Any, np.ndarray]], np.ndarray]:
    """The statistic ``(candidate − base) / (reference − base)`` of the means over seeds: e.g. the share of
    LG's M-U gain over the teacher that adapt reaches (a ratio of means, not a mean of ratios)."""
    def f(v: Mapping[Any, np.ndarray]) -> np.ndarray:
        den = np.asarray(v[reference]) - np.asarray(v[base])
        return np.where(den > 0, (np.asarray(v[candidate]) - np.asarray(v[base])) / np.where(den > 0, den, 1.0), np.nan)
    return f


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

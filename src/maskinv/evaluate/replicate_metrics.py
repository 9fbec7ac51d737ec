"""Verification metrics of every bootstrap replicate at once (:func:`metrics_on_resamples`):
scores coded once per model, then histograms (``np.bincount``) and cumulative sums over all
replicates — no Python loop over replicates, folds or thresholds."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from maskinv.errors import DataFormatError
from maskinv.evaluate.metrics import insightface_cosine_thresholds
from maskinv.evaluate.resampling import Resamples

#: Metrics the bootstrap can re-run, all reported in percentage points.
METRICS = ("accuracy", "eer", "fmr100", "fmr1000")


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

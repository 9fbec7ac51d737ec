"""Verification metrics on score arrays: LFW 10-fold accuracy and the ISO/IEC 19795-1 set.

Everything is pure NumPy and O(n log n): scores are sorted once and every threshold is
evaluated through cumulative counts (``np.searchsorted`` / ``np.cumsum``), never through a
Python loop over thresholds. See ``docs/evaluation.md`` for the definitions.

Conventions
-----------
``scores`` are similarities (higher = more alike; cosine for our models), ``genuine`` says
which pairs are mated. Two decision rules are used, each documented where it applies:

* **10-fold accuracy** reproduces InsightFace ``verification.py``: the pair list is split
  into contiguous, unshuffled folds (sklearn ``KFold(shuffle=False)`` sizes: the first
  ``n % folds`` folds get one extra pair); for each fold the threshold with the best accuracy
  on the other folds is picked over the grid of squared-L2 distances
  ``t = np.arange(0, 4, 0.01)`` and applied to the held-out fold. InsightFace predicts "same"
  iff ``dist < t``; for unit vectors ``dist = 2 - 2 cos`` so this is ``cos > 1 - t/2``, which
  is the rule applied here (cosine thresholds ``1 - t/2`` in float64, strict ``>``). Ties in
  training accuracy go to the first grid threshold (``np.argmax``), i.e. the smallest ``t``
  = the largest cosine threshold (so on separable data the threshold sits at the edge of the
  training genuine scores, as in the public code). Accuracy per fold is ``(TP + TN) / fold_size``; the mean and
  the population standard deviation (``np.std``, ddof 0) over folds are reported.
* **Operating points** (EER, FMR100, FMR1000, TAR@FAR, ROC/DET): accept iff ``score >= t``
  for ``t`` running over every distinct score, plus one threshold above the maximum (accept
  nothing). ``FMR(t) = #impostors accepted / #impostors``, ``FNMR(t) = #genuine rejected /
  #genuine``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from maskinv.errors import ConfigError, DataFormatError

#: FAR targets always reported in ``tar_at_far`` / ``threshold_at_fmr``.
#: The false-accept rates every verification result reports TAR/FNMR at (pair lists and
#: probe/reference alike); 5e-4 is MFR2's FAR 1:2000. Extra targets are added to it, never replace it.
FAR_GRID: tuple[float, ...] = (1e-2, 1e-3, 5e-4, 1e-4)


def insightface_grid() -> np.ndarray:
    """InsightFace's squared-L2 distance thresholds ``np.arange(0, 4, 0.01)`` (400 values)."""
    return np.arange(0, 4, 0.01)


def insightface_cosine_thresholds() -> np.ndarray:
    """The grid as cosine thresholds ``1 - t/2`` (descending, float64), in grid order."""
    return 1.0 - insightface_grid() / 2.0


def fold_bounds(n: int, folds: int) -> np.ndarray:
    """Start/end offsets of contiguous unshuffled folds (sklearn ``KFold(shuffle=False)``)."""
    sizes = np.full(folds, n // folds, dtype=np.int64)
    sizes[: n % folds] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def _validate(scores: Any, genuine: Any, source: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    g = np.asarray(genuine)
    if s.ndim != 1 or g.ndim != 1:
        raise DataFormatError(f"{source}: scores and genuine must be 1-D, got shapes {s.shape} and {g.shape}")
    if s.shape[0] != g.shape[0]:
        raise DataFormatError(f"{source}: {s.shape[0]} scores but {g.shape[0]} genuine labels")
    if s.shape[0] == 0:
        raise DataFormatError(f"{source}: no pairs")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise DataFormatError(f"{source}: scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)  # exact for float32 inputs; all comparisons in float64
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise DataFormatError(f"{source}: pair {int(bad[0])} has a non-finite score ({s[bad[0]]!r}); {bad.size} such pairs")
    if g.dtype != np.bool_:
        if not (np.issubdtype(g.dtype, np.integer) or np.issubdtype(g.dtype, np.floating)):
            raise DataFormatError(f"{source}: genuine labels must be booleans or 0/1, got dtype {g.dtype}")
        badg = np.flatnonzero((g != 0) & (g != 1))
        if badg.size:
            raise DataFormatError(f"{source}: pair {int(badg[0])} has genuine label {g[badg[0]]!r}, expected 0 or 1")
        g = g == 1
    n_gen = int(g.sum())
    if n_gen == 0 or n_gen == g.shape[0]:
        which = "impostor" if n_gen == 0 else "genuine"
        raise DataFormatError(f"{source}: all {g.shape[0]} pairs are {which}; metrics need both genuine and impostor pairs")
    return s, g


# ----------------------------------------------------------------------------- accuracy
def _fold_accuracy_grid(s: np.ndarray, g: np.ndarray, folds: int) -> tuple[list[float], list[float]]:
    thr = insightface_cosine_thresholds()
    bounds = fold_bounds(s.shape[0], folds)
    correct = np.empty((folds, thr.shape[0]), dtype=np.int64)
    for f in range(folds):  # loop over folds only; thresholds are vectorised
        fs, fg = s[bounds[f] : bounds[f + 1]], g[bounds[f] : bounds[f + 1]]
        gen = np.sort(fs[fg])
        imp = np.sort(fs[~fg])
        tp = gen.shape[0] - np.searchsorted(gen, thr, side="right")  # genuine with score > thr
        tn = np.searchsorted(imp, thr, side="right")  # impostors with score <= thr
        correct[f] = tp + tn
    total = correct.sum(axis=0)
    accs, chosen = [], []
    for f in range(folds):
        train = total - correct[f] if folds > 1 else total  # folds=1: InsightFace trains on the test set
        k = int(np.argmax(train))  # first best in grid order, as np.argmax in InsightFace
        size = int(bounds[f + 1] - bounds[f])
        accs.append(float(correct[f, k]) / size)
        chosen.append(float(thr[k]))
    return accs, chosen


def _cut_thresholds(u: np.ndarray) -> np.ndarray:
    """Thresholds for "score > thr" cuts j = 0..U: j accepts exactly the scores >= u[j]."""
    U = u.shape[0]
    thr = np.empty(U + 1, dtype=np.float64)
    thr[0] = np.nextafter(u[0], -np.inf)
    if U > 1:
        mid = u[:-1] + (u[1:] - u[:-1]) / 2.0
        # adjacent floats: the midpoint can round onto u[j]; then u[j-1] gives the same cut
        ok = (mid >= u[:-1]) & (mid < u[1:])
        thr[1:U] = np.where(ok, mid, u[:-1])
    thr[U] = u[-1]
    return thr


def _fold_accuracy_exact(s: np.ndarray, g: np.ndarray, folds: int) -> tuple[list[float], list[float]]:
    u, inv = np.unique(s, return_inverse=True)
    U = u.shape[0]
    thr = _cut_thresholds(u)

    def correct_counts(inv_part: np.ndarray, g_part: np.ndarray) -> np.ndarray:
        gh = np.bincount(inv_part[g_part], minlength=U)
        ih = np.bincount(inv_part[~g_part], minlength=U)
        tp = np.concatenate([np.cumsum(gh[::-1])[::-1], [0]])  # genuine with index >= j
        tn = np.concatenate([[0], np.cumsum(ih)])  # impostors with index < j
        return tp + tn  # length U + 1, cut j

    total = correct_counts(inv, g)
    bounds = fold_bounds(s.shape[0], folds)
    accs, chosen = [], []
    for f in range(folds):
        sl = slice(bounds[f], bounds[f + 1])
        corr = correct_counts(inv[sl], g[sl])
        train = total - corr if folds > 1 else total
        # The best training accuracy is usually reached on a plateau of neighbouring cuts
        # (e.g. the whole gap between separated classes). Take the plateau met first in
        # descending-threshold order (as the grid's np.argmax does) and use the middle of it,
        # not its edge, which would sit right on a training score.
        r = train[::-1]
        i0 = int(np.argmax(r))
        ne = np.flatnonzero(r[i0:] != r[i0])
        i1 = i0 + (int(ne[0]) - 1 if ne.size else r.shape[0] - 1 - i0)
        j_hi, j_lo = U - i0, U - i1
        v = thr[j_lo] + (thr[j_hi] - thr[j_lo]) / 2.0
        fs, fg = s[sl], g[sl]
        accs.append(float(np.count_nonzero((fs > v) == fg)) / int(bounds[f + 1] - bounds[f]))
        chosen.append(float(v))
    return accs, chosen


# ----------------------------------------------------------------------------- operating points
def _operating_counts(s: np.ndarray, g: np.ndarray):
    """Distinct scores ascending and, per cut j (accept iff score >= u[j]; j = U accepts none),
    false accepts and false rejects; also per-value histograms."""
    u, inv = np.unique(s, return_inverse=True)
    U = u.shape[0]
    gh = np.bincount(inv[g], minlength=U)
    ih = np.bincount(inv[~g], minlength=U)
    fa = np.concatenate([np.cumsum(ih[::-1])[::-1], [0]])  # impostors with score >= u[j]
    fr = np.concatenate([[0], np.cumsum(gh)])  # genuine with score < u[j]
    return u, gh, ih, fa, fr


def _cut_values(u: np.ndarray) -> np.ndarray:
    """Threshold value of each cut j for the ``score >= t`` rule (the last one accepts nothing)."""
    return np.concatenate([u, [np.nextafter(u[-1], np.inf)]])


def roc_curve(scores: Any, genuine: Any) -> dict[str, np.ndarray]:
    """Exact ROC/DET curve: one point per distinct score plus "accept nothing".

    Returns arrays in ascending threshold order: ``thresholds`` (accept iff ``score >= t``),
    ``fmr``, ``fnmr`` and ``tar`` (= 1 - FNMR). ``fmr`` falls from 1 to 0, ``fnmr`` rises
    from 0 to 1.
    """
    s, g = _validate(scores, genuine)
    u, _, _, fa, fr = _operating_counts(s, g)
    n_imp, n_gen = int((~g).sum()), int(g.sum())
    fmr = fa / n_imp
    fnmr = fr / n_gen
    return {"thresholds": _cut_values(u), "fmr": fmr, "fnmr": fnmr, "tar": 1.0 - fnmr}


def _eer(fmr: np.ndarray, fnmr: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """EER where the piecewise-linear DET/ROC curve crosses FMR = FNMR.

    ``d = FMR - FNMR`` is 1 at the first cut and -1 at the last, non-increasing in between;
    at the first cut k with ``d <= 0`` we interpolate linearly between cuts k-1 and k.
    """
    d = fmr - fnmr
    k = int(np.argmax(d <= 0))
    if d[k] == 0 or k == 0:
        return float(fmr[k]), float(t[k])
    a = d[k - 1] / (d[k - 1] - d[k])
    eer = fmr[k - 1] + a * (fmr[k] - fmr[k - 1])
    thr = t[k - 1] + a * (t[k] - t[k - 1])
    return float(eer), float(thr)


def _auc(gh: np.ndarray, ih: np.ndarray) -> float:
    """Area under the ROC = P(genuine > impostor) + P(tie)/2, computed in integers."""
    imp_below = np.concatenate([[0], np.cumsum(ih)[:-1]])
    twice_u = int(np.sum(2 * gh * imp_below + gh * ih))
    return twice_u / (2 * int(gh.sum()) * int(ih.sum()))


def _far_defined(n_imp: int, far: float) -> bool:
    # FMR <= far must allow at least one false match, else the operating point only
    # measures "zero false matches" and is not the named metric.
    return n_imp * far >= 1.0 - 1e-9


def verification_metrics(
    scores: Any,
    genuine: Any,
    folds: int = 10,
    far_targets: Iterable[float] = FAR_GRID,
    exact: bool = False,
) -> dict[str, Any]:
    """All verification metrics of a list of scored pairs.

    Args:
        scores: (N,) similarities in pair order (higher = more alike).
        genuine: (N,) booleans (or 0/1), True for mated pairs.
        folds: folds of the LFW accuracy protocol (contiguous, unshuffled).
        far_targets: FAR values reported in ``tar_at_far``/``threshold_at_fmr`` in addition
            to :data:`FAR_GRID`.
        exact: pick the accuracy threshold over all score midpoints instead of the
            InsightFace grid: the best training accuracy's first plateau (in descending
            threshold order) is found and its middle is used.

    Returns:
        A JSON-able dict with ``accuracy_mean``, ``accuracy_std``, ``accuracy_folds``,
        ``accuracy_thresholds`` (cosine, per fold), ``eer``, ``eer_threshold``, ``fmr100``,
        ``fmr1000``, ``fdr``, ``auc``, ``tar_at_far`` and ``threshold_at_fmr`` ({far: value}),
        ``num_genuine``, ``num_impostor``, ``num_pairs``, ``folds``, ``accuracy_protocol`` and
        ``undefined`` ({key: reason}) for every value that is ``None``.

    Raises:
        DataFormatError: shapes differ, a score is NaN/inf, a label is not 0/1, or only one
            class is present.
    """
    s, g = _validate(scores, genuine)
    n = s.shape[0]
    n_gen = int(g.sum())
    n_imp = n - n_gen
    undefined: dict[str, str] = {}
    out: dict[str, Any] = {}

    folds = int(folds)
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    if n < folds:
        out.update(accuracy_mean=None, accuracy_std=None, accuracy_folds=None, accuracy_thresholds=None)
        undefined["accuracy_mean"] = undefined["accuracy_std"] = f"{n} pairs, fewer than {folds} folds"
    else:
        accs, chosen = (_fold_accuracy_exact if exact else _fold_accuracy_grid)(s, g, folds)
        out.update(
            accuracy_mean=float(np.mean(accs)),
            accuracy_std=float(np.std(accs)),
            accuracy_folds=accs,
            accuracy_thresholds=chosen,
        )
    out["accuracy_protocol"] = "exact-midpoints" if exact else "insightface-grid"
    out["folds"] = folds

    u, gh, ih, fa, fr = _operating_counts(s, g)
    t = _cut_values(u)
    fmr = fa / n_imp
    fnmr = fr / n_gen
    out["eer"], out["eer_threshold"] = _eer(fmr, fnmr, t)

    targets = sorted({float(x) for x in FAR_GRID} | {float(x) for x in far_targets}, reverse=True)
    for far in targets:
        if not 0.0 < far < 1.0:
            raise ConfigError(f"FAR targets must lie in (0, 1), got {far:g}")
    tar_at_far: dict[float, float | None] = {}
    thr_at_fmr: dict[float, float | None] = {}
    fnmr_at: dict[float, float | None] = {}
    for far in sorted(set(targets) | {1e-2, 1e-3}, reverse=True):
        if not _far_defined(n_imp, far):
            reason = f"needs >= {int(np.ceil(1.0 / far - 1e-9))} impostor pairs for FMR <= {far:g}, have {n_imp}"
            fnmr_at[far] = None
            if far in targets:
                tar_at_far[far] = thr_at_fmr[far] = None
                undefined[f"tar_at_far[{far:g}]"] = undefined[f"threshold_at_fmr[{far:g}]"] = reason
            if far == 1e-2:
                undefined["fmr100"] = reason
            if far == 1e-3:
                undefined["fmr1000"] = reason
            continue
        # smallest threshold with FMR <= far; FNMR is non-decreasing in t so this is the lowest FNMR
        j = int(np.argmax(fmr <= far))
        fnmr_at[far] = float(fnmr[j])
        if far in targets:
            tar_at_far[far] = 1.0 - float(fnmr[j])
            thr_at_fmr[far] = float(t[j])
    out["fmr100"] = fnmr_at[1e-2]
    out["fmr1000"] = fnmr_at[1e-3]

    mg, mi = float(s[g].mean()), float(s[~g].mean())
    vg, vi = float(s[g].var()), float(s[~g].var())
    if vg + vi > 0:
        out["fdr"] = (mg - mi) ** 2 / (vg + vi)
    else:
        out["fdr"] = None
        undefined["fdr"] = "genuine and impostor scores both have zero variance"
    out["auc"] = _auc(gh, ih)
    out["tar_at_far"] = tar_at_far
    out["threshold_at_fmr"] = thr_at_fmr
    out["genuine_mean"], out["genuine_std"] = mg, float(np.sqrt(vg))
    out["impostor_mean"], out["impostor_std"] = mi, float(np.sqrt(vi))
    out["num_genuine"] = n_gen
    out["num_impostor"] = n_imp
    out["num_pairs"] = n
    out["undefined"] = undefined
    return out


# ----------------------------------------------------------------------------- signs of a degenerate model
#: A model whose scores span less than this has collapsed (every template nearly the same).
COLLAPSE_SCORE_RANGE = 1e-3
#: Accuracy and 100 − EER agree to within a point or two for a healthy model with balanced classes.
COLLAPSE_ACC_EER_POINTS = 2.0
#: ... on enough pairs: below this count one pair moves the accuracy by 0.5 points or more, and the
#: gap says nothing (the toy demo's 40 pairs); the check is then skipped.
COLLAPSE_MIN_PAIRS = 200


def collapse_warnings(m: dict[str, Any], scores: Any = None) -> list[dict[str, Any]]:
    """Warnings about a degenerate result ``m`` (:func:`verification_metrics` output, with
    ``score_min``/``score_max`` or the ``scores`` given): the scores span less than
    :data:`COLLAPSE_SCORE_RANGE` (the InsightFace grid, 0.005 in cosine, then reads about 50 %
    whatever the ranking), or the accuracy and ``100 − EER`` differ by more than
    :data:`COLLAPSE_ACC_EER_POINTS` points (on at least :data:`COLLAPSE_MIN_PAIRS` pairs). Each:
    ``{"check", "value", "message"}``."""
    out: list[dict[str, Any]] = []
    lo, hi = m.get("score_min"), m.get("score_max")
    if scores is not None:
        s = np.asarray(scores, np.float64)
        lo, hi = float(s.min()), float(s.max())
    if lo is not None and hi is not None and hi - lo < COLLAPSE_SCORE_RANGE:
        out.append({"check": "score_range", "value": float(hi - lo),
                    "message": f"scores span {hi - lo:.2e} ({lo:.6f} to {hi:.6f}), below {COLLAPSE_SCORE_RANGE:g}: "
                               "the model has collapsed"})
    acc, eer = m.get("accuracy_mean"), m.get("eer")
    if acc is not None and eer is not None and (m.get("num_pairs") or 0) >= COLLAPSE_MIN_PAIRS:
        gap = 100.0 * (acc - (1.0 - eer))
        if abs(gap) > COLLAPSE_ACC_EER_POINTS:
            out.append({"check": "accuracy_vs_eer", "value": gap,
                        "message": f"accuracy {100 * acc:.2f} % and 100 - EER {100 * (1 - eer):.2f} % differ by "
                                   f"{abs(gap):.2f} points (> {COLLAPSE_ACC_EER_POINTS:g}): a threshold problem or a "
                                   f"degenerate score distribution ({m.get('accuracy_protocol', '?')} accuracy)"})
    return out

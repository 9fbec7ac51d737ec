"""Verification metrics against straightforward per-threshold implementations (exact equality)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from maskinv.errors import DataFormatError
from maskinv.evaluate.metrics import fold_bounds, roc_curve, verification_metrics


# ----------------------------------------------------------------------------- references
def ref_kfold(n, k):
    """sklearn KFold(shuffle=False) written out: first n % k folds one larger, contiguous."""
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out, start = [], 0
    for sz in sizes:
        test = list(range(start, start + sz))
        train = [i for i in range(n) if not (start <= i < start + sz)] if k > 1 else list(range(n))
        out.append((train, test))
        start += sz
    return out


def ref_accuracy(threshold_cos, scores, issame):
    """InsightFace calculate_accuracy with dist < t rewritten as cos > 1 - t/2."""
    predict = scores > threshold_cos
    tp = np.sum(predict & issame)
    tn = np.sum(~predict & ~issame)
    return float(tp + tn) / scores.size


def ref_lfw(scores, issame, folds=10, thresholds=None):
    """The LFW protocol as InsightFace runs it: loop over folds and thresholds."""
    scores = np.asarray(scores, dtype=np.float64)
    if thresholds is None:
        thresholds = 1.0 - np.arange(0, 4, 0.01) / 2.0
    accs = []
    for train, test in ref_kfold(len(scores), folds):
        acc_train = np.zeros(len(thresholds))
        for i, t in enumerate(thresholds):
            acc_train[i] = ref_accuracy(t, scores[train], issame[train])
        best = int(np.argmax(acc_train))
        accs.append(ref_accuracy(thresholds[best], scores[test], issame[test]))
    return float(np.mean(accs)), float(np.std(accs)), accs


def ref_exact_thresholds(scores):
    """All midpoint thresholds in descending order (then np.argmax = largest on ties)."""
    u = np.unique(scores)
    cuts = [np.nextafter(u[0], -np.inf)] + [u[i] + (u[i + 1] - u[i]) / 2 for i in range(len(u) - 1)] + [u[-1]]
    return np.array(cuts[::-1])


def ref_operating(scores, genuine):
    ths = list(np.unique(scores)) + [math.inf]
    gen, imp = scores[genuine], scores[~genuine]
    rows = []
    for t in ths:
        fmr = sum(1 for x in imp if x >= t) / len(imp)
        fnmr = sum(1 for x in gen if x < t) / len(gen)
        rows.append((t, fmr, fnmr))
    return rows


def ref_eer(scores, genuine, rows=None):
    rows = ref_operating(scores, genuine) if rows is None else rows
    for k, (t, fmr, fnmr) in enumerate(rows):
        if fmr - fnmr <= 0:
            if fmr - fnmr == 0 or k == 0:
                return fmr
            _, fmr0, fnmr0 = rows[k - 1]
            d0, d1 = fmr0 - fnmr0, fmr - fnmr
            a = d0 / (d0 - d1)
            return fmr0 + a * (fmr - fmr0)
    raise AssertionError("no crossing")


def ref_fnmr_at(scores, genuine, far, rows=None):
    rows = ref_operating(scores, genuine) if rows is None else rows
    return min(fnmr for _, fmr, fnmr in rows if fmr <= far)


def make_scores(rng, n, sep=1.0, quant=None):
    genuine = rng.random(n) < 0.5
    s = np.where(genuine, rng.normal(0.35 * sep, 0.2, n), rng.normal(0.0, 0.2, n))
    s = np.clip(s, -1, 1)
    if quant:
        s = np.round(s / quant) * quant  # many ties
    return s, genuine


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("n,folds,quant", [(600, 10, None), (617, 10, 0.005), (203, 7, 0.01), (50, 1, None)])
def test_accuracy_equals_reference_loop(rng, n, folds, quant):
    s, g = make_scores(rng, n, quant=quant)
    m = verification_metrics(s, g, folds=folds)
    mean, std, accs = ref_lfw(s, g, folds)
    assert m["accuracy_folds"] == accs
    assert m["accuracy_mean"] == mean
    assert m["accuracy_std"] == std


def test_accuracy_scores_on_grid_thresholds(rng):
    # scores exactly equal to grid thresholds exercise the strict ">" rule and tie-breaking
    grid = 1.0 - np.arange(0, 4, 0.01) / 2.0
    g = rng.random(500) < 0.5
    idx = np.where(g, rng.integers(0, 120, 500), rng.integers(60, 200, 500))
    s = grid[idx]
    m = verification_metrics(s, g)
    assert m["accuracy_folds"] == ref_lfw(s, g)[2]


def test_accuracy_matches_insightface_distance_rule(rng):
    # InsightFace computes squared L2 between unit embeddings and predicts same iff dist < t
    n, d = 400, 16
    a = rng.normal(size=(n, d))
    b = np.where(np.arange(n)[:, None] % 2 == 0, a + rng.normal(scale=0.9, size=(n, d)), rng.normal(size=(n, d)))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    issame = np.arange(n) % 2 == 0
    dist = np.sum(np.square(a - b), 1)
    grid = np.arange(0, 4, 0.01)
    accs = []
    for train, test in ref_kfold(n, 10):
        acc_train = [float(np.sum((dist[train] < t) == issame[train])) / len(train) for t in grid]
        t = grid[int(np.argmax(acc_train))]
        accs.append(float(np.sum((dist[test] < t) == issame[test])) / len(test))
    m = verification_metrics(np.sum(a * b, 1), issame)
    assert m["accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-12)


def ref_lfw_exact(scores, issame, folds=10):
    """Exact mode by brute force: every midpoint cut, first best plateau, its middle."""
    thresholds = ref_exact_thresholds(scores)  # descending
    accs = []
    for train, test in ref_kfold(len(scores), folds):
        acc = [ref_accuracy(t, scores[train], issame[train]) for t in thresholds]
        i0 = int(np.argmax(acc))
        i1 = i0
        while i1 + 1 < len(acc) and acc[i1 + 1] == acc[i0]:
            i1 += 1
        lo, hi = thresholds[i1], thresholds[i0]
        accs.append(ref_accuracy(lo + (hi - lo) / 2.0, scores[test], issame[test]))
    return float(np.mean(accs)), float(np.std(accs)), accs


@pytest.mark.parametrize("quant", [None, 0.02])
def test_exact_accuracy_equals_reference(rng, quant):
    s, g = make_scores(rng, 300, quant=quant)
    m = verification_metrics(s, g, exact=True)
    mean, std, accs = ref_lfw_exact(s, g, 10)
    assert m["accuracy_folds"] == accs and m["accuracy_mean"] == mean and m["accuracy_std"] == std
    assert m["accuracy_protocol"] == "exact-midpoints"
    # the exact search can only match or beat the grid on each training set; on average it is >= - noise
    assert m["accuracy_mean"] >= verification_metrics(s, g)["accuracy_mean"] - 0.02


@pytest.mark.parametrize("quant", [None, 0.01])
def test_operating_points_equal_brute_force(rng, quant):
    s, g = make_scores(rng, 2600, quant=quant)
    m = verification_metrics(s, g)
    rows = ref_operating(s, g)  # the O(n^2) loop once, shared by the three references
    assert m["eer"] == ref_eer(s, g, rows)
    assert m["fmr100"] == ref_fnmr_at(s, g, 1e-2, rows)
    assert m["fmr1000"] == ref_fnmr_at(s, g, 1e-3, rows)
    assert m["tar_at_far"][1e-2] == 1.0 - m["fmr100"]
    # threshold_at_fmr really achieves FMR <= target and is the smallest such score
    t = m["threshold_at_fmr"][1e-2]
    imp = s[~g]
    assert np.mean(imp >= t) <= 1e-2
    assert np.mean(imp >= np.max(s[s < t])) > 1e-2
    gen = s[g]
    mg, mi = gen.mean(), imp.mean()
    assert m["fdr"] == pytest.approx((mg - mi) ** 2 / (gen.var() + imp.var()), rel=1e-12)
    gt = (gen[:, None] > imp[None, :]).sum()
    eq = (gen[:, None] == imp[None, :]).sum()
    assert m["auc"] == (2 * gt + eq) / (2 * gen.size * imp.size)
    assert m["num_genuine"] == int(g.sum()) and m["num_impostor"] == int((~g).sum())


def test_perfect_separation(rng):
    g = rng.random(400) < 0.5
    s = np.where(g, rng.uniform(0.5, 0.9, 400), rng.uniform(-0.2, 0.2, 400))
    m = verification_metrics(s, g, exact=True)
    assert m["accuracy_mean"] == 1.0 and m["accuracy_std"] == 0.0
    assert m["eer"] == 0.0 and m["fmr100"] == 0.0 and m["auc"] == 1.0
    # the grid protocol picks the first best grid threshold, i.e. the edge of the training
    # genuine scores; with well-separated two-valued scores it is perfect as well
    m = verification_metrics(np.where(g, 0.9, 0.1), g)
    assert m["accuracy_mean"] == 1.0 and m["eer"] == 0.0


def test_fully_inverted_scores():
    g = np.arange(200) % 2 == 0
    s = np.where(g, 0.1, 0.9)
    m = verification_metrics(s, g)
    assert m["eer"] == 1.0 and m["auc"] == 0.0


def test_undefined_values_have_reasons(rng):
    s, g = make_scores(rng, 300)
    n_imp = int((~g).sum())
    assert 100 <= n_imp < 1000
    m = verification_metrics(s, g, far_targets=(2e-2,))
    assert m["fmr100"] is not None
    assert m["fmr1000"] is None and "1000 impostor" in m["undefined"]["fmr1000"]
    assert m["tar_at_far"][1e-4] is None and "tar_at_far[0.0001]" in m["undefined"]
    from maskinv.evaluate.metrics import FAR_GRID

    assert set(m["tar_at_far"]) == {2e-2, *FAR_GRID} == {2e-2, 1e-2, 1e-3, 5e-4, 1e-4}
    assert m["tar_at_far"][2e-2] is not None
    # constant scores: FDR undefined, not infinite
    m2 = verification_metrics(np.r_[np.ones(5), np.zeros(5)], np.r_[np.ones(5), np.zeros(5)], folds=2)
    assert m2["fdr"] is None and "fdr" in m2["undefined"]
    # fewer pairs than folds
    m3 = verification_metrics([0.9, 0.1, 0.8], [1, 0, 1])
    assert m3["accuracy_mean"] is None and "folds" in m3["undefined"]["accuracy_mean"]
    for key in ("fmr100", "fmr1000", "fdr", "eer", "accuracy_mean"):
        assert (m[key] is None) == (key in m["undefined"])


def test_roc_curve_monotone(rng):
    s, g = make_scores(rng, 500, quant=0.05)
    c = roc_curve(s, g)
    assert c["fmr"][0] == 1.0 and c["fmr"][-1] == 0.0 and c["fnmr"][0] == 0.0 and c["fnmr"][-1] == 1.0
    assert np.all(np.diff(c["fmr"]) <= 0) and np.all(np.diff(c["fnmr"]) >= 0)
    assert np.all(np.diff(c["thresholds"]) > 0)
    np.testing.assert_array_equal(c["tar"], 1.0 - c["fnmr"])


def test_fold_bounds_like_kfold():
    assert fold_bounds(23, 10).tolist() == [0, 3, 6, 9, 11, 13, 15, 17, 19, 21, 23]
    assert [len(t) for _, t in ref_kfold(23, 10)] == np.diff(fold_bounds(23, 10)).tolist()


@pytest.mark.parametrize(
    "scores,genuine,match",
    [
        ([0.1, float("nan"), 0.3], [1, 0, 1], "pair 1"),
        ([0.1, 0.2, float("inf")], [1, 0, 1], "pair 2"),
        ([0.1, 0.2], [1, 1], "genuine"),
        ([0.1, 0.2], [0, 0], "impostor"),
        ([0.1, 0.2, 0.3], [1, 0], "3 scores but 2"),
        ([0.1, 0.2, 0.3], [1, 0, 2], "pair 2 has genuine label"),
        ([], [], "no pairs"),
    ],
)
def test_bad_input(scores, genuine, match):
    with pytest.raises(DataFormatError, match=match):
        verification_metrics(np.asarray(scores, dtype=float), np.asarray(genuine))


def test_float32_and_int_labels_accepted(rng):
    s, g = make_scores(rng, 400)
    a = verification_metrics(s.astype(np.float32), g.astype(np.int64))
    b = verification_metrics(s.astype(np.float32).astype(np.float64), g)
    assert a == b


# ----------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, match", [
    (dict(folds=0), r"folds must be >= 1, got 0"),
    (dict(far_targets=(0.5, 1.5)), r"FAR targets must lie in \(0, 1\), got 1.5"),
])
def test_bad_arguments_are_config_errors(kwargs, match):
    from maskinv.errors import ConfigError, MaskinvError

    s = np.linspace(-1, 1, 40)
    g = np.arange(40) % 2 == 0
    with pytest.raises(ConfigError, match=match) as info:
        verification_metrics(s, g, **kwargs)
    assert isinstance(info.value, MaskinvError) and isinstance(info.value, ValueError)  # still a ValueError


def test_metrics_cli_folds_zero_is_one_line(tmp_path, capsys):
    from maskinv.cli import main

    p = tmp_path / "s.csv"
    p.write_text("score,genuine\n" + "".join(f"{0.1 * i},{i % 2}\n" for i in range(20)))
    assert main(["metrics", str(p), "--folds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err == "maskinv metrics: error: argument --folds: must be a positive integer (>= 1), got '0'\n"

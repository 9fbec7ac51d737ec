"""Paired bootstrap of metric differences (maskinv.evaluate.bootstrap)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from maskinv.errors import DataFormatError, UnknownNameError
from maskinv.evaluate.bootstrap import (Resamples, comparison_entry, metrics_on_resamples, paired_bootstrap,
                                        render_comparisons_markdown, seed_summary, t_quantile_975)
from maskinv.evaluate.metrics import verification_metrics

# Two models on the same pairs: genuine N(mu_g, 0.15), impostor N(0.05, 0.15); a latent per-pair
# term shared by both models (weight RHO) makes their scores correlated.
MU_A, MU_B, MU_I, SD, RHO = 0.40, 0.45, 0.05, 0.15, 0.6


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _draw(rng: np.random.Generator, n: int):
    g = np.zeros(n, bool)
    g[: n // 2] = True
    rng.shuffle(g)
    z = rng.normal(size=n)
    c = math.sqrt(1 - RHO**2)
    a = np.where(g, MU_A, MU_I) + SD * (RHO * z + c * rng.normal(size=n))
    b = np.where(g, MU_B, MU_I) + SD * (RHO * z + c * rng.normal(size=n))
    return a, b, g


def _true_diff() -> dict[str, float]:
    # Population values (the large-sample limit of both metrics): with equal spreads the best
    # threshold is the midpoint of the means (on the InsightFace grid for these means), where
    # accuracy = Phi(d/2) and EER = Phi(-d/2), d = (mu_g - mu_i) / sd.
    da, db = (MU_A - MU_I) / SD, (MU_B - MU_I) / SD
    return {"accuracy": 100 * (_phi(db / 2) - _phi(da / 2)), "eer": 100 * (_phi(-db / 2) - _phi(-da / 2))}


def test_true_difference_matches_a_large_population():
    a, b, g = _draw(np.random.default_rng(7), 200_000)
    va, vb = verification_metrics(a, g), verification_metrics(b, g)
    true = _true_diff()
    assert 100 * (vb["accuracy_mean"] - va["accuracy_mean"]) == pytest.approx(true["accuracy"], abs=0.35)
    assert 100 * (vb["eer"] - va["eer"]) == pytest.approx(true["eer"], abs=0.35)


@pytest.mark.parametrize("n", [23, 200, 1500])
def test_batched_metrics_equal_verification_metrics(n):
    rng = np.random.default_rng(n)
    g = rng.random(n) < 0.4
    s = np.where(g, rng.normal(0.4, 0.2, n), rng.normal(0.0, 0.15, n)).astype(np.float32).astype(np.float64)
    s[::5] = np.round(s[::5], 2)  # ties, and scores on grid thresholds
    names = ["accuracy", "eer"] + (["fmr100"] if n >= 1000 else [])
    full = metrics_on_resamples(s, g, Resamples.identity(n, 10), names)
    ref = verification_metrics(s, g)
    assert full["accuracy"][0] == pytest.approx(ref["accuracy_mean"], abs=1e-12)
    assert full["eer"][0] == pytest.approx(ref["eer"], abs=1e-12)
    if "fmr100" in names:
        assert full["fmr100"][0] == pytest.approx(ref["fmr100"], abs=1e-12)
    for rs in (Resamples.stratified(g, 4, rng, 10), Resamples.clustered(rng.integers(0, 9, n), 4, rng, 10)):
        got = metrics_on_resamples(s, g, rs, names)
        for r in range(rs.count):
            p = rs.pair[rs.rep == r]
            assert np.all(np.diff(p) >= 0)  # original list order inside the replicate
            ref = verification_metrics(s[p], g[p])
            assert got["accuracy"][r] == pytest.approx(ref["accuracy_mean"], abs=1e-12)
            assert got["eer"][r] == pytest.approx(ref["eer"], abs=1e-12)


def test_stratified_resamples_keep_class_counts_and_are_seeded():
    a, b, g = _draw(np.random.default_rng(0), 101)
    rs = Resamples.stratified(g, 7, np.random.default_rng(3), 10)
    for r in range(7):
        p = rs.pair[rs.rep == r]
        assert p.size == 101 and g[p].sum() == g.sum()
    r1 = paired_bootstrap(a, b, g, n_boot=50, seed=3)
    assert r1 == paired_bootstrap(a, b, g, n_boot=50, seed=3)
    assert r1 != paired_bootstrap(a, b, g, n_boot=50, seed=4)


def test_identical_models_give_zero_difference_and_interval():
    a, _, g = _draw(np.random.default_rng(1), 300)
    for groups in (None, np.arange(300) // 10):
        res = paired_bootstrap(a, a.copy(), g, n_boot=200, groups=groups, metrics=("accuracy", "eer"))
        for m in ("accuracy", "eer"):
            assert res["metrics"][m]["diff"] == 0.0 and res["metrics"][m]["ci95"] == [0.0, 0.0]


@pytest.mark.slow
def test_interval_covers_the_true_difference():
    true = _true_diff()
    reps, hits = 200, {"accuracy": 0, "eer": 0}
    for r in range(reps):
        a, b, g = _draw(np.random.default_rng(1000 + r), 400)
        res = paired_bootstrap(a, b, g, n_boot=100, seed=r)
        for m in hits:
            lo, hi = res["metrics"][m]["ci95"]
            hits[m] += lo <= true[m] <= hi
    cov = {m: h / reps for m, h in hits.items()}
    print("coverage", cov)
    assert all(0.90 <= c <= 0.99 for c in cov.values()), cov


def _mean_width(n, draws=4, groups=None, seed0=0, draw=_draw):
    w = {"accuracy": [], "eer": []}
    for r in range(draws):
        a, b, g = draw(np.random.default_rng(seed0 + r), n)
        res = paired_bootstrap(a, b, g, n_boot=300, seed=r, groups=groups)
        for m in w:
            lo, hi = res["metrics"][m]["ci95"]
            w[m].append(hi - lo)
    return {m: float(np.mean(v)) for m, v in w.items()}


def test_width_shrinks_as_one_over_sqrt_n():
    w1, w4 = _mean_width(500), _mean_width(2000)
    ratios = {m: w4[m] / w1[m] for m in w1}
    print("width ratio 4n/n", ratios)
    assert all(0.38 <= r <= 0.62 for r in ratios.values()), ratios


def test_cluster_resampling_is_wider_when_scores_correlate_within_identities():
    # 40 identities x 30 comparisons: how well each model matches an identity's genuine pairs
    # varies by identity (harder or easier faces, B's gain not uniform), so the scores and the
    # difference are correlated within an identity and pairs are not independent units
    ids = np.repeat(np.arange(40), 30)

    def draw(rng, n):
        a, b, g = _draw(rng, n)
        hard, gain = rng.normal(0.0, 0.08, 40)[ids], rng.normal(0.0, 0.15, 40)[ids]
        return a + hard * g, b + (hard + gain) * g, g

    pair = _mean_width(1200, draws=3, draw=draw, seed0=50)
    clus = _mean_width(1200, draws=3, draw=draw, seed0=50, groups=ids)
    print("pair", pair, "cluster", clus)
    assert all(clus[m] > 1.3 * pair[m] for m in pair), (pair, clus)


def test_seed_summary_t_interval():
    s = seed_summary([1.0, 2.0, 3.0])
    h = 4.302652729749462 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert s["mean"] == pytest.approx(2.0) and s["n"] == 3
    assert s["ci95"] == pytest.approx([2 - h, 2 + h], abs=1e-9)
    assert seed_summary([0.4])["ci95"] is None
    assert t_quantile_975(1) == pytest.approx(12.706204736174698, abs=1e-9)
    assert t_quantile_975(30) == pytest.approx(2.0422724563012373, abs=1e-9)
    with pytest.raises(DataFormatError):
        seed_summary([])


def test_t_quantile_matches_reference_values():
    # scipy.stats.t.ppf(0.975, nu)
    ref = {2: 4.302652729749462, 5: 2.5705818356363146, 10: 2.228138851986274, 100: 1.9839715185235518}
    for nu, q in ref.items():
        assert t_quantile_975(nu) == pytest.approx(q, abs=1e-9)


def test_comparison_entry_and_markdown():
    a, b, g = _draw(np.random.default_rng(2), 400)
    res = paired_bootstrap(a, b, g, n_boot=100)
    e = comparison_entry("elasticface_arc_aug", "maskinv_lg", "synthfaces", "mu", res)
    assert {"model_a", "model_b", "benchmark", "protocol", "n_boot", "unit", "accuracy", "eer"} <= set(e)
    assert e["unit"] == "points" and e["n_boot"] == 100
    for m in ("accuracy", "eer"):
        lo, hi = e[m]["ci95"]
        assert lo <= hi and e[m]["diff"] == pytest.approx(e[m]["b"] - e[m]["a"], abs=1e-5)
    fixed = dict(e, accuracy={"diff": 0.4, "ci95": [-0.1, 0.93]}, eer={"diff": -0.5, "ci95": [-0.9, -0.12]})
    md = render_comparisons_markdown([fixed], {"elasticface_arc_aug": "Aug", "maskinv_lg": "LG"})
    assert md == ("- LG \u2212 Aug, synthfaces M-U: accuracy +0.40 [\u22120.10, +0.93] points; "
                  "EER \u22120.50 [\u22120.90, \u22120.12] points\n")


def test_bad_input_names_the_argument():
    a, b, g = _draw(np.random.default_rng(0), 50)
    with pytest.raises(DataFormatError, match="differ in length"):
        paired_bootstrap(a, b[:-1], g)
    with pytest.raises(DataFormatError, match="scores_b"):
        paired_bootstrap(a, np.where(g, np.nan, b), g)
    with pytest.raises(DataFormatError, match="groups"):
        paired_bootstrap(a, b, g, groups=np.zeros((50, 2)))
    with pytest.raises(DataFormatError, match="issame"):
        paired_bootstrap(a, b, np.ones(50, bool))
    with pytest.raises(UnknownNameError, match="auc"):
        paired_bootstrap(a, b, g, metrics=("auc",))

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


def test_clustered_resamples_are_whole_clusters_drawn_with_replacement_expanded_in_chunks():
    """The lazy cluster bootstrap against a loop written from the definition: replicate r holds, for
    each of its K draws, every pair of the drawn cluster, in original list order; chunks of any size
    expand to the same entries as the whole; per-replicate sums agree."""
    rng = np.random.default_rng(5)
    n, k, B = 400, 13, 9
    codes = rng.integers(0, k, n)
    rs = Resamples.clustered(codes, B, np.random.default_rng(2), 10)
    drawn = np.random.default_rng(2).integers(0, k, (B, k))   # the same draws, read back from the seed
    for r in range(B):
        want = np.sort(np.concatenate([np.flatnonzero(codes == c) for c in drawn[r]]))
        assert np.array_equal(rs.pair[rs.rep == r], want)
        assert rs.sizes[r] == want.size
    w = rng.random(n)
    sums = np.array([w[rs.pair[rs.rep == r]].sum() for r in range(B)])
    assert np.allclose(rs.per_replicate(w), sums)
    parts = [rs._expand(r0, r1) for r0, r1 in ((0, 2), (2, 3), (3, B))]
    rep = np.concatenate([pr[0] + r0 for pr, r0 in zip(parts, (0, 2, 3))])
    assert np.array_equal(rep, rs.rep) and np.array_equal(np.concatenate([pr[1] for pr in parts]), rs.pair)
    assert np.array_equal(np.concatenate([pr[2] for pr in parts]), rs.fold)


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


# ----------------------------------------------------------------------------- issue 23: identities, exact accuracy, seeds
@pytest.mark.parametrize("n", [23, 200, 1500])
def test_batched_exact_accuracy_equals_verification_metrics_exact(n):
    rng = np.random.default_rng(100 + n)
    g = rng.random(n) < 0.4
    s = np.where(g, rng.normal(0.4, 0.2, n), rng.normal(0.0, 0.15, n)).astype(np.float32).astype(np.float64)
    s[::5] = np.round(s[::5], 2)  # ties
    full = metrics_on_resamples(s, g, Resamples.identity(n, 10), ["accuracy"], exact=True)
    assert full["accuracy"][0] == pytest.approx(verification_metrics(s, g, exact=True)["accuracy_mean"], abs=1e-12)
    ids = np.stack([rng.integers(0, 12, n), rng.integers(0, 12, n)], axis=1)
    ids[g, 1] = ids[g, 0]
    for rs in (Resamples.stratified(g, 4, rng, 10), Resamples.clustered(rng.integers(0, 9, n), 4, rng, 10),
               Resamples.dyadic(ids, 4, rng, 10)):
        got = metrics_on_resamples(s, g, rs, ["accuracy", "eer"], exact=True)
        for r in range(rs.count):
            p = rs.pair[rs.rep == r]
            if g[p].all() or not g[p].any():
                continue
            ref = verification_metrics(s[p], g[p], exact=True)
            assert got["accuracy"][r] == pytest.approx(ref["accuracy_mean"], abs=1e-12)
            assert got["eer"][r] == pytest.approx(ref["eer"], abs=1e-12)


def test_exact_accuracy_sees_a_model_whose_scores_span_less_than_a_grid_step():
    # scores in 0.998..0.9999 with a perfect ranking: the grid reads ~50 %, exact thresholds 100 %
    rng = np.random.default_rng(3)
    g = np.arange(400) % 2 == 0
    s = np.where(g, 0.9995 + rng.random(400) * 4e-4, 0.998 + rng.random(400) * 1e-3)
    grid = paired_bootstrap(s, s, g, n_boot=20)["metrics"]["accuracy"]["a"]
    exact = paired_bootstrap(s, s, g, n_boot=20, exact=True)
    assert grid < 60 and exact["metrics"]["accuracy"]["a"] == 100.0
    assert exact["accuracy_protocol"] == "exact-midpoints"


def test_dyadic_resamples_weight_pairs_by_identity_draws():
    ids = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [0, 2]])
    rng = np.random.default_rng(0)
    rs = Resamples.dyadic(ids, 50, np.random.default_rng(0), 2)
    drawn = np.random.default_rng(0).integers(0, 3, (50, 3))
    for r in range(50):
        m = np.bincount(drawn[r], minlength=3)
        want = np.where(ids[:, 0] == ids[:, 1], m[ids[:, 0]], m[ids[:, 0]] * m[ids[:, 1]])
        got = np.bincount(rs.pair[rs.rep == r], minlength=6)
        assert np.array_equal(got, want)
    del rng


def _identity_draw(rng, n_ids=60, per=12, id_sd=0.12, gain_sd=0.10):
    """Pairs of ``n_ids`` identities (each identity in ``per`` genuine and about ``per`` impostor pairs):
    each identity makes both models' scores easier or harder and B's gain varies by identity, so
    pairs that share an identity are correlated."""
    n = n_ids * per
    a_id = np.repeat(np.arange(n_ids), per)
    g = np.arange(n) % 2 == 0
    b_id = np.where(g, a_id, (a_id + rng.integers(1, n_ids, n)) % n_ids)
    hard, gain = rng.normal(0, id_sd, n_ids), rng.normal(0, gain_sd, n_ids)
    z = rng.normal(size=n)
    c = math.sqrt(1 - RHO**2)
    eff = np.where(g, hard[a_id], (hard[a_id] + hard[b_id]) / 2)  # a genuine pair: one face's effect
    geff = np.where(g, gain[a_id], 0.0)
    a = np.where(g, MU_A, MU_I) - eff * np.where(g, 1, -1) + SD * (RHO * z + c * rng.normal(size=n))
    b = np.where(g, MU_B, MU_I) - eff * np.where(g, 1, -1) + geff + SD * (RHO * z + c * rng.normal(size=n))
    return a, b, g, np.stack([a_id, b_id], axis=1)


# slow: a 120-replicate coverage simulation; fast: test_cluster_resampling_is_wider_when_scores_correlate_within_identities
@pytest.mark.slow
def test_identity_bootstrap_covers_the_true_difference_with_identity_effects():
    # the true EER difference of the population of identities: one huge draw (6,000 identities)
    a, b, g, _ = _identity_draw(np.random.default_rng(99), n_ids=6000, per=12)
    true = 100 * (verification_metrics(b, g)["eer"] - verification_metrics(a, g)["eer"])
    reps, hits_id, hits_pair, w_id, w_pair = 120, 0, 0, [], []
    for r in range(reps):
        a, b, g, ids = _identity_draw(np.random.default_rng(2000 + r))
        res = paired_bootstrap(a, b, g, n_boot=150, seed=r, groups=ids, metrics=("eer",))["metrics"]["eer"]
        pr = paired_bootstrap(a, b, g, n_boot=150, seed=r, metrics=("eer",))["metrics"]["eer"]
        hits_id += res["ci95"][0] <= true <= res["ci95"][1]
        hits_pair += pr["ci95"][0] <= true <= pr["ci95"][1]
        w_id.append(res["ci95"][1] - res["ci95"][0])
        w_pair.append(pr["ci95"][1] - pr["ci95"][0])
    cov_id, cov_pair = hits_id / reps, hits_pair / reps
    print("coverage identity", cov_id, "pairs", cov_pair, "widths", np.mean(w_id), np.mean(w_pair))
    assert 0.89 <= cov_id <= 1.0, cov_id
    assert np.mean(w_id) > 1.2 * np.mean(w_pair)
    assert cov_pair < cov_id


def test_groups_of_the_wrong_shape_are_refused():
    a, b, g = _draw(np.random.default_rng(0), 50)
    with pytest.raises(DataFormatError, match="both sides"):
        paired_bootstrap(a, b, g, n_boot=5, groups=np.zeros((50, 3)))


def test_two_level_bootstrap_contrast_and_ratio():
    from maskinv.evaluate.bootstrap import contrast, gain_share, two_level_bootstrap

    rng = np.random.default_rng(5)
    seeds = []
    for s in range(6):
        base = rng.normal(70, 1, 201)
        lg = base + 20 + rng.normal(0, 1.0) + rng.normal(0, 0.5, 201)
        ad = base + 12 + rng.normal(0, 1.0) + rng.normal(0, 0.5, 201)
        seeds.append({"teacher": base, "lg": lg, "adapt": ad})
    d = two_level_bootstrap(seeds, contrast("teacher", "lg"), n_boot=1000)
    assert d["estimate"] == pytest.approx(np.mean([x["lg"][0] - x["teacher"][0] for x in seeds]))
    assert d["ci95"][0] < d["estimate"] < d["ci95"][1] and d["ci95"][0] > 15
    r = two_level_bootstrap(seeds, gain_share("teacher", "lg", "adapt"), n_boot=1000)
    assert 0.5 < r["estimate"] < 0.7 and r["ci95"][0] < r["estimate"] < r["ci95"][1]
    # one seed: only the identity level varies, the interval is that of the seed's own replicates
    one = two_level_bootstrap(seeds[:1], contrast("teacher", "lg"), n_boot=4000)
    own = np.percentile(seeds[0]["lg"][1:] - seeds[0]["teacher"][1:], [2.5, 97.5])
    assert one["ci95"] == pytest.approx(list(own), abs=0.15)
    # seed-to-seed spread counts: more seed noise, a wider interval
    noisy = [{**x, "lg": x["lg"] + 3 * rng.normal()} for x in seeds]
    wide = two_level_bootstrap(noisy, contrast("teacher", "lg"), n_boot=1000)
    assert wide["ci95"][1] - wide["ci95"][0] > d["ci95"][1] - d["ci95"][0]
    with pytest.raises(DataFormatError):
        two_level_bootstrap([{"a": np.zeros(5)}, {"b": np.zeros(5)}], contrast("a", "a"))


def test_results_comparisons_use_given_identities_and_export_replicates():
    from maskinv.evaluate.bootstrap import results_comparisons

    a, b, g, ids = _identity_draw(np.random.default_rng(1))
    c = a + 0.01
    res = [{"model": m, "benchmark": "x", "protocol": "mu", "metrics": {"scores": s, "genuine": g, "accuracy_mean": 0.5}}
           for m, s in (("a", a), ("b", b), ("c", c))]
    reps: dict = {}
    out = results_comparisons(res, n_boot=40, pairs=[("a", "b")], groups={"x": ids}, exact=True, replicates=reps)
    assert out[0]["resampling"].startswith("identities")
    direct = paired_bootstrap(a, b, g, n_boot=40, groups=ids, exact=True)
    assert out[0]["eer"]["ci95"] == [round(v, 6) for v in direct["metrics"]["eer"]["ci95"]]
    assert set(reps) == {("a", "x", "mu"), ("b", "x", "mu"), ("c", "x", "mu")}
    assert reps[("b", "x", "mu")]["eer"].shape == (41,)
    d = reps[("b", "x", "mu")]["eer"][1:] - reps[("a", "x", "mu")]["eer"][1:]
    assert np.percentile(d, 2.5) == pytest.approx(direct["metrics"]["eer"]["ci95"][0])


def test_identity_bootstrap_is_expanded_chunk_by_chunk(monkeypatch):
    # small chunks: several chunks per metric, each whole replicates; results equal one big chunk's
    import maskinv.evaluate.bootstrap as B

    a, b, g, ids = _identity_draw(np.random.default_rng(4))
    big = paired_bootstrap(a, b, g, n_boot=30, groups=ids, exact=True, metrics=("accuracy", "eer", "fmr100"))
    rs = B.Resamples.dyadic(ids, 30, np.random.default_rng(0), 10, genuine=g)
    assert not hasattr(rs, "_Resamples__dict__") and rs._full is None  # nothing expanded yet
    import maskinv.evaluate.resampling as RS  # the resamples' module owns the chunk size

    monkeypatch.setattr(RS, "_CHUNK_ELEMENTS", 3_000)
    chunks = list(rs.chunk_arrays(100))
    assert len(chunks) > 3 and chunks[0][0] == 0 and chunks[-1][1] == 30
    assert all(c[2].max() < c[1] - c[0] for c in chunks)
    small = paired_bootstrap(a, b, g, n_boot=30, groups=ids, exact=True, metrics=("accuracy", "eer", "fmr100"))
    assert small == big

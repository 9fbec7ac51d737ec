"""The demo end to end in a seconds-scale configuration: files, keys, and the study's structure."""
from __future__ import annotations

import json

import pytest

from maskinv.study import apply_settings_overrides, default_settings, quick_settings, run_demo, stages, study_plan
from maskinv.errors import ConfigError

METRIC_KEYS = {"accuracy_mean", "accuracy_std", "eer", "fmr100", "fmr1000", "fdr", "auc", "tar_at_far",
               "threshold_at_fmr", "num_genuine", "num_impostor"}


@pytest.fixture(scope="module")
def demo_run(quick_demo):
    """The session's quick demo, seed 3 (tests/conftest.py: shared with test_demo_checks.py)."""
    return quick_demo


@pytest.mark.slow
def test_demo_writes_report_files(demo_run):
    out, _ = demo_run
    for rel in ("results.json", "report.md", "mask_gallery.png", "eval/results.json", "eval/results.md"):
        assert (out / rel).is_file(), rel
    assert list((out / "eval").glob("*roc_det.png")) and list((out / "eval").glob("*hist.png"))
    report = (out / "report.md").read_text()
    assert "MaskInv-LG" in report and "M-U acc" in report
    # issue 25: the quick demo says its numbers mean nothing, and shows one config plus what the others change
    assert "the numbers below mean nothing" in report
    assert report.count("```json") == 1 and "(against " in report


@pytest.mark.slow
def test_results_json_layout(demo_run):
    out, doc = demo_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed"] == 3
    assert list(saved["models"]) == ["teacher", "elasticface_arc_aug", "maskinv_lg", "maskinv_hg", "maskinv_lg_long"]
    n_pairs = quick_settings().val_pairs
    for name, m in saved["models"].items():
        for proto in ("uu", "mu", "mm"):
            assert METRIC_KEYS <= set(m[proto]), (name, proto)
            assert m[proto]["num_genuine"] + m[proto]["num_impostor"] == n_pairs
        assert m["run"]["step"] > 0 and m["run"]["backbone"]
    assert saved["versions"]["torch"]
    assert saved["timings"]["total_s"] > 0


@pytest.mark.slow
def test_study_uses_the_method(demo_run):
    """The KD students were trained from the teacher's weights with the configured λ and masks."""
    _, doc = demo_run
    runs = {n: m["run"] for n, m in doc["models"].items()}
    teacher_file = runs["teacher"]["backbone"]
    assert runs["teacher"]["config"]["masks"]["prob"] == 0 and runs["teacher"]["config"]["kd"]["weight"] == 0
    assert runs["elasticface_arc_aug"]["config"]["kd"]["weight"] == 0
    assert runs["elasticface_arc_aug"]["config"]["masks"]["prob"] == 0.5
    assert runs["maskinv_lg"]["config"]["teacher"]["path"] == teacher_file
    assert runs["maskinv_lg"]["config"]["kd"]["weight"] == quick_settings().lambda_lg > 0
    assert runs["maskinv_hg"]["config"]["head"]["init"].endswith("head.pt")
    assert runs["maskinv_hg"]["config"]["model"]["init"] == runs["maskinv_lg"]["backbone"]
    assert runs["maskinv_lg"]["kd_loss"] > 0 and not runs["elasticface_arc_aug"]["kd_loss"]


@pytest.mark.slow
def test_comparisons_carry_paired_bootstrap_intervals(demo_run):
    out, doc = demo_run
    saved = json.loads((out / "results.json").read_text())
    keys = {(c["model_a"], c["model_b"], c["protocol"]) for c in saved["comparisons"]}
    for proto in ("uu", "mu", "mm"):
        assert ("elasticface_arc_aug", "maskinv_lg", proto) in keys and ("maskinv_lg_long", "maskinv_hg", proto) in keys
    assert ("teacher", "maskinv_lg", "uu") in keys
    for c in saved["comparisons"]:
        assert c["benchmark"] == "synth_val" and c["n_boot"] == quick_settings().bootstrap
        for m in ("accuracy", "eer"):
            lo, hi = c[m]["ci95"]
            assert lo <= hi and c[m]["diff"] == pytest.approx(c[m]["b"] - c[m]["a"], abs=1e-5)
    assert saved["data"]["eval_mask_seed"] == 3  # the study seed
    assert "LG − Aug, synth_val M-U: accuracy" in (out / "report.md").read_text()


@pytest.mark.slow
def test_masked_protocols_change_scores(demo_run):
    """The recorded metrics are those of the saved scores, and masking changed the scores."""
    import numpy as np

    from maskinv.evaluate.metrics import verification_metrics

    out, doc = demo_run
    t = doc["models"]["teacher"]
    scores = {}
    for proto in ("uu", "mu", "mm"):
        sc = np.loadtxt(out / "eval" / "scores" / f"teacher__synth_val__{proto}.csv", delimiter=",", skiprows=1, ndmin=2)
        scores[proto] = sc
        exact = doc["settings"].get("accuracy", "grid") == "exact"  # the study's accuracy rule (default: exact)
        m = verification_metrics(sc[:, 0], sc[:, 1].astype(bool), exact=exact)
        for key in ("auc", "eer", "fdr", "accuracy_mean", "num_genuine", "num_impostor"):
            assert t[proto][key] == pytest.approx(m[key], abs=1e-9), (proto, key)
    for proto in ("mu", "mm"):
        assert np.array_equal(scores[proto][:, 1], scores["uu"][:, 1])  # the same pairs
        assert not np.allclose(scores[proto][:, 0], scores["uu"][:, 0]), proto  # masks changed the scores
    assert t["uu"]["auc"] != t["mu"]["auc"] or t["uu"]["fdr"] != t["mu"]["fdr"]


def test_stages_run_independent_models_together():
    plan = study_plan(quick_settings())
    assert [[r.name for r in st] for st in stages(plan)] == [["teacher", "elasticface_arc_aug"], ["maskinv_lg"],
                                                             ["maskinv_hg", "maskinv_lg_long"]]


def test_settings_overrides_are_typed():
    s = apply_settings_overrides(default_settings(), ["size=48", "lambda_lg=50", "with_hg=false"])
    assert (s.size, s.lambda_lg, s.with_hg) == (48, 50.0, False)
    with pytest.raises(ConfigError, match="nonsense"):
        apply_settings_overrides(default_settings(), ["nonsense=1"])
    with pytest.raises(ConfigError, match="demo setting size: expected an integer, got 'big'"):
        apply_settings_overrides(default_settings(), ["size=big"])
    with pytest.raises(ConfigError, match="demo setting lr: expected a number") as exc:
        apply_settings_overrides(default_settings(), ["lr=fast"])
    assert exc.value.key == "lr"
    # the run config's coercion: a number YAML 1.1 leaves as text is a number here too
    assert apply_settings_overrides(default_settings(), ["lr=1e-3"]).lr == 0.001
    with pytest.raises(ConfigError, match="positive"):
        apply_settings_overrides(default_settings(), ["minutes=0"]).scaled()


@pytest.mark.slow
def test_rerun_reuses_finished_runs_and_refuses_other_settings(demo_run):
    out, doc = demo_run
    sha = {n: m["run"]["weights_sha256"] for n, m in doc["models"].items()}
    again = run_demo(out, quick_settings(seed=3), log=lambda msg: None)
    assert {n: m["run"]["weights_sha256"] for n, m in again["models"].items()} == sha
    assert again["models"]["maskinv_lg"]["mu"]["eer"] == doc["models"]["maskinv_lg"]["mu"]["eer"]
    with pytest.raises(ConfigError, match="seed"):
        run_demo(out, quick_settings(seed=4), log=lambda msg: None)


def test_trainer_overrides_go_through_train_config(tmp_path):
    from maskinv.study import train_config

    s = apply_settings_overrides(quick_settings(), ["optim.momentum=0.85", "size=24"])
    assert s.train_overrides == ["optim.momentum=0.85"] and s.size == 24
    lg = [r for r in study_plan(s) if r.name == "maskinv_lg"][0]
    cfg = train_config(s, lg, tmp_path / "data x: y", teacher=tmp_path / "t.pt", cache_dir=tmp_path / "cache")
    assert cfg["optim"]["momentum"] == 0.85 and cfg["model"]["kwargs"] == {"width_mult": 0.125, "input_size": 24}
    assert cfg["data"]["path"] == str(tmp_path / "data x: y")  # written as YAML, read back as the same string
    assert cfg["teacher"]["cache"] == {"mode": "prepass", "enabled": True, "path": str(tmp_path / "cache")}
    assert cfg["kd"]["weight"] == s.lambda_lg and cfg["runtime"]["seed"] == 2  # seed 0, the students' offset
    with pytest.raises(ConfigError, match="optim.momentun"):
        apply_settings_overrides(quick_settings(), ["optim.momentun=0.8"])


def test_run_values_reach_the_config_typed(tmp_path):
    """The study's own values are a typed mapping: floats stay floats (no YAML text in between), a
    path that reads as YAML stays a string, and ints stay ints where the schema keeps them."""
    from maskinv.study import train_config
    from maskinv.study.recipe import run_overrides

    s = quick_settings()
    lg = [r for r in study_plan(s) if r.name == "maskinv_lg"][0]
    data = tmp_path / "001: null"
    ovr = run_overrides(s, lg, data, teacher=tmp_path / "t.pt", init=None, cache_dir=None)
    assert isinstance(ovr, dict) and isinstance(ovr["schedule.epochs"], float) and ovr["data.path"] == str(data)
    cfg = train_config(s, lg, data, teacher=tmp_path / "t.pt")
    for key, want in ovr.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == want and type(node) is type(want), key
    assert cfg["data"]["path"] == str(data) and isinstance(cfg["kd"]["weight"], float)


@pytest.mark.slow
def test_failed_parallel_run_names_its_log(tmp_path):
    from maskinv.errors import MaskinvError
    from maskinv.study import train_config
    from maskinv.study.runs import train_runs

    s = quick_settings()
    plan = study_plan(s)[:2]
    jobs = [(r.name, train_config(s, r, tmp_path / "no_data"), tmp_path / r.name) for r in plan]
    with pytest.raises(MaskinvError, match="training teacher failed .*train.log"):
        list(train_runs(jobs, threads=1, parallel=True))
    assert "no_data" in (tmp_path / "elasticface_arc_aug" / "train.log").read_text()

"""Issue 23's study settings: the Aug arms (own lr/s, from the teacher, compute-matched), λ per sample
and HG = factor x LG, the held-out mask kind, exact accuracy, collapse warnings, evaluation-only
setting changes, and a toy-scale demo whose report carries the new columns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskinv.errors import ConfigError
from maskinv.study import apply_settings_overrides, quick_settings, stages, study_plan, train_config


def _cfg(s, name):
    run = next(r for r in study_plan(s) if r.name == name)
    out = Path("/x")
    return train_config(s, run, out / "data", teacher=out / "teacher.pt" if run.teacher else None,
                        init=out / "runs" / run.init / "backbone.pt" if run.init else None)


def test_aug_arms_lr_s_and_compute():
    s = apply_settings_overrides(quick_settings(), ["aug_lr=0.025", "aug_s=32", "with_aug_init=true",
                                                    "with_aug_long=true"])
    names = [r.name for r in study_plan(s)]
    assert names[:4] == ["teacher", "elasticface_arc_aug", "elasticface_arc_aug_long", "maskinv_lg"]
    assert "elasticface_arc_aug_init" in names
    plan = {r.name: r for r in study_plan(s)}
    assert plan["elasticface_arc_aug_long"].steps == s.teacher_steps + s.student_steps
    assert plan["elasticface_arc_aug_init"].init == "teacher" and plan["elasticface_arc_aug_init"].steps == s.student_steps
    for name in ("elasticface_arc_aug", "elasticface_arc_aug_init", "elasticface_arc_aug_long"):
        c = _cfg(s, name)
        assert c["optim"]["lr"] == 0.025 and c["head"]["kwargs"]["s"] == 32.0 and c["kd"]["weight"] == 0
        assert c["runtime"]["seed"] == _cfg(s, "maskinv_lg")["runtime"]["seed"]  # the students' shared seed
    assert _cfg(s, "elasticface_arc_aug_init")["head"]["init"] == "/x/runs/teacher/head.pt"
    lg = _cfg(s, "maskinv_lg")
    assert lg["optim"]["lr"] == s.lr and lg["head"]["kwargs"]["s"] == s.head_kwargs["s"]  # LG untouched
    # Aug-init waits for the teacher and trains beside LG; Aug-long beside the teacher
    st = [[r.name for r in stage] for stage in stages(study_plan(s))]
    assert st[0] == ["teacher", "elasticface_arc_aug", "elasticface_arc_aug_long"]
    assert st[1][:2] == ["maskinv_lg", "elasticface_arc_aug_init"]
    from maskinv.study.pipeline import demo_pairs

    assert ("elasticface_arc_aug_init", "maskinv_lg", None) in demo_pairs(s)
    assert ("elasticface_arc_aug_long", "maskinv_lg", None) in demo_pairs(s)


def test_lambda_per_sample_and_hg_factor():
    s = apply_settings_overrides(quick_settings(), ["embedding_size=128", "lambda_lg=25", "lambda_hg_factor=30"])
    assert s.lambda_hg_used == 750 and s.per_sample(25) == pytest.approx(0.1953125)
    assert _cfg(s, "maskinv_hg")["kd"]["weight"] == 750 and _cfg(s, "maskinv_lg_long")["kd"]["weight"] == 25
    from maskinv.study.report import model_title

    import dataclasses

    d = dataclasses.asdict(s)
    assert model_title("maskinv_hg", d).startswith("MaskInv-HG (from LG, λ=750, λ/D=5.86")
    assert "λ/D=0.195" in model_title("maskinv_lg", d)
    old = {k: v for k, v in d.items() if k != "lambda_hg_factor"}  # a settings document from before the factor
    assert "λ=3000" in model_title("maskinv_hg", {**old, "lambda_hg": 3000.0})


def test_heldout_mask_kind_trains_on_the_others_and_tests_on_it():
    from maskinv.masks.kinds import RANDOM_KINDS

    s = apply_settings_overrides(quick_settings(), ["heldout_mask_kind=n95"])
    kinds = _cfg(s, "maskinv_lg")["masks"]["kinds"]
    assert "n95" not in kinds and sorted(kinds + ["n95"]) == sorted(RANDOM_KINDS)
    assert s.eval_mask_kind == "n95"
    assert _cfg(quick_settings(), "maskinv_lg")["masks"]["kinds"] == ["random"]
    from maskinv.study.validate import check_settings

    for bad, needle in (("heldout_mask_kind=paper", "heldout_mask_kind"), ("accuracy=fuzzy", "accuracy"),
                        ("aug_lr=0", "aug_lr"), ("lambda_hg_factor=-1", "lambda_hg_factor")):
        with pytest.raises(ConfigError, match=needle):
            check_settings(apply_settings_overrides(quick_settings(), [bad]))


def test_settings_documents_from_before_issue_23_are_the_same_study():
    import dataclasses

    from maskinv.study.settings import changed_settings

    s = quick_settings()
    now = json.loads(json.dumps(dataclasses.asdict(s)))
    old = {k: v for k, v in now.items() if k not in ("accuracy", "lambda_hg_factor", "aug_lr", "aug_s", "with_aug_init",
                                                     "with_aug_long", "heldout_mask_kind")}
    assert changed_settings(old, now) == ["accuracy"]  # old folders used the grid
    assert changed_settings(old, {**now, "accuracy": "grid"}) == []
    assert changed_settings(old, {**now, "accuracy": "grid", "with_aug_init": True}) == ["with_aug_init"]


def test_collapse_warnings():
    from maskinv.evaluate.metrics import collapse_warnings, verification_metrics

    rng = np.random.default_rng(0)
    g = np.arange(400) % 2 == 0
    s = np.where(g, 0.9995 + rng.random(400) * 4e-4, 0.9991 + rng.random(400) * 4e-4)  # span < 1e-3, separable
    grid = verification_metrics(s, g)
    checks = {w["check"] for w in collapse_warnings(grid, s)}
    assert checks == {"score_range", "accuracy_vs_eer"}
    exact = verification_metrics(s, g, exact=True)
    assert {w["check"] for w in collapse_warnings(exact, s)} == {"score_range"}
    healthy = np.where(g, rng.normal(0.5, 0.2, 400), rng.normal(0.0, 0.2, 400))
    assert collapse_warnings(verification_metrics(healthy, g, exact=True), healthy) == []
    few = {**grid, "num_pairs": 40}  # the gap is not checked on a few pairs
    assert {w["check"] for w in collapse_warnings(few, s)} == {"score_range"}


def test_run_warnings_flag_a_student_whose_loss_fell_below_half_the_teachers():
    from maskinv.study.pipeline import run_warnings

    ok = {"accuracy_mean": 0.9, "eer": 0.1, "score_min": -0.2, "score_max": 0.9}
    models = {"teacher": {"uu": ok, "run": {"loss": 30.0, "head_loss": 30.0}},
              "elasticface_arc_aug": {"uu": {**ok, "score_min": 0.9985, "score_max": 0.9990},
                                      "run": {"loss": 14.0, "head_loss": 14.0}},
              "maskinv_lg": {"uu": ok, "run": {"loss": 40.0, "head_loss": 28.0}}}
    w = run_warnings(quick_settings(), models)
    assert [(x["model"], x["check"]) for x in w] == [("elasticface_arc_aug", "score_range"),
                                                     ("elasticface_arc_aug", "training_loss")]


def test_run_warnings_compare_losses_per_unit_of_the_head_scale():
    """A student tuned to s = 32 has about half the margin loss of an s = 64 teacher without collapsing
    (seed 7 of study 2: 17.15 vs 34.54, U-U 92 %); the check compares per unit of s, and still flags a
    real drop at the same scale."""
    from maskinv.study.pipeline import run_warnings

    def run(loss, s):
        return {"loss": loss, "head_loss": loss, "config": {"head": {"kwargs": {"s": s}}}}

    ok = {"accuracy_mean": 0.9, "eer": 0.1, "score_min": -0.2, "score_max": 0.9}
    models = {"teacher": {"uu": ok, "run": run(34.54, 64.0)},
              "elasticface_arc_aug": {"uu": ok, "run": run(17.15, 32.0)},   # 34.3 at s 64: fine
              "elasticface_arc_aug_long": {"uu": ok, "run": run(7.0, 32.0)},  # 14.0 at s 64: flagged
              "maskinv_lg": {"uu": ok, "run": run(16.0, 64.0)}}                # same s, below half: flagged
    w = run_warnings(quick_settings(), models)
    assert [(x["model"], x["check"]) for x in w] == [("elasticface_arc_aug_long", "training_loss"),
                                                     ("maskinv_lg", "training_loss")]
    assert "scaled to the teacher's s 64: 14.000" in w[0]["message"] and "scaled" not in w[1]["message"]


def test_select_aug_grid_parsing_and_rule():
    from maskinv.study.select import AUG_LR_GRID, AUG_S_GRID, parse_aug_grid, pick_aug

    assert parse_aug_grid(None) == (list(AUG_LR_GRID), list(AUG_S_GRID))
    assert parse_aug_grid("0.05,0.1/64") == ([0.05, 0.1], [64.0])
    with pytest.raises(ConfigError, match="select-aug"):
        parse_aug_grid("0.1,x")
    c = [{"lr": 0.1, "s": 64.0, "accuracy": 80.0, "eer": 20.0}, {"lr": 0.025, "s": 32.0, "accuracy": 80.0, "eer": 19.0}]
    assert pick_aug(c)["lr"] == 0.025


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """``maskinv demo --quick`` with every new arm, the held-out kind and HG = 30 x LG (the CLI)."""
    from maskinv.cli import main

    out = tmp_path_factory.mktemp("study2") / "demo"
    rc = main(["demo", "--quick", "--seed", "5", "--out", str(out), "--set", "with_aug_init=true",
               "--set", "with_aug_long=true", "--set", "aug_lr=0.05", "--set", "heldout_mask_kind=cloth",
               "--set", "lambda_hg_factor=30", "--set", "lambda_lg=25"])
    assert rc == 0
    return out


# slow: a 7-run quick demo (~30 s CPU); the fast tests above cover its plan, λ/D titles, held-out kind and collapse warnings
@pytest.mark.slow
def test_toy_demo_reports_the_new_columns(toy):
    doc = json.loads((toy / "results.json").read_text())
    assert list(doc["models"]) == ["teacher", "elasticface_arc_aug", "elasticface_arc_aug_long", "maskinv_lg",
                                   "elasticface_arc_aug_init", "maskinv_hg", "maskinv_lg_long"]
    assert doc["accuracy_protocol"] == "exact-midpoints" and doc["models"]["maskinv_lg"]["mu"]["accuracy_protocol"] == "exact-midpoints"
    assert doc["resampling"] == ["identities (both sides of every pair)"]
    assert doc["lambda"]["hg"] == 750 and doc["lambda"]["lg_per_sample"] == pytest.approx(25 / 32)
    assert doc["models"]["maskinv_hg"]["run"]["lambda"] == 750
    assert doc["models"]["maskinv_lg"]["run"]["lambda_per_sample"] == pytest.approx(25 / 32)
    assert doc["data"]["eval_mask_kind"] == "cloth" and "cloth" not in doc["data"]["train_mask_kinds"]
    assert isinstance(doc["warnings"], list)
    assert all("score_min" in m["uu"] for m in doc["models"].values())
    pairs = {(c["model_a"], c["model_b"]) for c in doc["comparisons"]}
    assert {("elasticface_arc_aug_init", "maskinv_lg"), ("elasticface_arc_aug_long", "maskinv_lg")} <= pairs
    md = (toy / "report.md").read_text()
    for needle in ("## Warnings (collapse checks)", "| λ | λ/D |", "λ/D=0.781", "Aug from the teacher",
                   "Aug, teacher + student steps", "thresholds at the observed scores", "tested on cloth alone (held out)",
                   "resampling identities"):
        assert needle in md, needle
    from maskinv.study.pipeline import load_replicates

    reps = load_replicates(toy / "replicates.npz")
    assert reps[("teacher", "synth_val", "mu", "accuracy")].shape == (quick_settings().bootstrap + 1,)


# slow: re-evaluates the 7-run demo; the fast test_an_old_folder_takes_the_adapt_row_and_a_new_evaluation_together covers
# the evaluation-only branch of _check_settings
@pytest.mark.slow
def test_evaluation_only_change_keeps_the_runs(toy):
    from maskinv.study import run_demo
    from maskinv.study.settings import NEW_KEY_ABSENT

    settings = json.loads((toy / "demo_settings.json").read_text())
    s = quick_settings(seed=5)
    s = apply_settings_overrides(s, ["with_aug_init=true", "with_aug_long=true", "aug_lr=0.05",
                                     "heldout_mask_kind=cloth", "lambda_hg_factor=30", "lambda_lg=25", "accuracy=grid"])
    assert settings["accuracy"] == "exact" and "accuracy" in NEW_KEY_ABSENT
    lines: list[str] = []
    doc = run_demo(toy, s, log=lines.append)
    assert any("only evaluation settings changed (accuracy)" in m for m in lines)
    assert sum("reusing the finished" in m for m in lines) == 7 and not any("training" in m for m in lines)
    assert doc["accuracy_protocol"] == "insightface-grid"


# slow: trains the grid, as test_study.py's slow select-lambda twin; fast: test_select_aug_grid_parsing_and_rule and
# test_selection_trains_the_step_counts_of_its_minutes[aug]
@pytest.mark.slow
def test_select_aug_quick_writes_its_record(tmp_path):
    from maskinv.study.select import select_aug

    doc = select_aug(tmp_path, quick_settings(seed=100), [0.05, 0.1], [32.0], log=lambda m: None)
    saved = json.loads((tmp_path / "select_aug.json").read_text())
    assert saved["chosen_lr"] in (0.05, 0.1) and saved["chosen_s"] == 32.0 and saved["chosen_lr"] == doc["chosen_lr"]
    assert [(c["lr"], c["s"]) for c in saved["candidates"]] == [(0.05, 32.0), (0.1, 32.0)]
    assert saved["accuracy_protocol"] == "exact-midpoints" and saved["teacher"] == {}
    assert saved["comparisons"][0]["resampling"] == "identities (both sides of every pair)"
    runs = {n: r for n, r in saved["runs"].items()}
    assert set(runs) == {"elasticface_arc_aug_lr0.05_s32", "elasticface_arc_aug_lr0.1_s32"}
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "runs" / "elasticface_arc_aug_lr0.1_s32" /
                                                             "config.yaml").read_text())))
    assert cfg["optim"]["lr"] == 0.1 and cfg["head"]["kwargs"]["s"] == 32.0
    md = (tmp_path / "select_aug.md").read_text()
    assert "Chosen: lr =" in md and "| 0.05 | 32 |" in md


def test_an_old_folder_takes_the_adapt_row_and_a_new_evaluation_together(tmp_path):
    """README's path: `maskinv demo --set with_adapt=true` on a finished folder written before issue 23
    (no `accuracy` recorded: the grid) keeps its runs, adds the row and evaluates again."""
    import dataclasses

    from maskinv.study.pipeline import _check_settings

    s = quick_settings()
    old = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(s))).items() if k not in ("accuracy",)}
    (tmp_path / "demo_settings.json").write_text(json.dumps(old))
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "runs" / "maskinv_lg").mkdir(parents=True)
    lines: list[str] = []
    _check_settings(tmp_path, apply_settings_overrides(s, ["with_adapt=true"]), lines.append)
    assert (tmp_path / "runs" / "maskinv_lg").is_dir() and not (tmp_path / "results.json").exists()
    assert any("adapt settings changed" in m for m in lines) and any("evaluation settings changed (accuracy)" in m
                                                                       for m in lines)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="other settings"):
        _check_settings(tmp_path, apply_settings_overrides(s, ["with_adapt=true", "size=40"]))


def test_summary_lists_every_seeds_collapse_checks():
    from maskinv.study.seeds import summarize, summary_markdown

    def doc(warnings):
        m = {"accuracy_mean": 0.8, "eer": 0.2, "fmr100": None}
        d = {"models": {"teacher": {"uu": m}, "elasticface_arc_aug": {"uu": m}}, "comparisons": [],
             "settings": {**json.loads(json.dumps(__import__("dataclasses").asdict(quick_settings())))},
             "timings": {"total_s": 1.0}}
        if warnings is not None:
            d["warnings"] = warnings
        return d

    w = [{"model": "elasticface_arc_aug", "protocol": "uu", "check": "score_range", "message": "scores span 1e-4"}]
    s = summarize({1: doc([]), 2: doc(w), 3: doc(None)})
    assert s["warnings"] == {"1": [], "2": w, "3": None}
    md = summary_markdown(s)
    assert "- seed 1: no warning" in md and "- seed 2: **Aug** U-U: scores span 1e-4" in md and "seed 3: not checked" in md


def test_summary_two_level_intervals_non_inferiority_and_gain_share():
    import dataclasses

    from maskinv.study.seeds import summarize, summary_markdown

    rng = np.random.default_rng(1)
    settings = json.loads(json.dumps(dataclasses.asdict(quick_settings())))
    docs, reps = {}, {}
    for sd in (1, 2, 3):
        vals = {"teacher": {"uu": 85.0, "mu": 72.0}, "maskinv_lg": {"uu": 84.8, "mu": 84.0},
                "maskinv_adapt": {"uu": 84.9, "mu": 79.0}}
        reps[sd] = {}
        models = {}
        for name, protos in vals.items():
            models[name] = {}
            for proto, v in protos.items():
                v = v + rng.normal(0, 0.1)
                models[name][proto] = {"accuracy_mean": v / 100, "eer": (100 - v) / 100, "fmr100": None}
                reps[sd][(name, "synth_val", proto, "accuracy")] = np.concatenate([[v], v + rng.normal(0, 0.2, 200)])
                reps[sd][(name, "synth_val", proto, "eer")] = np.concatenate([[100 - v], 100 - v + rng.normal(0, 0.2, 200)])
        comp = [{"model_a": "teacher", "model_b": "maskinv_lg", "benchmark": "synth_val", "protocol": "uu",
                 "accuracy": {"diff": models["maskinv_lg"]["uu"]["accuracy_mean"] * 100 - models["teacher"]["uu"]["accuracy_mean"] * 100,
                              "ci95": [-1.0, 1.0]},
                 "eer": {"diff": 0.0, "ci95": [-1.0, 1.0]}}]
        docs[sd] = {"models": models, "comparisons": comp, "settings": settings, "timings": {"total_s": 1.0}, "warnings": []}
    s = summarize(docs, reps)
    c = s["comparisons"][0]["accuracy"]
    assert c["two_level"]["n_seeds"] == 3 and c["two_level"]["ci95"][0] < c["mean"] < c["two_level"]["ci95"][1]
    assert c["non_inferior"] is True  # a −0.2 point difference with a narrow interval
    share = s["adapt_vs_lg"]["share_two_level"]
    assert 0.5 < share["estimate"] < 0.7 and share["ci95"][0] > 0.5
    md = summary_markdown(s)
    assert "non-inferior" in md and "Share of LG's M-U gain" in md and "met by its bound: yes" in md
    assert summarize(docs)["comparisons"][0]["accuracy"].get("two_level") is None  # no replicates: no two-level


@pytest.mark.parametrize("which", ["lambda", "aug"])
def test_selection_trains_the_step_counts_of_its_minutes(monkeypatch, tmp_path, which):
    """--minutes scales the selection's runs as it scales the study's (a regression: the plan was built
    from the unscaled settings, so `--minutes 3` trained 750-step runs while recording 225)."""
    import maskinv.study.select as sel
    from maskinv.study import default_settings

    seen = {}
    monkeypatch.setattr(sel, "_select", lambda out, s, plan, *a, **k: seen.setdefault("plan", plan))
    s = default_settings(100)
    s.minutes = 3.0
    if which == "lambda":
        sel.select_lambda(tmp_path, s, [25.0, 75.0])
    else:
        sel.select_aug(tmp_path, s, [0.05], [32.0, 64.0])
    scaled = s.scaled()
    assert scaled.student_steps != s.student_steps  # the test means something only if minutes changes the counts
    steps = {r.name: r.steps for r in seen["plan"]}
    for name, n in steps.items():
        assert n == (scaled.teacher_steps if name == "teacher" else scaled.student_steps), (name, n)


def test_summary_header_names_the_hg_lambda_that_trained():
    """The seed summary's header gives HG's λ as trained (factor × LG when lambda_hg_factor is set), the
    number DemoSettings.lambda_hg_used gives (it printed lambda_hg, 3000, for a 30 × 75 = 2250 run)."""
    import dataclasses

    from maskinv.study import default_settings
    from maskinv.study.seeds import _hg_lambda

    s = default_settings(7)
    for factor, lam in ((None, 1000.0), (30.0, 75.0)):
        s = dataclasses.replace(s, lambda_hg_factor=factor, lambda_lg=lam)
        assert _hg_lambda(dataclasses.asdict(s)) == s.lambda_hg_used
    assert _hg_lambda({"lambda_hg": 3000.0, "lambda_hg_factor": 30.0, "lambda_lg": 75.0}) == 2250.0

"""The study's "MaskInv-adapt (no labels)" row: trained on photos of identities disjoint from the
training and test identities, evaluated with the other rows, compared, reused on a re-run, and
added to a finished study without retraining the other runs (seconds-scale settings)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from maskinv.study import apply_settings_overrides, default_settings, quick_settings, run_demo, stages, study_plan
from maskinv.study.adapt_row import DONE, adapt_data_seed
from maskinv.study.settings import ADAPT_KEYS, changed_settings

_NO_HG = ["with_hg=false", "with_control=false"]
pytestmark = pytest.mark.slow  # a module fixture trains two quick demos


@pytest.fixture(scope="module")
def adapt_runs(tmp_path_factory):
    """A finished quick demo without the adapt row, then the same folder with it."""
    out = tmp_path_factory.mktemp("demo_adapt")
    base = apply_settings_overrides(quick_settings(seed=7), _NO_HG)
    before = run_demo(out, base, log=lambda msg: None)
    msgs: list[str] = []
    after = run_demo(out, apply_settings_overrides(base, ["with_adapt=true"]), log=msgs.append)
    return out, before, after, msgs


def test_adapt_row_evaluated_with_the_others(adapt_runs):
    out, before, after, _ = adapt_runs
    assert "maskinv_adapt" not in before["models"]
    assert list(after["models"])[-1] == "maskinv_adapt"  # last row of the table
    row = after["models"]["maskinv_adapt"]
    for proto in ("uu", "mu", "mm"):
        assert 0.0 <= row[proto]["accuracy_mean"] <= 1.0
        # the same test pairs as every other row
        assert row[proto]["num_genuine"] == after["models"]["teacher"][proto]["num_genuine"]
    run = row["run"]
    assert run["status"] == "completed" and run["backbone_step"] >= 1
    meta = json.loads((out / "runs" / "maskinv_adapt" / "backbone.json").read_text())
    assert meta["labels_used"] is False
    # validation while adapting used the study's validation split, never its test pairs
    sel = json.loads((out / "runs" / "maskinv_adapt" / "adapt_select.json").read_text())
    assert sel["val"] == str(out / "adapt_data" / "val" / "synth_select.bin") and sel["evals"]
    from maskinv.data.bins import load_bin
    from maskinv.data.synth import generate_dataset

    s = after["settings"]
    ref = out.parent / "ref_select"
    generate_dataset(ref, identities=s["identities"], images_per_identity=1, seed=s["seed"], size=s["size"],
                     val_identities=s["val_identities"], select_identities=s["select_identities"],
                     select_pairs=s["select_pairs"], difficulty=s["difficulty"])
    assert (ref / "synth_select.bin").read_bytes() == (out / "adapt_data" / "val" / "synth_select.bin").read_bytes()
    test_pairs, _ = load_bin(out / "data" / "synth_val.bin")
    val_pairs, _ = load_bin(out / "adapt_data" / "val" / "synth_select.bin")
    assert not set(val_pairs) & set(test_pairs)  # other identities: no image in common
    report = (out / "report.md").read_text()
    assert "MaskInv-adapt (no labels)" in report and "adapt − teacher" in report


def test_adapt_comparisons(adapt_runs):
    _, _, after, _ = adapt_runs
    got = {(c["model_a"], c["model_b"], c["protocol"]) for c in after["comparisons"]}
    for proto in ("mu", "mm", "uu"):
        assert ("teacher", "maskinv_adapt", proto) in got
    assert ("maskinv_lg", "maskinv_adapt", "mu") in got
    assert ("maskinv_lg", "maskinv_adapt", "uu") not in got
    c = next(c for c in after["comparisons"] if (c["model_a"], c["model_b"], c["protocol"]) == ("teacher", "maskinv_adapt", "mu"))
    a, b = after["models"]["teacher"]["mu"]["accuracy_mean"], after["models"]["maskinv_adapt"]["mu"]["accuracy_mean"]
    assert c["accuracy"]["diff"] == pytest.approx(100 * (b - a), abs=1e-6)


def test_adding_the_row_keeps_the_other_runs_and_a_rerun_reuses_it(adapt_runs, monkeypatch):
    out, before, after, msgs = adapt_runs
    sha = {n: m["run"]["weights_sha256"] for n, m in before["models"].items()}
    assert {n: after["models"][n]["run"]["weights_sha256"] for n in sha} == sha
    assert any("keeping the other runs" in m for m in msgs)
    # the log says which runs were reused and which trained
    assert any(m.startswith("[demo] reusing the finished teacher") for m in msgs)
    assert any(m.startswith("[demo] training maskinv_adapt") for m in msgs)
    assert not any(m.startswith("[demo] training teacher") for m in msgs)
    import maskinv.study.adapt_row as adapt_row

    def no_training(*a, **k):
        raise AssertionError("a finished adapt run must be reused")

    monkeypatch.setattr(adapt_row, "run_adapt", no_training)
    done = (out / "runs" / "maskinv_adapt" / DONE).stat().st_mtime_ns
    s = apply_settings_overrides(quick_settings(seed=7), [*_NO_HG, "with_adapt=true"])
    again = run_demo(out, s, log=lambda msg: None)
    assert again["models"]["maskinv_adapt"]["run"]["weights_sha256"] == after["models"]["maskinv_adapt"]["run"]["weights_sha256"]
    assert again["models"]["maskinv_adapt"]["mu"] == after["models"]["maskinv_adapt"]["mu"]
    assert (out / "runs" / "maskinv_adapt" / DONE).stat().st_mtime_ns == done


def test_adapt_photos_come_from_another_generator_seed(adapt_runs):
    out, _, after, _ = adapt_runs
    seed = after["seed"]
    assert json.loads((out / "adapt_data" / "synth_meta.json").read_text())["seed"] == adapt_data_seed(seed) != seed
    assert json.loads((out / "data" / "synth_meta.json").read_text())["seed"] == seed


@pytest.mark.parametrize("seed", [0, 3])
def test_adapt_identities_disjoint_from_training_test_and_validation(seed):
    """SynthFaces identity k of seed s is drawn from rng([s, tag, k]) alone: compare the drawn faces
    (neutral 3-D landmarks) of every adapt identity with every identity the study trains, tests or
    selects on; none may coincide. At the default sizes, with a control that the check can fail."""
    from maskinv.data.synth.identity import sample_identity

    s = default_settings(seed)
    study_ids = s.identities + s.val_identities + s.select_identities  # training, test, validation
    adapt_ids = s.adapt_identities

    def shapes(gen_seed, n):
        return np.stack([sample_identity(gen_seed, k).shape.ravel() for k in range(n)]).astype(np.float64)

    a, b = shapes(seed, study_ids), shapes(adapt_data_seed(seed), adapt_ids)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    assert d2.min() > 1e-3
    same = (a[:50] * a[:50]).sum(1)[:, None] + (a[:50] * a[:50]).sum(1)[None, :] - 2 * a[:50] @ a[:50].T
    assert np.abs(np.diag(same)).max() < 1e-6  # the same identity would show as ~0


def test_adapt_trains_beside_lg_and_scales_with_minutes():
    s = apply_settings_overrides(default_settings(), ["with_adapt=true"])
    names = [[r.name for r in st] for st in stages(study_plan(s))]
    assert ["maskinv_lg", "maskinv_adapt"] in names
    assert s.scaled().adapt_steps == s.adapt_steps
    # epochs over the photo set, not a share of the labelled budget: --minutes leaves it alone
    short = apply_settings_overrides(s, ["minutes=5"]).scaled()
    assert short.adapt_steps == s.adapt_steps and short.student_steps == round(s.student_steps / 2)
    assert "maskinv_adapt" not in [r.name for r in study_plan(default_settings())]


def test_folders_written_before_the_adapt_settings_are_the_same_study():
    cur = json.loads(json.dumps(dataclasses.asdict(default_settings())))
    old = {k: v for k, v in cur.items() if not k.startswith("adapt_") and k != "with_adapt"}
    assert changed_settings(old, cur) == []
    assert changed_settings(old, {**cur, "with_adapt": True})  # turning the row on is a change
    assert changed_settings({**old, "size": 1}, cur) == ["size"]
    # a folder from before the adapt row validated on its own pairs: the same study while the row is
    # off; with the row on, only adapt settings changed (the adapt run is redone, the others kept)
    retired = {**cur, "adapt_val_identities": 100, "adapt_val_pairs": 1000}
    assert changed_settings(retired, cur) == []
    on = {**cur, "with_adapt": True}
    assert set(changed_settings({**retired, "with_adapt": True}, on)) == {"adapt_val_identities", "adapt_val_pairs"}
    assert set(changed_settings({**retired, "with_adapt": True}, on)) <= set(ADAPT_KEYS)


def test_seed_summary_includes_the_adapt_row(adapt_runs):
    from maskinv.study.seeds import summarize, summary_markdown

    _, _, after, _ = adapt_runs
    other = json.loads(json.dumps(after))  # a second "seed" with other numbers
    other["models"]["maskinv_adapt"]["mu"]["accuracy_mean"] += 0.01
    summary = summarize({7: after, 8: other})
    assert summary["models"]["maskinv_adapt"]["mu"]["accuracy_mean"]["sd"] > 0
    comp = {(c["model_a"], c["model_b"], c["protocol"]) for c in summary["comparisons"]}
    assert {("teacher", "maskinv_adapt", "mu"), ("maskinv_lg", "maskinv_adapt", "mu")} <= comp
    md = summary_markdown(summary)
    assert "MaskInv-adapt (no labels)" in md and "adapt − teacher" in md and "adapt − LG" in md
    assert "adapt's share of LG's gain" in md


def test_adapt_share_of_lg_gain_per_seed_and_goal_count():
    """Issue 14's goals in the summary: adapt's M-U gain over the teacher as a share of LG's on the
    same seed, its U-U change, and how many seeds meet both."""
    from maskinv.study.report import adapt_vs_lg
    from maskinv.study.seeds import summarize, summary_markdown

    def doc(t, lg, ad):  # (uu, mu) accuracies
        models = {n: {"uu": {"accuracy_mean": v[0], "eer": 0.1, "fmr100": None},
                      "mu": {"accuracy_mean": v[1], "eer": 0.2, "fmr100": None}}
                  for n, v in (("teacher", t), ("maskinv_lg", lg), ("maskinv_adapt", ad))}
        return {"models": models, "comparisons": [], "settings": default_settings().__dict__ | {"seed": 0},
                "timings": {}}

    a = doc((0.85, 0.70), (0.85, 0.80), (0.845, 0.76))   # share 60 %, U-U -0.5: both goals
    b = doc((0.85, 0.70), (0.84, 0.82), (0.830, 0.78))   # share 67 %, U-U -2.0: misses U-U
    c = doc((0.85, 0.70), (0.85, 0.80), (0.850, 0.74))   # share 40 %: misses the share
    g = adapt_vs_lg(a["models"])
    assert g["lg_mu_gain"] == pytest.approx(10.0) and g["adapt_mu_gain"] == pytest.approx(6.0)
    assert g["share"] == pytest.approx(0.6) and g["adapt_uu_change"] == pytest.approx(-0.5)
    assert adapt_vs_lg({k: v for k, v in a["models"].items() if k != "maskinv_lg"}) is None
    s = summarize({1: a, 2: b, 3: c})
    goal = s["adapt_vs_lg"]
    assert goal["seeds_meeting_both"] == 1
    assert goal["mean"]["share"] == pytest.approx((6 + 8 + 4) / (10 + 12 + 10))
    md = summary_markdown(s)
    assert "| 1 | +10.00 | +6.00 | 60 % | \u22120.50 |" in md and "1/3" in md
    assert summarize({1: doc((0.8, 0.7), (0.8, 0.7), (0.8, 0.7))})["adapt_vs_lg"]["per_seed"]["1"]["share"] is None
    # exactly one point of U-U lost (30 of 3,000 pairs, as fold means) meets the goal despite rounding
    edge = doc((0.9106666666666667, 0.70), (0.91, 0.80), (0.9006666666666666, 0.76))
    assert adapt_vs_lg(edge["models"])["adapt_uu_change"] < -1.0
    assert summarize({1: edge})["adapt_vs_lg"]["seeds_meeting_both"] == 1


def test_adapt_lr_setting_reaches_the_adapt_job_only(tmp_path):
    from maskinv.errors import ConfigError
    from maskinv.study.adapt_row import adapt_job
    from maskinv.study.validate import check_settings

    base = apply_settings_overrides(default_settings(), ["with_adapt=true"])
    assert base.adapt_lr is None
    job = adapt_job(base, tmp_path / "t.pt", tmp_path / "d", tmp_path / "v.bin")
    assert "optim.lr" not in job["adapt"]["overrides"]  # the shipped defaults' (maskinv/adapt/adapt.yaml)
    s = apply_settings_overrides(base, ["adapt_lr=0.04"])
    assert adapt_job(s, tmp_path / "t.pt", tmp_path / "d", tmp_path / "v.bin")["adapt"]["overrides"]["optim.lr"] == 0.04
    assert changed_settings(dataclasses.asdict(base), dataclasses.asdict(s)) == ["adapt_lr"]
    assert "adapt_lr" in ADAPT_KEYS  # only the adapt run is redone
    with pytest.raises(ConfigError, match="adapt_lr"):
        check_settings(apply_settings_overrides(base, ["adapt_lr=0"]), tmp_path / "out")


def test_adapt_dot_keys_override_the_adapt_run_only(tmp_path):
    from maskinv.errors import ConfigError
    from maskinv.study.adapt_row import adapt_job

    s = apply_settings_overrides(default_settings(), ["with_adapt=true", "adapt.optim.weight_decay=0"])
    assert s.adapt_overrides == ["optim.weight_decay=0"] and s.train_overrides == []
    ovr = adapt_job(s, tmp_path / "t.pt", tmp_path / "d", tmp_path / "v.bin")["adapt"]["overrides"]
    assert list(ovr.items())[-1] == ("optim.weight_decay", 0)  # typed (read once from the user's text), last
    assert "adapt_overrides" in ADAPT_KEYS
    with pytest.raises(ConfigError, match="nokey"):
        apply_settings_overrides(default_settings(), ["adapt.nokey=1"])
    from maskinv.study.validate import check_settings

    with pytest.raises(ConfigError, match="optim.lr: expected a number, got 'x'"):  # typed at --set already
        apply_settings_overrides(default_settings(), ["with_adapt=true", "adapt.optim.lr=x"])
    # settings that hold one anyway (e.g. read back from a file): typed check before any run, not at the adapt run
    bad = dataclasses.replace(apply_settings_overrides(default_settings(), ["with_adapt=true"]),
                              adapt_overrides=["optim.lr=x"])
    with pytest.raises(ConfigError, match="demo setting adapt_overrides: optim.lr"):
        check_settings(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_study_with_a_bad_setting_writes_nothing(tmp_path):
    """`maskinv study --set adapt_steps=0 ...`: one error naming the setting, no study folder."""
    from maskinv.errors import ConfigError
    from maskinv.study.seeds import run_study

    bad = apply_settings_overrides(default_settings(), ["with_adapt=true", "adapt_steps=0"])
    with pytest.raises(ConfigError, match="adapt_steps"):
        run_study(tmp_path / "study", bad, [1, 2], log=lambda m: None)
    assert not (tmp_path / "study").exists()

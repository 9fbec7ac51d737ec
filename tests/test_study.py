"""The study as a reviewer would accept it: paired seeds, per-seed masks, a validation split for
choosing λ, paired-bootstrap comparisons, the multi-seed summary (seconds-scale settings)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from maskinv.study import quick_settings, study_plan, train_config


def _sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory):
    from maskinv.data.synth import generate_dataset

    s = quick_settings(seed=5)
    d = tmp_path_factory.mktemp("study_data")
    generate_dataset(d, identities=s.identities, images_per_identity=s.images_per_identity, seed=s.seed, size=s.size,
                     val_identities=s.val_identities, val_pairs=s.val_pairs)
    return s, d


def _trace_run(cfg: dict, out, monkeypatch, teacher_module=None, steps: int = 3) -> list[str]:
    """Run ``steps`` training steps; record per step the hash of the batch (images, labels), of the
    student view after masking and of the mask/flip draws, and at step 0 the initial weights."""
    import maskinv.train.step as step_mod
    from maskinv.train import run_training

    rec: list[str] = []
    orig_views, orig_call = step_mod.prepare_views, step_mod.TrainStep.__call__

    def views(images, **kw):
        out_ = orig_views(images, **kw)
        rec.append("views " + _sha(out_[0], out_[2], out_[3]))
        return out_

    def call(self, images, labels, step, indices=None):
        if step == 0:
            rec.append("init " + _sha(*[p for p in self.backbone.state_dict().values()]))
        rec.append(f"batch {step} " + _sha(images, labels))
        return orig_call(self, images, labels, step, indices)

    monkeypatch.setattr(step_mod, "prepare_views", views)
    monkeypatch.setattr(step_mod.TrainStep, "__call__", call)
    run_training(cfg, out, max_steps=steps, teacher_module=teacher_module)
    monkeypatch.undo()
    return rec


@pytest.mark.slow
def test_students_of_one_seed_share_init_batches_and_mask_draws(quick_data, tmp_path, monkeypatch):
    import torch

    from maskinv.models import get_model

    s, data = quick_data
    plan = {r.name: r for r in study_plan(s)}
    teacher = get_model(s.backbone, embedding_size=s.embedding_size, width_mult=s.width_mult, input_size=s.size, seed=9)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfgs = {n: train_config(s, plan[n], data, teacher=tmp_path / "t.pt" if plan[n].teacher else None)
            for n in ("elasticface_arc_aug", "maskinv_lg", "teacher")}
    for cfg in cfgs.values():
        cfg["teacher"]["cache"]["enabled"] = False
    assert cfgs["elasticface_arc_aug"]["runtime"]["seed"] == cfgs["maskinv_lg"]["runtime"]["seed"] == 5002
    aug = _trace_run(cfgs["elasticface_arc_aug"], tmp_path / "aug", monkeypatch)
    lg = _trace_run(cfgs["maskinv_lg"], tmp_path / "lg", monkeypatch, teacher_module=teacher)
    assert len(aug) == 7 and aug == lg  # same initial weights, batches, masked views, mask and flip draws
    # the teacher (another runtime seed) sees other batches: the hashes do discriminate
    other = dict(cfgs["elasticface_arc_aug"], runtime={**cfgs["elasticface_arc_aug"]["runtime"], "seed": 7002})
    assert _trace_run(other, tmp_path / "other", monkeypatch)[1:] != aug[1:]
    assert torch.get_num_threads() >= 1


def test_only_lambda_and_start_differ_between_students():
    s = quick_settings(seed=2)
    runs = {r.name: r for r in study_plan(s)}
    assert {r.seed_offset for n, r in runs.items() if n != "teacher"} == {2}
    cfg = {n: train_config(s, r, "/data", teacher="/t.pt" if r.teacher else None,
                           init="/lg/backbone.pt" if r.init else None) for n, r in runs.items()}
    assert cfg["teacher"]["head"]["kwargs"] == {"s": 64.0, "m": 0.5, "std": 0.05}
    for n in ("elasticface_arc_aug", "maskinv_lg", "maskinv_hg", "maskinv_lg_long"):
        assert cfg[n]["head"]["kwargs"] == {"s": 64.0, "m": 0.5, "std": 0.0125}, n
    hg, ctl = cfg["maskinv_hg"], cfg["maskinv_lg_long"]
    # the control is HG with LG's λ: same start, steps, rate, schedule, seed
    assert hg["kd"]["weight"] == s.lambda_hg and ctl["kd"]["weight"] == s.lambda_lg
    assert {k: v for k, v in hg.items() if k != "kd"} == {k: v for k, v in ctl.items() if k != "kd"}
    assert hg["optim"]["lr"] == pytest.approx(cfg["maskinv_lg"]["optim"]["lr"] * 0.1)


def test_milestones_drop_at_60_and_85_percent_under_the_public_rule():
    from maskinv.train.config import config_from_dict
    from maskinv.train.schedule import lr_factor

    s = quick_settings()
    lg = [r for r in study_plan(s) if r.name == "maskinv_lg"][0]
    sched = config_from_dict(train_config(s, lg, "/data", teacher="/t.pt")).schedule
    spe = 100  # steps per epoch
    total = int(sched.epochs * spe)
    f = [lr_factor(k, sched, spe) for k in range(total)]
    drops = [k for k in range(1, total) if f[k] < f[k - 1] and k > int(sched.warmup_epochs * spe)]
    assert [round(d / total, 2) for d in drops] == [0.6, 0.85]


def test_evaluation_masks_follow_the_seed():
    from maskinv.evaluate.protocols import masked_images

    assert quick_settings(seed=1).mask_seed == 1 and quick_settings(seed=2).mask_seed == 2
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (4, 32, 32, 3), dtype=np.uint8)
    m1 = masked_images(images, ("mu",), quick_settings(seed=1).mask_seed, "random")
    m1b = masked_images(images, ("mu",), quick_settings(seed=1).mask_seed, "random")
    m2 = masked_images(images, ("mu",), quick_settings(seed=2).mask_seed, "random")
    assert np.array_equal(m1, m1b) and not np.array_equal(m1[1::2], m2[1::2])


def test_training_mask_bank_follows_the_runtime_seed():
    from maskinv.train.build import build_masker
    from maskinv.train.config import config_from_dict

    s1, s2 = quick_settings(seed=1), quick_settings(seed=2)
    run = [r for r in study_plan(s1) if r.name == "elasticface_arc_aug"][0]
    banks = [build_masker(config_from_dict(train_config(s, run, "/data")), 32, "cpu") for s in (s1, s1, s2)]
    planes = [b._host[0].numpy() for b in banks]  # the rendered bank (host copy)
    assert np.array_equal(planes[0], planes[1]) and not np.array_equal(planes[0], planes[2])


def test_validation_split_is_extra_and_leaves_the_test_pairs_unchanged(tmp_path):
    from maskinv.data.synth import generate_dataset

    kw = dict(identities=4, images_per_identity=2, seed=3, size=32, val_identities=3, val_pairs=8)
    generate_dataset(tmp_path / "a", **kw)
    generate_dataset(tmp_path / "b", **kw, select_identities=3, select_pairs=8)
    for f in ("train.rec", "train.idx", "synth_val.bin", "landmarks.npy"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert not (tmp_path / "a" / "synth_select.bin").exists()
    sel = (tmp_path / "b" / "synth_select.bin").read_bytes()
    assert sel != (tmp_path / "b" / "synth_val.bin").read_bytes()
    meta = json.loads((tmp_path / "b" / "synth_meta.json").read_text())
    assert meta["select_num_pairs"] == 8 and meta["select_identities"] == 3


def test_pick_rule():
    from maskinv.study.select import parse_lambdas, pick

    c = [{"lambda": 100.0, "accuracy": 94.0, "eer": 6.0}, {"lambda": 300.0, "accuracy": 94.5, "eer": 6.1},
         {"lambda": 1000.0, "accuracy": 94.5, "eer": 5.9}]
    assert pick(c)["lambda"] == 1000.0  # tie on accuracy -> lower EER
    assert pick(c[:2])["lambda"] == 300.0
    assert parse_lambdas("100, 300,1000") == [100.0, 300.0, 1000.0]
    from maskinv.errors import ConfigError

    with pytest.raises(ConfigError, match="select-lambda"):
        parse_lambdas("100,x")


@pytest.mark.slow
def test_select_lambda_quick_writes_its_record(tmp_path):
    from maskinv.study.select import select_lambda

    doc = select_lambda(tmp_path, quick_settings(seed=100), [100.0, 1000.0], log=lambda m: None)
    saved = json.loads((tmp_path / "select_lambda.json").read_text())
    assert saved["chosen_lambda"] == doc["chosen_lambda"]
    # the recorded validation numbers are those of the saved validation scores, and the pick is the
    # one the rule gives on them (highest M-U accuracy; tie -> lower M-U EER, then smaller λ)
    from maskinv.evaluate.metrics import verification_metrics

    for c in saved["candidates"]:
        csv = tmp_path / "eval" / "scores" / f"{c['model']}__synth_select__mu.csv"
        sc = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
        # the study's accuracy rule (exact thresholds by default, the InsightFace grid on request)
        m = verification_metrics(sc[:, 0], sc[:, 1].astype(bool), exact=saved["accuracy_protocol"].startswith("exact"))
        assert c["accuracy"] == pytest.approx(100 * m["accuracy_mean"], abs=1e-9), c["model"]
        assert c["eer"] == pytest.approx(100 * m["eer"], abs=1e-9), c["model"]
    best_acc = max(c["accuracy"] for c in saved["candidates"])
    tied = [c for c in saved["candidates"] if abs(c["accuracy"] - best_acc) < 1e-9]
    low_eer = min(c["eer"] for c in tied)
    want = min(c["lambda"] for c in tied if abs(c["eer"] - low_eer) < 1e-9)
    assert saved["chosen_lambda"] == want
    assert [c["lambda"] for c in saved["candidates"]] == [100.0, 1000.0]
    assert "synth_select" in saved["benchmark"] and (tmp_path / "data" / "synth_select.bin").is_file()
    assert saved["comparisons"] and all(c["protocol"] == "mu" and len(c["accuracy"]["ci95"]) == 2
                                        for c in saved["comparisons"])
    assert not (tmp_path / "eval" / "scores" / "maskinv_lg_l100__synth_val__mu.csv").exists()  # test pairs unscored
    md = (tmp_path / "select_lambda.md").read_text()
    assert "Chosen: λ =" in md and "| 1000 |" in md


@pytest.mark.slow
def test_study_over_two_quick_seeds(tmp_path):
    from maskinv.study.seeds import parse_seeds, run_study

    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    lines: list[str] = []
    s = quick_settings()
    s.with_hg = s.with_control = False
    summary = run_study(tmp_path, s, [1, 2], log=lines.append)
    for seed in (1, 2):
        doc = json.loads((tmp_path / f"seed_{seed}" / "results.json").read_text())
        assert doc["data"]["eval_mask_seed"] == seed
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["seeds"] == [1, 2]
    comp = {(c["model_a"], c["model_b"], c["protocol"]): c for c in saved["comparisons"]}
    lg_aug = comp[("elasticface_arc_aug", "maskinv_lg", "mu")]
    assert [p["seed"] for p in lg_aug["per_seed"]] == [1, 2]
    assert lg_aug["accuracy"]["n"] == 2 and len(lg_aug["accuracy"]["ci95"]) == 2
    assert lg_aug["accuracy"]["mean"] == pytest.approx(np.mean([p["accuracy"]["diff"] for p in lg_aug["per_seed"]]))
    assert ("teacher", "maskinv_lg", "uu") in comp and ("teacher", "maskinv_lg", "mu") not in comp
    assert saved["models"]["maskinv_lg"]["mu"]["accuracy_mean"]["sd"] is not None
    assert "LG − Aug" in (tmp_path / "summary.md").read_text()
    # a re-run reuses both seeds
    lines.clear()
    again = run_study(tmp_path, s, [1, 2], log=lines.append)
    assert sum("reusing" in m for m in lines) == 2 and again["comparisons"] == summary["comparisons"]


def test_results_comparisons_match_paired_bootstrap_and_eval_bootstrap():
    from maskinv.evaluate.bootstrap import comparison_entry, paired_bootstrap, results_comparisons

    rng = np.random.default_rng(1)
    n = 400
    g = np.arange(n) % 2 == 0
    scores = {m: rng.normal(0.2, 0.2, n) + k * g for m, k in (("a", 0.3), ("b", 0.35), ("c", 0.5))}
    results = [{"model": m, "benchmark": "x", "protocol": p, "metrics": {"scores": s + 0.01 * i, "genuine": g.copy()}}
               for i, p in enumerate(("uu", "mu")) for m, s in scores.items()]
    got = results_comparisons(results, n_boot=200, seed=4)
    assert [(c["model_a"], c["model_b"], c["protocol"]) for c in got] == [
        ("a", "b", "uu"), ("a", "b", "mu"), ("a", "c", "uu"), ("a", "c", "mu"), ("b", "c", "uu"), ("b", "c", "mu")]
    # the shared resamples give exactly what one paired_bootstrap call per comparison gives
    want = comparison_entry("a", "c", "x", "mu", paired_bootstrap(scores["a"] + 0.01, scores["c"] + 0.01, g, n_boot=200, seed=4))
    assert got[3] == want
    only = results_comparisons(results, n_boot=50, pairs=[("c", "a", ["uu"])])
    assert len(only) == 1 and only[0]["model_a"] == "c" and only[0]["accuracy"]["diff"] < 0
    pr = [{"model": m, "benchmark": "f", "protocol": "probe_ref", "metrics": {"scores": s, "genuine": g}}
          for m, s in scores.items()]
    assert results_comparisons(pr, n_boot=20) == []  # no identity clusters: skipped
    for r, ident in zip(pr, [np.arange(n) // 8] * 3):
        r["metrics"]["probe_identity"] = ident
    assert {c["resampling"] for c in results_comparisons(pr, n_boot=20)} == {"clusters (groups)"}


def test_evaluate_models_bootstrap_writes_comparisons(tmp_path):
    from maskinv.data.synth import generate_dataset
    from maskinv.evaluate import evaluate_models
    from maskinv.models import get_model

    generate_dataset(tmp_path / "d", identities=2, images_per_identity=1, seed=1, size=32, val_identities=4, val_pairs=20)
    models = {f"m{i}": get_model("r18", embedding_size=16, width_mult=0.125, input_size=32, seed=i) for i in range(2)}
    doc = evaluate_models(models, {"b": tmp_path / "d" / "synth_val.bin"}, "uu,mu", precision="fp32", bootstrap=30,
                          out_dir=tmp_path / "ev", plots=False)
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert [(c["model_a"], c["model_b"], c["protocol"]) for c in saved["comparisons"]] == [("m0", "m1", "uu"),
                                                                                           ("m0", "m1", "mu")]
    assert saved["comparisons"] == json.loads(json.dumps(doc["comparisons"]))
    from maskinv.errors import ConfigError

    with pytest.raises(ConfigError, match="two or more"):
        evaluate_models({"m0": models["m0"]}, {"b": tmp_path / "d" / "synth_val.bin"}, "uu", bootstrap=10)

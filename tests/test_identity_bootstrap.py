"""Issue 23: the identities of every test pair reach the bootstrap (SynthFaces sidecar, folder person
names, probe/reference subjects), and ``eval --bootstrap`` with one model fails before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.cli import main

torch = pytest.importorskip("torch")
SIZE = 32


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model

    d = tmp_path_factory.mktemp("ids")
    for i in (0, 1):
        export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=i), d / f"m{i}.pt")
    rng = np.random.default_rng(0)
    n = 60
    faces = rng.integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
    ids = np.stack([np.arange(n) % 12, (np.arange(n) % 12 + (np.arange(n) % 2) * (1 + np.arange(n) % 5)) % 12], axis=1)
    issame = ids[:, 0] == ids[:, 1]
    noise = rng.integers(-20, 21, (2 * n, SIZE, SIZE, 3))
    images = np.clip(faces[ids.ravel()].astype(int) + noise, 0, 255).astype(np.uint8)
    save_bin(d / "ids.bin", [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images], issame)
    np.save(d / "ids_identities.npy", ids)
    save_bin(d / "plain.bin", [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images], issame)
    return d, ids


def test_bootstrap_with_one_model_fails_before_any_work(assets, tmp_path, capsys, monkeypatch):
    d, _ = assets
    import maskinv.evaluate.runner as runner

    def boom(*a, **k):  # pragma: no cover - reached only if the check comes too late
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(runner, "load_eval_model", boom)
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(d / "m0.pt"), "--bench", str(d / "ids.bin"), "--bootstrap", "200", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--bootstrap compares models: give two or more --model, got 1" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    from maskinv.errors import ConfigError
    from maskinv.evaluate import evaluate_models

    with pytest.raises(ConfigError, match="two or more"):
        evaluate_models([d / "m0.pt"], [d / "ids.bin"], "uu", bootstrap=10)


def test_eval_bootstrap_resamples_the_pairs_identities(assets, tmp_path):
    d, ids = assets
    from maskinv.evaluate import evaluate_models
    from maskinv.evaluate.benchmarks import load_benchmark
    from maskinv.evaluate.bootstrap import paired_bootstrap

    b = load_benchmark(d / "ids.bin")
    assert np.array_equal(b.pair_identity, ids) and b.meta["pair_identities"].endswith("ids_identities.npy")
    assert load_benchmark(d / "plain.bin").pair_identity is None
    doc = evaluate_models([d / "m0.pt", d / "m1.pt"], [d / "ids.bin", d / "plain.bin"], "uu", precision="fp32",
                          folds=5, bootstrap=30, exact=True)
    by = {c["benchmark"]: c for c in doc["comparisons"]}
    assert by["ids"]["resampling"] == "identities (both sides of every pair)"
    assert by["plain"]["resampling"].startswith("pairs")
    r = {(e["model"], e["benchmark"]): e["metrics"] for e in doc["results"]}
    direct = paired_bootstrap(r[("m0", "ids")]["scores"], r[("m1", "ids")]["scores"], r[("m0", "ids")]["genuine"],
                              n_boot=30, groups=ids, folds=5, exact=True)
    assert by["ids"]["eer"]["ci95"] == [round(v, 6) for v in direct["metrics"]["eer"]["ci95"]]
    assert by["ids"]["accuracy"]["a"] == pytest.approx(100 * r[("m0", "ids")]["accuracy_mean"], abs=1e-5)


def test_a_bad_identities_sidecar_is_named(assets, tmp_path):
    import shutil

    from maskinv.errors import DataFormatError
    from maskinv.evaluate.benchmarks import load_benchmark

    d, ids = assets
    shutil.copy(d / "ids.bin", tmp_path / "x.bin")
    np.save(tmp_path / "x_identities.npy", ids[:-1])
    with pytest.raises(DataFormatError, match=r"x_identities.npy: expected \(60, 2\) integer identities"):
        load_benchmark(tmp_path / "x.bin")


def test_synthfaces_writes_and_recomputes_pair_identities(tmp_path):
    from maskinv.data.bins import load_bin
    from maskinv.data.synth.dataset import generate_dataset, split_pair_identities

    generate_dataset(tmp_path, identities=3, images_per_identity=1, seed=4, size=32, val_identities=5, val_pairs=12,
                     select_identities=4, select_pairs=8)
    for split, n, lo, hi in (("val", 12, 3, 8), ("select", 8, 8, 12)):
        name = "synth_val" if split == "val" else "synth_select"
        ids = np.load(tmp_path / f"{name}_identities.npy")
        _, issame = load_bin(tmp_path / f"{name}.bin")
        again, same2 = split_pair_identities(split, seed=4, identities=3, val_identities=5, val_pairs=12,
                                             select_identities=4, select_pairs=8)
        assert np.array_equal(ids, again) and np.array_equal(issame, same2) and ids.shape == (n, 2)
        assert np.array_equal(ids[:, 0] == ids[:, 1], issame) and ids.min() >= lo and ids.max() < hi


def test_folder_pairs_carry_person_names_and_probe_ref_resamples_subjects(assets, tmp_path):
    import cv2

    from maskinv.data.synth import render_faces
    from maskinv.evaluate import FolderBenchSpec, evaluate_models
    from maskinv.evaluate.benchmarks import load_benchmark

    d, _ = assets
    root = tmp_path / "Bench"
    n_ids, per = 8, 3
    imgs, _ = render_faces(np.repeat(np.arange(n_ids), per), seed=3, image_indices=np.tile(np.arange(per), n_ids), size=SIZE)
    for k in range(n_ids * per):
        p = root / f"P{k // per}" / f"P{k // per}_{k % per + 1:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.ascontiguousarray(imgs[k][:, :, ::-1]))
    lines = [f"P{i} 1 2" for i in range(n_ids)] + [f"P{i} 1 P{(i + 1) % n_ids} 2" for i in range(n_ids)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "probes.txt").write_text("\n".join(f"P{i}_0003" for i in range(n_ids)) + "\n")
    spec = FolderBenchSpec(root, aligned=True, probe_list=tmp_path / "probes.txt", size=SIZE)
    b = load_benchmark(spec)
    assert b.pair_identity[:, 0].tolist() == [f"P{i}" for i in range(n_ids)] * 2
    assert b.pair_identity[n_ids:, 1].tolist() == [f"P{(i + 1) % n_ids}" for i in range(n_ids)]
    doc = evaluate_models([d / "m0.pt", d / "m1.pt"], [spec], "uu", precision="fp32", folds=2, bootstrap=20)
    res = {c["protocol"]: c["resampling"] for c in doc["comparisons"]}
    assert res == {"uu": "identities (both sides of every pair)", "probe_ref": "identities (both sides of every pair)"}

"""Probe/reference protocol: probe lists, all-against-all counts, scores, operating-point rule."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.errors import DataFormatError

KEYS = ["A/A_0001.png", "A/A_0002.jpg", "A/A_0003.png", "B/B_0001.png", "B/B_0002.png",
        "C/C_0001.png", "C/C_0002.png", "C/C_0003.png", "C/C_0004.png"]
IDS = [k.split("/")[0] for k in KEYS]


def test_read_probe_list_forms_and_errors(tmp_path):
    from maskinv.evaluate.probe_ref import read_probe_list

    f = tmp_path / "masked.txt"
    f.write_text("# masked images\nA_0002\nB/B_0001.png\n./C/C_0003\n\nc_0004.PNG\nA_0002\n")
    assert read_probe_list(f, KEYS).tolist() == [False, True, False, True, False, False, False, True, True]
    f.write_text("A_0001\nA_0009\n")
    with pytest.raises(DataFormatError, match=r"masked.txt: line 2: 'A_0009' is not an image"):
        read_probe_list(f, KEYS)
    f.write_text("x_0001\n")
    with pytest.raises(DataFormatError, match="matches 2 images"):
        read_probe_list(f, ["x/x_0001.png", "y/x_0001.png"])
    f.write_text("\n# nothing\n")
    with pytest.raises(DataFormatError, match="no entries"):
        read_probe_list(f, KEYS)


def test_scores_are_all_pairwise_cosines_and_counts_combinatorial(rng):
    from maskinv.evaluate.probe_ref import probe_ref_scores

    emb = rng.normal(size=(9, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    probe = np.array([0, 1, 0, 1, 0, 0, 1, 1, 0], bool)
    valid = np.ones(9, bool)
    valid[8] = False  # a dropped reference
    c = probe_ref_scores(emb, IDS, probe, valid)
    P, R = [1, 3, 6, 7], [0, 2, 4, 5]
    assert c["probe_index"].tolist() == P and c["reference_index"].tolist() == R
    assert c["scores"].shape == (16,)
    k = 0
    for p in P:
        for r in R:
            assert c["scores"][k] == pytest.approx(float(emb[p] @ emb[r]), abs=1e-12)
            assert c["genuine"][k] == (IDS[p] == IDS[r])
            assert c["identity_names"][c["probe_identity"][k]] == IDS[p]
            assert c["identity_names"][c["reference_identity"][k]] == IDS[r]
            k += 1
    # genuine = sum over identities of probes(id) x references(id): A 1x2, B 1x1, C 2x1
    assert int(c["genuine"].sum()) == 1 * 2 + 1 * 1 + 2 * 1
    with pytest.raises(DataFormatError, match="both sides"):
        probe_ref_scores(emb, IDS, np.ones(9, bool))


def test_far_rule_min_false_matches(rng):
    from maskinv.evaluate.probe_ref import probe_ref_metrics

    n_imp, n_gen = 1500, 300
    s = np.concatenate([rng.normal(0.6, 0.1, n_gen), rng.normal(0.0, 0.1, n_imp)])
    g = np.arange(s.size) < n_gen
    m = probe_ref_metrics(s, g)
    assert m["tar_at_far"][1e-2] is not None and m["tar_at_far"][1e-3] is not None
    assert m["tar_at_far"][5e-4] is None and "2000 impostor" in m["undefined"]["tar_at_far[0.0005]"]
    assert m["false_matches_at_far"][1e-3] == 1 and m["false_matches_at_far"][1e-2] == 15
    m10 = probe_ref_metrics(s, g, min_false_matches=10)
    assert m10["tar_at_far"][1e-2] is not None and m10["tar_at_far"][1e-3] is None and m10["fmr1000"] is None
    assert m10["fmr100"] == m["fmr100"] and "10000 impostor" in m10["undefined"]["fmr1000"]


def test_probe_ref_scoring_embeds_each_kept_image_once(tmp_path, one_thread, monkeypatch):
    from maskinv.data.folder_bench import FolderBench
    from maskinv.data.synth import render_faces
    from maskinv.evaluate import Benchmark, ModelSpec, ScoreOptions, score_benchmark
    from maskinv.evaluate.model_specs import load_eval_model
    from maskinv.models import embedding, get_model

    imgs, _ = render_faces(np.repeat(np.arange(3), 4), seed=1, image_indices=np.tile(np.arange(4), 3), size=112)
    ids = [f"id{i // 4}" for i in range(12)]
    probe = np.tile([True, True, False, False], 3)
    valid = np.ones(12, bool)
    valid[0] = False
    keys = [f"{ids[k]}/{k}.png" for k in range(12)]
    fb = FolderBench(tmp_path, "b", [tmp_path / k for k in keys], keys, ids, imgs, valid, [keys[0]],
                     info={"aligned": True})
    bench = Benchmark("b", np.zeros((0, 112, 112, 3), np.uint8), np.zeros(0, bool), folder=fb, probe=probe)
    model = get_model("r18", width_mult=0.125, embedding_size=16, seed=0)
    calls = []
    real = embedding.embed_images
    monkeypatch.setattr(embedding, "embed_images", lambda m, x, **kw: calls.append(len(x)) or real(m, x, **kw))
    got, skipped = score_benchmark(load_eval_model(ModelSpec("m", module=model)), bench, (), None,
                                   ScoreOptions(precision="fp32", folds=2, batch_size=16))
    assert calls == [11] and list(got) == ["probe_ref"] and skipped == {}
    res = got["probe_ref"]
    assert res["num_probes"] == 5 and res["num_references"] == 6 and res["num_images_dropped"] == 1
    assert res["num_probes_dropped"] == 1
    assert res["num_genuine"] == 1 * 2 + 2 * 2 + 2 * 2 and res["num_impostor"] == 30 - 10
    e = real(model, imgs, precision="fp32", batch_size=16)
    P, R = np.flatnonzero(probe & valid), np.flatnonzero(~probe)
    np.testing.assert_allclose(res["scores"], (e[P].astype(np.float64) @ e[R].T.astype(np.float64)).ravel(), atol=1e-6)


def _folder(root, n_ids=3, per_id=4):
    import cv2

    from maskinv.data.synth import render_faces

    imgs, _ = render_faces(np.repeat(np.arange(n_ids), per_id), seed=2, image_indices=np.tile(np.arange(per_id), n_ids), size=112)
    for k in range(n_ids * per_id):
        p = root / f"P{k // per_id}" / f"P{k // per_id}_{k % per_id + 1:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(cv2.imencode(".png", imgs[k][:, :, ::-1])[1].tobytes())
    return imgs


def test_folder_benchmark_pairs_and_probe_ref_on_the_one_scoring_path(tmp_path, one_thread):
    from maskinv.evaluate import FolderBenchSpec, ModelSpec, ScoreOptions, load_benchmark, score_benchmark
    from maskinv.evaluate.model_specs import load_eval_model
    from maskinv.evaluate.probe_ref import report_metrics
    from maskinv.evaluate.protocols import masked_images
    from maskinv.models import get_model

    root = tmp_path / "bench"
    _folder(root)
    (root / "pairs.txt").write_text("P0 1 2\nP1 1 3\nP2 2 4\nP0 1 P1 2\nP1 3 P2 1\nP2 4 P0 3\n")
    (tmp_path / "masked.txt").write_text("P0_0001\nP0_0002\nP1_0001\nP2/P2_0003.png\n")
    bench = load_benchmark(FolderBenchSpec(root, aligned=True, probe_list=tmp_path / "masked.txt"))
    assert len(bench.folder.keys) == 12  # pair images first, then the rest of the folder
    assert bench.probe.sum() == 4
    model = get_model("r18", width_mult=0.125, embedding_size=16, seed=0)
    masked = masked_images(bench.images, ("uu", "mu"), 0, "random")
    res, _ = score_benchmark(load_eval_model(ModelSpec("m", module=model)), bench, ("uu", "mu"), masked,
                             ScoreOptions(precision="fp32", folds=2, batch_size=16))
    assert set(res) == {"uu", "mu", "probe_ref"}
    assert res["uu"]["num_pairs"] == 6 and res["uu"]["num_pairs_dropped"] == 0
    pr = res["probe_ref"]
    assert pr["num_probes"] == 4 and pr["num_references"] == 8 and pr["num_pairs"] == 32
    # genuine: P0 2 probes x 2 refs, P1 1 x 3, P2 1 x 3
    assert pr["num_genuine"] == 10 and pr["num_impostor"] == 22
    assert set(pr["tar_at_far"]) >= {1e-2, 1e-3, 5e-4}
    assert "probe_identity" not in pr and "scores" in report_metrics(pr)


def test_cli_eval_folder_bench_with_probe_list(tmp_path, capsys):
    import json

    from maskinv.cli import main
    from maskinv.models import export_backbone, get_model

    root = tmp_path / "MyBench"
    _folder(root)
    (root / "pairs.txt").write_text("6\nP0 1 2\nP1 1 3\nP2 2 4\nP0 1 P1 2\nP1 3 P2 1\nP2 4 P0 3\n")
    (tmp_path / "masked.txt").write_text("P0_0001\nP0_0002\nP1_0001\nP2/P2_0003.png\n")
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=16, seed=0), tmp_path / "m.pt")
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(tmp_path / "m.pt"), "--bench", str(root), "--aligned", "--probe-list",
               str(tmp_path / "masked.txt"), "--protocols", "uu,mu", "--folds", "2", "--precision", "fp32",
               "--no-plots", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    b = doc["benchmarks"]["MyBench"]
    assert b["format"] == "folder" and b["num_images"] == 12 and b["num_pairs"] == 6 and b["num_probe_images"] == 4
    assert len(b["sha256"]) == 64 and b["missed"] == []
    protos = {e["protocol"]: e["metrics"] for e in doc["results"]}
    assert set(protos) == {"uu", "mu", "probe_ref"}
    assert protos["probe_ref"]["num_genuine"] == 10 and protos["probe_ref"]["num_impostor"] == 22
    assert "0.0005" in protos["probe_ref"]["tar_at_far"] and "probe_identity" not in protos["probe_ref"]
    assert "MyBench probe_ref" in (out / "results.md").read_text()
    assert (out / "scores" / "m__MyBench__probe_ref.csv").is_file()
    # a probe list without a folder benchmark is refused in one line
    rc = main(["eval", "--model", str(tmp_path / "m.pt"), "--bench", str(tmp_path / "m.pt"), "--probe-list",
               str(tmp_path / "masked.txt"), "--out", str(out)])
    assert rc == 2 and "folder" in capsys.readouterr().err

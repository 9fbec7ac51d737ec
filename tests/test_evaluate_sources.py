"""evaluate_models with every benchmark source (folders, .bin) and every model kind (torch, ONNX,
dlib); report folders that hold exactly one run; meaningful model labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.errors import CheckpointError, ConfigError

torch = pytest.importorskip("torch")

PAIRS = "6\nP0 1 2\nP1 1 3\nP2 2 4\nP0 1 P1 2\nP1 3 P2 1\nP2 4 P0 3\n"
PROBES = "P0_0001\nP0_0002\nP1_0001\nP2/P2_0003.png\n"


def _write(path, rgb):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    """Aligned SynthFaces crops in LFW layout (P<k>/P<k>_000<i>.png) + pairs.txt + a probe list."""
    from maskinv.data.synth import render_faces

    d = tmp_path_factory.mktemp("folder")
    root = d / "MyBench"
    n_ids, per_id = 3, 4
    imgs, _ = render_faces(np.repeat(np.arange(n_ids), per_id), seed=2, image_indices=np.tile(np.arange(per_id), n_ids),
                           size=112)
    for k in range(n_ids * per_id):
        _write(root / f"P{k // per_id}" / f"P{k // per_id}_{k % per_id + 1:04d}.png", imgs[k])
    (root / "pairs.txt").write_text(PAIRS)
    (d / "probes.txt").write_text(PROBES)
    return root, d / "probes.txt"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    d = tmp_path_factory.mktemp("models")
    for name, seed in (("teacher", 0), ("student", 1)):
        (d / name).mkdir()
        export_backbone(get_model("r18", width_mult=0.125, embedding_size=16, seed=seed), d / name / "backbone.pt")
    return d


@pytest.mark.slow
def test_folder_and_bin_in_one_call(synth_folder, tiny, tmp_path):
    """A folder (aligned, probe list) and the .bin written from it, in one call: the pair
    protocols give the same scores on both (same bytes, same masks); probe_ref only on the folder."""
    from maskinv.data.folder_bench import prepare_folder_bench, save_folder_bin
    from maskinv.evaluate import FolderBenchSpec, evaluate_models, metrics_of

    root, probes = synth_folder
    save_folder_bin(prepare_folder_bench(root, aligned=True), tmp_path / "mybench_pairs.bin")
    models = [tiny / "teacher" / "backbone.pt", tiny / "student" / "backbone.pt"]
    doc = evaluate_models(models, [FolderBenchSpec(root, aligned=True, probe_list=probes), tmp_path / "mybench_pairs.bin"],
                          "uu,mu,mm", precision="fp32", folds=2, batch_size=8, out_dir=tmp_path / "out", plots=False)
    assert list(doc["models"]) == ["teacher", "student"] and list(doc["benchmarks"]) == ["MyBench", "mybench_pairs"]
    got = {(e["model"], e["benchmark"], e["protocol"]) for e in doc["results"]}
    for m in ("teacher", "student"):
        assert {p for mm, b, p in got if mm == m and b == "MyBench"} == {"uu", "mu", "mm", "probe_ref"}
        assert {p for mm, b, p in got if mm == m and b == "mybench_pairs"} == {"uu", "mu", "mm"}
        for p in ("uu", "mu", "mm"):
            np.testing.assert_array_equal(metrics_of(doc, m, "MyBench", p)["scores"],
                                          metrics_of(doc, m, "mybench_pairs", p)["scores"])
        pr = metrics_of(doc, m, "MyBench", "probe_ref")
        assert pr["num_genuine"] == 10 and pr["num_impostor"] == 22 and 5e-4 in pr["tar_at_far"]
        assert 5e-4 in metrics_of(doc, m, "mybench_pairs", "uu")["tar_at_far"]
    b = doc["benchmarks"]["MyBench"]
    assert b["format"] == "folder" and b["num_pairs"] == 6 and b["num_genuine"] == 3 and b["num_impostor"] == 3
    assert b["num_images_dropped"] == 0 and b["num_probe_images"] == 4 and b["num_reference_images"] == 8
    assert b["probe_ref"] == {"num_probes": 4, "num_references": 8, "num_comparisons": 32, "num_genuine": 10,
                              "num_impostor": 22}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["benchmarks"]["MyBench"]["probe_ref"]["num_impostor"] == 22
    md = (tmp_path / "out" / "results.md").read_text()
    assert "TAR at FAR 1:2000" in md and "MyBench probe_ref" in md and "probe_ref: every probe-list image" in md
    assert (tmp_path / "out" / "scores" / "student__MyBench__probe_ref.csv").is_file()


def test_folder_without_pairs_or_probes_fails_before_work(tmp_path, tiny):
    from maskinv.evaluate import FolderBenchSpec, evaluate_models

    (tmp_path / "F" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate_models([tiny / "teacher" / "backbone.pt"], [tmp_path / "F"])
    with pytest.raises(Exception, match="probe list"):
        evaluate_models([tiny / "teacher" / "backbone.pt"], [FolderBenchSpec(tmp_path / "F", probe_list=tmp_path / "no.txt")])


@pytest.mark.slow
def test_onnx_export_scores_like_torch(synth_folder, tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    from maskinv.evaluate import evaluate_models, metrics_of
    from maskinv.export import export_onnx

    pt = tiny / "teacher" / "backbone.pt"
    onnx_path = tmp_path / "teacher.onnx"
    export_onnx(pt, onnx_path)
    root, probes = synth_folder
    from maskinv.evaluate import FolderBenchSpec

    doc = evaluate_models({"torch": pt, "onnx": onnx_path}, [FolderBenchSpec(root, aligned=True, probe_list=probes)],
                          "uu,mu", precision="fp32", folds=2, batch_size=8)
    assert doc["models"]["onnx"]["backend"] == "onnx" and doc["models"]["torch"]["backend"] == "torch"
    for p in ("uu", "mu", "probe_ref"):
        a, b = metrics_of(doc, "torch", "MyBench", p), metrics_of(doc, "onnx", "MyBench", p)
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        assert abs(a["eer"] - b["eer"]) < 1e-9 and a["num_impostor"] == b["num_impostor"]
    # the CLI takes it like any model
    from maskinv.cli import main

    rc = main(["eval", "--model", str(onnx_path), "--bench", str(root), "--aligned", "--protocols", "uu", "--folds", "2",
               "--no-plots", "--out", str(tmp_path / "out")])
    assert rc == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["models"]["teacher"]["backend"] == "onnx"
    assert saved["results"][0]["metrics"]["eer"] == pytest.approx(metrics_of(doc, "onnx", "MyBench", "uu")["eer"])
    # an .onnx where only PyTorch weights work: one clear line
    from maskinv.models import load_backbone

    with pytest.raises(CheckpointError, match="ONNX model; this needs PyTorch weights"):
        load_backbone(onnx_path)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Two real people (skimage's astronaut, matplotlib's Grace Hopper), three photos each
    (original, mirrored, scaled), LFW layout + pairs.txt + probe list."""
    import cv2

    skdata = pytest.importorskip("skimage.data")
    cbook = pytest.importorskip("matplotlib.cbook")
    from maskinv.utils.images import decode_image

    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as fh:
        grace = decode_image(fh.read(), "grace_hopper.jpg")
    d = tmp_path_factory.mktemp("photos")
    root = d / "People"
    for name, img in (("Astro", skdata.astronaut()), ("Grace", grace)):
        small = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
        for i, v in enumerate((img, img[:, ::-1], small), start=1):
            _write(root / name / f"{name}_{i:04d}.png", v)
    (root / "pairs.txt").write_text("Astro 1 2\nAstro 1 3\nGrace 1 2\nGrace 2 3\n"
                                    "Astro 1 Grace 1\nAstro 2 Grace 3\nAstro 3 Grace 2\nGrace 1 Astro 3\n")
    (d / "probes.txt").write_text("Astro_0002\nGrace_0003\n")
    return root, d / "probes.txt"


@pytest.mark.slow
def test_dlib_sees_the_photos_our_model_the_crops(photo_folder, tiny, tmp_path, capsys):
    pytest.importorskip("dlib")
    import maskinv
    from maskinv.evaluate import FolderBenchSpec, evaluate_models, metrics_of
    from maskinv.models.embedding import pair_scores

    root, probes = photo_folder
    spec = FolderBenchSpec(root, probe_list=probes, cache_dir=tmp_path / "cache")
    doc = evaluate_models(["dlib", tiny / "teacher" / "backbone.pt"], [spec], "uu,mu", folds=2, precision="fp32")
    assert doc["benchmarks"]["People"]["num_images_dropped"] == 0
    assert doc["models"]["dlib"]["backend"] == "dlib" and doc["models"]["dlib"]["flip_test"] is False
    # same pairs for both models; dlib gets mu with masks drawn on the full photos (issue 21)
    uu_d, uu_t = metrics_of(doc, "dlib", "People", "uu"), metrics_of(doc, "teacher", "People", "uu")
    np.testing.assert_array_equal(uu_d["genuine"], uu_t["genuine"])
    assert doc["not_scored"] == []
    mu_d = metrics_of(doc, "dlib", "People", "mu")
    np.testing.assert_array_equal(mu_d["genuine"], uu_d["genuine"])
    assert mu_d["masks_on"].startswith("full photos")
    assert mu_d["scores"][:4].mean() < uu_d["scores"][:4].mean()       # masks cost dlib similarity
    assert "mu" in {e["protocol"] for e in doc["results"] if e["model"] == "teacher"}
    # dlib embedded the original photos with its own alignment: its scores are those of maskinv.embed on the files
    rec = maskinv.load_model("dlib")
    files = {n: root / n.split("_")[0] / f"{n}.png" for n in ("Astro_0001", "Astro_0002", "Grace_0001")}
    e = {n: rec.embed_images([p], detector=spec_detector(doc))[0][0] for n, p in files.items()}
    np.testing.assert_allclose(uu_d["scores"][0], pair_scores(e["Astro_0001"][None], e["Astro_0002"][None])[0], atol=1e-6)
    np.testing.assert_allclose(uu_d["scores"][4], pair_scores(e["Astro_0001"][None], e["Grace_0001"][None])[0], atol=1e-6)
    assert uu_d["eer"] == 0.0 and uu_d["scores"][:4].min() > 0.9 > uu_d["scores"][4:].max()
    pr_d, pr_t = metrics_of(doc, "dlib", "People", "probe_ref"), metrics_of(doc, "teacher", "People", "probe_ref")
    assert pr_d["num_genuine"] == pr_t["num_genuine"] == 4 and pr_d["num_impostor"] == pr_t["num_impostor"] == 4

    # the same through the CLI: `maskinv eval --model dlib --bench FOLDER`
    from maskinv.cli import main

    out = tmp_path / "out"
    rc = main(["eval", "--model", "dlib", "--bench", str(root), "--protocols", "uu", "--folds", "2", "--no-plots",
               "--align-cache", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((out / "results.json").read_text())
    assert [(e["model"], e["protocol"]) for e in saved["results"]] == [("dlib", "uu")]
    assert saved["results"][0]["metrics"]["eer"] == 0.0


@pytest.mark.slow
def test_dlib_follows_the_folders_drop_decision(photo_folder, tmp_path):
    """An image without a face: dropped with its pair for every model, or (on_miss=center) its
    centred square for every model — dlib included."""
    pytest.importorskip("dlib")
    import shutil

    from maskinv.evaluate import FolderBenchSpec, evaluate_models, metrics_of

    src, _ = photo_folder
    root = tmp_path / "People"
    shutil.copytree(src, root)
    y, x = np.mgrid[0:240, 0:320]
    _write(root / "Wall" / "Wall_0001.png", np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))
    (root / "pairs.txt").write_text((src / "pairs.txt").read_text() + "Wall 1 Astro 1\n")
    models = ["dlib", tiny_module()]
    for on_miss, kept in (("drop", 8), ("center", 9)):
        doc = evaluate_models(models, [FolderBenchSpec(root, on_miss=on_miss, cache_dir=tmp_path / "cache")], "uu",
                              folds=2, precision="fp32")
        b = doc["benchmarks"]["People"]
        assert b["missed"] == ["Wall/Wall_0001.png"] and b["num_pairs"] == kept
        assert b["num_pairs_dropped"] == 9 - kept
        for m in ("dlib", "model"):
            assert metrics_of(doc, m, "People", "uu")["num_pairs"] == kept


def tiny_module():
    from maskinv.models import get_model

    return get_model("r18", width_mult=0.125, embedding_size=16, seed=3)


def spec_detector(doc):
    """The detector the folder was aligned with (recorded by name in the benchmark entry)."""
    from maskinv.align import get_detector

    return get_detector(doc["benchmarks"]["People"]["detector"])


@pytest.mark.slow
def test_rerun_leaves_exactly_this_runs_files(tiny, tmp_path):
    """Issue 16 item 8: a re-run with another model and fewer protocols removes the previous
    run's score CSVs and plots (ours only), never the user's files."""
    from maskinv.evaluate import evaluate_models

    rng = np.random.default_rng(0)
    n = 12
    images = rng.integers(0, 256, (2 * n, 112, 112, 3), dtype=np.uint8)
    images[1::2][:6] = images[0::2][:6]
    bench = {"b": (images, np.arange(n) < 6)}
    out = tmp_path / "eval"
    (out / "scores").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "scores" / "mine.csv").write_text("score,genuine\n")
    (out / "old__b__roc_det.png").write_bytes(b"not listed anywhere: not ours to delete")
    kw = dict(precision="fp32", folds=2, batch_size=8, out_dir=out)
    evaluate_models({"teacher": tiny / "teacher" / "backbone.pt"}, bench, "uu,mu,mm", plots=True, **kw)
    assert (out / "scores" / "teacher__b__mm.csv").is_file() and (out / "teacher__b__hist.png").is_file()
    doc = evaluate_models({"student": tiny / "student" / "backbone.pt"}, bench, "uu", plots=False, **kw)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["notes.txt", "old__b__roc_det.png", "results.json", "results.md", "scores/mine.csv",
                     "scores/student__b__uu.csv"]
    assert json.loads((out / "results.json").read_text())["outputs"] == ["scores/student__b__uu.csv"]
    assert doc["report"]["scores"] == [out / "scores" / "student__b__uu.csv"]

    # a results.json written before the "outputs" list existed: its files follow from its results
    saved = json.loads((out / "results.json").read_text())
    del saved["outputs"]
    (out / "results.json").write_text(json.dumps(saved))
    evaluate_models({"teacher": tiny / "teacher" / "backbone.pt"}, bench, "mu", plots=False, **kw)
    assert not (out / "scores" / "student__b__uu.csv").exists() and (out / "scores" / "teacher__b__mu.csv").is_file()
    assert (out / "scores" / "mine.csv").is_file() and (out / "notes.txt").is_file()


def test_cli_labels_two_backbone_pt_by_folder(tiny, tmp_path, capsys):
    from maskinv.cli import main

    rng = np.random.default_rng(1)
    n = 8
    images = rng.integers(0, 256, (2 * n, 112, 112, 3), dtype=np.uint8)
    from maskinv.data.bins import save_bin
    from maskinv.utils.images import encode_image

    save_bin(tmp_path / "t.bin", [encode_image(im, "png") for im in images], np.arange(n) % 2 == 0)
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(tiny / "teacher" / "backbone.pt"), "--model", str(tiny / "student" / "backbone.pt"),
               "--bench", str(tmp_path / "t.bin"), "--protocols", "uu", "--folds", "2", "--precision", "fp32",
               "--no-plots", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "scores").iterdir()) == ["student__t__uu.csv", "teacher__t__uu.csv"]
    # per-model options: once for all or once per model
    rc = main(["eval", "--model", str(tiny / "teacher" / "backbone.pt"), "--model", "dlib", "--input-mean", "1",
               "--input-mean", "2", "--input-mean", "3", "--bench", str(tmp_path / "t.bin"), "--out", str(out)])
    assert rc == 2 and "--input-mean given 3 times for 2 --model" in capsys.readouterr().err
    rc = main(["eval", "--model", str(tiny / "teacher" / "backbone.pt"), "--bench", str(tmp_path / "t.bin"),
               "--pairs", str(tmp_path / "t.bin"), "--out", str(out)])
    assert rc == 2 and "--pairs applies to folder benchmarks" in capsys.readouterr().err

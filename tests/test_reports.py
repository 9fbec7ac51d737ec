"""Reports: results.json content, Markdown table, plots and score CSVs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.evaluate.metrics import verification_metrics
from maskinv.evaluate.plots import decimate_curve, plot_roc_det, plot_score_histograms, probit
from maskinv.evaluate.reports import markdown_table, new_results, results_json, unique_labels, write_report
from maskinv.evaluate.metrics import roc_curve


def _metrics(rng, n, sep):
    g = rng.random(n) < 0.5
    s = np.where(g, rng.normal(sep, 0.15, n), rng.normal(0.0, 0.15, n))
    m = verification_metrics(s, g)
    m["scores"], m["genuine"] = s, g
    return m


@pytest.fixture
def results(rng):
    res = new_results({"protocols": ["uu", "mu"], "seed": 3, "flip": True})
    res["models"]["teacher"] = {"path": "/x/teacher.pt", "sha256": "ab" * 32, "arch": {"name": "r18", "kwargs": {}}}
    res["models"]["student"] = {"path": "/x/student.pt", "sha256": "cd" * 32, "arch": {"name": "r18", "kwargs": {}}}
    res["benchmarks"]["lfw"] = {"path": "/d/lfw.bin", "sha256": "ef" * 32, "num_pairs": 2400}
    for model, seps in (("teacher", (0.6, 0.3)), ("student", (0.6, 0.5))):
        for proto, sep in zip(("uu", "mu"), seps):
            res["results"].append({"model": model, "benchmark": "lfw", "protocol": proto, "metrics": _metrics(rng, 2400, sep)})
    return res


@pytest.mark.slow
def test_write_report(tmp_path, results):
    written = write_report(tmp_path, results)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["format"] == "maskinv-eval-results" and doc["settings"]["seed"] == 3
    assert set(doc["versions"]) >= {"maskinv", "python", "numpy", "torch"}
    assert doc["models"]["student"]["sha256"] == "cd" * 32
    entry = doc["results"][1]
    assert entry["model"] == "teacher" and entry["protocol"] == "mu"
    assert "scores" not in entry["metrics"] and "genuine" not in entry["metrics"]
    src = results["results"][1]["metrics"]
    assert entry["metrics"]["accuracy_mean"] == src["accuracy_mean"]
    assert entry["metrics"]["tar_at_far"]["0.01"] == src["tar_at_far"][1e-2]
    assert entry["metrics"]["tar_at_far"]["0.0001"] is None
    assert "tar_at_far[0.0001]" in entry["metrics"]["undefined"]
    # plots exist and are PNGs; score CSVs round-trip exactly
    assert len(written["plots"]) == 5  # per model: ROC/DET + histograms; one ROC/DET with both models overlaid
    assert (tmp_path / "lfw__all_models_roc_det.png").is_file()
    for p in written["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_path = tmp_path / "scores" / "student__lfw__mu.csv"
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "score,genuine" and len(rows) == 2401
    back = np.array([float(r.split(",")[0]) for r in rows[1:]])
    np.testing.assert_array_equal(back, results["results"][3]["metrics"]["scores"])
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_markdown_table(results):
    md = markdown_table(results)
    assert "| model | lfw U-U | lfw M-U |" in md
    teacher = next(line for line in md.splitlines() if line.startswith("| teacher") and "±" in line)
    acc = results["results"][0]["metrics"]["accuracy_mean"]
    assert f"{100 * acc:.2f}" in teacher
    assert "## EER (%)" in md and "## FMR100" in md
    # 1,200 impostors: FMR1000 defined; FAR 1e-4 would not be
    assert "## FMR1000" in md
    only_eer = markdown_table(results, metrics=["eer"])
    assert "## EER" in only_eer and "Accuracy" not in only_eer


def test_markdown_undefined_everywhere(results):
    for e in results["results"]:
        e["metrics"]["fmr1000"] = None
    md = markdown_table(results)
    assert "## FMR1000" not in md and "undefined for every entry" in md


def test_results_json_no_nan():
    doc = results_json({"a": float("nan"), "b": {1e-3: np.float32(0.5)}, "c": np.arange(2)})
    assert doc == {"a": None, "b": {"0.001": 0.5}, "c": [0, 1]}
    json.dumps(doc, allow_nan=False)


def test_unique_labels():
    # generic stems take the folder name; collisions take parent folders; identical paths a number
    assert unique_labels(["/a/model.pt", "/b/model.pt", "x y.pth"]) == ["a", "b", "x_y"]
    assert unique_labels(["/r/a/teacher/backbone.pt", "/r/b/teacher/backbone.pt", "/r/c/student/backbone.pt"]) == [
        "a-teacher", "b-teacher", "student"]
    assert unique_labels(["/a/m0.pt", "/b/m0.pt", "/b/m0.pt", "dlib"]) == ["a-m0", "b-m0", "b-m0-2", "dlib"]


def test_probit_and_decimation(rng):
    np.testing.assert_allclose(probit(np.array([0.5, 0.975, 0.025])), [0.0, 1.959964, -1.959964], atol=1e-6)
    g = rng.random(50000) < 0.5
    s = np.where(g, rng.normal(0.5, 0.2, 50000), rng.normal(0, 0.2, 50000))
    c = roc_curve(s, g)
    idx = decimate_curve(c["fmr"], c["fnmr"], points=200)
    assert idx[0] == 0 and idx[-1] == len(c["fmr"]) - 1 and len(idx) < 2000
    # the low-FMR tail is kept: some retained point has 0 < FMR <= 1e-4
    f = c["fmr"][idx]
    assert np.any((f > 0) & (f <= 1e-4))


@pytest.mark.slow
def test_plots_accept_tuples(tmp_path, rng):
    g = rng.random(300) < 0.5
    s = rng.normal(size=300) + g
    p1 = plot_roc_det({"uu": (s, g), "mu": (s - 0.3 * g, g)}, tmp_path / "a.png")
    p2 = plot_score_histograms({"uu": (s, g)}, tmp_path / "b.png", title="t")
    assert p1.stat().st_size > 1000 and p2.stat().st_size > 1000


def test_results_md_stands_alone_probe_ref_drops_thresholds_na_reasons_comparisons(rng):
    """issue 25 item 2: probe_ref leads with EER and FNMR at FMR (no plain accuracy), its description
    matches its count (probes x references), and results.md carries the drops, the thresholds, the
    reasons of n/a cells and the bootstrap comparisons."""
    from maskinv.evaluate.probe_ref import probe_ref_metrics

    res = new_results({"protocols": ["uu"], "seed": 0, "flip": True})
    res["benchmarks"]["rmfd"] = {
        "num_pairs": 0, "num_images_dropped": 3, "missed": ["a/1.jpg", "b/2.jpg", "c/3.jpg"], "on_miss": "drop",
        "unreadable": [{"image": "c/3.jpg", "reason": "a truncated JPEG (the file ends before its end-of-image marker) (99 bytes)"}],
        "probe_ref": {"num_probes": 20, "num_references": 50, "num_comparisons": 1000, "num_genuine": 40,
                      "num_impostor": 960}}
    g = np.zeros(1000, bool)
    g[:40] = True
    for model, sep in (("dlib", 0.5), ("lg", 0.7)):
        s = np.where(g, rng.normal(sep, 0.1, 1000), rng.normal(0, 0.1, 1000))
        res["results"].append({"model": model, "benchmark": "rmfd", "protocol": "probe_ref",
                               "metrics": probe_ref_metrics(s, g)})
    res["comparisons"] = [{"model_a": "dlib", "model_b": "lg", "benchmark": "rmfd", "protocol": "probe_ref",
                           "eer": {"diff": -0.05, "ci95": [-0.08, -0.02]}, "unit": "points"}]
    md = markdown_table(res)
    assert "## rmfd probe_ref: probes against references" in md
    assert "| model | EER | FNMR at FMR 1e-2 | FNMR at FMR 1e-3 | FNMR at FMR 1:2000 |" in md
    assert "Accuracy" not in md  # 40 genuine against 960 impostor: "always no" would be 96 % accurate
    assert "probes × references" in md and "all against all" not in md
    assert "20 probes × 50 references = 1,000 comparisons (40 genuine, 960 impostor)" in md
    assert "3 images dropped: 2 without a detected face" in md and "c/3.jpg: a truncated JPEG" in md
    assert "## Thresholds" in md and "| dlib | rmfd probe_ref |" in md
    # 960 impostors cannot measure FMR 1e-3 or 1:2000: n/a with a numbered reason
    assert "n/a[^1]" in md and "[^1]: needs >= 1000 impostor comparisons" in md
    assert "## Paired comparisons" in md and "rmfd" in md.split("## Paired comparisons")[1]


def test_eval_results_go_to_stdout(tmp_path, capsys):
    """`maskinv eval ... > log.txt` captures the results; progress stays on stderr."""
    import cv2

    from maskinv.cli import main
    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model

    export_backbone(get_model("r18", width_mult=0.125, input_size=32, embedding_size=16, seed=0), tmp_path / "m.pt")
    imgs = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    save_bin(tmp_path / "b.bin", [cv2.imencode(".png", i)[1].tobytes() for i in imgs], np.arange(20) % 2 == 0)
    assert main(["eval", "--model", str(tmp_path / "m.pt"), "--bench", str(tmp_path / "b.bin"), "--protocols", "uu",
                 "--no-plots", "--out", str(tmp_path / "ev")]) == 0
    cap = capsys.readouterr()
    assert cap.out == (tmp_path / "ev" / "results.md").read_text() and "# Verification results" not in cap.err
    assert main(["eval", "--model", str(tmp_path / "m.pt"), "--bench", str(tmp_path / "b.bin"), "--protocols", "uu",
                 "--out", "/proc/maskinv_x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskinv eval: error: argument --out: /proc/maskinv_x") and "\n" not in err

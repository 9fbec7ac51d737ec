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
    assert len(written["plots"]) == 4
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


def test_plots_accept_tuples(tmp_path, rng):
    g = rng.random(300) < 0.5
    s = rng.normal(size=300) + g
    p1 = plot_roc_det({"uu": (s, g), "mu": (s - 0.3 * g, g)}, tmp_path / "a.png")
    p2 = plot_score_histograms({"uu": (s, g)}, tmp_path / "b.png", title="t")
    assert p1.stat().st_size > 1000 and p2.stat().st_size > 1000

"""``maskinv eval`` / ``maskinv metrics`` end to end on a tiny model and .bin, plus the callback."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.cli import main
from maskinv.evaluate.metrics import verification_metrics

torch = pytest.importorskip("torch")

SIZE = 32


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model

    d = tmp_path_factory.mktemp("eval")
    for i in (0, 1):
        export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=i), d / f"m{i}.pt")
    rng = np.random.default_rng(0)
    n = 30
    base = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    images = np.repeat(base, 2, axis=0)
    issame = np.arange(n) % 2 == 0
    images[1::2][~issame] = rng.integers(0, 256, (int((~issame).sum()), SIZE, SIZE, 3), dtype=np.uint8)
    save_bin(d / "tiny.bin", [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images], issame)
    big = np.stack([cv2.resize(im, (40, 40)) for im in images])
    save_bin(d / "big.bin", [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in big], issame)
    return d, images, issame


@pytest.mark.slow
def test_eval_two_models(assets, tmp_path, capsys):
    d, images, issame = assets
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(d / "m0.pt"), "--model", str(d / "m1.pt"), "--bench", str(d / "tiny.bin"),
               "--protocols", "uu,mu", "--seed", "2", "--batch-size", "16", "--precision", "fp32", "--folds", "5", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert [(e["model"], e["protocol"]) for e in doc["results"]] == [("m0", "uu"), ("m0", "mu"), ("m1", "uu"), ("m1", "mu")]
    from maskinv.utils.hashing import file_sha256

    assert doc["benchmarks"]["tiny"]["sha256"] == file_sha256(d / "tiny.bin")
    assert doc["models"]["m1"]["sha256"] == file_sha256(d / "m1.pt")
    assert doc["settings"]["seed"] == 2 and doc["settings"]["flip"] is True
    assert doc["settings"]["precision_used"] == "fp32"
    md = (out / "results.md").read_text()
    assert "| m0 |" in md and "| m1 |" in md and "tiny M-U" in md
    assert (out / "m1__tiny__roc_det.png").is_file() and (out / "m0__tiny__hist.png").is_file()
    # the same numbers as the Python API
    from maskinv.evaluate import evaluate_bin
    from maskinv.models import load_backbone

    api = evaluate_bin(load_backbone(d / "m0.pt"), d / "tiny.bin", protocols="uu,mu", seed=2, precision="fp32", folds=5)
    assert doc["results"][1]["metrics"]["accuracy_mean"] == api["mu"]["accuracy_mean"]
    assert doc["results"][1]["metrics"]["eer"] == api["mu"]["eer"]
    # ... and `maskinv metrics` on the written score file reproduces them
    capsys.readouterr()
    assert main(["metrics", str(out / "scores" / "m0__tiny__mu.csv"), "--json", "--folds", "5"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy_mean"] == api["mu"]["accuracy_mean"] and m["eer"] == api["mu"]["eer"]


def test_eval_resizes_with_warning(assets, tmp_path, capsys):
    d, _, _ = assets
    rc = main(["eval", "--model", str(d / "m0.pt"), "--bench", str(d / "big.bin"), "--protocols", "uu,mu",
               "--no-flip", "--no-plots", "--out", str(tmp_path)])
    assert rc == 0
    # the CLI prints Python warnings as one-line notes (no source path)
    err = capsys.readouterr().err
    assert err.count("maskinv: note: resizing images from 40x40 to the model's input size") == 1  # once, no per-call count
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["flip"] is False


def test_eval_errors(assets, tmp_path, capsys):
    d, _, _ = assets
    assert main(["eval", "--model", str(d / "m0.pt"), "--bench", str(d / "missing.bin"), "--out", str(tmp_path)]) == 2
    assert "missing.bin" in capsys.readouterr().err
    assert main(["eval", "--model", str(d / "m0.pt"), "--bench", str(d / "tiny.bin"), "--protocols", "uu,xy", "--out", str(tmp_path)]) == 2
    assert "unknown protocol" in capsys.readouterr().err


def _csv(tmp_path, text):
    p = tmp_path / "s.csv"
    p.write_text(text)
    return str(p)


def test_metrics_cli(tmp_path, capsys, rng):
    g = rng.random(400) < 0.5
    s = rng.normal(size=400) + 2 * g
    text = "score,genuine\n" + "".join(f"{float(a)!r},{int(b)}\n" for a, b in zip(s, g))
    assert main(["metrics", _csv(tmp_path, text), "--json", "--far", "0.05"]) == 0
    m = json.loads(capsys.readouterr().out)
    ref = verification_metrics(s, g, far_targets=(0.05,))
    assert m["accuracy_mean"] == ref["accuracy_mean"] and m["fmr100"] == ref["fmr100"] and m["auc"] == ref["auc"]
    assert m["tar_at_far"]["0.05"] == ref["tar_at_far"][0.05]
    assert m["tar_at_far"]["0.001"] is None
    assert main(["metrics", _csv(tmp_path, text)]) == 0
    assert "EER" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text,match",
    [
        ("score,genuine\n0.5,1\nnan,0\n", "line 3: score is 'nan'"),
        ("score,genuine\n0.5,1\n0.2\n", "line 3: 1 fields"),
        ("score,genuine\n0.5,1\nabc,0\n", "line 3: score 'abc' is not a number"),
        ("score,genuine\n0.5,1\n0.1,2\n", "line 3: genuine '2'"),
        ("score,genuine\n0.5,1\n0.1,1\n", "all 2 rows are genuine"),
        ("a,b\n0.5,1\n", "header must name"),
        ("score,genuine\n", "no score rows"),
    ],
)
def test_metrics_cli_bad_files(tmp_path, capsys, text, match):
    assert main(["metrics", _csv(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert match in err and "s.csv" in err


def test_verification_callback(assets):
    from maskinv.evaluate.callback import VerificationCallback
    from maskinv.models import load_backbone

    d, images, issame = assets
    logged = []
    cb = VerificationCallback([d / "tiny.bin", ("mem", (images, issame))], every_steps=5, protocols=("uu", "mu"),
                              precision="fp32", folds=5, log_fn=lambda m, s: logged.append(s))
    model = load_backbone(d / "m0.pt")
    model.train()
    assert cb(model, 3) is None and cb(model, 0) is None
    out = cb(model, 10)
    assert model.training
    assert set(out) >= {"tiny/uu/accuracy", "tiny/mu/eer", "mem/mu/accuracy", "mem/uu/fmr100", "eval_seconds"}
    assert out["tiny/mu/accuracy"] == out["mem/mu/accuracy"]  # PNG round trip is lossless
    assert logged == [10]
    # masks are cached: a second run gives identical numbers
    again = cb(model, 15)
    assert again["tiny/mu/eer"] == out["tiny/mu/eer"]

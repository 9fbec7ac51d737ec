"""maskinv.evaluate.evaluate_models: N models x M benchmarks x protocols as a library call."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.errors import ConfigError, DataFormatError

torch = pytest.importorskip("torch")

SIZE = 32


@pytest.fixture(scope="module")
def bench():
    rng = np.random.default_rng(1)
    n = 24
    base = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    images = np.repeat(base, 2, axis=0)
    issame = np.arange(n) % 2 == 0
    images[1::2][~issame] = rng.integers(0, 256, (int((~issame).sum()), SIZE, SIZE, 3), dtype=np.uint8)
    return images, issame


def _model(seed):
    from maskinv.models import get_model

    return get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=seed)


def test_models_times_benchmarks_match_per_model_evaluation(bench, tmp_path):
    from maskinv.evaluate import evaluate_models, metrics_of, verification_metrics
    from maskinv.masks import mask_pair_images
    from maskinv.models.embedding import embed_images

    images, issame = bench
    half = (images[:24], issame[:12])
    models = {"a": _model(0), "b": _model(1)}
    doc = evaluate_models(models, {"full": bench, "half": half}, "mm,uu", seed=4, precision="fp32", folds=4,
                          out_dir=tmp_path / "out", plots=False)
    assert [(e["model"], e["benchmark"], e["protocol"]) for e in doc["results"]] == [
        ("a", "full", "uu"), ("a", "full", "mm"), ("b", "full", "uu"), ("b", "full", "mm"),
        ("a", "half", "uu"), ("a", "half", "mm"), ("b", "half", "uu"), ("b", "half", "mm")]
    assert doc["benchmarks"]["half"]["num_pairs"] == 12 and doc["benchmarks"]["full"]["image_size"] == [SIZE, SIZE]
    assert doc["settings"]["protocols"] == ["uu", "mm"] and doc["settings"]["precision_used"] == "fp32"
    for label, model in models.items():  # reference loop: embed each image set, cosine of each pair
        for p, imgs in (("uu", images), ("mm", mask_pair_images(images, "mm", 4, kind="random"))):
            e = embed_images(model, imgs, precision="fp32").astype(np.float64)
            want = (e[0::2] * e[1::2]).sum(1)
            got = metrics_of(doc, label, "full", p)
            np.testing.assert_allclose(got["scores"], want, rtol=0, atol=1e-6)
            ref = verification_metrics(got["scores"], issame, folds=4)
            assert got["eer"] == ref["eer"] and got["accuracy_mean"] == ref["accuracy_mean"]
    written = doc["report"]
    saved = json.loads(written["json"].read_text())
    assert len(saved["results"]) == 8 and "scores" not in saved["results"][0]["metrics"]
    assert (tmp_path / "out" / "scores" / "b__half__mm.csv").is_file() and written["plots"] == []


def test_file_models_are_labelled_and_fingerprinted(bench, tmp_path):
    from maskinv.data.bins import save_bin
    from maskinv.evaluate import ModelSpec, evaluate_models
    from maskinv.models import export_backbone
    from maskinv.utils.hashing import file_sha256
    from maskinv.utils.images import encode_image

    images, issame = bench
    for d in ("teacher", "student"):
        (tmp_path / d).mkdir()
        export_backbone(_model(2), tmp_path / d / "backbone.pt")
    save_bin(tmp_path / "b.bin", [encode_image(im, "png") for im in images], issame)
    doc = evaluate_models([tmp_path / "teacher" / "backbone.pt", ModelSpec(path=tmp_path / "student" / "backbone.pt")],
                          [tmp_path / "b.bin"], ("uu",), precision="fp32", folds=2)
    # our exports are all named backbone.pt: the folder names the model
    assert list(doc["models"]) == ["teacher", "student"]
    assert doc["models"]["teacher"]["sha256"] == file_sha256(tmp_path / "teacher" / "backbone.pt")
    assert doc["benchmarks"]["b"]["sha256"] == file_sha256(tmp_path / "b.bin")
    # same weights, same masks: same scores
    a, b = (e["metrics"]["scores"] for e in doc["results"])
    np.testing.assert_array_equal(a, b)
    assert "report" not in doc


def test_bad_inputs_fail_before_work(bench, tmp_path):
    from maskinv.evaluate import evaluate_models

    with pytest.raises(FileNotFoundError, match="missing.bin"):
        evaluate_models([_model(0)], [tmp_path / "missing.bin"])
    with pytest.raises(ConfigError, match="protocol"):
        evaluate_models([_model(0)], [bench], "uu,xx")
    from maskinv.evaluate import ModelSpec

    with pytest.raises(ConfigError, match="unique"):
        evaluate_models([ModelSpec("a", module=_model(0)), ModelSpec("a", module=_model(1))], [bench])
    with pytest.raises(DataFormatError, match="pairs"):
        evaluate_models({"a": _model(0)}, {"odd": (bench[0][:6], bench[1][:2])})

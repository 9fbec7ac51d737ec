"""ONNX export: parity with PyTorch, dynamic batch, metadata, shared thresholds, same decisions."""
from __future__ import annotations

import numpy as np
import pytest

import maskinv
from maskinv.api import load_model
from maskinv.errors import ConfigError
from maskinv.export import export_onnx
from maskinv.thresholds import thresholds_path, write_entry

import onnx  # noqa: E402  (dev extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    path = tmp_path_factory.mktemp("m") / "backbone.pt"
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=32, seed=5), path)
    return path


@pytest.fixture(scope="module")
def onnx_path(exported):
    out = exported.with_suffix(".onnx")
    report = export_onnx(exported, out)
    assert report["max_cosine_distance"] <= 1e-4
    return out


@pytest.fixture
def crops(rng):
    import cv2

    return np.stack([cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
                     for s in rng.integers(0, 256, size=(5, 14, 14, 3), dtype=np.uint8)])


def test_graph_metadata_and_dynamic_batch(onnx_path):
    proto = onnx.load(str(onnx_path))
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["maskinv.channel_order"] == "RGB"
    assert props["maskinv.normalization"] == "(x/255-0.5)/0.5"
    assert props["maskinv.input_size"] == "112" and props["maskinv.arch"] == "r18"
    inp = proto.graph.input[0].type.tensor_type.shape.dim
    assert inp[0].dim_param == "batch" and [d.dim_value for d in inp[1:]] == [3, 112, 112]


def test_parity_and_fingerprint(exported, onnx_path, crops):
    pt = load_model(exported)
    ox = load_model(onnx_path)
    assert ox.backend == "onnx" and ox.fingerprint == pt.fingerprint
    assert ox.embedding_size == 32
    for batch in (crops[:1], crops):  # batch 1 and 5: dynamic axis
        a, b = pt.embed_aligned(batch), ox.embed_aligned(batch)
        assert a.shape == b.shape
        assert (1.0 - (a * b).sum(1)).max() <= 1e-4


def test_torch_and_onnx_verify_agree(exported, onnx_path, crops):
    pt, ox = load_model(exported), load_model(onnx_path)
    tp = thresholds_path(exported)
    assert thresholds_path(onnx_path) == tp  # same folder: one thresholds file for both
    s01 = float(maskinv.compare(*pt.embed_aligned(crops[:2])))
    try:
        write_entry(tp, pt.fingerprint, {"protocol": "mu", "fmr": 1e-3, "threshold": s01 - 0.01, "flip": True})
        for a, b in [(0, 1), (0, 0), (2, 3), (1, 4)]:
            r1 = maskinv.verify(crops[a], crops[b], pt, fmr=1e-3, aligned=True)
            r2 = maskinv.verify(crops[a], crops[b], ox, fmr=1e-3, aligned=True)
            assert r1.verified == r2.verified and abs(r1.score - r2.score) <= 1e-4
            assert r2.threshold_source == "calibrated"
        assert maskinv.verify(crops[0], crops[1], ox, fmr=1e-3, aligned=True).verified
    finally:
        tp.unlink()


def test_export_elsewhere_copies_thresholds(exported, tmp_path):
    pt = load_model(exported)
    tp = thresholds_path(exported)
    try:
        write_entry(tp, pt.fingerprint, {"protocol": "mu", "fmr": 1e-3, "threshold": 0.4, "flip": True})
        out = tmp_path / "deploy" / "face.onnx"
        report = export_onnx(pt, out, check=False)
        assert report["thresholds"] == str(thresholds_path(out))
        r = maskinv.verify(np.zeros((112, 112, 3), np.uint8), np.zeros((112, 112, 3), np.uint8),
                           load_model(out), fmr=1e-3, aligned=True)
        assert r.threshold == 0.4
    finally:
        tp.unlink()


def test_export_refusals(exported, tmp_path):
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(exported, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ConfigError, match=".onnx"):
        export_onnx(exported, tmp_path / "x.bin")
    assert not (tmp_path / "x.onnx").exists()

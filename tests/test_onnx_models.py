"""ArcFace-style ONNX models (InsightFace zoo files): input convention from a sidecar, the
graph's metadata, explicit values or the graph itself; explicit values are really used."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maskinv.api import load_model
from maskinv.errors import ConfigError
from maskinv.export import _export_graph, export_onnx
from maskinv.models import export_backbone, get_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def net():
    return get_model("r18", width_mult=0.125, embedding_size=32, seed=11).eval()


@pytest.fixture(scope="module")
def ours(net, tmp_path_factory):
    d = tmp_path_factory.mktemp("ours")
    export_backbone(net, d / "backbone.pt")
    export_onnx(d / "backbone.pt", d / "backbone.onnx")
    return d / "backbone.onnx"


def _strip_metadata(src, dst):
    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture
def crops(rng):
    import cv2

    small = rng.integers(0, 256, size=(4, 14, 14, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC) for s in small])


def _ref(net, crops):
    from maskinv.preprocess import to_tensor

    with torch.no_grad():
        e = net(to_tensor(crops)).numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _close(a, b, tol=1e-4):
    return float((1.0 - (a * b).sum(1)).max()) <= tol


def test_our_export_and_a_bare_graph(net, ours, crops, tmp_path):
    want = _ref(net, crops)
    fm = load_model(ours)
    assert fm.meta["input_convention_source"] == "graph metadata"
    assert _close(fm.embed_aligned(crops, flip=False), want)
    bare = _strip_metadata(ours, tmp_path / "w600k_like.onnx")  # like a zoo file: no metadata, no sidecar
    zoo = load_model(bare)
    assert zoo.meta["input_convention_source"].startswith("default (InsightFace model zoo")
    assert zoo.input_size == 112 and zoo.embedding_size == 32
    assert _close(zoo.embed_aligned(crops, flip=False), want)
    explicit = load_model(bare, input_mean=127.5, input_std=127.5, channel_order="RGB")
    assert explicit.meta["input_convention_source"] == "explicit arguments"
    assert _close(explicit.embed_aligned(crops, flip=False), want)
    # wrong explicit values change the result: the flags are really used
    for kw in (dict(input_mean=0.0, input_std=1.0), dict(input_mean=127.5, input_std=127.5, channel_order="BGR"),
               dict(input_mean=90.0, input_std=127.5)):  # (a pure scale change would not show: an
        # untrained net with zero biases is positively homogeneous)
        got = load_model(bare, **kw).embed_aligned(crops, flip=False)
        assert not _close(got, want, tol=1e-3), kw


class _BGRRaw(torch.nn.Module):
    """A graph fed BGR raw pixels that normalises itself (Sub, Mul first), like mxnet-converted zoo models."""

    def __init__(self, net, bgr: bool):
        super().__init__()
        self.net, self.bgr = net, bgr

    def forward(self, x):
        x = (x - 127.5) * (1.0 / 127.5)
        return self.net(x.flip(1) if self.bgr else x)


def test_graph_that_normalises_itself_and_bgr(net, crops, tmp_path):
    want = _ref(net, crops)
    raw_rgb = tmp_path / "raw_rgb.onnx"
    _export_graph(_BGRRaw(net, bgr=False).eval(), raw_rgb, 112, 17)
    fm = load_model(raw_rgb)
    assert fm.meta["input_convention_source"].startswith("graph (Sub+Mul")
    assert _close(fm.embed_aligned(crops, flip=False), want)
    raw_bgr = tmp_path / "raw_bgr.onnx"
    _export_graph(_BGRRaw(net, bgr=True).eval(), raw_bgr, 112, 17)
    assert not _close(load_model(raw_bgr).embed_aligned(crops, flip=False), want, tol=1e-3)
    assert _close(load_model(raw_bgr, input_mean=0, input_std=1, channel_order="BGR").embed_aligned(crops, flip=False), want)
    # a sidecar JSON describes the file; it wins over the graph, explicit values must agree with it
    raw_bgr.with_suffix(".json").write_text(json.dumps({"channel_order": "BGR", "input_mean": 0, "input_std": 1}))
    fm = load_model(raw_bgr)
    assert fm.meta["input_convention_source"].startswith("sidecar")
    assert _close(fm.embed_aligned(crops, flip=False), want)
    assert _close(load_model(raw_bgr, channel_order="BGR", input_mean=0.0, input_std=1.0).embed_aligned(crops, flip=False), want)
    with pytest.raises(ConfigError, match="contradicts"):
        load_model(raw_bgr, channel_order="RGB")
    with pytest.raises(ConfigError, match="channel_order"):
        load_model(raw_bgr, channel_order="GBR")


def test_cli_flags_are_used(net, ours, crops, tmp_path):
    from maskinv.cli import main
    from maskinv.utils.images import encode_image

    bare = _strip_metadata(ours, tmp_path / "zoo.onnx")
    imgs = []
    for i, c in enumerate(crops[:2]):
        p = tmp_path / f"{i}.png"
        p.write_bytes(encode_image(c, "png"))
        imgs.append(str(p))
    outs = {}
    for tag, flags in (("default", []), ("explicit", ["--input-mean", "127.5", "--input-std", "127.5"]),
                       ("wrong", ["--input-mean", "0", "--input-std", "1", "--channel-order", "BGR"])):
        out = tmp_path / f"{tag}.npy"
        assert main(["embed", *imgs, "--model", str(bare), "--aligned", "--no-flip", "--out", str(out), *flags]) == 0
        outs[tag] = np.load(out)
    want = _ref(net, crops[:2])
    assert _close(outs["default"], want) and _close(outs["explicit"], want)
    assert not _close(outs["wrong"], want, tol=1e-3)


def test_calibrate_a_zoo_onnx_model(net, ours, tmp_path, rng):
    """A foreign ONNX model is calibrated with its own runtime; thresholds land beside it."""
    import maskinv
    from maskinv.data.bins import save_bin
    from maskinv.thresholds import calibrate, thresholds_path
    from maskinv.utils.images import encode_image

    import cv2

    base = [cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
            for s in rng.integers(0, 256, size=(6, 14, 14, 3), dtype=np.uint8)]
    imgs, same = [], []
    for i in range(12):  # genuine: an image and its slightly brighter copy; impostor: two bases
        a = base[i % 6]
        b = np.clip(a.astype(int) + 6, 0, 255).astype(np.uint8) if i % 2 == 0 else base[(i + 1) % 6]
        imgs += [encode_image(a, "png"), encode_image(b, "png")]
        same.append(i % 2 == 0)
    bench = tmp_path / "tiny.bin"
    save_bin(bench, imgs, same)
    bare = _strip_metadata(ours, tmp_path / "zoo.onnx")
    zoo = load_model(bare)
    e_zoo = calibrate(zoo, bench, fmr=0.2, protocol="uu", flip=False)
    e_pt = calibrate(load_model(ours.with_suffix(".pt")), bench, fmr=0.2, protocol="uu", flip=False, write=False)
    assert abs(e_zoo["threshold"] - e_pt["threshold"]) <= 1e-4
    assert thresholds_path(bare).is_file()
    r = maskinv.verify(base[0], base[0], bare, fmr=0.2, protocol="uu", aligned=True, flip=False)
    assert r.threshold_source == "calibrated" and r.threshold == e_zoo["threshold"] and r.verified

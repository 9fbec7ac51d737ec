"""Foreign iResNet checkpoints: ElasticFace (bare InsightFace dict) and MagFace (prefixed,
with a head, BGR [0, 1] input, BN eps 2e-5) load strictly and embed with their convention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskinv.api import load_model
from maskinv.train.distill import load_teacher
from maskinv.errors import CheckpointError, ConfigError
from maskinv.models import export_backbone, get_model, load_backbone, read_model_meta
from maskinv.preprocess import to_tensor

ARCH = dict(width_mult=0.125, embedding_size=32)


@pytest.fixture(scope="module")
def ref_net():
    net = get_model("r18", seed=3, **ARCH).eval()
    with torch.no_grad():  # non-trivial BN statistics; tiny variances in the last BN so eps matters
        g = torch.Generator().manual_seed(0)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        net.features.running_var.copy_(torch.rand(net.features.running_var.shape, generator=g) * 1e-5 + 1e-5)
    return net


@pytest.fixture
def crops(rng):
    return rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)


def magface_ckpt(net, prefix="features.module."):
    sd = {prefix + k: v.clone() for k, v in net.state_dict().items()}
    sd["fc.weight"] = torch.randn(32, 7)  # MagLinear head: not a backbone weight
    return {"epoch": 25, "arch": "iresnet18", "state_dict": sd, "optimizer": {"state": {}}}


def magface_reference(net, crops):
    """What MagFace's inference does: BGR, ToTensor() ([0, 1]), Normalize(0, 1), BN eps 2e-5."""
    ref = get_model("r18", seed=0, **ARCH).eval()
    ref.load_state_dict(net.state_dict())
    for m in ref.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = 2e-5
    x = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        out = ref(x).numpy()
    assert np.isfinite(out).all()
    return out


@pytest.mark.parametrize("prefix", ["features.module.", "module.features."])
def test_magface_layout_autodetected_and_convention_applied(tmp_path, ref_net, crops, prefix):
    p = tmp_path / "magface_epoch_00025.pth"
    torch.save(magface_ckpt(ref_net, prefix), p)
    model = load_backbone(p)
    assert model.maskinv_layout == "magface"
    assert model.maskinv_input["channel_order"] == "BGR"
    assert model.maskinv_input["normalization"] == {"scale": 255.0, "mean": [0.0] * 3, "std": [1.0] * 3}
    assert all(m.eps == 2e-5 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        got = model(to_tensor(crops)).numpy()
    want = magface_reference(ref_net, crops)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # BN eps alone matters: same input convention, eps 1e-5 -> different output
    model.features.eps = 1e-5
    with torch.no_grad():
        assert np.abs(model(to_tensor(crops)).numpy() - want).max() > 1e-2 * np.abs(want).max()
    # the same weights read with the InsightFace convention give different embeddings
    plain = get_model("r18", seed=0, **ARCH).eval()
    plain.load_state_dict(ref_net.state_dict())
    with torch.no_grad():
        assert np.abs(plain(to_tensor(crops)).numpy() - want).max() > 1e-2 * np.abs(want).max()


@pytest.mark.slow
def test_magface_through_facade_teacher_and_export(tmp_path, ref_net, crops):
    p = tmp_path / "magface.pth"
    torch.save(magface_ckpt(ref_net), p)
    want = magface_reference(ref_net, crops)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    fm = load_model(p, arch="r18", layout="magface")
    np.testing.assert_allclose(fm.embed_aligned(crops, flip=False), want, atol=1e-4)
    teacher = load_teacher(p)  # teacher.path in a train config goes through here
    with torch.no_grad():
        t = teacher(to_tensor(crops)).numpy()
    np.testing.assert_allclose(t / np.linalg.norm(t, axis=1, keepdims=True), want, atol=1e-4)
    assert teacher.model.arch["input"]["channel_order"] == "BGR"  # part of the teacher-cache fingerprint
    # export keeps the convention in the sidecar; the exported file loads back identically
    out = tmp_path / "exp" / "backbone.pt"
    export_backbone(fm.module, out)
    meta = read_model_meta(out)
    assert meta["channel_order"] == "BGR" and meta["bn_eps"] == 2e-5
    assert meta["normalization"] == {"scale": 255.0, "mean": 0.0, "std": 1.0}
    np.testing.assert_allclose(load_model(out).embed_aligned(crops, flip=False), want, atol=1e-4)
    # ONNX export traces the conversion: the graph takes the standard input its metadata states
    pytest.importorskip("onnxruntime")
    from maskinv.export import export_onnx

    rep = export_onnx(fm, tmp_path / "magface.onnx")  # parity check vs PyTorch inside
    assert rep["max_cosine_distance"] <= 1e-4
    np.testing.assert_allclose(load_model(tmp_path / "magface.onnx").embed_aligned(crops, flip=False), want, atol=1e-4)


def test_magface_strict_loading(tmp_path, ref_net):
    ck = magface_ckpt(ref_net)
    del ck["state_dict"]["features.module.layer2.0.bn1.weight"]
    ck["state_dict"]["features.module.extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"missing keys: layer2\.0\.bn1\.weight.*unexpected keys: extra\.weight"):
        load_backbone(ck, "r18", **ARCH)
    with pytest.raises(CheckpointError, match="no 'features.module.'"):
        load_backbone({"state_dict": ref_net.state_dict()}, "r18", layout="magface", **ARCH)
    with pytest.raises(CheckpointError, match="expects a {'state_dict'"):
        load_backbone(ref_net.state_dict(), "r18", layout="magface", **ARCH)
    with pytest.raises(ConfigError, match="unknown checkpoint layout 'mag'"):
        load_backbone(ref_net.state_dict(), "r18", layout="mag", **ARCH)


def test_elasticface_bare_dict_standard_convention(tmp_path, ref_net, crops):
    p = tmp_path / "295672backbone.pth"
    torch.save({"module." + k: v for k, v in ref_net.state_dict().items()}, p)  # DDP-saved variant
    model = load_backbone(p, layout="elasticface")
    assert model.maskinv_layout == "elasticface" and "input" not in model.arch
    assert not model._forward_pre_hooks
    with torch.no_grad():
        np.testing.assert_array_equal(model(to_tensor(crops)).numpy(), ref_net(to_tensor(crops)).numpy())
    assert load_backbone(p).maskinv_layout == "insightface"  # auto: same thing


def test_explicit_convention_and_bad_values(ref_net, crops):
    conv = {"channel_order": "BGR", "normalization": {"scale": 1, "mean": [104.0, 117.0, 123.0], "std": 58.0}}
    model = load_backbone(ref_net.state_dict(), "r18", input_convention=conv, **ARCH)
    x = crops[..., ::-1].astype(np.float32)
    x = (x - np.array([104.0, 117.0, 123.0], np.float32)) / 58.0
    with torch.no_grad():
        want = ref_net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
        got = model(to_tensor(crops)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for bad, msg in [({"channel_order": "GRB"}, "channel_order"),
                     ({"normalization": {"scale": 255, "mean": 0, "std": 0}}, "std may not be 0"),
                     ({"normalization": {"scale": 255, "mean": [0, 0], "std": 1}}, "mean must be")]:
        with pytest.raises(CheckpointError, match=msg):
            load_backbone(ref_net.state_dict(), "r18", input_convention=bad, **ARCH)

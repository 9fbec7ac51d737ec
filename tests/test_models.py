"""Backbones (InsightFace layout) and checkpoint I/O."""
from __future__ import annotations

import json

import pytest
import torch

from maskinv.errors import CheckpointError, ConfigError, UnknownNameError
from maskinv.models import (
    export_backbone,
    get_model,
    infer_arch,
    list_models,
    load_backbone,
    model_fingerprint,
    read_model_meta,
)

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# ---------------------------------------------------------------- expected layouts, from the rules
def _bn(prefix, c):
    return [(f"{prefix}.{n}", () if n == "num_batches_tracked" else (c,)) for n in BN]


def expected_iresnet(depths, widths=(64, 128, 256, 512), stem=64, emb=512, side=7):
    """(key, shape) list of the arcface_torch iResNet state dict, in order (REFERENCE §3)."""
    out = [("conv1.weight", (stem, 3, 3, 3))] + _bn("bn1", stem) + [("prelu.weight", (stem,))]
    cin = stem
    for i, (d, w) in enumerate(zip(depths, widths), start=1):
        for b in range(d):
            p = f"layer{i}.{b}"
            inp = cin if b == 0 else w
            out += _bn(f"{p}.bn1", inp)
            out += [(f"{p}.conv1.weight", (w, inp, 3, 3))]
            out += _bn(f"{p}.bn2", w)
            out += [(f"{p}.prelu.weight", (w,)), (f"{p}.conv2.weight", (w, w, 3, 3))]
            out += _bn(f"{p}.bn3", w)
            if b == 0:
                out += [(f"{p}.downsample.0.weight", (w, cin, 1, 1))] + _bn(f"{p}.downsample.1", w)
        cin = w
    out += _bn("bn2", widths[-1])
    out += [("fc.weight", (emb, widths[-1] * side * side)), ("fc.bias", (emb,))]
    out += _bn("features", emb)
    return out


def _convblock(p, cin, cout, k, groups=1):
    return [(f"{p}.layers.0.weight", (cout, cin // groups, k, k))] + _bn(f"{p}.layers.1", cout) + [
        (f"{p}.layers.2.weight", (cout,))
    ]


def _linearblock(p, cin, cout, k, groups=1):
    return [(f"{p}.layers.0.weight", (cout, cin // groups, k, k))] + _bn(f"{p}.layers.1", cout)


def _depthwise(p, cin, cout, hidden):
    return (
        _convblock(f"{p}.layers.0", cin, hidden, 1)
        + _convblock(f"{p}.layers.1", hidden, hidden, 3, groups=hidden)
        + _linearblock(f"{p}.layers.2", hidden, cout, 1)
    )


def _residual(p, c, n, hidden):
    return [kv for j in range(n) for kv in _depthwise(f"{p}.layers.{j}", c, c, hidden)]


def expected_mbf(emb=512, side=7):
    """(key, shape) list of arcface_torch's MobileFaceNet (blocks (1,4,6,2), scale 2)."""
    return (
        _convblock("layers.0", 3, 128, 3)
        + _convblock("layers.1", 128, 128, 3, groups=64)
        + _depthwise("layers.2", 128, 128, 128)
        + _residual("layers.3", 128, 4, 128)
        + _depthwise("layers.4", 128, 256, 256)
        + _residual("layers.5", 256, 6, 256)
        + _depthwise("layers.6", 256, 256, 512)
        + _residual("layers.7", 256, 2, 256)
        + _convblock("conv_sep", 256, 512, 1)
        + _linearblock("features.layers.0", 512, 512, side, groups=512)
        + [("features.layers.2.weight", (emb, 512))]
        + _bn("features.layers.3", emb)
    )


def _layout(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _random_sd(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in layout:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    return sd


def tiny(name="r18", **kw):
    kw.setdefault("width_mult", 0.125)
    kw.setdefault("embedding_size", 16)
    kw.setdefault("input_size", 32)
    return get_model(name, seed=kw.pop("seed", 0), **kw)


# ---------------------------------------------------------------- layout
@pytest.mark.slow
def test_r100_counts():
    m = get_model("r100", seed=0)
    sd = m.state_dict()
    assert len(sd) == 925
    n = sum(p.numel() for p in m.parameters())
    assert abs(n / 1e6 - 65.16) <= 0.01, n
    assert _layout(m) == expected_iresnet((3, 13, 30, 3))


@pytest.mark.parametrize("name,depths", [("r18", (2, 2, 2, 2)), ("r50", (3, 4, 14, 3))])
def test_iresnet_layout_matches_insightface(name, depths):
    assert _layout(get_model(name, seed=0)) == expected_iresnet(depths)


def test_iresnet_scaled_layout_keeps_names():
    m = get_model("r18", width_mult=0.25, embedding_size=128, input_size=64, seed=0)
    assert _layout(m) == expected_iresnet((2, 2, 2, 2), widths=(16, 32, 64, 128), stem=16, emb=128, side=4)


def test_mbf_layout_matches_arcface_torch():
    assert _layout(get_model("mbf", seed=0)) == expected_mbf()
    assert _layout(get_model("mbf", input_size=64, embedding_size=128, seed=0)) == expected_mbf(128, side=4)


@pytest.mark.parametrize("name", ["r18", "mbf"])
@pytest.mark.parametrize("size", [32, 56, 64, 112])
def test_forward_shapes_any_input_size(name, size):
    m = tiny(name, input_size=size, embedding_size=24).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, size, size))
    assert out.shape == (2, 24) and torch.isfinite(out).all()


def test_features_bn_scale_fixed():
    m = tiny()
    assert not m.features.weight.requires_grad
    assert torch.equal(m.features.weight, torch.ones_like(m.features.weight))


def test_arch_is_jsonable_and_rebuilds():
    m = tiny("mbf", dropout=0.1)
    arch = json.loads(json.dumps(m.arch))
    assert arch == {"name": "mbf", "kwargs": {"embedding_size": 16, "width_mult": 0.125, "input_size": 32, "dropout": 0.1}}
    assert _layout(get_model(arch["name"], **arch["kwargs"])) == _layout(m)


def test_unknown_name_lists_known():
    with pytest.raises(UnknownNameError) as ei:
        get_model("resnet9000")
    msg = str(ei.value)
    assert "resnet9000" in msg and all(n in msg for n in ("r18", "r100", "mbf"))
    assert set(list_models()) >= {"r18", "r34", "r50", "r100", "r200", "mbf"}


@pytest.mark.parametrize(
    "kw", [{"embedding_size": 0}, {"width_mult": -1.0}, {"input_size": 8}, {"dropout": 1.0}, {"input_size": "112"}]
)
def test_bad_options(kw):
    with pytest.raises(ConfigError):
        get_model("r18", **kw)


def test_seeded_init_deterministic_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b = tiny(seed=3), tiny(seed=3)
    c = tiny(seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


# ---------------------------------------------------------------- checkpoint I/O
def _same_output(m1, m2, size=32):
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(m1.eval()(x), m2.eval()(x), atol=1e-6)


@pytest.mark.slow
def test_layout_rule_state_dict_loads_strictly():
    # A published-style r50 file is exactly this key/shape list; it must load with strict=True.
    sd = _random_sd(expected_iresnet((3, 4, 14, 3)))
    m = load_backbone(sd, "r50")
    assert torch.equal(m.layer3[13].conv2.weight, sd["layer3.13.conv2.weight"])
    assert not m.training and m.maskinv_source == "<state_dict>"


def test_mbf_layout_rule_state_dict_loads():
    sd = _random_sd(expected_mbf())
    m = load_backbone(sd)  # inferred: mbf
    assert m.arch["name"] == "mbf"


def test_export_roundtrip_with_sidecar(tmp_path):
    m = tiny(input_size=56).eval()
    with torch.no_grad():  # make BN statistics non-trivial
        m.bn2.running_mean.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    p = export_backbone(m, tmp_path / "sub" / "model.pt", extra_meta={"note": "x"})
    assert p == tmp_path / "sub" / "model.pt"
    meta = json.loads((tmp_path / "sub" / "model.json").read_text())
    assert meta["format"] == "maskinv-backbone" and meta["format_version"] == 1
    assert meta["arch"] == "r18" and meta["arch_kwargs"] == m.arch["kwargs"]
    assert meta["embedding_size"] == 16 and meta["input_size"] == 56 and meta["channel_order"] == "RGB"
    assert meta["normalization"] == {"scale": 255, "mean": 0.5, "std": 0.5} and meta["note"] == "x"
    assert meta["sha256"] == model_fingerprint(p)
    assert read_model_meta(p) == meta
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == ["model.json", "model.pt"]  # no temp files
    raw = torch.load(p, weights_only=True)
    assert list(raw) == list(m.state_dict())  # bare, unprefixed
    loaded = load_backbone(p)  # no name needed
    assert loaded.maskinv_source == str(p) and not loaded.training
    assert loaded.arch == m.arch and _same_output(m, loaded, 56)


def test_bare_pth_without_sidecar(tmp_path):
    m = tiny(input_size=64)
    torch.save(m.state_dict(), tmp_path / "x_backbone.pth")
    assert read_model_meta(tmp_path / "x_backbone.pth") is None
    a = load_backbone(tmp_path / "x_backbone.pth", "r18")  # name + inferred widths/sizes
    b = load_backbone(tmp_path / "x_backbone.pth")  # fully inferred
    assert a.arch["kwargs"]["input_size"] == 64 and _same_output(m, a, 64) and _same_output(m, b, 64)


def test_module_prefixed_loads_strictly(tmp_path):
    m = tiny()
    sd = {f"module.{k}": v for k, v in m.state_dict().items()}
    assert _same_output(m, load_backbone(sd, "r18", width_mult=0.125, embedding_size=16, input_size=32))
    torch.save(sd, tmp_path / "ddp.pth")
    assert _same_output(m, load_backbone(tmp_path / "ddp.pth"))


def test_full_training_checkpoint(tmp_path):
    m = tiny("mbf")
    ck = {"backbone": m.state_dict(), "arch": m.arch, "head": {"kernel": torch.zeros(16, 3)}, "step": 5,
          "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "config": {"model": {"name": "mbf"}}}
    torch.save(ck, tmp_path / "ckpt.pt")
    assert _same_output(m, load_backbone(tmp_path / "ckpt.pt"))


def test_wrong_shape_names_key():
    sd = tiny().state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(CheckpointError, match=r"layer2\.0\.conv1\.weight: checkpoint \(3, 3, 3, 3\)"):
        load_backbone(sd, "r18", width_mult=0.125, embedding_size=16, input_size=32)


def test_missing_and_unexpected_named():
    sd = tiny().state_dict()
    del sd["fc.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as ei:
        load_backbone(sd, "r18", width_mult=0.125, embedding_size=16, input_size=32)
    assert "missing keys: fc.bias" in str(ei.value) and "unexpected keys: extra.weight" in str(ei.value)


def test_wrong_architecture_hint():
    sd = tiny().state_dict()
    with pytest.raises(CheckpointError, match="looks like r18"):
        load_backbone(sd, "r34", width_mult=0.125, embedding_size=16, input_size=32)


def test_missing_num_batches_tracked_tolerated():
    m = tiny()
    sd = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert _same_output(m, load_backbone(sd))


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone(tmp_path / "nope.pth", "r18")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_backbone(tmp_path / "junk.pth", "r18")
    torch.save({"a": 1, "b": "x"}, tmp_path / "nonsd.pth")
    with pytest.raises(CheckpointError, match="not tensors"):
        load_backbone(tmp_path / "nonsd.pth", "r18")
    torch.save({"w": torch.zeros(1), "obj": ConfigError("pickled object")}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_backbone(tmp_path / "unsafe.pth", "r18")
    with pytest.raises(CheckpointError, match="pass name="):
        load_backbone({"foo.weight": torch.zeros(2)})


def test_sidecar_handling(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"")
    (tmp_path / "a.json").write_text('{"some": "other format"}')
    assert read_model_meta(tmp_path / "a.pt") is None
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="a.json"):
        read_model_meta(tmp_path / "a.pt")
    with pytest.raises(ConfigError):
        export_backbone(tiny(), tmp_path / "b.pt", extra_meta={"sha256": "x"})
    with pytest.raises(CheckpointError, match="no .arch"):
        export_backbone(torch.nn.Linear(2, 2), tmp_path / "c.pt")
    with pytest.raises(CheckpointError):
        model_fingerprint(tmp_path / "missing.pt")


def test_infer_arch_nonround_width():
    m = get_model("r18", width_mult=0.3, embedding_size=8, input_size=48, seed=0)
    name, kw = infer_arch(m.state_dict())
    assert name == "r18" and kw["input_size"] == 48 and kw["embedding_size"] == 8
    assert _layout(get_model(name, **kw)) == _layout(m)


def test_iresnet_needs_four_stages():
    from maskinv.models.iresnet import IResNet

    with pytest.raises(ConfigError, match=r"4 stage depths \(layers\), got \[2, 2, 2\]"):
        IResNet([2, 2, 2])


@pytest.mark.parametrize("name", ["r50", pytest.param("r100", marks=pytest.mark.slow)])
def test_untrained_iresnet_in_eval_mode_gives_finite_moderate_outputs(name):
    """Fresh BN statistics (variance 1) against N(0, 0.1) convolutions made an untrained r50 output
    ~2e26 in eval mode (r100: NaN); the running variances now match the initialisation."""
    m = get_model(name, embedding_size=64, seed=0).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0)).clamp(-1, 1))
    assert torch.isfinite(y).all() and 1e-3 < float(y.abs().max()) < 1e3
    assert not torch.allclose(y[0], y[1])

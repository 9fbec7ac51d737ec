"""Margin heads: closed forms, elastic margin statistics, "+" ranking, finite gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskinv.errors import CheckpointError, ConfigError, DataFormatError, UnknownNameError
from maskinv.train.heads import get_head, list_heads

E, C, B = 32, 20, 12


def _inputs(seed=0, b=B):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, E, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (b,), generator=g)
    return emb, labels


def _cos64(head, emb):
    return F.normalize(emb, dim=1) @ F.normalize(head.kernel.detach().double(), dim=0)


def _expected(cos, labels, s, target_fn):
    out = s * cos.clone()
    rows = torch.arange(len(labels))
    out[rows, labels] = s * target_fn(cos[rows, labels])
    return out


@pytest.mark.parametrize(
    "name,kw,target",
    [
        ("arcface", {}, lambda c: torch.cos(torch.acos(c) + 0.5)),
        ("arcface", {"s": 30.0, "m": 0.3}, lambda c: torch.cos(torch.acos(c) + 0.3)),
        ("cosface", {}, lambda c: c - 0.35),
        ("combined", {"m1": 1.2, "m2": 0.25, "m3": 0.1}, lambda c: torch.cos(1.2 * torch.acos(c) + 0.25) - 0.1),
        ("combined", {"m1": 1.0, "m2": 0.5, "m3": 0.0}, lambda c: torch.cos(torch.acos(c) + 0.5)),
    ],
)
def test_fixed_margin_closed_forms(name, kw, target):
    head = get_head(name, E, C, seed=0, **kw)
    emb, labels = _inputs()
    got = head(emb.float(), labels)
    cos = _cos64(head, emb)
    assert (torch.acos(cos[torch.arange(B), labels]) < 2.0).all()  # inside the valid range
    want = _expected(cos, labels, kw.get("s", 64.0), target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("name,arc", [("elastic_arc", True), ("elastic_cos", False), ("elastic_arc_plus", True), ("elastic_cos_plus", False)])
def test_elastic_closed_form_with_drawn_margins(name, arc):
    head = get_head(name, E, C, seed=0)
    emb, labels = _inputs(1)
    got = head(emb.float(), labels, generator=torch.Generator().manual_seed(5))
    m = head.last_margins.double()
    assert m.shape == (B,) and torch.isfinite(m).all()
    cos = _cos64(head, emb)
    rows = torch.arange(B)
    cy = cos[rows, labels]
    want = 64.0 * cos.clone()
    want[rows, labels] = 64.0 * (torch.cos(torch.acos(cy) + m) if arc else cy - m)
    torch.testing.assert_close(got.double(), want, atol=2e-4, rtol=1e-5)
    # same generator seed -> same logits; the head's own generator advances between calls
    again = head(emb.float(), labels, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, again)
    assert not torch.equal(head(emb.float(), labels), head(emb.float(), labels))


def test_elastic_zero_std_equals_fixed():
    emb, labels = _inputs(2)
    for el, fixed, m in (("elastic_arc", "arcface", 0.5), ("elastic_cos", "cosface", 0.35)):
        a = get_head(el, E, C, seed=3, std=0.0, m=m)
        b = get_head(fixed, E, C, seed=3, m=m)
        assert torch.equal(a.kernel, b.kernel)
        torch.testing.assert_close(a(emb.float(), labels), b(emb.float(), labels))


@pytest.mark.parametrize(
    "name,mean,std",
    [("elastic_arc", 0.5, 0.05), ("elastic_cos", 0.35, 0.05), ("elastic_arc_plus", 0.5, 0.0175), ("elastic_cos_plus", 0.35, 0.025)],
)
def test_elastic_margin_statistics(name, mean, std):
    head = get_head(name, E, C, seed=0)
    g = torch.Generator().manual_seed(11)
    cos = torch.rand(2000, C, generator=g) * 2 - 1
    labels = torch.randint(0, C, (2000,), generator=g)
    draws = []
    for _ in range(10):
        head.apply_margin(cos, labels, generator=g)
        draws.append(head.last_margins)
    d = torch.cat(draws).double()
    assert abs(d.mean().item() - mean) < 4 * std / math.sqrt(d.numel()) + 1e-4
    assert abs(d.std().item() / std - 1) < 0.03
    # fresh draws every step and every sample
    assert not torch.equal(draws[0], draws[1]) and draws[0].unique().numel() > 1990


@pytest.mark.parametrize("name", ["elastic_arc_plus", "elastic_cos_plus"])
def test_plus_margins_anticorrelated_with_cos(name):
    head = get_head(name, E, C, seed=0)
    g = torch.Generator().manual_seed(2)
    cos = torch.rand(512, C, generator=g) * 2 - 1
    labels = torch.randint(0, C, (512,), generator=g)
    head.apply_margin(cos, labels, generator=torch.Generator().manual_seed(9))
    m = head.last_margins.numpy()
    cy = cos[torch.arange(512), labels].numpy()
    assert np.corrcoef(cy, m)[0, 1] < -0.9
    # a permutation of the plain elastic draws: the same multiset of margins
    plain = get_head(name.removesuffix("_plus"), E, C, seed=0, std=head.std)
    plain.apply_margin(cos, labels, generator=torch.Generator().manual_seed(9))
    assert torch.equal(torch.sort(head.last_margins).values, torch.sort(plain.last_margins).values)
    # smallest cos gets the largest margin
    assert m[np.argmin(cy)] == m.max() and m[np.argmax(cy)] == m.min()


def test_label_minus_one_rows_untouched():
    head = get_head("elastic_arc_plus", E, C, seed=0)
    g = torch.Generator().manual_seed(4)
    cos = torch.rand(6, C, generator=g) * 2 - 1
    labels = torch.tensor([3, -1, 0, -1, 7, 2])
    out = head.apply_margin(cos, labels, generator=g)
    neg = labels == -1
    torch.testing.assert_close(out[neg], 64.0 * cos[neg])
    assert torch.isnan(head.last_margins[neg]).all() and torch.isfinite(head.last_margins[~neg]).all()
    cos_before = cos.clone()
    assert torch.equal(cos, cos_before)  # input not modified
    all_neg = head.apply_margin(cos, torch.full((6,), -1))
    torch.testing.assert_close(all_neg, 64.0 * cos)


@pytest.mark.parametrize("name", list_heads())
def test_gradients_finite_at_boundaries(name):
    head = get_head(name, E, 4, seed=0, **({"m": 0.5} if "arc" in name else {}))
    # cos = +1, -1, beyond pi - m (theta + m > pi), ordinary
    vals = torch.tensor([1.0, -1.0, -0.97, -0.999999, 0.999999, 0.3])
    cos = torch.zeros(len(vals), 4)
    cos[:, 0] = vals
    cos.requires_grad_(True)
    labels = torch.zeros(len(vals), dtype=torch.long)
    logits = head.apply_margin(cos, labels, generator=torch.Generator().manual_seed(0))
    F.cross_entropy(logits, labels).backward()
    assert torch.isfinite(logits).all() and torch.isfinite(cos.grad).all()
    # through the kernel: embeddings equal to +/- a class centre
    emb = torch.stack([head.kernel[:, 1].detach(), -head.kernel[:, 1].detach()]).requires_grad_(True)
    head.zero_grad()
    head.loss(emb, torch.tensor([1, 1]), generator=torch.Generator().manual_seed(0)).backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.kernel.grad).all()


@pytest.mark.parametrize("kw", [{"m1": 1.0, "m2": 0.5, "m3": 0.0}, {"m1": 1.3, "m2": 0.2, "m3": 0.15}])
def test_angular_fallback_continuous_monotone_penalising(kw):
    head = get_head("combined", E, 1, seed=0, **kw)
    theta = torch.linspace(0.0, math.pi, 20001, dtype=torch.float64)
    cos = torch.cos(theta).float().unsqueeze(1)
    t = head.apply_margin(cos, torch.zeros(len(theta), dtype=torch.long))[:, 0].double() / head.s
    diffs = t[1:] - t[:-1]
    assert (diffs <= 1e-6).all()  # non-increasing in theta (float32 noise allowed)
    assert diffs.abs().max() < 1e-3  # no jump (the threshold sits inside the grid)
    assert (t <= cos[:, 0].double() + 1e-6).all()  # never above the plain cosine
    theta_t = (math.pi - kw["m2"]) / kw["m1"]
    beyond = theta > theta_t + 1e-3
    want = torch.cos(theta) - (1 + math.cos(theta_t)) - kw["m3"]
    torch.testing.assert_close(t[beyond], want[beyond], atol=1e-5, rtol=0)


def test_loss_is_cross_entropy_of_forward():
    head = get_head("cosface", E, C, seed=0)
    emb, labels = _inputs(3)
    torch.testing.assert_close(head.loss(emb.float(), labels), F.cross_entropy(head(emb.float(), labels), labels))


def test_kernel_shape_and_init():
    head = get_head("arcface", 512, 400, seed=0)
    assert head.kernel.shape == (512, 400) and head.kernel.requires_grad
    assert abs(head.kernel.std().item() - 0.01) < 3e-4 and abs(head.kernel.mean().item()) < 1e-4
    same = get_head("elastic_arc", 512, 400, seed=0)
    assert torch.equal(head.kernel, same.kernel)


def test_load_header(tmp_path):
    head = get_head("elastic_arc", 16, 7, seed=0)
    k = torch.randn(16, 7)
    head.load_header({"kernel": k})
    assert torch.equal(head.kernel.detach(), k)
    torch.save({"module.kernel": 2 * k}, tmp_path / "295672header.pth")
    head.load_header(tmp_path / "295672header.pth")
    assert torch.equal(head.kernel.detach(), 2 * k)
    head.load_header({"head": {"kernel": 3 * k}, "backbone": {}})
    assert torch.equal(head.kernel.detach(), 3 * k)
    head.load_header({"weight": k.t().contiguous()})  # arcface_torch (C, E) layout
    assert torch.equal(head.kernel.detach(), k)
    with pytest.raises(CheckpointError, match=r"\(7, 16\)"):
        head.load_header({"kernel": k.t()})
    with pytest.raises(CheckpointError, match="no 'kernel'"):
        head.load_header({"foo": k})
    with pytest.raises(CheckpointError, match="not found"):
        head.load_header(tmp_path / "missing.pth")


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="elastic_arc_plus"):
        get_head("magface", 8, 3)
    with pytest.raises(ConfigError, match="bogus"):
        get_head("arcface", 8, 3, bogus=1)
    assert get_head("ElasticFace-Arc+".replace("ElasticFace", "elastic"), 8, 3).name == "elastic_arc_plus"
    h = get_head("elastic_cos_plus", 8, 3, seed=1, std=0.02)
    assert h.spec == {"name": "elastic_cos_plus", "kwargs": {"s": 64.0, "m": 0.35, "std": 0.02, "seed": 1}}


def test_bad_labels():
    head = get_head("arcface", 8, 3, seed=0)
    with pytest.raises(DataFormatError, match="range"):
        head.apply_margin(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(DataFormatError):
        head.apply_margin(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def test_global_rng_untouched():
    state = torch.get_rng_state()
    head = get_head("elastic_arc", 8, 3)
    head(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(torch.get_rng_state(), state)

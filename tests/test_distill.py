"""Distillation loss and frozen teacher."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskinv.train.distill import FrozenTeacher, kd_loss, load_teacher
from maskinv.errors import CheckpointError
from maskinv.models import export_backbone, get_model


def tiny(seed=0):
    return get_model("r18", width_mult=0.125, embedding_size=16, input_size=32, seed=seed)


def test_kd_loss_closed_form():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 512, generator=g), 3 * torch.randn(8, 512, generator=g)
    cos = F.cosine_similarity(s.double(), t.double(), dim=1)
    for w in (1.0, 100.0, 3000.0):
        want = w / 512 * (2 - 2 * cos).mean()
        torch.testing.assert_close(kd_loss(s, t, w).double(), want, rtol=1e-5, atol=1e-7)
    assert kd_loss(s, 5 * s, 100.0).item() == pytest.approx(0.0, abs=1e-6)  # scale invariant
    torch.testing.assert_close(kd_loss(s, -s, 10.0), torch.tensor(10.0 * 4 / 512))


def test_kd_loss_gradients_only_to_student():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 16, generator=g, requires_grad=True)
    t = torch.randn(4, 16, generator=g, requires_grad=True)
    kd_loss(s, t, 100.0).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None
    with pytest.raises(ValueError):
        kd_loss(torch.zeros(2, 4), torch.zeros(2, 5), 1.0)


def test_teacher_refuses_random_weights():
    with pytest.raises(CheckpointError, match="allow_random"):
        FrozenTeacher(tiny())
    assert FrozenTeacher(tiny(), allow_random=True).maskinv_source == "<random>"


class _Student(nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.backbone = tiny(1)
        self.teacher = teacher


def test_teacher_frozen_inside_enclosing_module():
    teacher = FrozenTeacher(tiny(), allow_random=True)
    outer = _Student(teacher)
    outer.train()
    assert outer.backbone.training
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    stats = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = teacher(x)
    assert out.shape == (4, 16) and not out.requires_grad and out.grad_fn is None
    # eval-mode forward leaves BN statistics alone
    assert all(torch.equal(stats[k], v) for k, v in teacher.state_dict().items())
    teacher.model.train()  # even poking the inner model is undone at forward time
    teacher(x)
    assert not teacher.model.training
    assert all(torch.equal(stats[k], v) for k, v in teacher.state_dict().items())


def test_load_teacher(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_teacher(tmp_path / "missing.pt")
    m = tiny()
    export_backbone(m, tmp_path / "teacher.pt")
    t = load_teacher(tmp_path / "teacher.pt")
    assert t.maskinv_source == str(tmp_path / "teacher.pt") and t.arch == m.arch
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(t(x), m.eval()(x))
    with pytest.raises(CheckpointError, match="does not match"):
        load_teacher(tmp_path / "teacher.pt", "r34")

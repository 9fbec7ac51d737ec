"""The fp16 training step (CUDA only): backward through the GradScaler, unscale, clip the unscaled
gradient, step; an overflowing step is skipped and the scale backs off."""
from __future__ import annotations

import copy

import pytest
import torch

SIZE = 32


def _setup(device: torch.device, init_scale: float, clip_fraction: float = 0.5):
    """A StudentNet under the trainer's fp16 autocast, plain SGD (so the update is -lr * grad), one
    batch, the fp32-gradient reference of the same forward (no scaling), and a TrainStep whose clip
    is ``clip_fraction`` of the reference gradient norm (so clipping is active)."""
    from maskinv.train.heads import get_head
    from maskinv.models import get_model
    from maskinv.train.build import autocast_factory
    from maskinv.train.step import StudentNet, TrainStep

    autocast = autocast_factory("fp16", device)
    bb = get_model("r18", embedding_size=32, width_mult=0.125, input_size=SIZE, seed=0).to(device)
    head = get_head("arcface", 32, 4, s=16.0, seed=1).to(device)  # deterministic: no sampled margins
    net = StudentNet(bb, head, autocast)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    labels = torch.arange(8) % 4

    ref = copy.deepcopy(net)  # same weights and BN state, gradients without any scaler
    from maskinv.preprocess import normalize_uint8_tensor

    _, loss = ref(normalize_uint8_tensor(images.to(device)), labels.to(device))
    loss.backward()
    ref_grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().float().clone()
                 for p in ref.backbone.parameters()]  # (a parameter off the loss's path has none)
    ref_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in ref_grads])).item()

    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.0, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, init_scale=init_scale)
    step = TrainStep(model=net, backbone=bb, optimizers=[opt], scaler=scaler, flip=False,
                     clip_grad_norm=clip_fraction * ref_norm, autocast=autocast, device=device, seed=3)
    seen: dict = {}
    real_step = opt.step

    def spy(*a, **kw):  # the gradients the optimiser applies (after unscale and clip)
        seen["grads"] = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in bb.parameters()]
        return real_step(*a, **kw)

    opt.step = spy
    return step, bb, scaler, images, labels, ref_grads, ref_norm, seen


def _flat(ts):
    return torch.cat([t.reshape(-1).float() for t in ts])


def _fp16_step_is_unscale_clip_step(device: torch.device) -> None:
    # scale 256: large enough that a missing unscale is obvious, small enough that this net's fp16
    # gradients do not overflow (at the default 2**16 the first step overflows and is skipped)
    step, bb, scaler, images, labels, ref_grads, ref_norm, seen = _setup(device, init_scale=2.0 ** 8)
    before = [p.detach().clone() for p in bb.parameters()]
    res = step(images, labels, step=0)
    assert res.finite
    # the reported norm is the unscaled gradient's (measured before clipping), not 256 times it
    assert res.grad_norm == pytest.approx(ref_norm, rel=2e-2)
    applied = _flat(seen["grads"])
    # clipped after unscaling: the applied gradient has exactly the clip norm and the reference direction
    assert torch.linalg.vector_norm(applied).item() == pytest.approx(0.5 * ref_norm, rel=1e-3)
    assert torch.nn.functional.cosine_similarity(applied, _flat(ref_grads).to(applied.device), dim=0).item() > 0.999
    # the step applied it: w' = w - lr * g
    moved = _flat([p.detach() for p in bb.parameters()]) - _flat(before)
    torch.testing.assert_close(moved, -0.5 * applied, rtol=1e-4, atol=1e-6)
    assert scaler.get_scale() == 2.0 ** 8  # no overflow: the scale stays (growth only after 2000 steps)

    # an overflowing scale: the fp16 gradients become inf, the scaler skips the step and halves the scale
    step, bb, scaler, images, labels, *_rest, seen = _setup(device, init_scale=2.0 ** 100)
    before = [p.detach().clone() for p in bb.parameters()]
    res = step(images, labels, step=0)
    assert res.finite  # the loss itself is finite; only the scaled gradients overflow
    assert "grads" not in seen  # the optimiser never ran
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, bb.parameters()))
    assert scaler.get_scale() == 2.0 ** 99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 training (GradScaler) needs CUDA")
def test_fp16_gradscaler_step_unscales_clips_then_steps():
    _fp16_step_is_unscale_clip_step(torch.device("cuda"))

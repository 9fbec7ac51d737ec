"""PartialFC: sharded class centres over 2 gloo CPU processes == full softmax at sample rate 1."""
from __future__ import annotations


import pytest
import torch
import torch.multiprocessing as mp

from maskinv.errors import CheckpointError, ConfigError, MaskinvError
from maskinv.train.heads import get_head
from maskinv.train.partial_fc import PartialFC, shard_range

E, C, B, W = 16, 11, 6, 2  # 11 classes: uneven shards (6 + 5)


def _data():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(B * W, E, generator=g)
    labels = torch.randint(0, C, (B * W,), generator=g)
    labels[:3] = torch.tensor([0, 6, 10])  # positives on both shards, at the edges
    kernel = torch.randn(E, C, generator=g) * 0.01
    return emb, labels, kernel


def _reference(head_name):
    emb, labels, kernel = _data()
    head = get_head(head_name, E, C, s=16.0, seed=0)
    with torch.no_grad():
        head.kernel.copy_(kernel)
    x = emb.clone().requires_grad_(True)
    loss = head.loss(x, labels)
    loss.backward()
    return float(loss.detach()), x.grad.clone(), head.kernel.grad.clone()


HEADS = ("arcface", "cosface", "combined")


def _worker(rank, init_file, results):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=W)
    try:
        for head_name in HEADS:
            emb, labels, kernel = _data()
            head = get_head(head_name, E, C, s=16.0, seed=0)
            pfc = PartialFC(head, E, C, sample_rate=1.0)
            pfc.load_full_kernel(kernel)
            x = emb[rank * B:(rank + 1) * B].clone().requires_grad_(True)
            loss = pfc(x, labels[rank * B:(rank + 1) * B])
            loss.backward()
            results[(head_name, rank)] = (float(loss.detach()), x.grad.clone(), pfc.kernel.grad.clone(), pfc.start, pfc.end)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_partial_fc_equals_full_softmax(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        results = manager.dict()
        procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "pg"), results)) for r in range(W)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        res = dict(results)
    for head_name in HEADS:
        _check(head_name, res)


def _check(head_name, res):
    ref_loss, ref_gx, ref_gk = _reference(head_name)
    for rank in range(W):
        loss, gx, gk, start, end = res[(head_name, rank)]
        assert (start, end) == shard_range(C, rank, W)
        assert loss == pytest.approx(ref_loss, rel=1e-5), head_name  # the same global-batch loss on every rank
        torch.testing.assert_close(gk, ref_gk[:, start:end], rtol=1e-4, atol=1e-7)
        # embedding gradient carries the x world_size factor that undoes DDP's averaging
        torch.testing.assert_close(gx / W, ref_gx[rank * B:(rank + 1) * B], rtol=1e-4, atol=1e-7)


def test_single_process_sampling_keeps_positives():
    emb, labels, kernel = _data()
    head = get_head("arcface", E, C, s=16.0, seed=0)
    full = PartialFC(head, E, C, sample_rate=1.0, rank=0, world_size=1)
    full.load_full_kernel(kernel)
    with torch.no_grad():
        head.kernel.copy_(kernel)
    assert float(full(emb, labels).detach()) == pytest.approx(float(head.loss(emb, labels).detach()), rel=1e-5)

    part = PartialFC(head, E, C, sample_rate=0.3, rank=0, world_size=1)
    g = torch.Generator().manual_seed(1)
    few = torch.tensor([2, 2, 7])
    index, col = part._sample(few, g)
    assert index.numel() == max(int(torch.tensor(0.3 * C).ceil()), 2)
    assert set(index.tolist()) >= {2, 7}
    assert torch.equal(index[col], few)  # labels remapped to the sampled columns
    loss = part(emb[:3], few, generator=g)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5])
def test_bad_sample_rate_is_a_config_error_naming_the_value(rate):
    head = get_head("arcface", E, C, s=16.0, seed=0)
    with pytest.raises(ConfigError, match=rf"head\.partial_fc\.sample_rate.*got {rate}") as err:
        PartialFC(head, E, C, sample_rate=rate, rank=0, world_size=1)
    assert isinstance(err.value, MaskinvError)


def test_fewer_classes_than_ranks_is_a_config_error():
    head = get_head("arcface", E, 3, s=16.0, seed=0)
    with pytest.raises(ConfigError, match="num_classes=3 with world_size=4"):
        PartialFC(head, E, 3, rank=0, world_size=4)


def test_full_kernel_of_wrong_shape_is_a_checkpoint_error_naming_both_shapes():
    head = get_head("arcface", E, C, s=16.0, seed=0)
    pfc = PartialFC(head, E, C, rank=1, world_size=2)
    before = pfc.kernel.detach().clone()
    with pytest.raises(CheckpointError, match=rf"kernel shape \({E}, {C + 1}\) does not match .* \({E}, {C}\)"):
        pfc.load_full_kernel(torch.zeros(E, C + 1))
    assert torch.equal(pfc.kernel.detach(), before)  # nothing copied
    full = torch.randn(E, C)
    pfc.load_full_kernel(full)
    start, end = shard_range(C, 1, 2)
    assert torch.equal(pfc.kernel.detach(), full[:, start:end])

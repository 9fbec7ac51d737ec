"""The training step: teacher sees the clean copy of the student's sample, loss, clipping, failures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from maskinv.errors import CheckpointError, ConfigError
from maskinv.preprocess import normalize_uint8_tensor
from maskinv.train.config import load_config
from maskinv.train.step import StudentNet, TrainStep, prepare_views
from maskinv.train.trainer import TrainingDivergedError, run_training

from helpers.toy_data import export_tiny_teacher, make_toy_recordio

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"
SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    make_toy_recordio(d, classes=8, per_class=8, size=SIZE, seed=1)
    return d


def _cfg(data_dir, *more):
    return load_config(TINY, ["data.source=recordio", f"data.path={data_dir}", "runtime.batch_size=16", *more])


class SpyTeacher(nn.Module):
    """Records every input batch; embeds by a fixed random projection of the pooled image."""

    def __init__(self, dim=32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3 * 4 * 4, dim, generator=g))
        self.inputs = []
        self.embedding_size = dim

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        with torch.no_grad():
            return nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1) @ self.proj


def _step_parts(prob, teacher, kd=10.0):
    from maskinv.train.heads import get_head
    from maskinv.masks import BatchMasker
    from maskinv.models import get_model

    bb = get_model("r18", embedding_size=32, width_mult=0.125, input_size=SIZE, seed=0)
    head = get_head("elastic_arc", 32, 8, s=16.0, seed=1)
    net = StudentNet(bb, head, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    seen = []
    bb.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    step = TrainStep(model=net, backbone=bb, optimizers=[opt], teacher=teacher, masker=BatchMasker(image_size=SIZE),
                     mask_prob=prob, kd_weight=kd, flip=True, clip_grad_norm=5.0,
                     autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16), seed=3)
    return step, seen, bb


def _batch(data_dir, n=16):
    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(data_dir)
    imgs = torch.stack([torch.from_numpy(ds[i][0]) for i in range(n)]).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor([ds[i][1] for i in range(n)])
    return imgs, labels


@pytest.mark.parametrize("prob", [1.0, 0.5])
def test_teacher_never_sees_a_mask(data_dir, prob):
    teacher = SpyTeacher()
    step, seen, _ = _step_parts(prob, teacher)
    imgs, labels = _batch(data_dir)
    original = imgs.clone()
    n_masked = n_clean = 0
    for s in range(4):
        res = step(imgs, labels, s)
        assert res.finite
        assert torch.equal(imgs, original), "the clean batch was modified"
        # the teacher's input is exactly the flipped clean batch of this step, sample by sample
        flips = res.flips
        clean = torch.where(flips[:, None, None, None], original.flip(3), original)
        expect = normalize_uint8_tensor(clean)
        t_in = teacher.inputs[-1]
        s_in = seen[-1]
        assert t_in.shape == expect.shape
        for i in range(len(labels)):
            assert torch.equal(t_in[i], expect[i]), f"step {s} sample {i}: teacher input is not the clean view"
            same = torch.equal(s_in[i], t_in[i])
            assert same == (not bool(res.applied[i])), f"step {s} sample {i}: mask flag and student input disagree"
        n_masked += int(res.applied.sum())
        n_clean += int((~res.applied).sum())
        assert res.masked_fraction == pytest.approx(res.applied.float().mean().item())
    if prob == 1.0:
        assert n_clean == 0
    else:
        assert n_masked > 0 and n_clean > 0
    assert len(teacher.inputs) == 4


def test_views_reproducible_per_seed(data_dir):
    from maskinv.masks import BatchMasker

    imgs, _ = _batch(data_dir, 8)
    m = BatchMasker(image_size=SIZE)
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    a = prepare_views(imgs, flip=True, masker=m, mask_prob=0.5, generator=g1)
    b = prepare_views(imgs, flip=True, masker=m, mask_prob=0.5, generator=g2)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_kd_term_and_clipping(data_dir):
    teacher = SpyTeacher()
    step, _, bb = _step_parts(0.5, teacher, kd=100.0)
    step.clip = 1e-3
    imgs, labels = _batch(data_dir)
    res = step(imgs, labels, 0)
    assert res.kd_loss > 0 and res.loss == pytest.approx(res.head_loss + res.kd_loss, rel=1e-5)
    total = torch.norm(torch.stack([p.grad.norm() for p in bb.parameters() if p.grad is not None]))
    assert res.grad_norm > 1e-3 and float(total) <= 1e-3 * 1.01  # clipped before the update
    step.kd_weight = 0.0
    assert step(imgs, labels, 1).kd_loss == 0.0


def test_missing_teacher_checkpoint_stops(data_dir, tmp_path):
    cfg = _cfg(data_dir, "kd.weight=100", f"teacher.path={tmp_path / 'nope.pt'}")
    with pytest.raises(CheckpointError, match="nope.pt"):
        run_training(cfg, tmp_path / "run", max_steps=2)


def test_fp16_on_cpu_is_a_config_error(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        run_training(_cfg(data_dir, "precision.mode=fp16"), tmp_path / "run", max_steps=1)


class NaNAfter(SpyTeacher):
    def __init__(self, after):
        super().__init__()
        self.after = after

    def forward(self, x):
        out = super().forward(x)
        return out * float("nan") if len(self.inputs) > self.after else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    cfg = _cfg(data_dir, "kd.weight=1", "teacher.path=unused.pt", "masks.prob=0.5", "runtime.checkpoint_every=2")
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"step 4 .*ckpt-00000002\.pt"):
        run_training(cfg, out, teacher_module=NaNAfter(3))
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts == ["ckpt-00000002.pt"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4] and lines[-1]["event"] == "diverged"
    assert not (out / "backbone.pt").exists()


def test_teacher_is_frozen_and_not_optimised(data_dir, tmp_path):
    from maskinv.train.distill import load_teacher

    tpath = tmp_path / "teacher.pt"
    export_tiny_teacher(tpath, seed=9, size=SIZE)
    teacher = load_teacher(tpath)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = _cfg(data_dir, "kd.weight=100", f"teacher.path={tpath}", "masks.prob=0.5", "precision.channels_last=true")
    summary = run_training(cfg, tmp_path / "run", max_steps=3, teacher_module=teacher)
    assert summary["kd_loss"] > 0 and summary["status"] == "max_steps"
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_tiny_cpu_on_synthfaces_with_in_training_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKINV_CACHE", str(tmp_path / "cache"))
    cfg = load_config(TINY, ["runtime.eval_every=4", "runtime.eval_batch_size=64", "masks.prob=0.5",
                             "runtime.tensorboard=true"])
    s = run_training(cfg, tmp_path / "run", max_steps=4)
    gen = list((tmp_path / "cache" / "synth").iterdir())
    assert len(gen) == 1 and (gen[0] / "train.rec").is_file() and (gen[0] / "synth_val.bin").is_file()
    assert s["num_images"] == 16 * 8 and s["num_classes"] == 16
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [4]
    assert {"synth_val/uu/accuracy", "synth_val/mu/accuracy"} <= set(evals[0])
    assert s["eval"]["synth_val/uu/accuracy"] == evals[0]["synth_val/uu/accuracy"]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    # a non-empty folder without train.rec is never generated into
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("x")
    from maskinv.errors import DataFormatError

    with pytest.raises(DataFormatError, match="not empty"):
        run_training(load_config(TINY, [f"data.path={tmp_path / 'junk'}"]), tmp_path / "run2", max_steps=1)
    assert (tmp_path / "junk" / "keep.txt").exists()

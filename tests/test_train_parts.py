"""The trainer's parts on their own: metering, stop flag, batch source, teacher forward, cache pre-pass."""
from __future__ import annotations

import json
import math
import os
import signal
import threading

import numpy as np
import pytest
import torch
from torch import nn

from maskinv.train import distributed as D
from maskinv.train.data import BatchSource, IndexedDataset, collate
from maskinv.train.metrics import TrainMeter, last_logged_losses
from maskinv.train.signals import StopFlag
from maskinv.train.step import StepResult, TrainStep
from maskinv.train.teacher_cache import TeacherCache, prepass

pytestmark = pytest.mark.usefixtures("one_thread")


def _res(loss, head, kd, masked, finite=True):
    z = torch.zeros(0)
    return StepResult(loss, head, kd, masked, z, z, finite)


def test_meter_window_means_reset_and_last():
    m = TrainMeter(images_per_step=8, log_every=2)
    assert math.isnan(m.last["loss"]) and m.run_images_per_s(1.0) is None
    m.step_started()
    m.step_done(_res(3.0, 2.0, 1.0, 0.5))
    assert not m.due(1, stop=10) and m.due(2, stop=10) and m.due(3, stop=3)  # every 2nd step and the last
    m.step_done(_res(5.0, 4.0, 1.0, 0.0))
    rec = m.window_record(2, 0, 0.1, grad_norm=1.5)
    assert list(rec) == ["step", "epoch", "lr", "loss", "head_loss", "kd_loss", "images_per_s",
                         "masked_fraction", "time", "grad_norm"]
    assert (rec["loss"], rec["head_loss"], rec["kd_loss"], rec["masked_fraction"]) == (4.0, 3.0, 1.0, 0.25)
    assert rec["images_per_s"] > 0 and m.step_images_per_s > 0
    assert m.last == {"loss": 5.0, "head_loss": 4.0, "kd_loss": 1.0}
    m.step_done(_res(7.0, 7.0, 0.0, 1.0))  # the next window holds only this step
    rec = m.window_record(3, 0, 0.1, grad_norm=None)
    assert rec["loss"] == 7.0 and rec["masked_fraction"] == 1.0 and "grad_norm" not in rec
    assert m.run_images == 24
    assert not TrainMeter(8, log_every=0).due(5, stop=5)  # log_every 0: never


def test_last_logged_losses_skips_events_and_bad_files(tmp_path):
    p = tmp_path / "metrics.jsonl"
    assert last_logged_losses(p) == {}
    recs = [{"step": 1, "loss": 2.0, "head_loss": 1.5, "kd_loss": 0.5},
            {"step": 2, "loss": 1.0, "head_loss": 1.0, "kd_loss": None},
            {"step": 2, "event": "eval", "x/uu/accuracy": 0.9}]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert last_logged_losses(p) == {"loss": 1.0, "head_loss": 1.0}
    p.write_text("{not json\n")
    assert last_logged_losses(p) == {}


def test_stop_flag_catches_sigterm_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopFlag() as flag:
        assert not flag.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.requested() and flag.reported == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    flag = StopFlag()
    assert flag.reported == int(signal.SIGTERM)  # a rank stopped by another rank's signal


def test_stop_flag_off_the_main_thread_installs_nothing():
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def body():
        with StopFlag() as flag:
            seen.append((signal.getsignal(signal.SIGINT) is before, flag.requested()))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [(True, False)]


class _Toy:
    """A 10-record dataset of distinct 4x4 images, 2 classes."""

    def __init__(self):
        self.labels = [i % 2 for i in range(10)]

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return np.full((4, 4, 3), i * 10, dtype=np.uint8), self.labels[i]


def test_batch_source_in_memory_and_streamed_agree():
    info = D.DistInfo(rank=0, world_size=1)
    mem = BatchSource(_Toy(), batch_size=3, seed=5, info=info, in_memory=True)
    disk = BatchSource(_Toy(), batch_size=3, seed=5, info=info, in_memory=False)
    assert mem.steps_per_epoch == 3
    for a, b in zip(mem.iterate(1, 1), disk.iterate(1, 1)):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert np.array_equal(mem.images_at([4, 2]), disk.images_at([4, 2]))
    assert mem.images_at([4, 2])[:, 0, 0, 0].tolist() == [40, 20]
    imgs, labels, idx = collate([IndexedDataset(_Toy())[i] for i in (3, 7)])
    assert imgs.shape == (2, 4, 4, 3) and labels.tolist() == [1, 1] and idx.tolist() == [3, 7]


class _MeanTeacher(nn.Module):
    embedding_size = 3

    def forward(self, x):
        return x.mean(dim=(2, 3)) * torch.arange(1, 4, dtype=x.dtype)


def _step(teacher, cache=None):
    return TrainStep(model=nn.Identity(), backbone=nn.Identity(), optimizers=[], teacher=teacher, cache=cache)


def test_teacher_forward_equals_uncached_teacher_embeddings_and_fills_a_prepass(tmp_path):
    teacher = _MeanTeacher()
    step = _step(teacher)
    u8 = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    e = step.teacher_forward(u8)
    assert e.dtype == torch.float32 and e.shape == (5, 3)
    assert torch.equal(e, step.teacher_embeddings(u8, None, torch.zeros(5, dtype=torch.bool)))

    images = torch.randint(0, 256, (7, 4, 4, 3), dtype=torch.uint8).numpy()
    cache = TeacherCache(tmp_path / "c", num_records=7, embedding_size=3, teacher_fp="t", data_fp="d", image_size=4)
    calls = []

    def images_at(idx):
        calls.append(list(idx))
        return images[idx]

    prepass(cache, step.teacher_forward, images_at, rank=0, world_size=1, batch_size=4, device=torch.device("cpu"))
    assert cache.fill_fraction() == 1.0
    assert calls == [[0, 1, 2, 3], [4, 5, 6], [0, 1, 2, 3], [4, 5, 6]]  # both flips, in batches
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    for fl, view in ((0, x), (1, x.flip(3))):
        got, hit = cache.lookup(np.arange(7), np.full(7, fl))
        assert hit.all()
        torch.testing.assert_close(got, step.teacher_forward(view))
    calls.clear()
    prepass(cache, step.teacher_forward, images_at, rank=0, world_size=1, batch_size=4, device=torch.device("cpu"))
    assert calls == []  # nothing missing: no teacher work

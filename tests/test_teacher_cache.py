"""Teacher-template cache: exact lookups per (record, flip), invalidation, trainer equivalence."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from maskinv.train.config import load_config
from maskinv.train.metrics import read_metrics
from maskinv.train.teacher_cache import TeacherCache, data_fingerprint, teacher_fingerprint
from maskinv.train.trainer import run_training

from helpers.toy_data import export_tiny_teacher, make_toy_recordio

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def _cache(folder, teacher_fp="t", data_fp="d", n=10, d=4):
    return TeacherCache(folder, num_records=n, embedding_size=d, teacher_fp=teacher_fp, data_fp=data_fp, image_size=32)


def test_store_lookup_flips_and_persistence(tmp_path):
    c = _cache(tmp_path / "c")
    assert c.rebuilt and c.fill_fraction() == 0.0
    e0 = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    c.store(np.array([3, 5]), np.array([0, 1]), e0)
    got, hit = c.lookup(np.array([3, 5, 3, 5]), np.array([0, 1, 1, 0]))
    assert hit.tolist() == [True, True, False, False]  # the other flip of a record is a different slot
    assert torch.equal(got[:2], e0)
    c.flush()
    again = _cache(tmp_path / "c")
    assert not again.rebuilt
    got, hit = again.lookup(np.array([5]), np.array([1]))
    assert hit.all() and torch.equal(got[0], e0[1])
    with pytest.raises(IndexError):
        again.lookup(np.array([10]), np.array([0]))


@pytest.mark.parametrize("change", [{"teacher_fp": "t2"}, {"data_fp": "d2"}, {"n": 11}])
def test_invalidated_when_teacher_or_data_change(tmp_path, change):
    c = _cache(tmp_path / "c")
    c.store(np.array([1]), np.array([0]), torch.ones(1, 4))
    c.flush()
    fresh = _cache(tmp_path / "c", **change)
    assert fresh.rebuilt and fresh.fill_fraction() == 0.0


def test_fingerprints_follow_weights_and_files(tmp_path):
    from maskinv.models import get_model

    m = get_model("r18", embedding_size=8, width_mult=0.125, input_size=32, seed=0)
    fp = teacher_fingerprint(m)
    assert teacher_fingerprint(m) == fp
    assert teacher_fingerprint(m, extra="precision=bf16") != fp
    with torch.no_grad():
        m.fc.bias[0] += 1e-3
    assert teacher_fingerprint(m) != fp
    make_toy_recordio(tmp_path / "a", classes=2, per_class=2, size=32, seed=0)
    fa = data_fingerprint(tmp_path / "a")
    assert data_fingerprint(tmp_path / "a") == fa
    idx = tmp_path / "a" / "train.idx"
    idx.write_text(idx.read_text() + "\n")  # index content changes
    assert data_fingerprint(tmp_path / "a") != fa
    fb = data_fingerprint(tmp_path / "a")
    rec = tmp_path / "a" / "train.rec"
    os.utime(rec, ns=(rec.stat().st_atime_ns, rec.stat().st_mtime_ns + 10**9))
    assert data_fingerprint(tmp_path / "a") != fb


@pytest.fixture(scope="module")
def kd_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("tc")
    make_toy_recordio(d / "data", classes=8, per_class=6, size=32, seed=6)
    export_tiny_teacher(d / "teacher.pt", seed=8)
    ov = ["data.source=recordio", f"data.path={d / 'data'}", "runtime.batch_size=16", "kd.weight=100",
          f"teacher.path={d / 'teacher.pt'}", "masks.prob=0.5", "precision.mode=fp32", "schedule.epochs=3"]
    return d, ov


def _losses(out):
    return [(r["loss"], r["kd_loss"]) for r in read_metrics(Path(out) / "metrics.jsonl")]


@pytest.mark.slow
def test_trainer_with_cache_matches_without(kd_setup):
    d, ov = kd_setup
    base = run_training(load_config(TINY, ov), d / "plain")
    cpath = d / "cache"
    lazy = run_training(load_config(TINY, ov + ["teacher.cache.enabled=true", f"teacher.cache.path={cpath}"]), d / "lazy")
    assert lazy["teacher_cache"]["rebuilt"] is True
    assert 0.0 < lazy["teacher_cache"]["filled"] <= 1.0
    a, b = _losses(d / "plain"), _losses(d / "lazy")
    assert len(a) == len(b) == base["step"] == 9
    for (la, ka), (lb, kb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-5) and ka == pytest.approx(kb, abs=1e-5)
    # cached vectors are the teacher's embeddings of the (flipped) clean records
    from maskinv.data.recordio import RecordIODataset
    from maskinv.train.distill import load_teacher
    from maskinv.preprocess import to_tensor

    ds = RecordIODataset(d / "data")
    teacher = load_teacher(d / "teacher.pt")
    cache = TeacherCache(cpath, num_records=len(ds), embedding_size=32,
                         teacher_fp=teacher_fingerprint(teacher, extra="precision=fp32"),
                         data_fp=data_fingerprint(d / "data"), image_size=32, create=False)
    filled = np.argwhere(np.asarray(cache.filled) == 1)
    assert len(filled) > 0
    for i, fl in filled[:6]:
        img = ds[int(i)][0]
        x = to_tensor(img[:, ::-1] if fl else img)
        got, hit = cache.lookup(np.array([i]), np.array([fl]))
        assert hit[0]
        torch.testing.assert_close(got[0], teacher(x)[0], rtol=1e-4, atol=1e-5)


def test_prepass_fills_everything_and_is_reused(kd_setup):
    d, ov = kd_setup
    cpath = d / "cache-pre"
    over = ov + ["teacher.cache.enabled=true", "teacher.cache.mode=prepass", f"teacher.cache.path={cpath}"]
    first = run_training(load_config(TINY, over), d / "pre1", max_steps=2)
    assert first["teacher_cache"]["filled"] == 1.0 and first["teacher_cache"]["rebuilt"]
    from maskinv.train.distill import load_teacher

    teacher = load_teacher(d / "teacher.pt")
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    second = run_training(load_config(TINY, over), d / "pre2", max_steps=3, teacher_module=teacher)
    assert second["teacher_cache"]["rebuilt"] is False
    assert calls == []  # every teacher template came from the cache
    for x, y in zip(_losses(d / "pre2")[:2], _losses(d / "pre1")):
        assert x == pytest.approx(y, abs=1e-5)

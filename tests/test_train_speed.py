"""Throughput knobs of the trainer (``runtime.nan_check/prefetch_factor/pin_memory/fused_optimizer/
compile``): validated, excluded from the run identity, and the CPU defaults leave results unchanged;
the GPU benchmark and GPU check scripts run end to end in their CPU modes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from maskinv.errors import ConfigError
from maskinv.train import distributed as D
from maskinv.train.build import build_optimizers, fused_optimizer, pin_memory
from maskinv.train.config import config_hash, load_config
from maskinv.train.data import BatchSource
from maskinv.train.metrics import TrainMeter
from maskinv.train.step import StepResult
from maskinv.train.trainer import TrainingDivergedError, run_training

from helpers.toy_data import make_toy_recordio

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    make_toy_recordio(d, classes=8, per_class=8, size=32, seed=3)
    return d


def _cfg(data_dir, *more):
    return load_config(TINY, ["data.source=recordio", f"data.path={data_dir}", "runtime.batch_size=16", *more])


class _Teacher(nn.Module):
    """A fixed random projection of the pooled image; NaN from call ``nan_after`` on."""

    embedding_size = 32

    def __init__(self, nan_after=None):
        super().__init__()
        self.register_buffer("proj", torch.randn(48, 32, generator=torch.Generator().manual_seed(0)))
        self.calls = 0
        self.nan_after = nan_after

    def forward(self, x):
        self.calls += 1
        out = nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1) @ self.proj
        return out * float("nan") if self.nan_after is not None and self.calls > self.nan_after else out


@pytest.mark.parametrize("key,value,msg", [
    ("runtime.nan_check", "sometimes", "must be auto, step or log"),
    ("runtime.prefetch_factor", "0", "must be >= 1"),
    ("runtime.compile_mode", "fastest", "must be one of default"),
    ("runtime.compile", "maybe", "expected true/false"),
    ("runtime.pin_memory", "'yes'", "expected true/false"),
])
def test_bad_throughput_knobs_are_config_errors(key, value, msg):
    with pytest.raises(ConfigError, match=f"{key}.*{msg}"):
        load_config(TINY, [f"{key}={value}"])


def test_throughput_knobs_do_not_change_the_run_identity():
    base = load_config(TINY, [])
    other = load_config(TINY, ["runtime.nan_check=log", "runtime.prefetch_factor=8", "runtime.pin_memory=true",
                               "runtime.fused_optimizer=true", "runtime.compile=true",
                               "runtime.compile_mode=max-autotune"])
    assert config_hash(base) == config_hash(other)  # a run may resume with other knobs


def test_cpu_defaults_pick_the_unfused_unpinned_path():
    cfg = load_config(TINY, [])
    cpu = torch.device("cpu")
    assert not pin_memory(cfg, cpu) and not fused_optimizer(cfg, cpu)
    assert fused_optimizer(load_config(TINY, ["runtime.fused_optimizer=true"]), cpu)
    p = [nn.Parameter(torch.ones(3))]
    (opt,), _ = build_optimizers(cfg, 1, p, [])
    assert opt.param_groups[0]["fused"] is None  # the constructor's default, exactly as before


def test_fused_sgd_matches_the_default_update():
    cfg = load_config(TINY, [])
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 7, generator=g)
    grads = [torch.randn(5, 7, generator=g) for _ in range(3)]
    out = []
    for fused in (False, True):
        p = nn.Parameter(w0.clone())
        (opt,), _ = build_optimizers(cfg, 1, [p], [], fused=fused)
        for gr in grads:
            p.grad = gr.clone()
            opt.step()
        out.append(p.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-7)


def test_meter_sums_device_scalars_like_floats_and_flags_nonfinite():
    def res(loss, finite):
        t = torch.tensor(loss, dtype=torch.float32)
        return StepResult(t, t * 0.5, t * 0.5, torch.tensor(0.25), torch.zeros(0), torch.zeros(0), finite)

    a, b = TrainMeter(8, 2), TrainMeter(8, 2)
    for v in (1.1, 2.3):
        a.step_done(res(v, None))
        r = res(v, True)
        b.step_done(StepResult(float(r.loss), float(r.head_loss), float(r.kd_loss), 0.25, r.applied, r.flips, True))
    ra, rb = a.window_record(2, 0, 0.1, torch.tensor(3.0)), b.window_record(2, 0, 0.1, 3.0)
    assert {k: v for k, v in ra.items() if k not in ("time", "images_per_s")} == \
        {k: v for k, v in rb.items() if k not in ("time", "images_per_s")}
    assert a.nonfinite_pending(2) == (False, 1)
    a.step_done(res(float("nan"), None))
    a.step_done(res(1.0, None))
    assert a.nonfinite_pending(4) == (True, 3) and a.nonfinite_pending(4) == (False, 5)
    assert a.last == {"loss": 1.0, "head_loss": 0.5, "kd_loss": 0.5}


def test_nan_check_log_trains_the_same_weights(data_dir, tmp_path):
    kd = ["kd.weight=10", "teacher.path=unused.pt", "masks.prob=0.5", "runtime.log_every=2"]
    a = run_training(_cfg(data_dir, *kd), tmp_path / "step", max_steps=6, teacher_module=_Teacher())
    b = run_training(_cfg(data_dir, *kd, "runtime.nan_check=log"), tmp_path / "log", max_steps=6,
                     teacher_module=_Teacher())
    assert a["weights_sha256"] == b["weights_sha256"] and a["loss"] == b["loss"]
    la = (tmp_path / "step" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k not in ("time", "images_per_s")} for x in lines]  # noqa: E731
    assert strip(la) == strip(lb) and len(la) == 3


def test_nan_check_log_stops_within_log_every_steps(data_dir, tmp_path):
    cfg = _cfg(data_dir, "kd.weight=1", "teacher.path=unused.pt", "runtime.log_every=3",
               "runtime.checkpoint_every=2", "runtime.nan_check=log")
    out = tmp_path / "run"
    # teacher call 5 (step 5) is the first NaN; the check at checkpoint step 6 finds it
    with pytest.raises(TrainingDivergedError, match=r"step in 5\.\.6 .*ckpt-00000004\.pt"):
        run_training(cfg, out, teacher_module=_Teacher(nan_after=4))
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.pt")) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["step"] == 6
    assert not (out / "backbone.pt").exists()


def test_compile_switch_compiles_the_backbone_in_place(data_dir, tmp_path, monkeypatch):
    # Inductor needs ~100 s for even a tiny net on this 2-core machine, so the test records the
    # call instead of compiling; bench_gpu_train --compile and gpu_check compile for real.
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kw: calls.append((type(self).__name__, kw)))
    run_training(_cfg(data_dir), tmp_path / "off", max_steps=1)
    assert calls == []
    s = run_training(_cfg(data_dir, "runtime.compile=true", "runtime.compile_mode=reduce-overhead"),
                     tmp_path / "on", max_steps=1)
    assert calls == [("IResNet", {"mode": "reduce-overhead"})]
    sd = torch.load(s["backbone"], weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in sd)


def test_loader_workers_yield_nchw_batches_equal_to_in_memory(data_dir):
    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(data_dir)
    info = D.DistInfo()
    mem = BatchSource(ds, batch_size=8, seed=1, info=info, in_memory=True)
    wrk = BatchSource(ds, batch_size=8, seed=1, info=info, workers=1, prefetch_factor=2)
    n = 0
    for a, b in zip(mem.iterate(0), wrk.iterate(0)):
        assert a[0].shape == (8, 3, 32, 32) and a[0].is_contiguous() and b[0].is_contiguous()
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        n += 1
    assert n == mem.steps_per_epoch


def _run_script(args, tmp_path, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_bench_gpu_train_tiny_cpu_mode_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    p = _run_script(["benchmarks.bench_gpu_train", "--device", "cpu", "--arch", "r18", "--width-mult", "0.125",
                     "--size", "32", "--images", "240", "--per-identity", "8", "--batch", "16", "--steps", "1",
                     "--warmup", "1", "--workers", "1", "--prefetch-factor", "1", "--loader-steps", "2", "--loader-workers", "0,1", "--loader-batches", "2",
                     "--gen-workers", "1", "--threads", "1", "--out", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    fig = json.loads(out.read_text())
    assert fig["images"] == 240 and fig["classes"] == 30 and fig["loader_fed_steps"] == 2
    assert [x["workers"] for x in fig["loader_alone"]] == [0, 1]
    for v in ("plain", "kd", "kd_cached"):
        for mode in ("loader", "device_data"):
            assert fig["steps_by_variant"][v][mode]["images_per_s"] > 0
        assert fig["ratios"][f"{v}_bound"] in ("step", "loader")
    assert fig["ratios"]["kd_cached_over_plain"] > 0
    assert "kd_cached_over_kd" in p.stdout and "device_data" in p.stdout


@pytest.mark.slow
def test_gpu_check_on_cpu_reports_skips(tmp_path):
    out = tmp_path / "check.json"
    p = _run_script(["benchmarks.gpu_check", "--out", str(out)], tmp_path, timeout=120)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: gpu_check runs its real checks (see docs/training.md)")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["cuda"] is False and res["checks"]
    assert all(c["status"] == "SKIP" for c in res["checks"].values())
    assert "SKIP" in p.stdout and "nccl_ddp" in p.stdout


@pytest.mark.slow
def test_nan_check_log_under_torchrun_two_ranks(tmp_path):
    # the log-step check all-reduces its flag (gloo here): both ranks pass the same checks and finish
    make_toy_recordio(tmp_path / "data", classes=8, per_class=8, size=32, seed=3)
    out = tmp_path / "run"
    p = _run_script(["torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "maskinv", "train",
                     str(TINY), "data.source=recordio", f"data.path={tmp_path / 'data'}", "runtime.batch_size=8",
                     "masks.prob=0.5", "runtime.nan_check=log", "runtime.log_every=2", "runtime.checkpoint_every=3",
                     "--out", str(out), "--max-steps", "3"], tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and s["step"] == 3 and s["ranks_in_sync"] is True

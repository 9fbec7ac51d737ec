"""Checkpoints and exact resume: straight vs split runs, DataLoader workers, SIGTERM and SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskinv.train.checkpoint import latest_checkpoint, list_checkpoints, load_state
from maskinv.train.config import load_config
from maskinv.train.metrics import read_metrics
from maskinv.train.trainer import run_training

from helpers.toy_data import export_tiny_teacher, make_toy_recordio

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    make_toy_recordio(d / "data", classes=8, per_class=8, size=32, seed=2)
    teacher = d / "teacher.pt"
    export_tiny_teacher(teacher, seed=5)
    overrides = ["data.source=recordio", f"data.path={d / 'data'}", "runtime.batch_size=16", "kd.weight=100",
                 f"teacher.path={teacher}", "masks.prob=0.5", "schedule.epochs=20", "schedule.milestones=[2, 3]",
                 "runtime.checkpoint_every=3", "runtime.keep_last=2"]
    return d, overrides


def _losses(run_dir):
    return [(r["step"], r["loss"], r["head_loss"], r["kd_loss"]) for r in read_metrics(Path(run_dir) / "metrics.jsonl")
            if "event" not in r]


def _assert_same(a, b, tol=1e-6):
    assert [x[0] for x in a] == [x[0] for x in b]
    for x, y in zip(a, b):
        for u, v in zip(x[1:], y[1:]):
            assert abs(u - v) <= tol, (x, y)


def _weights(run_dir):
    return torch.load(Path(run_dir) / "backbone.pt", weights_only=True)


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def straight(setup):
    d, ov = setup
    out = d / "straight"
    run_training(load_config(TINY, ov), out, max_steps=12)
    return out


@pytest.mark.slow
def test_split_run_equals_straight_run(setup, straight):
    d, ov = setup
    cfg = load_config(TINY, ov)
    out = d / "split"
    first = run_training(cfg, out, max_steps=5)  # stops mid-epoch (4 steps per epoch) between checkpoints
    assert first["status"] == "max_steps" and first["step"] == 5
    state = load_state(latest_checkpoint(out))
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (5, 1, 1)
    for key in ("backbone", "head", "optimizer", "scheduler", "rng", "config_hash"):
        assert key in state
    second = run_training(cfg, out, max_steps=12, resume=True)
    assert second["step"] == 12
    _assert_same(_losses(straight), _losses(out))
    _assert_same_weights(straight, out)
    # keep-last-K and the training checkpoint loads as a backbone
    assert len(list_checkpoints(out)) == 2
    from maskinv.models import load_backbone

    load_backbone(latest_checkpoint(out))


@pytest.mark.slow
def test_resume_exact_with_loader_workers(setup, straight):
    d, ov = setup
    ov = ov + ["data.in_memory=false", "runtime.workers=2"]
    out = d / "workers"
    run_training(load_config(TINY, ov), out, max_steps=7)
    run_training(load_config(TINY, ov), out, max_steps=12, resume=True)
    _assert_same(_losses(straight), _losses(out))
    _assert_same_weights(straight, out)


def test_resume_refuses_a_different_config(setup, straight):
    from maskinv.errors import ConfigError

    d, ov = setup
    with pytest.raises(ConfigError, match="optim.lr"):
        run_training(load_config(TINY, ov + ["optim.lr=0.3"]), straight, max_steps=13, resume=True)


def _cli(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-m", "maskinv", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_lines(path: Path, n: int, proc, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for metrics")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes(setup, straight, sig):
    d, ov = setup
    out = d / f"killed-{int(sig)}"
    proc = _cli([str(TINY), *ov, "--out", str(out), "--max-steps", "200"])
    _wait_lines(out / "metrics.jsonl", 4, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    steps = list_checkpoints(out)
    assert steps, err
    last = steps[-1][0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + int(sig), err
        # progress lines while it ran, and the command that continues it (issue 16 item 14)
        assert "step 1/" in err and "step 4/" in err, err
        assert f"stopped by SIGTERM at step {last}/" in err and f"resume with: maskinv train --resume {out}" in err, err
        # the handler checkpointed the step it stopped at (not only the periodic ones)
        assert last == max(r["step"] for r in read_metrics(out / "metrics.jsonl"))
    else:
        assert proc.returncode == -int(sig)
    target = min(12, last + 3)
    if target <= last:
        pytest.skip("the run got past the straight reference before the signal")
    proc = _cli(["--resume", str(out), "--max-steps", str(target)])
    outs, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = _losses(out)
    assert [x[0] for x in got] == list(range(1, target + 1))  # lines past the checkpoint were dropped
    _assert_same(_losses(straight)[:target], got)


def test_fresh_run_into_an_existing_run_is_refused(setup, straight):
    from maskinv.errors import ConfigError

    d, ov = setup
    with pytest.raises(ConfigError, match="already holds a run"):
        run_training(load_config(TINY, ov), straight, max_steps=2)

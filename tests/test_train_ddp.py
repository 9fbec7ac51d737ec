"""torchrun with 2 CPU processes (gloo): tiny-cpu trains a few steps and the ranks stay in sync."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskinv.train.checkpoint import latest_checkpoint, load_state
from maskinv.train.metrics import read_metrics

from helpers.toy_data import make_toy_recordio

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))


@pytest.mark.slow
def test_torchrun_two_ranks_stay_in_sync(tmp_path):
    make_toy_recordio(tmp_path / "data", classes=8, per_class=8, size=32, seed=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "maskinv",
           "train", str(TINY), "data.source=recordio", f"data.path={tmp_path / 'data'}", "runtime.batch_size=8",
           "masks.prob=0.5", "runtime.checkpoint_every=2", "--out", str(out), "--max-steps", "3"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 3
    assert summary["ranks_in_sync"] is True  # sha256 of every parameter, all-gathered from both ranks
    recs = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]  # rank 0 logs alone
    assert all(0.0 <= r["masked_fraction"] <= 1.0 for r in recs)
    state = load_state(latest_checkpoint(out))
    assert state["world_size"] == 2 and state["step"] == 3
    # 64 images / (8 per rank x 2 ranks) = 4 steps per epoch: the sampler split the set
    assert state["steps_per_epoch"] == 4
    from maskinv.models import load_backbone

    load_backbone(out / "backbone.pt")


@pytest.mark.slow
def test_nproc_flag_execs_torchrun_with_partial_fc(tmp_path):
    make_toy_recordio(tmp_path / "data", classes=5, per_class=8, size=32, seed=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskinv", "train", str(TINY), "data.source=recordio", f"data.path={tmp_path / 'data'}",
           "runtime.batch_size=8", "head.partial_fc.enabled=true", "head.partial_fc.sample_rate=0.5",
           "--out", str(out), "--max-steps", "2", "--nproc", "2"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    # each rank saved its own class-centre shard (3 + 2 of the 5 classes) next to the main checkpoint
    ck = latest_checkpoint(out)
    shapes = [load_state(ck.with_name(ck.name[:-3] + f".shard{r}.pt"))["pfc"]["kernel"].shape for r in range(2)]
    assert [tuple(s) for s in shapes] == [(32, 3), (32, 2)]


@pytest.mark.slow
def test_torchrun_worker_exit_keeps_its_output_and_status(tmp_path):
    """A worker ends with os._exit after destroying the process group (C++ teardown can abort):
    what it printed into a pipe still arrives, and the exit status is the run's."""
    import socket

    make_toy_recordio(tmp_path / "data", classes=4, per_class=4, size=32, seed=5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(_env(), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env.pop("PYTHONUNBUFFERED", None)  # a pipe is block-buffered: os._exit alone would drop the tail
    cmd = [sys.executable, "-m", "maskinv", "train", str(TINY), "data.source=recordio", f"data.path={tmp_path / 'data'}",
           "runtime.batch_size=8", "--out", str(tmp_path / "run"), "--max-steps", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "status: max_steps" in proc.stdout and proc.stdout.rstrip().splitlines()[-1].startswith("checkpoint: ")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["world_size"] == 1

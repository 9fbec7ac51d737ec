"""A run folder that was moved or renamed resumes: its config keeps in-run paths run-relative."""
from __future__ import annotations

from pathlib import Path

import pytest

from maskinv.train.checkpoint import latest_checkpoint, load_state
from maskinv.train.config import load_config
from helpers.toy_data import export_tiny_teacher, make_toy_recordio
from maskinv.train.metrics import read_metrics
from maskinv.train.trainer import run_training

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_moved_run_folder_resumes_and_continues(tmp_path):
    run = tmp_path / "runs" / "first"
    make_toy_recordio(run / "data", classes=8, per_class=8, size=32, seed=2)  # data inside the run folder
    teacher = tmp_path / "teacher.pt"
    export_tiny_teacher(teacher, seed=5)
    ov = ["data.source=recordio", f"data.path={run / 'data'}", "data.val_bins=[]", "runtime.batch_size=16",
          "kd.weight=10", f"teacher.path={teacher}", "teacher.cache.enabled=true",
          f"teacher.cache.path={run / 'teacher_cache'}", "runtime.checkpoint_every=3"]
    first = run_training(load_config(TINY, ov), run, max_steps=4)
    assert first["status"] == "max_steps" and first["step"] == 4

    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    run.rename(moved)
    cfg = load_config(moved / "config.yaml")  # what `maskinv train --resume DIR` loads
    assert cfg.data.path == str(moved / "data") and cfg.teacher.cache.path == str(moved / "teacher_cache")
    second = run_training(cfg, moved, max_steps=7, resume=True)
    assert second["status"] == "max_steps" and second["step"] == 7
    assert load_state(latest_checkpoint(moved))["step"] == 7
    steps = [r["step"] for r in read_metrics(moved / "metrics.jsonl") if "event" not in r]
    assert steps == list(range(1, 8))  # continued from step 4, not restarted
    assert str(moved) not in (moved / "config.yaml").read_text()

"""Training shows progress by default (a line per log window when no bar is drawn) and says how
to resume after a signal (issue 16 item 14)."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from maskinv.train.config import load_config
from maskinv.train.trainer import run_training

from helpers.toy_data import make_toy_recordio

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_config_shows_progress_lines(tmp_path, capsys):
    make_toy_recordio(tmp_path / "data", classes=4, per_class=8, size=32, seed=1)
    cfg = load_config(TINY, ["data.source=recordio", f"data.path={tmp_path / 'data'}", "runtime.batch_size=8",
                             "runtime.log_every=2"])
    assert cfg.runtime.progress  # the onboarding config does not hide progress
    run_training(cfg, tmp_path / "run", max_steps=5)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("step ")]
    # every log_every steps and the last one; stderr is not a terminal here, so lines, not a bar
    assert [x.split()[1] for x in lines] == ["2/5", "4/5", "5/5"], err
    assert "loss" in lines[0] and "img/s" in lines[0]
    # log_every 0: no log windows, no lines
    run_training(load_config(TINY, ["data.source=recordio", f"data.path={tmp_path / 'data'}",
                                    "runtime.batch_size=8", "runtime.log_every=0"]), tmp_path / "run0", max_steps=2)
    assert "step " not in capsys.readouterr().err


def test_resume_hint_names_the_command(tmp_path):
    from maskinv.train.trainer import resume_hint

    line = resume_hint(tmp_path / "my run", 7, 40, int(signal.SIGINT), tmp_path / "ckpt-00000007.pt")
    assert line == (f"stopped by SIGINT at step 7/40 (checkpoint ckpt-00000007.pt); "
                    f"resume with: maskinv train --resume '{tmp_path / 'my run'}'")

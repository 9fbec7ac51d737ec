"""Smaller first-hour items (issue 25 item 7): messages a new user reads."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(*argv):
    from maskinv.cli import main

    return main([str(a) for a in argv])


def test_a_misspelt_named_model_suggests_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n in ("a.png", "b.png"):
        (tmp_path / n).write_bytes(b"x")
    assert _cli("verify", "a.png", "b.png", "--model", "dilb", "--threshold", "0.5") == 2
    err = capsys.readouterr().err.strip()
    assert "dilb: no such file (did you mean the model 'dlib'?)" in err and "\n" not in err


def test_data_pack_help_names_the_files_it_writes(capsys):
    assert _cli("data", "pack", "--help") == 0
    out = capsys.readouterr().out
    assert ".lst" not in out and "labels.json" in out


def test_verify_says_what_its_time_counts(tmp_path, capsys):
    import cv2

    from maskinv.models import export_backbone, get_model

    export_backbone(get_model("r18", width_mult=0.125, input_size=32, embedding_size=16, seed=0), tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    for n in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{n}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert _cli("verify", tmp_path / "a.png", tmp_path / "b.png", "--model", tmp_path / "m.pt", "--aligned",
                "--threshold", "-1") == 0
    out = capsys.readouterr().out
    assert "loading the model took" in out and "start-up are not counted" in out


def test_a_run_folder_in_use_names_the_flag_not_the_python_argument(tmp_path, capsys):
    from helpers.toy_data import export_tiny_teacher, make_toy_recordio

    make_toy_recordio(tmp_path / "data", classes=2, per_class=4, size=32, seed=3)
    export_tiny_teacher(tmp_path / "t.pt")
    fast = ["runtime.batch_size=4", "runtime.device=cpu", "runtime.threads=1", "runtime.progress=false",
            "precision.mode=fp32", "runtime.checkpoint_every=1"]
    args = ["adapt", "--teacher", tmp_path / "t.pt", "--images", tmp_path / "data", "--out", tmp_path / "run",
            "--max-steps", "1", *fast]
    assert _cli(*args) == 0
    capsys.readouterr()
    assert _cli(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(--resume RUN_DIR;" in err


def test_max_steps_beyond_the_schedule_is_noted(tmp_path, capsys):
    from helpers.toy_data import export_tiny_teacher, make_toy_recordio

    make_toy_recordio(tmp_path / "data", classes=2, per_class=4, size=32, seed=3)
    export_tiny_teacher(tmp_path / "t.pt")
    fast = ["runtime.batch_size=4", "runtime.device=cpu", "runtime.threads=1", "runtime.progress=false",
            "precision.mode=fp32", "schedule.epochs=1"]
    assert _cli("adapt", "--teacher", tmp_path / "t.pt", "--images", tmp_path / "data", "--out", tmp_path / "run",
                "--max-steps", "50", *fast) == 0
    assert "--max-steps 50 is beyond the schedule's 2 steps; the run stops at 2" in capsys.readouterr().err


def test_skipped_photo_lines_speak_cli_words(tmp_path, capsys):
    """`gallery evaluate` / `embed` listed skipped photos with "(pass aligned=True ...)"."""
    from skimage import data as skdata

    from maskinv.models import export_backbone, get_model
    from maskinv.utils.images import encode_image

    export_backbone(get_model("r18", width_mult=0.125, embedding_size=16, seed=0), tmp_path / "m.pt")
    (tmp_path / "coffee.jpg").write_bytes(encode_image(skdata.coffee(), "jpg"))
    assert _cli("embed", tmp_path / "coffee.jpg", "--model", tmp_path / "m.pt", "--out", tmp_path / "e.npy") in (1, 2)
    err = capsys.readouterr().err
    assert "no face" in err and "aligned=True" not in err and "--aligned" in err

"""maskinv demo: every setting checked before any work, an unfinished folder may be replaced, a
moved demo folder is reused (issue 16, items 11 and 15)."""
from __future__ import annotations

import json
import shutil

import pytest

from maskinv.cli import main
from maskinv.errors import ConfigError
from maskinv.study import apply_settings_overrides, quick_settings, run_demo


@pytest.mark.parametrize("override, needle", [
    ("backbone=r19", "unknown backbone 'r19'"),
    ("head=nosuchhead", "nosuchhead"),
    ("identities=0", "identities"),
    ("val_pairs=0", "val_pairs"),
    ("difficulty=impossible", "impossible"),
    ("protocols=[uu, xx]", "xx"),
    ("mask_kind=balaclava", "balaclava"),
    ("optim.momentum=-2", "optim.momentum"),
])
def test_bad_settings_fail_before_any_work(tmp_path, override, needle):
    out = tmp_path / "demo"
    with pytest.raises(ConfigError, match=needle):
        run_demo(out, apply_settings_overrides(quick_settings(), [override]), log=lambda msg: None)
    assert not out.exists()  # no data generated, no settings recorded


def test_cli_bad_backbone_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--set", "backbone=r19"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "r19" in err[0] and "backbone" in err[0] and not out.exists()


def test_unfinished_folder_with_other_settings_is_replaced(tmp_path):
    """The reuse check alone (no training): unfinished -> replaced, finished -> refused."""
    from maskinv.study.pipeline import _check_settings

    out = tmp_path / "demo"
    out.mkdir()
    old = quick_settings(seed=1)
    _check_settings(out, old)
    for rel in ("runs/teacher/summary.json", "data/synth_meta.json"):  # what a failed first try left
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("{}")
    (out / "notes.txt").write_text("mine")  # not the demo's: never touched
    said = []
    new = quick_settings(seed=2)
    _check_settings(out, new, said.append)
    assert "replacing" in said[0] and "seed" in said[0]
    assert not (out / "runs").exists() and not (out / "data").exists() and (out / "notes.txt").is_file()
    assert json.loads((out / "demo_settings.json").read_text())["seed"] == 2
    (out / "results.json").write_text("{}")  # finished: kept, and other settings refused
    with pytest.raises(ConfigError, match="finished demo run with other settings .seed.; use another --out"):
        _check_settings(out, quick_settings(seed=3))
    assert json.loads((out / "demo_settings.json").read_text())["seed"] == 2


@pytest.mark.slow
def test_moved_demo_folder_is_reused(quick_demo, tmp_path):
    """The session's quick demo (seed 3) moved elsewhere, run again: every run reused, nothing
    retrained. The move is a copy while the first folder is renamed away, so the old paths do not
    exist, as after a real move (the shared folder is put back afterwards)."""
    first, doc = quick_demo
    moved = tmp_path / "renamed" / "demo moved"
    moved.parent.mkdir()
    shutil.copytree(first, moved)
    away = first.with_name(first.name + ".away")
    first.rename(away)
    try:
        _check_moved_demo(moved, doc, tmp_path)
    finally:
        away.rename(first)


def _check_moved_demo(moved, doc, tmp_path):
    stamps = {p: p.stat().st_mtime_ns for p in moved.glob("runs/*/*") if p.is_file()}
    logs = []
    again = run_demo(moved, quick_settings(seed=3), log=logs.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no run wrote anything
    for name, m in again["models"].items():
        assert m["run"]["weights_sha256"] == doc["models"][name]["run"]["weights_sha256"]
        assert m["run"]["backbone"] == str(moved / "runs" / name / "backbone.pt")
        assert m["mu"]["eer"] == doc["models"][name]["mu"]["eer"]
    assert again["models"]["maskinv_lg"]["run"]["config"]["teacher"]["path"] == str(moved / "runs/teacher/backbone.pt")
    # an unfinished run in a moved folder cannot resume from its checkpoint (it names the old
    # paths): it is trained again instead of failing with "config differs from checkpoint"
    from maskinv.study.runs import moved_since_stopped
    from maskinv.study.recipe import study_plan, train_config

    s = quick_settings(seed=3).scaled()
    teacher_run = [r for r in study_plan(s) if r.name == "teacher"][0]
    elsewhere = tmp_path / "elsewhere"
    (moved / "runs" / "teacher").rename(elsewhere)
    (elsewhere / "summary.json").unlink()  # as if stopped before the end
    here = train_config(s, teacher_run, moved / "data")
    assert moved_since_stopped(elsewhere, here)  # its checkpoint names the first folder's data
    s.train_overrides = ["optim.momentum=0.5"]  # a real difference is left to the trainer's refusal
    assert not moved_since_stopped(elsewhere, train_config(s, teacher_run, moved / "data"))


@pytest.mark.parametrize("override, needle", [
    ("backbone=r19", r"demo run teacher: model.name: .*r19.* \(demo setting backbone\)$"),
    ("precision=fp64", r"demo run teacher: precision.mode: .*fp64.* \(demo setting precision\)$"),
    ("optim.momentum=-2", r"demo run teacher: optim.momentum: must be in \[0, 1\)$"),  # the user's own key: no hint
])
def test_a_trainer_error_names_the_study_setting_by_its_key(tmp_path, override, needle):
    """The study reads the key from the error (ConfigError.key), not from its text."""
    from maskinv.study.validate import check_settings

    with pytest.raises(ConfigError, match=needle):
        check_settings(apply_settings_overrides(quick_settings(), [override]), tmp_path / "out")

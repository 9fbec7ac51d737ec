"""maskinv demo: every setting checked before any work, an unfinished folder may be replaced, a
moved demo folder is reused (issue 16, items 11 and 15)."""
from __future__ import annotations

import json

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

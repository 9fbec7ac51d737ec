"""The CLI dispatcher: help works, user mistakes give one line and exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maskinv.cli import main


def _run(*args):
    env = dict(os.environ)
    env.pop("MASKINV_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "maskinv", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_help():
    r = _run("--help")
    assert r.returncode == 0 and "usage: maskinv" in r.stdout and r.stderr == ""


@pytest.mark.slow
def test_unknown_command_one_line():
    r = _run("frobnicate")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "frobnicate" in lines[0] and "Traceback" not in r.stderr


def test_main_in_process(capsys):
    assert main(["--no-such-flag"]) == 2  # main returns exit codes, never raises SystemExit
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--no-such-flag" in err
    assert main([]) == 2  # no command: help to stderr, exit 2
    assert main(["--version"]) == 0


def test_every_registered_command_has_help(capsys):
    import argparse

    from maskinv.cli import build_parser

    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = sorted(subs[0].choices) if subs else []
    for name in names:
        assert main([name, "--help"]) == 0, name
        assert "usage: maskinv" in capsys.readouterr().out

"""The command line's messages: what a wrong model file is, flag names instead of Python
keywords, warnings and native-library text as one-line notes, and the real process plumbing
(broken pipe, a note from libjpeg, a parse error) in subprocesses."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest
from helpers.cli_assets import REPO, SIZE, corrupt_jpeg, make_cli_assets

from maskinv.cli import build_parser, main

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_cli_assets(tmp_path_factory.mktemp("messages"))


def _leaf(*path: str) -> argparse.ArgumentParser:
    p = build_parser()
    for name in path:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


class Foo:  # a pickled object that is not a tensor
    pass


def test_model_file_kinds_one_line(root, tmp_path):
    """Anything that is not PyTorch weights: one line saying what the file is."""
    from maskinv.errors import CheckpointError
    from maskinv.models import load_backbone

    torch.save({"a": Foo()}, tmp_path / "objects.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_module.pt")
    data = (root / "model.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    shutil.copy(root / "crop0.png", tmp_path / "image.pt")
    cases = {root / "fake.onnx": "ONNX model", root / "notes.txt": "text file", tmp_path / "objects.pt": "Foo",
             tmp_path / "whole_module.pt": "save model.state_dict()", tmp_path / "truncated.pt": "truncated",
             tmp_path / "empty.pt": "empty file", tmp_path / "image.pt": "an image"}
    for path, what in cases.items():
        with pytest.raises(CheckpointError) as ei:
            load_backbone(path)
        msg = str(ei.value)
        assert "\n" not in msg and str(path) in msg and what in msg, msg
        assert "Weights only load failed" not in msg and "weights_only` argument" not in msg


def test_export_refuses_onnx_in_one_line(root, tmp_path, capsys):
    """export onnx needs PyTorch weights: an ONNX file (also one renamed to .pt) is one line."""
    pytest.importorskip("onnx")
    from maskinv.export import export_onnx

    real = tmp_path / "m.onnx"
    export_onnx(root / "model.pt", real, check=False)
    shutil.copy(real, tmp_path / "renamed.pt")
    for src in (real, tmp_path / "renamed.pt"):
        assert main(["export", "onnx", str(src), str(tmp_path / "again.onnx")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{src.name}: " in err[0] and "ONNX model" in err[0], err
        assert "Weights only load failed" not in err[0]
    assert not (tmp_path / "again.onnx").exists()


def test_cli_hints_name_flags_and_model_size(root, capsys):
    """Library advice (aligned=True, threshold=) is phrased as flags at the command line."""
    pytest.importorskip("dlib")
    rc = main(["verify", str(root / "crop0.png"), str(root / "crop1.png"), "--model", str(root / "model.pt"),
               "--threshold", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "no face detected" in err and "--aligned" in err and "aligned=True" not in err
    assert f"{SIZE}x{SIZE}" in err and "112x112" not in err  # the model's input size, not the default


def test_align_has_no_aligned_hint(root, capsys):
    """``align`` has no --aligned flag: its no-face error must not suggest one."""
    pytest.importorskip("dlib")
    assert main(["align", str(root / "crop0.png"), str(root / "new" / "x.png"), "--detector", "dlib"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"maskinv align: error: {root / 'crop0.png'}: no face detected"
    assert not (root / "new").exists()


def test_cli_phrasing_of_library_hints():
    from maskinv.cli import _CLI_PHRASES, _cli_phrasing

    for py, cli, flag in _CLI_PHRASES:
        got = _cli_phrasing(f"x.png: went wrong ({py} if you must)", _leaf("verify"))  # has every flag
        assert cli in got and py not in got, (py, got)
        assert _cli_phrasing(f"x.png: went wrong ({py} if you must)", _leaf("gallery", "list")) == "x.png: went wrong"


def test_verify_without_threshold_names_the_flags(root, capsys):
    rc = main(["verify", str(root / "crop0.png"), str(root / "crop1.png"), "--model", str(root / "model.pt"),
               "--aligned"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--threshold" in err and "maskinv calibrate" in err


def test_align_on_a_folder_names_it(root, capsys):
    argv = ["align", str(root / "adir"), str(root / "new" / "x.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "adir" in err and "image file not found" not in err


def test_library_says_folder_for_a_folder(root):
    from maskinv.align import read_image
    from maskinv.errors import DataFormatError

    with pytest.raises(DataFormatError, match="adir: is a folder, expected an image file"):
        read_image(root / "adir")


def test_error_line_names_the_sub_command(root, capsys):
    assert main(["data", "info", str(root / "notes.txt")]) == 2
    assert capsys.readouterr().err.startswith("maskinv data info: error: ")


# --------------------------------------------------------------------------- notes
def test_warnings_become_one_note_each(capsys, monkeypatch):
    import warnings

    from maskinv.cli import _MAX_NOTES, _quiet_output

    with _quiet_output(debug=False):
        for _ in range(3):
            warnings.warn("something odd\nacross lines", UserWarning)
    err = capsys.readouterr().err
    assert err == "maskinv: note: something odd across lines\n"  # once, one line, no source path
    with _quiet_output(debug=False):
        for i in range(_MAX_NOTES + 5):
            warnings.warn(f"note {i}", UserWarning)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == _MAX_NOTES + 1 and "suppressed" in lines[-1]


def test_opencv_warnings_are_quiet_and_restored(tmp_path, capfd):
    import cv2

    from maskinv.cli import _quiet_output

    before = cv2.utils.logging.getLogLevel()
    with _quiet_output(debug=False):
        cv2.imread(str(tmp_path / "missing.png"))  # OpenCV logs "[ WARN:0@...] ... can't open/read file"
    assert "WARN" not in capfd.readouterr().err
    assert cv2.utils.logging.getLogLevel() == before


def test_native_stderr_becomes_a_note_naming_the_image(tmp_path, capfd):
    """libjpeg writes 'Corrupt JPEG data' to fd 2 itself; with capture on it becomes a warning."""
    import warnings

    from maskinv.utils import native_stderr
    from maskinv.utils.images import decode_image

    data = corrupt_jpeg()
    was = native_stderr.enable(True)
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            img = decode_image(data, "probe.jpg")
    finally:
        native_stderr.enable(was)
    assert img.shape == (SIZE, SIZE, 3)
    assert capfd.readouterr().err == ""  # nothing reached the real stderr
    assert len(rec) == 1 and issubclass(rec[0].category, native_stderr.NativeLibraryWarning)
    assert str(rec[0].message).startswith("probe.jpg: Corrupt JPEG data")


# --------------------------------------------------------------------------- real processes
def _run(args, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != "MASKINV_DEBUG"}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "maskinv", *args], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


@pytest.mark.slow
def test_broken_pipe_is_quiet(root):
    env = {k: v for k, v in os.environ.items() if k != "MASKINV_DEBUG"}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-m", "maskinv", "metrics", str(root / "scores.csv"), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # the reader is gone before the first write, like `| head` exiting early
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=120) == 141
    assert err == ""


@pytest.mark.slow
def test_subprocess_corrupt_jpeg_is_one_note(root, tmp_path):
    bad = tmp_path / "probe.jpg"
    bad.write_bytes(corrupt_jpeg())
    args = ["verify", str(bad), str(root / "crop0.png"), "--model", str(root / "model.pt"), "--aligned",
            "--threshold", "0.5"]
    r = _run(args)
    assert r.returncode in (0, 1), r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maskinv: note: {bad}: Corrupt JPEG data"), r.stderr
    d = _run(args, {"MASKINV_DEBUG": "1"})  # debugging: the library's own text, unfiltered
    assert any(line.startswith("Corrupt JPEG data") for line in d.stderr.splitlines())


@pytest.mark.slow
def test_subprocess_bad_argument(root, tmp_path):
    r = _run(["align", str(root / "crop0.png"), str(tmp_path / "o.png"), "--size", "0"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "maskinv align: error: argument --size: must be a positive integer (>= 1), got '0'\n"

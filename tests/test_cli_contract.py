"""The command line's error contract, for every sub-command the parser has.

A user mistake prints exactly one line on stderr that names the argument (or the file), exits
with code 2, prints nothing on stdout and writes or changes nothing. The sub-commands and their
arguments are enumerated from ``build_parser()`` itself: a new command fails
``test_every_command_has_a_baseline`` until it gets a valid argument set in ``_baseline``,
and a new argument type fails until ``_bad_values`` knows how to break it.

Runs in-process (``main`` returns the exit code); three subprocess tests cover the real
stderr/stdout plumbing (broken pipe, a native-library note, a parse error).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskinv.cli import build_parser, main

torch = pytest.importorskip("torch")
SIZE = 32
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the parser's tree
def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, leaf parser) for every runnable sub-command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaves(child, path + (name,))


def _all_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for name, child in sub.choices.items():
            yield from _all_parsers(child, path + (name,))


def _user_actions(parser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))]


LEAVES = sorted(_leaves(build_parser()), key=lambda t: t[0])


# --------------------------------------------------------------------------- assets
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One folder with a tiny model, images, a .bin, a CSV, a gallery, config, folders."""
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model

    r = tmp_path_factory.mktemp("contract")
    export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0), r / "model.pt")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    for i in (0, 1):
        cv2.imwrite(str(r / f"crop{i}.png"), crops[i])
    save_bin(r / "tiny.bin", [cv2.imencode(".png", c)[1].tobytes() for c in crops], np.array([1, 0, 1, 0], bool))
    (r / "scores.csv").write_text("score,genuine\n" + "".join(f"{v:.4f},{i % 2}\n" for i, v in enumerate(rng.random(40))))
    (r / "notes.txt").write_text("not a model, image, bin, CSV, gallery or config\n")
    (r / "fake.onnx").write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))  # looks like ONNX, loads as nothing
    np.save(r / "lm.npy", np.zeros((5, 2), np.float32) + 10)
    shutil.copy(REPO / "configs" / "tiny-cpu.yaml", r / "cfg.yaml")
    for d in ("adir", "faces/person0", "run", "recs"):
        (r / d).mkdir(parents=True)
    for name in ("Ann", "Bob"):  # an LFW-style folder benchmark of aligned 112 px crops
        for j in (1, 2):
            (r / "lfw" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(r / "lfw" / name / f"{name}_000{j}.png"),
                        rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    (r / "lfw" / "pairs.txt").write_text("Ann 1 2\nAnn 1 Bob 1\nBob 1 2\nBob 2 Ann 2\n")
    shutil.copy(r / "crop0.png", r / "faces" / "person0" / "a.png")
    assert main(["gallery", "add", str(r / "g.db"), "someone", str(r / "crop0.png"),
                 "--model", str(r / "model.pt"), "--aligned"]) == 0
    return r


def _p(root: Path, *names: str) -> list[str]:
    return [str(root / n) for n in names]


def _baseline(cmd: tuple[str, ...], r: Path) -> tuple[dict[str, list[str]], list[str]]:
    """A valid argument set per command: (positional dest -> tokens, option tokens).
    Outputs point at ``r/new/...`` (absent), so any write shows up in the snapshot."""
    model = ["--model", str(r / "model.pt")]
    new = r / "new"
    table: dict[tuple[str, ...], tuple[dict[str, list[str]], list[str]]] = {
        ("data", "synth"): ({"out_dir": [str(new / "synth")]},
                           ["--identities", "2", "--images-per-identity", "2", "--seed", "0", "--size", "32"]),
        ("data", "info"): ({"path": _p(r, "tiny.bin")}, []),
        ("data", "pack"): ({"image_folder": _p(r, "faces"), "out_dir": [str(new / "rec")]}, []),
        ("data", "unpack"): ({"rec_dir": _p(r, "recs"), "out_dir": [str(new / "unpacked")]}, []),
        ("data", "bin"): ({"images_dir": _p(r, "lfw"), "out": [str(new / "lfw.bin")]}, ["--aligned"]),
        ("mask",): ({"input": _p(r, "crop0.png"), "output": [str(new / "m.png")]}, []),
        ("mask-bin",): ({"input": _p(r, "tiny.bin"), "output": [str(new / "mu.bin")]},
                        ["--protocol", "mu", "--seed", "0"]),
        ("train",): ({"config": _p(r, "cfg.yaml"), "overrides": []}, ["--out", str(new / "run")]),
        ("eval",): ({}, [*model, "--bench", str(r / "tiny.bin"), "--out", str(new / "eval"), "--no-plots"]),
        ("metrics",): ({"scores": _p(r, "scores.csv")}, []),
        ("demo",): ({}, ["--quick", "--out", str(new / "demo")]),
        ("align",): ({"image": _p(r, "crop0.png"), "out": [str(new / "a.png")]}, []),
        ("embed",): ({"images": _p(r, "crop0.png", "crop1.png")}, [*model, "--aligned", "--out", str(new / "e.npy")]),
        ("verify",): ({"image_a": _p(r, "crop0.png"), "image_b": _p(r, "crop1.png")},
                      [*model, "--aligned", "--threshold", "0.5"]),
        ("calibrate",): ({}, [*model, "--bench", str(r / "tiny.bin"), "--fmr", "0.25"]),
        ("gallery", "add"): ({"db": [str(new / "g.db")], "name": ["x"], "images": _p(r, "crop0.png")},
                             [*model, "--aligned"]),
        ("gallery", "search"): ({"db": _p(r, "g.db"), "images": _p(r, "crop1.png")}, [*model, "--aligned"]),
        ("gallery", "list"): ({"db": _p(r, "g.db")}, []),
        ("gallery", "remove"): ({"db": _p(r, "g.db"), "name": ["someone"]}, []),
        ("export", "onnx"): ({"model": _p(r, "model.pt"), "out": [str(new / "m.onnx")]}, []),
    }
    return table[cmd]


def _argv(cmd, parser, positionals: dict[str, list[str]], options: list[str]) -> list[str]:
    pos = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    out = list(cmd)
    for a in pos:
        out += positionals.get(a.dest, [])
    return out + options


def _with_option(options: list[str], flag: str, value: str | None) -> list[str]:
    """Replace the first ``flag VALUE`` (or append it); value None removes it."""
    out = list(options)
    if flag in out:
        i = out.index(flag)
        takes = i + 1 < len(out) and not out[i + 1].startswith("--")
        del out[i:i + (2 if takes else 1)]
        if value is not None:
            out[i:i] = [flag, value]
    elif value is not None:
        out += [flag, value]
    return out


# --------------------------------------------------------------------------- bad values
_PATHY = ("model", "bench", "out", "db", "image", "images", "image_a", "image_b", "input", "output", "path",
          "scores", "landmarks", "preview", "resume", "rec_dir", "out_dir", "image_folder", "images_dir", "pairs",
          "probe_list", "align_cache")
# string arguments that are not file paths on purpose: train's CONFIG also takes key=value
_STRING_OK = {"config"}


def _bad_values(action, r: Path) -> list[str]:
    """Values that must be refused, derived from the argument's type (or choices)."""
    t = action.type
    name = getattr(t, "__name__", None)
    missing, folder, a_file = str(r / "missing" / "nope.x"), str(r / "adir"), str(r / "notes.txt")
    under_file = str(r / "notes.txt" / "sub" / "x.out")
    if action.choices is not None and not isinstance(action.choices, dict):
        return ["bogus"]
    table = {
        "positive_int": ["0", "-5", "abc", "1.5"],
        "non_negative_int": ["-1", "x"],
        "seed": ["-1", "1.5", "x"],
        "positive_float": ["0", "-1", "nan", "x"],
        "non_negative_float": ["-1", "inf", "x"],
        "probability": ["0", "1", "2", "-0.1", "x"],
        "cosine": ["1.5", "-2", "x"],
        "choice_list": ["xy", ","],
        "mask_kind": ["bogus"],
        "device": ["bogus", "cuda:99"],
        "existing_file": [missing, folder, a_file],  # a text file is no model, image, .bin, CSV, ...
        "model_ref": [missing, folder, a_file],
        "number": ["x", "nan", "inf"],
        "protocol_list": ["xy", ","],
        "existing_dir": [missing, a_file],
        "existing_path": [missing, folder, a_file],
        "output_file": [folder, under_file],
        "output_dir": [a_file, str(r / "notes.txt" / "sub")],
        "output_path": [under_file],
    }
    if name and name.startswith("int_"):
        lo, hi = (int(v) for v in name.split("_")[1:])
        return [str(lo - 1), str(hi + 1), "q"]
    if name in table:
        return table[name]
    assert t is None, f"{action.option_strings or action.dest}: no bad values known for type {name}; add them here"
    if action.option_strings and action.nargs != 0 and isinstance(action, (argparse._StoreAction, argparse._AppendAction)):
        return ["bogus"]  # free-text options (--arch, --difficulty, --set): checked when the command runs
    return []


def _cases(r: Path):
    """(id, argv, things that may name the problem) for every argument of every command."""
    out = []
    for cmd, parser in LEAVES:
        positionals, options = _baseline(cmd, r)
        for a in _user_actions(parser):
            flag = a.option_strings[0] if a.option_strings else None
            names = list(a.option_strings) or [a.metavar or a.dest, a.dest]
            bads = _bad_values(a, r)
            if a.dest == "model" and a.type is not None:  # wrong kind of model file (run time)
                bads = bads + [str(r / "fake.onnx")] * (not any("--backend" in x.option_strings for x in parser._actions))
            for bad in bads:
                if flag:
                    argv = _argv(cmd, parser, positionals, _with_option(options, flag, bad))
                else:
                    pos = dict(positionals)
                    pos[a.dest] = [bad] + pos.get(a.dest, [])[1:]
                    argv = _argv(cmd, parser, pos, options)
                out.append((f"{' '.join(cmd)} {names[0]}={Path(bad).name if os.sep in bad else bad}", argv,
                            names + [Path(bad).name]))
            if a.required and flag:
                out.append((f"{' '.join(cmd)} without {flag}", _argv(cmd, parser, positionals,
                                                                     _with_option(options, flag, None)), names))
    return out


def _snapshot(r: Path) -> dict[str, tuple]:
    return {str(p.relative_to(r)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(r.rglob("*"))}


# --------------------------------------------------------------------------- tests
def test_every_command_has_a_baseline(root):
    for cmd, parser in LEAVES:
        try:
            positionals, _ = _baseline(cmd, root)
        except KeyError:
            pytest.fail(f"`maskinv {' '.join(cmd)}` has no valid argument set in _baseline() (tests/test_cli_contract.py)")
        pos = {a.dest for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)}
        assert set(positionals) <= pos, cmd


def test_numbers_and_paths_use_validated_types():
    """No bare int/float (0, -5 would slip through) and no unchecked path argument."""
    for cmd, parser in LEAVES:
        for a in _user_actions(parser):
            where = f"maskinv {' '.join(cmd)} {a.option_strings or a.dest}"
            assert a.type not in (int, float), f"{where}: use a type from maskinv.cli.args"
            if a.dest in _PATHY and a.dest not in _STRING_OK:
                assert a.type is not None, f"{where}: a path argument needs an existing_*/output_* type"


def test_bad_arguments_one_line_exit_2_nothing_written(root, capsys, monkeypatch):
    monkeypatch.chdir(root)  # default outputs (runs/, demo_out) would land here and be seen
    monkeypatch.delenv("MASKINV_DEBUG", raising=False)
    as_root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    cases = _cases(root)
    if not as_root:  # root reads files whatever their mode: the case would not be bad
        locked = root / "locked.png"
        shutil.copy(root / "crop0.png", locked)
        locked.chmod(0)
        cases.append(("verify unreadable", ["verify", str(locked), str(root / "crop1.png"), "--model",
                                            str(root / "model.pt"), "--aligned", "--threshold", "0.5"], ["locked.png"]))
    model = ["--model", str(root / "model.pt")]
    cases += [  # mistakes between arguments, found when the command starts
        ("align folder -> file", ["align", str(root / "lfw"), str(root / "notes.txt")], ["notes.txt"]),
        ("align image -> folder", ["align", str(root / "crop0.png"), str(root / "adir")], ["adir"]),
        ("verify --fmr and --threshold", ["verify", str(root / "crop0.png"), str(root / "crop1.png"), *model,
                                          "--aligned", "--fmr", "0.1", "--threshold", "0.5"], ["--fmr", "--threshold"]),
        ("eval --arch twice for one model", ["eval", *model, "--arch", "r18", "--arch", "r18", "--bench",
                                             str(root / "tiny.bin"), "--out", str(root / "new" / "e")], ["--arch"]),
        ("train without config", ["train", "--out", str(root / "new" / "run")], ["CONFIG"]),
        ("verify --aligned, wrong crop size", ["verify", str(root / "lfw" / "Ann" / "Ann_0001.png"), str(root / "crop1.png"),
                                     *model, "--aligned", "--threshold", "0.5"], ["Ann_0001.png"]),
    ]
    assert len(cases) > 150
    failures = []
    for case_id, argv, names in cases:
        before = _snapshot(root)
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        if "Traceback" in err:
            problems.append("traceback")
        if out:
            problems.append(f"stdout {out[:80]!r}")
        if lines and not any(n and str(n) in lines[0] for n in names):
            problems.append(f"names none of {names}")
        after = _snapshot(root)
        if after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))
            problems.append(f"changed files {changed[:3]}")
            for k in set(after) - set(before):  # undo, so one failure does not cascade
                p = root / k
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if problems:
            failures.append(f"{case_id}: {'; '.join(problems)} | {err.strip()[:300]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases break the contract:\n" + "\n".join(failures)


def test_every_option_and_positional_has_help_and_no_rst():
    missing, rst = [], []
    for path, parser in _all_parsers(build_parser()):
        where = "maskinv " + " ".join(path)
        for text in (parser.description, parser.epilog):
            if text and "``" in text:
                rst.append(f"{where}: description/epilog")
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for choice in a._choices_actions:
                    if not choice.help:
                        missing.append(f"{where} {choice.dest}")
                    elif "``" in choice.help:
                        rst.append(f"{where} {choice.dest}")
                continue
            if not a.help or a.help == argparse.SUPPRESS:
                missing.append(f"{where} {a.option_strings or a.dest}")
            elif "``" in a.help:
                rst.append(f"{where} {a.option_strings or a.dest}")
    assert not missing, "arguments without help: " + ", ".join(missing)
    assert not rst, "RST double backticks in help texts: " + ", ".join(rst)


# --------------------------------------------------------------------------- messages
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


def test_eval_refuses_onnx_in_one_line(root, tmp_path, capsys):
    import onnx  # noqa: F401  (the export below needs it)

    from maskinv.export import export_onnx

    real = tmp_path / "m.onnx"
    export_onnx(root / "model.pt", real, check=False)
    assert main(["eval", "--model", str(real), "--bench", str(root / "tiny.bin"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.onnx: is an ONNX model" in err[0] and "PyTorch weights" in err[0]
    assert not (tmp_path / "e").exists()


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

    leaves = dict(LEAVES)
    for py, cli, flag in _CLI_PHRASES:
        got = _cli_phrasing(f"x.png: went wrong ({py} if you must)", leaves[("verify",)])  # has every flag
        assert cli in got and py not in got, (py, got)
        assert _cli_phrasing(f"x.png: went wrong ({py} if you must)", leaves[("gallery", "list")]) == "x.png: went wrong"


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

    data = _corrupt_jpeg()
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


def _corrupt_jpeg() -> bytes:
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    return data[:-2] + bytes(7) + b"\xff\xd9"  # junk before the end marker: libjpeg warns, still decodes


# --------------------------------------------------------------------------- real processes
def _run(args, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != "MASKINV_DEBUG"}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "maskinv", *args], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


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


def test_subprocess_corrupt_jpeg_is_one_note(root, tmp_path):
    bad = tmp_path / "probe.jpg"
    bad.write_bytes(_corrupt_jpeg())
    args = ["verify", str(bad), str(root / "crop0.png"), "--model", str(root / "model.pt"), "--aligned",
            "--threshold", "0.5"]
    r = _run(args)
    assert r.returncode in (0, 1), r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maskinv: note: {bad}: Corrupt JPEG data"), r.stderr
    d = _run(args, {"MASKINV_DEBUG": "1"})  # debugging: the library's own text, unfiltered
    assert any(line.startswith("Corrupt JPEG data") for line in d.stderr.splitlines())


def test_subprocess_bad_argument(root, tmp_path):
    r = _run(["align", str(root / "crop0.png"), str(tmp_path / "o.png"), "--size", "0"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "maskinv align: error: argument --size: must be a positive integer (>= 1), got '0'\n"

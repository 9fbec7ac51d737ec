"""The command line's error contract, for every sub-command the parser has.

A user mistake prints exactly one line on stderr that names the argument (or the file), exits
with code 2, prints nothing on stdout and writes or changes nothing. The sub-commands and their
arguments are enumerated from ``build_parser()`` itself: a new command fails
``test_every_command_has_a_baseline`` until it gets a valid argument set in ``_baseline``,
and a new argument type fails until ``_bad_values`` knows how to break it.

Runs in-process (``main`` returns the exit code); ``test_cli_messages.py`` checks the texts,
notes and the real stderr/stdout plumbing in subprocesses.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest
from helpers.cli_assets import make_cli_assets

from maskinv.cli import build_parser, main

pytest.importorskip("torch")


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
    return make_cli_assets(tmp_path_factory.mktemp("contract"))


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
        ("mask-realism",): ({}, [*model, "--bench", str(r / "lfw"), "--probe-list", str(r / "notes.txt"),
                                 "--out", str(new / "realism"), "--bootstrap", "10"]),
        ("train",): ({"config": _p(r, "cfg.yaml"), "overrides": []}, ["--out", str(new / "run")]),
        ("eval",): ({}, [*model, "--bench", str(r / "tiny.bin"), "--out", str(new / "eval"), "--no-plots"]),
        ("metrics",): ({"scores": _p(r, "scores.csv")}, []),
        ("demo",): ({}, ["--quick", "--out", str(new / "demo")]),
        ("adapt",): ({"overrides": []}, ["--teacher", str(r / "model.pt"), "--images", str(r / "faces"), "--aligned",
                                         "--out", str(new / "adapt"), "--max-steps", "1", "--val", str(r / "tiny.bin")]),
        ("study",): ({}, ["--quick", "--seeds", "1,2", "--out", str(new / "study")]),
        ("study-real",): ({"lfw_dir": _p(r, "faces"), "rmfd_dir": _p(r, "faces")}, ["--out", str(new / "study_real")]),
        ("align",): ({"image": _p(r, "crop0.png"), "out": [str(new / "a.png")]}, []),
        # batch commands skip an unreadable image (exit 1) by design; --strict makes it the error
        ("embed",): ({"images": _p(r, "crop0.png", "crop1.png")},
                     [*model, "--aligned", "--strict", "--out", str(new / "e.npy")]),
        ("verify",): ({"image_a": _p(r, "crop0.png"), "image_b": _p(r, "crop1.png")},
                      [*model, "--aligned", "--threshold", "0.5"]),
        ("calibrate",): ({}, [*model, "--bench", str(r / "tiny.bin"), "--fmr", "0.25"]),
        ("gallery", "add"): ({"db": [str(new / "g.db")], "name": ["x"], "images": _p(r, "crop0.png")},
                             [*model, "--aligned", "--strict"]),
        ("gallery", "search"): ({"db": _p(r, "g.db"), "images": _p(r, "crop1.png")},
                                [*model, "--aligned", "--strict"]),
        ("gallery", "evaluate"): ({"db": _p(r, "g.db"), "folder": _p(r, "faces")},
                                  [*model, "--aligned", "--strict"]),
        ("gallery", "list"): ({"db": _p(r, "g.db")}, []),
        ("gallery", "remove"): ({"db": _p(r, "g.db"), "name": ["someone"]}, []),
        ("export", "onnx"): ({"model": _p(r, "model.pt"), "out": [str(new / "m.onnx")]}, []),
        ("serve",): ({}, ["--gallery", str(new / "staff.db"), *model, "--keys", str(r / "keys.json"),
                          "--thresholds", str(r / "serve.thresholds.json"), "--port", "8765"]),
        ("serve-key",): ({"keys": [str(new / "keys.json")], "name": ["door"]}, ["--scopes", "verify"]),
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
        "bin_file": [missing, folder, a_file],
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


@pytest.mark.slow
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
        ("train unknown override", ["train", str(root / "cfg.yaml"), "nosuch.key=1", "--out",
                                    str(root / "new" / "run")], ["nosuch"]),
        ("train override of a wrong type", ["train", str(root / "cfg.yaml"), "--out", str(root / "new" / "run"),
                                            "optim.lr=abc"], ["optim.lr"]),
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

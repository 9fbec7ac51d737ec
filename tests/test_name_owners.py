"""Names with one owner are spelled only there (issue 22): the protocol names live in
``masks/protocols.py`` (``UU``, ``MU``, ``MM``, ``PROBE_REF``), the dlib backend's name in the four
modules that register or implement it. AST-based like tests/test_layering.py: every string constant
of the code counts, f-string parts and dict keys included; docstrings do not (nor comments)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "maskinv"

PROTOCOL_NAMES = frozenset({"uu", "mu", "mm", "probe_ref"})
#: files (relative to src/maskinv) allowed to spell a name: its owners
PROTOCOL_OWNERS = frozenset({"masks/protocols.py"})
DLIB_OWNERS = frozenset({"models/recognizer.py", "models/dlib_resnet.py", "align/dlib.py", "align/registry.py"})
#: Files other open work was editing when the literals were replaced (issue 22 phase B), with the most
#: literals each may still hold. The list only shrinks: lower a cap or remove an entry as literals go;
#: nothing may be added to it.
KNOWN_PROTOCOL_LITERALS: dict[str, int] = {}
KNOWN_DLIB_LITERALS: dict[str, int] = {}


def _docstrings(tree: ast.AST) -> set[int]:
    """``id`` of every docstring node (first statement of a module, class or function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def literals(path: Path, names: frozenset[str]) -> list[tuple[int, str]]:
    """``(line, value)`` of every string constant of ``path`` that is one of ``names``, docstrings excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
                  and id(node) not in skip)


def spelled_outside(names: frozenset[str], owners: frozenset[str]) -> dict[str, list[tuple[int, str]]]:
    """``{file: literals}`` of every file under ``SRC`` but the owners that spells one of ``names``."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in owners and (found := literals(path, names)):
            out[rel] = found
    return out


def _check(names: frozenset[str], owners: frozenset[str], known: dict[str, int], what: str) -> None:
    found = spelled_outside(names, owners)
    new = {f: v for f, v in found.items() if f not in known or len(v) > known[f]}
    assert new == {}, (f"{what} spelled as string literals outside their owner(s) {sorted(owners)}; "
                       f"import the constant instead: " + "; ".join(f"{f}: lines {[n for n, _ in v]}" for f, v in new.items()))
    gone = sorted(f for f in known if f not in found)
    assert gone == [], f"no {what} literals left in {gone}: remove them from the allow-list"
    lower = {f: len(found[f]) for f in known if f in found and len(found[f]) < known[f]}
    assert lower == {}, f"fewer {what} literals than allowed, lower the caps to {lower}"


def test_protocol_names_only_in_their_owner():
    _check(PROTOCOL_NAMES, PROTOCOL_OWNERS, KNOWN_PROTOCOL_LITERALS, "protocol names")


def test_dlib_only_in_its_owners():
    _check(frozenset({"dlib"}), DLIB_OWNERS, KNOWN_DLIB_LITERALS, '"dlib"')


def test_allow_lists_name_existing_files_and_only_other_owners_files():
    for f in list(KNOWN_PROTOCOL_LITERALS) + list(KNOWN_DLIB_LITERALS):
        assert (SRC / f).is_file(), f
        assert f.split("/")[0] in ("serve", "masks"), f"{f}: only serve/ and masks/ files may be allow-listed"


def test_checker_sees_code_literals_but_not_docstrings(tmp_path, monkeypatch):
    pkg = tmp_path / "maskinv" / "study"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(
        '"""Module doc naming "uu"."""\n'
        'P = ("uu", "mm")\n'                        # line 2: two literals
        'def f(d):\n'
        '    """mu in a docstring"""\n'
        '    return f"{d[\'mu\']:.2f}" + d.get("probe_ref", "x")  # "uu" in a comment\n'  # line 5: two
        'class C:\n'
        '    "probe_ref"\n'                         # a class docstring
        '    x = {"uu": 1}\n')                      # line 8: a dict key
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "maskinv")
    assert spelled_outside(PROTOCOL_NAMES, PROTOCOL_OWNERS) == {
        "study/x.py": [(2, "mm"), (2, "uu"), (5, "mu"), (5, "probe_ref"), (8, "uu")]}
    with pytest.raises(AssertionError, match="study/x.py: lines"):
        _check(PROTOCOL_NAMES, PROTOCOL_OWNERS, {}, "protocol names")
    (pkg / "x.py").write_text('"""only "uu" here"""\nfrom maskinv.masks.protocols import UU\nP = (UU,)\n')
    assert spelled_outside(PROTOCOL_NAMES, PROTOCOL_OWNERS) == {}

"""Dependencies point one way (docs/architecture.md, "Layers"): every ``maskinv`` import of every
module — function-level ones included — goes to its own layer or a layer the table allows."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "maskinv"

BASE = ("base",)
#: layer -> the layers below it that its modules may import (a layer may always import itself).
ALLOWED: dict[str, tuple[str, ...]] = {
    "base": (),
    "align": BASE,
    "data": ("align",) + BASE,
    "masks": ("data", "align") + BASE,
    "models": ("align",) + BASE,
    "evaluate": ("data", "masks", "models", "align") + BASE,
    "train": ("evaluate", "data", "masks", "models", "align") + BASE,
    "facade": ("evaluate", "data", "masks", "models", "align") + BASE,
    "adapt": ("train", "evaluate", "data", "masks", "models", "align") + BASE,
    "study": ("adapt", "train", "evaluate", "facade", "data", "masks", "models", "align") + BASE,
    "cli": ("study", "adapt", "train", "evaluate", "facade", "data", "masks", "models", "align") + BASE,
}
#: first component below ``maskinv`` -> layer
LAYER_OF = {
    "errors": "base", "constants": "base", "preprocess": "base", "utils": "base",
    "align": "align", "data": "data", "masks": "masks", "models": "models",
    "heads": "train", "distill": "train",  # deprecated aliases (SHIMS) of train.heads / train.distill
    "evaluate": "evaluate", "train": "train", "adapt": "adapt",
    "api": "facade", "batch": "facade", "thresholds": "facade", "gallery": "facade", "export": "facade", "serve": "facade",
    "study": "study", "cli": "cli", "__main__": "cli",
}
#: deprecated aliases of moved modules (old -> new, one release): each imports only its new module
#: (whatever layer that is) and no module of the package imports an alias
SHIMS = {"maskinv.heads": "maskinv.train.heads", "maskinv.distill": "maskinv.train.distill",
         "maskinv.train.adapt": "maskinv.adapt.pipeline", "maskinv.train.adapt_select": "maskinv.adapt.select"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


_PARSED: dict[tuple, list] = {}  # the package is parsed once per session, not once per test


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(target module, imported names, line)`` of every maskinv import in ``path`` (any depth)."""
    st = path.stat()
    key = (str(path), str(SRC), st.st_mtime_ns, st.st_size)
    if key not in _PARSED:
        _PARSED[key] = _parse_imports(path)
    return list(_PARSED[key])


def _parse_imports(path: Path) -> list[tuple[str, list[str], int]]:
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "maskinv"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "maskinv":
                out.append((target, [a.name for a in node.names], node.lineno))
    return out


def layer_of(target: str, names: list[str]) -> list[str | None]:
    parts = target.split(".")
    if len(parts) > 1:
        return [LAYER_OF.get(parts[1])]
    # ``from maskinv import x``: x is a subpackage/module, or a lazy facade name of the root
    return ["base" if n == "__version__" else LAYER_OF.get(n, "facade") for n in names] or ["facade"]


def violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        mod = module_name(path)
        parts = mod.split(".")
        if len(parts) == 1:  # the root package: the lazy facade, may name anything below
            continue
        own = LAYER_OF.get(parts[1])
        if mod in SHIMS:
            continue  # checked by test_shims_import_only_their_new_module
        if own is None:
            bad.append(f"{mod}: module not in the layer table (add it to LAYER_OF)")
            continue
        for target, names, line in imports(path):
            for layer in layer_of(target, names):
                if layer != own and layer not in ALLOWED[own]:
                    bad.append(f"{path.relative_to(SRC.parent)}:{line}: {own} -> {layer} ({target})")
    return bad


def test_every_import_points_down():
    assert violations() == []


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` names in an import: ``from a.b import c`` names ``a.b`` and ``a.b.c``."""
    return {m for target, names, _ in imports(path) for m in [target] + [f"{target}.{n}" for n in names]}


def test_no_module_imports_a_deprecated_alias():
    bad = [f"{path.relative_to(SRC.parent)} imports {m}" for path in sorted(SRC.rglob("*.py"))
           if module_name(path) not in SHIMS for m in sorted(_imported_modules(path) & set(SHIMS))]
    assert bad == []


def test_shims_import_only_their_new_module():
    for old, new in SHIMS.items():
        path = SRC.parent.joinpath(*old.split(".")).with_suffix(".py")
        assert {t for t, _, _ in imports(path)} == {new}, old


def test_alias_check_sees_every_spelling(tmp_path, monkeypatch):
    pkg = tmp_path / "maskinv" / "study"
    pkg.mkdir(parents=True)
    (tmp_path / "maskinv" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from maskinv.train import adapt\n    from maskinv import heads\n"
                              "    from ..train.adapt_select import FLOAT_SLACK\n    import maskinv.distill\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "maskinv")
    assert _imported_modules(pkg / "x.py") & set(SHIMS) == set(SHIMS)


def test_checker_sees_function_level_upward_imports(tmp_path, monkeypatch):
    # the checker itself must catch an import hidden inside a function body
    pkg = tmp_path / "maskinv" / "models"
    pkg.mkdir(parents=True)
    (tmp_path / "maskinv" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from maskinv.api import load_model\n    from ..evaluate import runner\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "maskinv")
    got = violations()
    assert got == ["maskinv/models/x.py:2: models -> facade (maskinv.api)",
                   "maskinv/models/x.py:3: models -> evaluate (maskinv.evaluate)"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_table_is_acyclic(layer):
    seen, todo = set(), list(ALLOWED[layer])
    while todo:
        low = todo.pop()
        assert low != layer, f"layer {layer!r} reaches itself through {sorted(seen)}"
        if low not in seen:
            seen.add(low)
            todo += ALLOWED[low]


# ----------------------------------------------------------------------------- cycles inside a package
def _lazy_exports(path: Path) -> dict[str, str]:
    """``{name: submodule}`` of a package ``__init__`` that exports names lazily (``_EXPORTS = {...}``
    read by :func:`maskinv.utils.lazy.lazy_getattr`, or ``lazy_exports(__name__, {submodule: "names"})``):
    importing such a name imports the submodule."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "lazy_exports"
                and len(call.args) == 2 and isinstance(call.args[1], ast.Dict)):
            return {name: k.value for k, v in zip(call.args[1].keys, call.args[1].values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) for name in v.value.split()}
        if (isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_EXPORTS"
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def module_graph() -> dict[str, set[str]]:
    """module -> the ``maskinv`` modules it imports anywhere in its body (function-level imports
    included), each import resolved to a module: ``from pkg import sub`` is ``pkg.sub`` when that is
    a module, a lazily exported name is the submodule that defines it, otherwise the package."""
    files = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    files.pop(SRC.name, None)  # the root package: the lazy facade, names anything below (as in violations())
    lazy = {m: _lazy_exports(p) for m, p in files.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        edges = graph.setdefault(mod, set())
        for target, names, _ in imports(path):
            for name in names or [None]:
                if name is not None and f"{target}.{name}" in files:
                    edges.add(f"{target}.{name}")
                elif name is not None and name in lazy.get(target, {}):
                    edges.add(f"{target}.{lazy[target][name]}")
                elif target in files:
                    edges.add(target)
        edges.discard(mod)
    return graph


def package_of(mod: str) -> str:
    """The package a module belongs to: ``maskinv.align.mtcnn`` -> ``maskinv.align``; a package's
    ``__init__`` (``maskinv.align``) belongs to itself."""
    return mod if (SRC.parent / Path(*mod.split(".")) / "__init__.py").is_file() else mod.rpartition(".")[0]


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules of one package,
    following only imports between modules of that package (Tarjan, then a path inside the group)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def inner(m: str) -> list[str]:
        return sorted(t for t in graph.get(m, ()) if package_of(t) == package_of(m))

    def visit(v: str) -> None:  # iterative Tarjan (no recursion limit on long chains)
        work = [(v, iter(inner(v)))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        group.append(w)
                        if w == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(inner(nxt))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])

    for m in sorted(graph):
        if m not in index:
            visit(m)
    cycles = []
    for group in groups:  # a shortest path from the group's first module back to itself
        members, start = set(group), group[0]
        prev: dict[str, str] = {}
        todo = [start]
        while todo and start not in prev:
            nxt_todo = []
            for m in todo:
                for t in inner(m):
                    if t in members and t not in prev:
                        prev[t] = m
                        nxt_todo.append(t)
            todo = nxt_todo
        path, m = [start], prev[start]
        while m != start:
            path.append(m)
            m = prev[m]
        cycles.append([start] + path[:0:-1] + [start] if len(path) > 1 else [start, start])
    return cycles


#: Cycles inside packages that other open work owns (issue 22 phase B); each must still exist, so the
#: list only shrinks: remove an entry when its cycle is gone. Nothing may be added to it.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def test_no_import_cycle_inside_a_package():
    cycles = {tuple(c) for c in package_cycles(module_graph())}
    new = sorted(cycles - KNOWN_CYCLES)
    assert new == [], "import cycles (function-level imports included):\n" + "\n".join(" -> ".join(c) for c in new)
    gone = sorted(KNOWN_CYCLES - cycles)
    assert gone == [], "no longer cycles; remove them from KNOWN_CYCLES: " + "; ".join(" -> ".join(c) for c in gone)


def test_cycle_checker_sees_function_level_imports_and_reports_the_path(tmp_path, monkeypatch):
    pkg = tmp_path / "maskinv" / "align"
    pkg.mkdir(parents=True)
    (tmp_path / "maskinv" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from . import c\n    return c\n")      # hidden in a function
    (pkg / "c.py").write_text("from maskinv.align import a\n")                         # package import of a module
    (pkg / "d.py").write_text("from . import a\n")                                     # imports into the cycle: not part of it
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "maskinv")
    assert package_cycles(module_graph()) == [["maskinv.align.a", "maskinv.align.b", "maskinv.align.c", "maskinv.align.a"]]
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert package_cycles(module_graph()) == []


def test_cycle_checker_follows_lazy_exports(tmp_path, monkeypatch):
    # a name exported through lazy_exports(...) counts as an import of the submodule that defines it
    pkg = tmp_path / "maskinv" / "evaluate"
    pkg.mkdir(parents=True)
    (tmp_path / "maskinv" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text('from maskinv.utils.lazy import lazy_exports\n\n'
                                     '__all__, __getattr__ = lazy_exports(__name__, {"a": "f F", "b": "g"})\n')
    (pkg / "a.py").write_text("def f():\n    from maskinv.evaluate import g\n    return g\n")
    (pkg / "b.py").write_text("from maskinv.evaluate import F\n\ndef g():\n    return F\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "maskinv")
    assert package_cycles(module_graph()) == [["maskinv.evaluate.a", "maskinv.evaluate.b", "maskinv.evaluate.a"]]

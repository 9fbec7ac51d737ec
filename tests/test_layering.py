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


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(target module, imported names, line)`` of every maskinv import in ``path`` (any depth)."""
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

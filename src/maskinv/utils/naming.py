"""Names as file-name components: the one rule that turns a label (a model, a benchmark, a
protocol, a detector: callers may give any character) into a safe part of a path."""
from __future__ import annotations

import re

__all__ = ["safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_name(text: object, fallback: str = "item", *, per_char: bool = False) -> str:
    """``text`` as a file-name component: every run of characters other than ASCII letters,
    digits and ``_ . + -`` becomes one ``_``; leading and trailing ``_`` are dropped. An empty
    result, or one of dots only (``.``, ``..``: not a file name), gives ``fallback``.

    ``per_char=True``: the detector cache folders' older rule, kept so that existing caches and
    recorded detector tags stay valid: every character other than a letter, a digit or ``- _ .``
    becomes its own ``_`` (``mtcnn+yunet`` -> ``mtcnn_yunet``), nothing is collapsed or stripped."""
    if per_char:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))
    else:
        name = _UNSAFE.sub("_", str(text)).strip("_")
    return name if name.strip(".") else fallback

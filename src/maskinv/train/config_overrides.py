"""Overrides of a run config, in two spellings with one meaning:

* text ``key.sub=value`` items (the command line, ``--set``): the value is read as YAML;
* a typed mapping ``{"key.sub": value}`` (code, e.g. the study): the value is used as it is, never
  written out as text and parsed back.

Either way each key is checked against the schema dataclasses (a typo fails with the full key
path) and each value of a typed field goes through the schema's one conversion
(:func:`maskinv.train.config_schema.coerce`); free-form mappings (``model.kwargs``, ...) accept
new keys. :mod:`maskinv.train.config` re-exports :func:`apply_overrides`.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from maskinv.errors import ConfigError

from .config_schema import Origin, TrainConfig, coerce

__all__ = ["Overrides", "apply_overrides", "apply_overrides_traced", "override_items", "overrides_dict",
           "parse_override", "yaml_problem"]

#: ``key.sub=value`` text items, or a ``{"key.sub": value}`` mapping of typed values (or None: none).
Overrides = Union[Sequence[str], Mapping[str, Any], None]


def yaml_problem(exc: Exception, col_offset: int = 0) -> str:
    """One line: 'at line L, column C: problem (context)'; PyYAML's own text spans several lines."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    if context:
        problem += f" ({' '.join(str(context).split())})"
    if mark is None:
        return f": {problem}"
    col = mark.column + 1 + (col_offset if mark.line == 0 else 0)
    line = f"line {mark.line + 1}, " if col_offset == 0 or mark.line > 0 else ""
    return f" at {line}column {col}: {problem}"


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ConfigError(f"{where}: bad key")
    return key.strip()


def parse_override(item: str) -> tuple[str, Any]:
    """``"key.sub=value"`` -> ``("key.sub", value read as YAML)``; an empty value is None."""
    import yaml

    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"command-line override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    key = _check_key(key, f"command-line override '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as exc:
        where = yaml_problem(exc, col_offset=item.index("=") + 1)
        raise ConfigError(f"command-line override '{item}': invalid YAML value{where}", key=key) from None
    return key, value


def override_items(overrides: Overrides) -> list[tuple[str, Any, str]]:
    """``(key, value, where)`` per override in order; ``where`` names it in error messages."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(k := _check_key(key, f"override {key!r}"), value, f"override {k}={value!r}")
                for key, value in overrides.items()]
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Sequence):
        raise ConfigError(f"overrides must be key.sub=value items or a mapping of keys to values, got {overrides!r}")
    return [(*parse_override(item), f"command-line override '{item}'") for item in overrides]


def overrides_dict(*parts: Overrides) -> dict[str, Any]:
    """Several overrides (text items, typed mappings) as one typed mapping with the same effect when
    applied: text is read once, and a key given again moves to the end (the last value wins, after
    every key it was given after)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value, _ in override_items(part):
            out.pop(key, None)
            out[key] = value
    return out


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) is Union:
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def apply_overrides_traced(data: dict | None, overrides: Overrides) -> tuple[dict, dict[str, str]]:
    """:func:`apply_overrides` plus, per key path it set, where that came from (for error messages)."""
    out = copy.deepcopy(data) if data else {}
    set_by: dict[str, str] = {}
    for key, value, where in override_items(overrides):
        parts = key.split(".")
        cls: Any = TrainConfig
        tp: Any = None
        node = out
        for i, p in enumerate(parts):
            path = ".".join(parts[: i + 1])
            if cls is not None:
                hints = typing.get_type_hints(cls)
                if p not in hints:
                    raise ConfigError(f"unknown config key '{path}' in {where}", key=path)
                tp = hints[p]
                cls = _unwrap(tp) if dataclasses.is_dataclass(_unwrap(tp)) else None
            else:
                tp = None  # inside a free-form mapping: any key, any value
            if i == len(parts) - 1:
                if tp is not None and cls is None:  # a typed field (a whole section is checked on build)
                    value = coerce(value, tp, key, Origin(None, {key: where}))
                node[p] = copy.deepcopy(value)
            else:
                nxt = node.get(p)
                if not isinstance(nxt, dict):  # absent or null section: start an empty mapping
                    nxt = {}
                    node[p] = nxt
                node = nxt
        for k in [k for k in set_by if k.startswith(key + ".")]:
            del set_by[k]  # replaced wholesale by this override
        set_by[key] = where
    return out, set_by


def apply_overrides(data: dict | None, overrides: Overrides) -> dict:
    """Apply overrides (``key.sub=value`` text items or a typed ``{"key.sub": value}`` mapping) to a
    nested config dict, returning a copy; values of typed fields are converted by the schema."""
    return apply_overrides_traced(data, overrides)[0]

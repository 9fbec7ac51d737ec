"""Old import paths of moved modules keep working for one release: each warns (DeprecationWarning
naming the new path, pointing at the importing line) and is the new module itself, so names,
monkeypatching and anything that stored a class path still resolve."""
from __future__ import annotations

import importlib
import sys

import pytest

MOVED = [  # old path, new path, a name the old path was used for
    ("maskinv.heads", "maskinv.train.heads", "get_head"),
    ("maskinv.distill", "maskinv.train.distill", "FrozenTeacher"),
    ("maskinv.train.adapt", "maskinv.adapt.pipeline", "adapt_model"),
    ("maskinv.train.adapt_select", "maskinv.adapt.select", "train_with_selection"),
]


def _fresh_import(old: str):
    sys.modules.pop(old, None)  # the alias runs (and warns) on first import only
    __import__(old)  # as an `import` statement here does (importlib.import_module adds its own frame)
    return sys.modules[old]


@pytest.mark.parametrize("old, new, name", MOVED)
def test_old_path_warns_and_is_the_new_module(old, new, name):
    fresh = importlib.import_module(new)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated .*import {new} instead") as rec:
        mod = _fresh_import(old)
    assert mod is fresh and getattr(mod, name) is getattr(fresh, name)
    assert [w.filename for w in rec] == [__file__]  # stacklevel: the line that imported the old path


@pytest.mark.parametrize("old, new, name", MOVED)
def test_from_import_of_the_old_path(old, new, name):
    parent, _, leaf = old.rpartition(".")
    sys.modules.pop(old, None)
    vars(importlib.import_module(parent)).pop(leaf, None)  # as in a process that never imported it
    with pytest.warns(DeprecationWarning, match=new):
        got = getattr(__import__(parent, fromlist=[leaf]), leaf)  # `from parent import leaf`
    assert got is importlib.import_module(new)


def test_old_adapt_path_still_gives_the_defaults():
    with pytest.warns(DeprecationWarning):
        old = _fresh_import("maskinv.train.adapt")
    from maskinv.adapt.config import ADAPT_DEFAULTS, adapt_config

    assert old.ADAPT_DEFAULTS is ADAPT_DEFAULTS and old.adapt_config is adapt_config

"""Shared pytest setup: small thread counts (2-core CI machine), deterministic torch."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest


# Whole modules that are slow by nature (a real browser; kill -9 of a serving process) and whose
# files other work owns: marked here so `make test-fast` (pytest -m "not slow") leaves them out.
SLOW_MODULES = ("test_serve_browser.py", "test_serve_durability.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _own_synth_cache(tmp_path_factory):
    """Generated SynthFaces go to a per-session cache: never the user's ~/.cache/maskinv, and
    never shared with another process writing the same dataset at the same time."""
    old = os.environ.get("MASKINV_CACHE")
    os.environ["MASKINV_CACHE"] = str(tmp_path_factory.mktemp("maskinv_cache"))
    yield
    if old is None:
        os.environ.pop("MASKINV_CACHE", None)
    else:
        os.environ["MASKINV_CACHE"] = old


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def one_thread():
    """Tiny nets on a shared 2-core machine run several times faster on one thread."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """One quick demo (``run_demo``, ``quick_settings(seed=3)``), run once per session and shared:
    tests/test_demo.py reads its outputs, tests/test_demo_checks.py moves a copy. Returns
    ``(folder, results document)``; a test that changes files works on a copy."""
    from maskinv.study import quick_settings, run_demo

    out = tmp_path_factory.mktemp("quick_demo") / "demo"
    return out, run_demo(out, quick_settings(seed=3), log=lambda msg: None)

"""Import-time behaviour: importing the package and its subpackages is light and side-effect free."""
from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, threading, maskinv, maskinv.data, maskinv.evaluate, maskinv.train, maskinv.masks\n"
        "heavy = [m for m in ('torch', 'cv2', 'matplotlib') if m in sys.modules]\n"
        "print(heavy, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] 1", out


def test_lazy_exports_resolve_and_unknown_names_fail():
    import pytest

    import maskinv
    import maskinv.data
    import maskinv.train

    assert callable(maskinv.data.load_bin) and callable(maskinv.train.run_training) and callable(maskinv.verify)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        maskinv.data.nope
    with pytest.raises(AttributeError):
        maskinv.nope


def test_lazy_exports_helper():
    import pytest

    from maskinv.utils.lazy import lazy_exports

    names, getattr_ = lazy_exports("maskinv.utils", {"naming": "safe_name", "seeds": "derive_seed step_seed"})
    assert names == ["derive_seed", "safe_name", "step_seed"]
    from maskinv.utils.seeds import derive_seed

    assert getattr_("derive_seed") is derive_seed
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr_("nope")
    with pytest.raises(ValueError, match="'x' exported by both .a and .b"):
        lazy_exports("p", {"a": "x y", "b": "x"})


def test_every_package_export_resolves():
    """Each name in a lazy package's __all__ imports from the submodule the package names."""
    import importlib

    for pkg in ("maskinv.data", "maskinv.evaluate", "maskinv.study", "maskinv.train", "maskinv.study.real"):
        m = importlib.import_module(pkg)
        assert m.__all__ == sorted(m.__all__) and m.__all__
        for name in m.__all__:
            assert getattr(m, name) is not None, (pkg, name)

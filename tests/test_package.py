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

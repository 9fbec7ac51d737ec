"""Deprecated alias of :mod:`maskinv.train.distill` (moved there); it warns and goes away in the next release.
It is that module object itself, so every name, and monkeypatching, behaves as before."""
import sys
import warnings

import maskinv.train.distill as _new

warnings.warn("maskinv.distill is deprecated and will be removed in the next release: "
              "import maskinv.train.distill instead", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new

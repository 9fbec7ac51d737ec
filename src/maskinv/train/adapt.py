"""Deprecated alias of :mod:`maskinv.adapt.pipeline` (moved there); it warns and goes away in the next release.
It is that module object itself, so every name, and monkeypatching, behaves as before."""
import sys
import warnings

import maskinv.adapt.pipeline as _new

warnings.warn("maskinv.train.adapt is deprecated and will be removed in the next release: "
              "import maskinv.adapt.pipeline instead", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new

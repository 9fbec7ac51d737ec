"""The MaskInv study on SynthFaces (``maskinv demo``) as a library.

- :mod:`.settings` — the study's knobs (``demo.yaml`` package data, ``--set``, ``--quick``, ``--minutes``);
- :mod:`.recipe` — which runs, in which stages, each run's trainer config (recipe + overrides);
- :mod:`.runs` — training through :func:`maskinv.train.run_training`, independent runs in
  spawned processes, finished runs reused;
- :mod:`.pipeline` — :func:`run_demo`: data, training, evaluation (:func:`maskinv.evaluate.evaluate_models`);
- :mod:`.report` — the Markdown table and report, the mask gallery;
- :mod:`.select` — choosing λ on validation pairs (``maskinv demo --select-lambda``);
- :mod:`.seeds` — the multi-seed study and its summary (``maskinv study``).

Names are imported lazily (no torch on ``import maskinv.study``).
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_getattr

_EXPORTS = {
    "DemoSettings": "settings",
    "default_settings": "settings",
    "quick_settings": "settings",
    "apply_settings_overrides": "settings",
    "study_plan": "recipe",
    "stages": "recipe",
    "train_config": "recipe",
    "run_demo": "pipeline",
    "select_lambda": "select",
    "run_study": "seeds",
    "results_table": "report",
    "model_title": "report",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

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

from maskinv.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "settings": "DemoSettings default_settings quick_settings apply_settings_overrides",
    "recipe": "study_plan stages train_config",
    "pipeline": "run_demo",
    "select": "select_lambda",
    "seeds": "run_study",
    "report": "results_table model_title",
})

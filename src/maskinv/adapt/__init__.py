"""``maskinv adapt``: make a pretrained face model mask-invariant from unlabeled photos, as an
application of the trainer (:mod:`maskinv.train`), beside the study.

- :mod:`.config` — the shipped defaults (``adapt.yaml``, package data: the one copy of the values),
  the teacher's facts, the run config (:func:`adapt_config`);
- :mod:`.pipeline` — photos -> detected/aligned RecordIO (:func:`prepare_images`), the run
  (:func:`adapt_model`);
- :mod:`.select` — validation while adapting: the best step within a U-U tolerance, early stop.

Names are imported lazily (no torch on ``import maskinv.adapt``).
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_getattr

_EXPORTS = {
    "ADAPT_DEFAULTS": "config",
    "adapt_config": "config",
    "teacher_info": "config",
    "prepare_images": "pipeline",
    "adapt_model": "pipeline",
    "train_with_selection": "select",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""MaskInv on a real recogniser (SFace): ``maskinv study-real`` (issue 20).

- :mod:`.data` — committed splits (``benchmarks/splits``), aligned crops (MTCNN, cached), renderer-v1 masks;
- :mod:`.features` — the frozen trunk's features, computed once per (image, mask draw), fp16 on disk;
- :mod:`.tails` — training SFace's last blocks + FC per row (Aug, MaskInv-LG/HG, MaskInv-adapt);
- :mod:`.core` — the study context (recogniser, trunk, data, features, resumable rows);
- :mod:`.scoring` — LFW U-U/M-U/M-M and RMFD probe/reference metrics, identity-clustered paired intervals;
- :mod:`.run` — :func:`run_real_study`; :mod:`.select` — :func:`run_real_select` (validation only);
- :mod:`.report` — report.md, goals, ROC/DET plots.
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "run": "run_real_study",
    "select": "run_real_select",
    "settings": "RealSettings apply_overrides",
})

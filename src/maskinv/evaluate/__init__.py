"""Evaluation: verification metrics, masked protocols (uu/mu/mm), N models x M benchmarks
(:func:`evaluate_models`), reports and plots.

Names are imported lazily so ``import maskinv.evaluate`` stays light (no torch, no matplotlib).
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "metrics": "verification_metrics roc_curve fold_bounds insightface_cosine_thresholds",
    "protocols": "embed_images pair_scores PROTOCOLS parse_protocols",
    "runner": "evaluate_bin score_benchmark ScoreOptions evaluate_models ModelSpec metrics_of",
    "benchmarks": "Benchmark load_benchmark FolderBenchSpec register_loader",
    "callback": "VerificationCallback",
    "reports": "write_report markdown_table",
    "plots": "plot_roc_det plot_score_histograms",
})

"""Evaluation: verification metrics, masked protocols (uu/mu/mm), N models x M benchmarks
(:func:`evaluate_models`), reports and plots.

Names are imported lazily so ``import maskinv.evaluate`` stays light (no torch, no matplotlib).
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_getattr

_EXPORTS = {
    "verification_metrics": "metrics",
    "roc_curve": "metrics",
    "fold_bounds": "metrics",
    "insightface_cosine_thresholds": "metrics",
    "embed_images": "protocols",
    "evaluate_bin": "protocols",
    "pair_scores": "protocols",
    "PROTOCOLS": "protocols",
    "parse_protocols": "protocols",
    "evaluate_models": "runner",
    "ModelSpec": "runner",
    "metrics_of": "runner",
    "Benchmark": "benchmarks",
    "load_benchmark": "benchmarks",
    "FolderBenchSpec": "benchmarks",
    "register_loader": "benchmarks",
    "VerificationCallback": "callback",
    "write_report": "reports",
    "markdown_table": "reports",
    "plot_roc_det": "plots",
    "plot_score_histograms": "plots",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

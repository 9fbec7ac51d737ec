"""ROC / DET curves and genuine-impostor score histograms (matplotlib, Agg, atomic PNG writes).

The object API (``Figure`` + ``FigureCanvasAgg``) is used instead of ``pyplot`` so no global
backend or figure state is touched. DET curves use normal-deviate (probit) axes, as in
ISO/IEC 19795-1 and NIST reports.
"""
from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any, Mapping

import numpy as np

from maskinv.masks.protocols import title

from .metrics import roc_curve

_PROBIT = np.vectorize(NormalDist().inv_cdf, otypes=[float])
_DET_TICKS = (1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)


def probit(p: np.ndarray) -> np.ndarray:
    """Standard normal quantile (normal deviate) of probabilities in (0, 1)."""
    return _PROBIT(np.asarray(p, dtype=np.float64))


def _pairs(item: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, Mapping):
        return np.asarray(item["scores"]), np.asarray(item["genuine"]).astype(bool)
    scores, genuine = item
    return np.asarray(scores), np.asarray(genuine).astype(bool)


def decimate_curve(fmr: np.ndarray, fnmr: np.ndarray, points: int = 400) -> np.ndarray:
    """Indices of curve points evenly spread on log FMR and log FNMR (tails kept), sorted."""
    if fmr.shape[0] <= 2 * points:
        return np.arange(fmr.shape[0])
    targets = np.logspace(-7, 0, points)
    a = np.searchsorted(-fmr, -targets)  # fmr is non-increasing
    b = np.searchsorted(fnmr, targets)  # fnmr is non-decreasing
    c = np.searchsorted(-fmr, -(1 - targets))
    d = np.searchsorted(fnmr, 1 - targets)
    idx = np.concatenate([a, b, c, d, [0, fmr.shape[0] - 1]])
    return np.unique(np.clip(idx, 0, fmr.shape[0] - 1))


def _label(name: str) -> str:
    return title(name)


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from maskinv.utils.io import atomic_write_with

    FigureCanvasAgg(fig)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    return Path(path)


def plot_roc_det(curves: Mapping[str, Any], path: str | Path, title: str | None = None, dpi: int = 110) -> Path:
    """ROC (TAR vs FMR, log x) and DET (FNMR vs FMR on probit axes), one line per entry.

    ``curves`` maps a label (protocol name such as ``"mu"``, shown as ``M-U``) to a dict with
    ``scores``/``genuine`` (e.g. an :func:`evaluate_bin` entry) or a ``(scores, genuine)`` pair.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8))
    ax_roc, ax_det = fig.subplots(1, 2)
    floor = 1.0
    for name, item in curves.items():
        scores, genuine = _pairs(item)
        c = roc_curve(scores, genuine)
        idx = decimate_curve(c["fmr"], c["fnmr"])
        fmr, fnmr = c["fmr"][idx], c["fnmr"][idx]
        n_imp, n_gen = int((~genuine).sum()), int(genuine.sum())
        floor = min(floor, 0.5 / max(n_imp, n_gen))
        eer = item.get("eer") if isinstance(item, Mapping) else None
        label = _label(name) + (f" (EER {100 * eer:.2f}%)" if eer is not None else "")
        pos = fmr > 0
        (line,) = ax_roc.plot(fmr[pos], 1 - fnmr[pos], label=label, lw=1.4)
        # zero rates have no normal deviate: draw them at the axis floor
        lo = max(floor, 1e-6)
        ax_det.plot(probit(np.clip(fmr, lo, 1 - lo)), probit(np.clip(fnmr, lo, 1 - lo)), color=line.get_color(), label=label, lw=1.4)
    lo = max(floor, 1e-6)
    ax_roc.set_xscale("log")
    ax_roc.set_xlim(lo, 1)
    ax_roc.set_ylim(0, 1.01)
    ax_roc.set_xlabel("FMR (false match rate)")
    ax_roc.set_ylabel("TAR = 1 - FNMR")
    ax_roc.set_title("ROC")
    ax_roc.grid(True, which="both", alpha=0.3)
    ax_roc.legend(loc="lower right", fontsize=8)
    ticks = [t for t in _DET_TICKS if t >= lo * 0.999]
    tpos = probit(np.array(ticks))
    tlab = [f"{100 * t:g}%" for t in ticks]
    lim = (float(probit(np.array([lo]))[0]), float(probit(np.array([0.99]))[0]))
    ax_det.plot(lim, lim, color="grey", lw=0.8, ls="--")  # FMR = FNMR: the EER line
    ax_det.set_xticks(tpos, tlab)
    ax_det.set_yticks(tpos, tlab)
    ax_det.set_xlim(*lim)
    ax_det.set_ylim(*lim)
    ax_det.set_xlabel("FMR (normal deviate scale)")
    ax_det.set_ylabel("FNMR (normal deviate scale)")
    ax_det.set_title("DET")
    ax_det.grid(True, alpha=0.3)
    ax_det.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def plot_score_histograms(
    score_sets: Mapping[str, Any], path: str | Path, title: str | None = None, bins: int = 60, dpi: int = 110
) -> Path:
    """Genuine vs impostor score histograms, one panel per entry (protocol), shared x range.

    Entries as in :func:`plot_roc_det`; when an entry has ``eer_threshold`` it is drawn.
    """
    from matplotlib.figure import Figure

    items = [(name, *_pairs(item), item if isinstance(item, Mapping) else {}) for name, item in score_sets.items()]
    if not items:
        raise ValueError("no score sets to plot")
    lo = min(float(np.min(s)) for _, s, _, _ in items)
    hi = max(float(np.max(s)) for _, s, _, _ in items)
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    fig = Figure(figsize=(4.2 * len(items), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(items), sharey=False))
    for ax, (name, s, g, meta) in zip(axes, items):
        ax.hist(s[~g], bins=edges, density=True, alpha=0.55, color="tab:red", label=f"impostor ({int((~g).sum())})")
        ax.hist(s[g], bins=edges, density=True, alpha=0.55, color="tab:blue", label=f"genuine ({int(g.sum())})")
        thr = meta.get("eer_threshold")
        if thr is not None and math.isfinite(thr):
            ax.axvline(thr, color="k", ls="--", lw=0.9, label="EER threshold")
        sub = _label(name)
        if meta.get("accuracy_mean") is not None:
            sub += f"  acc {100 * meta['accuracy_mean']:.2f}%"
        if meta.get("eer") is not None:
            sub += f"  EER {100 * meta['eer']:.2f}%"
        ax.set_title(sub, fontsize=10)
        ax.set_xlabel("score (cosine similarity)")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("density")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)

"""Evaluation reports: ``results.json``, a paper-style Markdown table, plots and score files.

A *results document* (what :func:`write_report` takes) is a dict::

    {
      "format": "maskinv-eval-results", "format_version": 1,
      "created": "2026-...Z",
      "settings": {"protocols": [...], "seed": 0, "flip": true, "batch_size": 256,
                   "mask_kind": "random", "precision": "auto", "folds": 10, ...},
      "versions": {"maskinv": ..., "python": ..., "numpy": ..., "torch": ...},
      "models": {label: {"path": ..., "sha256": ..., "arch": {...}}},
      "benchmarks": {label: {"path": ..., "sha256": ..., "num_pairs": ..., "image_size": [h, w]}},
      "results": [{"model": label, "benchmark": label, "protocol": "uu",
                   "metrics": {verification_metrics keys..., "scores": array, "genuine": array}}],
    }

``scores``/``genuine`` arrays are written to ``scores/<model>__<bench>__<protocol>.csv``
(header ``score,genuine``, readable by ``maskinv metrics``) and left out of ``results.json``.
"""
from __future__ import annotations

import csv
import io
import math
import platform
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from maskinv.masks.protocols import legend
from maskinv.masks.protocols import title as protocol_title
from maskinv.utils.io import atomic_write_json, atomic_write_text

FORMAT = "maskinv-eval-results"
FORMAT_VERSION = 1
_ARRAY_KEYS = ("scores", "genuine")


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    from maskinv import __version__

    out = {"maskinv": __version__, "python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def unique_labels(paths: Sequence[str | Path]) -> list[str]:
    """File stems as labels, made unique (``name``, ``name-2``, ...) and filename-safe."""
    labels: list[str] = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9_.+-]+", "_", Path(p).stem) or "item"
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def new_results(settings: Mapping[str, Any]) -> dict[str, Any]:
    """An empty results document with settings, versions and a UTC time stamp."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": dict(settings),
        "versions": versions(),
        "models": {},
        "benchmarks": {},
        "results": [],
    }


def _jsonable(obj: Any) -> Any:
    """Metric dicts -> JSON: float dict keys as ``'0.001'``, NaN/inf never written (None)."""
    if isinstance(obj, Mapping):
        return {(f"{k:g}" if isinstance(k, float) else str(k)): _jsonable(v) for k, v in obj.items() if k not in _ARRAY_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def results_json(results: Mapping[str, Any]) -> dict[str, Any]:
    """The results document without score arrays, ready for ``json.dumps``."""
    return _jsonable(results)


def _fmt(v: Any, pct: bool = True, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


_TABLES = (
    ("accuracy_mean", "Accuracy (%, 10-fold mean ± std)"),
    ("eer", "EER (%)"),
    ("fmr100", "FMR100 (%: FNMR at FMR ≤ 1%)"),
    ("fmr1000", "FMR1000 (%: FNMR at FMR ≤ 0.1%)"),
    ("tar@1e-3", "TAR at FAR 1e-3 (%)"),
)


def markdown_table(results: Mapping[str, Any], metrics: Iterable[str] | None = None) -> str:
    """Paper-style tables: rows = models, columns = benchmark × protocol, one table per metric.

    ``metrics`` picks among ``accuracy_mean``, ``eer``, ``fmr100``, ``fmr1000``, ``tar@1e-3``
    (default all). Undefined values print as ``n/a``.
    """
    wanted = list(metrics) if metrics is not None else [k for k, _ in _TABLES]
    entries = results.get("results", [])
    models = list(dict.fromkeys(e["model"] for e in entries))
    cols = list(dict.fromkeys((e["benchmark"], e["protocol"]) for e in entries))
    by = {(e["model"], e["benchmark"], e["protocol"]): e["metrics"] for e in entries}
    s = results.get("settings", {})
    lines = ["# Verification results", ""]
    if s:
        lines.append(
            "Settings: " + ", ".join(f"{k} `{s[k]}`" for k in ("protocols", "seed", "flip", "mask_kind", "precision_used", "folds") if k in s)
        )
        lines.append("")
    lines.append(legend() + ".")
    lines.append("")
    for key, title in _TABLES:
        if key not in wanted:
            continue
        rows = []
        for m in models:
            cells = []
            for b, p in cols:
                r = by.get((m, b, p))
                if r is None:
                    cells.append("")
                elif key == "accuracy_mean":
                    cells.append("n/a" if r.get("accuracy_mean") is None else f"{_fmt(r['accuracy_mean'])} ± {_fmt(r.get('accuracy_std'))}")
                elif key == "tar@1e-3":
                    tar = r.get("tar_at_far", {})
                    cells.append(_fmt(tar.get(1e-3, tar.get("0.001"))))
                else:
                    cells.append(_fmt(r.get(key)))
            rows.append((m, cells))
        if rows and all(c in ("n/a", "") for _, cells in rows for c in cells):
            # e.g. FMR1000 on a 6,000-pair set: say so once instead of a table of n/a
            lines += [f"{title}: undefined for every entry (see `undefined` in results.json).", ""]
            continue
        lines += [f"## {title}", ""]
        lines.append("| model | " + " | ".join(f"{b} {protocol_title(p)}" for b, p in cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        lines += [f"| {m} | " + " | ".join(cells) + " |" for m, cells in rows]
        lines.append("")
    return "\n".join(lines)


def scores_csv(scores: np.ndarray, genuine: np.ndarray) -> str:
    """``score,genuine`` CSV text (repr floats: re-reading gives the same numbers)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["score", "genuine"])
    for s, g in zip(np.asarray(scores, dtype=np.float64).tolist(), np.asarray(genuine).astype(bool).tolist()):
        w.writerow([repr(s), int(g)])
    return buf.getvalue()


def write_report(out_dir: str | Path, results: Mapping[str, Any], *, plots: bool = True, scores: bool = True) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, per model×benchmark ROC/DET and histogram PNGs
    and per-protocol score CSVs into ``out_dir`` (atomically). Returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"json": out / "results.json", "markdown": out / "results.md", "plots": [], "scores": []}
    atomic_write_json(written["json"], results_json(results))
    atomic_write_text(written["markdown"], markdown_table(results) + "\n")
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in results.get("results", []):
        groups.setdefault((e["model"], e["benchmark"]), {})[e["protocol"]] = e["metrics"]
    for (model, bench), protos in groups.items():
        with_scores = {p: m for p, m in protos.items() if "scores" in m and "genuine" in m}
        if not with_scores:
            continue
        if scores:
            for p, m in with_scores.items():
                path = out / "scores" / f"{model}__{bench}__{p}.csv"
                atomic_write_text(path, scores_csv(m["scores"], m["genuine"]))
                written["scores"].append(path)
        if plots:
            from .plots import plot_roc_det, plot_score_histograms

            title = f"{model} on {bench}"
            written["plots"].append(plot_roc_det(with_scores, out / f"{model}__{bench}__roc_det.png", title=title))
            written["plots"].append(plot_score_histograms(with_scores, out / f"{model}__{bench}__hist.png", title=title))
    return written

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
Optional keys: ``"not_scored"`` (entries ``{model, benchmark, protocol, reason}``) and, in the
written file, ``"outputs"``: the files written beside it (relative paths). A re-run into the
same folder removes the previous run's outputs that this run does not write again, so the
folder holds exactly one run's report; nothing else in the folder is touched.
"""
from __future__ import annotations

import csv
import io
import json
import math
import platform
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from maskinv.errors import ConfigError
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
    """Unique, meaningful, filename-safe labels of files (:func:`maskinv.evaluate.model_specs.path_labels`:
    the stem, the folder for generic stems such as ``backbone``, parent folders on collisions)."""
    from .model_specs import path_labels

    return path_labels(paths)


def _safe(text: str) -> str:
    """A label as a file-name component (labels given by callers may hold any character)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "item"


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
    ("tar@5e-4", "TAR at FAR 1:2000 (%)"),
)
#: Protocols beyond uu/mu/mm that a report may hold, and what they mean.
_EXTRA_PROTOCOLS = {"probe_ref": "every probe-list image against every other image of the folder (all against all)"}


def _measured(r: Mapping[str, Any], far: float) -> bool:
    tar = r.get("tar_at_far") or {}
    return far in tar or f"{far:g}" in tar


def _tar(r: Mapping[str, Any], far: float) -> Any:
    tar = r.get("tar_at_far") or {}
    return tar.get(far, tar.get(f"{far:g}"))


def markdown_table(results: Mapping[str, Any], metrics: Iterable[str] | None = None) -> str:
    """Paper-style tables: rows = models, columns = benchmark × protocol, one table per metric.

    ``metrics`` picks among ``accuracy_mean``, ``eer``, ``fmr100``, ``fmr1000``, ``tar@1e-3``,
    ``tar@5e-4`` (default all; a TAR table only where some entry measured that FAR).
    Undefined values print as ``n/a``.
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
    extra = [p for p in dict.fromkeys(p for _, p in cols) if p in _EXTRA_PROTOCOLS]
    lines.append("; ".join([legend()] + [f"{p}: {_EXTRA_PROTOCOLS[p]}" for p in extra]) + ".")
    lines.append("")
    for key, title in _TABLES:
        if key not in wanted:
            continue
        if key.startswith("tar@") and not any(_measured(e["metrics"], float(key[4:])) for e in entries):
            continue  # this FAR was not measured (e.g. documents written before it was added)
        rows = []
        for m in models:
            cells = []
            for b, p in cols:
                r = by.get((m, b, p))
                if r is None:
                    cells.append("")
                elif key == "accuracy_mean":
                    cells.append("n/a" if r.get("accuracy_mean") is None else f"{_fmt(r['accuracy_mean'])} ± {_fmt(r.get('accuracy_std'))}")
                elif key.startswith("tar@"):
                    cells.append(_fmt(_tar(r, float(key[4:]))))
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
    for e in results.get("not_scored") or []:
        lines.append(f"Not scored: {e['model']} on {e['benchmark']} {protocol_title(e['protocol'])}: {e['reason']}.")
    return "\n".join(lines)


def scores_csv(scores: np.ndarray, genuine: np.ndarray) -> str:
    """``score,genuine`` CSV text (repr floats: re-reading gives the same numbers)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["score", "genuine"])
    for s, g in zip(np.asarray(scores, dtype=np.float64).tolist(), np.asarray(genuine).astype(bool).tolist()):
        w.writerow([repr(s), int(g)])
    return buf.getvalue()


def _previous_outputs(out: Path) -> set[str]:
    """Relative paths of the report files a previous run wrote into ``out``: its ``outputs``
    list, or (documents written before that list existed) the names its results imply. Only
    CSV/PNG files inside ``out`` qualify; nothing is read from a file that is not ours."""
    try:
        prev = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(prev, dict) or prev.get("format") != FORMAT:
        return set()
    names = prev.get("outputs")
    if not isinstance(names, list):
        names = []
        for e in prev.get("results") or []:
            try:
                m, b, p = _safe(e["model"]), _safe(e["benchmark"]), _safe(e["protocol"])
            except (KeyError, TypeError):
                continue
            names += [f"scores/{m}__{b}__{p}.csv", f"{m}__{b}__roc_det.png", f"{m}__{b}__hist.png"]
    root = out.resolve()
    keep = set()
    for n in names:
        if not isinstance(n, str) or Path(n).suffix not in (".csv", ".png"):
            continue
        q = (out / n).resolve()
        if q.parent in (root, root / "scores") and q.is_file():
            keep.add(Path(n).as_posix())
    return keep


def write_report(out_dir: str | Path, results: Mapping[str, Any], *, plots: bool = True, scores: bool = True) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, per model×benchmark ROC/DET and histogram PNGs
    and per-protocol score CSVs into ``out_dir`` (each file atomically), then remove the files
    of a previous report there that this one does not write again. Returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_outputs(out)
    written: dict[str, Any] = {"json": out / "results.json", "markdown": out / "results.md", "plots": [], "scores": []}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in results.get("results", []):
        groups.setdefault((e["model"], e["benchmark"]), {})[e["protocol"]] = e["metrics"]
    names: dict[str, tuple] = {}

    def target(rel: str, key: tuple) -> Path:
        if names.setdefault(rel, key) != key:
            raise ConfigError(f"labels {names[rel]} and {key} give the same report file {rel}; use other labels")
        return out / rel

    for (model, bench), protos in groups.items():
        with_scores = {p: m for p, m in protos.items() if "scores" in m and "genuine" in m}
        if not with_scores:
            continue
        stem = f"{_safe(model)}__{_safe(bench)}"
        if scores:
            for p, m in with_scores.items():
                path = target(f"scores/{stem}__{_safe(p)}.csv", (model, bench, p))
                atomic_write_text(path, scores_csv(m["scores"], m["genuine"]))
                written["scores"].append(path)
        if plots:
            from .plots import plot_roc_det, plot_score_histograms

            title = f"{model} on {bench}"
            roc, hist = target(f"{stem}__roc_det.png", (model, bench)), target(f"{stem}__hist.png", (model, bench, "hist"))
            written["plots"].append(plot_roc_det(with_scores, roc, title=title))
            written["plots"].append(plot_score_histograms(with_scores, hist, title=title))
    outputs = sorted(Path(p).relative_to(out).as_posix() for p in written["scores"] + written["plots"])
    atomic_write_text(written["markdown"], markdown_table(results) + "\n")
    atomic_write_json(written["json"], {**results_json(results), "outputs": outputs})
    # only now that the new report is complete: drop the previous run's files it did not rewrite
    for rel in sorted(previous - set(outputs)):
        (out / rel).unlink(missing_ok=True)
    if (out / "scores").is_dir() and not any((out / "scores").iterdir()):
        (out / "scores").rmdir()
    return written

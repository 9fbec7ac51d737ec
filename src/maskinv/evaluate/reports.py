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
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from maskinv.errors import ConfigError
from maskinv.masks.protocols import PROBE_REF, legend
from maskinv.utils.naming import safe_name
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
_EXTRA_PROTOCOLS = {PROBE_REF: "every probe-list image (e.g. really masked photos; no synthetic masks) against "
                                 "every reference image (the folder's other images): probes × references"}
#: The probe_ref table: verification operating points (no plain accuracy: with ~1 genuine per
#: 50 impostor comparisons "always no" is 98 % accurate).
_PROBE_REF_COLUMNS = (
    ("eer", "EER"),
    ("fnmr@0.01", "FNMR at FMR 1e-2"),
    ("fnmr@0.001", "FNMR at FMR 1e-3"),
    ("fnmr@0.0005", "FNMR at FMR 1:2000"),
)
_UNDEFINED_KEY = {"fmr100": "fmr100", "fmr1000": "fmr1000", "accuracy_mean": "accuracy_mean", "eer": "eer",
                  "fnmr@0.01": "fmr100", "fnmr@0.001": "fmr1000", "fnmr@0.0005": "tar_at_far[0.0005]"}


def _measured(r: Mapping[str, Any], far: float) -> bool:
    tar = r.get("tar_at_far") or {}
    return far in tar or f"{far:g}" in tar


def _tar(r: Mapping[str, Any], far: float) -> Any:
    tar = r.get("tar_at_far") or {}
    return tar.get(far, tar.get(f"{far:g}"))


def _fnmr_at(r: Mapping[str, Any], far: float) -> Any:
    if far == 1e-2 and "fmr100" in r:
        return r.get("fmr100")
    if far == 1e-3 and "fmr1000" in r:
        return r.get("fmr1000")
    t = _tar(r, far)
    return None if t is None else 1.0 - t


def _thr(r: Mapping[str, Any], far: float) -> Any:
    t = r.get("threshold_at_fmr") or {}
    return t.get(far, t.get(f"{far:g}"))


def _cell_value(r: Mapping[str, Any], key: str) -> Any:
    if key.startswith("fnmr@"):
        return _fnmr_at(r, float(key[5:]))
    if key.startswith("tar@"):
        return _tar(r, float(key[4:]))
    return r.get(key)


def _why(r: Mapping[str, Any], key: str) -> str | None:
    """The recorded reason of an undefined value (``undefined`` of the metrics)."""
    und = r.get("undefined") or {}
    k = _UNDEFINED_KEY.get(key)
    if key.startswith("tar@"):
        k = f"tar_at_far[{float(key[4:]):g}]"
    return und.get(k) if k else None


class _Notes:
    """Numbered reasons for ``n/a`` cells: the same reason gets one number per report."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str | None) -> str:
        if not reason:
            return "n/a"
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"n/a[^{self.reasons.index(reason) + 1}]"

    def lines(self) -> list[str]:
        return [f"[^{i + 1}]: {r}" for i, r in enumerate(self.reasons)]


def _data_lines(results: Mapping[str, Any]) -> list[str]:
    """What each benchmark scored: pairs or comparisons, and every image and pair dropped, why."""
    lines = []
    for b, meta in (results.get("benchmarks") or {}).items():
        if not isinstance(meta, Mapping):
            continue
        parts = []
        if meta.get("num_pairs"):
            parts.append(f"{meta['num_pairs']:,} pairs ({meta.get('num_genuine', 0):,} genuine, "
                         f"{meta.get('num_impostor', 0):,} impostor)")
        pr = meta.get(PROBE_REF)
        if isinstance(pr, Mapping):
            parts.append(f"probe_ref: {pr['num_probes']:,} probes × {pr['num_references']:,} references = "
                         f"{pr['num_comparisons']:,} comparisons ({pr['num_genuine']:,} genuine, "
                         f"{pr['num_impostor']:,} impostor)")
        dropped = meta.get("num_images_dropped")
        if dropped is not None:
            unread = meta.get("unreadable") or []
            bad = {u["image"] for u in unread if isinstance(u, Mapping)}
            noface = [k for k in meta.get("missed") or [] if k not in bad]
            txt = f"{dropped:,} images dropped"
            why = []
            if noface:
                how = "dropped" if meta.get("on_miss", "drop") == "drop" else f"{meta.get('on_miss')} crop used"
                why.append(f"{len(noface)} without a detected face ({how}: " + ", ".join(noface[:5])
                           + (", ..." if len(noface) > 5 else "") + ")")
            if unread:
                why.append(f"{len(unread)} unreadable (" + "; ".join(f"{u['image']}: {u['reason']}" for u in unread[:5])
                           + ("; ..." if len(unread) > 5 else "") + ")")
            if why:
                txt += ": " + "; ".join(why)
            if meta.get("num_pairs_dropped"):
                txt += f"; {meta['num_pairs_dropped']:,} of {meta.get('num_pair_lines', 0):,} pairs dropped with them"
            parts.append(txt)
        if meta.get("num_resized"):
            parts.append(f"{meta['num_resized']:,} images resized to {'x'.join(map(str, meta.get('image_size', [])))}")
        if parts:
            lines.append(f"- **{b}**: " + "; ".join(parts) + ".")
    return lines


def markdown_table(results: Mapping[str, Any], metrics: Iterable[str] | None = None) -> str:
    """The report: data (pairs, comparisons, drops and why), then the probe_ref operating points
    (EER, FNMR at FMR 1e-2 / 1e-3 / 1:2000) when a probe list was given, then paper-style tables
    (rows = models, columns = benchmark × protocol, one table per metric), the thresholds, the
    reasons of every ``n/a`` (footnotes) and the bootstrap comparisons when there are any.

    ``metrics`` picks among ``accuracy_mean``, ``eer``, ``fmr100``, ``fmr1000``, ``tar@1e-3``,
    ``tar@5e-4`` (default all; a TAR table only where some entry measured that FAR).
    """
    wanted = list(metrics) if metrics is not None else [k for k, _ in _TABLES]
    entries = results.get("results", [])
    models = list(dict.fromkeys(e["model"] for e in entries))
    cols = list(dict.fromkeys((e["benchmark"], e["protocol"]) for e in entries))
    pair_cols = [c for c in cols if c[1] not in _EXTRA_PROTOCOLS]
    pr_cols = [c for c in cols if c[1] == PROBE_REF]
    by = {(e["model"], e["benchmark"], e["protocol"]): e["metrics"] for e in entries}
    s = results.get("settings", {})
    notes = _Notes()
    lines = ["# Verification results", ""]
    if s:
        lines.append(
            "Settings: " + ", ".join(f"{k} `{s[k]}`" for k in ("protocols", "seed", "flip", "mask_kind", "precision_used", "folds") if k in s)
        )
        lines.append("")
    extra = [p for p in dict.fromkeys(p for _, p in cols) if p in _EXTRA_PROTOCOLS]
    lines.append("; ".join([legend()] + [f"{p}: {_EXTRA_PROTOCOLS[p]}" for p in extra]) + ".")
    lines.append("")
    data = _data_lines(results)
    if data:
        lines += ["## Data", ""] + data + [""]
    for b, p in pr_cols:
        lines += [f"## {b} probe_ref: probes against references (%)", ""]
        lines.append("| model | " + " | ".join(t for _, t in _PROBE_REF_COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(_PROBE_REF_COLUMNS))
        for m in models:
            r = by.get((m, b, p))
            if r is None:
                continue
            cells = [_fmt(v) if (v := _cell_value(r, k)) is not None else notes.mark(_why(r, k)) for k, _ in _PROBE_REF_COLUMNS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, title in _TABLES:
        if key not in wanted or not pair_cols:
            continue
        if key.startswith("tar@") and not any(_measured(by[(m, b, p)], float(key[4:]))
                                             for m in models for b, p in pair_cols if (m, b, p) in by):
            continue  # this FAR was not measured (e.g. documents written before it was added)
        rows = []
        for m in models:
            cells = []
            for b, p in pair_cols:
                r = by.get((m, b, p))
                if r is None:
                    cells.append("")
                elif key == "accuracy_mean":
                    cells.append(notes.mark(_why(r, key)) if r.get("accuracy_mean") is None
                                 else f"{_fmt(r['accuracy_mean'])} ± {_fmt(r.get('accuracy_std'))}")
                else:
                    v = _cell_value(r, key)
                    cells.append(_fmt(v) if v is not None else notes.mark(_why(r, key)))
            rows.append((m, cells))
        if rows and all(c.startswith("n/a") or c == "" for _, cells in rows for c in cells):
            # e.g. FMR1000 on a 6,000-pair set: say so once instead of a table of n/a
            reasons = sorted({w for m in models for b, p in pair_cols if (m, b, p) in by
                              for w in [_why(by[(m, b, p)], key)] if w})
            lines += [f"{title}: undefined for every entry" + (f" ({'; '.join(reasons)})" if reasons else "") + ".", ""]
            continue
        lines += [f"## {title}", ""]
        lines.append("| model | " + " | ".join(f"{b} {protocol_title(p)}" for b, p in pair_cols) + " |")
        lines.append("|---|" + "---:|" * len(pair_cols))
        lines += [f"| {m} | " + " | ".join(cells) + " |" for m, cells in rows]
        lines.append("")
    thr_rows = []
    for m in models:
        for b, p in cols:
            r = by.get((m, b, p))
            if r is None or r.get("eer_threshold") is None:
                continue
            cells = [f"{r['eer_threshold']:.4f}"]
            for far in (1e-2, 1e-3):
                t = _thr(r, far)
                cells.append(f"{t:.4f}" if t is not None else notes.mark(_why(r, "fmr100" if far == 1e-2 else "fmr1000")))
            thr_rows.append(f"| {m} | {b} {protocol_title(p)} | " + " | ".join(cells) + " |")
    if thr_rows:
        lines += ["## Thresholds (cosine; accept iff score >= threshold)", "",
                  "| model | benchmark | at EER | at FMR 1e-2 | at FMR 1e-3 |", "|---|---|---:|---:|---:|"]
        lines += thr_rows + [""]
    for e in results.get("not_scored") or []:
        lines.append(f"Not scored: {e['model']} on {e['benchmark']} {protocol_title(e['protocol'])}: {e['reason']}.")
    comps = results.get("comparisons")
    if comps:
        from .bootstrap import render_comparisons_markdown

        lines += ["", "## Paired comparisons (B − A, 95 % paired-bootstrap intervals)", "",
                  render_comparisons_markdown(comps).rstrip("\n"), ""]
    if notes.reasons:
        lines += ["", *notes.lines()]
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
                m, b, p = safe_name(e["model"]), safe_name(e["benchmark"]), safe_name(e["protocol"])
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
        stem = f"{safe_name(model)}__{safe_name(bench)}"
        if scores:
            for p, m in with_scores.items():
                path = target(f"scores/{stem}__{safe_name(p)}.csv", (model, bench, p))
                atomic_write_text(path, scores_csv(m["scores"], m["genuine"]))
                written["scores"].append(path)
        if plots:
            from .plots import plot_roc_det, plot_score_histograms

            title = f"{model} on {bench}"
            roc, hist = target(f"{stem}__roc_det.png", (model, bench)), target(f"{stem}__hist.png", (model, bench, "hist"))
            written["plots"].append(plot_roc_det(with_scores, roc, title=title))
            written["plots"].append(plot_score_histograms(with_scores, hist, title=title))
    if plots:
        from .plots import plot_roc_det

        by_bench: dict[str, dict[str, Any]] = {}
        for (model, bench), protos in groups.items():
            for p, m in protos.items():
                if "scores" in m and "genuine" in m:
                    by_bench.setdefault(bench, {})[f"{model} {protocol_title(p)}"] = m
        for bench, curves in by_bench.items():
            if len({(m, b) for (m, b) in groups if b == bench}) < 2:
                continue  # one model: its own ROC/DET already shows it
            path = target(f"{safe_name(bench)}__all_models_roc_det.png", (bench, "all models"))
            written["plots"].append(plot_roc_det(curves, path, title=f"{bench}: all models"))
    outputs = sorted(Path(p).relative_to(out).as_posix() for p in written["scores"] + written["plots"])
    atomic_write_text(written["markdown"], markdown_table(results) + "\n")
    atomic_write_json(written["json"], {**results_json(results), "outputs": outputs})
    # only now that the new report is complete: drop the previous run's files it did not rewrite
    for rel in sorted(previous - set(outputs)):
        (out / rel).unlink(missing_ok=True)
    if (out / "scores").is_dir() and not any((out / "scores").iterdir()):
        (out / "scores").rmdir()
    return written

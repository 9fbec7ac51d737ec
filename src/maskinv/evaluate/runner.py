"""N models × M benchmarks × masked protocols -> one results document (``maskinv eval``, the study).

:func:`evaluate_models` is the library form of ``maskinv eval``: it loads each model once,
decodes and masks each benchmark once (every model scores the same masked bytes), scores every
(model, benchmark, protocol) and optionally writes the report (``results.json``, Markdown,
plots, score CSVs) with :func:`maskinv.evaluate.reports.write_report`.

Steps that later work adds go between scoring and writing, on the document: e.g. paired
comparisons between models read ``results[i]["metrics"]["scores"]`` of two models on the same
benchmark and protocol (same pairs, same order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from maskinv.errors import ConfigError
from maskinv.masks.protocols import PROTOCOLS, parse_protocols


@dataclass
class ModelSpec:
    """A model to evaluate: a file (``arch`` for raw ``.pth`` files without a sidecar) or an
    in-memory backbone (``module``; ``sha256`` then identifies it if known)."""

    label: str | None = None
    path: str | os.PathLike | None = None
    arch: str | None = None
    module: Any = None
    sha256: str | None = None


def _model_specs(models: Any) -> list[ModelSpec]:
    from .reports import unique_labels

    if isinstance(models, Mapping):
        items = [(label, m) for label, m in models.items()]
    else:
        items = [(None, m) for m in models]
    specs = []
    for label, m in items:
        if isinstance(m, ModelSpec):
            spec = ModelSpec(label or m.label, m.path, m.arch, m.module, m.sha256)
        elif isinstance(m, (str, os.PathLike)):
            spec = ModelSpec(label, m)
        elif hasattr(m, "parameters"):
            spec = ModelSpec(label, module=m)
        else:
            raise ConfigError(f"model {label or m!r}: expected a path, an nn.Module or a ModelSpec")
        if spec.path is None and spec.module is None:
            raise ConfigError(f"model {spec.label!r}: needs a path or a module")
        specs.append(spec)
    if not specs:
        raise ConfigError("evaluate_models: no models given")
    # unlabelled ones are named after their file stem, made unique
    unnamed = [s for s in specs if s.label is None]
    for spec, label in zip(unnamed, unique_labels([str(s.path) if s.path is not None else "model" for s in unnamed])):
        spec.label = label
    if len({s.label for s in specs}) != len(specs):
        raise ConfigError(f"evaluate_models: model labels must be unique, got {[s.label for s in specs]}")
    return specs


def _load(spec: ModelSpec, device: Any) -> tuple[Any, dict[str, Any]]:
    from maskinv.models import load_backbone, model_fingerprint

    if spec.module is not None:
        model = spec.module
        info = {"path": str(Path(spec.path).resolve()) if spec.path else None, "sha256": spec.sha256}
    else:
        model = load_backbone(spec.path, spec.arch)
        info = {"path": str(Path(spec.path).resolve()), "sha256": spec.sha256 or model_fingerprint(spec.path)}
    if device:
        model.to(device)
    info["arch"] = getattr(model, "arch", None)
    return model, info


def evaluate_models(
    models: Sequence[Any] | Mapping[str, Any],
    benchmarks: Sequence[Any] | Mapping[str, Any],
    protocols: str | Iterable[str] = PROTOCOLS,
    *,
    seed: int = 0,
    mask_kind: str = "random",
    flip: bool = True,
    batch_size: int = 256,
    precision: str = "auto",
    device: Any = None,
    folds: int = 10,
    exact: bool = False,
    out_dir: str | os.PathLike | None = None,
    plots: bool = True,
    scores: bool = True,
    log: Callable[[str], None] | None = None,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """Score every model on every benchmark under every protocol.

    Args:
        models: paths, ``nn.Module``\\ s or :class:`ModelSpec`\\ s (labels from file stems), or
            ``{label: any of these}``.
        benchmarks: anything :func:`maskinv.evaluate.benchmarks.load_benchmark` takes (a ``.bin``
            path, ``(images, issame)``, a ``Benchmark``), as a list or ``{label: source}``.
        protocols: subset of ``uu``, ``mu``, ``mm`` (``"uu,mu"`` or an iterable).
        seed, mask_kind: masks; image ``i``'s mask depends on ``(seed, i)`` only.
        flip, batch_size, precision, device: embedding options (:mod:`maskinv.models.embedding`).
        folds, exact: accuracy protocol (:func:`maskinv.evaluate.verification_metrics`).
        out_dir: when given, write ``results.json``, ``results.md``, plots (``plots``) and score
            CSVs (``scores``) there; the written paths are returned under ``"report"``.
        log: receives one line per (model, benchmark, protocol).
        bootstrap: when > 0, add ``comparisons`` (:func:`paired_comparisons`) with that many
            paired-bootstrap replicates.

    Returns:
        The results document (:mod:`maskinv.evaluate.reports`): ``settings``, ``versions``,
        ``models``, ``benchmarks`` and ``results`` (each with ``metrics`` incl. ``scores`` and
        ``genuine`` arrays).
    """
    from .benchmarks import label_benchmarks, load_benchmark
    from .protocols import evaluate_arrays, masked_images, resolve_precision
    from .reports import new_results, write_report

    protos = parse_protocols(protocols)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    specs = _model_specs(models)
    benches = label_benchmarks(benchmarks)
    if not benches:
        raise ConfigError("evaluate_models: no benchmarks given")
    for _, src in benches:  # fail before any model is loaded or scored
        if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
            raise FileNotFoundError(2, "No such file or directory", str(src))
    say = log or (lambda msg: None)
    doc = new_results({
        "protocols": list(protos), "seed": seed, "mask_kind": mask_kind, "flip": flip, "batch_size": batch_size,
        "precision": precision, "precision_used": resolve_precision(precision, device), "device": str(device or "cpu"),
        "folds": folds, "accuracy_protocol": "exact-midpoints" if exact else "insightface-grid",
    })
    loaded = []
    for spec in specs:
        model, info = _load(spec, device)
        loaded.append((spec.label, model))
        doc["models"][spec.label] = info
        say(f"model {spec.label}: {spec.path or '<module>'} ({(info['arch'] or {}).get('name', '?')})")

    for blabel, src in benches:
        bench = load_benchmark(src, blabel)
        doc["benchmarks"][blabel] = bench.describe()
        # decode and mask once per benchmark; every model sees the same bytes
        masked = masked_images(bench.images, protos, seed, mask_kind)
        for mlabel, model in loaded:
            res = evaluate_arrays(model, bench.images, bench.issame, masked, protos, flip=flip, batch_size=batch_size,
                                  device=device, precision=precision, folds=folds, exact=exact)
            for proto, m in res.items():
                doc["results"].append({"model": mlabel, "benchmark": blabel, "protocol": proto, "metrics": m})
                acc = "n/a" if m["accuracy_mean"] is None else f"{100 * m['accuracy_mean']:.2f}%"
                say(f"{mlabel} {blabel} {proto}: accuracy {acc}  EER {100 * m['eer']:.2f}%")
        del bench, masked

    if bootstrap:
        doc["comparisons"] = paired_comparisons(doc, bootstrap, seed=seed)
    if out_dir is not None:
        doc["report"] = write_report(out_dir, doc, plots=plots, scores=scores)
    return doc


def paired_comparisons(doc: Mapping[str, Any], n_boot: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Every pair of models on the same benchmark and protocol (B − A in model order, paired by
    pair index): ``comparisons`` entries with paired-bootstrap 95 % CIs of accuracy and EER.
    ``probe_ref`` resamples probe identities and is skipped when its result has none."""
    from .bootstrap import results_comparisons

    if len(doc["models"]) < 2:
        raise ConfigError(f"--bootstrap compares models: give two or more, got {len(doc['models'])}")
    return results_comparisons(doc["results"], n_boot=int(n_boot), seed=seed)


def metrics_of(doc: Mapping[str, Any], model: str, benchmark: str, protocol: str) -> dict[str, Any]:
    """The ``metrics`` of one (model, benchmark, protocol) entry of a results document."""
    for e in doc["results"]:
        if (e["model"], e["benchmark"], e["protocol"]) == (model, benchmark, protocol):
            return e["metrics"]
    raise KeyError(f"no result for model {model!r}, benchmark {benchmark!r}, protocol {protocol!r}")

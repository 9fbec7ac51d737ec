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

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from maskinv.align import read_image
from maskinv.data.folder_bench import center_crop
from maskinv.errors import ConfigError, DataFormatError
from maskinv.masks import apply_mask, image_rng, mask_photo
from maskinv.masks.mesh import image_key
from maskinv.masks.protocols import MASKED_PROTOCOLS, PROBE_REF, PROTOCOLS, UU, masked_indices, parse_protocols

from .benchmarks import Benchmark, FolderBenchSpec, label_benchmarks, load_benchmark
from .bootstrap import results_comparisons
from .metrics import FAR_GRID, verification_metrics
from .model_specs import EvalModel, ModelSpec, load_eval_model, model_specs
from .probe_ref import probe_ref_from_embeddings, report_metrics
from .protocols import evaluate_arrays, masked_images, pair_scores, resolve_precision
from .realism_parts import _FixedDetector
from .reports import new_results, write_report

__all__ = ["evaluate_models", "evaluate_bin", "score_benchmark", "ScoreOptions", "metrics_of", "ModelSpec"]


@dataclass(frozen=True)
class ScoreOptions:
    """How a benchmark is scored: embedding (``flip``, ``batch_size``, ``device``, ``precision``,
    ``channels_last``: :func:`maskinv.models.embedding.embed_images`), accuracy protocol (``folds``,
    ``exact``), FAR targets and masks (``seed``, ``mask_kind``: image ``i``'s mask depends on
    ``(seed, i)`` only)."""

    flip: bool = True
    batch_size: int = 256
    device: Any = None
    precision: str = "auto"
    folds: int = 10
    exact: bool = False
    seed: int = 0
    mask_kind: str = "random"
    far_targets: tuple[float, ...] = FAR_GRID
    channels_last: bool | None = None


def photo_mode(model: EvalModel, bench: Benchmark) -> bool:
    """A photo recogniser (dlib) on a folder of photos embeds the original files itself."""
    return model.needs_photo and bench.folder is not None and not bench.folder.info.get("aligned")


def score_benchmark(model: EvalModel, bench: Benchmark, protos: Sequence[str], masked: np.ndarray | None,
                    opts: ScoreOptions, groups_out: dict | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``({protocol: metrics}, {protocol: why it was not scored})`` of one model on one benchmark:
    the one scoring path (``maskinv eval``, the study, :func:`evaluate_bin`, ``maskinv calibrate``).

    Pair protocols score the benchmark's kept pairs (``bench.images``/``bench.issame``, masks
    ``masked`` made once per benchmark); ``probe_ref`` embeds each kept folder image once. A photo
    recogniser on a folder of photos embeds the original photos instead of our crops, with the
    folder's detector for the face box and the folder's drop decisions, so it is scored on the same
    pairs; under mu/mm its masks are drawn on the full photos (:func:`_photo_masked_protocols`).
    ``masked``: :func:`~maskinv.evaluate.protocols.masked_images` of ``bench.images`` (made once per
    benchmark, so every model scores the same bytes; None when no protocol masks or in photo mode).
    ``groups_out``: receives the probe_ref subjects, ``{(label, "probe_ref"): (P*R, 2)}``."""
    protos = parse_protocols(protos) if protos else ()
    embed = model.embedder(flip=opts.flip, batch_size=opts.batch_size, device=opts.device,
                           precision=opts.precision, channels_last=opts.channels_last)
    fb = bench.folder
    out: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    emb = None  # per folder image (rows of dropped images stay zero)
    if photo_mode(model, bench):
        if (bench.has_pairs and UU in protos) or bench.probe is not None:
            used = np.flatnonzero(fb.valid)
            center = np.isin(np.asarray(fb.keys, dtype=object), list(fb.missed)) if fb.info.get("on_miss") == "center" \
                else np.zeros(len(fb.keys), bool)
            e = model.embed_photos([fb.paths[k] for k in used], detector=bench.detector, center=center[used], aligned=False)
            emb = np.zeros((len(fb.keys), e.shape[1]), np.float32)
            emb[used] = e
        if bench.has_pairs:
            if UU in protos:
                keep = fb.pair_keep
                scores = pair_scores(emb[fb.pairs.first[keep]], emb[fb.pairs.second[keep]])
                m = verification_metrics(scores, bench.issame, folds=opts.folds, far_targets=opts.far_targets,
                                         exact=opts.exact)
                out[UU] = {**m, "scores": scores, "genuine": bench.issame.copy()}
            masked_protos = [p for p in protos if p in MASKED_PROTOCOLS]
            if masked_protos:
                out.update(_photo_masked_protocols(model, bench, masked_protos, emb, opts))
    else:
        if bench.has_pairs and protos:
            out.update(evaluate_arrays(model.module, bench.images, bench.issame, masked, protos, embed=embed,
                                       folds=opts.folds, exact=opts.exact, far_targets=opts.far_targets))
        if bench.probe is not None:
            used = np.flatnonzero(fb.valid)
            e = embed(fb.images[used])
            emb = np.zeros((len(fb.keys), e.shape[1]), np.float32)
            emb[used] = e
    if fb is not None:
        for m in out.values():
            m["num_pairs_dropped"] = int(fb.info.get("num_pairs_dropped", 0))
            m["num_images_dropped"] = int(fb.info.get("num_images_dropped", 0))
    if bench.probe is not None:
        full = probe_ref_from_embeddings(
            emb, fb.identities, bench.probe, fb.valid, folds=opts.folds, exact=opts.exact, far_targets=opts.far_targets,
            min_false_matches=bench.min_false_matches)
        if groups_out is not None:  # the subjects of both sides: the bootstrap resamples subjects
            groups_out[(bench.label, PROBE_REF)] = np.stack([full["probe_identity"], full["reference_identity"]], axis=1)
        out[PROBE_REF] = report_metrics(full)
    return out, skipped


def _photo_masked_protocols(model: EvalModel, bench: Benchmark, protos: Sequence[str], emb: np.ndarray | None,
                            opts: ScoreOptions) -> dict[str, dict[str, Any]]:
    """mu/mm for a photo recogniser on a folder of photos: image ``i`` of the kept pair list is
    masked with ``image_rng(seed, i)`` (the index the crops' masks use) on the *full photo*, from
    the folder detector's five points found on the unmasked photo; the recogniser then cuts its
    own crop from that face's box. Files without a face kept by ``on_miss="center"`` get the mask
    on their centred square (template landmarks) and are embedded as crops."""
    fb = bench.folder
    keep = fb.pair_keep
    idx = np.empty(2 * int(keep.sum()), np.int64)
    idx[0::2], idx[1::2] = fb.pairs.first[keep], fb.pairs.second[keep]
    det = bench.detector  # resolved once, by whoever loaded the benchmark
    center = set(fb.missed) if fb.info.get("on_miss") == "center" else set()
    if emb is None:
        used = np.flatnonzero(fb.valid)
        cflags = np.isin(np.asarray(fb.keys, dtype=object), list(center))
        e = model.embed_photos([fb.paths[k] for k in used], detector=bench.detector, center=cflags[used], aligned=False)
        emb = np.zeros((len(fb.keys), e.shape[1]), np.float32)
        emb[used] = e
    faces: dict[int, Any] = {}
    masked_emb: dict[int, np.ndarray] = {}
    out: dict[str, dict[str, Any]] = {}
    seed, kind = opts.seed, opts.mask_kind
    for proto in protos:
        want = set(int(i) for i in masked_indices(idx.size, proto))
        photos, crops = [], []
        for i in sorted(want - set(masked_emb)):
            k = int(idx[i])
            img = read_image(fb.paths[k], name=fb.keys[k])
            if fb.keys[k] in center:
                crops.append((i, apply_mask(center_crop(img, min(img.shape[:2])), None, image_rng(seed, i), kind).image))
                continue
            if k not in faces:
                found = det.detect(img)
                if not found:
                    raise DataFormatError(f"{fb.keys[k]}: the folder's detector found no face on a second look")
                faces[k] = found[0]
            photos.append((i, mask_photo(img, faces[k].landmarks, image_rng(seed, i), kind).image, faces[k]))
        if photos:
            fixed = _FixedDetector({image_key(im): [f] for _, im, f in photos})
            e = model.face.embed_photos([im for _, im, _ in photos], aligned=False, detector=fixed)[0]
            masked_emb.update({i: e[j] for j, (i, _, _) in enumerate(photos)})
        if crops:
            e = model.face.embed_photos([im for _, im in crops], aligned=True)[0]
            masked_emb.update({i: e[j] for j, (i, _) in enumerate(crops)})
        rows = np.stack([masked_emb[i] if i in want else emb[idx[i]] for i in range(idx.size)])
        scores = pair_scores(rows[0::2], rows[1::2])
        m = verification_metrics(scores, bench.issame, folds=opts.folds, far_targets=opts.far_targets, exact=opts.exact)
        out[proto] = {**m, "scores": scores, "genuine": bench.issame.copy(),
                      "masks_on": "full photos (detector landmarks), before the recogniser's own crop"}
    return out


def summary_line(m: dict[str, Any], protocol: str = "") -> str:
    """One line of metrics per (model, benchmark, protocol), as `maskinv eval` and `calibrate` print it."""
    tar = (m.get("tar_at_far") or {}).get(5e-4)
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    counts = f"  ({m['num_genuine']} genuine, {m['num_impostor']} impostor)"
    if protocol == PROBE_REF:  # few genuine among many impostors: accuracy would reward "always no"
        return (f"EER {100 * m['eer']:.2f}%  FNMR@FMR=1e-2 {pct(m.get('fmr100'))}  FNMR@FMR=1e-3 {pct(m.get('fmr1000'))}"
                f"  FNMR@FMR=1:2000 {pct(None if tar is None else 1 - tar)}" + counts)
    acc = "n/a" if m.get("accuracy_mean") is None else f"{100 * m['accuracy_mean']:.2f}%"
    return f"accuracy {acc}  EER {100 * m['eer']:.2f}%  TAR@FAR=1:2000 {pct(tar)}" + counts


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
        models: anything :func:`maskinv.load_model` takes — model files (``.pt``/``.pth``/
            ``.onnx``), ``"dlib"``, ``nn.Module``\\ s, loaded models — or :class:`ModelSpec`\\ s
            (with ``arch``, ``layout``, input convention), or ``{label: any of these}``.
            Labels default to the file stem, or the folder for generic names
            (``teacher/backbone.pt`` -> ``teacher``), made unique.
        benchmarks: anything :func:`maskinv.evaluate.benchmarks.load_benchmark` takes (a ``.bin``
            path, an image folder or a :class:`~maskinv.evaluate.benchmarks.FolderBenchSpec`,
            ``(images, issame)``, a ``Benchmark``), as a list or ``{label: source}``. A folder
            with a probe list adds protocol ``probe_ref``.
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
    protos = parse_protocols(protocols)
    if bootstrap and len(model_specs(models)) < 2:  # before any model is loaded or scored
        raise ConfigError(f"bootstrap compares models: give two or more, got {len(model_specs(models))}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    specs = model_specs(models)
    benches = label_benchmarks(benchmarks)
    if not benches:
        raise ConfigError("evaluate_models: no benchmarks given")
    for _, src in benches:  # fail before any model is loaded or scored
        if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
            raise FileNotFoundError(2, "No such file or directory", str(src))
        if isinstance(src, (str, os.PathLike)) and Path(src).is_dir():
            FolderBenchSpec(src).check()
        if isinstance(src, FolderBenchSpec):
            src.check()
    # the entry point resolves each folder's detector once; loading and scoring take the object
    benches = [(label, src.resolved() if isinstance(src, FolderBenchSpec) else src) for label, src in benches]
    say = log or (lambda msg: None)
    doc = new_results({
        "protocols": list(protos), "seed": seed, "mask_kind": mask_kind, "mask_renderer": "v1", "flip": flip,
        "batch_size": batch_size,
        "precision": precision, "precision_used": resolve_precision(precision, device), "device": str(device or "cpu"),
        "folds": folds, "accuracy_protocol": "exact-midpoints" if exact else "insightface-grid",
    })
    doc["not_scored"] = []
    loaded: list[EvalModel] = []
    for spec in specs:
        model = load_eval_model(spec, device)
        loaded.append(model)
        doc["models"][spec.label] = model.info
        say(f"model {spec.label}: {spec.path or '<module>'} ({(model.info['arch'] or {}).get('name', '?')}, "
            f"{model.info['backend']})")

    opts = ScoreOptions(flip=flip, batch_size=batch_size, device=device, precision=precision, folds=folds,
                        exact=exact, seed=seed, mask_kind=mask_kind)
    groups: dict[Any, np.ndarray] = {}  # the bootstrap's resampling units (identities), kept out of the document
    for blabel, src in benches:
        # decode / align once per benchmark: every model is scored on the same pairs and drops
        bench = load_benchmark(src, blabel)
        if bench.has_pairs and bench.num_pairs == 0:
            raise DataFormatError(f"benchmark {blabel}: no pair left ({bench.meta.get('num_pairs_dropped', 0)} dropped: "
                                  "no face in their images); try on_miss='center' or another detector")
        doc["benchmarks"][blabel] = bench.describe()
        if bench.pair_identity is not None:
            groups[blabel] = bench.pair_identity
        # mask once per benchmark; every model sees the same bytes
        crops = bench.has_pairs and any(not photo_mode(m, bench) for m in loaded)
        masked = masked_images(bench.images, protos, seed, mask_kind) if crops else None
        for model in loaded:
            res, skipped = score_benchmark(model, bench, protos, masked, opts, groups_out=groups)
            for proto, m in res.items():
                doc["results"].append({"model": model.label, "benchmark": blabel, "protocol": proto, "metrics": m})
                say(f"{model.label} {blabel} {proto}: {summary_line(m, proto)}")
            for proto, why in skipped.items():
                doc["not_scored"].append({"model": model.label, "benchmark": blabel, "protocol": proto, "reason": why})
                say(f"{model.label} {blabel} {proto}: not scored ({why})")
        del bench, masked

    # steps on the scored document go here: paired comparisons between models
    if bootstrap:
        doc["comparisons"] = paired_comparisons(doc, bootstrap, seed=seed, groups=groups, exact=exact)
    if out_dir is not None:
        doc["report"] = write_report(out_dir, doc, plots=plots, scores=scores)
    return doc


def evaluate_bin(model: Any, bench: Any, *, protocols: str | Iterable[str] = PROTOCOLS, seed: int = 0,
                 mask_kind: str = "random", **options: Any) -> dict[str, dict[str, Any]]:
    """Verification metrics of one ``model`` (an ``nn.Module`` or a loaded recogniser) on one
    benchmark (anything :func:`load_benchmark` takes: a ``.bin`` path, ``(images, issame)``, ...)
    under each protocol, through :func:`score_benchmark`.

    ``options``: the other fields of :class:`ScoreOptions` (``flip``, ``batch_size``, ``device``,
    ``precision``, ``folds``, ``far_targets``, ``exact``, ``channels_last``; same defaults).
    Returns ``{protocol: verification_metrics(...) + {"scores": (N,) float64, "genuine": (N,) bool}}``.
    The model's train/eval flags are restored afterwards.
    """
    protos = parse_protocols(protocols)
    try:
        opts = ScoreOptions(seed=seed, mask_kind=mask_kind, **options)
    except TypeError:
        raise ConfigError(f"evaluate_bin: unknown options {sorted(set(options) - {f.name for f in dataclasses.fields(ScoreOptions)})}") from None
    opts = dataclasses.replace(opts, far_targets=tuple(float(f) for f in opts.far_targets))
    b = load_benchmark(bench)
    scored = load_eval_model(ModelSpec("model", module=model))
    masked = masked_images(b.images, protos, seed, mask_kind) if b.has_pairs and not photo_mode(scored, b) else None
    return score_benchmark(scored, b, protos, masked, opts)[0]


def paired_comparisons(doc: Mapping[str, Any], n_boot: int, *, seed: int = 0, groups: Mapping[Any, Any] | None = None,
                       exact: bool = False) -> list[dict[str, Any]]:
    """Every pair of models on the same benchmark and protocol (B − A in model order, paired by
    pair index): ``comparisons`` entries with paired-bootstrap 95 % CIs of accuracy and EER.
    ``groups``: ``{benchmark or (benchmark, protocol): (N, 2) identities}`` (the pairs' identities;
    probe_ref: probe and reference subjects): identities are resampled there, pairs elsewhere (the
    entry's ``resampling`` says which); ``probe_ref`` without subjects is skipped."""
    if len(doc["models"]) < 2:
        raise ConfigError(f"--bootstrap compares models: give two or more, got {len(doc['models'])}")
    return results_comparisons(doc["results"], n_boot=int(n_boot), seed=seed, groups=groups, exact=exact)


def metrics_of(doc: Mapping[str, Any], model: str, benchmark: str, protocol: str) -> dict[str, Any]:
    """The ``metrics`` of one (model, benchmark, protocol) entry of a results document."""
    for e in doc["results"]:
        if (e["model"], e["benchmark"], e["protocol"]) == (model, benchmark, protocol):
            return e["metrics"]
    raise KeyError(f"no result for model {model!r}, benchmark {benchmark!r}, protocol {protocol!r}")

"""Decision thresholds as data: measured at a false-match rate on a benchmark, with provenance.

``calibrate`` scores a verification ``.bin`` under a masked protocol (``uu``/``mu``/``mm``,
see :mod:`maskinv.evaluate`), takes the smallest threshold whose FMR is at most the target
(accept iff ``score >= threshold``) and stores it in ``<model stem>.thresholds.json`` beside
the model, keyed by protocol and FMR, together with where it came from: benchmark path and
SHA-256, protocol, mask seed, kind and renderer (``mask_renderer``; entries written before
the field existed read as ``v1`` when their protocol is masked), flip test, pair counts, achieved FMR and TAR, date,
maskinv version and the model fingerprint. ``lookup`` refuses entries of another model.

File layout::

    {"format": "maskinv-thresholds", "format_version": 1, "model_fingerprint": "<sha256>",
     "entries": {"mu@0.001": {"protocol": "mu", "fmr": 0.001, "threshold": 0.31, ...}}}
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataFormatError, ModelMismatchError
from .evaluate.metrics import verification_metrics
from .masks.mesh import renderer_revision
from .masks.protocols import DEFAULT_PROTOCOL, MASKED_PROTOCOLS, PROBE_REF, PROTOCOLS, check_protocol
from .models.loading import thresholds_path  # the naming rule lives with the model files
from .utils.hashing import file_sha256
from .utils.io import read_json_file

__all__ = ["thresholds_path", "entry_key", "read_thresholds", "write_entry", "lookup", "calibrate", "PROTOCOLS",
           "calibration_counts", "check_destination", "PROBE_REF", "threshold_for_fmr", "calibrate_from_scores",
           "check_entry"]

FORMAT = "maskinv-thresholds"
FORMAT_VERSION = 1


def entry_key(protocol: str, fmr: float) -> str:
    return f"{protocol}@{float(fmr):g}"


def _check_fmr(fmr: float) -> float:
    try:
        f = float(fmr)
    except (TypeError, ValueError):
        raise ConfigError(f"FMR must be a number in (0, 1), got {fmr!r}") from None
    if not 0.0 < f < 1.0:
        raise ConfigError(f"FMR must lie in (0, 1), got {fmr!r}")
    return f


def read_thresholds(path: str | Path) -> dict[str, Any] | None:
    """The thresholds file, validated; ``None`` if it does not exist."""
    p = Path(path)
    data = read_json_file(p, "thresholds file", DataFormatError)
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataFormatError(f"{p}: not a maskinv thresholds file (format {data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{p}: unsupported format_version {data.get('format_version')!r}")
    if not isinstance(data.get("entries"), dict) or not isinstance(data.get("model_fingerprint"), str):
        raise DataFormatError(f"{p}: thresholds file needs 'model_fingerprint' and 'entries'")
    for key, e in data["entries"].items():
        if not isinstance(e, dict) or not isinstance(e.get("threshold"), (int, float)) or not math.isfinite(e["threshold"]):
            raise DataFormatError(f"{p}: entry {key!r} has no finite 'threshold'")
        # provenance of entries written before masks.renderer existed: synthetic masks were v1
        e.setdefault("mask_renderer", "v1" if e.get("protocol") in MASKED_PROTOCOLS else None)
    return data


def write_entry(path: str | Path, fingerprint: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Add or replace ``entry`` (keyed by its protocol and fmr) in the file at ``path``.

    A file holding another model's thresholds is refused (:class:`ModelMismatchError`).
    """
    from .utils.io import atomic_write_json

    p = Path(path)
    data = read_thresholds(p)
    if data is None:
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_fingerprint": fingerprint, "entries": {}}
    elif data["model_fingerprint"] != fingerprint:
        raise ModelMismatchError(
            f"{p}: holds thresholds of model {data['model_fingerprint'][:16]}..., not {fingerprint[:16]}...; "
            "remove it or calibrate a model in its own folder")
    data["entries"][entry_key(entry["protocol"], entry["fmr"])] = entry
    atomic_write_json(p, data)
    return data


def lookup(path: str | Path, fingerprint: str, fmr: float | None = None, protocol: str = DEFAULT_PROTOCOL,
           flip: bool | None = None) -> dict[str, Any]:
    """The calibrated entry for ``protocol`` at ``fmr`` (``fmr=None``: the smallest FMR
    calibrated for that protocol, the most conservative). Raises :class:`ConfigError` when
    none exists and :class:`ModelMismatchError` when the file belongs to another model or the
    entry was measured with a different flip-test setting."""
    p = Path(path)
    data = read_thresholds(p)
    if data is None:
        raise ConfigError(
            f"no calibrated thresholds for this model ({p} not found); run `maskinv calibrate --model MODEL "
            "--bench BENCH.bin --fmr 1e-3` or pass an explicit threshold")
    if data["model_fingerprint"] != fingerprint:
        raise ModelMismatchError(
            f"{p}: thresholds were calibrated for model {data['model_fingerprint'][:16]}..., "
            f"this model is {fingerprint[:16]}...; recalibrate")
    cands = [e for e in data["entries"].values() if e.get("protocol") == protocol]
    if fmr is not None:
        f = _check_fmr(fmr)
        cands = [e for e in cands if math.isclose(float(e.get("fmr", -1)), f, rel_tol=1e-9)]
    if not cands:
        have = ", ".join(sorted(data["entries"])) or "none"
        want = entry_key(protocol, fmr) if fmr is not None else f"protocol {protocol}"
        raise ConfigError(f"{p}: no calibrated threshold for {want} (have: {have}); run `maskinv calibrate`")
    entry = min(cands, key=lambda e: float(e["fmr"]))
    if flip is not None and "flip" in entry and bool(entry["flip"]) != bool(flip):
        raise ModelMismatchError(
            f"{p}: threshold {entry_key(entry['protocol'], entry['fmr'])} was calibrated with "
            f"flip={entry['flip']}, but scores are computed with flip={flip}")
    return dict(entry, file=str(p), model_fingerprint=data["model_fingerprint"])


def _needed_impostors(fmr: float) -> int:
    return int(math.ceil(1.0 / fmr - 1e-9))


def calibration_counts(bench: str | Path, *, protocol: str = DEFAULT_PROTOCOL, pairs: str | Path | None = None,
                       probe_list: str | Path | None = None) -> dict[str, int]:
    """``{"num_genuine", "num_impostor"}`` comparisons ``bench`` offers, counted from its files before
    any image is decoded or embedded (images later dropped for want of a face only lower them).

    ``bench``: a verification ``.bin``, or an image folder with a pairs file (``pairs``, default
    ``bench/pairs.txt``), or with a ``probe_list`` (protocol ``probe_ref``: every listed probe against
    every other image; genuine = same folder)."""
    import numpy as np

    bench = Path(bench)
    if bench.is_dir():
        if probe_list is not None:
            from .data.folders import scan_image_folder
            from .evaluate.probe_ref import read_probe_list

            _, paths, _ = scan_image_folder(bench)
            keys = [Path(q).relative_to(bench).as_posix() for q in paths]
            probe = read_probe_list(probe_list, keys)
            ident = np.array([k.split("/", 1)[0] for k in keys])
            names, counts = np.unique(ident[~probe], return_counts=True)
            same = dict(zip(names, counts))
            gen = int(sum(same.get(i, 0) for i in ident[probe]))
            return {"num_genuine": gen, "num_impostor": int(probe.sum()) * int((~probe).sum()) - gen}
        from .data.pairs import read_pairs

        pf = Path(pairs) if pairs is not None else bench / "pairs.txt"
        if not pf.is_file():
            raise ConfigError(f"{bench}: no pairs.txt; pass --pairs FILE, or --probe-list FILE for probe_ref")
        issame = np.asarray(read_pairs(pf, bench).issame, bool)
    else:
        if not bench.is_file():
            raise DataFormatError(f"{bench}: benchmark file not found")
        from .data.bins import load_bin

        _, issame = load_bin(bench)
        issame = np.asarray(issame, bool)
    return {"num_genuine": int(issame.sum()), "num_impostor": int((~issame).sum())}


def check_destination(dest: Path, fingerprint: str) -> None:
    """Refuse, before any work, a thresholds file that cannot be written or holds another model's."""
    import os

    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if dest.is_dir():
        raise ConfigError(f"{dest}: is a folder, expected a thresholds .json file")
    if not os.access(parent, os.W_OK) or (dest.exists() and not os.access(dest, os.W_OK)):
        raise ConfigError(f"{dest}: not writable; pass --thresholds PATH to store the thresholds elsewhere")
    data = read_thresholds(dest) if dest.exists() else None
    if data is not None and data["model_fingerprint"] != fingerprint:
        raise ModelMismatchError(
            f"{dest}: holds thresholds of model {data['model_fingerprint'][:16]}..., not {fingerprint[:16]}...; "
            "pass another --thresholds PATH")


def calibrate(model, bench: str | Path, *, fmr: float = 1e-3, protocol: str = DEFAULT_PROTOCOL, seed: int = 0,
              flip: bool = True, mask_kind: str = "random", batch_size: int = 128,
              write: bool = True, out: str | Path | None = None, pairs: str | Path | None = None,
              probe_list: str | Path | None = None, aligned: bool = False, detector: Any = None,
              on_miss: str = "drop", cache_dir: str | Path | None = None, strict: bool = False,
              log: Any = None) -> dict[str, Any]:
    """Measure the threshold giving ``fmr`` on ``bench`` and (by default) store it.

    ``bench``: a verification ``.bin`` (protocols ``uu``/``mu``/``mm``, synthetic masks), or an image
    folder as ``maskinv eval`` takes it: with a pairs file (``pairs``, default ``bench/pairs.txt``;
    ``aligned``, ``detector``, ``on_miss``, ``cache_dir``, ``strict`` as there) or with a
    ``probe_list`` of (really) masked photos: protocol ``probe_ref``, every probe against every other
    image. ``model`` is a :class:`maskinv.api.FaceModel` (thresholds of a torch model carry over to
    its ONNX export, which records the same fingerprint) or a recogniser with the same interface
    (dlib). ``out``: the thresholds file to write (default ``<model stem>.thresholds.json`` beside
    the model; a model without a file, e.g. dlib, needs it). Before anything is embedded, the
    benchmark must offer enough impostor comparisons for ``fmr`` (at least 1/fmr) and the
    destination must be writable. Returns the stored entry.
    """
    import numpy as np

    from . import __version__

    f = _check_fmr(fmr)
    bench = Path(bench)
    if probe_list is not None:
        if not bench.is_dir():
            raise ConfigError("--probe-list applies to a folder benchmark")
        if protocol not in (PROBE_REF, DEFAULT_PROTOCOL):
            raise ConfigError(f"with --probe-list the protocol is probe_ref (real masks), not {protocol}")
        protocol = PROBE_REF
    elif protocol == PROBE_REF:
        raise ConfigError("protocol probe_ref needs a folder benchmark and --probe-list FILE")
    else:
        check_protocol(protocol)
    dest = Path(out) if out is not None else getattr(model, "thresholds_file", None)
    if write:
        if dest is None:
            raise ConfigError("this model has no file to store thresholds beside (a named model such as dlib); "
                              "pass --thresholds PATH")
        check_destination(dest, model.fingerprint)
    counts = calibration_counts(bench, protocol=protocol, pairs=pairs, probe_list=probe_list)
    need = _needed_impostors(f)
    if counts["num_impostor"] < need or counts["num_genuine"] == 0:
        raise ConfigError(
            f"{bench}: cannot calibrate FMR {f:g}: it needs >= {need:,} impostor comparisons and some genuine ones, "
            f"the benchmark has {counts['num_impostor']:,} impostor and {counts['num_genuine']:,} genuine"
            + ("; use a larger --fmr" + (" or a probe list (--probe-list: every probe against every reference)"
                                         if bench.is_dir() and probe_list is None else "")
               if counts["num_impostor"] else ""))
    scores, genuine, bench_info = _scores(model, bench, protocol=protocol, pairs=pairs, probe_list=probe_list,
                                          aligned=aligned, detector=detector, on_miss=on_miss, cache_dir=cache_dir,
                                          strict=strict, seed=seed, mask_kind=mask_kind, flip=flip,
                                          batch_size=batch_size, log=log)
    metrics = verification_metrics(scores, genuine, far_targets=(f,))
    thr = metrics["threshold_at_fmr"].get(f)
    if thr is None:  # only when dropped images took the count under the need
        reason = metrics["undefined"].get(f"threshold_at_fmr[{f:g}]", "undefined")
        raise ConfigError(f"{bench}: cannot calibrate FMR {f:g}: {reason}")
    imp = scores[~genuine]
    entry = {
        "protocol": protocol,
        "fmr": f,
        "threshold": float(thr),
        "decision": "accept iff cosine score >= threshold",
        "fmr_achieved": float((imp >= thr).mean()),
        "tar": float(metrics["tar_at_far"][f]),
        "eer": float(metrics["eer"]),
        "bench": {**bench_info, "num_pairs": int(metrics["num_pairs"]), "num_genuine": int(metrics["num_genuine"]),
                  "num_impostor": int(metrics["num_impostor"])},
        "seed": int(seed),
        "mask_kind": mask_kind if protocol in MASKED_PROTOCOLS else None,
        "mask_renderer": "v1" if protocol in MASKED_PROTOCOLS else None,   # the evaluation masks (renderer v1)
        "mask_renderer_revision": renderer_revision("v1") if protocol in MASKED_PROTOCOLS else None,
        "flip": bool(flip),
        "precision": getattr(model, "precision", None),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "maskinv_version": __version__,
        "model_path": str(model.path) if getattr(model, "path", None) else None,
        "model_fingerprint": model.fingerprint,
    }
    if write:
        write_entry(dest, model.fingerprint, entry)
        entry = dict(entry, file=str(dest))
    return entry


def _scores(model, bench: Path, *, protocol, pairs, probe_list, aligned, detector, on_miss, cache_dir, strict,
            seed, mask_kind, flip, batch_size, log):
    """``(scores, genuine, bench info)`` of ``model`` on ``bench`` under ``protocol``, through the one
    scoring path of ``maskinv eval`` (:func:`maskinv.evaluate.runner.score_benchmark`: same loader, same
    drops, same masks). A torch model is embedded with the facade's own numerics
    (``FaceModel.embed_options``: device, precision, no channels_last switch), so the threshold means
    the same score in ``verify``; other recognisers with their own ``embed_aligned``."""
    import numpy as np

    from .evaluate.benchmarks import FolderBenchSpec, load_benchmark
    from .evaluate.model_specs import ModelSpec, load_eval_model
    from .evaluate.protocols import masked_images
    from .evaluate.runner import ScoreOptions, photo_mode, score_benchmark, summary_line

    if bench.is_dir():  # the entry point resolves the detector once (None for aligned crops)
        source = FolderBenchSpec(bench, pairs=pairs, aligned=aligned, on_miss=on_miss, detector=detector,
                                 probe_list=probe_list, cache_dir=cache_dir, strict=strict).resolved()
    else:
        source = bench
    b = load_benchmark(source)
    label = Path(model.path).stem if getattr(model, "path", None) else str(getattr(model, "name", None) or "model")
    scored = load_eval_model(ModelSpec(label, module=model))
    embed = model.embed_options() if scored.module is not None else {"precision": getattr(model, "precision", None) or "auto"}
    opts = ScoreOptions(flip=flip, batch_size=batch_size, seed=seed, mask_kind=mask_kind, **embed)
    protos = () if protocol == PROBE_REF else (protocol,)
    if b.has_pairs and protos and b.num_pairs == 0:
        raise DataFormatError(f"{bench}: no pair left ({b.meta.get('num_pairs_dropped', 0)} dropped: no face in their "
                              "images); try --on-miss center or another --detector")
    masked = masked_images(b.images, protos, seed, mask_kind) if protos and not photo_mode(scored, b) else None
    res, _ = score_benchmark(scored, b, protos, masked, opts)
    m = res[protocol]
    if log is not None:
        log(f"{label} {b.label} {protocol}: {summary_line(m, protocol)}")
    if b.folder is None:
        info = {"path": str(bench.resolve()), "sha256": file_sha256(bench)}
    else:
        info = {"path": str(bench.resolve()), "sha256": b.meta.get("sha256"), "pairs_file": b.meta.get("pairs_file"),
                "probe_list": str(Path(probe_list).resolve()) if probe_list is not None else None,
                "num_images_dropped": b.meta.get("num_images_dropped")}
    return np.asarray(m["scores"], np.float64), np.asarray(m["genuine"], bool), info


# ----------------------------------------------------------------------------- folder / probe-reference calibration
#: How many of the highest impostor scores an entry from :func:`calibrate_from_scores` keeps (at
#: least this many, and at least 2 % of them, at most :data:`IMPOSTOR_TAIL_MAX`), so that a
#: threshold at another FMR up to 2 % (identification: FPIR over N enrolled identities) can be read
#: off the same measurement without inventing anything.
IMPOSTOR_TAIL = 2000
IMPOSTOR_TAIL_MAX = 20000


def threshold_for_fmr(impostor_tail, num_impostor: int, fmr: float) -> float | None:
    """The smallest threshold whose FMR (share of ``num_impostor`` impostor scores ``>=`` it) is at
    most ``fmr``, from the highest impostor scores (``impostor_tail``, any order); ``None`` when the
    measurement cannot resolve ``fmr`` (fewer than one impostor per ``1/fmr`` or the tail is too short)."""
    import numpy as np

    f = _check_fmr(fmr)
    tail = np.sort(np.asarray(impostor_tail, np.float64))[::-1]
    allowed = int(math.floor(f * num_impostor))        # impostors allowed at or above the threshold
    if allowed < 1 or allowed >= len(tail):
        return None
    # accept iff score >= t: t just above the (allowed+1)-th highest impostor score, unless ties push it up
    t = float(np.nextafter(tail[allowed], np.inf))
    return t if int((tail >= t).sum()) <= allowed else None


def calibrate_from_scores(scores, genuine, *, fmr: float, protocol: str, fingerprint: str, source: dict[str, Any],
                          flip: bool = False, precision: str = "fp32",
                          mask_renderer: str | None = None) -> dict[str, Any]:
    """A thresholds entry from pair scores measured elsewhere (an image-folder benchmark such
    as RMFD's masked probes against unmasked references): the same fields as :func:`calibrate`
    plus ``impostor_tail`` (see :data:`IMPOSTOR_TAIL`); ``source`` describes the benchmark
    (its split, pair rule, pipeline); ``mask_renderer``: the synthetic masks' renderer, None for
    real masks or none. Store it with :func:`write_entry`."""
    import numpy as np

    from . import __version__

    f = _check_fmr(fmr)
    check_protocol(protocol)
    s = np.asarray(scores, np.float64)
    g = np.asarray(genuine, bool)
    if s.shape != g.shape or s.ndim != 1 or not g.any() or g.all():
        raise DataFormatError(f"calibrate_from_scores: need matching 1-d scores and labels with both genuine and "
                              f"impostor pairs, got {s.shape} / {g.shape}")
    metrics = verification_metrics(s, g, far_targets=(f,))
    thr = metrics["threshold_at_fmr"].get(f)
    if thr is None:
        reason = metrics["undefined"].get(f"threshold_at_fmr[{f:g}]", "undefined")
        raise ConfigError(f"{source.get('bench', 'scores')}: cannot calibrate FMR {f:g}: {reason}")
    imp = s[~g]
    keep = min(len(imp), max(IMPOSTOR_TAIL, min(IMPOSTOR_TAIL_MAX, math.ceil(0.02 * len(imp)) + 1)))
    tail = np.sort(imp)[::-1][:keep]
    return {
        "protocol": protocol, "fmr": f, "threshold": float(thr),
        "decision": "accept iff cosine score >= threshold",
        "fmr_achieved": float((imp >= thr).mean()), "tar": float(metrics["tar_at_far"][f]),
        "eer": float(metrics["eer"]),
        "bench": {**source, "num_pairs": int(len(s)), "num_genuine": int(g.sum()), "num_impostor": int((~g).sum())},
        "impostor_tail": [round(float(v), 6) for v in tail],
        "flip": bool(flip), "precision": precision, "mask_renderer": mask_renderer,
        "mask_renderer_revision": None if mask_renderer is None else renderer_revision(mask_renderer),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "maskinv_version": __version__,
        "model_path": None, "model_fingerprint": fingerprint,
    }


def check_entry(entry: dict[str, Any], scores, genuine, *, what: str) -> dict[str, Any]:
    """The FMR and TAR a calibrated ``entry`` achieves on other pairs (a test split), with
    Wilson 95 % intervals (pairs treated as independent: they share photos, so the intervals are
    too narrow)."""
    import numpy as np

    s = np.asarray(scores, np.float64)
    g = np.asarray(genuine, bool)
    t = float(entry["threshold"])
    out = {"on": what, "num_impostor": int((~g).sum()), "num_genuine": int(g.sum())}
    for name, mask in (("fmr", ~g), ("tar", g)):
        n = int(mask.sum())
        k = int((s[mask] >= t).sum())
        out[name] = k / n if n else None
        out[f"{name}_ci95"] = list(_wilson(k, n))
    return out


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))

"""Realism of synthetic masks: how much they cost a recogniser compared with real masks.

Given a folder benchmark (one sub-folder per identity), the list of its *real masked* photos and
any model, :func:`realism` takes the people with >= 1 real masked and >= 2 unmasked photos,
holds back some of each person's unmasked photos as probes (the rest are the references, the
same for every condition; a photo is never paired with itself) and scores three probe sets
against those references:

* ``unmasked`` — the held-back unmasked probes;
* ``synthetic`` — the same probes with a synthetic mask drawn on the full photo from the
  detector's landmarks (``renderer`` v1 or mesh), before the model cuts its own crop;
* ``real`` — the real masked probes.

Every photo goes through MTCNN (the same boxes and five points for every model; photo models
such as dlib get the box, aligned-crop models the five-point crop). A photo without a face is
dropped in every condition alike and counted. Each identity weighs equally: a probe identity's
genuine comparisons share weight 1, and so do its impostor comparisons.

ratio = (EER synthetic - EER unmasked) / (EER real - EER unmasked), and the same on FNMR at
FMR 1e-2, with a percentile bootstrap over probe identities.

Upper-face control (``upper_cut``): the three probe sets again, each probe photo blanked (mid grey)
from just below the eyes down (face-frame height ``upper_cut`` of MTCNN's five points: 0 = eye
line, 1 = mouth line; 0.11 = row 56 of the 112 px ArcFace crop), references untouched. No mask is
left to see, so real - synthetic there is error the upper face carries: the photo session/source
of the real masked photos (and any alignment difference the masks cause). ``adjusted_ratio`` =
(S - U) / ((R - U) - (R_upper - S_upper)) takes that excess off the real side — an estimate under
an additivity assumption, reported beside the ratio, never instead of it. Caveat (in every report): real
masked and unmasked photos of a person often come from different sessions (lighting, age,
camera), which raises the real condition's error beyond what the mask alone costs, so the
ratio understates synthetic masks' realism by an unknown amount.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.seeds import derive_seed

from .realism_parts import _crop_view, _embed, _scores, _subset, draw_seed, draw_synthetic

__all__ = ["weighted_error_rates", "realism_ratio", "adjusted_ratio", "blank_below", "identity_weights",
           "split_probes", "realism", "CONDITIONS", "SESSION_CAVEAT", "realism_report"]

from .realism_report import CONDITIONS  # noqa: E402  (defined once, with the report)
SESSION_CAVEAT = ("Real masked and unmasked photos of a person often come from different sessions (lighting, "
                  "age, camera, expression), which adds error to the real condition that the mask did not cause: "
                  "EER real - EER unmasked overstates what real masks cost, and the ratio understates the "
                  "synthetic masks' realism by an unknown amount.")


# ----------------------------------------------------------------------------- arithmetic
def weighted_error_rates(scores, genuine, weights, fmr_targets: Sequence[float] = (1e-2,), *,
                         order: np.ndarray | None = None) -> dict[str, float]:
    """Weighted EER and FNMR at FMR <= f of a score list (higher = more similar).

    ``weights``: per comparison; genuine and impostor weights are normalised separately. The
    threshold t accepts ``score >= t``; EER = the mean of FNMR and FMR where they cross (over the
    distinct score thresholds); FNMR at FMR f uses the lowest threshold with FMR <= f.
    ``order``: ``argsort(-scores, kind="stable")`` when already known (bootstrap loops)."""
    s = np.asarray(scores, np.float64)
    g = np.asarray(genuine, bool)
    w = np.asarray(weights, np.float64)
    if not (s.shape == g.shape == w.shape) or s.ndim != 1:
        raise ConfigError(f"weighted_error_rates: shapes differ: {s.shape}, {g.shape}, {w.shape}")
    wg, wi = w * g, w * ~g
    tg, ti = wg.sum(), wi.sum()
    if tg <= 0 or ti <= 0:
        raise DataFormatError("weighted_error_rates: needs genuine and impostor comparisons of positive weight")
    if order is None:
        order = np.argsort(-s, kind="stable")
    ss = s[order]
    # Thresholds at each distinct score: accept everything >= it.
    cg = np.cumsum(wg[order]) / tg
    ci = np.cumsum(wi[order]) / ti
    last = np.r_[ss[1:] != ss[:-1], True]
    tpr, fmr = np.r_[0.0, cg[last]], np.r_[0.0, ci[last]]
    fnmr = 1.0 - tpr
    k = int(np.argmin(np.abs(fnmr - fmr)))
    out = {"eer": float((fnmr[k] + fmr[k]) / 2)}
    for f in fmr_targets:
        ok = np.flatnonzero(fmr <= f + 1e-12)
        out[f"fnmr@fmr{f:g}"] = float(fnmr[ok[-1]])
    return out


def realism_ratio(unmasked: float, synthetic: float, real: float) -> float | None:
    """(synthetic - unmasked) / (real - unmasked); None when real masks cost nothing (<= 0)."""
    gap = real - unmasked
    if gap <= 0:
        return None
    return float((synthetic - unmasked) / gap)


def adjusted_ratio(unmasked: float, synthetic: float, real: float, synthetic_upper: float,
                   real_upper: float) -> float | None:
    """(synthetic - unmasked) / ((real - unmasked) - (real_upper - synthetic_upper)): the ratio with
    the real probes' excess error in the upper face alone (no mask visible) taken off the real side.
    None when the adjusted real gap is <= 0."""
    gap = (real - unmasked) - (real_upper - synthetic_upper)
    if gap <= 0:
        return None
    return float((synthetic - unmasked) / gap)


def blank_below(image: np.ndarray, landmarks, cut: float, value: int = 128) -> np.ndarray:
    """A copy of ``image`` with everything below the line at face-frame height ``cut`` (0 = eye line,
    1 = mouth line, from five ArcFace-order points; the line follows the eye line's tilt) set to
    ``value``."""
    p = np.asarray(landmarks, np.float64)
    if p.shape != (5, 2):
        raise DataFormatError(f"blank_below: expected five (x, y) points, got {p.shape}")
    eye, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    ex = p[1] - p[0]
    ex = ex / max(np.linalg.norm(ex), 1e-9)
    ey = np.array([-ex[1], ex[0]])
    em = float(np.dot(mouth - eye, ey))
    if em <= 0:
        raise DataFormatError("blank_below: the mouth is not below the eyes")
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    below = ((xs - eye[0]) * ey[0] + (ys - eye[1]) * ey[1]) >= cut * em
    out = image.copy()
    out[below] = value
    return out


def identity_weights(probe_identity: np.ndarray, genuine: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Per-comparison weights giving each probe identity's genuine comparisons total weight 1
    (times ``counts[identity]``, a bootstrap's draw count) and the same for its impostors."""
    pid = np.asarray(probe_identity, np.int64)
    g = np.asarray(genuine, bool)
    n_id = max(int(pid.max()) + 1 if pid.size else 0, 0 if counts is None else len(counts))
    ng = np.bincount(pid[g], minlength=n_id).astype(np.float64)
    ni = np.bincount(pid[~g], minlength=n_id).astype(np.float64)
    c = np.ones(n_id) if counts is None else np.asarray(counts, np.float64)[:n_id]
    wg = np.divide(c, ng, out=np.zeros(n_id), where=ng > 0)
    wi = np.divide(c, ni, out=np.zeros(n_id), where=ni > 0)
    return np.where(g, wg[pid], wi[pid])


# ----------------------------------------------------------------------------- the protocol
def split_probes(identities: Sequence[str], is_masked: np.ndarray, *, holdout: int = 1, seed: int = 0,
                 people: set[str] | None = None) -> dict[str, Any]:
    """Choose the people and the probes: people with >= 1 masked and >= 2 unmasked photos (and in
    ``people``, if given); per person ``min(holdout, unmasked - 1)`` unmasked photos, drawn with
    ``seed``, are probes, the other unmasked photos references. Returns index arrays
    ``unmasked_probes``, ``real_probes``, ``references`` and ``people`` (sorted names)."""
    ids = np.asarray(identities, dtype=object).astype(str)
    m = np.asarray(is_masked, bool)
    if holdout < 1:
        raise ConfigError(f"realism: holdout must be >= 1, got {holdout}")
    rng = np.random.default_rng(seed)
    up, rp, refs, kept = [], [], [], []
    for name in sorted(set(ids)):
        if people is not None and name not in people:
            continue
        idx = np.flatnonzero(ids == name)
        mk, un = idx[m[idx]], idx[~m[idx]]
        if mk.size < 1 or un.size < 2:
            continue
        perm = rng.permutation(un)
        k = min(holdout, un.size - 1)
        up.extend(sorted(perm[:k].tolist()))
        refs.extend(sorted(perm[k:].tolist()))
        rp.extend(mk.tolist())
        kept.append(name)
    if not kept:
        raise DataFormatError("realism: no person has >= 1 real masked and >= 2 unmasked photos")
    return {"unmasked_probes": np.array(up, np.int64), "real_probes": np.array(rp, np.int64),
            "references": np.array(refs, np.int64), "people": kept}




def _metrics(c: dict, counts=None, fmr: float = 1e-2) -> dict[str, float]:
    w = identity_weights(c["probe_identity"], c["genuine"], counts)
    return weighted_error_rates(c["scores"], c["genuine"], w, (fmr,), order=c["order"])


def realism(model, root: str | Path, probe_list: str | Path, *, people_file: str | Path | None = None,
            renderer: str = "v1", kind: str = "random", seed: int = 0, holdout: int = 1,
            bootstrap: int = 1000, fmr: float = 1e-2, detector=None, sheet_rows: int = 8,
            pad: float = 0.25, progress=None, cache: dict | None = None,
            upper_cut: float | None = 0.11, draws: int = 1) -> dict[str, Any]:
    """Run the realism measurement (module doc). Returns a JSON-able result dict plus the contact
    sheet image under ``"_sheet"`` (uint8, real | synthetic | unmasked per row).

    ``pad``: every photo gets a border of ``pad`` x its size (edge pixels repeated) before
    detection, the same in every condition: tight face crops (RMFD) leave MTCNN no margin.
    ``cache``: a dict shared between calls on the same benchmark (e.g. one per renderer and model):
    photos, detections, the synthetic-masked photos (per renderer) and the embeddings of unmasked,
    real and reference photos (per model) are computed once.
    ``upper_cut``: the upper-face control (module doc); None skips it.
    ``draws``: synthetic masks per unmasked probe (draw 0 = the single draw of ``draws=1``); all
    draws are probes of the synthetic condition, and the identity weighting spreads each identity's
    weight evenly over its comparisons, so the N draws of a probe share its weight (1/N each when all
    are detected). ``per_draw`` in the result holds each draw scored alone."""
    from maskinv.align import resolve_detector
    from maskinv.align.image import read_image
    from maskinv.masks.mesh import check_renderer, renderer_revision
    from maskinv.utils.images import IMAGE_EXTENSIONS

    from .probe_ref import read_probe_list

    check_renderer(renderer, "realism: renderer")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ConfigError(f"realism: draws must be an integer >= 1, got {draws!r}")
    draws = int(draws)
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: benchmark folder not found")
    files = sorted((q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda q: q.relative_to(root).as_posix())
    keys = [q.relative_to(root).as_posix() for q in files]
    if not keys or any("/" not in k for k in keys):
        raise DataFormatError(f"{root}: expected one sub-folder of images per identity")
    identities = [k.split("/", 1)[0] for k in keys]
    masked = read_probe_list(probe_list, keys)
    people = None
    if people_file is not None:
        txt = Path(people_file)
        if not txt.is_file():
            raise DataFormatError(f"{txt}: people list not found")
        people = {ln.split("#", 1)[0].strip() for ln in txt.read_text(encoding="utf-8").splitlines()} - {""}
        unknown = sorted(people - set(identities))
        if unknown:
            raise DataFormatError(f"{txt}: {len(unknown)} names are not folders of {root}, e.g. {unknown[0]!r}")
    sp = split_probes(identities, masked, holdout=holdout, seed=seed, people=people)
    det = resolve_detector(detector if detector is not None else "mtcnn")
    t0 = time.perf_counter()
    if cache is None:
        cache = {}
    if cache.setdefault("_setup", (str(root), pad, getattr(det, "name", None))) != (str(root), pad, getattr(det, "name", None)):
        raise ConfigError("realism: a cache is shared only between runs on the same benchmark, pad and detector")

    def load(i):
        if i not in cache:
            img = read_image(str(files[i]), name=keys[i])
            if pad > 0:
                import cv2

                b = int(round(pad * max(img.shape[:2])))
                img = cv2.copyMakeBorder(img, b, b, b, b, cv2.BORDER_REPLICATE)
            found = det.detect(img)
            cache[i] = (img, found[0] if found else None)
        return cache[i]

    groups = {"unmasked": sp["unmasked_probes"], "real": sp["real_probes"], "references": sp["references"]}
    loaded: dict[str, list] = {}
    dropped: dict[str, list[str]] = {}
    for name, idx in groups.items():
        ok = []
        for i in idx.tolist():
            img, face = load(int(i))
            if face is None:
                dropped.setdefault(name, []).append(keys[i])
            else:
                ok.append((int(i), img, face))
            if progress:
                progress(name, i)
        loaded[name] = ok
    # Synthetic: the unmasked probes (those with a face) masked on the full photo from the
    # detector's five points, ``draws`` times, then detected again like any masked photo.
    # (Cached per renderer, kind, seed and draw: every model of a shared cache sees the same masked photos.)
    synth, draw_of, lost = draw_synthetic(loaded["unmasked"], draws=draws, seed=seed, kind=kind,
                                          renderer=renderer, det=det, keys=keys, cache=cache)
    lost_all = [k if d == 0 else f"{k} [draw {d}]" for d in range(draws) for k in lost[d]]
    if lost_all:
        dropped["synthetic"] = lost_all
    t_detect = time.perf_counter() - t0
    names = sp["people"]
    code = {n: k for k, n in enumerate(names)}
    ref = loaded["references"]
    if not ref:
        raise DataFormatError("realism: no reference photo has a detected face")
    t1 = time.perf_counter()
    fp = getattr(model, "fingerprint", id(model))

    def embed(items):
        key = ("emb", fp, tuple(r[0] for r in items))
        if key not in cache:
            cache[key] = _embed(model, [r[1] for r in items], [r[2] for r in items])
        return cache[key]

    re = embed(ref)
    rid = np.array([code[identities[r[0]]] for r in ref])
    comps, counts = {}, {}
    for cond, items in (("unmasked", loaded["unmasked"]), ("synthetic", synth), ("real", loaded["real"])):
        if not items:
            raise DataFormatError(f"realism: no {cond} probe has a detected face")
        pe = embed(items) if cond != "synthetic" else _embed(model, [r[1] for r in items], [r[2] for r in items])
        pid = np.array([code[identities[r[0]]] for r in items])
        comps[cond] = _scores(pe, re, pid, rid)
        counts[cond] = {"probes": len(items), "identities": int(np.unique(pid).size)}
    upper = {}
    if upper_cut is not None:
        for cond, items in (("unmasked", loaded["unmasked"]), ("synthetic", synth), ("real", loaded["real"])):
            key = ("emb-upper", fp, upper_cut, tuple(r[0] for r in items))
            if cond == "synthetic" or key not in cache:
                e = _embed(model, [blank_below(r[1], r[2].landmarks, upper_cut) for r in items], [r[2] for r in items])
                if cond == "synthetic":
                    pe = e
                else:
                    cache[key] = pe = e
            else:
                pe = cache[key]
            pid = np.array([code[identities[r[0]]] for r in items])
            upper[cond] = _scores(pe, re, pid, rid)
    t_embed = time.perf_counter() - t1
    # The identities every condition has: weights and bootstrap over the same people.
    n_id = len(names)
    metrics = {c: _metrics(comps[c], None, fmr) for c in CONDITIONS}
    metrics_upper = {c: _metrics(upper[c], None, fmr) for c in upper}
    fkey = f"fnmr@fmr{fmr:g}"
    per_draw, on_common = [], None
    if draws > 1:
        cdraw = np.repeat(draw_of, rid.size)
        for d in range(draws):
            keep = cdraw == d
            md = _metrics(_subset(comps["synthetic"], keep), None, fmr) if keep.any() else None
            per_draw.append({"draw": d, "seed": draw_seed(seed, d), "probes": int((draw_of == d).sum()),
                             "lost": len(lost[d]), "metrics": md,
                             "ratio": None if md is None else {m: realism_ratio(metrics["unmasked"][m], md[m],
                                                                                metrics["real"][m]) for m in ("eer", fkey)}})
        # The same on the identities every draw kept (no identity enters or leaves between draws):
        # tells the pooling of draws apart from the identities that only some draws keep.
        cpid = comps["synthetic"]["probe_identity"]
        common = sorted(set.intersection(*(set(cpid[cdraw == d].tolist()) for d in range(draws))))
        kc = np.isin(cpid, common)
        on_common = {"identities": len(common), "pooled": _metrics(_subset(comps["synthetic"], kc), None, fmr),
                     "per_draw": [_metrics(_subset(comps["synthetic"], kc & (cdraw == d)), None, fmr)
                                  for d in range(draws)]} if common else None
    point = {m: realism_ratio(metrics["unmasked"][m], metrics["synthetic"][m], metrics["real"][m]) for m in ("eer", fkey)}
    rng = np.random.default_rng(derive_seed(seed, "realism_bootstrap"))
    boot = {m: [] for m in ("eer", fkey)}
    boot_diff = {m: [] for m in ("eer", fkey)}
    boot_up = {m: [] for m in ("eer", fkey)}
    boot_adj = {m: [] for m in ("eer", fkey)}
    for _ in range(bootstrap):
        cnt = np.bincount(rng.integers(0, n_id, n_id), minlength=n_id)
        try:
            mb = {c: _metrics(comps[c], cnt, fmr) for c in CONDITIONS}
            ub = {c: _metrics(upper[c], cnt, fmr) for c in upper}
        except DataFormatError:
            continue
        for m in boot:
            r = realism_ratio(mb["unmasked"][m], mb["synthetic"][m], mb["real"][m])
            if r is not None:
                boot[m].append(r)
            boot_diff[m].append(mb["synthetic"][m] - mb["real"][m])
            if ub:
                boot_up[m].append(ub["real"][m] - ub["synthetic"][m])
                a = adjusted_ratio(mb["unmasked"][m], mb["synthetic"][m], mb["real"][m], ub["synthetic"][m], ub["real"][m])
                if a is not None:
                    boot_adj[m].append(a)

    def ci(v):
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) >= 20 else None

    out: dict[str, Any] = {
        "benchmark": str(root), "probe_list": str(probe_list), "people_file": None if people_file is None else str(people_file),
        "model": getattr(model, "fingerprint", type(model).__name__),
        "masks": {"renderer": renderer, "revision": renderer_revision(renderer), "kind": kind, "seed": seed,
                  "draws": draws},
        "detector": getattr(det, "name", type(det).__name__), "pad": pad, "holdout": holdout, "fmr": fmr,
        "people": len(names), "references": len(ref),
        "counts": counts, "dropped_no_face": {k: len(v) for k, v in dropped.items()},
        "dropped_files": dropped,
        "synthetic_lost_per_draw": [len(lost[d]) for d in range(draws)],
        "per_draw": per_draw or None,
        "draws_on_common_identities": on_common,
        "metrics": metrics,
        "ratio": {m: {"point": point[m], "ci95": ci(boot[m]), "replicates": len(boot[m])} for m in boot},
        "synthetic_minus_real": {m: {"point": metrics["synthetic"][m] - metrics["real"][m], "ci95": ci(boot_diff[m])}
                                 for m in boot_diff},
        "upper_face_control": None if not upper else {
            "cut": upper_cut, "what": "probe photos blanked from face-frame height cut (0 eyes, 1 mouth) down; "
                                      "references untouched",
            "metrics": metrics_upper,
            "real_minus_synthetic": {m: {"point": metrics_upper["real"][m] - metrics_upper["synthetic"][m],
                                         "ci95": ci(boot_up[m])} for m in boot_up},
            "adjusted_ratio": {m: {"point": adjusted_ratio(metrics["unmasked"][m], metrics["synthetic"][m],
                                                           metrics["real"][m], metrics_upper["synthetic"][m],
                                                           metrics_upper["real"][m]),
                                   "ci95": ci(boot_adj[m]), "replicates": len(boot_adj[m])} for m in boot_adj},
        },
        "bootstrap": {"replicates": bootstrap, "over": "probe identities (percentile interval)"},
        "weighting": "each probe identity's genuine comparisons weigh 1 in total, and so do its impostor comparisons",
        "caveat": SESSION_CAVEAT,
        "seconds": {"detect_and_mask": round(t_detect, 1), "embed": round(t_embed, 1)},
    }
    # Contact sheet: per person (the first sheet_rows with a real masked probe and a synthetic one):
    # real | synthetic | the same probe unmasked.
    rows = []
    by_real = {identities[i]: (img, f) for i, img, f in loaded["real"]}
    clean = {i: (img, f) for i, img, f in loaded["unmasked"]}
    for (i, simg, sf), d in zip(synth, draw_of.tolist()):
        n = identities[i]
        if d != 0:
            break
        if n in by_real:
            rimg, rf = by_real[n]
            rows.append(np.concatenate([_crop_view(rimg, rf), _crop_view(simg, sf), _crop_view(*clean[i])], 1))
        if len(rows) >= sheet_rows:
            break
    out["_sheet"] = np.concatenate(rows, 0) if rows else None
    return out


from .realism_report import realism_report  # noqa: E402,F401  (re-exported: its old home)

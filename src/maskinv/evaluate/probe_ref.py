"""Probe/reference protocol: every listed (probe) image against every unlisted (reference) image.

This is how the MaskInv paper scores MFR2: masked probes against unmasked references, all
against all. A pair list of a few hundred impostor pairs cannot measure FMR1000 or TAR at
FAR 1:2000; the all-against-all set (P × R comparisons) can.

Each image is embedded once and all comparisons are one matrix product ``E_p @ E_r.T``
(float64), flattened row-major: comparison ``k`` is probe ``k // R`` against reference
``k % R``. Genuine = same identity (folder name).

Operating-point rule: TAR at FAR ``f`` (and FMR100/FMR1000, the FNMR at FMR <= 1 % / 0.1 %)
is reported only when there are at least ``min_false_matches / f`` impostor comparisons, i.e.
when the operating point admits at least ``min_false_matches`` false matches; otherwise it is
``None`` with the reason in ``undefined``. Default 1 (as :func:`verification_metrics`);
``false_matches_at_far`` reports how many false matches each operating point allows, so a
reader can see how many impostor scores decide it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError
from maskinv.masks.protocols import PROBE_REF

from .metrics import FAR_GRID, verification_metrics

__all__ = ["PROBE_REF", "ARRAY_KEYS", "read_probe_list", "probe_ref_scores", "probe_ref_metrics",
           "probe_ref_from_embeddings", "report_metrics"]

#: Per-comparison arrays in a probe_ref result (not JSON material).
ARRAY_KEYS = ("scores", "genuine", "probe_identity", "reference_identity")


def _norm(text: str) -> str:
    t = text.strip().replace("\\", "/")
    while t.startswith("./"):
        t = t[2:]
    return t.lower()


def read_probe_list(path: str | os.PathLike, keys: Sequence[str]) -> np.ndarray:
    """Which of the images ``keys`` (paths relative to the benchmark folder) ``path`` lists.

    One entry per line: a relative path (``Name/Name_0001.png``, extension optional) or a
    file stem (``Name_0001``); case-insensitive; blank lines and ``#`` comments skipped.
    An entry that matches no image (or a stem that matches several) raises
    :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: probe list not found")
    by_path: dict[str, int] = {}
    by_stem: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        k = _norm(key)
        by_path[k] = i
        no_ext = k.rsplit(".", 1)[0] if "." in k.rsplit("/", 1)[-1] else k
        by_path.setdefault(no_ext, i)
        by_stem.setdefault(no_ext.rsplit("/", 1)[-1], []).append(i)
    listed = np.zeros(len(keys), bool)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({exc})") from None
    entries = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        k = _norm(entry)
        i = by_path.get(k)
        if i is None and "/" not in k:
            hits = by_stem.get(k.rsplit(".", 1)[0] if "." in k else k, [])
            if len(hits) > 1:
                raise DataFormatError(f"{path}: line {lineno}: {entry!r} matches {len(hits)} images; give the relative path")
            i = hits[0] if hits else None
        if i is None:
            raise DataFormatError(f"{path}: line {lineno}: {entry!r} is not an image of the benchmark")
        listed[i] = True
        entries += 1
    if entries == 0:
        raise DataFormatError(f"{path}: no entries")
    return listed


def probe_ref_scores(embeddings: np.ndarray, identities: Sequence[str], is_probe: np.ndarray,
                     valid: np.ndarray | None = None) -> dict[str, Any]:
    """All probe × reference cosine scores from per-image L2-normalised embeddings.

    Returns ``scores`` (P·R,) float64, ``genuine`` (P·R,) bool, ``probe_index`` (P,) and
    ``reference_index`` (R,) into the image list, ``probe_identity``/``reference_identity``
    (P·R,) int32 codes into ``identity_names``.
    """
    emb = np.asarray(embeddings)
    n = emb.shape[0]
    is_probe = np.asarray(is_probe, bool)
    ok = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if is_probe.shape != (n,) or ok.shape != (n,) or len(identities) != n:
        raise ConfigError(f"probe_ref: {n} embeddings, {is_probe.shape[0]} probe flags, {ok.shape[0]} valid flags, "
                          f"{len(identities)} identities; all must match")
    pi = np.flatnonzero(is_probe & ok)
    ri = np.flatnonzero(~is_probe & ok)
    if pi.size == 0 or ri.size == 0:
        raise DataFormatError(f"probe_ref: {pi.size} probe and {ri.size} reference images; both sides need at least one")
    names, codes = np.unique(np.asarray(identities, dtype=object).astype(str), return_inverse=True)
    codes = codes.astype(np.int32)
    e = emb.astype(np.float64, copy=False)
    scores = (e[pi] @ e[ri].T).ravel()
    pc, rc = codes[pi], codes[ri]
    return {
        "scores": scores,
        "genuine": (pc[:, None] == rc[None, :]).ravel(),
        "probe_index": pi,
        "reference_index": ri,
        "probe_identity": np.repeat(pc, ri.size),
        "reference_identity": np.tile(rc, pi.size),
        "identity_names": [str(x) for x in names],
    }


def probe_ref_metrics(scores: np.ndarray, genuine: np.ndarray, *, far_targets: Iterable[float] = FAR_GRID,
                      min_false_matches: int = 1, folds: int = 10, exact: bool = False) -> dict[str, Any]:
    """:func:`verification_metrics` with the operating-point rule of this module applied."""

    if min_false_matches < 1:
        raise ConfigError(f"min_false_matches must be >= 1, got {min_false_matches}")
    fars = tuple(float(f) for f in far_targets)
    m = verification_metrics(scores, genuine, folds=folds, far_targets=fars, exact=exact)
    n_imp = m["num_impostor"]
    allowed: dict[float, int] = {}
    for far in sorted(set(m["tar_at_far"]) | {1e-2, 1e-3}, reverse=True):
        allowed[far] = int(np.floor(n_imp * far + 1e-9))
        if allowed[far] >= min_false_matches:
            continue
        reason = (f"needs >= {int(np.ceil(min_false_matches / far - 1e-9))} impostor comparisons "
                  f"(>= {min_false_matches} false matches at FMR <= {far:g}), have {n_imp}")
        if far in m["tar_at_far"]:
            m["tar_at_far"][far] = m["threshold_at_fmr"][far] = None
            m["undefined"][f"tar_at_far[{far:g}]"] = m["undefined"][f"threshold_at_fmr[{far:g}]"] = reason
        key = {1e-2: "fmr100", 1e-3: "fmr1000"}.get(far)
        if key:
            m[key] = None
            m["undefined"][key] = reason
    m["false_matches_at_far"] = {f: allowed[f] for f in sorted(allowed, reverse=True)}
    m["far_rule"] = f"TAR at FAR f reported when #impostors >= {min_false_matches}/f"
    return m


def probe_ref_from_embeddings(
    embeddings: np.ndarray,
    identities: Sequence[str],
    is_probe: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    folds: int = 10,
    exact: bool = False,
    far_targets: Iterable[float] = FAR_GRID,
    min_false_matches: int = 1,
) -> dict[str, Any]:
    """probe_ref metrics from per-image L2-normalised embeddings (rows of dropped images are ignored),
    whoever computed them (any backend, original photos; :func:`maskinv.evaluate.runner.score_benchmark`).
    Returns :func:`probe_ref_metrics` plus the arrays of :func:`probe_ref_scores` and the counts
    ``num_probes``, ``num_references``, ``num_images_dropped``."""
    ok = np.ones(len(identities), bool) if valid is None else np.asarray(valid, bool)
    is_probe = np.asarray(is_probe, bool)
    comp = probe_ref_scores(embeddings, identities, is_probe, ok)
    m = probe_ref_metrics(comp["scores"], comp["genuine"], far_targets=far_targets,
                          min_false_matches=min_false_matches, folds=folds, exact=exact)
    m.update(
        scores=comp["scores"], genuine=comp["genuine"],
        probe_identity=comp["probe_identity"], reference_identity=comp["reference_identity"],
        identity_names=comp["identity_names"],
        num_probes=int(comp["probe_index"].size), num_references=int(comp["reference_index"].size),
        num_images_dropped=int((~ok).sum()),
        num_probes_dropped=int((~ok & is_probe).sum()), num_references_dropped=int((~ok & ~is_probe).sum()),
    )
    return m


def report_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """``m`` without the per-comparison identity arrays (kept: ``scores``/``genuine``, which
    reports write as CSV): what goes into a results document."""
    return {k: v for k, v in m.items() if k not in ("probe_identity", "reference_identity", "identity_names")}

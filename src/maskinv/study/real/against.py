"""This run's rows against the same rows of an earlier run that differs only in the mask renderer.

Issue 21's transfer check asks whether MaskInv trained with ``mesh`` masks does at least as well on
real masks as with ``v1``. Two runs of ``maskinv study-real`` answer it only when they differ in
nothing else, so ``--against RUN`` first checks that (settings, recogniser weights, split files), then
scores the other run's trained rows on *this* run's aligned RMFD test set and LFW clean pairs and
reports ``row(this) − row(other)`` with the same identity-clustered paired bootstrap as the
differences against SFace. Only comparisons that do not depend on the renderer are paired: RMFD
(real masks) and LFW U-U. LFW M-U / M-M carry each run's own synthetic test masks, so they are not.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from maskinv.errors import CheckpointError, ConfigError, DataFormatError

__all__ = ["AGAINST_MAY_DIFFER", "read_against", "load_against", "compare_against"]

#: Settings the two runs may differ in: the compared factor.
AGAINST_MAY_DIFFER = ("renderer", "renderer_revision")
#: Settings that do not change a row's weights or its test scores.
_IGNORED = ("n_boot", "feature_batch", "with_hg", "with_adapt")


def _read_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no results.json (--against needs a finished study-real run)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{path}: not a study-real results.json ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict) or "results" not in doc:
        raise DataFormatError(f"{path}: not a study-real results.json (no settings/results)")
    return doc


def read_against(run_dir: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The other run's results.json, after checking its settings differ from ``settings`` only in
    :data:`AGAINST_MAY_DIFFER` (called before this run writes anything)."""
    run_dir = Path(run_dir)
    doc = _read_results(run_dir)
    theirs = doc["settings"]
    for k in sorted(set(settings) | set(theirs)):
        if k in AGAINST_MAY_DIFFER or k in _IGNORED or k.startswith("select_"):
            continue
        if settings.get(k) != theirs.get(k):
            raise ConfigError(f"--against {run_dir}: setting {k} differs ({theirs.get(k)!r} there, {settings.get(k)!r} "
                              f"here); compared runs may differ only in {', '.join(AGAINST_MAY_DIFFER)}", key=k)
    return doc


def load_against(run_dir: str | Path, doc: dict[str, Any], ctx: Any, rows: list[str]) -> dict[str, Any]:
    """{row: model} of the other run (``doc``: :func:`read_against`) for the rows both runs have,
    after checking its recogniser weights and split files are this run's and each weights file
    matches its record."""
    import torch

    from maskinv.utils.hashing import file_sha256

    run_dir = Path(run_dir)
    fp = (doc.get("recogniser") or {}).get("weights_fingerprint")
    if fp != ctx.weights_fingerprint:
        raise ConfigError(f"--against {run_dir}: the recogniser's weights differ ({str(fp)[:16]}… there, "
                          f"{ctx.weights_fingerprint[:16]}… here)")
    sp = (doc.get("splits") or {}).get("sha256")
    if sp != ctx.splits.sha256:
        raise ConfigError(f"--against {run_dir}: the split files differ (sha256 {str(sp)[:16]}… there, "
                          f"{ctx.splits.sha256[:16]}… here)")
    models: dict[str, Any] = {}
    for name in rows:
        if name not in doc["results"]:
            continue
        w, rp = run_dir / "models" / f"{name}.pt", run_dir / "models" / f"{name}.row.json"
        try:
            rec = json.loads(rp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFormatError(f"{rp}: the row record of {name} is missing or unreadable ({e})") from None
        if not w.is_file() or file_sha256(w) != rec.get("weights_sha256"):
            raise CheckpointError(f"{w}: missing, or its sha256 differs from {rp}")
        m = copy.deepcopy(ctx.model)
        m.load_state_dict(torch.load(w, map_location="cpu", weights_only=True), strict=True)
        models[name] = m.eval()
    if not models:
        raise DataFormatError(f"{run_dir}: none of the rows {', '.join(rows)} was trained there")
    return models


def compare_against(ctx: Any, other_models: dict[str, Any], scores: dict[str, Any], *, rmfd_keys: list[str],
                    rmfd_set: Any, is_probe: np.ndarray, rmfd_genuine: np.ndarray, rmfd_groups: np.ndarray,
                    lfw_clean_keys: list[str], pairs: Any, issame: np.ndarray, lfw_groups: np.ndarray,
                    rmfd_boot: tuple[str, ...], n_boot: int, seed: int, memo_rmfd: dict,
                    memo_lfw_uu: dict) -> list[dict[str, Any]]:
    """``row(this) − row(other)`` on RMFD test and LFW U-U for every row of ``other_models``.

    ``rmfd_genuine``/``rmfd_groups``/``issame``/``lfw_groups`` and the memos are the run's own
    objects: the bootstrap's resamples (for RMFD 1,000 x 205,465 indices) are keyed by object
    identity, so passing the same objects reuses them instead of holding a copy per row."""
    from maskinv.masks.protocols import PROBE_REF, UU

    from .scoring import compare, lfw_scores, rmfd_scores

    out = []
    for name, model in other_models.items():
        tail = ctx.row_tail(model)
        ec = ctx.embed_keys(tail, lfw_clean_keys)
        ls = lfw_scores(ec, ec, pairs.first, pairs.second, protocols=(UU,))[UU]
        rs = rmfd_scores(ctx.embed_keys(tail, rmfd_keys), rmfd_set.identities, is_probe)
        if not np.array_equal(rs["genuine"], rmfd_genuine):
            raise AssertionError("RMFD comparisons differ between the runs' rows")  # same aligned set: cannot happen
        for bench, proto, a, b, gen, grp, mets, folds, memo in (
                ("rmfd_test", PROBE_REF, rs["scores"], scores[name]["rmfd"], rmfd_genuine, rmfd_groups, rmfd_boot, 10,
                 memo_rmfd),
                ("lfw_test", UU, ls, scores[name]["lfw"][UU], issame, lfw_groups, ("accuracy", "eer"), 5,
                 memo_lfw_uu)):
            r = compare(a, b, gen, grp, mets, n_boot=n_boot, seed=seed, folds=folds, memo=memo)
            out.append({"row": name, "benchmark": bench, "protocol": proto, "difference": "this − other (points)",
                        "resampling": r["resampling"], "n_clusters": r["n_clusters"], "n_boot": r["n_boot"],
                        "metrics": r["metrics"]})
    return out

"""Scores, metrics and identity-clustered paired intervals of the real study.

* LFW (folds 6-10 of ``aligned112``, 3,000 pairs): U-U / M-U / M-M, 5-fold accuracy (LFW protocol over
  the five folds, InsightFace threshold grid), EER, TAR at FAR. Each image has one renderer-v1
  mask (seeded by its key): M-U masks the second image of a pair, M-M both. Pair clusters for the
  bootstrap: the person of the pair's first image (a genuine pair's person; an impostor pair's
  first person), so pairs sharing a person are resampled together.
* RMFD probe/reference: every masked probe against every unmasked reference of the subset's people
  (:func:`maskinv.evaluate.probe_ref.probe_ref_scores`), clusters = the probe's subject.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from maskinv.masks.protocols import PROTOCOL_TABLE, PROTOCOLS

__all__ = ["lfw_scores", "lfw_metrics", "rmfd_scores", "rmfd_metrics", "compare", "PROTOCOLS", "RMFD_FARS"]

RMFD_FARS = (1e-2, 1e-3, 5e-4)


def lfw_scores(clean: np.ndarray, masked: np.ndarray, first: np.ndarray, second: np.ndarray,
               protocols: tuple[str, ...] = PROTOCOLS) -> dict[str, np.ndarray]:
    """Pair scores per protocol from per-image embeddings (clean, and masked by renderer v1)."""
    from maskinv.models.embedding import pair_scores

    side = lambda masks: masked if masks else clean  # noqa: E731  (the table says which side a protocol masks)
    return {p: pair_scores(side(PROTOCOL_TABLE[p].masks_reference)[first], side(PROTOCOL_TABLE[p].masks_probe)[second])
            for p in protocols}


def lfw_metrics(scores: np.ndarray, issame: np.ndarray, folds: int) -> dict[str, Any]:
    from maskinv.evaluate.metrics import verification_metrics

    m = verification_metrics(scores, issame, folds=folds, far_targets=(1e-2, 1e-3))
    return _slim(m)


def rmfd_scores(emb: np.ndarray, identities: list[str], is_probe: np.ndarray) -> dict[str, Any]:
    from maskinv.evaluate.probe_ref import probe_ref_scores

    return probe_ref_scores(emb, identities, is_probe)


def rmfd_metrics(scores: np.ndarray, genuine: np.ndarray) -> dict[str, Any]:
    from maskinv.evaluate.probe_ref import probe_ref_metrics

    return _slim(probe_ref_metrics(scores, genuine, far_targets=RMFD_FARS, folds=10))


def _slim(m: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy_mean", "accuracy_std", "accuracy_folds", "eer", "eer_threshold", "fmr100", "fmr1000", "auc",
            "fdr", "tar_at_far", "num_genuine", "num_impostor", "num_pairs", "folds", "undefined")
    out = {k: m[k] for k in keep if k in m}
    out["tar_at_far"] = {f"{float(k):g}": v for k, v in (m.get("tar_at_far") or {}).items()}
    return out


def compare(a: np.ndarray, b: np.ndarray, genuine: np.ndarray, groups: np.ndarray, metrics: tuple[str, ...], *,
            n_boot: int, seed: int, folds: int, memo: dict) -> dict[str, Any]:
    """Paired bootstrap of metric(b) - metric(a), whole identity clusters resampled."""
    from maskinv.evaluate.bootstrap import paired_bootstrap

    r = paired_bootstrap(a, b, genuine, n_boot=n_boot, seed=seed, metrics=metrics, groups=groups, folds=folds,
                         memo=memo)
    return r

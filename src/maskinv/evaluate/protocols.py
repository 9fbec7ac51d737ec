"""Masked verification protocols on a pair list (``.bin``): U-U, M-U, M-M.

* ``uu`` — no image masked.
* ``mu`` — exactly one image of every pair masked: the second one (the probe), the first
  stays clean. (The public MaskInv evaluation masked the second *half of the image list*,
  which yields half U-U and half M-M pairs; that is not M-U.)
* ``mm`` — both images masked, each with its own mask.

Masks come from :func:`maskinv.masks.mask_pair_images`, where image ``i``'s mask depends on
``(seed, i)`` only, so the masked second images of ``mu`` and ``mm`` are the same bytes. Each
distinct image set is therefore embedded once: the clean images (for ``uu`` and the first
side of ``mu``), the masked second images (``mu`` and ``mm``) and the masked first images
(``mm``).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from maskinv.errors import MaskinvError
from maskinv.masks.protocols import MASKED_PROTOCOLS, PROTOCOL_TABLE, PROTOCOLS, parse_protocols

from .benchmarks import load_benchmark
from .metrics import FAR_GRID, verification_metrics
# the embedding core lives in maskinv.models.embedding; these names stay importable from here
from maskinv.models.embedding import embed_images, eval_mode, model_input_size, pair_scores  # noqa: F401
from maskinv.models.embedding import inference_precision as resolve_precision  # noqa: F401

__all__ = ["PROTOCOLS", "parse_protocols", "embed_images", "pair_scores", "load_bench", "masked_images",
           "embed_protocols", "evaluate_arrays", "resolve_precision"]


def load_bench(bench: str | os.PathLike | Sequence) -> tuple[np.ndarray, np.ndarray, str]:
    """A ``.bin`` path or an ``(images (2N,H,W,3), issame (N,))`` tuple -> arrays and a name
    (through :func:`maskinv.evaluate.benchmarks.load_benchmark`, the one benchmark loader)."""
    b = load_benchmark(bench)
    return b.images, b.issame, b.meta.get("path") or "<arrays>"


def masked_images(images: np.ndarray, protocols: Sequence[str], seed: int, kind: str) -> np.ndarray | None:
    """All images masked on every side a requested protocol masks (``mu``: the probes; ``mu`` and
    ``mm``: every image; each protocol reads only the sides it masks), or None when none masks.
    Image ``i``'s mask depends on ``(seed, i)`` alone, so a side is masked the same whichever
    protocols are requested."""
    protos = parse_protocols(protocols)
    masking = [PROTOCOL_TABLE[p] for p in protos if PROTOCOL_TABLE[p].masked]
    if not masking:
        return None
    from maskinv.masks import mask_pair_images

    ref, probe = any(p.masks_reference for p in masking), any(p.masks_probe for p in masking)
    covers = [p for p in PROTOCOLS if (PROTOCOL_TABLE[p].masks_reference or not ref) and (PROTOCOL_TABLE[p].masks_probe or not probe)]
    fewest = min(covers, key=lambda p: PROTOCOL_TABLE[p].masks_reference + PROTOCOL_TABLE[p].masks_probe)
    return mask_pair_images(images, fewest, seed, kind=kind)


def embed_protocols(
    model: Any,
    images: np.ndarray,
    masked: np.ndarray | None,
    protocols: Sequence[str],
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    **embed_kw: Any,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Embeddings (first, second) per protocol, embedding each distinct image set once.

    Which side of a pair is masked comes from :data:`maskinv.masks.protocols.PROTOCOL_TABLE`.
    ``embed(images) -> (N, D)`` replaces :func:`embed_images` (``model`` and ``embed_kw`` are then
    unused): models that are not torch modules (ONNX, dlib) bring their own."""
    protos = parse_protocols(protocols)
    if embed is None:
        def embed(imgs: np.ndarray) -> np.ndarray:
            return embed_images(model, imgs, **embed_kw)
    table = [PROTOCOL_TABLE[p] for p in protos]
    if any(p.masked for p in table) and (masked is None or masked.shape != images.shape):
        raise MaskinvError(f"masked images are required for the {'/'.join(MASKED_PROTOCOLS)} protocols")
    both = [p.name for p in table if p.masks_reference]
    if both and np.array_equal(masked[0::2], images[0::2]):
        # e.g. masks made for "mu" only: the masked reference side would silently stay clean
        raise MaskinvError(f"{both[0]} needs masked first images; build them with "
                           f"masked_images(..., protocols including '{both[0]}')")
    sides: dict[tuple[int, bool], np.ndarray] = {}  # (side, masked) -> embeddings, each computed once
    if any(not p.masks_reference for p in table) and any(not p.masks_probe for p in table):
        e = embed(images)  # both clean sides are needed: one pass, as the U-U pairs are embedded
        sides[(0, False)], sides[(1, False)] = e[0::2], e[1::2]

    def side(k: int, is_masked: bool) -> np.ndarray:
        if (k, is_masked) not in sides:
            sides[(k, is_masked)] = embed((masked if is_masked else images)[k::2])
        return sides[(k, is_masked)]

    return {p.name: (side(0, p.masks_reference), side(1, p.masks_probe)) for p in table}


def evaluate_arrays(
    model: Any,
    images: np.ndarray,
    issame: np.ndarray,
    masked: np.ndarray | None,
    protocols: Sequence[str],
    *,
    flip: bool = True,
    batch_size: int = 256,
    device: Any = None,
    precision: str = "auto",
    folds: int = 10,
    far_targets: Iterable[float] = FAR_GRID,
    exact: bool = False,
    channels_last: bool | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Pair-protocol metrics on decoded pairs and their :func:`masked_images` (``None`` for ``uu``
    only): the pair half of :func:`maskinv.evaluate.runner.score_benchmark`, and the training
    callback's scorer (both mask once and reuse the result). Returns ``{protocol:
    verification_metrics(...) + {"scores": (N,) float64, "genuine": (N,) bool}}``.
    ``embed``: see :func:`embed_protocols` (the embedding options are then the callable's)."""
    embs = embed_protocols(model, images, masked, protocols, embed, batch_size=batch_size, flip=flip, device=device,
                           precision=precision, channels_last=channels_last)
    results: dict[str, dict[str, Any]] = {}
    for proto, (a, b) in embs.items():
        scores = pair_scores(a, b)
        m = verification_metrics(scores, issame, folds=folds, far_targets=far_targets, exact=exact)
        m["scores"] = scores
        m["genuine"] = issame.copy()
        results[proto] = m
    return results

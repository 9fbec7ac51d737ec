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

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from maskinv.errors import DataFormatError, MaskinvError

PROTOCOLS = ("uu", "mu", "mm")


def parse_protocols(protocols: str | Iterable[str]) -> tuple[str, ...]:
    """``"uu,mu"`` or an iterable -> validated tuple in canonical order, no duplicates."""
    items = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    names = [str(p).strip().lower().replace("-", "") for p in items if str(p).strip()]
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise MaskinvError(f"unknown protocol(s) {bad or items!r}; choose from {', '.join(PROTOCOLS)}")
    return tuple(p for p in PROTOCOLS if p in names)


def model_input_size(model: Any) -> int | None:
    """The square input side a model expects (``model.arch['kwargs']['input_size']``), if known."""
    inner = getattr(model, "module", model)  # DDP / DataParallel
    arch = getattr(inner, "arch", None)
    if isinstance(arch, dict):
        size = (arch.get("kwargs") or {}).get("input_size")
        if size:
            return int(size)
    size = getattr(inner, "input_size", None)
    return int(size) if isinstance(size, (int, np.integer)) else None


@contextlib.contextmanager
def eval_mode(model: Any):
    """Put ``model`` in eval mode; restore every submodule's own train/eval flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = images.shape[1:3]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def _check_images(images: Any, name: str = "images") -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataFormatError(f"{name}: expected uint8 RGB images (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def resolve_precision(precision: str, device: Any = None) -> str:
    """``"auto"`` -> ``"bf16"`` or ``"fp32"`` for ``device`` (default CPU), as
    :mod:`maskinv.utils.precision` defines it for inference; others unchanged."""
    from maskinv.utils.precision import resolve_precision as _resolve

    return _resolve(precision, device, training=False)


def embed_images(
    model: Any,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    flip: bool = True,
    device: Any = None,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> np.ndarray:
    """Embed uint8 RGB images (N, H, W, 3) -> float32 (N, D), L2-normalised.

    Args:
        model: a backbone (``nn.Module``); its train/eval flags are restored afterwards.
        batch_size: images per forward pass (the flip test doubles the forward batch).
        flip: embedding = normalize(f(x) + f(flip(x))) (horizontal flip).
        device: where to run; default the model's device. The model is moved there for the
            call and moved back afterwards.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 where the device has
            native bf16, else fp32).
        channels_last: run the model in channels_last memory format; ``None`` = on CUDA
            always, on CPU for inputs >= 112 px (measured: faster at 112 px with bf16, slower
            for small nets at 64 px).

    Images whose size differs from the model's ``input_size`` are resized with a warning.
    """
    import torch
    import torch.nn.functional as F

    from maskinv.preprocess import to_tensor

    arr = _check_images(images)
    if batch_size < 1:
        raise MaskinvError(f"batch_size must be >= 1, got {batch_size}")
    params = list(model.parameters())
    home = params[0].device if params else torch.device("cpu")
    dev = torch.device(device) if device is not None else home
    use_bf16 = resolve_precision(precision, dev) == "bf16"
    size = model_input_size(model)
    if size is not None and arr.shape[1:3] != (size, size):
        warnings.warn(
            f"resizing {arr.shape[0]} images from {arr.shape[1]}x{arr.shape[2]} to the model's input size {size}x{size}",
            stacklevel=2,
        )
    side = size or arr.shape[1]
    if channels_last is None:
        channels_last = dev.type == "cuda" or side >= 112
    conv_params = [p for p in params if p.dim() == 4]
    was_cl = bool(conv_params) and conv_params[0].is_contiguous(memory_format=torch.channels_last) and not conv_params[0].is_contiguous()

    chunks = []
    with eval_mode(model):
        if dev != home:
            model.to(dev)
        if channels_last != was_cl:
            model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        try:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                for start in range(0, arr.shape[0], batch_size):
                    batch = arr[start : start + batch_size]
                    if size is not None and batch.shape[1:3] != (size, size):
                        batch = _resize(batch, size)
                    x = to_tensor(batch, device=dev, channels_last=channels_last)
                    b = x.shape[0]
                    if flip:
                        x = torch.cat([x, x.flip(3)])
                    y = model(x).float()
                    if flip:
                        y = y[:b] + y[b:]
                    chunks.append(F.normalize(y, dim=1).cpu().numpy())
        finally:
            if channels_last != was_cl:
                model.to(memory_format=torch.channels_last if was_cl else torch.contiguous_format)
            if dev != home:
                model.to(home)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def pair_scores(emb_first: np.ndarray, emb_second: np.ndarray) -> np.ndarray:
    """Cosine similarity of row-aligned L2-normalised embeddings, float64 (N,)."""
    return np.einsum("ij,ij->i", emb_first.astype(np.float64), emb_second.astype(np.float64))


def load_bench(bench: str | os.PathLike | Sequence) -> tuple[np.ndarray, np.ndarray, str]:
    """A ``.bin`` path or an ``(images (2N,H,W,3), issame (N,))`` tuple -> arrays and a name."""
    if isinstance(bench, (str, os.PathLike)):
        from maskinv.data.bins import decode_bin

        path = Path(bench)
        images, issame = decode_bin(path)
        name = str(path)
    else:
        try:
            images, issame = bench
        except (TypeError, ValueError):
            raise MaskinvError("bench must be a .bin path or an (images, issame) tuple") from None
        name = "<arrays>"
    images = _check_images(images, name)
    issame = np.asarray(issame)
    if issame.ndim != 1 or images.shape[0] != 2 * issame.shape[0]:
        raise DataFormatError(f"{name}: {images.shape[0]} images for {issame.shape[0]} pairs (need 2 per pair)")
    return images, issame.astype(bool), name


def masked_images(images: np.ndarray, protocols: Sequence[str], seed: int, kind: str) -> np.ndarray | None:
    """All images masked as ``mm`` would mask them (``mu`` uses the odd ones), or None for ``uu`` only."""
    protos = parse_protocols(protocols)
    if "mu" not in protos and "mm" not in protos:
        return None
    from maskinv.masks import mask_pair_images

    if "mm" in protos:
        return mask_pair_images(images, "mm", seed, kind=kind)
    # mu only: the clean first images are never used from this array
    return mask_pair_images(images, "mu", seed, kind=kind)


def embed_protocols(
    model: Any,
    images: np.ndarray,
    masked: np.ndarray | None,
    protocols: Sequence[str],
    **embed_kw: Any,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Embeddings (first, second) per protocol, embedding each distinct image set once."""
    protos = parse_protocols(protocols)
    need_masked = "mu" in protos or "mm" in protos
    if need_masked and (masked is None or masked.shape != images.shape):
        raise MaskinvError("masked images are required for the mu/mm protocols")
    if "mm" in protos and np.array_equal(masked[0::2], images[0::2]):
        # e.g. masks made for "mu" only: the mm gallery side would silently stay clean
        raise MaskinvError("mm needs masked first images; build them with masked_images(..., protocols including 'mm')")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    clean_first = clean_second = None
    if "uu" in protos:
        e = embed_images(model, images, **embed_kw)
        clean_first, clean_second = e[0::2], e[1::2]
        out["uu"] = (clean_first, clean_second)
    if need_masked:
        masked_second = embed_images(model, masked[1::2], **embed_kw)
        if "mu" in protos:
            if clean_first is None:
                clean_first = embed_images(model, images[0::2], **embed_kw)
            out["mu"] = (clean_first, masked_second)
        if "mm" in protos:
            out["mm"] = (embed_images(model, masked[0::2], **embed_kw), masked_second)
    return out


def evaluate_bin(
    model: Any,
    bench: str | os.PathLike | Sequence,
    *,
    protocols: str | Iterable[str] = PROTOCOLS,
    seed: int = 0,
    flip: bool = True,
    batch_size: int = 256,
    mask_kind: str = "random",
    device: Any = None,
    precision: str = "auto",
    folds: int = 10,
    far_targets: Iterable[float] = (1e-2, 1e-3, 1e-4),
    exact: bool = False,
) -> dict[str, dict[str, Any]]:
    """Verification metrics of ``model`` on a pair list under each protocol.

    Returns ``{protocol: verification_metrics(...) + {"scores": (N,) float64,
    "genuine": (N,) bool}}``. The model's train/eval flags are restored afterwards.
    """
    protos = parse_protocols(protocols)
    images, issame, _ = load_bench(bench)
    masked = masked_images(images, protos, seed, mask_kind)
    return evaluate_arrays(
        model, images, issame, masked, protos, flip=flip, batch_size=batch_size, device=device,
        precision=precision, folds=folds, far_targets=far_targets, exact=exact,
    )


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
    far_targets: Iterable[float] = (1e-2, 1e-3, 1e-4),
    exact: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_bin` on decoded arrays and their :func:`masked_images` (``None`` for
    ``uu`` only); the callback and ``maskinv eval`` mask once and reuse the result."""
    from .metrics import verification_metrics
    embs = embed_protocols(model, images, masked, protocols, batch_size=batch_size, flip=flip, device=device, precision=precision)
    results: dict[str, dict[str, Any]] = {}
    for proto, (a, b) in embs.items():
        scores = pair_scores(a, b)
        m = verification_metrics(scores, issame, folds=folds, far_targets=far_targets, exact=exact)
        m["scores"] = scores
        m["genuine"] = issame.copy()
        results[proto] = m
    return results

"""The one embedding core: aligned uint8 RGB crops -> L2-normalised embeddings.

Everything that turns face crops into templates goes through here — the facade
(:meth:`maskinv.api.FaceModel.embed_aligned`), evaluation (:func:`maskinv.evaluate.embed_images`)
and threshold calibration — so a threshold measured on a benchmark means the same thing when a
gate applies it to one pair. Numerics written once:

* flip test: ``normalize(f(x) + f(mirror(x)))``, one forward over ``[x; mirror(x)]``;
* precision: ``"auto"`` as :mod:`maskinv.utils.precision` defines it for inference;
* batching: ``batch_size`` images per forward (the flip test doubles the forward batch);
* the model's train/eval flags, device and memory format are restored afterwards.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from maskinv.errors import DataFormatError, MaskinvError
from maskinv.utils.images import resize_images, resize_note  # resize_images: re-exported (public name)


def inference_precision(precision: str, device: Any = None) -> str:
    """``"auto"`` -> ``"bf16"`` or ``"fp32"`` for ``device`` (default CPU); others checked and unchanged."""
    from maskinv.utils.precision import resolve_precision

    return resolve_precision(precision, device, training=False)


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


def check_images(images: Any, name: str = "images") -> np.ndarray:
    """``images`` as a uint8 (N, H, W, 3) array, or :class:`DataFormatError` naming ``name``."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataFormatError(f"{name}: expected uint8 RGB images (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def resized_note(resized: list[tuple[int, int]], total: int, s: int) -> None:
    """The facade's note for aligned crops of another size than the model's (``resized``: (w, h) each),
    pointing at the caller of the public function (:func:`maskinv.utils.images.resize_note`)."""
    resize_note(resized, s, total=total, stacklevel=4)


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) crops resized to ``size`` x ``size``, with the one note per call."""
    resized_note([(crops.shape[2], crops.shape[1])] * len(crops), len(crops), size)
    return resize_images(crops, size)


def embed_with(forward: Callable, images: np.ndarray, *, batch_size: int = 256, flip: bool = True,
               size: int | None = None, device: Any = None, channels_last: bool = False) -> np.ndarray:
    """The batching / flip-sum / normalise loop around any ``forward(float NCHW tensor) -> (B, D)
    tensor`` (a torch module under :func:`embed_images`, an ONNX session in the facade).

    ``size``: resize inputs of another size to this side first. Returns float32 (N, D).
    """
    import torch
    import torch.nn.functional as F

    from maskinv.preprocess import to_tensor

    arr = check_images(images)
    if batch_size < 1:
        raise MaskinvError(f"batch_size must be >= 1, got {batch_size}")
    chunks = []
    for start in range(0, arr.shape[0], batch_size):
        batch = arr[start : start + batch_size]
        if size is not None and batch.shape[1:3] != (size, size):
            batch = resize_images(batch, size)
        x = to_tensor(batch, device=device, channels_last=channels_last)
        b = x.shape[0]
        if flip:
            x = torch.cat([x, x.flip(3)])
        y = forward(x).float()
        if flip:
            y = y[:b] + y[b:]
        if not bool(torch.isfinite(y).all()):
            raise DataFormatError("the model produced NaN/infinite embeddings (broken or untrained weights?)")
        # outputs beyond ~1e19 overflow the squared norm: normalize() then returns all-zero rows
        n = F.normalize(y, dim=1)
        if not bool(torch.isfinite(n).all()) or bool((n.abs().amax(dim=1) == 0).any()):
            raise DataFormatError("the model produced all-zero embeddings (outputs zero or overflowing: "
                                  "broken or untrained weights?)")
        chunks.append(n.cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


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
    """Embed uint8 RGB images (N, H, W, 3) with a torch backbone -> float32 (N, D), L2-normalised.

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
            for small nets at 64 px). Switching it converts the model for the call, so callers
            sharing one model between threads (the facade) pass ``False``.

    Images whose size differs from the model's ``input_size`` are resized with a warning.
    """
    import torch

    arr = check_images(images)
    if batch_size < 1:
        raise MaskinvError(f"batch_size must be >= 1, got {batch_size}")
    params = list(model.parameters())
    home = params[0].device if params else torch.device("cpu")
    dev = torch.device(device) if device is not None else home
    use_bf16 = inference_precision(precision, dev) == "bf16"
    size = model_input_size(model)
    if size is not None and arr.shape[1:3] != (size, size):
        resize_note([(arr.shape[2], arr.shape[1])], size)  # no count (see resize_note)
    side = size or arr.shape[1]
    if channels_last is None:
        channels_last = dev.type == "cuda" or side >= 112
    conv_params = [p for p in params if p.dim() == 4]
    was_cl = bool(conv_params) and conv_params[0].is_contiguous(memory_format=torch.channels_last) and not conv_params[0].is_contiguous()

    with eval_mode(model):
        if dev != home:
            model.to(dev)
        if channels_last != was_cl:
            model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        try:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                return embed_with(model, arr, batch_size=batch_size, flip=flip, size=size, device=dev,
                                  channels_last=channels_last)
        finally:
            if channels_last != was_cl:
                model.to(memory_format=torch.channels_last if was_cl else torch.contiguous_format)
            if dev != home:
                model.to(home)


def l2_normalize(x: Any, *, what: str | None = None) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit length: float32, C-contiguous, computed in float64.

    The one NumPy normaliser of templates that do not come out of :func:`embed_images` (dlib
    descriptors, gallery enrolment). ``what`` set (templates a user hands in): a (D,) vector is one
    row, and another shape, NaN/inf or an all-zero row raise :class:`DataFormatError` naming
    ``what``; without it (a network's output) an all-zero row stays zero.
    """
    x = np.asarray(x, dtype=np.float64)
    if what is not None:
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise DataFormatError(f"{what}: expected (N, D) embeddings, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise DataFormatError(f"{what}: embeddings contain NaN or infinity")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if what is not None and np.any(norms == 0):
        raise DataFormatError(f"{what}: an embedding is all zeros")
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def pair_scores(emb_first: np.ndarray, emb_second: np.ndarray) -> np.ndarray:
    """Cosine similarity of row-aligned L2-normalised embeddings, float64 (N,): the score of a
    pair wherever one is scored (evaluation, calibration, ``verify``), same summation order."""
    return np.einsum("ij,ij->i", np.asarray(emb_first, np.float64), np.asarray(emb_second, np.float64))

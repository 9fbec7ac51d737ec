"""Image <-> tensor conversion with the published input convention (RGB, (x/255-0.5)/0.5)."""
from __future__ import annotations

import numpy as np

from .constants import PIXEL_MEAN, PIXEL_STD


def to_tensor(images: np.ndarray, device=None, channels_last: bool = False):
    """uint8 RGB images (N, H, W, 3) or (H, W, 3) -> float32 tensor (N, 3, H, W) in [-1, 1]."""
    import torch

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device)
    t = t.permute(0, 3, 1, 2).float().div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    else:
        t = t.contiguous()
    return t


def normalize_uint8_tensor(batch):
    """uint8 tensor (N, 3, H, W) -> normalised float32 tensor, same device."""
    return batch.float().div(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)


def to_uint8(tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: (N, 3, H, W) normalised -> uint8 (N, H, W, 3)."""
    t = tensor.detach().float().mul(PIXEL_STD).add(PIXEL_MEAN).mul(255.0).round().clamp(0, 255)
    return t.to("cpu").permute(0, 2, 3, 1).to(dtype=__import__("torch").uint8).numpy()

"""Synthetic face masks: geometry from landmarks, kinds, NumPy renderer, batched torch masker.

Public API (docs/architecture.md, masks section)::

    MASK_KINDS, apply_mask, mask_photo, MaskResult, image_rng, mask_pair_images, BatchMasker, mask_bin

``BatchMasker`` (torch) and ``mask_bin`` are imported lazily so that importing this package
does not import torch.
"""
from __future__ import annotations

from .kinds import MASK_KINDS, RANDOM_KINDS, TEXTURES
from .render import MaskResult, apply_mask, image_rng, mask_pair_images, mask_photo

__all__ = ["MASK_KINDS", "RANDOM_KINDS", "TEXTURES", "MaskResult", "apply_mask", "mask_photo", "image_rng",
           "mask_pair_images", "BatchMasker", "mask_bin"]


def __getattr__(name: str):
    if name == "BatchMasker":
        from .batched import BatchMasker

        return BatchMasker
    if name == "mask_bin":
        from .bins import mask_bin

        return mask_bin
    raise AttributeError(f"module 'maskinv.masks' has no attribute {name!r}")

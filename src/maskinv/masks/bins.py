"""Masked copies of verification ``.bin`` files (``maskinv mask-bin``).

Pair ``j`` is images ``2j`` and ``2j+1``. ``mu`` masks exactly the second image of every pair,
``mm`` both; image ``i`` is masked with :func:`~maskinv.masks.render.image_rng` ``(seed, i)``,
the same stream :func:`~maskinv.masks.render.mask_pair_images` uses, so a masked bin decodes
to what the in-memory protocol produces (exactly with ``image_format="png"``, up to JPEG loss
with ``"jpg"``). Only masked images are re-encoded; unmasked ones keep their original bytes.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataFormatError
from ..utils.images import decode_image, encode_image
from .protocols import masked_indices
from .render import apply_mask, image_rng

#: JPEG quality of re-encoded masked images (InsightFace bins were written at 95-100).
JPEG_QUALITY = 95


def mask_bin(in_path, out_path, protocol: str, seed: int, kind: str = "random", *,
             image_format: str = "jpg", quality: int = JPEG_QUALITY, progress: bool = False) -> dict:
    """Write a masked copy of the verification bin ``in_path`` to ``out_path`` (atomically).

    Returns a summary dict: pairs, images, masked, protocol, seed, kind, image_format.
    """
    from ..data.bins import load_bin, save_bin

    in_path, out_path = Path(in_path), Path(out_path)
    if image_format not in ("jpg", "jpeg", "png"):
        raise ConfigError(f"image format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
    if in_path.resolve() == out_path.resolve():
        raise ConfigError(f"mask-bin: output {out_path} would overwrite its input")
    images, issame = load_bin(in_path)
    n = len(images)
    if n != 2 * len(issame):
        raise DataFormatError(f"{in_path}: {n} images for {len(issame)} pairs (expected {2 * len(issame)})")
    out = list(images)
    idx = masked_indices(n, protocol)
    it = idx
    if progress:
        from tqdm import tqdm

        it = tqdm(idx, desc=f"mask-bin {protocol}", unit="img")
    for i in it:
        img = decode_image(images[i], f"{in_path}: image {i}")
        res = apply_mask(img, None, image_rng(seed, i), kind)
        out[i] = encode_image(res.image, image_format, quality)
    save_bin(out_path, out, issame)  # atomic (temp file + rename)
    return {"pairs": len(issame), "images": n, "masked": len(idx), "protocol": protocol, "seed": int(seed),
            "kind": kind, "image_format": "jpg" if image_format == "jpeg" else image_format,
            "output": str(out_path)}

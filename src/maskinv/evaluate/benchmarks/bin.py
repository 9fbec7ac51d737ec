"""Benchmarks from a verification ``.bin`` (InsightFace layout), with the optional
``<stem>_identities.npy`` sidecar of pair identities (SynthFaces) that the bootstrap resamples."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskinv.data.bins import decode_bin
from maskinv.errors import DataFormatError
from maskinv.utils.hashing import file_sha256

from .base import Benchmark, check_arrays

__all__ = ["load_bin_benchmark", "pair_identities_path", "read_pair_identities"]


def load_bin_benchmark(path: Path, label: str | None) -> Benchmark:
    """A verification ``.bin`` (and its pair identities, when the sidecar is there)."""
    images, issame = decode_bin(path)
    images, issame = check_arrays(images, issame, str(path))
    ids = read_pair_identities(path, issame.shape[0])
    meta = {"path": str(path.resolve()), "sha256": file_sha256(path), "format": "bin",
            "pair_identities": None if ids is None else str(pair_identities_path(path))}
    return Benchmark(label or path.stem, images, issame, meta, pair_identity=ids)


def pair_identities_path(bin_path: str | os.PathLike) -> Path:
    """Where the identities of a ``.bin``'s pairs live: ``<stem>_identities.npy`` beside it."""
    from maskinv.data.synth.dataset import PAIR_IDENTITIES_SUFFIX

    p = Path(bin_path)
    return p.with_name(p.stem + PAIR_IDENTITIES_SUFFIX)


def read_pair_identities(bin_path: str | os.PathLike, num_pairs: int) -> np.ndarray | None:
    """The (N, 2) pair identities of a ``.bin`` from its sidecar, or None when there is none; a sidecar
    of the wrong shape or type raises :class:`DataFormatError` naming it."""
    side = pair_identities_path(bin_path)
    if not side.is_file():
        return None
    try:
        ids = np.load(side, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataFormatError(f"{side}: not a NumPy array of pair identities ({exc})") from None
    if ids.shape != (num_pairs, 2) or not np.issubdtype(ids.dtype, np.integer):
        raise DataFormatError(f"{side}: expected ({num_pairs}, 2) integer identities (one row per pair of "
                              f"{Path(bin_path).name}), got shape {ids.shape} dtype {ids.dtype}")
    return ids.astype(np.int64)

"""What a *benchmark* is for evaluation: labelled verification pairs plus where they came from.

Every evaluation entry point (:func:`maskinv.evaluate.evaluate_models`, ``maskinv eval``, the
study) turns its inputs into :class:`Benchmark` objects with :func:`load_benchmark`; that is
the one place a new source plugs in (e.g. a folder of aligned images with a pairs list from
:mod:`maskinv.data`): add a loader to ``_LOADERS`` returning images, pair labels and metadata.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError


@dataclass
class Benchmark:
    """Verification pairs: ``images`` (2N, H, W, 3) uint8 RGB, pair ``j`` = images ``2j, 2j+1``;
    ``issame`` (N,) bool; ``meta`` is what results documents record about the source."""

    label: str
    images: np.ndarray
    issame: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    def describe(self) -> dict[str, Any]:
        """``results["benchmarks"][label]``: source metadata plus pair counts and image size."""
        return {**self.meta, "num_pairs": self.num_pairs, "num_genuine": int(self.issame.sum()),
                "image_size": [int(self.images.shape[1]), int(self.images.shape[2])]}


def _load_bin(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from maskinv.data.bins import decode_bin
    from maskinv.utils.hashing import file_sha256

    images, issame = decode_bin(path)
    return images, issame, {"path": str(path.resolve()), "sha256": file_sha256(path), "format": "bin"}


#: (accepts(path), load(path) -> (images, issame, meta)) in order; the first that accepts wins.
_LOADERS: list[tuple[Callable[[Path], bool], Callable[[Path], tuple]]] = [
    (lambda p: p.is_file(), _load_bin),
]


def _check(images: Any, issame: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    from maskinv.models.embedding import check_images

    images = check_images(images, name)
    issame = np.asarray(issame)
    if issame.ndim != 1 or images.shape[0] != 2 * issame.shape[0]:
        raise DataFormatError(f"{name}: {images.shape[0]} images for {issame.shape[0]} pairs (need 2 per pair)")
    return images, issame.astype(bool)


def load_benchmark(source: Any, label: str | None = None) -> Benchmark:
    """A :class:`Benchmark` from a path (a verification ``.bin``), an ``(images, issame)`` tuple
    or a :class:`Benchmark` (relabelled when ``label`` is given).

    Missing paths raise ``FileNotFoundError`` (the CLI prints it as one line); a path no loader
    accepts raises :class:`ConfigError` naming it."""
    if isinstance(source, Benchmark):
        return source if label is None else Benchmark(label, source.images, source.issame, dict(source.meta))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
        for accepts, load in _LOADERS:
            if accepts(path):
                images, issame, meta = load(path)
                images, issame = _check(images, issame, str(path))
                return Benchmark(label or path.stem, images, issame, meta)
        raise ConfigError(f"benchmark {path}: not a verification .bin file")
    try:
        images, issame = source
    except (TypeError, ValueError):
        raise ConfigError("a benchmark is a .bin path, an (images, issame) tuple or a Benchmark") from None
    images, issame = _check(images, issame, label or "<arrays>")
    return Benchmark(label or "arrays", images, issame, {"path": None, "format": "arrays"})


def label_benchmarks(sources: Sequence[Any] | dict[str, Any]) -> list[tuple[str, Any]]:
    """``(label, source)`` with unique labels: ``{label: source}`` as given, or a list labelled by
    file stem (``name``, ``name-2``, ...). Sources are loaded later, one at a time (a decoded
    benchmark can take hundreds of MB)."""
    from .reports import unique_labels

    if isinstance(sources, dict):
        return list(sources.items())
    sources = list(sources)
    named = [s.label if isinstance(s, Benchmark) else (str(s) if isinstance(s, (str, os.PathLike)) else "arrays")
             for s in sources]
    return list(zip(unique_labels(named), sources))

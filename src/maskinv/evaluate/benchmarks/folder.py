"""Benchmarks from an image folder (one sub-folder per identity, LFW-style ``pairs.txt``, optional
probe list for protocol ``probe_ref``). A folder is prepared once
(:func:`maskinv.data.folder_bench.prepare_folder_bench`: detection, cache, drops), so every model is
scored on the same kept pairs; its :class:`~.base.Benchmark` keeps the prepared folder (``folder``)
for the probe/reference protocol and for recognisers that embed the original photos (dlib)."""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskinv.align import resolve_detector
from maskinv.data.folder_bench import prepare_folder_bench
from maskinv.errors import ConfigError, DataFormatError

from ..probe_ref import read_probe_list
from .base import Benchmark, check_arrays

__all__ = ["FolderBenchSpec", "load_folder_benchmark"]


@dataclass
class FolderBenchSpec:
    """An image-folder benchmark and how to prepare it (see :mod:`maskinv.data.folder_bench`).

    ``path``: folder, one sub-folder per identity. ``pairs``: LFW-style pairs file (default
    ``path/pairs.txt`` if present). ``aligned``: the images are ArcFace crops already (no
    detection). ``on_miss``: ``"drop"`` (image and its pairs) or ``"center"``. ``detector``:
    name or detector object (default: the package's); the entry point (:func:`load_benchmark`,
    ``evaluate_models``, ``calibrate``) resolves it once with :meth:`resolved`. ``probe_list``: file of probe images:
    adds protocol ``probe_ref`` (every probe against every other image). ``cache_dir``: aligned
    crop cache (None: none). ``label``: default the folder name. ``min_false_matches``: the
    probe_ref operating-point rule. ``size``: crop side. ``strict``: stop at the first unreadable
    image instead of dropping it (and its pairs) with a note.
    """

    path: str | os.PathLike
    pairs: str | os.PathLike | None = None
    aligned: bool = False
    on_miss: str = "drop"
    detector: Any = None
    probe_list: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    label: str | None = None
    min_false_matches: int = 1
    size: int = 112
    strict: bool = False

    def resolved(self) -> "FolderBenchSpec":
        """This spec with its detector as an object (None for aligned crops, which need none): what
        an entry point does once, so every lower layer uses the same detector object."""
        det = None if self.aligned else resolve_detector(self.detector)
        return self if det is self.detector else dataclasses.replace(self, detector=det)

    def check(self) -> None:
        """Cheap checks before any model is loaded (missing files, nothing to evaluate)."""
        root = Path(self.path)
        if not root.is_dir():
            raise FileNotFoundError(2, "No such file or directory", str(root)) if not root.exists() else \
                ConfigError(f"folder benchmark {root}: not a folder")
        for what, f in (("pairs file", self.pairs), ("probe list", self.probe_list)):
            if f is not None and not Path(f).is_file():
                raise DataFormatError(f"folder benchmark {root}: {what} {f} not found")
        if self.pairs is None and self.probe_list is None and not (root / "pairs.txt").is_file():
            raise ConfigError(f"folder benchmark {root}: nothing to evaluate: no pairs.txt, no pairs file, no probe list")
        if self.min_false_matches < 1:
            raise ConfigError(f"folder benchmark {root}: min_false_matches must be >= 1, got {self.min_false_matches}")


def load_folder_benchmark(spec: FolderBenchSpec, label: str | None) -> Benchmark:
    """Prepare ``spec``'s folder once (detection, cache, drops); ``spec.detector`` must be resolved
    (:meth:`FolderBenchSpec.resolved`): the entry point resolves it, lower layers take the object."""
    spec.check()
    if isinstance(spec.detector, str) or (spec.detector is None and not spec.aligned):
        raise ConfigError(f"folder benchmark {spec.path}: detector {spec.detector!r} is not resolved; "
                          "pass FolderBenchSpec.resolved() (the entry point resolves it once)")
    det = None if spec.aligned else spec.detector  # it aligns our crops and, for dlib, finds the photos' faces
    fb = prepare_folder_bench(spec.path, spec.pairs, aligned=spec.aligned, detector=det, size=spec.size,
                              on_miss=spec.on_miss, cache_dir=spec.cache_dir,
                              all_images=True if spec.probe_list is not None else None, strict=spec.strict)
    if fb.info.get("unreadable"):
        bad = fb.info["unreadable"]
        warnings.warn(f"{spec.path}: skipped {len(bad)} unreadable image(s) with their pairs: "
                      + "; ".join(f"{b['image']}: {b['reason']}" for b in bad[:3]) + ("; ..." if len(bad) > 3 else ""),
                      UserWarning, stacklevel=2)
    probe = None
    meta = dict(fb.info)
    if spec.probe_list is not None:
        probe = read_probe_list(spec.probe_list, fb.keys)
        meta["probe_list"] = str(Path(spec.probe_list).resolve())
    ids = None
    if fb.pairs is not None:
        images, issame = fb.pair_arrays()
        keep = fb.pair_keep
        names = np.asarray(fb.identities, dtype=object).astype(str)
        ids = np.stack([names[fb.pairs.first[keep]], names[fb.pairs.second[keep]]], axis=1)  # person names
    else:
        images, issame = np.zeros((0, spec.size, spec.size, 3), np.uint8), np.zeros(0, bool)
    images, issame = check_arrays(images, issame, str(spec.path))
    return Benchmark(label or spec.label or fb.name, images, issame, meta, folder=fb, probe=probe, detector=det,
                     min_false_matches=spec.min_false_matches, pair_identity=ids)

"""What a *benchmark* is for evaluation: labelled verification pairs plus where they came from.

Every evaluation entry point (:func:`maskinv.evaluate.evaluate_models`, ``maskinv eval``, the
study) turns its inputs into :class:`Benchmark` objects with :func:`load_benchmark`; that is
the one place a new source plugs in: :func:`register_loader`.

Sources: a verification ``.bin``; ``(images, issame)`` arrays; an image folder (one
sub-folder per identity, LFW-style ``pairs.txt``) given as a path or as a
:class:`FolderBenchSpec` with its options (alignment, ``on_miss``, probe list). A folder is
prepared once (:func:`maskinv.data.folder_bench.prepare_folder_bench`: detection, cache,
drops), so every model is scored on the same kept pairs; its :class:`Benchmark` keeps the
prepared folder (``folder``) for the probe/reference protocol and for recognisers that embed
the original photos (dlib).
"""
from __future__ import annotations

import dataclasses
import warnings
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.registry import Registry


@dataclass
class Benchmark:
    """Verification pairs: ``images`` (2N, H, W, 3) uint8 RGB, pair ``j`` = images ``2j, 2j+1``;
    ``issame`` (N,) bool; ``meta`` is what results documents record about the source."""

    label: str
    images: np.ndarray
    issame: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: a prepared :class:`~maskinv.data.folder_bench.FolderBench` (folder sources only)
    folder: Any = None
    #: probe flags per ``folder`` image (protocol ``probe_ref``), or None
    probe: np.ndarray | None = None
    #: the detector object the folder was aligned with (None: aligned crops / not a folder)
    detector: Any = None
    #: probe_ref operating-point rule (:mod:`maskinv.evaluate.probe_ref`)
    min_false_matches: int = 1
    #: (N, 2): the identity of each pair's two images (SynthFaces: identity index, from the
    #: ``<stem>_identities.npy`` sidecar; folders: person names), or None when the source has none.
    #: The bootstrap resamples identities with it (:func:`maskinv.evaluate.bootstrap.paired_bootstrap`).
    pair_identity: np.ndarray | None = None

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    @property
    def has_pairs(self) -> bool:
        """Pair protocols (uu/mu/mm) apply: a pair list (a folder may have only a probe list)."""
        return self.folder is None or self.folder.pairs is not None

    def describe(self) -> dict[str, Any]:
        """``results["benchmarks"][label]``: source metadata plus pair counts and image size
        (folders: also images dropped and the probe/reference comparison counts)."""
        out = {**self.meta, "num_pairs": self.num_pairs, "num_genuine": int(self.issame.sum()),
               "num_impostor": int((~self.issame).sum()),
               "image_size": [int(self.images.shape[1]), int(self.images.shape[2])]}
        if self.probe is not None:
            f = self.folder
            ids = np.unique(np.asarray(f.identities, dtype=object).astype(str), return_inverse=True)[1]
            pi, ri = self.probe & f.valid, ~self.probe & f.valid
            same = int((ids[pi][:, None] == ids[ri][None, :]).sum())
            total = int(pi.sum()) * int(ri.sum())
            out.update(num_probe_images=int(self.probe.sum()), num_reference_images=int((~self.probe).sum()))
            # comparisons of the kept images (the same for every model)
            out["probe_ref"] = {"num_probes": int(pi.sum()), "num_references": int(ri.sum()),
                                "num_comparisons": total, "num_genuine": same, "num_impostor": total - same}
        return out


@dataclass
class FolderBenchSpec:
    """An image-folder benchmark and how to prepare it (see :mod:`maskinv.data.folder_bench`).

    ``path``: folder, one sub-folder per identity. ``pairs``: LFW-style pairs file (default
    ``path/pairs.txt`` if present). ``aligned``: the images are ArcFace crops already (no
    detection). ``on_miss``: ``"drop"`` (image and its pairs) or ``"center"``. ``detector``:
    name or detector object (default: the package's). ``probe_list``: file of probe images:
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


def _load_bin(path: Path, label: str | None) -> "Benchmark":
    from maskinv.data.bins import decode_bin
    from maskinv.utils.hashing import file_sha256

    images, issame = decode_bin(path)
    images, issame = _check(images, issame, str(path))
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


def _load_folder(spec: FolderBenchSpec, label: str | None) -> "Benchmark":
    from maskinv.data.folder_bench import default_detector, prepare_folder_bench

    spec.check()
    det = None
    if not spec.aligned:  # resolved once: it aligns our crops and, for dlib, finds the photos' faces
        from maskinv.align import get_detector

        det = default_detector() if spec.detector is None else (
            get_detector(spec.detector) if isinstance(spec.detector, str) else spec.detector)
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
        from .probe_ref import read_probe_list

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
    images, issame = _check(images, issame, str(spec.path))
    return Benchmark(label or spec.label or fb.name, images, issame, meta, folder=fb, probe=probe, detector=det,
                     min_false_matches=spec.min_false_matches, pair_identity=ids)


#: name -> (accepts(path), load(path, label) -> Benchmark), in registration order; the first that
#: accepts a path wins. Plug-ins: :func:`register_loader` or the ``maskinv.benchmarks`` entry points.
LOADERS: Registry[tuple[Callable[[Path], bool], Callable[[Path, str | None], "Benchmark"]]] = Registry(
    "benchmark loader", entry_points="maskinv.benchmarks")
LOADERS.register("bin", (lambda p: p.is_file(), _load_bin))
LOADERS.register("folder", (lambda p: p.is_dir(), lambda p, label: _load_folder(FolderBenchSpec(p), label)))


def register_loader(name: str, accepts: Callable[[Path], bool], load: Callable[[Path, str | None], "Benchmark"],
                    *, first: bool = False) -> None:
    """A new benchmark source: ``accepts(path)`` says whether ``load(path, label)`` reads it.
    ``first``: try it before the built-in loaders (a file format the ``.bin`` reader would claim)."""
    LOADERS.register(name, (accepts, load))
    if first:
        LOADERS.move_to_front(name)


def _check(images: Any, issame: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    from maskinv.models.embedding import check_images

    images = check_images(images, name)
    issame = np.asarray(issame)
    if issame.ndim != 1 or images.shape[0] != 2 * issame.shape[0]:
        raise DataFormatError(f"{name}: {images.shape[0]} images for {issame.shape[0]} pairs (need 2 per pair)")
    return images, issame.astype(bool)


def load_benchmark(source: Any, label: str | None = None) -> Benchmark:
    """A :class:`Benchmark` from a path (a verification ``.bin`` or an image folder), a
    :class:`FolderBenchSpec`, an ``(images, issame)`` tuple or a :class:`Benchmark`
    (relabelled when ``label`` is given).

    Missing paths raise ``FileNotFoundError`` (the CLI prints it as one line); a path no loader
    accepts raises :class:`ConfigError` naming it."""
    if isinstance(source, Benchmark):
        return source if label is None else dataclasses.replace(source, label=label, meta=dict(source.meta))
    if isinstance(source, FolderBenchSpec):
        return _load_folder(source, label)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
        for _, (accepts, load) in LOADERS.items():
            if accepts(path):
                return load(path, label)
        raise ConfigError(f"benchmark {path}: not a verification .bin file or an image folder")
    try:
        images, issame = source
    except (TypeError, ValueError):
            raise ConfigError("a benchmark is a .bin path, an image folder, a FolderBenchSpec, an (images, issame) "
                          "tuple or a Benchmark") from None
    images, issame = _check(images, issame, label or "<arrays>")
    return Benchmark(label or "arrays", images, issame, {"path": None, "format": "arrays"})


def label_benchmarks(sources: Sequence[Any] | dict[str, Any]) -> list[tuple[str, Any]]:
    """``(label, source)`` with unique labels: ``{label: source}`` as given, or a list labelled by
    file stem / folder name (:func:`maskinv.evaluate.model_specs.path_labels`; a spec's or a
    Benchmark's own label when it has one). Sources are loaded later, one at a time (a decoded
    benchmark can take hundreds of MB)."""
    from .model_specs import path_labels

    if isinstance(sources, dict):
        return list(sources.items())
    if isinstance(sources, (str, os.PathLike, FolderBenchSpec, Benchmark)):
        sources = [sources]
    sources = list(sources)
    fixed = {i: s.label for i, s in enumerate(sources) if isinstance(s, (Benchmark, FolderBenchSpec)) and s.label}
    named = [s.path if isinstance(s, FolderBenchSpec) else (s if isinstance(s, (str, os.PathLike)) else "arrays")
             for i, s in enumerate(sources) if i not in fixed]
    auto = iter(path_labels(named))
    labels = [fixed[i] if i in fixed else next(auto) for i in range(len(sources))]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"benchmark labels must be unique, got {labels}")
    return list(zip(labels, sources))

"""Benchmark sources by name (:data:`LOADERS`, :func:`register_loader`) and the one entry that turns
any source into a :class:`~.base.Benchmark`: :func:`load_benchmark`."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from maskinv.errors import ConfigError
from maskinv.utils.registry import Registry

from ..model_specs import path_labels
from .base import Benchmark, check_arrays
from .bin import load_bin_benchmark
from .folder import FolderBenchSpec, load_folder_benchmark

__all__ = ["LOADERS", "register_loader", "load_benchmark", "label_benchmarks"]


#: name -> (accepts(path), load(path, label) -> Benchmark), in registration order; the first that
#: accepts a path wins. Plug-ins: :func:`register_loader` or the ``maskinv.benchmarks`` entry points.
LOADERS: Registry[tuple[Callable[[Path], bool], Callable[[Path, str | None], Benchmark]]] = Registry(
    "benchmark loader", entry_points="maskinv.benchmarks")
LOADERS.register("bin", (lambda p: p.is_file(), load_bin_benchmark))
LOADERS.register("folder", (lambda p: p.is_dir(), lambda p, label: load_folder_benchmark(FolderBenchSpec(p).resolved(), label)))


def register_loader(name: str, accepts: Callable[[Path], bool], load: Callable[[Path, str | None], Benchmark],
                    *, first: bool = False) -> None:
    """A new benchmark source: ``accepts(path)`` says whether ``load(path, label)`` reads it.
    ``first``: try it before the built-in loaders (a file format the ``.bin`` reader would claim)."""
    LOADERS.register(name, (accepts, load))
    if first:
        LOADERS.move_to_front(name)


def load_benchmark(source: Any, label: str | None = None) -> Benchmark:
    """A :class:`Benchmark` from a path (a verification ``.bin`` or an image folder), a
    :class:`FolderBenchSpec`, an ``(images, issame)`` tuple or a :class:`Benchmark`
    (relabelled when ``label`` is given).

    Missing paths raise ``FileNotFoundError`` (the CLI prints it as one line); a path no loader
    accepts raises :class:`ConfigError` naming it."""
    if isinstance(source, Benchmark):
        return source if label is None else dataclasses.replace(source, label=label, meta=dict(source.meta))
    if isinstance(source, FolderBenchSpec):
        return load_folder_benchmark(source.resolved(), label)
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
    images, issame = check_arrays(images, issame, label or "<arrays>")
    return Benchmark(label or "arrays", images, issame, {"path": None, "format": "arrays"})


def label_benchmarks(sources: Sequence[Any] | dict[str, Any]) -> list[tuple[str, Any]]:
    """``(label, source)`` with unique labels: ``{label: source}`` as given, or a list labelled by
    file stem / folder name (:func:`maskinv.evaluate.model_specs.path_labels`; a spec's or a
    Benchmark's own label when it has one). Sources are loaded later, one at a time (a decoded
    benchmark can take hundreds of MB)."""
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

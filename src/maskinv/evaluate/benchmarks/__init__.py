"""What a *benchmark* is for evaluation: labelled verification pairs plus where they came from.

Every evaluation entry point (:func:`maskinv.evaluate.evaluate_models`, ``maskinv eval``, the
study, ``maskinv calibrate``) turns its inputs into :class:`Benchmark` objects with
:func:`load_benchmark`; that is the one place a new source plugs in: :func:`register_loader`.

Sources: a verification ``.bin`` (:mod:`.bin`); ``(images, issame)`` arrays; an image folder (one
sub-folder per identity, LFW-style ``pairs.txt``) given as a path or as a :class:`FolderBenchSpec`
with its options (alignment, ``on_miss``, probe list; :mod:`.folder`). Loaders by name:
:mod:`.registry`.
"""
from __future__ import annotations

from .base import Benchmark, check_arrays
from .bin import load_bin_benchmark, pair_identities_path, read_pair_identities
from .folder import FolderBenchSpec, load_folder_benchmark
from .registry import LOADERS, label_benchmarks, load_benchmark, register_loader

__all__ = ["Benchmark", "FolderBenchSpec", "LOADERS", "register_loader", "load_benchmark", "label_benchmarks",
           "pair_identities_path", "read_pair_identities", "load_bin_benchmark", "load_folder_benchmark",
           "check_arrays"]

"""Helpers shared by the benchmark scripts: timing and result files.

Each ``benchmarks/bench_*.py`` has a ``main(argv=None) -> dict`` that prints its figures
and the ratio against a baseline measured in the same run, and writes
``benchmarks/results/<name>.json`` via :func:`write_result`.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], Any], repeat: int = 5, number: int = 1, warmup: int = 1) -> float:
    """Best-of-``repeat`` seconds per call of ``fn`` (``number`` calls per repeat)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def machine_info() -> dict[str, Any]:
    from maskinv.utils.machine import cpu_model

    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_model": cpu_model()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return info


def write_result(name: str, figures: dict[str, Any]) -> Path:
    from maskinv.utils.io import atomic_write_json

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, "machine": machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures})
    return path


def report(name: str, lines: dict[str, Any]) -> None:
    print(f"== {name}")
    for k, v in lines.items():
        if isinstance(v, float):
            print(f"  {k:<48s} {v:,.4g}")
        else:
            print(f"  {k:<48s} {v}")

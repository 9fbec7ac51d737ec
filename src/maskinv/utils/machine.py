"""What machine a measurement ran on, for reports that state timings (never typed in by hand)."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

__all__ = ["cpu_model", "machine_line"]


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line() -> str:
    """``"2-core Intel(R) Xeon(R) Processor"``: cores visible to this process and the CPU model."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{n}-core {cpu_model()}"

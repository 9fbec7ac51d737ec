"""Run every ``benchmarks/bench_*.py`` in turn (``make bench``)."""
from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path


def main() -> int:
    failed = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        mod = importlib.import_module(f"benchmarks.{path.stem}")
        try:
            mod.main([])
        except Exception:  # report and continue with the next benchmark
            traceback.print_exc()
            failed.append(path.stem)
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

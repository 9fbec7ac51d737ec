"""Training the study's runs through the library: reuse finished runs, train independent runs
side by side in child processes, one thread each.

Children are started with the ``spawn`` method and call :func:`maskinv.train.run_training` (an
adapt job: :func:`.adapt_row.run_adapt`) directly (no CLI in between): forking a process in which torch/OpenMP already started can hang.
A child's stdout/stderr go to ``run_dir/train.log``. This module imports no torch at module
level, so a spawned child sets its thread count before torch loads.
"""
from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Iterator

from maskinv.errors import MaskinvError


def _rerooted(summary: dict, run_dir: Path) -> dict:
    """The summary with the paths it recorded inside its run folder re-rooted at ``run_dir``: the
    study folder may have been moved or renamed, or the demo started from another directory."""
    old = summary.get("out_dir")
    out = dict(summary)
    if not isinstance(old, str):
        return out
    for key in ("backbone", "backbone_meta", "head", "checkpoint", "config", "metrics"):
        v = summary.get(key)
        if isinstance(v, str) and v:
            try:
                out[key] = str(Path(run_dir) / Path(v).relative_to(old))
            except ValueError:
                pass
    out["out_dir"] = str(run_dir)
    return out


def _is_adapt(cfg: dict) -> bool:
    """An adapt job (:mod:`.adapt_row`) rather than a trainer config."""
    return "adapt" in cfg


def _summary_file(cfg: dict) -> str:
    from .adapt_row import DONE

    return DONE if _is_adapt(cfg) else "summary.json"


def _run_one(cfg: dict, run_dir: str | Path) -> dict:
    """Train one job in this process: an adapt job, or a trainer config (resumed when interrupted)."""
    if _is_adapt(cfg):
        from .adapt_row import run_adapt

        return run_adapt(cfg, run_dir)
    from maskinv.train import run_training

    return run_training(cfg, run_dir, resume=True)


def finished_summary(run_dir: Path, name: str = "summary.json") -> dict | None:
    """The summary (file ``name``) of a run that already completed in ``run_dir`` (a re-run reuses
    it), its paths pointing into ``run_dir`` wherever the folder now is."""
    try:
        summary = json.loads((Path(run_dir) / name).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") != "completed":
        return None
    summary = _rerooted(summary, Path(run_dir))
    if summary.get("backbone") and Path(summary["backbone"]).is_file():
        return summary
    return None


def is_finished(cfg: dict, run_dir: Path) -> bool:
    """True when ``run_dir`` holds the finished run of job ``cfg``: :func:`train_runs` reuses it."""
    return finished_summary(run_dir, _summary_file(cfg)) is not None


def moved_since_stopped(run_dir: Path, cfg: dict) -> bool:
    """True when the unfinished run in ``run_dir`` differs from ``cfg`` only in paths (data,
    teacher, init): the study folder moved since it stopped, and its checkpoint names the old
    place, so it cannot resume; the study trains it again (a finished run is simply reused)."""
    from maskinv.train.checkpoint import latest_checkpoint, load_state
    from maskinv.train.config import config_diff, config_from_dict, saved_run_defaults
    from maskinv.train.config_schema import path_keys

    path = latest_checkpoint(run_dir)
    if path is None:
        return False
    saved = config_from_dict(saved_run_defaults(load_state(path)["config"]), origin=str(path), validate=False)
    diff = config_diff(saved, config_from_dict(copy.deepcopy(cfg), validate=False), run_dir=run_dir)
    return bool(diff) and set(diff) <= set(path_keys())


def _child(cfg: dict, run_dir: str, threads: int) -> None:
    """Body of a spawned training process: one run, logging to ``run_dir/train.log``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported in this process
    import sys
    import traceback

    log = open(Path(run_dir) / "train.log", "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        summary = _run_one(cfg, run_dir)
    except BaseException:
        traceback.print_exc()
        log.flush()
        os._exit(1)
    log.flush()
    if summary.get("status") == "interrupted":
        os._exit(128 + int(summary.get("signal") or signal.SIGTERM))
    os._exit(0)


def train_runs(jobs: list[tuple[str, dict, Path]], *, threads: int | None, parallel: bool) -> Iterator[tuple[str, dict, dict]]:
    """Train each ``(name, cfg, run_dir)``; side by side in spawned processes when ``parallel``.

    Finished runs are reused, interrupted ones resume. Yields ``(name, cfg, summary)`` in job
    order. A failed run raises :class:`MaskinvError` with the tail of its ``train.log``.
    """
    import multiprocessing

    cores = os.cpu_count() or 1
    todo = []
    for name, cfg, run_dir in jobs:
        done = finished_summary(run_dir, _summary_file(cfg))
        if done is not None:
            yield name, cfg, done
            continue
        if not _is_adapt(cfg) and moved_since_stopped(run_dir, cfg):
            import shutil
            import sys

            print(f"[demo] {name}: the study folder moved since this run stopped; training it again", file=sys.stderr)
            shutil.rmtree(run_dir)
        todo.append((name, cfg, run_dir))
    if not todo:
        return
    if not parallel or len(todo) == 1:
        for name, cfg, run_dir in todo:
            cfg = copy.deepcopy(cfg)
            cfg["runtime"]["threads"] = threads or min(cores, 4)
            yield name, cfg, _run_one(cfg, run_dir)
        return
    # a small net trains faster as two 1-thread processes than as one 2-thread process on 2 cores
    per_job = threads or max(1, cores // len(todo))
    ctx = multiprocessing.get_context("spawn")
    procs = []
    failed = None
    try:
        for name, cfg, run_dir in todo:
            cfg = copy.deepcopy(cfg)
            cfg["runtime"]["threads"] = per_job
            cfg["runtime"]["progress"] = False
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            proc = ctx.Process(target=_child, args=(cfg, str(run_dir), per_job), name=f"maskinv-train-{name}")
            proc.start()
            procs.append((name, cfg, Path(run_dir), proc))
        for name, _, run_dir, proc in procs:
            proc.join()
            if proc.exitcode != 0 and failed is None:
                log = run_dir / "train.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
                failed = f"training {name} failed (exit {proc.exitcode}); see {log}: " + " | ".join(tail)
    finally:
        for _, _, _, proc in procs:  # only on an error in this process (e.g. Ctrl-C): stop our children
            if proc.is_alive():
                proc.terminate()
                proc.join()
    if failed:
        raise MaskinvError(failed)
    for name, cfg, run_dir, _ in procs:
        yield name, cfg, json.loads((run_dir / _summary_file(cfg)).read_text())

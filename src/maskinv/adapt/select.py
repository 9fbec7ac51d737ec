"""Validation while adapting: pick the step with the best M-U whose U-U stays within ``tolerance``
points of the teacher's, stop early when M-U stops improving, export that step's backbone.

The run is trained in chunks of ``eval_every`` steps, each one :func:`run_training` call that
resumes the previous one (resume is exact, so the weights equal an uninterrupted run's); after
each chunk the exported backbone is scored on the validation benchmark (``.bin``, never the test
pairs). The teacher is scored once, at the start. State and history: ``RUN_DIR/adapt_select.json``;
the best backbone is kept in ``RUN_DIR/best/`` and copied over ``RUN_DIR/backbone.pt`` at the end.

When no validated step keeps U-U within the tolerance, the exported step is the one that lost the
least U-U (``RUN_DIR/fallback/``), never silently the last one: the state records
``met_tolerance: false`` and the log says so (the tolerance is the user's constraint; the step
closest to meeting it is the nearest thing to what was asked).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from maskinv.errors import ConfigError
from maskinv.masks.protocols import MU, UU

from maskinv.train.config import TrainConfig

STATE = "adapt_select.json"
FLOAT_SLACK = 1e-9


def score(model: Any, val: str, *, seed: int = 0) -> dict[str, float]:
    """``{"uu", "mu"}`` verification accuracy (fraction) of ``model`` on ``val``."""
    from maskinv.evaluate import evaluate_models
    from maskinv.evaluate.runner import metrics_of

    doc = evaluate_models({"m": model}, {"val": val}, (UU, MU), seed=seed, precision="fp32", plots=False,
                          scores=False)
    return {p: float(metrics_of(doc, "m", "val", p)["accuracy_mean"]) for p in (UU, MU)}


def _eval_at(state: dict, step: int | None) -> dict | None:
    """The recorded validation of ``step`` (None for None or an unvalidated step)."""
    return next((e for e in state["evals"] if e["step"] == step), None)


def _copy_export(src_dir: Path, dst_dir: Path) -> None:
    """backbone.pt + .json from ``src_dir`` into ``dst_dir``, each file replaced atomically."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in ("backbone.pt", "backbone.json"):
        tmp = dst_dir / f".{name}.tmp"
        shutil.copyfile(src_dir / name, tmp)
        os.replace(tmp, dst_dir / name)


def train_with_selection(cfg: TrainConfig, out: Path, *, teacher: str, val: str, eval_every: int,
                         tolerance: float = 1.0, patience: int = 3, max_steps: int | None = None,
                         resume: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``cfg`` into ``out`` with validation-driven step selection (see module doc).

    Returns the last chunk's summary plus ``selection`` (teacher scores, every evaluation, the
    selected step, whether it stopped early). ``tolerance`` in accuracy points.
    """
    from maskinv.utils.io import atomic_write_json

    from maskinv.train.trainer import run_training

    if eval_every < 1:
        raise ConfigError(f"--eval-every must be >= 1 with --val, got {eval_every}")
    if patience < 1:
        raise ConfigError(f"--patience must be >= 1, got {patience}")
    if not Path(val).is_file():
        raise FileNotFoundError(2, "No such file", str(val))
    say = log or (lambda m: None)
    state_path = out / STATE
    state = json.loads(state_path.read_text()) if resume and state_path.is_file() else None
    if state is None:
        state = {"val": str(val), "tolerance": tolerance, "patience": patience, "eval_every": eval_every,
                 "teacher": score(teacher, val, seed=cfg.runtime.seed), "evals": [], "best_step": None,
                 "stopped_early": False}
        say(f"[adapt] teacher on {val}: U-U {100 * state['teacher'][UU]:.2f}  M-U {100 * state['teacher'][MU]:.2f}")
    # accuracies are means of fold fractions: a step exactly `tolerance` points below the teacher can
    # land a rounding error under the floor (about 3 in 10 such cases), so compare with a margin far
    # below one pair in a million
    floor = state["teacher"][UU] - tolerance / 100.0 - FLOAT_SLACK
    done = state["evals"][-1]["step"] if state["evals"] else 0
    summary: dict[str, Any] = {}
    while True:
        target = done + eval_every if max_steps is None else min(done + eval_every, max_steps)
        summary = run_training(cfg, out, max_steps=target, resume=resume or done > 0, chunk=done > 0)
        if summary["status"] == "interrupted" or summary["step"] == done:
            break
        done = summary["step"]
        got = score(out / "backbone.pt", val, seed=cfg.runtime.seed)
        ok = got[UU] >= floor
        best = _eval_at(state, state["best_step"])
        improved = ok and (best is None or got[MU] > best[MU])
        if improved:
            _copy_export(out, out / "best")
            state["best_step"] = done
        elif not ok and state["best_step"] is None:
            fb = _eval_at(state, state.get("fallback_step"))
            if fb is None or (got[UU], got[MU]) > (fb[UU], fb[MU]):
                _copy_export(out, out / "fallback")
                state["fallback_step"] = done
        state["evals"].append({"step": done, **got, "within_tolerance": ok})
        say(f"[adapt] step {done}: U-U {100 * got[UU]:.2f}  M-U {100 * got[MU]:.2f}"
            + ("  (best)" if improved else "" if ok else "  (U-U below tolerance)"))
        since = [e for e in state["evals"] if state["best_step"] is None or e["step"] > state["best_step"]]
        if len(since) >= patience:
            state["stopped_early"] = summary["status"] != "completed"
            atomic_write_json(state_path, state)
            break
        atomic_write_json(state_path, state)
        if summary["status"] == "completed" or (max_steps is not None and done >= max_steps):
            break
    if summary.get("status") != "interrupted":
        if state["best_step"] is not None:
            _copy_export(out / "best", out)
            summary["backbone_step"] = state["best_step"]
            state["met_tolerance"] = True
        elif state.get("fallback_step") is not None:
            fb = _eval_at(state, state["fallback_step"])
            _copy_export(out / "fallback", out)
            summary["backbone_step"] = state["fallback_step"]
            state["met_tolerance"] = False
            say(f"[adapt] warning: no validated step kept U-U within {tolerance:g} points of the teacher's "
                f"({100 * state['teacher'][UU]:.2f}); exported step {fb['step']}, the one that lost least "
                f"(U-U {100 * fb[UU]:.2f}, M-U {100 * fb[MU]:.2f}). A lower optim.lr or fewer steps keep "
                "more U-U; a larger --tolerance accepts the loss")
    atomic_write_json(state_path, state)
    return {**summary, "selection": state}

"""Run observability: ``metrics.jsonl`` (one JSON object per log step), TensorBoard, progress bar,
and :class:`TrainMeter`, the loop's loss/throughput accounting."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from maskinv.utils.io import atomic_write_text


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines logged after ``last_step`` (a killed run may have logged past its checkpoint)."""
    if not path.is_file():
        return
    keep = []
    changed = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            changed = True
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > last_step:
            changed = True
            continue
        keep.append(line)
    if changed:
        atomic_write_text(path, "".join(x + "\n" for x in keep))


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def progress_line(record: dict[str, Any], total_steps: int) -> str:
    """The stderr line of a log window: ``step 8/16 epoch 1: loss 2.7731 (head 2.7731, kd 0) lr 0.1, 412 img/s``."""
    def f(v, spec=".4g"):
        return "nan" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)

    total = f"/{total_steps}" if total_steps else ""
    return (f"step {record['step']}{total} epoch {record.get('epoch', 0)}: loss {f(record.get('loss'))} "
            f"(head {f(record.get('head_loss'))}, kd {f(record.get('kd_loss'))}) lr {f(record.get('lr'))}, "
            f"{f(record.get('images_per_s'), '.0f')} img/s")


class MetricsLogger:
    """Appends records to ``metrics.jsonl`` (flushed per line) and mirrors scalars to TensorBoard.

    Only rank 0 creates one (``enabled=False`` elsewhere makes every call a no-op). Progress is
    always shown: a bar when ``progress`` is on and stderr is a terminal, otherwise one line per
    log window (every ``log_every`` steps) — a run never sits silent until it ends, and a log
    file gets lines, not bar redraws.
    """

    def __init__(self, out_dir: Path, *, enabled: bool = True, tensorboard: bool = False, start_step: int = 0,
                 progress: bool = False, total_steps: int = 0):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._fh = None
        self.tb = None
        self.tb_error: str | None = None
        self.bar = None
        self.total_steps = int(total_steps or 0)
        self.lines = False
        if not enabled:
            return
        self._fh = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=start_step or None)
            except Exception as exc:  # tensorboard not installed / broken: keep training
                self.tb_error = f"{type(exc).__name__}: {exc}"
        if progress and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, desc="train")
        self.lines = self.bar is None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")
        self._fh.flush()
        if self.lines and "event" not in record:
            print(progress_line(record, self.total_steps), file=sys.stderr, flush=True)
        if self.tb is not None:
            step = int(record["step"])
            for k, v in record.items():
                if k in ("step", "epoch", "time") or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    continue
                self.tb.add_scalar(f"train/{k}" if "/" not in k else k, v, step)

    def log_eval(self, step: int, results: dict[str, Any]) -> None:
        """Flat scalars of an evaluation, prefixed ``eval/``, into metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        rec = {"step": int(step), "event": "eval"}
        rec.update(results)
        self._fh.write(json.dumps(rec, default=float) + "\n")
        self._fh.flush()
        if self.tb is not None:
            for k, v in results.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
                    self.tb.add_scalar(f"eval/{k}", v, step)

    def progress(self, n: int, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def write_line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def last_logged_losses(path: Path) -> dict[str, float]:
    """The losses of the last step record in ``metrics.jsonl`` ({} when none or unreadable)."""
    try:
        records = [r for r in read_metrics(path) if "event" not in r and "loss" in r]
    except (OSError, ValueError):
        return {}
    if not records:
        return {}
    return {k: records[-1][k] for k in ("loss", "head_loss", "kd_loss") if records[-1].get(k) is not None}


def _dbl(v: Any) -> Any:
    """A step scalar for accumulation: floats stay floats; tensors become float64 tensors on their
    device (summing float32 values in float64 gives the same sums as Python floats)."""
    if isinstance(v, (int, float)):
        return float(v)
    return v.detach().to(torch.float64)


class TrainMeter:
    """What the loop measures: loss/masked-fraction means and images/s over each log window, the
    images/s of the run and of the last step, and the last step's losses.

    ``images_per_step`` is the global batch. ``log_every`` (0: never) decides which steps log a
    window record (:meth:`due`); the last step of the run always does. Step scalars may be device
    tensors: they are summed on the device and read (one sync) only by :meth:`window_record`,
    :meth:`nonfinite_pending` and :attr:`last`.
    """

    def __init__(self, images_per_step: int, log_every: int):
        self.images_per_step = images_per_step
        self.log_every = log_every
        self._last: dict[str, Any] = {"loss": float("nan"), "head_loss": float("nan"), "kd_loss": float("nan")}
        self._reset_window()
        self.run_images = 0
        self.run_t0 = time.perf_counter()
        self._step_t0 = self.run_t0
        self.step_seconds = 0.0
        self._bad: Any = False      # a non-finite loss since the last nonfinite_pending() (bool or device bool)
        self.unchecked_from = 1     # first step not yet covered by nonfinite_pending()

    @property
    def last(self) -> dict[str, Any]:
        """The last step's losses as floats (reading them waits for the device)."""
        self._last = {k: float(v) for k, v in self._last.items()}
        return self._last

    def _reset_window(self) -> None:
        self.n = 0
        self.loss = self.head = self.kd = self.masked = 0.0
        self.images = 0
        self.t0 = time.perf_counter()

    def step_started(self) -> None:
        self._step_t0 = time.perf_counter()

    def step_done(self, res) -> None:
        """Account one finished step (a :class:`~.step.StepResult`); no device sync."""
        self.step_seconds = time.perf_counter() - self._step_t0
        self.run_images += self.images_per_step
        self.n += 1
        self.loss = self.loss + _dbl(res.loss)
        self.head = self.head + _dbl(res.head_loss)
        self.kd = self.kd + _dbl(res.kd_loss)
        self.masked = self.masked + _dbl(res.masked_fraction)
        self.images += self.images_per_step
        self._last = {"loss": res.loss, "head_loss": res.head_loss, "kd_loss": res.kd_loss}
        if res.finite is None:  # unchecked step: remember a non-finite loss on the device
            bad = ~torch.isfinite(res.loss) if isinstance(res.loss, torch.Tensor) else not math.isfinite(res.loss)
            self._bad = bad | self._bad if isinstance(bad, torch.Tensor) else (bool(bad) or self._bad)

    def nonfinite_pending(self, step: int) -> tuple[bool, int]:
        """``(bad, first)``: whether a step in ``first..step`` had a non-finite loss (one sync); resets."""
        bad, first = bool(self._bad), self.unchecked_from
        self._bad = False
        self.unchecked_from = step + 1
        return bad, first

    @property
    def step_images_per_s(self) -> float:
        return self.images_per_step / max(self.step_seconds, 1e-9)

    def due(self, step: int, stop: int) -> bool:
        return bool(self.log_every) and (step % self.log_every == 0 or step == stop)

    def window_record(self, step: int, epoch: int, lr: float, grad_norm: Any) -> dict[str, Any]:
        """The metrics.jsonl record of the window ending at ``step``; starts the next window."""
        n = self.n
        sums = [float(v) for v in (self.loss, self.head, self.kd, self.masked)]  # the window's one sync
        el = max(time.perf_counter() - self.t0, 1e-9)
        rec = {"step": step, "epoch": epoch, "lr": lr, "loss": sums[0] / n,
               "head_loss": sums[1] / n, "kd_loss": sums[2] / n,
               "images_per_s": self.images / el, "masked_fraction": sums[3] / n,
               "time": time.time()}
        if grad_norm is not None:
            rec["grad_norm"] = float(grad_norm)
        self._reset_window()
        return rec

    def run_images_per_s(self, end: float) -> float | None:
        """Images/s from the meter's creation to ``end`` (a ``time.perf_counter()``); None without steps."""
        return (self.run_images / (end - self.run_t0)) if self.run_images else None

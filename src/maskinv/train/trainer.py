"""The training loop: teacher, baselines and MaskInv students from one :class:`TrainConfig`.

:func:`run_training` builds data, student (backbone + margin head or PartialFC), the frozen
teacher, optimizer, schedule and AMP from the config, then runs :class:`~.step.TrainStep` until
the schedule ends (or ``max_steps``), writing into ``out_dir``::

    config.yaml        resolved config (atomic)
    metrics.jsonl      one JSON line per log step (+ "event": "eval" lines)
    tensorboard/       TensorBoard events (if installed and enabled)
    checkpoints/       ckpt-XXXXXXXX.pt full training state, keep-last-K
    backbone.pt/.json  exported student backbone (maskinv.models.export_backbone)
    head.pt            the margin head's class centres {"kernel": (E, C)} (not with PartialFC)
    summary.json       what run_training returns

Works in one process or under torchrun (the CLI creates the process group; see
:mod:`.distributed`). Resume is exact: every random draw of a step is seeded by
``(seed, rank, step)``, the sampler order by ``(seed, epoch)``, and the checkpoint stores the
optimizer/scheduler/scaler state, the position within the epoch and the torch RNG (dropout).

This module only sequences a run (setup, restore, step loop, finish); the parts live in
:mod:`.data` (data and batches), :mod:`.build` (device, precision, models, optimisers),
:mod:`.state` (checkpoint content and resume), :mod:`.metrics` (logging and metering),
:mod:`.periodic_eval`, :mod:`.signals`, :mod:`.teacher_cache` and :mod:`.outputs`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskinv.errors import ConfigError, DataFormatError, MaskinvError
from maskinv.masks.mesh import renderer_revision
from maskinv.utils.seeds import derive_seed

from . import distributed as D
from .build import assemble_student, maybe_compile, pin_memory, autocast_factory, build_masker, build_models, build_teacher, memory_format, resolve_device
from .config import TrainConfig, config_from_dict, save_config, validate_config
from .data import BatchSource, build_dataset, prepare_data_dir
from .metrics import MetricsLogger, TrainMeter, last_logged_losses, truncate_metrics
from .outputs import export_student, gather_digests, weights_digest, write_summary
from .periodic_eval import PeriodicEval
from .schedule import total_steps
from .signals import StopFlag
from .state import RunCheckpoints, load_resume_state
from .step import TrainStep


class TrainingDivergedError(MaskinvError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


class TrainingStalledError(MaskinvError):
    """The student cannot learn: its gradient norm was 0 at every logged step of the first steps."""


#: A run whose clipped gradient norm is 0 at every logged step up to here stops (it cannot learn).
LEARN_CHECK_STEPS = 20


def resume_hint(out: Path, step: int, total: int, signum: int | None, checkpoint, command: str = "train") -> str:
    """The line printed when a signal stops a run: where it stopped and the command that continues it
    (``maskinv train`` or, for a label-free ``adapt`` run, ``maskinv adapt``)."""
    import shlex
    import signal

    name = signal.Signals(signum).name if signum else "a signal"
    saved = f"checkpoint {Path(checkpoint).name}" if checkpoint else "no checkpoint yet"
    return (f"stopped by {name} at step {step}/{total} ({saved}); "
            f"resume with: maskinv {command} --resume {shlex.quote(str(out))}")


def run_training(cfg: TrainConfig | dict, out_dir: str | os.PathLike, *, max_steps: int | None = None,
                 resume: bool = False, teacher_module: nn.Module | None = None, chunk: bool = False) -> dict[str, Any]:
    """Train per ``cfg`` into ``out_dir``; returns a summary dict (also written as summary.json).

    ``max_steps``: total number of optimiser steps of the run (a resumed run stops at the same
    total; the schedule keeps its configured length). ``resume``: continue from the newest
    checkpoint in ``out_dir`` (the config must match the checkpoint's; without a checkpoint the
    run starts from scratch). ``teacher_module``: an already loaded frozen teacher (tests/API);
    otherwise ``teacher.path`` is loaded with :func:`maskinv.train.distill.load_teacher` (a missing
    file raises :class:`CheckpointError`, never a random teacher). ``chunk``: one chunk of a run that a
    caller trains in pieces (validation between them): no "resumed from" line, no --max-steps note.

    Summary keys: out_dir, config, metrics, checkpoint, backbone, backbone_meta, step,
    total_steps, status ("completed" | "max_steps" | "interrupted"), loss, head_loss, kd_loss,
    images_per_s, elapsed_s, eval, teacher_cache, ranks_in_sync, weights_sha256.
    """
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    validate_config(cfg)
    return _Trainer(cfg, Path(out_dir), max_steps=max_steps, resume=resume, teacher_module=teacher_module,
                    chunk=chunk).run()


class _Trainer:
    """One run. :meth:`run` scopes threads and the torch RNG; :meth:`_run` sequences the phases."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, *, max_steps, resume, teacher_module, chunk=False):
        self.cfg = cfg
        self.chunk = bool(chunk)
        self.out = out_dir
        self.max_steps = max_steps
        self.resume = resume
        self.teacher_module = teacher_module
        self.info = D.dist_info()
        self.device = resolve_device(cfg.runtime.device)
        from maskinv.utils.precision import choose_precision

        choice = choose_precision(cfg.precision.mode, self.device, training=True)
        self.precision, self.precision_reason = choice.precision, choice.reason
        nc = cfg.runtime.nan_check
        self.nan_check = nc if nc != "auto" else ("log" if self.device.type == "cuda" else "step")
        if max_steps is not None and max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0, got {max_steps}")
        self._learning = False  # set once a logged gradient norm is > 0

    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        self.out.mkdir(parents=True, exist_ok=True)
        old_threads = torch.get_num_threads()
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                # the process-global torch RNG only feeds dropout; scope and seed it per rank
                torch.manual_seed(derive_seed(cfg.runtime.seed, "dropout", info.rank))
                return self._run()
        finally:
            torch.set_num_threads(old_threads)

    def _run(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        state = load_resume_state(self.cfg, self.out, self.info, self.resume)
        if self.info.is_main:
            save_config(self.cfg, self.out / "config.yaml")
        self._setup_data()
        self._setup_models()
        step = self._start(state)
        try:
            step, status = self._loop(step)
            self._wind_down(step, status)
        finally:
            self.logger.close()
            if self.cache is not None:
                self.cache.flush()
        return self._finish(step, status, t_start, loop_end=time.perf_counter())

    # -------------------------------------------------------------- setup
    def _setup_data(self) -> None:
        """Data folder, dataset, batch order, and the run's length in steps."""
        cfg = self.cfg
        self.data_root = prepare_data_dir(cfg, self.info)
        self.dataset = build_dataset(cfg, self.data_root)
        h, w = self.dataset.image_size
        if h != w:
            raise DataFormatError(f"{self.data_root}: training images must be square, got {h}x{w}")
        self.image_size = h
        self.num_classes = int(self.dataset.num_classes)
        self.source = BatchSource(self.dataset, batch_size=cfg.runtime.batch_size, seed=cfg.runtime.seed, info=self.info,
                                  workers=cfg.runtime.workers, in_memory=cfg.data.in_memory,
                                  pin_memory=pin_memory(cfg, self.device), prefetch_factor=cfg.runtime.prefetch_factor)
        self.spe = self.source.steps_per_epoch
        self.sched_total = total_steps(cfg.schedule, self.spe)
        self.stop = self.sched_total if self.max_steps is None else min(self.sched_total, int(self.max_steps))
        if self.max_steps is not None and self.max_steps > self.sched_total and self.info.is_main and not self.chunk:
            print(f"maskinv: note: --max-steps {self.max_steps} is beyond the schedule's {self.sched_total} steps; "
                  f"the run stops at {self.sched_total} (raise schedule.epochs to train longer)", file=sys.stderr, flush=True)

    def _setup_models(self) -> None:
        """Student, teacher, optimisers, masker, teacher cache and the step (fixed construction order)."""
        cfg, info, dev, h = self.cfg, self.info, self.device, self.image_size
        backbone, head, pfc = build_models(cfg, self.num_classes, h, rank=info.rank)
        mf = memory_format(cfg)
        backbone = backbone.to(dev, memory_format=mf)
        head = head.to(dev) if head is not None else None
        pfc = pfc.to(dev) if pfc is not None else None
        teacher = build_teacher(cfg, self.teacher_module)
        if teacher is not None:
            teacher = teacher.to(dev, memory_format=mf)
        autocast = autocast_factory(self.precision, dev)
        maybe_compile(cfg, backbone)
        self.student = s = assemble_student(cfg, info, dev, self.precision, backbone, head, pfc, autocast, self.spe)
        masker = build_masker(cfg, h, dev, record_meshes=self._record_meshes)
        self.masker = masker
        self.cache = None
        if teacher is not None and cfg.kd.weight > 0 and cfg.teacher.cache.enabled:
            self.cache = self._open_cache(teacher)
        self.step_fn = TrainStep(model=s.model, backbone=s.backbone, optimizers=s.optimizers, scaler=s.scaler,
                                 pfc=s.pfc, teacher=teacher, cache=self.cache, masker=masker, mask_prob=cfg.masks.prob,
                                 kd_weight=cfg.kd.weight if teacher is not None else 0.0, flip=cfg.data.flip,
                                 clip_grad_norm=cfg.optim.clip_grad_norm, autocast=autocast,
                                 channels_last=cfg.precision.channels_last, device=dev, seed=cfg.runtime.seed,
                                 rank=info.rank, check_finite=self.nan_check == "step")
        if self.cache is not None and cfg.teacher.cache.mode == "prepass":
            from .teacher_cache import prepass

            prepass(self.cache, self.step_fn.teacher_forward, self.source.images_at, rank=info.rank,
                    world_size=info.world_size, batch_size=cfg.runtime.batch_size, device=dev,
                    records_forward=getattr(teacher, "embed_records", None))

    def _record_meshes(self):
        """The mesh pre-pass (``masks.renderer: mesh``): one cached mesh per record, in ``<out>/mesh_cache``."""
        from .mesh_masks import record_meshes

        return record_meshes(self.source.images_at, len(self.dataset), self.out / "mesh_cache",
                             rank=self.info.rank, world_size=self.info.world_size)

    def _open_cache(self, teacher):
        from .teacher_cache import data_fingerprint, open_shared_cache, teacher_fingerprint

        tc = self.cfg.teacher.cache
        folder = Path(tc.path) if tc.path else self.out / "teacher_cache"
        emb_size = getattr(teacher, "embedding_size", None) or self.cfg.model.embedding_size
        return open_shared_cache(folder, is_main=self.info.is_main, num_records=len(self.dataset),
                                 embedding_size=int(emb_size),
                                 teacher_fp=teacher_fingerprint(teacher, extra=f"precision={self.precision}"),
                                 data_fp=data_fingerprint(self.data_root), image_size=self.image_size, dtype=tc.dtype)

    # -------------------------------------------------------------- restore
    def _start(self, state: dict | None) -> int:
        """Restore ``state`` (if resuming), open the log, the evaluator and the meter; returns the first step."""
        cfg, info, out = self.cfg, self.info, self.out
        self.ckpts = RunCheckpoints(cfg, out, info, self.student, steps_per_epoch=self.spe,
                                    num_classes=self.num_classes, precision=self.precision)
        self.stop_signal: int | None = None
        # the update implementation (fused/foreach) is this run's choice, not the checkpoint's
        impl = [[{k: g.get(k) for k in ("fused", "foreach")} for g in o.param_groups] for o in self.student.optimizers]
        step = self.ckpts.restore(state) if state is not None else 0
        for o, groups in zip(self.student.optimizers, impl):
            for g, kw in zip(o.param_groups, groups):
                g.update(kw)
        if info.is_main:
            truncate_metrics(out / "metrics.jsonl", step)
        self.logger = MetricsLogger(out, enabled=info.is_main, tensorboard=cfg.runtime.tensorboard, start_step=step,
                                    progress=cfg.runtime.progress, total_steps=self.stop)
        self.evaluate = PeriodicEval(cfg, self.data_root, backbone=self.student.backbone, logger=self.logger,
                                     is_main=info.is_main)
        if not self.chunk:
            self.logger.write_line(f"precision {self.precision} ({cfg.precision.mode}: {self.precision_reason})")
        if state is not None and not self.chunk:
            self.logger.write_line(f"resumed from {state['_path']} at step {step}")
        self.meter = TrainMeter(cfg.runtime.batch_size * info.world_size, cfg.runtime.log_every)
        if state is not None and info.is_main:
            # a resumed run that has no step left reports the losses logged before it stopped
            self.meter.last.update(last_logged_losses(out / "metrics.jsonl"))
        self.student.backbone.train()
        if self.student.head is not None:
            self.student.head.train()
        return step

    # -------------------------------------------------------------- step loop
    def _loop(self, step: int) -> tuple[int, str]:
        """Steps until ``stop`` or a signal; returns ``(step, status)``.

        Nothing here reads a device value every step (that would stall the GPU pipeline): losses
        are read at log steps, and with ``runtime.nan_check: log`` a non-finite loss is detected at
        the next log or checkpoint step (or the end), i.e. within ``log_every`` steps.
        """
        cfg, stop, spe = self.cfg, self.stop, self.spe
        optimizers, schedulers = self.student.optimizers, self.student.schedulers
        # under NCCL the stop flag's all-reduce is read one step later (no sync of the step's stream)
        deferred = self.info.enabled and self.device.type == "cuda"
        with StopFlag() as stopflag:
            while step < stop:
                epoch, b0 = divmod(step, spe)
                for x, y, idx in self.source.iterate(epoch, b0):
                    self.meter.step_started()
                    lr = optimizers[0].param_groups[0]["lr"]
                    res = self.step_fn(x, y, step, idx)
                    if res.finite is False:
                        self._diverged(step, epoch, lr, res)
                    for s in schedulers:
                        s.step()
                    step += 1
                    self.meter.step_done(res)
                    ckpt_due = bool(cfg.runtime.checkpoint_every) and step % cfg.runtime.checkpoint_every == 0 and step < stop
                    if self.meter.due(step, stop):
                        self._check_finite(step, epoch, lr)
                        rec = self.meter.window_record(step, epoch, lr, res.grad_norm)
                        self.logger.log(rec)
                        self._check_learning(step, rec)
                        self.logger.progress(1, loss=f"{rec['loss']:.3f}", ips=f"{rec['images_per_s']:.0f}")
                    else:
                        self.logger.progress(1)
                    self.evaluate(step)
                    if ckpt_due:
                        self._check_finite(step, epoch, lr)  # never checkpoint weights a NaN step touched
                        self.ckpts.save(step)
                    if stopflag.requested(distributed=self.info.enabled, deferred=deferred):
                        self.stop_signal = stopflag.reported
                        self._check_finite(step, epoch, lr)
                        return step, "interrupted"
                    if step >= stop:
                        break
        self._check_finite(step, None, None)
        return step, "completed" if stop == self.sched_total else "max_steps"

    def _check_learning(self, step: int, rec: dict[str, Any]) -> None:
        """Stop a run that cannot learn: a clipped gradient norm of exactly 0 at every logged step up
        to :data:`LEARN_CHECK_STEPS` means the loss does not depend on the weights (saturated or
        constant outputs) or has nothing to teach (a copy of the teacher that never sees a mask).
        Shorter runs are not judged."""
        if self._learning or "grad_norm" not in rec:
            return
        if rec["grad_norm"] > 0:
            self._learning = True
        elif step >= LEARN_CHECK_STEPS:
            raise TrainingStalledError(
                f"the student is not learning: its gradient norm was 0 at every logged step of the first {step} "
                f"(outputs saturated or constant, e.g. an untrained network with frozen BatchNorm statistics: set "
                f"model.freeze_bn_stats=false; or nothing to learn, e.g. a copy of the teacher with masks.prob=0)")

    def _check_finite(self, step: int, epoch, lr) -> None:
        """``runtime.nan_check: log``: stop if a step since the last check had a non-finite loss."""
        if self.step_fn.check_finite:
            return
        bad, first = self.meter.nonfinite_pending(step)
        if self.info.enabled:  # every rank checks at the same steps: all stop together
            bad = D.all_reduce_flag(bad)
        if bad:
            last = self.ckpts.last
            where = f"; last good checkpoint: {last}" if last else " (no checkpoint yet)"
            self.logger.log({"step": step, "epoch": epoch, "lr": lr, "event": "diverged"})
            raise TrainingDivergedError(
                f"non-finite loss at a step in {first}..{step} (runtime.nan_check=log checks at log and "
                f"checkpoint steps; the weights were updated by that step){where}")

    def _diverged(self, step: int, epoch: int, lr: float, res) -> None:
        v = res.scalars()
        self.logger.log({"step": step + 1, "epoch": epoch, "lr": lr, **v, "event": "diverged"})
        last = self.ckpts.last
        where = f"; last good checkpoint: {last}" if last else " (no checkpoint yet)"
        raise TrainingDivergedError(
            f"non-finite loss at step {step + 1} (loss {v['loss']}, head {v['head_loss']}, kd {v['kd_loss']}); "
            f"stopped without updating the weights{where}")

    def _wind_down(self, step: int, status: str) -> None:
        """Final checkpoint (also on SIGTERM/SIGINT) and the final evaluation when the last step was not one."""
        if not self.ckpts.is_saved(step) and (step > 0 or status != "interrupted"):
            self.ckpts.save(step)
        every = self.cfg.runtime.eval_every
        if status != "interrupted" and every and step % every:
            self.evaluate(step, force=True)

    # -------------------------------------------------------------- finish
    def _finish(self, step: int, status: str, t_start: float, loop_end: float) -> dict[str, Any]:
        """Rank-sync check, export (unless interrupted) and summary.json; returns the summary."""
        info, out, s = self.info, self.out, self.student
        digest = weights_digest(s.backbone)
        digests = gather_digests(digest, info)
        summary: dict[str, Any] = {
            "out_dir": str(out), "config": str(out / "config.yaml"), "metrics": str(out / "metrics.jsonl"),
            "checkpoint": str(self.ckpts.last) if self.ckpts.last else None, "backbone": None, "backbone_meta": None,
            "step": step, "total_steps": self.sched_total, "steps_per_epoch": self.spe, "status": status,
            **self.meter.last, "images_per_s": self.meter.run_images_per_s(loop_end),
            "elapsed_s": time.perf_counter() - t_start, "eval": self.evaluate.last,
            "teacher_cache": self.cache.info() if self.cache is not None else None,
            "ranks_in_sync": len(set(digests)) == 1, "weights_sha256": digest, "world_size": info.world_size,
            "precision": self.precision, "precision_reason": self.precision_reason, "num_classes": self.num_classes,
            "num_images": len(self.dataset), "signal": self.stop_signal, "mask_renderer": self.cfg.masks.renderer,
            "mask_renderer_revision": renderer_revision(self.cfg.masks.renderer),
        }
        if hasattr(self.masker, "info"):  # masks.renderer: mesh: failed meshes (bank-mask fallback), the pre-pass
            summary["mesh_masks"] = {**self.masker.info(), "prepass": getattr(self.masker, "prepass", None)}
        if info.is_main:
            if status != "interrupted":
                summary.update(export_student(self.cfg, out, s.backbone, s.head, step))
            write_summary(out, summary)
            if status == "interrupted":
                command = "adapt" if self.cfg.head.name == "none" and self.cfg.data.labels == "ignore" else "train"
                print(resume_hint(out, step, self.sched_total, self.stop_signal, self.ckpts.last, command),
                      file=sys.stderr, flush=True)
        D.barrier()
        return summary

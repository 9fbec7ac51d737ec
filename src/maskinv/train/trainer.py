"""The training loop: teacher, baselines and MaskInv students from one :class:`TrainConfig`.

:func:`run_training` builds data, student (backbone + margin head or PartialFC), the frozen
teacher, optimiser, schedule and AMP from the config, then runs :class:`~.step.TrainStep` until
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
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskinv.errors import CheckpointError, ConfigError, DataFormatError, MaskinvError
from maskinv.utils.hashing import tensors_sha256

from . import checkpoint as ckpt_mod
from . import distributed as D
from .config import TrainConfig, config_diff, config_from_dict, config_hash, config_to_dict, save_config, validate_config
from .metrics import MetricsLogger, truncate_metrics
from .schedule import make_scheduler, total_steps
from .step import StudentNet, TrainStep


class TrainingDivergedError(MaskinvError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


# ----------------------------------------------------------------------------- data

def default_synth_dir(spec) -> Path:
    """Cache folder for generated SynthFaces: ``$MASKINV_CACHE`` (default ``~/.cache/maskinv``)/synth/<params>."""
    base = Path(os.environ.get("MASKINV_CACHE", Path.home() / ".cache" / "maskinv"))
    key = (f"i{spec.identities}-n{spec.images_per_identity}-s{spec.seed}-px{spec.size}"
           f"-v{spec.val_identities}x{spec.val_pairs}-{spec.difficulty}")
    return base / "synth" / key


def prepare_data_dir(cfg: TrainConfig, info: D.DistInfo) -> Path:
    """Resolve the training-data folder; for ``synth`` generate it (rank 0, atomically) if missing."""
    d = cfg.data
    if d.source != "synth":
        root = Path(d.path)
        if not root.exists():
            raise DataFormatError(f"data.path: training data not found: {root}")
        return root
    root = Path(d.path) if d.path else default_synth_dir(d.synth)
    # only rank 0 generates; every rank passes the same barrier (no early return before it)
    if info.is_main and not (root / "train.rec").is_file():
        if d.synth is None:
            raise DataFormatError(f"data.path: {root} has no train.rec and data.synth is not set to generate it")
        if root.exists() and any(root.iterdir()):
            raise DataFormatError(f"data.path: {root} is not empty but has no train.rec; refusing to generate SynthFaces into it")
        from maskinv.data.synth import generate_dataset

        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            s = d.synth
            generate_dataset(tmp, identities=s.identities, images_per_identity=s.images_per_identity, seed=s.seed,
                             size=s.size, val_identities=s.val_identities, val_pairs=s.val_pairs,
                             difficulty=s.difficulty)
            if root.exists() and not any(root.iterdir()):
                root.rmdir()  # an empty folder: os.replace cannot move a folder onto it
            try:
                os.replace(tmp, root)  # atomic: a crash never leaves half a dataset at root
            except OSError:
                if not (root / "train.rec").is_file():  # lost a race with another run: fine if it finished
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    D.barrier()
    if not (root / "train.rec").is_file():
        raise DataFormatError(f"{root}: no train.rec (SynthFaces generation failed on rank 0?)")
    return root


def build_dataset(cfg: TrainConfig, root: Path):
    """The training dataset for ``data.source`` (RecordIO for recordio/synth, folders otherwise)."""
    if cfg.data.source == "folder":
        from maskinv.data.folders import ImageFolderDataset

        return ImageFolderDataset(root)
    from maskinv.data.recordio import RecordIODataset

    return RecordIODataset(root)


class _Indexed:
    """Dataset wrapper yielding ``(image, label, index)`` (the index keys the teacher cache)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, label = self.ds[i]
        return img, label, i


def _collate(items):
    imgs = np.stack([it[0] for it in items])
    labels = torch.as_tensor([it[1] for it in items], dtype=torch.int64)
    idx = torch.as_tensor([it[2] for it in items], dtype=torch.int64)
    return torch.from_numpy(imgs), labels, idx


def _worker_init(worker_id: int) -> None:
    # Decoding needs no randomness (every draw happens in the step, seeded by the step), so the
    # workers need no seeding. Do not touch cv2's thread pool here: after fork() from a parent
    # that used it (mask rendering), cv2.setNumThreads deadlocks.
    torch.set_num_threads(1)


class _Len:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


class BatchSource:
    """Deterministic batches: ``DistributedSampler(seed, set_epoch)`` order, skip-able within an epoch.

    ``in_memory`` decodes every image once and batches by indexing; otherwise a DataLoader with
    ``workers`` processes decodes each epoch's batch list (so the resume position is exact with
    any number of workers).
    """

    def __init__(self, dataset, *, batch_size: int, seed: int, info: D.DistInfo, workers: int = 0,
                 in_memory: bool = False, pin_memory: bool = False):
        from torch.utils.data.distributed import DistributedSampler

        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers
        self.pin_memory = pin_memory
        self.sampler = DistributedSampler(_Len(len(dataset)), num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"runtime.batch_size: {len(dataset)} training images are fewer than one global batch "
                f"({batch_size} x {info.world_size} ranks)")
        self.images = None
        self.labels = np.asarray(dataset.labels, dtype=np.int64)
        if in_memory:
            first, _ = dataset[0]
            arr = np.empty((len(dataset),) + first.shape, dtype=np.uint8)
            for i in range(len(dataset)):
                img, _ = dataset[i]
                if img.shape != first.shape:
                    raise DataFormatError(f"training item {i}: image shape {img.shape} differs from {first.shape}")
                arr[i] = img
            self.images = arr

    def batches(self, epoch: int, start: int = 0) -> list[np.ndarray]:
        self.sampler.set_epoch(epoch)
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        n = self.steps_per_epoch
        return [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(start, n)]

    def iterate(self, epoch: int, start: int = 0):
        """Yield ``(uint8 (B,3,H,W), labels (B,), indices (B,))`` for batches ``start..`` of ``epoch``."""
        batch_list = self.batches(epoch, start)
        if self.images is not None:
            for idx in batch_list:
                x = torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).contiguous()
                yield x, torch.from_numpy(self.labels[idx]), torch.from_numpy(idx)
            return
        from torch.utils.data import DataLoader

        loader = DataLoader(_Indexed(self.dataset), batch_sampler=[b.tolist() for b in batch_list],
                            num_workers=self.workers, collate_fn=_collate, pin_memory=self.pin_memory,
                            worker_init_fn=_worker_init if self.workers else None,
                            prefetch_factor=4 if self.workers else None)
        for imgs, labels, idx in loader:
            yield imgs.permute(0, 3, 1, 2).contiguous(), labels, idx


# ----------------------------------------------------------------------------- helpers

def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device: {spec!r} requested but CUDA is not available")
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


def resolve_precision(mode: str, device: torch.device) -> str:
    """The one meaning of ``auto`` (:mod:`maskinv.utils.precision`); fp16 needs CUDA."""
    from maskinv.utils.precision import resolve_precision as _resolve

    return _resolve(mode, device, training=True)


def autocast_factory(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") and isinstance(getattr(m, "module"), nn.Module) else m


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's parameters (DDP ranks in sync <=> equal digests; BN running statistics
    are per-rank between forwards and are not included)."""
    return tensors_sha256(module.named_parameters(), with_meta=False)


def _last_logged_losses(path: Path) -> dict[str, float]:
    from .metrics import read_metrics

    try:
        records = [r for r in read_metrics(path) if "event" not in r and "loss" in r]
    except (OSError, ValueError):
        return {}
    if not records:
        return {}
    return {k: records[-1][k] for k in ("loss", "head_loss", "kd_loss") if records[-1].get(k) is not None}


def _resolve_bin(path: str, data_root: Path) -> Path:
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    alt = data_root / p
    return alt if alt.exists() else p


class _StopFlag:
    """SIGTERM/SIGINT -> flag (checked after every step); handlers restored on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


# ----------------------------------------------------------------------------- main entry

def run_training(cfg: TrainConfig | dict, out_dir: str | os.PathLike, *, max_steps: int | None = None,
                 resume: bool = False, teacher_module: nn.Module | None = None) -> dict[str, Any]:
    """Train per ``cfg`` into ``out_dir``; returns a summary dict (also written as summary.json).

    ``max_steps``: total number of optimiser steps of the run (a resumed run stops at the same
    total; the schedule keeps its configured length). ``resume``: continue from the newest
    checkpoint in ``out_dir`` (the config must match the checkpoint's; without a checkpoint the
    run starts from scratch). ``teacher_module``: an already loaded frozen teacher (tests/API);
    otherwise ``teacher.path`` is loaded with :func:`maskinv.distill.load_teacher` (a missing
    file raises :class:`CheckpointError`, never a random teacher).

    Summary keys: out_dir, config, metrics, checkpoint, backbone, backbone_meta, step,
    total_steps, status ("completed" | "max_steps" | "interrupted"), loss, head_loss, kd_loss,
    images_per_s, elapsed_s, eval, teacher_cache, ranks_in_sync, weights_sha256.
    """
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    validate_config(cfg)
    return _Trainer(cfg, Path(out_dir), max_steps=max_steps, resume=resume, teacher_module=teacher_module).run()


class _Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, *, max_steps, resume, teacher_module):
        self.cfg = cfg
        self.out = out_dir
        self.max_steps = max_steps
        self.resume = resume
        self.teacher_module = teacher_module
        self.info = D.dist_info()
        self.device = resolve_device(cfg.runtime.device)
        from maskinv.utils.precision import choose_precision

        choice = choose_precision(cfg.precision.mode, self.device, training=True)
        self.precision, self.precision_reason = choice.precision, choice.reason
        if max_steps is not None and max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0, got {max_steps}")

    # -------------------------------------------------------------- setup
    def _load_resume_state(self) -> dict | None:
        if not self.resume:
            existing = ckpt_mod.list_checkpoints(self.out)
            if existing:
                raise ConfigError(
                    f"{self.out} already holds a run (checkpoint {existing[-1][1].name}); resume it (--resume / "
                    "resume=True) or choose another output folder")
            return None
        path = ckpt_mod.latest_checkpoint(self.out)
        if path is None:
            return None
        state = ckpt_mod.load_state(path)
        saved = config_from_dict(state["config"], origin=str(path), validate=False)
        # run-relative identity: a moved run folder still matches (plain hash: runs saved before that)
        if state.get("config_hash") not in (config_hash(self.cfg, run_dir=self.out), config_hash(self.cfg)):
            diff = [k for k in config_diff(saved, self.cfg, run_dir=self.out)]
            raise ConfigError(f"--resume {self.out}: config differs from checkpoint {path.name} in: {', '.join(diff) or '(hash only)'}")
        if int(state.get("world_size", 1)) != self.info.world_size:
            raise CheckpointError(f"{path}: written with {state.get('world_size')} ranks, resuming with {self.info.world_size} "
                                  "(the sampler position depends on the world size)")
        state["_path"] = str(path)
        return state

    def _build_models(self, num_classes: int, image_size: int):
        from maskinv.heads import get_head
        from maskinv.models import get_model, load_backbone, load_state_dict_strict

        cfg = self.cfg
        kw = dict(cfg.model.kwargs)
        if "input_size" in kw and int(kw["input_size"]) != image_size:
            raise ConfigError(f"model.kwargs.input_size={kw['input_size']} but the training images are {image_size}x{image_size}")
        kw["input_size"] = image_size
        if "embedding_size" in kw:
            raise ConfigError("model.kwargs.embedding_size: set model.embedding_size instead")
        backbone = get_model(cfg.model.name, embedding_size=cfg.model.embedding_size, seed=cfg.runtime.seed, **kw)
        if cfg.model.init:
            src = load_backbone(cfg.model.init)
            load_state_dict_strict(backbone, src.state_dict(), source=cfg.model.init)
        hkw = dict(cfg.head.kwargs)
        hkw.setdefault("seed", cfg.runtime.seed + 1)
        pfc = None
        if cfg.head.partial_fc.enabled:
            from .partial_fc import PartialFC

            margin = get_head(cfg.head.name, cfg.model.embedding_size, 1, **hkw)
            g = torch.Generator().manual_seed(cfg.runtime.seed * 1000 + 17 + self.info.rank)
            pfc = PartialFC(margin, cfg.model.embedding_size, num_classes,
                            sample_rate=cfg.head.partial_fc.sample_rate, generator=g)
            if cfg.head.init:
                full = get_head(cfg.head.name, cfg.model.embedding_size, num_classes, **hkw)
                full.load_header(self._header_source(cfg.head.init))
                pfc.load_full_kernel(full.kernel.detach())
            head = None
        else:
            head = get_head(cfg.head.name, cfg.model.embedding_size, num_classes, **hkw)
            if cfg.head.init:
                head.load_header(self._header_source(cfg.head.init))
        return backbone, head, pfc

    @staticmethod
    def _header_source(path: str):
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"head.init: header checkpoint not found: {p}")
        try:
            return ckpt_mod.load_state(p)  # our training checkpoint: load_header finds its "head"
        except CheckpointError:
            return str(p)

    def _build_teacher(self):
        cfg = self.cfg
        if self.teacher_module is not None:
            return self.teacher_module
        if not cfg.teacher.path or cfg.kd.weight <= 0:
            return None
        from maskinv.distill import load_teacher

        return load_teacher(cfg.teacher.path, cfg.teacher.name, **dict(cfg.teacher.kwargs))

    def _build_optimizers(self, params_main, params_pfc):
        o = self.cfg.optim
        global_batch = self.cfg.runtime.batch_size * self.info.world_size
        lr = o.lr * (global_batch / o.lr_reference_batch if o.lr_reference_batch else 1.0)
        self.base_lr = lr

        def make(params):
            if o.name == "sgd":
                return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
            return torch.optim.AdamW(params, lr=lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)

        opts = [make(params_main)]
        if params_pfc:
            opts.append(make(params_pfc))
        return opts

    # -------------------------------------------------------------- checkpoints
    def _state(self, step: int) -> dict:
        spe = self.source.steps_per_epoch
        st = {
            "backbone": self.backbone.state_dict(),
            "arch": getattr(self.backbone, "arch", None),
            "head": self.head.state_dict() if self.head is not None else None,
            "head_spec": getattr(self.head, "spec", None),
            "optimizer": self.optimizers[0].state_dict(),
            "scheduler": self.schedulers[0].state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": int(step),
            "epoch": int(step // spe),
            "batch_in_epoch": int(step % spe),
            "steps_per_epoch": int(spe),
            "world_size": self.info.world_size,
            "rng": ckpt_mod.rng_state(),
            "config": config_to_dict(self.cfg),
            "config_hash": config_hash(self.cfg, run_dir=self.out),
            "num_classes": int(self.num_classes),
            "precision": self.precision,
        }
        return st

    def _save_checkpoint(self, step: int) -> Path:
        path = ckpt_mod.checkpoint_path(self.out, step)
        if self.pfc is not None:
            shard = {"format": ckpt_mod.FORMAT, "format_version": ckpt_mod.FORMAT_VERSION, "rank": self.info.rank,
                     "pfc": self.pfc.state_dict(), "optimizer": self.optimizers[1].state_dict(),
                     "scheduler": self.schedulers[1].state_dict(), "rng": ckpt_mod.rng_state()}
            ckpt_mod.save_state(ckpt_mod.shard_path(path, self.info.rank), shard)
        D.barrier()  # shards first: the main file marks the checkpoint complete
        if self.info.is_main:
            ckpt_mod.save_state(path, self._state(step))
            ckpt_mod.prune_checkpoints(self.out, self.cfg.runtime.keep_last)
        D.barrier()
        self.last_ckpt = path
        return path

    def _restore(self, state: dict) -> int:
        self.backbone.load_state_dict(state["backbone"])
        if self.head is not None:
            self.head.load_state_dict(state["head"])
        self.optimizers[0].load_state_dict(state["optimizer"])
        self.schedulers[0].load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.pfc is not None:
            sp = ckpt_mod.shard_path(Path(state["_path"]), self.info.rank)
            shard = ckpt_mod.load_state(sp)
            self.pfc.load_state_dict(shard["pfc"])
            self.optimizers[1].load_state_dict(shard["optimizer"])
            self.schedulers[1].load_state_dict(shard["scheduler"])
            rng = shard["rng"]
        else:
            rng = state["rng"]
        ckpt_mod.restore_rng_state(rng)
        if int(state["steps_per_epoch"]) != self.source.steps_per_epoch:
            raise CheckpointError(f"{state['_path']}: {state['steps_per_epoch']} steps per epoch at save time, "
                                  f"{self.source.steps_per_epoch} now (data or batch size changed)")
        return int(state["step"])

    # -------------------------------------------------------------- eval
    def _make_eval(self, data_root: Path):
        cfg = self.cfg
        if not cfg.runtime.eval_every or not self.info.is_main:
            return None
        bins = [_resolve_bin(b, data_root) for b in cfg.data.val_bins]
        for b in bins:
            if not b.is_file():
                raise DataFormatError(f"data.val_bins: verification file not found: {b}")
        from maskinv.evaluate import VerificationCallback

        return VerificationCallback([str(b) for b in bins], cfg.runtime.eval_every,
                                    protocols=tuple(cfg.runtime.eval_protocols), seed=cfg.runtime.seed,
                                    batch_size=cfg.runtime.eval_batch_size)

    def _run_eval(self, step: int, force: bool = False) -> dict | None:
        if self.eval_cb is None:
            return None
        if not force and step % self.cfg.runtime.eval_every:
            return None
        res = self.eval_cb(self.backbone, step, force=force)
        if res:
            flat = _flatten_eval(res)
            self.logger.log_eval(step, flat)
            self.last_eval = flat
            self.backbone.train()
        return res

    # -------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        old_threads = torch.get_num_threads()
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                # the process-global torch RNG only feeds dropout; scope and seed it per rank
                torch.manual_seed(cfg.runtime.seed * 7919 + info.rank)
                return self._run()
        finally:
            torch.set_num_threads(old_threads)

    def _run(self) -> dict[str, Any]:
        cfg, info, out, dev = self.cfg, self.info, self.out, self.device
        t_start = time.perf_counter()
        state = self._load_resume_state()
        if info.is_main:
            save_config(cfg, out / "config.yaml")

        data_root = prepare_data_dir(cfg, info)
        dataset = build_dataset(cfg, data_root)
        h, w = dataset.image_size
        if h != w:
            raise DataFormatError(f"{data_root}: training images must be square, got {h}x{w}")
        self.num_classes = int(dataset.num_classes)
        self.source = BatchSource(dataset, batch_size=cfg.runtime.batch_size, seed=cfg.runtime.seed, info=info,
                                  workers=cfg.runtime.workers, in_memory=cfg.data.in_memory,
                                  pin_memory=dev.type == "cuda")
        spe = self.source.steps_per_epoch
        sched_total = total_steps(cfg.schedule, spe)
        stop = sched_total if self.max_steps is None else min(sched_total, int(self.max_steps))

        backbone, head, pfc = self._build_models(self.num_classes, h)
        mf = torch.channels_last if cfg.precision.channels_last else torch.contiguous_format
        self.backbone = backbone.to(dev, memory_format=mf)
        self.head = head.to(dev) if head is not None else None
        self.pfc = pfc.to(dev) if pfc is not None else None
        teacher = self._build_teacher()
        if teacher is not None:
            teacher = teacher.to(dev, memory_format=mf)
        autocast = autocast_factory(self.precision, dev)
        net = StudentNet(self.backbone, self.head, autocast)
        model: nn.Module = net
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # default buffer broadcast: every forward starts from rank 0's BN statistics
            model = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        params_main = [p for p in net.parameters() if p.requires_grad]
        params_pfc = [p for p in self.pfc.parameters()] if self.pfc is not None else []
        self.optimizers = self._build_optimizers(params_main, params_pfc)
        self.schedulers = [make_scheduler(o, cfg.schedule, spe) for o in self.optimizers]
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

        masker = None
        if cfg.masks.prob > 0:
            from maskinv.masks import BatchMasker

            masker = BatchMasker(image_size=h, kinds=tuple(cfg.masks.kinds), device=dev)

        cache = None
        if teacher is not None and cfg.kd.weight > 0 and cfg.teacher.cache.enabled:
            cache = self._open_cache(teacher, dataset, data_root, h)

        self.step_fn = TrainStep(model=model, backbone=self.backbone, optimizers=self.optimizers, scaler=self.scaler,
                                 pfc=self.pfc, teacher=teacher, cache=cache, masker=masker, mask_prob=cfg.masks.prob,
                                 kd_weight=cfg.kd.weight if teacher is not None else 0.0, flip=cfg.data.flip,
                                 clip_grad_norm=cfg.optim.clip_grad_norm, autocast=autocast,
                                 channels_last=cfg.precision.channels_last, device=dev, seed=cfg.runtime.seed,
                                 rank=info.rank)
        if cache is not None and cfg.teacher.cache.mode == "prepass":
            self._prepass(cache, dataset)

        step = 0
        self.last_ckpt: Path | None = None
        self.stop_signal: int | None = None
        if state is not None:
            step = self._restore(state)
            self.last_ckpt = Path(state["_path"])
        if info.is_main:
            truncate_metrics(out / "metrics.jsonl", step)
        self.logger = MetricsLogger(out, enabled=info.is_main, tensorboard=cfg.runtime.tensorboard, start_step=step,
                                    progress=cfg.runtime.progress, total_steps=stop)
        self.eval_cb = self._make_eval(data_root)
        self.last_eval: dict | None = None
        self.logger.write_line(f"precision {self.precision} ({cfg.precision.mode}: {self.precision_reason})")
        if state is not None:
            self.logger.write_line(f"resumed from {state['_path']} at step {step}")
        status = "completed" if stop == sched_total else "max_steps"
        last = {"loss": float("nan"), "head_loss": float("nan"), "kd_loss": float("nan")}
        if state is not None and info.is_main:
            # a resumed run that has no step left reports the losses logged before it stopped
            last.update(_last_logged_losses(out / "metrics.jsonl"))
        window = {"n": 0, "loss": 0.0, "head": 0.0, "kd": 0.0, "masked": 0.0, "t": time.perf_counter(), "imgs": 0}
        ips_all = {"imgs": 0, "t0": time.perf_counter()}
        B = cfg.runtime.batch_size * info.world_size
        self.backbone.train()
        if self.head is not None:
            self.head.train()
        try:
            with _StopFlag() as stopflag:
                while step < stop:
                    epoch, b0 = divmod(step, spe)
                    for x, y, idx in self.source.iterate(epoch, b0):
                        t0 = time.perf_counter()
                        lr = self.optimizers[0].param_groups[0]["lr"]
                        res = self.step_fn(x, y, step, idx)
                        if not res.finite:
                            self.logger.log({"step": step + 1, "epoch": epoch, "lr": lr, "loss": res.loss,
                                             "head_loss": res.head_loss, "kd_loss": res.kd_loss, "event": "diverged"})
                            where = f"; last good checkpoint: {self.last_ckpt}" if self.last_ckpt else " (no checkpoint yet)"
                            raise TrainingDivergedError(
                                f"non-finite loss at step {step + 1} (loss {res.loss}, head {res.head_loss}, kd {res.kd_loss}); "
                                f"stopped without updating the weights{where}")
                        for s in self.schedulers:
                            s.step()
                        step += 1
                        dt = time.perf_counter() - t0
                        ips_all["imgs"] += B
                        window["n"] += 1
                        window["loss"] += res.loss
                        window["head"] += res.head_loss
                        window["kd"] += res.kd_loss
                        window["masked"] += res.masked_fraction
                        window["imgs"] += B
                        last = {"loss": res.loss, "head_loss": res.head_loss, "kd_loss": res.kd_loss}
                        log_now = cfg.runtime.log_every and (step % cfg.runtime.log_every == 0 or step == stop)
                        if log_now:
                            el = max(time.perf_counter() - window["t"], 1e-9)
                            n = window["n"]
                            rec = {"step": step, "epoch": epoch, "lr": lr, "loss": window["loss"] / n,
                                   "head_loss": window["head"] / n, "kd_loss": window["kd"] / n,
                                   "images_per_s": window["imgs"] / el, "masked_fraction": window["masked"] / n,
                                   "time": time.time()}
                            if res.grad_norm is not None:
                                rec["grad_norm"] = res.grad_norm
                            self.logger.log(rec)
                            window = {"n": 0, "loss": 0.0, "head": 0.0, "kd": 0.0, "masked": 0.0,
                                      "t": time.perf_counter(), "imgs": 0}
                        self.logger.progress(1, loss=f"{res.loss:.3f}", ips=f"{B / max(dt, 1e-9):.0f}")
                        self._run_eval(step)
                        if cfg.runtime.checkpoint_every and step % cfg.runtime.checkpoint_every == 0 and step < stop:
                            self._save_checkpoint(step)
                        stop_now = D.all_reduce_flag(stopflag.signum is not None) if info.enabled else stopflag.signum is not None
                        if stop_now:
                            status = "interrupted"
                            self.stop_signal = stopflag.signum if stopflag.signum is not None else int(signal.SIGTERM)
                            break
                        if step >= stop:
                            break
                    if status == "interrupted":
                        break
            # final checkpoint (also on SIGTERM/SIGINT), then the export
            if self.last_ckpt is None or ckpt_mod.checkpoint_path(out, step) != self.last_ckpt:
                if step > 0 or status != "interrupted":
                    self._save_checkpoint(step)
            if status != "interrupted" and cfg.runtime.eval_every and step % cfg.runtime.eval_every:
                self._run_eval(step, force=True)
        finally:
            self.logger.close()
            if cache is not None:
                cache.flush()

        loop_end = time.perf_counter()
        digest = weights_digest(self.backbone)
        digests = [digest]
        if info.enabled:
            import torch.distributed as dist

            digests = [None] * info.world_size
            dist.all_gather_object(digests, digest)
        summary: dict[str, Any] = {
            "out_dir": str(out), "config": str(out / "config.yaml"), "metrics": str(out / "metrics.jsonl"),
            "checkpoint": str(self.last_ckpt) if self.last_ckpt else None, "backbone": None, "backbone_meta": None,
            "step": step, "total_steps": sched_total, "steps_per_epoch": spe, "status": status,
            **last, "images_per_s": (ips_all["imgs"] / (loop_end - ips_all["t0"])) if ips_all["imgs"] else None,
            "elapsed_s": time.perf_counter() - t_start, "eval": self.last_eval,
            "teacher_cache": cache.info() if cache is not None else None,
            "ranks_in_sync": len(set(digests)) == 1, "weights_sha256": digest, "world_size": info.world_size,
            "precision": self.precision, "precision_reason": self.precision_reason, "num_classes": self.num_classes, "num_images": len(dataset),
            "signal": self.stop_signal,
        }
        if info.is_main:
            if status != "interrupted":
                from maskinv.models import export_backbone

                bb = out / "backbone.pt"
                export_backbone(self.backbone, bb, extra_meta={
                    "trained_steps": step, "run_name": cfg.name, "config_hash": config_hash(cfg),
                    "head": cfg.head.name, "kd_weight": cfg.kd.weight, "mask_prob": cfg.masks.prob,
                    "teacher": cfg.teacher.path if cfg.kd.weight > 0 else None})
                summary["backbone"] = str(bb)
                summary["backbone_meta"] = str(bb.with_suffix(".json"))
                if self.head is not None:  # class centres, for fine-tuning (MaskInv-HG head.init)
                    from maskinv.utils.io import atomic_torch_save

                    atomic_torch_save({"kernel": self.head.kernel.detach().cpu()}, out / "head.pt")
                    summary["head"] = str(out / "head.pt")
            from maskinv.utils.io import atomic_write_json

            atomic_write_json(out / "summary.json", summary)
        D.barrier()
        return summary

    # -------------------------------------------------------------- teacher cache
    def _open_cache(self, teacher, dataset, data_root: Path, image_size: int):
        from .teacher_cache import TeacherCache, data_fingerprint, teacher_fingerprint

        tc = self.cfg.teacher.cache
        folder = Path(tc.path) if tc.path else self.out / "teacher_cache"
        emb_size = getattr(teacher, "embedding_size", None) or self.cfg.model.embedding_size
        kw = dict(num_records=len(dataset), embedding_size=int(emb_size),
                  teacher_fp=teacher_fingerprint(teacher, extra=f"precision={self.precision}"),
                  data_fp=data_fingerprint(data_root), image_size=image_size, dtype=tc.dtype)
        if self.info.is_main:
            cache = TeacherCache(folder, create=True, **kw)
        D.barrier()
        if not self.info.is_main:
            cache = TeacherCache(folder, create=False, **kw)
        return cache

    def _prepass(self, cache, dataset) -> None:
        """Fill every (record, flip) slot missing from the cache; ranks split the records."""
        info = self.info
        todo = [i for i in range(info.rank, len(dataset), info.world_size)]
        filled = np.asarray(cache.filled)
        bs = max(1, self.cfg.runtime.batch_size)
        for fl in (0, 1):
            miss = [i for i in todo if not filled[i, fl]]
            for s in range(0, len(miss), bs):
                chunk = miss[s:s + bs]
                if self.source.images is not None:
                    imgs = self.source.images[chunk]
                else:
                    imgs = np.stack([dataset[i][0] for i in chunk])
                x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(self.device)
                if fl:
                    x = x.flip(3)
                with self.step_fn.autocast():
                    e = self.step_fn.teacher(self.step_fn._to_input(x)).float()
                cache.store(np.asarray(chunk), np.full(len(chunk), fl), e)
        cache.flush()
        D.barrier()


def _flatten_eval(res: Any, prefix: str = "") -> dict[str, float]:
    """Nested eval results -> flat {"bin/protocol/metric": float} (arrays dropped)."""
    out: dict[str, float] = {}
    if isinstance(res, dict):
        for k, v in res.items():
            if k == "scores":
                continue
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten_eval(v, key))
            elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
                fv = float(v)
                if math.isfinite(fv):
                    out[key] = fv
    return out

"""What a training checkpoint holds and how a run resumes from it (the file format and
keep-last-K live in :mod:`.checkpoint`).

The main file (rank 0) holds backbone, head, the first optimiser/scheduler, the scaler, the
step and its position within the epoch, the RNG state, the config and its hash; with PartialFC
each rank adds a shard with its class centres, their optimiser/scheduler and its RNG state.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from maskinv.errors import CheckpointError, ConfigError

from . import checkpoint as ckpt_mod
from . import distributed as D
from .build import Student
from .config import TrainConfig, config_diff, config_from_dict, config_hash, config_to_dict, saved_run_defaults


def load_resume_state(cfg: TrainConfig, out: Path, info: D.DistInfo, resume: bool) -> dict | None:
    """The newest checkpoint's state (with ``"_path"``) when resuming, else None.

    Without ``resume`` a folder that already holds checkpoints is refused; with it, the config
    and the world size must match the checkpoint's.
    """
    if not resume:
        existing = ckpt_mod.list_checkpoints(out)
        if existing:
            raise ConfigError(
                f"{out} already holds a run (checkpoint {existing[-1][1].name}); resume it (--resume RUN_DIR; "
                "in Python resume=True) or choose another output folder")
        return None
    path = ckpt_mod.latest_checkpoint(out)
    if path is None:
        return None
    state = ckpt_mod.load_state(path)
    saved = config_from_dict(saved_run_defaults(state["config"]), origin=str(path), validate=False)
    # run-relative identity: a moved run folder still matches (plain hash: runs saved before that)
    if state.get("config_hash") not in (config_hash(cfg, run_dir=out), config_hash(cfg)):
        diff = [k for k in config_diff(saved, cfg, run_dir=out)]
        hint = (f" (the checkpoint drew {saved.masks.renderer} masks; the default renderer is now mesh: "
                f"set masks.renderer: {saved.masks.renderer} to resume it)") if "masks.renderer" in diff else ""
        raise ConfigError(f"--resume {out}: config differs from checkpoint {path.name} in: "
                          f"{', '.join(diff) or '(hash only)'}{hint}")
    if int(state.get("world_size", 1)) != info.world_size:
        raise CheckpointError(f"{path}: written with {state.get('world_size')} ranks, resuming with {info.world_size} "
                              "(the sampler position depends on the world size)")
    state["_path"] = str(path)
    return state


@dataclass(eq=False)
class RunCheckpoints:
    """Saves and restores one run's training state; ``last`` is the newest checkpoint written or resumed."""

    cfg: TrainConfig
    out: Path
    info: D.DistInfo
    student: Student
    _: KW_ONLY
    steps_per_epoch: int
    num_classes: int
    precision: str
    last: Path | None = field(default=None, init=False)

    def state(self, step: int) -> dict:
        """The main (rank 0) checkpoint content at ``step``."""
        s, spe = self.student, self.steps_per_epoch
        return {
            "backbone": s.backbone.state_dict(),
            "arch": getattr(s.backbone, "arch", None),
            "head": s.head.state_dict() if s.head is not None else None,
            "head_spec": getattr(s.head, "spec", None),
            "optimizer": s.optimizers[0].state_dict(),
            "scheduler": s.schedulers[0].state_dict(),
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,
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

    def is_saved(self, step: int) -> bool:
        """True when the newest checkpoint is the one of ``step``."""
        return self.last is not None and ckpt_mod.checkpoint_path(self.out, step) == self.last

    def save(self, step: int) -> Path:
        s = self.student
        path = ckpt_mod.checkpoint_path(self.out, step)
        if s.pfc is not None:
            shard = {"format": ckpt_mod.FORMAT, "format_version": ckpt_mod.FORMAT_VERSION, "rank": self.info.rank,
                     "pfc": s.pfc.state_dict(), "optimizer": s.optimizers[1].state_dict(),
                     "scheduler": s.schedulers[1].state_dict(), "rng": ckpt_mod.rng_state()}
            ckpt_mod.save_state(ckpt_mod.shard_path(path, self.info.rank), shard)
        D.barrier()  # shards first: the main file marks the checkpoint complete
        if self.info.is_main:
            ckpt_mod.save_state(path, self.state(step))
            ckpt_mod.prune_checkpoints(self.out, self.cfg.runtime.keep_last)
        D.barrier()
        self.last = path
        return path

    def restore(self, state: dict) -> int:
        """Load ``state`` (from :func:`load_resume_state`) into the student; returns its step."""
        s = self.student
        s.backbone.load_state_dict(state["backbone"])
        if s.head is not None:
            s.head.load_state_dict(state["head"])
        s.optimizers[0].load_state_dict(state["optimizer"])
        s.schedulers[0].load_state_dict(state["scheduler"])
        if s.scaler is not None and state.get("scaler"):
            s.scaler.load_state_dict(state["scaler"])
        if s.pfc is not None:
            sp = ckpt_mod.shard_path(Path(state["_path"]), self.info.rank)
            shard = ckpt_mod.load_state(sp)
            s.pfc.load_state_dict(shard["pfc"])
            s.optimizers[1].load_state_dict(shard["optimizer"])
            s.schedulers[1].load_state_dict(shard["scheduler"])
            rng = shard["rng"]
        else:
            rng = state["rng"]
        ckpt_mod.restore_rng_state(rng)
        if int(state["steps_per_epoch"]) != self.steps_per_epoch:
            raise CheckpointError(f"{state['_path']}: {state['steps_per_epoch']} steps per epoch at save time, "
                                  f"{self.steps_per_epoch} now (data or batch size changed)")
        self.last = Path(state["_path"])
        return int(state["step"])

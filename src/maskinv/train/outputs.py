"""What a finished run leaves behind besides checkpoints and metrics: the exported student
backbone (``backbone.pt/.json``), the margin head's class centres (``head.pt``), ``summary.json``,
and the weights digest that proves the ranks ended in sync."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from maskinv.utils.hashing import tensors_sha256

from . import distributed as D
from .config import TrainConfig, config_hash


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's parameters (DDP ranks in sync <=> equal digests; BN running statistics
    are per-rank between forwards and are not included)."""
    return tensors_sha256(module.named_parameters(), with_meta=False)


def gather_digests(digest: str, info: D.DistInfo) -> list[str]:
    """Every rank's digest (collective under torchrun; ``[digest]`` in one process)."""
    if not info.enabled:
        return [digest]
    import torch.distributed as dist

    digests = [None] * info.world_size
    dist.all_gather_object(digests, digest)
    return digests


def export_student(cfg: TrainConfig, out: Path, backbone: nn.Module, head: nn.Module | None,
                   step: int) -> dict[str, str]:
    """Write ``backbone.pt`` (+ ``.json``) and, with a full margin head, ``head.pt`` (its class
    centres, for fine-tuning: MaskInv-HG's ``head.init``); returns the summary entries naming them."""
    from maskinv.masks.mesh import renderer_revision
    from maskinv.models import export_backbone

    bb = out / "backbone.pt"
    meta = {"trained_steps": step, "run_name": cfg.name, "config_hash": config_hash(cfg),
            "head": cfg.head.name, "kd_weight": cfg.kd.weight, "mask_prob": cfg.masks.prob,
            "mask_renderer": cfg.masks.renderer, "mask_renderer_revision": renderer_revision(cfg.masks.renderer),
            "teacher": cfg.teacher.path if cfg.kd.weight > 0 else None}
    if cfg.head.name == "none":  # label-free (`maskinv adapt`): say so, and which teacher it imitates
        from .external_teacher import teacher_file_fingerprint

        meta.update(labels_used=False, teacher_fingerprint=teacher_file_fingerprint(cfg.teacher.path))
    export_backbone(backbone, bb, extra_meta=meta)
    paths = {"backbone": str(bb), "backbone_meta": str(bb.with_suffix(".json"))}
    if head is not None:
        from maskinv.utils.io import atomic_torch_save

        atomic_torch_save({"kernel": head.kernel.detach().cpu()}, out / "head.pt")
        paths["head"] = str(out / "head.pt")
    return paths


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    from maskinv.utils.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)

"""Training-state checkpoints: atomic, numbered by step, keep-last-K, loadable with weights_only.

Layout under ``RUN_DIR/checkpoints/``: ``ckpt-00001234.pt`` (rank 0: backbone, head, optimizer,
scheduler, scaler, step, epoch, batch position within the epoch, RNG states, config and its hash)
and, with PartialFC on several ranks, ``ckpt-00001234.shard{r}.pt`` (each rank's class-centre
shard and its optimizer). The file's ``backbone`` entry is a bare state dict, so
``maskinv.models.load_backbone`` accepts a training checkpoint directly.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from maskinv.errors import CheckpointError

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")
FORMAT = "maskinv-train-state"
FORMAT_VERSION = 1


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"ckpt-{step:08d}.pt"


def shard_path(ckpt: Path, rank: int) -> Path:
    return ckpt.with_name(ckpt.name[:-3] + f".shard{rank}.pt")


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = CKPT_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    items = list_checkpoints(run_dir)
    return items[-1][1] if items else None


def save_state(path: Path, state: dict[str, Any]) -> Path:
    """Write a training state atomically (temp file + fsync + rename)."""
    from maskinv.utils.io import atomic_torch_save

    state = dict(state)
    state.setdefault("format", FORMAT)
    state.setdefault("format_version", FORMAT_VERSION)
    atomic_torch_save(state, path)
    return path


def load_state(path: str | Path, map_location="cpu") -> dict[str, Any]:
    """Read a training state (``torch.load(weights_only=True)``); CheckpointError if unusable."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"training checkpoint not found: {p}")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt/truncated/foreign pickle
        raise CheckpointError(f"{p}: cannot read training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a maskinv training checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format_version {state['format_version']} is newer than this maskinv ({FORMAT_VERSION})")
    return state


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (and their shard files)."""
    items = list_checkpoints(run_dir)
    removed = []
    for _, p in items[: max(0, len(items) - keep_last)]:
        for q in sorted(p.parent.glob(p.name[:-3] + ".shard*.pt")) + [p]:
            try:
                q.unlink()
                removed.append(q)
            except FileNotFoundError:
                pass
    return removed


def rng_state(generators: dict | None = None) -> dict[str, Any]:
    """Snapshot of the RNG streams the trainer draws from: torch's CPU/CUDA default generators
    (dropout inside the backbone; the trainer scopes them with ``torch.random.fork_rng``) and
    named torch/NumPy generators. Python's ``random`` and NumPy's legacy global state are never
    used by the trainer (every random draw takes an explicit generator), so they are not saved."""
    import numpy as np
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, g in (generators or {}).items():
        if isinstance(g, torch.Generator):
            state[f"gen:{name}"] = g.get_state()
        elif isinstance(g, np.random.Generator):
            st = g.bit_generator.state
            state[f"npgen:{name}"] = {"bit_generator": st["bit_generator"],
                                      "state": {k: int(v) for k, v in st["state"].items()},
                                      "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}
    return state


def restore_rng_state(state: dict[str, Any], generators: dict | None = None) -> None:
    """Inverse of :func:`rng_state` (call inside ``torch.random.fork_rng`` to keep it scoped)."""
    import numpy as np
    import torch

    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in (generators or {}).items():
        if isinstance(g, torch.Generator) and f"gen:{name}" in state:
            g.set_state(state[f"gen:{name}"])
        elif isinstance(g, np.random.Generator) and f"npgen:{name}" in state:
            g.bit_generator.state = state[f"npgen:{name}"]

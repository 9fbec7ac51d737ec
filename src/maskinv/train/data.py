"""Training data: where it lives (SynthFaces generated on demand), which dataset reads it, and
:class:`BatchSource`, the deterministic, resumable batch order (in memory or via DataLoader workers).

The batch path from disk to the step is here and only here: decoding, collation, worker setup and
host-side options such as ``pin_memory``. Moving batches onto the device is the step's job
(:meth:`maskinv.train.step.TrainStep.to_input`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from maskinv.errors import ConfigError, DataFormatError

from . import distributed as D
from .config import TrainConfig


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
        _generate_synth(root, d.synth)
    D.barrier()
    if not (root / "train.rec").is_file():
        raise DataFormatError(f"{root}: no train.rec (SynthFaces generation failed on rank 0?)")
    return root


def _generate_synth(root: Path, s) -> None:
    from maskinv.data.synth import generate_dataset

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
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


def build_dataset(cfg: TrainConfig, root: Path):
    """The training dataset for ``data.source`` (RecordIO for recordio/synth, folders otherwise);
    with ``data.labels: ignore`` every label reads -1 (the run never sees one)."""
    if cfg.data.source == "folder":
        from maskinv.data.folders import ImageFolderDataset

        ds = ImageFolderDataset(root)
    else:
        from maskinv.data.recordio import RecordIODataset

        ds = RecordIODataset(root)
    return UnlabeledDataset(ds) if cfg.data.labels == "ignore" else ds


class UnlabeledDataset:
    """A dataset's images with every label -1 and no classes (label-free training)."""

    def __init__(self, ds):
        self.ds = ds
        self.labels = np.full(len(ds), -1, dtype=np.int64)
        self.num_classes = 0

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0], -1

    @property
    def image_size(self):
        return self.ds.image_size


class IndexedDataset:
    """Dataset wrapper yielding ``(image, label, index)`` (the index keys the teacher cache)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, label = self.ds[i]
        return img, label, i


def collate(items):
    """``(image, label, index)`` items -> ``(uint8 (B,H,W,3), int64 labels (B,), int64 indices (B,))``."""
    imgs = np.stack([it[0] for it in items])
    labels = torch.as_tensor([it[1] for it in items], dtype=torch.int64)
    idx = torch.as_tensor([it[2] for it in items], dtype=torch.int64)
    return torch.from_numpy(imgs), labels, idx


def collate_nchw(items):
    """:func:`collate` with the images already (B, 3, H, W): the transpose happens in the worker,
    so the tensor the loader pins is the one the step copies (a transpose in the main process
    would make a new, unpinned tensor and turn the non-blocking copy into a blocking one)."""
    imgs, labels, idx = collate(items)
    return imgs.permute(0, 3, 1, 2).contiguous(), labels, idx


def worker_init(worker_id: int) -> None:
    # Decoding needs no randomness (every draw happens in the step, seeded by the step), so the
    # workers need no seeding. Do not touch cv2's thread pool here: after fork() from a parent
    # that used it (mask rendering), cv2.setNumThreads deadlocks.
    torch.set_num_threads(1)


class _Len:
    """A sized stand-in: the sampler needs only the dataset's length."""

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
                 in_memory: bool = False, pin_memory: bool = False, prefetch_factor: int = 4):
        from torch.utils.data.distributed import DistributedSampler

        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers
        self.pin_memory = pin_memory
        self.prefetch_factor = int(prefetch_factor)
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

    def images_at(self, indices) -> np.ndarray:
        """uint8 (N, H, W, 3) images of the given records, in order (for passes outside the epoch order)."""
        if self.images is not None:
            return self.images[indices]
        return np.stack([self.dataset[i][0] for i in indices])

    def iterate(self, epoch: int, start: int = 0):
        """Yield ``(uint8 (B,3,H,W), labels (B,), indices (B,))`` for batches ``start..`` of ``epoch``."""
        batch_list = self.batches(epoch, start)
        if self.images is not None:
            for idx in batch_list:
                x = torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).contiguous()
                y = torch.from_numpy(self.labels[idx])
                if self.pin_memory:  # page-locked: the step's non_blocking copies are then asynchronous
                    x, y = x.pin_memory(), y.pin_memory()
                yield x, y, torch.from_numpy(idx)
            return
        from torch.utils.data import DataLoader

        loader = DataLoader(IndexedDataset(self.dataset), batch_sampler=[b.tolist() for b in batch_list],
                            num_workers=self.workers, collate_fn=collate_nchw, pin_memory=self.pin_memory,
                            worker_init_fn=worker_init if self.workers else None,
                            prefetch_factor=self.prefetch_factor if self.workers else None)
        yield from loader

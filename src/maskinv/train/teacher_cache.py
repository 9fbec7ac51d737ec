"""Teacher-template cache: the frozen teacher's embedding of every (record, flip), memory-mapped.

The teacher is frozen and always sees the clean image, and the only augmentation of the
training pipeline is the horizontal flip, so its output for record ``i`` is one of two fixed
vectors. The cache stores them in ``emb.bin`` (float32/float16, shape ``(N, 2, D)``; slot 0 =
unflipped, 1 = flipped) with a fill map ``filled.bin`` (uint8 ``(N, 2)``) and ``cache.json``
describing what the vectors depend on: the teacher fingerprint (hash of its weights and
architecture plus the autocast dtype it runs under), the data fingerprint (file sizes, mtimes and
the hash of the index), N, D and the image size. When any of that differs the cache is rebuilt.

Filled lazily (a batch looks up its rows and the teacher runs only on misses) or by a pre-pass
over the whole set. Several ranks may share one cache folder: rank 0 creates it, the others open
it after a barrier; ranks write disjoint rows (the sampler partitions records).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from maskinv.errors import DataFormatError
from maskinv.utils.hashing import update_with_tensors

from . import distributed as D

CACHE_FORMAT = "maskinv-teacher-cache"
CACHE_VERSION = 1


def teacher_fingerprint(model: torch.nn.Module, extra: str = "") -> str:
    """sha256 of the teacher's architecture, every parameter/buffer (name, dtype, shape, bytes)
    and ``extra`` (e.g. the autocast dtype its outputs were produced under)."""
    h = hashlib.sha256()
    arch = getattr(model, "arch", None) or getattr(getattr(model, "model", None), "arch", None)
    h.update(json.dumps(arch, sort_keys=True, default=str).encode())
    h.update(extra.encode())
    fp = getattr(model, "fingerprint", None)
    if isinstance(fp, str):  # ONNX / dlib teachers: no tensors here, their weights' fingerprint
        h.update(fp.encode())
    return update_with_tensors(h, model.state_dict().items()).hexdigest()


def data_fingerprint(root: str | os.PathLike) -> str:
    """Fingerprint of a training-data folder.

    RecordIO (``train.rec`` present): size and mtime of the ``.rec`` file plus the sha256 of the
    ``.idx`` file. Otherwise (image folders): the sorted relative paths, sizes and mtimes of every
    file under ``root``.
    """
    root = Path(root)
    h = hashlib.sha256()
    rec = root / "train.rec"
    if rec.is_file():
        st = rec.stat()
        h.update(f"rec:{st.st_size}:{st.st_mtime_ns}".encode())
        idx = root / "train.idx"
        if idx.is_file():
            h.update(hashlib.sha256(idx.read_bytes()).digest())
        return h.hexdigest()
    if not root.exists():
        raise DataFormatError(f"training data not found: {root}")
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class TeacherCache:
    """Memory-mapped (record x flip) -> teacher embedding store. See the module docstring."""

    def __init__(self, folder: str | os.PathLike, *, num_records: int, embedding_size: int,
                 teacher_fp: str, data_fp: str, image_size: int, dtype: str = "float32", create: bool = True):
        self.folder = Path(folder)
        self.n = int(num_records)
        self.d = int(embedding_size)
        self.dtype = np.dtype(dtype)
        self.meta = {
            "format": CACHE_FORMAT, "format_version": CACHE_VERSION, "num_records": self.n,
            "embedding_size": self.d, "dtype": self.dtype.name, "teacher": teacher_fp, "data": data_fp,
            "image_size": int(image_size),
        }
        self.rebuilt = False
        if create:
            self.rebuilt = self._ensure()
        self._open()

    # -- files
    @property
    def meta_path(self) -> Path:
        return self.folder / "cache.json"

    def _read_meta(self) -> dict | None:
        try:
            return json.loads(self.meta_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _ensure(self) -> bool:
        """Create or rebuild the files when missing or stale; True when (re)built."""
        from maskinv.utils.io import atomic_write_json

        emb, fill = self.folder / "emb.bin", self.folder / "filled.bin"
        ok = (
            self._read_meta() == self.meta
            and emb.is_file() and emb.stat().st_size == self.n * 2 * self.d * self.dtype.itemsize
            and fill.is_file() and fill.stat().st_size == self.n * 2
        )
        if ok:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        # invalidate first: a crash mid-rebuild must not leave old meta next to new arrays
        self.meta_path.unlink(missing_ok=True)
        for p, nbytes in ((emb, self.n * 2 * self.d * self.dtype.itemsize), (fill, self.n * 2)):
            p.unlink(missing_ok=True)
            with open(p, "wb") as fh:  # sparse zero-filled file
                fh.truncate(nbytes)
        atomic_write_json(self.meta_path, self.meta)
        return True

    def _open(self) -> None:
        meta = self._read_meta()
        if meta != self.meta:
            raise DataFormatError(f"{self.meta_path}: teacher cache does not match this teacher/data (stale or missing)")
        self.emb = np.memmap(self.folder / "emb.bin", dtype=self.dtype, mode="r+", shape=(self.n, 2, self.d))
        self.filled = np.memmap(self.folder / "filled.bin", dtype=np.uint8, mode="r+", shape=(self.n, 2))

    # -- access
    def lookup(self, indices: np.ndarray, flips: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Cached embeddings (B, D) float32 (zeros where missing) and the hit mask (B,)."""
        idx = np.asarray(indices, dtype=np.int64)
        fl = np.asarray(flips, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"teacher cache: record index out of range [0, {self.n})")
        hit = self.filled[idx, fl].astype(bool)
        out = np.asarray(self.emb[idx, fl], dtype=np.float32)
        return torch.from_numpy(out), hit

    def store(self, indices: np.ndarray, flips: np.ndarray, emb: torch.Tensor) -> None:
        """Write embeddings for (record, flip) pairs, then mark them filled."""
        idx = np.asarray(indices, dtype=np.int64)
        fl = np.asarray(flips, dtype=np.int64)
        vals = emb.detach().float().cpu().numpy().astype(self.dtype, copy=False)
        self.emb[idx, fl] = vals
        self.filled[idx, fl] = 1

    def fill_fraction(self) -> float:
        return float(np.asarray(self.filled).mean()) if self.n else 1.0

    def flush(self) -> None:
        self.emb.flush()
        self.filled.flush()

    def info(self) -> dict[str, Any]:
        return {"path": str(self.folder), "records": self.n, "filled": self.fill_fraction(), "rebuilt": self.rebuilt}


def open_shared_cache(folder: str | os.PathLike, *, is_main: bool, **kw: Any) -> TeacherCache:
    """Open the cache from every rank: rank 0 creates/validates it, the others open it after a barrier.

    ``kw``: :class:`TeacherCache`'s keyword arguments (without ``create``).
    """
    cache = TeacherCache(folder, create=True, **kw) if is_main else None
    D.barrier()
    if cache is None:
        cache = TeacherCache(folder, create=False, **kw)
    return cache


def prepass(cache: TeacherCache, teacher_forward: Callable[[torch.Tensor], torch.Tensor],
            images_at: Callable[[list[int]], np.ndarray], *, rank: int, world_size: int, batch_size: int,
            device: torch.device, records_forward: Callable[[list[int], int], torch.Tensor] | None = None) -> None:
    """Fill every (record, flip) slot missing from the cache before training; ranks split the records.

    ``teacher_forward``: uint8 (B, 3, H, W) on ``device`` -> float32 embeddings (B, D);
    ``images_at``: record indices -> uint8 (B, H, W, 3). ``records_forward(indices, flip)``: a
    teacher that embeds records from their own source (dlib: the original photos) instead.
    """
    todo = [i for i in range(rank, cache.n, world_size)]
    filled = np.asarray(cache.filled)
    bs = max(1, batch_size)
    for fl in (0, 1):
        miss = [i for i in todo if not filled[i, fl]]
        for s in range(0, len(miss), bs):
            chunk = miss[s:s + bs]
            if records_forward is not None:
                cache.store(np.asarray(chunk), np.full(len(chunk), fl), records_forward(chunk, fl))
                continue
            x = torch.from_numpy(images_at(chunk)).permute(0, 3, 1, 2).contiguous().to(device)
            if fl:
                x = x.flip(3)
            cache.store(np.asarray(chunk), np.full(len(chunk), fl), teacher_forward(x))
    cache.flush()
    D.barrier()

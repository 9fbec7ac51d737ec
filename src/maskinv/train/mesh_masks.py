"""The face-mesh pre-pass of ``masks.renderer: mesh``: every training record's mesh, once.

Before the first step each rank hashes every record's decoded image (SHA-256, the
:class:`~maskinv.masks.mesh_cache.MeshCache` key) and runs the face mesh (fast runner,
align/mesh_fast.py) on the records of its shard (``rank::world_size``) that no cache file in the
folder holds yet, saving its shard as ``meshes-rank{R}.npz`` (atomically, every ``save_every``
new meshes: an interrupted pre-pass resumes where it stopped). After a barrier every rank reads all
the folder's cache files and gathers one mesh and face score per record. A rerun (resume) finds
every key and computes nothing; a changed image has a new key and gets a new mesh.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from maskinv.errors import DataFormatError

from . import distributed as D


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("meshes-rank*.npz"))


def record_meshes(images_at: Callable[[list[int]], np.ndarray], num_records: int, folder, *, rank: int = 0,
                  world_size: int = 1, chunk: int = 256, save_every: int = 2048) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(meshes fp16 (N, 468, 2), scores float32 (N,), info)`` of records ``0..N-1``.

    ``images_at(indices)``: uint8 (B, H, W, 3) aligned crops of those records. ``info``: cache
    path, records, meshes computed here (this rank), reused, seconds, ms per computed mesh."""
    from maskinv.constants import template_for_size
    from maskinv.masks.mesh_cache import MeshCache, image_key

    folder = Path(folder)
    t0 = time.perf_counter()
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    D.barrier()
    own = folder / f"meshes-rank{rank}.npz"
    cache = MeshCache(own, read=[f for f in _files(folder) if f != own])
    keys: list[str] = []
    unsaved = 0
    t_mesh = 0.0
    for s in range(0, num_records, chunk):
        idx = list(range(s, min(num_records, s + chunk)))
        imgs = np.asarray(images_at(idx))
        ks = [image_key(im) for im in imgs]
        keys += ks
        mine = [j for j, i in enumerate(idx) if i % world_size == rank and ks[j] not in cache]
        if mine:
            t1 = time.perf_counter()
            before = cache.added
            cache.get_many(imgs[mine], template_for_size(imgs.shape[1:3]), keys=[ks[j] for j in mine])
            t_mesh += time.perf_counter() - t1
            unsaved += cache.added - before
            if unsaved >= save_every:
                cache.save()
                unsaved = 0
    computed = cache.added
    if unsaved or (computed and not own.is_file()):
        cache.save()
    D.barrier()
    full = MeshCache(read=_files(folder))
    meshes = np.empty((num_records, 468, 2), np.float16)
    scores = np.empty(num_records, np.float32)
    for i, k in enumerate(keys):
        got = full.lookup(k)
        if got is None:
            raise DataFormatError(f"{folder}: no mesh for training record {i} after the pre-pass (a rank failed?)")
        meshes[i], scores[i] = got[0][:, :2], got[1]
    info = {"path": str(folder), "records": num_records, "computed": computed,
            "reused": num_records - computed if world_size == 1 else None,
            "seconds": round(time.perf_counter() - t0, 3),
            "ms_per_mesh": round(1e3 * t_mesh / computed, 3) if computed else None}
    return meshes, scores, info

"""SHA-256 fingerprints of files and tensors (model identity, data identity, DDP sync checks)."""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, streamed in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def update_with_tensors(h: Any, named_tensors: Iterable[tuple[str, Any]], *, with_meta: bool = True) -> Any:
    """Feed ``(name, tensor)`` pairs into hasher ``h``: names, raw bytes (any dtype) and, with
    ``with_meta``, dtype and shape. Returns ``h``."""
    import torch

    for name, t in named_tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        if with_meta:
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h


def tensors_sha256(named_tensors: Iterable[tuple[str, Any]], *, with_meta: bool = True) -> str:
    """sha256 hex digest of ``(name, tensor)`` pairs (see :func:`update_with_tensors`)."""
    return update_with_tensors(hashlib.sha256(), named_tensors, with_meta=with_meta).hexdigest()

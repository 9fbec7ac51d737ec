"""maskinv — mask-invariant face recognition toolkit.

The public facade is small and imported lazily (importing :mod:`maskinv` does not
import torch, start threads or touch the network):

- :func:`load_model` — load an exported maskinv model, an InsightFace/ElasticFace
  ``.pth`` (with an architecture name) or an ``.onnx`` file.
- :func:`embed` — face images (paths, arrays, bytes) to embeddings.
- :func:`verify` — one-to-one decision with score, threshold and its provenance.
- :func:`compare` — cosine similarity of precomputed embeddings.

Errors raised on bad input derive from :class:`maskinv.errors.MaskinvError`.
"""
from __future__ import annotations

__version__ = "0.1.0"

_FACADE = {"load_model", "embed", "verify", "compare", "VerifyResult"}

__all__ = sorted(_FACADE | {"__version__"})


def __getattr__(name: str):
    if name in _FACADE:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'maskinv' has no attribute {name!r}")

"""Model files to model objects: :func:`load_model` and :class:`FaceModel`.

The one place a path or name (our export + sidecar, an InsightFace/MagFace ``.pth``, an ONNX
graph, a registered name such as ``"dlib"`` (:data:`maskinv.models.recognizer.RECOGNIZERS`), an
in-memory ``nn.Module``) becomes a loaded :class:`~maskinv.models.recognizer.Recognizer`. It sits in
``models`` so evaluation (:mod:`maskinv.evaluate.model_specs`) and the facade
(:mod:`maskinv.api`, which re-exports both names) share it without an upward import.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from .face_model import FaceModel, _from_module, _module_fingerprint, thresholds_path  # noqa: F401  (re-exported)
from .recognizer import RECOGNIZERS, is_named_model, is_recognizer, named_recognizer

__all__ = ["FaceModel", "load_model", "is_model", "thresholds_path"]


def _load_onnx(path: Path, **convention: Any) -> FaceModel:
    from ..utils.hashing import file_sha256
    from .onnx_model import OnnxEmbedder

    emb = OnnxEmbedder(path, **convention)
    fp = emb.meta.get("source_fingerprint") or file_sha256(path)
    return FaceModel(backend="onnx", path=path, fingerprint=fp, arch=emb.meta.get("arch"),
                     embedding_size=emb.embedding_size, input_size=emb.input_size, meta=emb.meta, session=emb)


def is_model(obj) -> bool:
    """A loaded :class:`~maskinv.models.recognizer.Recognizer` (a FaceModel, dlib, a plug-in)."""
    return isinstance(obj, FaceModel) or is_recognizer(obj)


def load_named(name: str, **kwargs: Any):
    """A registered recogniser by name (``"dlib"``, ``"sface"``, a plug-in's), with its options."""
    entry = named_recognizer(name)
    bad = sorted(set(kwargs) - set(entry.options))
    if bad:
        raise ConfigError(f"load_model({name!r}): unknown option(s) {bad} (accepted: {', '.join(entry.options) or 'none'})")
    return entry.load(**kwargs)


def load_model(path, arch: str | None = None, *, backend: str | None = None, precision: str = "fp32",
               device: str = "cpu", **arch_kwargs: Any) -> FaceModel:
    """Load an embedding model for inference.

    ``path``: our export (``backbone.pt`` + ``backbone.json`` sidecar), an InsightFace /
    ElasticFace / MaskInv ``*backbone.pth`` (pass ``arch``, e.g. ``"r100"``, when it cannot be
    inferred), a MagFace checkpoint (``layout="magface"`` or auto-detected), an ``.onnx``
    file (ours or an ArcFace-style zoo model), an in-memory ``nn.Module``, or the name of a
    registered recogniser (``"dlib"``: dlib's ResNet descriptor, embeds from photos, see
    :mod:`maskinv.models.dlib_resnet`; the names: ``maskinv.models.recognizer.RECOGNIZERS.names()``).
    ``input_mean``/``input_std``/``channel_order``: the weights' input convention when no
    sidecar or metadata tells it (pixels 0..255: ``(x - input_mean) / input_std``).
    ``backend``: ``"torch"`` or ``"onnx"`` (default: from the file suffix).
    ``precision`` (torch): ``"fp32"`` or ``"bf16"`` autocast (faster on recent CPUs).
    """
    if is_model(path):
        return path
    convention = {k: arch_kwargs.pop(k) for k in ("input_mean", "input_std", "channel_order")
                  if arch_kwargs.get(k) is not None}
    if is_named_model(path):
        entry = named_recognizer(str(path))
        runtime = {k: v for k, v in (("precision", precision), ("device", device)) if k in entry.options}
        return load_named(str(path), **runtime, **arch_kwargs)
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if not isinstance(path, (str, os.PathLike)):
        import torch

        if isinstance(path, torch.nn.Module):
            return _from_module(path, precision=precision, device=device)
        raise ConfigError(f"load_model: expected a path or an nn.Module, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found{_name_hint(str(path))}")
    if backend is None:
        backend = "onnx" if p.suffix.lower() == ".onnx" else "torch"
    if backend == "onnx":
        return _load_onnx(p, **convention)
    if backend != "torch":
        raise ConfigError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if p.suffix.lower() == ".onnx":
        raise ConfigError(f"{p}: an .onnx file runs on backend='onnx'")
    from .checkpoint import load_backbone, model_fingerprint, read_model_meta

    if convention:  # explicit input convention of the weights (pixels 0..255: (x - mean) / std)
        from .input_convention import parse_convention

        arch_kwargs["input_convention"] = parse_convention(
            {"channel_order": convention.get("channel_order", "RGB"),
             "normalization": {"scale": 1.0, "mean": convention.get("input_mean", 127.5),
                               "std": convention.get("input_std", 127.5)}}, str(p))
    module = load_backbone(p, name=arch, **arch_kwargs)
    meta = read_model_meta(p) or {}
    return _from_module(module, precision=precision, device=device, path=p,
                        fingerprint=model_fingerprint(p), meta=meta)


def _name_hint(text: str) -> str:
    """`` (did you mean 'dlib'?)`` when a missing file's name is close to a registered recogniser."""
    close = None if (os.sep in text or Path(text).suffix) else RECOGNIZERS.suggest(text)
    return f" (did you mean {close!r}?)" if close else ""

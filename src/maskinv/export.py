"""ONNX export of an embedding backbone, with a parity check against PyTorch.

The graph takes ``input``: float32 NCHW (batch, 3, S, S), RGB, normalised
``(x/255 - 0.5) / 0.5``, and returns ``embedding``: float32 (batch, D), *not*
L2-normalised (normalise, and add the flip test, outside — :mod:`maskinv.api` does).
The batch axis is dynamic. The input convention, architecture, sizes and the source
model's fingerprint are stored as ONNX metadata properties (``maskinv.*``), so
``maskinv.load_model("x.onnx")`` needs nothing else and thresholds calibrated for the
PyTorch weights apply to the export.

The legacy TorchScript exporter (``dynamo=False``) is used: on these CNNs it is exact,
~15x faster to run than the dynamo exporter and needs no opset conversion; the dynamo
exporter is the fallback where the legacy one is unavailable.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError

__all__ = ["export_onnx", "onnx_parity", "MIN_OPSET"]

MIN_OPSET = 17
NORMALIZATION = "(x/255-0.5)/0.5"


def _export_graph(module, path: Path, input_size: int, opset: int) -> str:
    import torch

    x = torch.zeros(2, 3, input_size, input_size)
    common = dict(input_names=["input"], output_names=["embedding"], opset_version=opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy exporter deprecation notice
            torch.onnx.export(module, (x,), str(path), dynamo=False, do_constant_folding=True,
                              dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, **common)
        return "torchscript"
    except (TypeError, RuntimeError, AttributeError) as legacy_exc:  # legacy exporter gone/failed
        try:
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(module, (x,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=({0: batch},), **common)
            return "dynamo"
        except Exception as exc:
            raise CheckpointError(f"ONNX export failed (legacy: {legacy_exc}; dynamo: {exc})") from exc


def onnx_parity(face_model, onnx_path: str | Path, *, samples: int = 8, seed: int = 0) -> dict[str, float]:
    """Max cosine distance and max abs difference between PyTorch and onnxruntime
    embeddings of ``samples`` seeded random images (batch of ``samples`` and batch of 1)."""
    from .models.loading import load_model

    ort_model = load_model(onnx_path, backend="onnx")
    rng = np.random.default_rng(seed)
    s = face_model.input_size
    imgs = rng.integers(0, 256, size=(samples, s, s, 3), dtype=np.uint8)
    ref = face_model.forward(imgs).astype(np.float64)
    got = np.concatenate([ort_model.forward(imgs), ort_model.forward(imgs[:1])]).astype(np.float64)
    ref = np.concatenate([ref, ref[:1]])
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {"max_cosine_distance": float(np.max(1.0 - cos)), "max_abs_diff": float(np.max(np.abs(ref - got))),
            "samples": int(samples)}


def export_onnx(model, out: str | Path, *, arch: str | None = None, opset: int = MIN_OPSET,
                check: bool = True, tol: float = 1e-4, samples: int = 8, seed: int = 0,
                copy_thresholds: bool = True) -> dict[str, Any]:
    """Export ``model`` (path, :class:`~maskinv.api.FaceModel` or ``nn.Module``) to ``out``.

    Returns a report (path, exporter, opset, parity figures). With ``check`` the parity
    against PyTorch is measured and a max cosine distance above ``tol`` raises
    :class:`CheckpointError` (the file is then not left behind). ``copy_thresholds`` copies
    the model's calibrated thresholds beside the export when it lands in another folder.
    """
    import onnx

    from . import __version__
    from .models.loading import load_model
    from .utils.io import atomic_path, atomic_write_bytes

    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be >= {MIN_OPSET}, got {opset}")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"{out}: the output file must end in .onnx")
    fm = load_model(model, arch) if not hasattr(model, "backend") else model
    if fm.backend != "torch":
        raise ConfigError(f"{fm.path or 'model'}: is already an ONNX model; export_onnx needs PyTorch weights")
    fm.module.float().eval().cpu()

    with atomic_path(out) as tmp:
        exporter = _export_graph(fm.module, tmp, fm.input_size, opset)
        proto = onnx.load(str(tmp))
        arch_info = getattr(fm.module, "arch", None) or {}
        props = {
            "format": "maskinv-onnx",
            "arch": fm.arch or "",
            "arch_kwargs": json.dumps((arch_info.get("kwargs") if isinstance(arch_info, dict) else None) or {}),
            "input_size": str(fm.input_size),
            "embedding_size": str(fm.embedding_size),
            "input_layout": "NCHW float32",
            "channel_order": "RGB",
            "normalization": NORMALIZATION,
            "output": "embedding, not L2-normalised",
            "source_fingerprint": fm.fingerprint,
            "source_path": str(fm.path) if fm.path else "",
            "maskinv_version": __version__,
        }
        del proto.metadata_props[:]
        for k, v in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"maskinv.{k}", v
        proto.doc_string = (f"maskinv {fm.arch or 'backbone'}: input float32 NCHW RGB {fm.input_size}x{fm.input_size} "
                            f"normalised {NORMALIZATION}; output {fm.embedding_size}-d embedding (L2-normalise it)")
        onnx.checker.check_model(proto)
        tmp.write_bytes(proto.SerializeToString())
        report: dict[str, Any] = {"path": str(out), "exporter": exporter,
                                  "opset": int(max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))),
                                  "source_fingerprint": fm.fingerprint}
        if check:
            parity = onnx_parity(fm, tmp, samples=samples, seed=seed)
            report.update(parity)
            if parity["max_cosine_distance"] > tol:
                raise CheckpointError(f"{out}: ONNX parity check failed: max cosine distance "
                                      f"{parity['max_cosine_distance']:.3g} > {tol:g} (file not written)")
    if copy_thresholds and fm.path is not None:
        from .models.loading import thresholds_path

        src, dst = thresholds_path(fm.path), thresholds_path(out)
        if src.is_file() and src.resolve() != dst.resolve() and not dst.exists():
            atomic_write_bytes(dst, src.read_bytes())
            report["thresholds"] = str(dst)
    return report

"""A loaded torch module or ONNX graph as a :class:`~maskinv.models.recognizer.Recognizer`
(:class:`FaceModel`). Below :mod:`maskinv.models.loading` and beside the recogniser registry, so a
registered backend (SFace) can wrap its module without importing the loader that dispatches to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import INPUT_SIZE
from ..errors import DataFormatError

__all__ = ["FaceModel", "from_module", "thresholds_path"]


def thresholds_path(model_path: str | Path) -> Path:
    """``dir/backbone.pt`` -> ``dir/backbone.thresholds.json`` (shared by its ``.onnx`` export
    in the same folder: both carry the same fingerprint)."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.thresholds.json")


@dataclass
class FaceModel:
    """A loaded embedding network plus what is needed to use it correctly: the
    :class:`~maskinv.models.recognizer.Recognizer` of torch modules and ONNX graphs.

    ``fingerprint`` identifies the weights (SHA-256 of the weights file; an ONNX export
    carries its source's fingerprint) and binds thresholds and galleries to this model.
    """

    needs_photo = False     # embeds aligned crops (the facade detects and aligns first)
    supports_flip = True

    backend: str                       # "torch" | "onnx"
    path: Path | None
    fingerprint: str
    arch: str | None
    embedding_size: int
    input_size: int = INPUT_SIZE
    precision: str = "fp32"            # torch: "fp32" | "bf16" (autocast)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    module: Any = field(default=None, repr=False)    # torch.nn.Module (torch backend)
    session: Any = field(default=None, repr=False)   # onnxruntime.InferenceSession (onnx backend)
    device: str = "cpu"

    @property
    def thresholds_file(self) -> Path | None:
        return thresholds_path(self.path) if self.path else None

    @property
    def max_batch(self) -> int | None:
        """The fixed batch of an ONNX graph that has one (crops then go through that many at a time)."""
        return getattr(self.session, "max_batch", None) if self.backend == "onnx" else None

    @property
    def input_convention(self) -> dict[str, Any]:
        """The weights' own pixel convention (the standard tensor is converted to it before the
        network: by the ONNX embedder, or inside the torch module)."""
        if self.backend == "onnx":
            return dict(self.session.convention)
        from .input_convention import STANDARD

        conv = getattr(self.module, "input_convention", None)
        return dict(conv) if isinstance(conv, dict) else dict(STANDARD)

    def embed_photos(self, images, *, aligned: bool = False, detector: Any = None
                     ) -> tuple[np.ndarray, list[dict | None], dict[str, float]]:
        """``(templates, faces, timings ms)`` of photos: the largest face of each is detected and
        aligned to this model's input size (``aligned``: the images are crops already); an image
        without a face raises :class:`~maskinv.errors.NoFaceError` naming it."""
        import time

        from ..align import align_faces, describe_source, read_image
        from .embedding import resize_images

        t0 = time.perf_counter()
        crops, faces = [], []
        for i, src in enumerate(images):
            name = describe_source(src, i)
            img = read_image(src, name=name)
            if aligned:
                crops.append(img if img.shape[:2] == (self.input_size,) * 2 else resize_images(img[None], self.input_size)[0])
                faces.append(None)
            else:
                got = align_faces(img, detector, size=self.input_size, max_faces=1, name=name)
                crops.append(got[0].crop)
                faces.append(got[0].face.to_dict())
        t1 = time.perf_counter()
        s = self.input_size
        emb = self.embed_aligned(np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8))
        return emb, faces, {"detect_align_ms": (t1 - t0) * 1e3, "embed_ms": (time.perf_counter() - t1) * 1e3}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw embeddings (N, D) float32 of aligned uint8 RGB crops (N, S, S, 3): no flip test,
        not normalised (export checks, benchmarks); templates come from :meth:`embed_aligned`."""
        import torch

        from ..preprocess import to_tensor

        x = to_tensor(batch)
        if self.backend == "onnx":
            return self._onnx_forward(x).numpy()
        x = x.to(self.device)
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.module(x)
        return out.float().cpu().numpy()

    def embed_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`maskinv.models.embedding.embed_images` that give this
        model's numerics; :func:`maskinv.thresholds.calibrate` scores benchmarks with the same
        ones, so a calibrated threshold means the same score here. ``channels_last=False``:
        the module may be shared between threads and is never converted."""
        return {"device": self.device, "precision": self.precision, "channels_last": False}

    def embed_aligned(self, crops: np.ndarray, *, flip: bool = True, batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings of aligned crops; ``flip``: normalize(f(x) + f(mirror x)).

        ``batch_size``: crops + mirrors per forward pass. Computed by the one embedding core
        (:mod:`maskinv.models.embedding`) for both backends."""
        from .embedding import embed_images, embed_with

        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        s = self.input_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise DataFormatError(
                f"aligned crops must be uint8 (N, {s}, {s}, 3) RGB, got {crops.dtype} {crops.shape}")
        if crops.shape[1:3] != (s, s) and len(crops):  # the embedding core's rule: resize, one note
            from .embedding import resize_crops

            crops = resize_crops(crops, s)
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        step = max(1, batch_size // 2 if flip else batch_size)
        if self.backend == "onnx":
            return embed_with(self._onnx_forward, crops, batch_size=step, flip=flip)
        return embed_images(self.module, crops, flip=flip, batch_size=step, **self.embed_options())

    def _onnx_forward(self, x):
        import torch

        # session: models.onnx_model.OnnxEmbedder (applies the graph's input convention)
        return torch.from_numpy(np.asarray(self.session.run(x.numpy()), dtype=np.float32))


def _module_fingerprint(module) -> str:
    """SHA-256 over the state dict of an in-memory model (names, dtypes, shapes, bytes)."""
    from ..utils.hashing import tensors_sha256

    return tensors_sha256(module.state_dict().items())


def _from_module(module, *, precision: str, device: str, path: Path | None = None,
                 fingerprint: str | None = None, meta: dict | None = None) -> FaceModel:
    import torch

    module = module.eval().to(device)
    arch = getattr(module, "arch", None) or {}
    kw = dict(arch.get("kwargs") or {}) if isinstance(arch, dict) else {}
    meta = dict(meta or {})
    input_size = int(meta.get("input_size") or kw.get("input_size") or INPUT_SIZE)
    emb = meta.get("embedding_size") or kw.get("embedding_size")
    if emb is None:  # foreign module: ask it
        with torch.inference_mode():
            emb = module(torch.zeros(2, 3, input_size, input_size, device=device)).shape[1]
    return FaceModel(backend="torch", path=path, fingerprint=fingerprint or _module_fingerprint(module),
                     arch=arch.get("name") if isinstance(arch, dict) else None, embedding_size=int(emb),
                     input_size=input_size, precision=precision, meta=meta, module=module, device=device)


from_module = _from_module

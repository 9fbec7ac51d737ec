"""The practitioner facade: photo in, decision out, offline.

>>> import maskinv
>>> model = maskinv.load_model("run/backbone.pt")            # or .pth + arch="r100", or .onnx
>>> r = maskinv.verify("id_photo.jpg", "gate_capture.jpg", model, fmr=1e-3)
>>> r.verified, r.score, r.threshold, r.threshold_source

Image inputs everywhere: a path, encoded bytes, or a uint8 **RGB** (H, W, 3) NumPy array
(OpenCV's ``cv2.imread`` gives BGR: convert with ``img[:, :, ::-1]``). Unless
``aligned=True``, faces are detected and aligned to the ArcFace template
(:mod:`maskinv.align`, needs the ``detect`` extra); the largest face of each photo is used.

Thresholds are never made up: ``verify`` uses an explicit ``threshold``, or the threshold
calibrated at ``fmr`` for this model (``maskinv calibrate``), or — with neither — the
calibrated threshold stored beside the model (smallest FMR of the protocol); otherwise it
raises :class:`ConfigError`.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .constants import INPUT_SIZE
from .errors import CheckpointError, ConfigError, DataFormatError
from .masks.protocols import DEFAULT_PROTOCOL

if TYPE_CHECKING:
    from .batch import EmbedBatch

__all__ = ["FaceModel", "VerifyResult", "load_model", "embed", "embed_faces", "embed_batch", "verify", "compare"]

#: ONNX metadata keys written by :mod:`maskinv.export` and read here.
ONNX_META_PREFIX = "maskinv."


# ============================================================================ model
@dataclass
class FaceModel:
    """A loaded embedding network plus what is needed to use it correctly.

    ``fingerprint`` identifies the weights (SHA-256 of the weights file; an ONNX export
    carries its source's fingerprint) and binds thresholds and galleries to this model.
    """

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
        from .thresholds import thresholds_path

        return thresholds_path(self.path) if self.path else None

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw embeddings (N, D) float32 of aligned uint8 RGB crops (N, S, S, 3): no flip test,
        not normalised (export checks, benchmarks); templates come from :meth:`embed_aligned`."""
        import torch

        from .preprocess import to_tensor

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
        from .models.embedding import embed_images, embed_with

        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        s = self.input_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise DataFormatError(
                f"aligned crops must be uint8 (N, {s}, {s}, 3) RGB, got {crops.dtype} {crops.shape}")
        if crops.shape[1:3] != (s, s) and len(crops):  # the embedding core's rule: resize, one note
            from .batch import resize_crops

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
    from .utils.hashing import tensors_sha256

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


def _load_onnx(path: Path, **convention: Any) -> FaceModel:
    from .models.onnx_model import OnnxEmbedder
    from .thresholds import file_sha256

    emb = OnnxEmbedder(path, **convention)
    fp = emb.meta.get("source_fingerprint") or file_sha256(path)
    return FaceModel(backend="onnx", path=path, fingerprint=fp, arch=emb.meta.get("arch"),
                     embedding_size=emb.embedding_size, input_size=emb.input_size, meta=emb.meta, session=emb)


def _is_model(obj) -> bool:
    """A FaceModel, or a recogniser with the same interface (e.g. the dlib one)."""
    return isinstance(obj, FaceModel) or (hasattr(obj, "embed_aligned") and hasattr(obj, "fingerprint"))


def load_model(path, arch: str | None = None, *, backend: str | None = None, precision: str = "fp32",
               device: str = "cpu", **arch_kwargs: Any) -> FaceModel:
    """Load an embedding model for inference.

    ``path``: our export (``backbone.pt`` + ``backbone.json`` sidecar), an InsightFace /
    ElasticFace / MaskInv ``*backbone.pth`` (pass ``arch``, e.g. ``"r100"``, when it cannot be
    inferred), a MagFace checkpoint (``layout="magface"`` or auto-detected), an ``.onnx``
    file (ours or an ArcFace-style zoo model), an in-memory ``nn.Module``, or ``"dlib"``
    (dlib's ResNet descriptor; embeds from photos, see :mod:`maskinv.models.dlib_resnet`).
    ``input_mean``/``input_std``/``channel_order``: the weights' input convention when no
    sidecar or metadata tells it (pixels 0..255: ``(x - input_mean) / input_std``).
    ``backend``: ``"torch"`` or ``"onnx"`` (default: from the file suffix).
    ``precision`` (torch): ``"fp32"`` or ``"bf16"`` autocast (faster on recent CPUs).
    """
    if _is_model(path):
        return path
    convention = {k: arch_kwargs.pop(k) for k in ("input_mean", "input_std", "channel_order")
                  if arch_kwargs.get(k) is not None}
    if isinstance(path, str) and path == "dlib" and not Path(path).exists():
        from .models.dlib_resnet import DlibRecognizer

        try:
            return DlibRecognizer(**arch_kwargs)
        except TypeError as exc:
            raise ConfigError(f"load_model('dlib'): {exc} (accepted: detector, num_jitters, models_dir)") from None
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if not isinstance(path, (str, os.PathLike)):
        import torch

        if isinstance(path, torch.nn.Module):
            return _from_module(path, precision=precision, device=device)
        raise ConfigError(f"load_model: expected a path or an nn.Module, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found")
    if backend is None:
        backend = "onnx" if p.suffix.lower() == ".onnx" else "torch"
    if backend == "onnx":
        return _load_onnx(p, **convention)
    if backend != "torch":
        raise ConfigError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if p.suffix.lower() == ".onnx":
        raise ConfigError(f"{p}: an .onnx file runs on backend='onnx'")
    from .models import load_backbone, model_fingerprint, read_model_meta

    if convention:  # explicit input convention of the weights (pixels 0..255: (x - mean) / std)
        from .models.input_convention import parse_convention

        arch_kwargs["input_convention"] = parse_convention(
            {"channel_order": convention.get("channel_order", "RGB"),
             "normalization": {"scale": 1.0, "mean": convention.get("input_mean", 127.5),
                               "std": convention.get("input_std", 127.5)}}, str(p))
    module = load_backbone(p, name=arch, **arch_kwargs)
    meta = read_model_meta(p) or {}
    return _from_module(module, precision=precision, device=device, path=p,
                        fingerprint=model_fingerprint(p), meta=meta)


_MODEL_CACHE: dict[tuple, FaceModel] = {}
_CACHE_LOCK = threading.Lock()


def _resolve_model(model) -> FaceModel:
    """A FaceModel, or a path loaded once and cached (keyed by path, size and mtime)."""
    if _is_model(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if str(model) == "dlib" and not p.exists():
            with _CACHE_LOCK:  # loading dlib's two model files takes ~0.5 s: once
                if ("dlib",) not in _MODEL_CACHE:
                    _MODEL_CACHE[("dlib",)] = load_model("dlib")
                return _MODEL_CACHE[("dlib",)]
        if not p.is_file():
            raise CheckpointError(f"{p}: model file not found")
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        with _CACHE_LOCK:
            if key not in _MODEL_CACHE:
                _MODEL_CACHE[key] = load_model(p)
            return _MODEL_CACHE[key]
    return load_model(model)


# ============================================================================ embedding
def _as_list(images) -> list:
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    return [images]


def embed(images, model, aligned: bool = False, *, flip: bool = True, detector=None,
          batch_size: int = 64) -> np.ndarray:
    """Embeddings (N, D) float32, L2-normalised, one row per input image.

    ``images``: one image or a sequence (paths, bytes, uint8 RGB arrays) or an (N, H, W, 3)
    array. ``aligned=True`` skips detection (inputs are aligned crops; another size than the
    model's input is resized, with one note per call); otherwise the largest face of each image is used and an image without a
    face raises :class:`maskinv.errors.NoFaceError` naming it.
    """
    return embed_faces(images, model, aligned=aligned, flip=flip, detector=detector, batch_size=batch_size)[0]


def embed_faces(images, model, aligned: bool = False, *, flip: bool = True, detector=None,
                batch_size: int = 64) -> tuple[np.ndarray, list[dict | None], dict[str, float]]:
    """Like :func:`embed`, also returning the face used per image (box, landmarks, score;
    ``None`` when aligned) and timings in milliseconds."""
    m = _resolve_model(model)
    if getattr(m, "needs_photo", False):  # the recogniser aligns photos itself (dlib)
        return m.embed_images(_as_list(images), aligned=aligned, detector=detector)
    r = embed_batch(images, m, aligned, flip=flip, detector=detector, batch_size=batch_size, on_error="raise")
    return r.embeddings, r.faces, r.timings


def embed_batch(images, model, aligned: bool = False, *, flip: bool = True, detector=None,
                batch_size: int = 64, on_error: str = "skip") -> "EmbedBatch":
    """Embed a batch that may hold bad photos: an :class:`~maskinv.batch.EmbedBatch` with one
    row per embedded image (``indices``/``sources`` say which) and a ``Miss`` (index, source,
    one-line reason) for each image that could not be decoded or shows no face.

    ``on_error="skip"`` (default) goes on past such images; ``"raise"`` stops at the first
    (:class:`NoFaceError` / :class:`DataFormatError` naming it). Aligned crops of another size
    than the model's are resized with one note (a ``UserWarning``) per call.
    """
    from .batch import PER_IMAGE_ERRORS, EmbedBatch, check_on_error, miss_from, prepare_images

    check_on_error(on_error)
    m = _resolve_model(model)
    items = _as_list(images)
    if getattr(m, "needs_photo", False):  # dlib: it aligns photos itself, so go image by image
        from .align import describe_source

        rows, faces, kept, names, misses = [], [], [], [], []
        t0 = time.perf_counter()
        for i, im in enumerate(items):
            try:
                e, f, _ = m.embed_images([im], aligned=aligned, detector=detector)
            except PER_IMAGE_ERRORS as exc:
                if on_error == "raise":
                    raise
                misses.append(miss_from(i, describe_source(im, i), exc))
                continue
            rows.append(e)
            faces += f
            kept.append(i)
            names.append(describe_source(im, i))
        emb = np.concatenate(rows) if rows else np.zeros((0, m.embedding_size), np.float32)
        return EmbedBatch(emb, kept, names, faces, misses, {"detect_align_embed_ms": (time.perf_counter() - t0) * 1e3})
    prep = prepare_images(items, m.input_size, aligned, detector, on_error=on_error)
    t0 = time.perf_counter()
    if len(prep.crops):
        emb = m.embed_aligned(prep.crops, flip=flip, batch_size=batch_size)
    else:
        emb = np.zeros((0, m.embedding_size), np.float32)
    prep.timings["embed_ms"] = (time.perf_counter() - t0) * 1e3
    return EmbedBatch(emb, prep.indices, prep.sources, prep.faces, prep.misses, prep.timings)


def compare(emb1, emb2) -> float | np.ndarray:
    """Cosine similarity of precomputed embeddings (normalised here; any scale accepted).

    Two (D,) vectors -> float; (N, D) and (N, D) -> (N,) row-wise; (D,) vs (N, D) -> (N,).
    """
    a = np.asarray(emb1, dtype=np.float64)
    b = np.asarray(emb2, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise DataFormatError(f"embedding sizes differ: {a.shape} vs {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataFormatError("embeddings contain NaN or infinity")
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    if np.any(na == 0) or np.any(nb == 0):
        raise DataFormatError("an embedding is all zeros")
    s = (a * b).sum(-1) / (na * nb)
    return float(s) if np.ndim(s) == 0 else s


# ============================================================================ verification
@dataclass
class VerifyResult:
    """Outcome of :func:`verify`. ``verified`` iff ``score >= threshold``."""

    verified: bool
    score: float
    threshold: float
    threshold_source: str                     # "explicit" | "calibrated"
    provenance: dict[str, Any] | None         # calibrated entry: bench, protocol, fmr, seed, date, ...
    faces: list[dict | None]                  # per image: box, landmarks, score (None if aligned input)
    timings: dict[str, float]                 # milliseconds
    model_fingerprint: str

    def __bool__(self) -> bool:
        return self.verified

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def resolve_threshold(model: FaceModel, threshold: float | None, fmr: float | None, *,
                      protocol: str = DEFAULT_PROTOCOL, flip: bool = True) -> tuple[float, str, dict | None]:
    """``(threshold, source, provenance)`` following the rules in the module doc."""
    from .thresholds import lookup

    if threshold is not None and fmr is not None:
        raise ConfigError("give either threshold or fmr, not both")
    if threshold is not None:
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold must be a number, got {threshold!r}") from None
        if not -1.0 <= t <= 1.0:
            raise ConfigError(f"threshold is a cosine similarity in [-1, 1], got {t}")
        return t, "explicit", None
    if model.path is None:
        raise ConfigError("this model was not loaded from a file, so it has no calibrated thresholds; "
                          "pass threshold=")
    entry = lookup(model.thresholds_file, model.fingerprint, fmr=fmr, protocol=protocol, flip=flip)
    return float(entry["threshold"]), "calibrated", entry


def verify(img1, img2, model, threshold: float | None = None, fmr: float | None = None, *,
           protocol: str = DEFAULT_PROTOCOL, aligned: bool = False, flip: bool = True, detector=None) -> VerifyResult:
    """One-to-one decision between two face images (see the module doc for thresholds).

    ``protocol`` picks the calibration scenario (``mu``: one masked face vs one unmasked, the
    gate use case; ``uu``; ``mm``). Raises :class:`NoFaceError` if a photo has no face.
    """
    t0 = time.perf_counter()
    m = _resolve_model(model)
    t_load = time.perf_counter()
    thr, source, prov = resolve_threshold(m, threshold, fmr, protocol=protocol, flip=flip)
    emb, faces, timings = embed_faces([img1, img2], m, aligned=aligned, flip=flip, detector=detector)
    from .models.embedding import pair_scores

    score = float(pair_scores(emb[:1], emb[1:2])[0])  # the score calibration computes for this pair
    timings = {"model_ms": (t_load - t0) * 1e3, **timings, "total_ms": (time.perf_counter() - t0) * 1e3}
    return VerifyResult(verified=bool(score >= thr), score=score, threshold=thr, threshold_source=source,
                        provenance=prov, faces=faces, timings=timings, model_fingerprint=m.fingerprint)

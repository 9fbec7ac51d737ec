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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .errors import CheckpointError, ConfigError, DataFormatError
from .masks.protocols import DEFAULT_PROTOCOL

if TYPE_CHECKING:
    from .batch import EmbedBatch

__all__ = ["FaceModel", "VerifyResult", "load_model", "embed", "embed_faces", "embed_batch", "verify", "compare"]

#: ONNX metadata keys written by :mod:`maskinv.export` and read here.
ONNX_META_PREFIX = "maskinv."

# Loading lives in models/loading.py (evaluation uses it too); the facade re-exports it.
from .models.loading import FaceModel, load_model  # noqa: E402
from .models.loading import is_model as _is_model  # noqa: E402
from .models.recognizer import is_named_model  # noqa: E402


_MODEL_CACHE: dict[tuple, FaceModel] = {}
_CACHE_LOCK = threading.Lock()


def _resolve_model(model) -> FaceModel:
    """A loaded recogniser, or a path / registered name loaded once and cached (files keyed by
    path, size and mtime; names by name)."""
    if _is_model(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if is_named_model(model):
            key = (os.fspath(model).lower(),)
            with _CACHE_LOCK:  # loading a named model's files (dlib ~0.5 s) happens once
                if key not in _MODEL_CACHE:
                    _MODEL_CACHE[key] = load_model(model)
                return _MODEL_CACHE[key]
        if not p.is_file():
            return load_model(model)  # raises CheckpointError naming the file (and a close model name)
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
    if m.needs_photo:  # the recogniser aligns photos itself (dlib)
        return m.embed_photos(_as_list(images), aligned=aligned, detector=detector)
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
    if m.needs_photo:  # it aligns photos itself (dlib), so go image by image
        from .align import describe_source

        rows, faces, kept, names, misses = [], [], [], [], []
        t0 = time.perf_counter()
        for i, im in enumerate(items):
            try:
                e, f, _ = m.embed_photos([im], aligned=aligned, detector=detector)
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

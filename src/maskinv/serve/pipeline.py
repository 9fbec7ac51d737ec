"""One photo -> face, aligned crop, mask probability, template: the pipeline the service runs.

Detection runs once per photo (the configured detector; the service's default is ``mtcnn+yunet``,
:data:`maskinv.serve.DEFAULT_SERVE_DETECTOR`; a Pipeline built without one uses the package default);
the largest face is used. The 112 px ArcFace crop feeds the mask classifier (and is what the
answer may show); the template comes from the recogniser: a model that aligns photos itself
(``needs_photo``, dlib) gets the photo and the *same* detection (its own 5-point predictor runs
inside that box), any other model gets the crop at its own input size.

The benchmark baseline (``benchmarks/bench_serve.py``) and the RMFD calibration run this same
code without a server, so scores, thresholds and the mask decision mean the same thing there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..align import FaceDetector, resolve_detector
from ..align.transform import warp_to_template
from ..constants import INPUT_SIZE
from ..errors import NoFaceError

__all__ = ["Analysis", "Pipeline", "OneFace"]


class OneFace(FaceDetector):
    """A 'detector' that returns faces already found: hands a detection to a recogniser that
    detects itself (dlib), so a photo is never detected twice."""

    name = "precomputed"

    def __init__(self, faces):
        self._faces = list(faces)

    def detect(self, image: np.ndarray):
        return list(self._faces)


@dataclass
class Analysis:
    """What the pipeline found in one photo."""

    n_faces: int
    face: Any                      # maskinv.align.Face of the largest face
    crop: np.ndarray               # 112x112 ArcFace-aligned uint8 RGB
    embedding: np.ndarray | None   # (D,) float32, L2-normalised (None when not asked)
    p_masked: float | None         # mask classifier's probability (None without a classifier)
    timings: dict[str, float] = field(default_factory=dict)   # milliseconds


class Pipeline:
    """``model``: a loaded :class:`maskinv.models.recognizer.Recognizer` (``maskinv.load_model``:
    a file or a named model such as ``"sface"`` / ``"dlib"``), used through that protocol and its
    thread-safety contract (``embed_aligned`` / ``embed_photos`` may run concurrently); ``detector``: name or object
    (None: the package default); ``mask_classifier``: a :class:`maskinv.masks.detect.MaskClassifier`
    or None. Thread-safe as far as its parts are: the recogniser and detector are shared."""

    def __init__(self, model, detector: str | FaceDetector | None = None, mask_classifier=None, batcher=None):
        self.model = model
        self.detector = resolve_detector(detector)
        self.mask_classifier = mask_classifier
        self.batcher = batcher  # a maskinv.serve.batching.MicroBatcher, or None: embed in the calling thread

    def analyse(self, image: np.ndarray, *, name: str = "image", embed: bool = True) -> Analysis:
        """Detect, align, classify and embed the largest face of ``image`` (uint8 RGB).
        No face: :class:`NoFaceError` naming ``name``."""
        t0 = time.perf_counter()
        faces = self.detector.detect(image)
        t1 = time.perf_counter()
        if not faces:
            raise NoFaceError(f"{name}: no face detected")
        face = faces[0]
        crop, _ = warp_to_template(image, face.landmarks, INPUT_SIZE)
        t2 = time.perf_counter()
        p = float(self.mask_classifier.predict_proba(crop[None])[0]) if self.mask_classifier is not None else None
        t3 = time.perf_counter()
        emb = self.embed(image, face, crop) if embed else None
        t4 = time.perf_counter()
        timings = {"detect_ms": (t1 - t0) * 1e3, "align_ms": (t2 - t1) * 1e3, "classify_ms": (t3 - t2) * 1e3,
                   "embed_ms": (t4 - t3) * 1e3}
        return Analysis(len(faces), face, crop, emb, p, timings)

    def embed(self, image: np.ndarray, face, crop112: np.ndarray | None = None) -> np.ndarray:
        m = self.model
        if m.needs_photo:  # the Recognizer protocol (maskinv.models.recognizer): it aligns the photo itself
            emb, _, _ = m.embed_photos([image], detector=OneFace([face]))
            return np.asarray(emb[0], np.float32)
        size = int(getattr(m, "input_size", INPUT_SIZE))
        crop = crop112 if (crop112 is not None and size == INPUT_SIZE) else warp_to_template(image, face.landmarks, size)[0]
        if self.batcher is not None:
            return self.batcher.embed(crop)
        return np.asarray(m.embed_aligned(crop[None], flip=m.supports_flip)[0], np.float32)

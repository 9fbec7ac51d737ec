"""Face detection, five-point landmarks and ArcFace alignment (offline).

>>> from maskinv.align import align_faces, read_image
>>> faces = align_faces(read_image("photo.jpg"))        # largest face first
>>> faces[0].crop.shape                                  # (112, 112, 3) uint8 RGB

The default detector is MTCNN (finds masked faces); ``detector="dlib"`` selects dlib's HOG.
No face: ``align_faces`` raises :class:`maskinv.errors.NoFaceError` by default, or returns
an empty list with ``on_no_face="empty"`` — never a silent skip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..constants import INPUT_SIZE
from ..errors import ConfigError, NoFaceError
from .dlib import DlibDetector
from .interface import DetectorUnavailableError, Face, FaceDetector, five_from_68
from .registry import DEFAULT_DETECTOR, get_detector, list_detectors, register_detector, resolve_detector
from .image import describe_source, read_image
from .transform import invert_affine, similarity_matrix, transform_points, umeyama, warp_to_template

__all__ = [
    "AlignedFace", "Face", "DEFAULT_DETECTOR", "FaceDetector", "DlibDetector", "DetectorUnavailableError",
    "align_face", "align_faces", "detect_faces", "five_from_68", "get_detector",
    "list_detectors", "register_detector", "resolve_detector", "read_image", "describe_source",
    "umeyama", "similarity_matrix", "transform_points", "invert_affine", "warp_to_template",
]


@dataclass
class AlignedFace:
    """An aligned crop with the detection it came from and the photo->crop matrix."""

    crop: np.ndarray        # (size, size, 3) uint8 RGB
    face: Face
    matrix: np.ndarray      # 2x3, photo coordinates -> crop coordinates

    def to_dict(self) -> dict[str, Any]:
        return self.face.to_dict()


def detect_faces(image, detector: str | FaceDetector | None = None) -> list[Face]:
    """All faces in ``image`` (path, bytes or uint8 RGB array), largest first."""
    return resolve_detector(detector).detect(read_image(image))


def align_face(image: np.ndarray, landmarks, size: int = INPUT_SIZE) -> np.ndarray:
    """Crop aligned to the ArcFace template from known five points (no detection)."""
    crop, _ = warp_to_template(read_image(image), landmarks, size)
    return crop


def align_faces(image, detector: str | FaceDetector | None = None, *, size: int = INPUT_SIZE,
                on_no_face: Literal["raise", "empty"] = "raise", max_faces: int | None = None,
                name: str | None = None) -> list[AlignedFace]:
    """Detect every face in ``image`` and align each to the template, largest first.

    ``on_no_face="raise"`` (default) raises :class:`NoFaceError` naming the image;
    ``"empty"`` returns ``[]``. ``max_faces`` keeps only the largest ones.
    """
    if on_no_face not in ("raise", "empty"):
        raise ConfigError(f"on_no_face must be 'raise' or 'empty', got {on_no_face!r}")
    img = read_image(image, name=name)
    faces = resolve_detector(detector).detect(img)
    if not faces:
        if on_no_face == "raise":
            label = name or describe_source(image)
            raise NoFaceError(f"{label}: no face detected (pass aligned=True if the image is "
                              f"already a {size}x{size} aligned crop)")
        return []
    if max_faces is not None:
        faces = faces[:max_faces]
    out = []
    for face in faces:
        crop, matrix = warp_to_template(img, face.landmarks, size)
        out.append(AlignedFace(crop=crop, face=face, matrix=matrix))
    return out

"""Mask geometry from face landmarks.

A mask is placed from *anchors* (nose bridge, nose tip, under-nose, cheeks, jaw, lower jaw,
chin, ears) derived from either the five ArcFace points or a 68-point iBUG set.

Five points carry no jaw line, so the anchors come from a small face model: a vertical
cylinder (radius ~1 interocular distance) turned by a yaw angle that is estimated from how far
the nose tip sits off the eye/mouth midline. Mapping canonical frontal positions through the
turned cylinder makes the far side of the mask narrow and the whole mask follow the nose,
while the in-plane frame (eye line -> x axis) makes it follow roll. With 68 points the jaw
contour gives the cheek/jaw/chin anchors directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import template_for_size
from ..errors import DataFormatError

# Cylinder face model, in interocular-distance units (see module docstring).
_FACE_RADIUS = 1.0
_EYE_ANGLE = float(np.arcsin(0.5 / _FACE_RADIUS))   # eyes at u = +-0.5
_NOSE_DEPTH = 0.35                                    # nose tip protrudes this much
_MAX_YAW = np.deg2rad(50.0)


def as_landmarks(landmarks, image_shape, *, source: str = "landmarks") -> np.ndarray:
    """Validate landmarks; ``None`` -> the ArcFace template scaled to ``image_shape`` (H, W).

    Returns float64 (5, 2) or (68, 2) in (x, y) pixel coordinates.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    if landmarks is None:
        return template_for_size((h, w)).astype(np.float64)
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape not in ((5, 2), (68, 2)):
        raise DataFormatError(f"{source}: expected landmarks of shape (5, 2) or (68, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise DataFormatError(f"{source}: landmarks contain NaN or infinite values")
    return pts


@dataclass
class FaceFrame:
    """Face-aligned frame: origin between the eyes, ``ex`` along the eye line, ``ey`` down the face.

    ``d_io`` is the interocular distance, ``em`` the eye-line to mouth-line distance (pixels),
    ``yaw`` the estimated head yaw in radians (positive: nose towards image-right, so the
    image-right half of the face is the far side).
    """

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    d_io: float
    em: float
    yaw: float

    def to_image(self, u, v, depth=0.0) -> np.ndarray:
        """Canonical frontal face coordinates -> image pixels.

        ``u`` is horizontal in interocular units (eyes at -0.5/+0.5, face edge ~ +-1),
        ``v`` vertical in eye-to-mouth units (0 eye line, 1 mouth line), ``depth`` how far the
        point protrudes from the face cylinder (interocular units; the nose ~0.35).
        """
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        phi = np.arcsin(np.clip(u / _FACE_RADIUS, -1.0, 1.0))
        # A surface point cannot turn past the silhouette; clamp it there (far side compresses).
        ang = np.clip(phi + self.yaw, -np.pi / 2, np.pi / 2)
        x = (_FACE_RADIUS + depth) * np.sin(ang) - _FACE_RADIUS * np.sin(self.yaw) * np.cos(_EYE_ANGLE)
        x = x * self.d_io
        y = v * self.em
        pts = self.origin + x[..., None] * self.ex + y[..., None] * self.ey
        return pts

    def to_local(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels -> (X, Y) in the in-plane frame (X in d_io units, Y in em units), no yaw."""
        d = np.asarray(xy, dtype=np.float64) - self.origin
        return (d @ self.ex) / self.d_io, (d @ self.ey) / self.em


@dataclass
class Anchors:
    """Image-space anchor points that mask outlines are built from (all (2,) float64 arrays)."""

    frame: FaceFrame
    eye_l: np.ndarray
    eye_r: np.ndarray
    bridge: np.ndarray
    nose_tip: np.ndarray
    under_nose: np.ndarray
    mouth_l: np.ndarray
    mouth_r: np.ndarray
    cheek_l: np.ndarray
    cheek_r: np.ndarray
    jaw_l: np.ndarray
    jaw_r: np.ndarray
    jaw_low_l: np.ndarray
    jaw_low_r: np.ndarray
    chin: np.ndarray
    ear_l: np.ndarray
    ear_r: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def mouth_mid(self) -> np.ndarray:
        return (self.mouth_l + self.mouth_r) / 2.0


def five_points(pts: np.ndarray) -> np.ndarray:
    """(5, 2) ArcFace-order points from a (5, 2) or iBUG (68, 2) set."""
    if pts.shape[0] == 5:
        return pts
    return np.stack([
        pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54],
    ])


def face_frame(pts5: np.ndarray, *, source: str = "landmarks") -> FaceFrame:
    """In-plane frame and yaw estimate from five points (left eye, right eye, nose, mouth l/r)."""
    eye_l, eye_r, nose, mouth_l, mouth_r = pts5
    eye_mid, mouth_mid = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    # Average eye line and mouth line directions: robust to a tilted mouth or a wink.
    ex = (eye_r - eye_l) + (mouth_r - mouth_l)
    n = np.linalg.norm(ex)
    d_io = float(np.linalg.norm(eye_r - eye_l))
    if n < 1e-6 or d_io < 1e-3:
        raise DataFormatError(f"{source}: degenerate landmarks (eyes/mouth corners coincide)")
    ex = ex / n
    ey = np.array([-ex[1], ex[0]])
    em = float((mouth_mid - eye_mid) @ ey)
    if em <= 1e-3:
        raise DataFormatError(f"{source}: mouth is not below the eyes in the landmarks' frame")
    # Nose offset from the face midline -> yaw on the cylinder model (see docstring).
    off = float((nose - (eye_mid + mouth_mid) / 2) @ ex) / d_io
    lever = _FACE_RADIUS + _NOSE_DEPTH - _FACE_RADIUS * np.cos(_EYE_ANGLE)
    yaw = float(np.clip(np.arcsin(np.clip(off / lever, -1.0, 1.0)), -_MAX_YAW, _MAX_YAW))
    # Origin: where the frontal eye midpoint projects (eye_mid already includes the yaw shift).
    return FaceFrame(origin=eye_mid.astype(np.float64), ex=ex, ey=ey, d_io=d_io, em=em, yaw=yaw)


def face_anchors(landmarks, image_shape, *, source: str = "landmarks") -> Anchors:
    """Anchors for mask placement from (5, 2) / (68, 2) landmarks or ``None`` (template)."""
    pts = as_landmarks(landmarks, image_shape, source=source)
    p5 = five_points(pts)
    fr = face_frame(p5, source=source)
    T = fr.to_image
    # Canonical positions in (u, v) measured on the ArcFace template and typical faces:
    # nose tip at v ~ 0.5, under-nose ~ 0.68, chin ~ 1.45, face edge at the eyes ~ +-1.
    a = Anchors(
        frame=fr,
        eye_l=p5[0], eye_r=p5[1],
        bridge=T(0.0, 0.12, depth=0.15),
        nose_tip=p5[2].copy(),
        under_nose=T(0.0, 0.66, depth=0.2),
        mouth_l=p5[3], mouth_r=p5[4],
        cheek_l=T(-0.98, 0.38), cheek_r=T(0.98, 0.38),
        jaw_l=T(-0.9, 1.0), jaw_r=T(0.9, 1.0),
        jaw_low_l=T(-0.58, 1.34), jaw_low_r=T(0.58, 1.34),
        chin=T(0.0, 1.47, depth=0.05),
        ear_l=T(-1.0, 0.3, depth=0.45), ear_r=T(1.0, 0.3, depth=0.45),
    )
    if pts.shape[0] == 68:
        # Dense contour: take sides, jaw and chin from the landmarks themselves (yaw included).
        a.cheek_l, a.cheek_r = pts[1].copy(), pts[15].copy()
        a.jaw_l, a.jaw_r = pts[4].copy(), pts[12].copy()
        a.jaw_low_l, a.jaw_low_r = pts[6].copy(), pts[10].copy()
        a.chin = pts[8].copy()
        a.bridge = pts[28].copy()
        a.under_nose = pts[33].copy()
        centre = pts[27:36].mean(0)
        a.ear_l = pts[0] + 0.15 * (pts[0] - centre)
        a.ear_r = pts[16] + 0.15 * (pts[16] - centre)
    return a

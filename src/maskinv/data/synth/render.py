"""SynthFaces rendering: one image = background, face, accessories, photometric nuisance.

:func:`render_face` draws from the posed landmarks with anti-aliased OpenCV primitives
(sub-pixel ``shift``) at ``supersample`` times the output size when the output is small,
so the 68 iBUG landmarks of every image are exact in output pixel coordinates
(``constants.template_for_size`` convention).  The per-image ``rng`` is consumed in a
fixed order (pose, background, face, accessories, photometric, JPEG quality).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from maskinv.errors import ConfigError
from maskinv.utils.images import decode_image, encode_image

from .canvas import Canvas, col as _col
from .face import draw_face
from .geometry import pose_face
from .identity import _IMG_TAG, FaceIdentity, _difficulty, sample_identity

__all__ = ["render_face", "render_faces", "encode_jpeg"]

_BG = np.array(
    [[200, 200, 205], [120, 130, 140], [60, 70, 80], [180, 160, 130], [90, 110, 90], [150, 170, 200],
     [210, 190, 170], [40, 40, 45], [170, 120, 110], [100, 90, 130], [230, 230, 220], [130, 150, 120]],
    np.float32,
)  # shared background palette (RGB): no background identifies a face

_RAMP_N = 8  # smooth fields are computed on an 8x8 grid and upsampled bilinearly
_RAMP_V = (np.arange(_RAMP_N, dtype=np.float32) + 0.5) / _RAMP_N - 0.5


def _ramp(cx: float, cy: float) -> np.ndarray:
    """8x8 samples of the linear field ``cx * x + cy * y`` over the image (x, y in [-0.5, 0.5])."""
    return (cx * _RAMP_V)[None, :] + (cy * _RAMP_V)[:, None]


def _upsample(small: np.ndarray, n: int) -> np.ndarray:
    import cv2

    return cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)


_NOISE_BANK: dict[int, np.ndarray] = {}


def _noise_patch(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit Gaussian noise (n, n, 3) cut from a fixed bank at a random offset/orientation.

    A shared bank (fixed seed) instead of fresh noise per image: cheaper, and the noise
    of one image is not a unique fingerprint a network could memorise (pitfall 1).
    """
    bank = _NOISE_BANK.get(n)
    if bank is None:
        bank = np.random.default_rng(0x5EED).standard_normal((2 * n, 2 * n, 3), dtype=np.float32)
        _NOISE_BANK[n] = bank
    y, x = rng.integers(0, n, 2)
    patch = bank[y : y + n, x : x + n]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch[:, :, rng.permutation(3)])



def render_face(
    identity: FaceIdentity,
    rng: np.random.Generator,
    *,
    size: int = 112,
    difficulty: str | float = "default",
    supersample: int | None = None,
    clean: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one image of ``identity``: (uint8 RGB (size, size, 3), landmarks (68, 2), info).

    ``rng`` drives every per-image choice.  ``clean=True`` turns off the photometric
    nuisance (illumination, blur, noise, glasses, cap) but keeps pose and expression —
    useful for tests.  ``info`` holds the per-image choices (e.g. ``jpeg_quality``).
    """
    import cv2

    d = _difficulty(difficulty)
    if supersample is None:
        supersample = 2 if size < 96 else 1
    ss = int(supersample)
    k = size / 112.0  # template -> output pixels

    pose = pose_face(identity.shape, identity.extras, rng, d)
    lm = pose.lm
    cv = Canvas(_background(rng, size * ss), k, ss, pose.scale * k * ss)
    style, facial_hair = draw_face(cv, identity.params, lm, pose.extras, pose.expr, rng, d)
    info: dict[str, Any] = {"style": style, "facial_hair": facial_hair, **pose.expr,
                            "yaw": math.degrees(pose.yaw), "pitch": math.degrees(pose.pitch)}
    if not clean:
        _draw_accessories(cv, lm, pose.extras, rng, d, info)
    img = cv.img
    if ss > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    if not clean:
        img = _photometric(img, rng, d, k, info)
    q_lo = int(round(max(30.0, 95 - 40 * d)))
    info["jpeg_quality"] = int(rng.integers(q_lo, 96)) if not clean else 95
    return img, (lm * k).astype(np.float32), info


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth gradient between two shared palette colours, (n, n, 3) uint8."""
    ia, ib = rng.integers(0, len(_BG), 2)
    ang = rng.uniform(0, 2 * np.pi)
    bg_jit = rng.uniform(0.85, 1.15)
    t = np.clip(_ramp(math.cos(ang), math.sin(ang)) + 0.5, 0, 1)[..., None]
    img = _upsample(((_BG[ia] * (1 - t) + _BG[ib] * t) * bg_jit).clip(0, 255).astype(np.uint8), n)
    return img


def _draw_accessories(cv: Canvas, lm: np.ndarray, ex: dict[str, np.ndarray], rng: np.random.Generator,
                      d: float, info: dict) -> None:
    """Glasses and a cap: weakly-identifying upper-face clutter."""
    import cv2

    img, poly, pt, rad, th = cv.img, cv.poly, cv.pt, cv.rad, cv.th
    AA, SH = cv2.LINE_AA, Canvas.SHIFT
    if rng.random() < 0.12 * d:
        gc = _col(rng.uniform(10, 160, 3))
        for base in (36, 42):
            c = lm[base : base + 6].mean(0)
            cv2.ellipse(img, pt(c), (rad(8.5), rad(6.0)), 0, 0, 360, gc, th(0.9), AA, SH)
        cv2.line(img, pt(lm[39] + [1.5, -1]), pt(lm[42] + [-1.5, -1]), gc, th(0.9), AA, SH)
        info["glasses"] = True
    if rng.random() < 0.08 * d:
        cc = _col(rng.uniform(20, 230, 3))
        brim_y = min(lm[19][1], lm[24][1]) - rng.uniform(4, 9)
        capp = np.concatenate([ex["hair_outer"] + [0, -3], [[lm[16][0] + 8, brim_y], [lm[0][0] - 8, brim_y]]])
        capp[:, 1] = np.minimum(capp[:, 1], brim_y)
        cv2.fillPoly(img, [poly(capp)], cc, AA, SH)
        info["cap"] = True


def _photometric(img: np.ndarray, rng: np.random.Generator, d: float, k: float, info: dict) -> np.ndarray:
    """Illumination ramp with a tint, blur, sensor noise, at output size."""
    import cv2

    size = img.shape[0]
    la = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.45) * d
    ambient = rng.uniform(0.82, 1.12) if d > 0 else 1.0
    tint = 1.0 + rng.uniform(-0.07, 0.07, 3).astype(np.float32) * d
    light = (ambient + strength * _ramp(math.cos(la), math.sin(la)))[..., None] * tint
    f = img.astype(np.float32)
    sigma = rng.uniform(0.0, 1.1) * d * k if rng.random() < 0.55 else 0.0
    if sigma > 0.15:
        f = cv2.GaussianBlur(f, (0, 0), sigma)
    f = cv2.multiply(f, _upsample(light.astype(np.float32), size))
    noise = rng.uniform(0.0, 4.0) * d
    if noise > 0.2:
        f = cv2.scaleAdd(_noise_patch(rng, size), noise, f)
    np.clip(f, 0, 255, out=f)
    img = (f + 0.5).astype(np.uint8)
    info.update(light_strength=strength, blur_sigma=sigma, noise=noise)
    return img


def _image_rng(seed: int, identity: int, image_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _IMG_TAG, int(identity), int(image_index)])


def render_faces(
    identities: Sequence[int] | np.ndarray,
    *,
    seed: int = 0,
    image_indices: Sequence[int] | np.ndarray | None = None,
    size: int = 112,
    difficulty: str | float = "default",
    clean: bool = False,
    jpeg: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a batch in memory: ((N, size, size, 3) uint8 RGB, (N, 68, 2) float32 landmarks).

    ``identities[i]`` is an identity index of generator ``seed``; ``image_indices[i]``
    (default ``0, 1, 2, ...``) picks which of that identity's images (pose, expression,
    nuisance), so ``(seed, identity, image_index)`` always gives the same picture.
    ``jpeg=True`` passes each image through JPEG at its per-image quality, as stored
    datasets are.  Use :func:`five_points` for the 5 ArcFace points.
    """

    ids = np.asarray(identities, dtype=np.int64).reshape(-1)
    idx = np.arange(ids.size) if image_indices is None else np.asarray(image_indices, np.int64).reshape(-1)
    if idx.size != ids.size:
        raise ConfigError(f"render_faces: {ids.size} identities but {idx.size} image indices")
    cache: dict[int, FaceIdentity] = {}
    imgs = np.empty((ids.size, size, size, 3), np.uint8)
    lms = np.empty((ids.size, 68, 2), np.float32)
    for n, (i, j) in enumerate(zip(ids.tolist(), idx.tolist())):
        ident = cache.get(i)
        if ident is None:
            ident = cache[i] = sample_identity(seed, i)
        img, lm, info = render_face(ident, _image_rng(seed, i, j), size=size, difficulty=difficulty, clean=clean)
        if jpeg:
            img = decode_image(encode_jpeg(img, info["jpeg_quality"]))
        imgs[n] = img
        lms[n] = lm
    return imgs, lms


def encode_jpeg(img_rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode uint8 RGB as JPEG (OpenCV writes BGR, as the reference RecordIO files do)."""
    return encode_image(img_rgb, "jpg", quality)


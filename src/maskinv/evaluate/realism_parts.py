"""Helpers of :mod:`maskinv.evaluate.realism`: embedding photos with given faces, probe x reference
scores, the contact-sheet view, and the synthetic condition's mask draws.

Several draws per probe (``draws`` N): each held-out unmasked probe gets N synthetic masks. Draw 0
uses ``image_rng(seed, i)`` (photo index i), exactly the single draw of earlier rounds; draw d >= 1
uses ``image_rng(derive_seed(seed, "realism_draw", d), i)``. A draw whose masked photo MTCNN no
longer finds is dropped like any undetected photo (and counted per draw).
"""
from __future__ import annotations

import numpy as np

from maskinv.utils.seeds import derive_seed

__all__ = ["draw_seed", "draw_synthetic"]


def draw_seed(seed: int, draw: int) -> int:
    """The mask seed of draw ``draw``: ``seed`` itself for draw 0 (the single draw of earlier rounds)."""
    return int(seed) if draw == 0 else derive_seed(seed, "realism_draw", int(draw))


def draw_synthetic(items, *, draws: int, seed: int, kind: str, renderer: str, det, keys, cache: dict):
    """Mask every (index, photo, face) of ``items`` ``draws`` times on the full photo from the face's
    five points, then detect again. Returns ``(synth, draw_of, lost)``: the detected masked probes as
    (index, photo, face) in draw-major order, their draw numbers (int array) and the lost photos' keys
    per draw. Each draw is cached in ``cache`` under (renderer revision, kind, seed, draw, probes)."""
    from maskinv.masks import image_rng, mask_photo
    from maskinv.masks.mesh import renderer_revision

    synth, draw_of, lost = [], [], {}
    idx = tuple(r[0] for r in items)
    for d in range(draws):
        skey = ("synth", renderer_revision(renderer), kind, seed, d, idx)
        if skey not in cache:
            got, miss = [], []
            sd = draw_seed(seed, d)
            for i, img, face in items:
                res = mask_photo(img, face.landmarks, image_rng(sd, i), kind, renderer=renderer)
                found = det.detect(res.image)
                if not found:
                    miss.append(keys[i])
                    continue
                got.append((i, res.image, found[0]))
            cache[skey] = (got, miss)
        got, miss = cache[skey]
        synth.extend(got)
        draw_of.extend([d] * len(got))
        lost[d] = list(miss)
    return synth, np.array(draw_of, np.int64), lost


def _subset(c: dict, keep: np.ndarray) -> dict:
    """The comparisons of a :func:`_scores` dict where ``keep`` (bool, per comparison) holds."""
    s = c["scores"][keep]
    return {"scores": s, "genuine": c["genuine"][keep], "probe_identity": c["probe_identity"][keep],
            "order": np.argsort(-s, kind="stable")}


class _FixedDetector:
    """A detector that returns precomputed faces for known images (keyed by pixel hash)."""

    name = "mtcnn-cached"

    def __init__(self, faces: dict[str, list]):
        self._faces = faces

    def detect(self, image):
        from maskinv.masks.mesh import image_key

        return list(self._faces.get(image_key(image), []))


def _embed(model, images: list[np.ndarray], faces: list, batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings of photos with their given faces (MTCNN's), any model kind."""
    from maskinv.align import align_face
    from maskinv.masks.mesh import image_key

    if not images:
        return np.zeros((0, int(getattr(model, "embedding_size", 0) or 0)), np.float32)
    if getattr(model, "needs_photo", False):
        det = _FixedDetector({image_key(im): [f] for im, f in zip(images, faces)})
        fn = getattr(model, "embed_photos", None) or getattr(model, "embed_images")
        emb = fn(images, detector=det)[0]
        return np.asarray(emb, np.float32)
    size = int(getattr(model, "input_size", 112))
    crops = np.stack([align_face(im, f.landmarks, size) for im, f in zip(images, faces)])
    return np.asarray(model.embed_aligned(crops, flip=True, batch_size=batch_size), np.float32)


def _scores(pe: np.ndarray, re: np.ndarray, pid: np.ndarray, rid: np.ndarray) -> dict[str, np.ndarray]:
    s = (pe.astype(np.float64) @ re.astype(np.float64).T).ravel()
    g = (pid[:, None] == rid[None, :]).ravel()
    return {"scores": s, "genuine": g, "probe_identity": np.repeat(pid, rid.size), "order": np.argsort(-s, kind="stable")}


def _crop_view(image: np.ndarray, face, size: int = 112) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = face.box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.2 * max(x1 - x0, y1 - y0)
    M = np.float32([[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]])
    return cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))



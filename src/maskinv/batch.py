"""Photos -> aligned crops, image by image, for the facade (:mod:`maskinv.api`).

One bad photo must not sink a batch of hundreds: with ``on_error="skip"`` an image that cannot
be decoded or shows no face becomes a :class:`Miss` (index, source, one-line reason) and the
others go on; ``"raise"`` stops at the first one (the error names the image). Problems that are
not about one image (an unknown detector, a broken model) always raise.

Aligned inputs of another size than the model's are resized to it by the embedding core's rule
(:func:`maskinv.models.embedding.resize_images`: area when shrinking, linear when enlarging) with one
note per call — the same rule evaluation applies to benchmark crops.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, DataFormatError, NoFaceError
from .models.embedding import resize_crops, resize_images, resized_note  # resize_crops: re-exported (public name)

__all__ = ["Miss", "EmbedBatch", "Prepared", "prepare_images", "resize_crops", "check_on_error", "PER_IMAGE_ERRORS"]

ON_ERROR = ("raise", "skip")
#: errors that concern one image (skipped with ``on_error="skip"``); anything else always raises
PER_IMAGE_ERRORS = (NoFaceError, DataFormatError, OSError)


@dataclass(frozen=True)
class Miss:
    """An input that produced no embedding: its position, a printable name and why."""

    index: int
    source: str
    reason: str          # one line naming the image, e.g. "a.jpg: no face detected ..."
    kind: str            # "no face" | "unreadable"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "image": self.source, "kind": self.kind, "reason": self.reason}


@dataclass
class EmbedBatch:
    """What :func:`maskinv.api.embed_batch` returns: one row of ``embeddings`` per embedded
    input (``indices[i]`` is its position among the inputs, ``sources[i]`` its name), and a
    :class:`Miss` for every input that produced none."""

    embeddings: np.ndarray                       # (K, D) float32, L2-normalised
    indices: list[int]
    sources: list[str]
    faces: list[dict | None]
    misses: list[Miss] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_inputs(self) -> int:
        return len(self.indices) + len(self.misses)

    def summary(self) -> str:
        """``"3 of 100 images skipped (2 no face, 1 unreadable)"`` (or ``"all N images embedded"``)."""
        if not self.misses:
            return f"all {self.num_inputs} images embedded"
        kinds = Counter(m.kind for m in self.misses)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return f"{len(self.misses)} of {self.num_inputs} images skipped ({detail})"


@dataclass
class Prepared:
    crops: np.ndarray                            # (K, S, S, 3) uint8 RGB
    faces: list[dict | None]
    indices: list[int]
    sources: list[str]
    misses: list[Miss]
    timings: dict[str, float]


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def miss_from(index: int, source: str, exc: BaseException) -> Miss:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        text = f"{exc.filename}: {exc.strerror or text}"
    if source not in text:
        text = f"{source}: {text}"
    return Miss(index, source, text, "no face" if isinstance(exc, NoFaceError) else "unreadable")


def prepare_images(images: list, size: int, aligned: bool, detector=None, *, on_error: str = "raise") -> Prepared:
    """Decode every image, then detect + align its largest face (or take it as an aligned crop)."""
    from .align import align_faces, describe_source, read_image

    check_on_error(on_error)
    t0 = time.perf_counter()
    decoded: list[np.ndarray | None] = []
    misses: list[Miss] = []
    for i, im in enumerate(images):
        try:
            decoded.append(read_image(im, name=describe_source(im, i)))
        except PER_IMAGE_ERRORS as exc:
            if on_error == "raise":
                raise
            decoded.append(None)
            misses.append(miss_from(i, describe_source(im, i), exc))
    t1 = time.perf_counter()
    crops, faces, indices, sources = [], [], [], []
    resized: list[tuple[int, int]] = []
    for i, (src, img) in enumerate(zip(images, decoded)):
        if img is None:
            continue
        name = describe_source(src, i)
        if aligned:
            if img.shape[:2] != (size, size):
                resized.append((img.shape[1], img.shape[0]))
                img = resize_images(img[None], size)[0]
            crops.append(img)
            faces.append(None)
        else:
            try:
                got = align_faces(img, detector, size=size, max_faces=1, name=name)
            except PER_IMAGE_ERRORS as exc:
                if on_error == "raise":
                    raise
                misses.append(miss_from(i, name, exc))
                continue
            crops.append(got[0].crop)
            faces.append(got[0].face.to_dict())
        indices.append(i)
        sources.append(name)
    if resized:
        resized_note(resized, len(images), size)
    t2 = time.perf_counter()
    arr = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    misses.sort(key=lambda m: m.index)
    return Prepared(arr, faces, indices, sources, misses,
                    {"decode_ms": (t1 - t0) * 1e3, "detect_align_ms": (t2 - t1) * 1e3})

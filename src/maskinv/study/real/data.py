"""The real photos of the SFace study: committed identity splits, aligned crops, renderer-v1 masks.

* :func:`read_splits` reads ``benchmarks/splits`` (``make_splits.py`` there documents them).
* LFW training photos (deep-funneled 250x250) and RMFD's tight crops are detected and aligned by
  :mod:`maskinv.align` (MTCNN by default), one cached ``.npz`` per photo (crop + its five points in
  crop coordinates) keyed by the file's sha256 and the detector, or a ``.noface`` marker.
* LFW test/validation pairs use ``aligned112`` as given (the ArcFace template is their five points).
* Masks: renderer ``v1`` = :func:`maskinv.masks.apply_mask` (kind ``random``) on the aligned crop
  from its five points, seeded per (seed, image key, draw) — every image gets one fixed mask per draw.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from maskinv.errors import DataFormatError

__all__ = ["Splits", "read_splits", "default_splits_dir", "AlignedSet", "align_photos", "aligned_crops",
           "lfw_person_photos", "rmfd_photos", "mask_crops", "RENDERER", "renderer_info", "mask_seed_index", "crop_sha"]

#: What results.json records of the v1 mask renderer (setting ``renderer``; the default is ``mesh``).
RENDERER = {"name": "v1", "function": "maskinv.masks.apply_mask", "kind": "random",
            "landmarks": "the crop's five aligned points", "seeding": "image_rng(seed, sha256(key|draw))"}


def renderer_info(name: str) -> dict:
    """What results.json records of renderer ``name`` (``v1``, or ``mesh``: the 468-point mesh from the five points)."""
    from maskinv.masks.mesh import check_renderer, renderer_revision

    check_renderer(name, "study-real setting renderer")
    return {**RENDERER, "name": name, "revision": renderer_revision(name)} if name == "v1" else {
        **RENDERER, "name": name, "revision": renderer_revision(name),
        "landmarks": "the 468-point face mesh fitted from the crop's five aligned points"}

SPLIT_FILES = ("lfw_val_pairs.txt", "lfw_test_pairs.txt", "lfw_train_people.txt", "rmfd_dev.txt", "rmfd_test.txt")


def default_splits_dir() -> Path:
    """``benchmarks/splits`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[4] / "benchmarks" / "splits"


@dataclass
class Splits:
    root: Path
    val_pairs: Path
    test_pairs: Path
    train_people: list[str]
    rmfd_dev: list[str]
    rmfd_test: list[str]
    sha256: str = ""


def _names(path: Path) -> list[str]:
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not names:
        raise DataFormatError(f"{path}: no names")
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: a name is listed twice")
    return names


def read_splits(root: str | os.PathLike | None = None) -> Splits:
    """The committed splits (``--splits DIR``; default: the checkout's ``benchmarks/splits``)."""
    root = Path(root) if root is not None else default_splits_dir()
    h = hashlib.sha256()
    for name in SPLIT_FILES:
        p = root / name
        if not p.is_file():
            raise DataFormatError(f"{p}: split file not found (expected the files of benchmarks/splits: "
                                  f"{', '.join(SPLIT_FILES)})")
        h.update(name.encode() + b"\0" + p.read_bytes())
    s = Splits(root=root, val_pairs=root / "lfw_val_pairs.txt", test_pairs=root / "lfw_test_pairs.txt",
               train_people=_names(root / "lfw_train_people.txt"), rmfd_dev=_names(root / "rmfd_dev.txt"),
               rmfd_test=_names(root / "rmfd_test.txt"), sha256=h.hexdigest())
    both = set(s.rmfd_dev) & set(s.rmfd_test)
    if both:
        raise DataFormatError(f"{root}: RMFD person {sorted(both)[0]!r} is in both rmfd_dev.txt and rmfd_test.txt")
    return s


def _images_in(folder: Path) -> list[Path]:
    from maskinv.utils.images import IMAGE_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def lfw_person_photos(images_root: Path, people: Sequence[str]) -> list[tuple[str, Path, str]]:
    """``(key "Name/file", path, person)`` of every photo of ``people`` under ``images_root``."""
    out = []
    for person in people:
        d = images_root / person
        if not d.is_dir():
            raise DataFormatError(f"{d}: person folder of the training split not found")
        out += [(f"{person}/{p.name}", p, person) for p in _images_in(d)]
    return out


def rmfd_photos(rmfd_dir: Path, people: Sequence[str]) -> tuple[list[tuple[str, Path, str]], np.ndarray]:
    """RMFD photos of ``people`` and whether each is masked (``masked.txt``)."""
    listed = rmfd_dir / "masked.txt"
    if not listed.is_file():
        raise DataFormatError(f"{listed}: RMFD probe list not found")
    masked = {ln.strip() for ln in listed.read_text(encoding="utf-8").splitlines() if ln.strip()}
    photos = lfw_person_photos(rmfd_dir / "images", people)
    return photos, np.array([k in masked for k, _, _ in photos], bool).reshape(-1)


@dataclass
class AlignedSet:
    """Aligned crops of a list of photos; ``valid[i]`` False = no face found (kept out of every row)."""

    keys: list[str]
    identities: list[str]
    crops: np.ndarray          # (N, S, S, 3) uint8 RGB (zeros where not valid)
    landmarks: np.ndarray      # (N, 5, 2) crop coordinates
    valid: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def subset(self, idx: np.ndarray) -> "AlignedSet":
        idx = np.asarray(idx, np.int64)
        return AlignedSet([self.keys[i] for i in idx], [self.identities[i] for i in idx], self.crops[idx],
                          self.landmarks[idx], self.valid[idx], dict(self.info))


def crop_sha(crop: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crop).tobytes()).hexdigest()


def _template(size: int) -> np.ndarray:
    from maskinv.constants import template_for_size

    return np.asarray(template_for_size(size), np.float64)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def align_photos(photos: Sequence[tuple[str, Path, str]], cache_dir: Path | None, *, detector: Any = None,
                 size: int = 112, name: str = "photos", progress: Callable[[str], None] | None = None) -> AlignedSet:
    """Detect + align every photo (largest face), cached per file sha256 and detector."""
    from maskinv.align import align_faces, resolve_detector, transform_points
    from maskinv.utils.images import decode_image
    from maskinv.utils.io import atomic_write_bytes, atomic_write_with
    from maskinv.utils.naming import safe_name

    det = resolve_detector(detector)
    tag = safe_name(getattr(det, "name", type(det).__name__), fallback="detector", per_char=True)
    n = len(photos)
    crops = np.zeros((n, size, size, 3), np.uint8)
    lms = np.tile(_template(size)[None], (n, 1, 1))
    valid = np.zeros(n, bool)
    from_cache = 0
    for i, (key, path, _) in enumerate(photos):
        if progress is not None and i and i % 500 == 0:
            progress(f"align {name}: {i}/{n} ({from_cache} from cache, {i - int(valid[:i].sum())} without a face)")
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        hit = miss = None
        if cache_dir is not None:
            d = Path(cache_dir) / f"{tag}-{size}" / sha[:2]
            hit, miss = d / f"{sha}.npz", d / f"{sha}.noface"
            if hit.is_file():
                with np.load(hit) as z:
                    crops[i], lms[i] = z["crop"], z["landmarks"]
                valid[i] = True
                from_cache += 1
                continue
            if miss.is_file():
                from_cache += 1
                continue
        img = decode_image(data, str(path))
        faces = align_faces(img, det, size=size, on_no_face="empty", max_faces=1, name=str(path))
        if faces:
            f = faces[0]
            crops[i] = f.crop
            lms[i] = transform_points(f.matrix, f.face.landmarks)
            valid[i] = True
            if hit is not None:
                c, lm = crops[i].copy(), lms[i].copy()
                atomic_write_with(hit, lambda tmp, c=c, lm=lm: _save_npz(tmp, crop=c, landmarks=lm))
        elif miss is not None:
            atomic_write_bytes(miss, f"{key}\n".encode())
    info = {"subset": name, "detector": tag, "num_images": n, "num_detected": int(valid.sum()),
            "detection_rate": float(valid.mean()) if n else None, "num_from_cache": from_cache,
            "missed": [photos[i][0] for i in np.flatnonzero(~valid)]}
    return AlignedSet([p[0] for p in photos], [p[2] for p in photos], crops, lms, valid, info)


def aligned_crops(root: Path, paths: Sequence[Path], *, size: int = 112, name: str = "aligned") -> AlignedSet:
    """Already-aligned crops (``aligned112``): read as given, five points = the template."""
    from maskinv.utils.images import decode_image

    n = len(paths)
    crops = np.zeros((n, size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = decode_image(Path(p).read_bytes(), str(p))
        if img.shape[:2] != (size, size):
            raise DataFormatError(f"{p}: expected an aligned {size}x{size} crop, got {img.shape[1]}x{img.shape[0]}")
        crops[i] = img
    keys = [Path(p).relative_to(root).as_posix() for p in paths]
    info = {"subset": name, "detector": None, "aligned": True, "num_images": n, "num_detected": n,
            "detection_rate": 1.0 if n else None, "missed": []}
    return AlignedSet(keys, [Path(p).parent.name for p in paths], crops,
                      np.tile(_template(size)[None], (n, 1, 1)), np.ones(n, bool), info)


def mask_seed_index(key: str, draw: int) -> int:
    """The per-image index fed to :func:`maskinv.masks.image_rng` (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{key}|{draw}".encode()).digest()[:8], "big")


def mask_crops(crops: np.ndarray, landmarks: np.ndarray, keys: Sequence[str], *, seed: int, draw: int = 0,
               renderer: str = "v1") -> np.ndarray:
    """A masked copy of each crop (``renderer`` v1 or mesh), its mask fixed by (seed, key, draw)."""
    from maskinv.masks import apply_mask, image_rng

    out = np.empty_like(crops)
    for i, key in enumerate(keys):
        out[i] = apply_mask(crops[i], landmarks[i], image_rng(seed, mask_seed_index(key, draw)), "random",
                            renderer=renderer).image
    return out

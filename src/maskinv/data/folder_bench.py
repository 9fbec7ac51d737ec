"""Benchmarks from image folders: align every unique image once, keep one drop list, write a ``.bin``.

A folder benchmark is ``root/<identity>/<image>`` (e.g. MFR2: ``Name/Name_0001.png``, 160×160
tight crops) plus, optionally, an LFW-style ``pairs.txt`` (:mod:`maskinv.data.pairs`).
:func:`prepare_folder_bench` detects and aligns each *unique* image once (or takes the images
as already aligned crops with ``aligned=True``). Images in which no face is found are either
dropped — with every pair that uses them — or replaced by a centre crop (``on_miss``); the
decision is made here, once per benchmark, so every model is scored on the same pairs.

Aligned crops and "no face" verdicts are cached under ``cache_dir`` keyed by the file's
sha256, the detector name and the crop size: re-running, or evaluating several models one
after another, reads the cache instead of detecting again.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.images import resize_images, resize_note
from maskinv.utils.naming import safe_name

__all__ = ["FolderBench", "prepare_folder_bench", "save_folder_bin", "center_crop", "default_detector"]

ON_MISS = ("drop", "center")


@dataclass
class FolderBench:
    """A prepared folder benchmark.

    ``images[k]`` is the aligned crop of ``paths[k]`` (``keys[k]`` = its path relative to
    ``root``, ``identities[k]`` = its folder name); ``valid[k]`` is False for an image with no
    face under ``on_miss="drop"`` (its crop is zeros and it takes part in no comparison).
    ``pairs`` (a :class:`~maskinv.data.pairs.PairList` or None) indexes ``images``.
    """

    root: Path
    name: str
    paths: list[Path]
    keys: list[str]
    identities: list[str]
    images: np.ndarray
    valid: np.ndarray
    missed: list[str]
    pairs: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pair_keep(self) -> np.ndarray:
        """Per pair line: True when both of its images are kept."""
        if self.pairs is None:
            return np.zeros(0, bool)
        return self.valid[self.pairs.first] & self.valid[self.pairs.second]

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images (2N, S, S, 3), issame (N,))`` of the kept pairs, in pairs-file order —
        exactly what :func:`maskinv.evaluate.protocols.evaluate_arrays` and ``save_bin`` take."""
        if self.pairs is None:
            raise ConfigError(f"{self.root}: this folder benchmark has no pair list (pairs.txt)")
        keep = self.pair_keep
        a, b = self.pairs.first[keep], self.pairs.second[keep]
        idx = np.empty(2 * a.size, np.int64)
        idx[0::2], idx[1::2] = a, b
        return self.images[idx], self.pairs.issame[keep].copy()


def default_detector() -> Any:
    """The detector :func:`maskinv.align.align_faces` uses when given ``None``.

    Resolved to an object here so its ``name`` keys the cache and the same object aligns.
    """
    from maskinv.align import resolve_detector

    return resolve_detector(None)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of ``image`` resized to ``size`` × ``size`` (the ``on_miss="center"`` fallback)."""
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = image[y0:y0 + s, x0:x0 + s]
    if s == size:
        return np.ascontiguousarray(sq)
    return resize_images(sq[None], size)[0]  # the one resize rule


def _all_images(root: Path) -> list[Path]:
    from maskinv.data.folders import scan_image_folder

    _, paths, _ = scan_image_folder(root)
    return list(paths)


def _cache_paths(cache_dir: Path, tag: str, sha: str) -> tuple[Path, Path]:
    d = cache_dir / tag / sha[:2]
    return d / f"{sha}.png", d / f"{sha}.noface"


def prepare_folder_bench(
    root: str | os.PathLike,
    pairs: str | os.PathLike | None = None,
    *,
    aligned: bool = False,
    detector: Any = None,
    size: int = 112,
    on_miss: Literal["drop", "center"] = "drop",
    cache_dir: str | os.PathLike | None = None,
    all_images: bool | None = None,
    progress: Callable[[str], None] | None = None,
    strict: bool = False,
) -> FolderBench:
    """Read, align and cache a folder benchmark.

    Args:
        root: image folder, one sub-folder per identity.
        pairs: LFW-style pairs file; default ``root/pairs.txt`` when it exists, else none.
        aligned: the images are already ArcFace-aligned crops: no detection; crops of another
            size than ``size`` are resized (counted in ``info["num_resized"]``, with a warning).
        detector: name or :class:`~maskinv.align.FaceDetector`; None = the package default.
        size: side of the aligned crops.
        on_miss: image without a detected face -> ``"drop"`` (it and every pair using it) or
            ``"center"`` (a centre crop resized to ``size``). Either way it is listed in
            ``missed``.
        cache_dir: where aligned crops / no-face verdicts are cached (None: no cache).
        all_images: take every image of every identity folder, not just those the pair list
            uses (needed by the probe/reference protocol). Default: True without a pair list.
        progress: called with a short status line now and then (e.g. ``print``).
        strict: stop at the first file that cannot be read or decoded (:class:`DataFormatError`);
            by default it is dropped with every pair that uses it and listed in ``info["unreadable"]``
            (path and reason) and in ``missed``.
    """
    from maskinv.data.pairs import read_pairs
    from maskinv.utils.images import decode_image, encode_image
    from maskinv.utils.io import atomic_write_bytes

    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: image folder not found")
    if on_miss not in ON_MISS:
        raise ConfigError(f"on_miss must be one of {', '.join(ON_MISS)}, got {on_miss!r}")
    if size < 16:
        raise ConfigError(f"size must be >= 16, got {size}")
    if pairs is None and (root / "pairs.txt").is_file():
        pairs = root / "pairs.txt"
    plist = read_pairs(pairs, root) if pairs is not None else None
    if all_images is None:
        all_images = plist is None
    paths: list[Path] = list(plist.images) if plist is not None else []
    if all_images:
        known = {p.resolve() for p in paths}
        paths += [p for p in _all_images(root) if p.resolve() not in known]
    if not paths:
        raise DataFormatError(f"{root}: no images")

    det = None
    if aligned:
        tag = f"aligned-{size}"
    else:
        from maskinv.align import get_detector

        det = default_detector() if detector is None else (get_detector(detector) if isinstance(detector, str) else detector)
        tag = f"{safe_name(getattr(det, 'name', type(det).__name__), fallback='detector', per_char=True)}-{size}"
    cache = Path(cache_dir) if cache_dir is not None else None

    n = len(paths)
    images = np.zeros((n, size, size, 3), np.uint8)
    valid = np.ones(n, bool)
    missed: list[str] = []
    unreadable: list[dict[str, str]] = []
    keys = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in paths]
    identities = [p.parent.name for p in paths]
    resized = cached = 0
    resized_sizes: list[tuple[int, int]] = []
    fingerprint = hashlib.sha256()  # the benchmark's identity: relative paths + file contents + pair list
    if plist is not None:
        fingerprint.update(plist.path.read_bytes())
    for k, path in enumerate(paths):
        if progress is not None and k and k % 200 == 0:
            progress(f"{root.name}: {k}/{n} images ({cached} from cache, {len(missed)} without a face)")
        try:
            data = path.read_bytes()
            img = decode_image(data, str(path)) if aligned else None
        except (DataFormatError, OSError) as e:
            if strict:
                raise DataFormatError(f"{e} (--strict stops at the first bad file)") from e
            reason = str(e).replace(f"{path}: ", "", 1) if isinstance(e, DataFormatError) else (e.strerror or str(e))
            unreadable.append({"image": keys[k], "reason": reason})
            missed.append(keys[k])
            valid[k] = False
            fingerprint.update(f"{keys[k]}\0unreadable\n".encode())
            continue
        sha = hashlib.sha256(data).hexdigest()
        fingerprint.update(f"{keys[k]}\0{sha}\n".encode())
        if aligned:
            if img.shape[:2] != (size, size):
                resized_sizes.append((img.shape[1], img.shape[0]))
                img = center_crop(img, size)  # a square crop is just resized
                resized += 1
            images[k] = img
            continue
        crop_file = noface_file = None
        if cache is not None:
            crop_file, noface_file = _cache_paths(cache, tag, sha)
            if crop_file.is_file():
                images[k] = decode_image(crop_file.read_bytes(), str(crop_file))
                cached += 1
                continue
        try:
            img = decode_image(data, str(path))
        except DataFormatError as e:
            if strict:
                raise DataFormatError(f"{e} (--strict stops at the first bad file)") from e
            unreadable.append({"image": keys[k], "reason": str(e).replace(f"{path}: ", "", 1)})
            missed.append(keys[k])
            valid[k] = False
            continue
        found = None
        if noface_file is not None and noface_file.is_file():
            cached += 1
        else:
            from maskinv.align import align_faces

            faces = align_faces(img, det, size=size, on_no_face="empty", max_faces=1, name=str(path))
            found = faces[0].crop if faces else None
            if crop_file is not None:
                if found is not None:
                    atomic_write_bytes(crop_file, encode_image(found, "png"))
                else:
                    atomic_write_bytes(noface_file, f"{keys[k]}\n".encode())
        if found is not None:
            images[k] = found
            continue
        missed.append(keys[k])
        if on_miss == "center":
            images[k] = center_crop(img, size)
        else:
            valid[k] = False
    if resized:
        resize_note(resized_sizes, size, total=n)  # the one note, pointing at our caller

    name = root.resolve().name or "folder"
    info: dict[str, Any] = {
        "format": "folder",
        "path": str(root.resolve()),
        "sha256": fingerprint.hexdigest(),
        "pairs_file": str(Path(pairs).resolve()) if pairs is not None else None,
        "aligned": bool(aligned),
        "detector": None if aligned else tag.rsplit("-", 1)[0],
        "image_size": [size, size],
        "on_miss": on_miss,
        "num_images": n,
        "num_identities": len(set(identities)),
        "num_missed": len(missed),
        "missed": list(missed),
        "num_unreadable": len(unreadable),
        "unreadable": unreadable,
        "num_images_dropped": int((~valid).sum()),
        "num_resized": resized,
        "num_from_cache": cached,
    }
    bench = FolderBench(root=root, name=name, paths=paths, keys=keys, identities=identities, images=images,
                        valid=valid, missed=missed, pairs=plist, info=info)
    if plist is not None:
        keep = bench.pair_keep
        info.update(num_pair_lines=len(plist), num_pairs=int(keep.sum()), num_pairs_dropped=int((~keep).sum()),
                    num_genuine=int(plist.issame[keep].sum()), pairs_header=list(plist.header) if plist.header else None)
    if progress is not None:
        bad = f", {len(unreadable)} unreadable (dropped)" if unreadable else ""
        progress(f"{name}: {n} images, {len(missed) - len(unreadable)} without a face ({on_miss}){bad}, "
                 f"{cached} from cache")
    return bench


def save_folder_bin(bench: FolderBench, out_path: str | os.PathLike) -> dict[str, Any]:
    """Write the kept pairs of ``bench`` as a verification ``.bin`` (PNG: lossless, so the
    ``.bin`` decodes to exactly :meth:`FolderBench.pair_arrays`). Returns the bench summary."""
    from maskinv.data.bins import save_bin
    from maskinv.utils.images import encode_image

    images, issame = bench.pair_arrays()
    if issame.size == 0:
        raise DataFormatError(f"{bench.root}: every pair was dropped (no face in its images); nothing to write")
    # each unique image is encoded once even if many pairs use it
    keep = bench.pair_keep
    idx = np.empty(2 * int(keep.sum()), np.int64)
    idx[0::2], idx[1::2] = bench.pairs.first[keep], bench.pairs.second[keep]
    encoded: dict[int, bytes] = {}
    blobs = []
    for i in idx.tolist():
        if i not in encoded:
            encoded[i] = encode_image(bench.images[i], "png")
        blobs.append(encoded[i])
    save_bin(out_path, blobs, issame)
    return dict(bench.info, bin=str(Path(out_path)))

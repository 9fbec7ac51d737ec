"""SynthFaces data sets on disk: InsightFace-layout RecordIO, landmarks, a verification bin.

Images are rendered by ``(seed, identity, image_index)`` jobs, optionally in a process
pool; output bytes depend only on the arguments (never on ``workers``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from maskinv.utils.images import encode_image, image_grid

from .identity import _PAIR_TAG, FaceIdentity, _difficulty, sample_identity
from .render import _image_rng, encode_jpeg, render_face, render_faces

__all__ = ["generate_dataset", "preview_grid", "pair_identities", "split_pair_identities",
           "PAIR_IDENTITIES_SUFFIX"]

_SELECT_TAG = 0x5E1  # pair stream of the validation (selection) split


def _render_job(args: tuple) -> tuple[bytes, np.ndarray]:
    seed, ident, j, size, difficulty = args
    face = _ident_cached(seed, ident)
    img, lm, info = render_face(face, _image_rng(seed, ident, j), size=size, difficulty=difficulty)
    return encode_jpeg(img, info["jpeg_quality"]), lm


_IDENT_CACHE: dict[tuple[int, int], FaceIdentity] = {}


def _ident_cached(seed: int, i: int) -> FaceIdentity:
    key = (seed, i)
    f = _IDENT_CACHE.get(key)
    if f is None:
        if len(_IDENT_CACHE) > 4096:
            _IDENT_CACHE.clear()
        f = _IDENT_CACHE[key] = sample_identity(seed, i)
    return f


def _map(jobs: list[tuple], workers: int, progress: bool, desc: str):
    it: Iterable
    if workers > 1 and len(jobs) > 64:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(workers)
        it = pool.imap(_render_job, jobs, chunksize=32)
    else:
        pool = None
        it = map(_render_job, jobs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(jobs), desc=desc, unit="img", leave=False)
    try:
        for r in it:
            yield r
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


#: ``<bin stem>_identities.npy`` beside a pair ``.bin``: (N, 2) int64, the identity of each pair's two images
#: (:func:`maskinv.evaluate.benchmarks.load_benchmark` reads it; the bootstrap resamples identities with it)
PAIR_IDENTITIES_SUFFIX = "_identities.npy"


def pair_identities(seed: int, tag: int, first: int, n_ids: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """The identities of the pairs of :func:`_write_pairs` without rendering anything: ``(ids (N, 2) int64,
    issame (N,) bool)``; pair ``p`` is genuine iff ``p`` is even (alternating: every contiguous fold
    stays balanced)."""
    prng = np.random.default_rng([int(seed), tag])
    ids = np.empty((n_pairs, 2), np.int64)
    issame = np.zeros(n_pairs, bool)
    for p in range(n_pairs):
        genuine = p % 2 == 0
        a = int(prng.integers(0, n_ids))
        b = a if genuine else int((a + prng.integers(1, n_ids)) % n_ids)
        issame[p] = genuine
        ids[p] = (first + a, first + b)
    return ids, issame


def split_pair_identities(split: str, *, seed: int, identities: int, val_identities: int, val_pairs: int = 0,
                          select_identities: int = 0, select_pairs: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The pair identities of a split of :func:`generate_dataset`: ``"val"`` (``synth_val.bin``, the
    test pairs) or ``"select"`` (``synth_select.bin``, the validation pairs)."""
    if split == "val":
        return pair_identities(seed, _PAIR_TAG, identities, val_identities, val_pairs)
    if split == "select":
        return pair_identities(seed, _SELECT_TAG, identities + val_identities, select_identities, select_pairs)
    raise ValueError(f"split_pair_identities: unknown split {split!r} (val or select)")


def _write_pairs(out: Path, name: str, seed: int, tag: int, first: int, n_ids: int, n_pairs: int, size: int,
                 difficulty, workers: int, progress: bool) -> np.ndarray:
    """``{name}.bin`` (+ landmarks): ``n_pairs`` pairs of identities ``first .. first+n_ids-1``,
    alternately genuine and impostor; returns ``issame``."""
    from maskinv.data.bins import save_bin
    from maskinv.utils.io import atomic_path

    ids, issame = pair_identities(seed, tag, first, n_ids, n_pairs)
    vjobs = []
    for p in range(n_pairs):
        # image indices of held-out identities are unique per pair slot
        vjobs.append((seed, int(ids[p, 0]), 2 * p, size, difficulty))
        vjobs.append((seed, int(ids[p, 1]), 2 * p + 1, size, difficulty))
    vimgs, vlms = [], np.empty((2 * n_pairs, 68, 2), np.float32)
    for i, (data, lm) in enumerate(_map(vjobs, workers, progress, name)):
        vimgs.append(data)
        vlms[i] = lm
    save_bin(out / f"{name}.bin", vimgs, issame)
    with atomic_path(out / f"{name}{PAIR_IDENTITIES_SUFFIX}") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, ids)
    with atomic_path(out / f"{name}_landmarks.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vlms)
    return issame


def generate_select_split(out_dir: str | os.PathLike, *, seed: int, identities: int, val_identities: int,
                          select_identities: int, select_pairs: int, size: int = 112,
                          difficulty: str | float = "default", workers: int = 1, progress: bool = False) -> Path:
    """Only the validation split of :func:`generate_dataset` with the same arguments: the same bytes
    as its ``synth_select.bin`` (+ landmarks), written into ``out_dir`` without the training set.
    Returns the ``.bin`` path. (The adapt row of the study selects its step on it.)"""
    from maskinv.errors import ConfigError

    for name, v, lo in (("identities", identities, 1), ("val_identities", val_identities, 0),
                        ("select_identities", select_identities, 2), ("select_pairs", select_pairs, 2),
                        ("size", size, 16), ("workers", workers, 1)):
        if int(v) != v or v < lo:
            raise ConfigError(f"generate_select_split: {name} must be an integer >= {lo}, got {v!r}")
    _difficulty(difficulty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_pairs(out, "synth_select", seed, _SELECT_TAG, identities + val_identities, select_identities,
                 select_pairs, size, difficulty, workers, progress)
    return out / "synth_select.bin"


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    identities: int,
    images_per_identity: int,
    seed: int,
    size: int = 112,
    val_identities: int = 0,
    val_pairs: int = 0,
    select_identities: int = 0,
    select_pairs: int = 0,
    difficulty: str | float = "default",
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Write a SynthFaces training set and (optionally) a held-out verification bin.

    Files in ``out_dir``: ``train.rec``/``train.idx``/``property`` (InsightFace layout,
    record 0 header, keys ``1..identities*images_per_identity`` images labelled with the
    identity, then one identity record per class), ``landmarks.npy`` (float32
    ``(max_key + 1, 68, 2)`` indexed by record key, NaN for non-image records), and when
    ``val_pairs > 0``: ``synth_val.bin`` (pairs of held-out identities
    ``identities .. identities+val_identities-1``, alternately genuine and impostor) with
    ``synth_val_landmarks.npy`` ((2 * val_pairs, 68, 2)), plus ``synth_meta.json``. When
    ``select_pairs > 0`` also ``synth_select.bin`` (+ landmarks): a validation split for choosing
    settings, of ``select_identities`` further identities (disjoint from training and from
    ``synth_val.bin``); without it the output is unchanged.
    Output bytes depend only on the arguments (not on ``workers``).  Returns a summary dict.
    """
    from maskinv.data.recordio import write_insightface_recordio
    from maskinv.errors import ConfigError
    from maskinv.utils.io import atomic_path, atomic_write_json

    for name, v, lo in (("identities", identities, 1), ("images_per_identity", images_per_identity, 1), ("size", size, 16),
                        ("val_identities", val_identities, 0), ("val_pairs", val_pairs, 0),
                        ("select_identities", select_identities, 0), ("select_pairs", select_pairs, 0), ("workers", workers, 1)):
        if int(v) != v or v < lo:
            raise ConfigError(f"generate_dataset: {name} must be an integer >= {lo}, got {v!r}")
    if val_pairs and val_identities < 2:
        raise ConfigError("generate_dataset: val_pairs needs val_identities >= 2 (impostor pairs need two identities)")
    if select_pairs and select_identities < 2:
        raise ConfigError("generate_dataset: select_pairs needs select_identities >= 2 (impostor pairs need two identities)")
    _difficulty(difficulty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = identities * images_per_identity
    jobs = [(seed, i, j, size, difficulty) for i in range(identities) for j in range(images_per_identity)]
    lms = np.full((n + 1 + identities, 68, 2), np.nan, np.float32)

    def items():
        for key, (data, lm) in enumerate(_map(jobs, workers, progress, "synth train"), start=1):
            lms[key] = lm
            yield (key - 1) // images_per_identity, data

    write_insightface_recordio(out, items(), num_classes=identities, image_size=size)
    with atomic_path(out / "landmarks.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, lms)
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "train_rec": str(out / "train.rec"),
        "landmarks": str(out / "landmarks.npy"),
        "num_images": n,
        "num_classes": identities,
        "image_size": size,
        "seed": seed,
        "difficulty": difficulty,
    }
    if val_pairs:
        issame = _write_pairs(out, "synth_val", seed, _PAIR_TAG, identities, val_identities, val_pairs, size,
                              difficulty, workers, progress)
        summary.update(val_bin=str(out / "synth_val.bin"), val_landmarks=str(out / "synth_val_landmarks.npy"),
                       num_pairs=int(val_pairs), num_genuine=int(issame.sum()), val_identities=int(val_identities))
    if select_pairs:
        # a second held-out split for choosing settings: identities after the test ones, another pair stream
        issame = _write_pairs(out, "synth_select", seed, _SELECT_TAG, identities + val_identities, select_identities,
                              select_pairs, size, difficulty, workers, progress)
        summary.update(select_bin=str(out / "synth_select.bin"), select_landmarks=str(out / "synth_select_landmarks.npy"),
                       select_num_pairs=int(select_pairs), select_num_genuine=int(issame.sum()),
                       select_identities=int(select_identities))
    meta = {"generator": "SynthFaces", "version": 1, **{k: v for k, v in summary.items() if k != "out_dir"},
            "images_per_identity": images_per_identity, "landmarks_convention": "68 iBUG points, output pixel coordinates"}
    atomic_write_json(out / "synth_meta.json", meta)
    return summary


def preview_grid(path: str | os.PathLike, *, seed: int = 0, identities: int = 8, images_per_identity: int = 8,
                 size: int = 112, difficulty: str | float = "default", landmarks: bool = False) -> Path:
    """Write a PNG grid: one row per identity, one column per image (optionally landmarks)."""
    import cv2

    from maskinv.utils.io import atomic_write_bytes

    ids = np.repeat(np.arange(identities), images_per_identity)
    idx = np.tile(np.arange(images_per_identity), identities)
    imgs, lms = render_faces(ids, seed=seed, image_indices=idx, size=size, difficulty=difficulty, jpeg=True)
    if landmarks:
        imgs = imgs.copy()
        for im, lm in zip(imgs, lms):
            for q in lm:
                cv2.circle(im, (int(round(q[0] * 4)), int(round(q[1] * 4))), 4, (0, 255, 0), -1, cv2.LINE_AA, 2)
    atomic_write_bytes(Path(path), encode_image(image_grid(imgs, images_per_identity), "png"))
    return Path(path)

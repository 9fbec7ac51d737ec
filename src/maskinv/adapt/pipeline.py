"""``maskinv adapt``: make a pretrained face model mask-invariant from unlabeled photos.

Not a second training loop: a config of the one trainer (:func:`maskinv.train.trainer.run_training`)
— no margin head (``head.name: none``), labels ignored (``data.labels: ignore``), the student a
copy of the teacher (``model.init_from_teacher``) with BatchNorm statistics frozen
(``model.freeze_bn_stats``), masks with probability ``masks.prob`` on the student's view, and the
template distillation loss only (``kd.weight`` · MSE of normalised embeddings).

* :func:`prepare_images` — a folder tree of photos, detected and aligned once into a RecordIO
  cache (``RUN_DIR/data``; each crop's photo and face box in ``sources.json`` for teachers that
  align their own way), or already aligned crops (``aligned=True``), or an existing RecordIO
  folder (its labels are ignored).
* :func:`~maskinv.adapt.config.adapt_config` (:mod:`.config`) — the run config for a teacher (torch
  file: copied; ONNX or ``dlib``: a student of ``model.name`` with the teacher's embedding size,
  templates cached by the pre-pass), from the shipped defaults ``adapt.yaml``.
* :func:`adapt_model` — both, then :func:`run_training` (resume, checkpoints, exports as ``train``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from maskinv.errors import ConfigError, DataFormatError, MaskinvError

from maskinv.train.config import Overrides, load_config
from maskinv.train.config_overrides import override_items

# ADAPT_DEFAULTS and IN_MEMORY_LIMIT: names of the old maskinv.train.adapt (now an alias of this module)
from .config import ADAPT_DEFAULTS, IN_MEMORY_LIMIT, adapt_config, teacher_info  # noqa: F401

#: Below this many faces a student trained from scratch (ONNX or dlib teacher) gets a warning: a face
#: recognition network learns from hundreds of thousands of photos (the paper: MS1MV2, 5.8 M); a few
#: thousand unlabeled photos can adapt a copied model, not teach a new one.
MIN_SCRATCH_PHOTOS = 10_000
MANIFEST = "manifest.json"


def _log(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


# ----------------------------------------------------------------------------- images -> RecordIO
def _is_recordio(p: Path) -> bool:
    return p.is_file() and p.suffix == ".rec" or p.is_dir() and any(p.glob("*.rec"))


def scan_photos(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (any depth, hidden entries skipped), sorted by relative path."""
    from maskinv.utils.images import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(2, "No such directory", str(root))
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not files:
        raise DataFormatError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) under this folder")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _photos_fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def prepare_images(images: str | os.PathLike, data_dir: str | os.PathLike, *, aligned: bool = False,
                   detector: Any = None, size: int = 112, log: Callable[[str], None] | None = None,
                   strict: bool = False) -> Path:
    """The RecordIO folder to adapt on (see module doc); photos are aligned once into ``data_dir``.

    A RecordIO folder (or ``.rec`` file) is used in place. Photos whose detector finds no face
    are listed in ``data_dir/manifest.json`` (``no_face``) and reported through ``log``; so are
    files that cannot be read (``skipped``: photo and reason; ``strict``: the first one raises
    :class:`DataFormatError` instead). Aligned crops of another size than ``size`` are resized to
    it (one note through ``log``). A set with no face at all raises :class:`DataFormatError`. A ``data_dir`` built from other photos
    or settings is refused (use another run folder).
    """
    src = Path(images)
    if not src.exists():
        raise FileNotFoundError(2, "No such file or directory", str(src))
    if _is_recordio(src):
        from maskinv.data.recordio import RecordIODataset

        root = src.parent if src.is_file() else src
        n = len(RecordIODataset(root))  # readable, and says how many images (labels ignored)
        _log(log, f"[adapt] {n} images from RecordIO {root} (labels ignored)")
        return root
    files = scan_photos(src)
    if not aligned:
        from maskinv.align import resolve_detector

        detector = resolve_detector(detector)  # the one that really runs (MTCNN, else dlib): recorded
    det_name = None if aligned else getattr(detector, "name", type(detector).__name__)
    want = {"format": "maskinv-adapt-data", "source": str(src.resolve()), "aligned": bool(aligned),
            "detector": det_name, "size": int(size),
            "photos": _photos_fingerprint(src, files)}
    out = Path(data_dir)
    if (out / MANIFEST).is_file():
        have = json.loads((out / MANIFEST).read_text())
        if {k: have.get(k) for k in want} != want:
            diff = [k for k in want if have.get(k) != want[k]]
            raise DataFormatError(f"{out}: already holds images aligned from other photos or settings "
                                  f"({', '.join(diff)}); use a new run folder")
        _log(log, f"[adapt] reusing {have['num_images']} aligned faces in {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        info = _write_faces(src, files, tmp, aligned=aligned, detector=detector, size=size, log=log, strict=strict)
        from maskinv.utils.io import atomic_write_json

        atomic_write_json(tmp / MANIFEST, {**want, **info})
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_faces(src: Path, files: list[Path], out: Path, *, aligned: bool, detector: Any, size: int,
                 log: Callable[[str], None] | None, strict: bool = False) -> dict[str, Any]:
    """Write ``train.rec/.idx`` (plain layout, label -1) + ``sources.json``; returns manifest fields."""
    import time

    from maskinv.data.recordio import IRHeader, RecordWriter, pack_record
    from maskinv.utils.images import decode_image, encode_image
    from maskinv.utils.io import atomic_write_json

    from maskinv.train.external_teacher import SOURCES_FORMAT

    det = None
    if not aligned:
        from maskinv.align import resolve_detector

        det = resolve_detector(detector)  # prepare_images passes the one it resolved (and recorded)
    records, no_face, skipped, resized = [], [], [], []
    t0 = time.perf_counter()
    with RecordWriter(out / "train.rec", out / "train.idx") as wr:
        for n, path in enumerate(files):
            rel = path.relative_to(src).as_posix()
            try:
                data = path.read_bytes()
                img = decode_image(data, str(path))
                if aligned and img.shape[0] != img.shape[1]:
                    raise DataFormatError(f"{path}: an aligned crop must be square, got {img.shape[1]}x{img.shape[0]}")
            except (DataFormatError, OSError) as e:
                if strict:
                    raise DataFormatError(f"{e} (--strict stops at the first bad file)") from e
                skipped.append({"photo": rel, "reason": str(e).replace(f"{path}: ", "", 1)})
                continue
            if aligned:
                if img.shape[0] != size:
                    from maskinv.models.embedding import resize_images

                    resized.append(img.shape[0])
                    img = resize_images(img[None], size)[0]
                    data = encode_image(img, "jpg", quality=95)
                payload, box = data, [0, 0, img.shape[1] - 1, img.shape[0] - 1]
            else:
                from maskinv.align import align_faces

                faces = align_faces(img, det, size=size, on_no_face="empty", max_faces=1, name=str(path))
                if not faces:
                    no_face.append(rel)
                    continue
                payload = encode_image(faces[0].crop, "jpg", quality=95)
                box = [round(float(v), 2) for v in faces[0].face.box]
            key = len(records)
            wr.write(key, pack_record(IRHeader(0, -1.0, key, 0), payload))
            records.append({"photo": rel, "box": box})
            if log is not None and (n + 1) % 200 == 0:
                log(f"[adapt] aligned {n + 1}/{len(files)} photos ({time.perf_counter() - t0:.0f} s)")
    if skipped:
        _log(log, f"[adapt] skipped {len(skipped)} unreadable file(s), listed in {MANIFEST}: "
             + "; ".join(f"{r['photo']}: {r['reason']}" for r in skipped[:3]) + ("; ..." if len(skipped) > 3 else ""))
    if resized:
        sides = sorted(set(resized))
        _log(log, f"[adapt] note: resized {len(resized)} aligned crops "
             f"({', '.join(f'{s}x{s}' for s in sides[:3])}) to the teacher's input size {size}x{size}")
    if not records:
        if skipped and len(skipped) == len(files):
            raise DataFormatError(f"{src}: none of its {len(files)} files could be read")
        raise DataFormatError(f"{src}: no face found in any of its {len(files)} photos")
    atomic_write_json(out / "sources.json", {"format": SOURCES_FORMAT, "root": str(src.resolve()), "records": records})
    secs = time.perf_counter() - t0
    _log(log, f"[adapt] {len(records)} faces from {len(files)} photos in {secs:.1f} s"
         + (f"; no face in {len(no_face)} (listed in {MANIFEST})" if no_face else ""))
    return {"num_images": len(records), "no_face": no_face, "skipped": skipped, "resized": len(resized),
            "align_seconds": round(secs, 2)}


# ----------------------------------------------------------------------------- run
def adapt_model(teacher: str, images: str | os.PathLike | None, out_dir: str | os.PathLike, *, aligned: bool = False,
                detector: Any = None, max_steps: int | None = None, resume: bool = False,
                overrides: Overrides = None, log: Callable[[str], None] | None = None,
                val: str | os.PathLike | None = None, eval_every: int = 0, tolerance: float = 1.0,
                patience: int = 3, strict: bool = False) -> dict[str, Any]:
    """Adapt ``teacher`` on ``images`` into ``out_dir`` (the ``maskinv train`` run-folder contract);
    returns the trainer's summary plus ``data`` (the RecordIO folder used).

    ``resume``: continue ``out_dir`` from its config and newest checkpoint (``teacher``/``images``
    may then be None; ``overrides`` still apply). ``val`` + ``eval_every``: validation while
    adapting (:mod:`.select`): U-U/M-U on ``val`` every ``eval_every`` steps, early stop
    after ``patience`` evaluations without a better M-U, the best step whose U-U is within
    ``tolerance`` points of the teacher's exported as ``backbone.pt``. ``strict``: stop at the first
    unreadable photo instead of skipping it.

    A new run that fails (bad input, a student that cannot learn) removes what it wrote: the run
    folder when it made it, else the files it added.
    """
    from maskinv.train.trainer import run_training

    out = Path(out_dir)
    if val is not None:
        from .select import train_with_selection

        def run_training(cfg, out, *, max_steps, resume):  # noqa: F811 - the same run, in validated chunks
            return train_with_selection(cfg, out, teacher=cfg.teacher.path, val=str(val), eval_every=eval_every,
                                        tolerance=tolerance, patience=patience, max_steps=max_steps,
                                        resume=resume, log=log)
    if resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {out}: no config.yaml (not a run folder)")
        cfg = load_config(saved, overrides)
        if teacher is not None and str(teacher) != cfg.teacher.path:
            raise ConfigError(f"--resume {out}: the run adapts teacher {cfg.teacher.path}, not {teacher}")
        return {**run_training(cfg, out, max_steps=max_steps, resume=True), "data": cfg.data.path}
    if teacher is None or images is None:
        raise ConfigError("adapt: give --teacher and --images (or --resume RUN_DIR)")
    arch = next((v for k, v, _ in reversed(override_items(overrides)) if k == "teacher.name"), None)
    info = teacher_info(str(teacher), str(arch) if arch else None)
    before = set(out.iterdir()) if out.is_dir() else None
    try:
        data = prepare_images(images, out / "data", aligned=aligned, detector=detector, size=info["input_size"],
                              log=log, strict=strict)
        cfg = adapt_config(str(teacher), data, overrides=overrides, info=info)
        scratch = info["external"] and not cfg.model.init_from_teacher and not cfg.model.init
        _log(log, f"[adapt] teacher {teacher} ({info['embedding_size']}-d, "
             f"{'templates cached once, student ' + cfg.model.name + ' from scratch' if scratch else 'student = copy'})")
        n = _num_images(data)
        if scratch and n is not None and n < MIN_SCRATCH_PHOTOS:
            _log(log, f"[adapt] warning: {n} photos cannot train a face model from scratch (a student that "
                      f"is not a copy needs at least {MIN_SCRATCH_PHOTOS:,}, better hundreds of thousands); "
                      f"adapting works from a teacher the student can copy: a torch model (.pt/.pth) or --teacher sface")
        return {**run_training(cfg, out, max_steps=max_steps, resume=False), "data": str(data)}
    except BaseException as e:
        if isinstance(e, (MaskinvError, OSError)):
            _remove_new(out, before)
        raise


def _num_images(data: str | os.PathLike) -> int | None:
    try:
        from maskinv.data.recordio import RecordIODataset

        return len(RecordIODataset(data))
    except (DataFormatError, OSError):
        return None


def _remove_new(out: Path, before: set[Path] | None) -> None:
    """Undo a failed new run: remove ``out`` if it did not exist (or was empty), else what was added."""
    if not out.exists():
        return
    if not before:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in set(out.iterdir()) - before:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

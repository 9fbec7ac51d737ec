"""Image folder <-> InsightFace RecordIO (``maskinv data pack`` / ``maskinv data unpack``).

Packing keeps JPEG bytes as they are (no second lossy pass) and re-encodes any other
format as JPEG; unpacking writes every record's bytes unchanged under an extension
sniffed from them, so ``unpack`` then ``pack`` reproduces the labels and the JPEG bytes.

RecordIO stores integer labels only: ``pack`` writes the identity names beside the records as
``labels.json`` (``{"0": "alice", "1": "bob", ...}``, label -> folder name); ``data info``
shows them and ``unpack`` names the folders after them.
"""
from __future__ import annotations

import os
from pathlib import Path

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.images import decode_image, encode_image, sniff_image_format

__all__ = ["pack_image_folder", "unpack_recordio", "read_label_names", "LABELS_FILE"]

LABELS_FILE = "labels.json"


def _labels_path(rec: str | os.PathLike) -> Path:
    p = Path(rec)
    return (p.parent if p.suffix == ".rec" else p) / LABELS_FILE


def read_label_names(rec: str | os.PathLike, num_classes: int | None = None) -> dict[int, str] | None:
    """``{label: name}`` from ``labels.json`` beside a RecordIO set (None when there is none).

    Names must be usable as folder names (``unpack`` creates them) and, with ``num_classes``,
    cover labels ``0 .. num_classes - 1``; otherwise :class:`DataFormatError` naming the file."""
    import json

    path = _labels_path(rec)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a label -> name JSON object ({exc})") from None
    if not isinstance(raw, dict):
        raise DataFormatError(f"{path}: expected a JSON object label -> name")
    names: dict[int, str] = {}
    for k, v in raw.items():
        if not (isinstance(k, str) and k.isdigit() and isinstance(v, str)) or v in ("", ".", "..") \
                or "/" in v or "\\" in v or "\0" in v:
            raise DataFormatError(f"{path}: entry {k!r}: {v!r} is not a label -> folder name")
        names[int(k)] = v
    if len(set(names.values())) != len(names):
        raise DataFormatError(f"{path}: two labels share a name")
    if num_classes is not None and sorted(names) != list(range(num_classes)):
        raise DataFormatError(f"{path}: names {len(names)} labels, the records have {num_classes} classes")
    return names


def pack_image_folder(image_folder: str | os.PathLike, out_dir: str | os.PathLike, *, quality: int = 95,
                      progress: bool = False, strict: bool = False) -> dict:
    """Pack ``image_folder/<identity>/<image>`` into ``out_dir/train.rec/.idx`` + ``property``.

    Labels follow :class:`~maskinv.data.folders.ImageFolderDataset` (sorted identity
    folders).  Every image is decoded once to validate it: a file that cannot be read or
    decoded is skipped and listed under ``skipped`` (``strict``: :class:`DataFormatError`
    naming it instead). All images must share the first readable image's size (a RecordIO
    set has one image size), else :class:`DataFormatError` names the file.  Non-JPEG files
    are encoded as JPEG at ``quality`` (1..100). Writes ``labels.json`` (label -> identity
    folder name) beside the records. On an error nothing is left behind (an output folder
    this call created is removed). Returns ``{"rec", "num_images", "num_classes",
    "image_size": [h, w], "labels", "skipped": [{"image", "reason"}]}``.
    """
    import shutil

    from maskinv.data.folders import ImageFolderDataset
    from maskinv.data.recordio import write_insightface_recordio

    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"quality must be in 1..100, got {quality}")
    ds = ImageFolderDataset(image_folder)
    root = Path(image_folder)
    skipped: list[dict[str, str]] = []

    def read(i: int):
        path = ds.paths[i]
        try:
            data, label = ds.read_encoded(i)
            return data, label, decode_image(data, str(path))
        except (DataFormatError, OSError) as e:
            if strict:
                raise DataFormatError(f"{e} (--strict stops at the first bad file)") from e
            rel = Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else str(path)
            skipped.append({"image": rel, "reason": str(e).replace(f"{path}: ", "", 1)
                            if isinstance(e, DataFormatError) else (e.strerror or str(e))})
            return None

    # the image size is known only after a decode: take it from the first readable image
    first = next((r for r in (read(i) for i in range(len(ds))) if r is not None), None)
    if first is None:
        raise DataFormatError(f"{image_folder}: none of its {len(ds)} images could be read")
    size = first[2].shape[:2]
    skipped.clear()  # the loop below reads (and reports) every image again
    written = 0

    def items():
        nonlocal written
        for i in range(len(ds)):
            r = read(i)  # validates every image and its size
            if r is None:
                continue
            data, label, img = r
            if img.shape[:2] != size:
                raise DataFormatError(f"{ds.paths[i]}: {img.shape[1]}x{img.shape[0]} differs from the first image "
                                      f"({size[1]}x{size[0]}); a RecordIO set has one image size")
            if sniff_image_format(data) != "jpg":
                data = encode_image(img, "jpg", int(quality))
            written += 1
            yield label, data

    out = Path(out_dir)
    before = set(out.iterdir()) if out.is_dir() else None
    try:
        rec = write_insightface_recordio(out_dir, items(), num_classes=ds.num_classes, image_size=size,
                                         progress=progress, total=len(ds))
        from maskinv.utils.io import atomic_write_json

        labels = _labels_path(rec)
        atomic_write_json(labels, {str(i): str(name) for i, name in enumerate(ds.classes)})
    except BaseException:
        if out.is_dir():
            if not before:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for p in set(out.iterdir()) - before:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise
    return {"rec": str(rec), "num_images": written, "num_classes": ds.num_classes,
            "image_size": [int(size[0]), int(size[1])], "labels": str(labels), "skipped": skipped}


def unpack_recordio(rec_dir: str | os.PathLike, out_dir: str | os.PathLike, *, progress: bool = False) -> dict:
    """Write every image record as ``out_dir/<label>/<key>.<ext>`` with its bytes unchanged;
    ``<label>`` is the identity's name when ``labels.json`` (written by ``pack``) is there.

    ``ext`` is sniffed from the bytes (``bin`` when unknown).  Files are written as temp +
    rename (never a truncated image) without an fsync per file (there may be millions).
    Returns ``{"out_dir", "num_images"}``.
    """
    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(rec_dir)
    names = read_label_names(ds.rec_path, ds.num_classes) or {}
    out = Path(out_dir)
    made: set[int] = set()
    indices = range(len(ds))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="unpack", unit="img", leave=False)
    for i in indices:
        data, label = ds.read_encoded(i)
        folder = names.get(label, str(label))
        if label not in made:
            (out / folder).mkdir(parents=True, exist_ok=True)
            made.add(label)
        target = out / folder / f"{int(ds.keys[i])}.{sniff_image_format(data)}"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return {"out_dir": str(out), "num_images": len(ds)}

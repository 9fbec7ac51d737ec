"""The InsightFace RecordIO layout: a face-image dataset over it, and a writer of it.

Record 0 is a header whose label is ``(first_identity_record, end)``; records
``1 .. first_identity_record-1`` are images labelled with their class id; records
``first_identity_record .. end-1`` hold one ``(start_img, end_img)`` range per class;
``property`` holds ``num_classes,height,width``.  A "plain" file has no header record.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from maskinv.errors import DataFormatError
from maskinv.utils.images import decode_image
from maskinv.utils.io import atomic_write_text

from .format import IRHeader, _frame, pack_record
from .reader import RecordReader
from .writer import RecordWriter

__all__ = ["find_recordio", "read_property", "RecordIODataset", "recordio_info", "write_insightface_recordio"]


def find_recordio(root: str | os.PathLike) -> tuple[Path, Path | None]:
    """Locate ``(rec, idx)`` from a folder (``train.rec`` or the only ``*.rec``) or a ``.rec`` path."""
    root = Path(root)
    if root.is_file():
        if root.suffix != ".rec":
            raise DataFormatError(f"{root}: not a .rec file")
        idx = root.with_suffix(".idx")
        return root, idx if idx.is_file() else None
    if not root.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(root))
    rec = root / "train.rec"
    if not rec.is_file():
        recs = sorted(root.glob("*.rec"))
        if len(recs) != 1:
            raise DataFormatError(f"{root}: no train.rec and {len(recs)} other .rec files; pass the .rec path")
        rec = recs[0]
    idx = rec.with_suffix(".idx")
    return rec, idx if idx.is_file() else None


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """Parse an InsightFace ``property`` file: ``num_classes,height,width``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        parts = [int(p) for p in text.split(",")]
        if len(parts) != 3 or min(parts) <= 0:
            raise ValueError
    except ValueError:
        raise DataFormatError(f"{path}: expected 'num_classes,height,width', got {text[:60]!r}") from None
    return parts[0], parts[1], parts[2]


class RecordIODataset:
    """Face images from an InsightFace-layout (or plain) RecordIO folder.

    Item ``i`` is ``(image, label)``: ``image`` uint8 RGB (H, W, 3) decoded from record
    ``keys[i]``, ``label`` the int class id (first value of an array label).  A duck-typed
    map-style dataset: ``torch.utils.data.DataLoader`` accepts it directly; it is
    picklable and opens its file per worker process.

    Attributes: ``keys`` (record keys of the images), ``labels`` (int64, read from the
    record headers on first access), ``num_classes``, ``image_size`` ((H, W)), ``layout``
    (``"insightface"`` or ``"plain"``).
    """

    def __init__(self, root_dir: str | os.PathLike):
        rec, idx = find_recordio(root_dir)
        self.root = Path(root_dir)
        self.reader = RecordReader(rec, idx)
        self.rec_path = rec
        self.identity_ranges: np.ndarray | None = None
        keys = self.reader.keys
        self.layout = "plain"
        if keys.size and keys[0] == 0:
            h0 = self.reader.read_header(0)
            if h0.flag > 0 and np.ndim(h0.label) == 1 and len(h0.label) >= 2:
                first_id, end = int(h0.label[0]), int(h0.label[1])
                if not (1 <= first_id <= end):
                    raise DataFormatError(f"{rec}: key 0: header record label {tuple(h0.label)} is not (first_identity_record, end)")
                img_keys = np.arange(1, first_id, dtype=np.int64)
                missing = np.setdiff1d(img_keys, keys)
                if missing.size:
                    raise DataFormatError(f"{rec}: header record announces image keys 1..{first_id - 1} but key {int(missing[0])} is not indexed")
                self.layout = "insightface"
                self._header0 = (first_id, end)
                self.keys = img_keys
        if self.layout == "plain":
            self.keys = keys.copy()
            self._header0 = None
        self._labels: np.ndarray | None = None
        prop = self.rec_path.parent / "property"
        self._property = read_property(prop) if prop.is_file() else None
        self._image_size: tuple[int, int] | None = None
        if self._property is not None:
            self._image_size = (self._property[1], self._property[2])

    def __len__(self) -> int:
        return int(self.keys.size)

    def _where(self, key: int) -> str:
        try:
            off = self.reader.offset(key)
        except KeyError:
            off = -1
        return f"{self.rec_path}: key {key} at byte offset {off}"

    def read_encoded(self, i: int) -> tuple[bytes, int]:
        """(encoded image bytes, label) of item ``i`` without decoding."""
        key = int(self.keys[i])
        header, payload = self.reader.read_unpacked(key)
        return payload, _label_int(header.label)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        key = int(self.keys[i])
        header, payload = self.reader.read_unpacked(key)
        return decode_image(payload, self._where(key)), _label_int(header.label)

    @property
    def labels(self) -> np.ndarray:
        """Class id of every item (int64), from the record headers (no image decode)."""
        if self._labels is None:
            out = self._labels_from_identity_records()
            if out is None:
                out = np.empty(len(self), dtype=np.int64)
                for i, key in enumerate(self.keys):
                    out[i] = _label_int(self.reader.read_header(int(key)).label)
            self._labels = out
        return self._labels

    def _labels_from_identity_records(self) -> np.ndarray | None:
        """Fast path for big InsightFace sets: one read per class instead of per image.

        Used only when the identity records tile the image keys in order and a sample of
        image headers agrees; otherwise ``None`` (the caller reads every header).
        """
        if self._header0 is None or len(self) < 1024:
            return None
        first_id, end = self._header0
        n_cls = end - first_id
        if n_cls <= 0:
            return None
        try:
            ranges = np.array([self.reader.read_header(k).label[:2] for k in range(first_id, end)], dtype=np.int64)
        except (DataFormatError, KeyError, TypeError, IndexError):
            return None
        starts, ends = ranges[:, 0], ranges[:, 1]
        if starts[0] != 1 or ends[-1] != first_id or np.any(starts[1:] != ends[:-1]) or np.any(ends < starts):
            return None
        labels = np.repeat(np.arange(n_cls, dtype=np.int64), ends - starts)
        probe = np.unique(np.linspace(0, len(self) - 1, 64).astype(np.int64))
        for i in probe:
            if _label_int(self.reader.read_header(int(self.keys[i])).label) != labels[i]:
                return None
        return labels

    @property
    def num_classes(self) -> int:
        """From ``property`` if present, else the identity records, else ``max(label) + 1``."""
        if self._property is not None:
            return self._property[0]
        if self._header0 is not None and self._header0[1] > self._header0[0]:
            return self._header0[1] - self._header0[0]
        return int(self.labels.max()) + 1 if len(self) else 0

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width): from ``property`` if present, else the first image."""
        if self._image_size is None:
            if not len(self):
                raise DataFormatError(f"{self.rec_path}: no image records")
            img, _ = self[0]
            self._image_size = (int(img.shape[0]), int(img.shape[1]))
        return self._image_size

    def identity_range(self, label: int) -> tuple[int, int]:
        """(start_key, end_key) of class ``label`` from the identity records (InsightFace layout)."""
        if self._header0 is None:
            raise DataFormatError(f"{self.rec_path}: plain layout has no identity records")
        key = self._header0[0] + int(label)
        if key >= self._header0[1]:
            raise KeyError(label)
        h = self.reader.read_header(key)
        if h.flag < 2:
            raise DataFormatError(f"{self._where(key)}: identity record without a (start, end) label")
        return int(h.label[0]), int(h.label[1])


def recordio_info(path: str | os.PathLike) -> dict:
    """Summary of a RecordIO folder or ``.rec``: format, path, layout, counts, image size.

    Raises :class:`DataFormatError` when it holds no image record.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    ds = RecordIODataset(path)
    if len(ds) == 0:
        raise DataFormatError(f"{path}: no image records")
    h, w = ds.image_size
    return {
        "format": "recordio",
        "path": str(ds.rec_path),
        "layout": ds.layout,
        "num_images": len(ds),
        "num_classes": int(ds.num_classes),
        "image_size": [int(h), int(w)],
    }


def _label_int(label: float | np.ndarray) -> int:
    if isinstance(label, np.ndarray):
        return int(label[0])
    return int(label)


def write_insightface_recordio(
    out_dir: str | os.PathLike,
    items: Iterable[tuple[int, bytes]],
    num_classes: int,
    image_size: int | tuple[int, int],
    *,
    prefix: str = "train",
    progress: bool = False,
    total: int | None = None,
) -> Path:
    """Write ``items`` (label, encoded image) as ``<prefix>.rec/.idx`` + ``property``.

    Labels must be grouped in non-decreasing order (every class's images contiguous) and
    lie in ``[0, num_classes)``; classes without images get an empty ``(k, k)`` range.
    Returns the ``.rec`` path.  All three files are written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    rec_path, idx_path = out / f"{prefix}.rec", out / f"{prefix}.idx"
    starts = np.full(num_classes, -1, dtype=np.int64)
    ends = np.full(num_classes, -1, dtype=np.int64)
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, total=total, desc="pack", unit="img", leave=False)
    with RecordWriter(rec_path, idx_path) as wr:
        # Placeholder header of the same framed size; rewritten once the counts are known.
        placeholder = pack_record(IRHeader(2, np.array([0.0, 0.0]), 0, 0), b"")
        off0 = wr.write(0, placeholder)
        key = 1
        last = -1
        for label, payload in it:
            label = int(label)
            if not 0 <= label < num_classes:
                raise DataFormatError(f"{rec_path}: item {key - 1}: label {label} outside [0, {num_classes})")
            if label < last:
                raise DataFormatError(f"{rec_path}: item {key - 1}: label {label} after {last}; labels must be grouped in increasing order")
            if label != last:
                starts[label] = key
                last = label
            ends[label] = key + 1
            wr.write(key, pack_record(IRHeader(0, float(label), key, 0), payload))
            key += 1
        first_id = key
        prev_end = 1
        for c in range(num_classes):
            if starts[c] < 0:
                starts[c] = ends[c] = prev_end
            prev_end = int(ends[c])
            wr.write(key, pack_record(IRHeader(2, np.array([starts[c], ends[c]], np.float64), key, 0), b""))
            key += 1
        header = pack_record(IRHeader(2, np.array([first_id, key], np.float64), 0, 0), b"")
        if len(_frame(header)) != len(_frame(placeholder)):
            # Only possible if the counts happen to spell the magic word; refuse, never corrupt.
            raise DataFormatError(f"{rec_path}: header record cannot be rewritten in place")
        wr.overwrite(off0, header)
    atomic_write_text(out / "property", f"{num_classes},{h},{w}\n")
    return rec_path

"""MXNet IndexedRecordIO without MXNet (REFERENCE §5).

File layout (``.rec``): a sequence of records, each

    uint32 magic 0xced7230a | uint32 lrec | payload | zero padding to a multiple of 4

where the upper 3 bits of ``lrec`` are the continuation flag (0 whole record, 1 first,
2 middle, 3 last part) and the lower 29 bits the length of this part.  As in dmlc-core,
a record whose payload holds the magic word at a 4-byte aligned position is written as
several parts split at those positions; the magic word itself is dropped from the
stream and re-inserted between parts by the reader.  ``.idx`` is text ``key<TAB>offset``.

Payload (``pack_record``): ``struct '<IfQQ'`` header (flag, label, id, id2); when
``flag > 0`` the label is the ``flag`` float32 values that follow; then the encoded image.

InsightFace layout: record 0 is a header whose label is ``(first_identity_record, end)``;
records ``1 .. first_identity_record-1`` are images labelled with their class id; records
``first_identity_record .. end-1`` hold one ``(start_img, end_img)`` range per class.
A "plain" file has no header record and every key is an image.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.images import decode_image  # noqa: F401  (public name of this module)
from maskinv.utils.io import atomic_path, atomic_write_text

__all__ = [
    "MAGIC",
    "IRHeader",
    "pack_record",
    "unpack_record",
    "RecordWriter",
    "RecordReader",
    "RecordIODataset",
    "write_insightface_recordio",
    "find_recordio",
    "read_property",
    "decode_image",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")
_FRAME = struct.Struct("<II")
_MAX_PART = (1 << 29) - 1


class IRHeader(NamedTuple):
    """Record header: ``flag`` (number of array labels, 0 = scalar), ``label``, ``id``, ``id2``."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_record(header: IRHeader, payload: bytes) -> bytes:
    """Serialise a header and payload. An array/sequence label sets ``flag`` to its length."""
    label = header.label
    if isinstance(label, numbers.Number) and not isinstance(label, np.ndarray):
        head = _HEADER.pack(0, float(label), int(header.id), int(header.id2))
        return head + bytes(payload)
    arr = np.asarray(label, dtype="<f4").reshape(-1)
    if arr.size == 0:
        raise ConfigError(f"pack_record: an array label needs at least one value, got {label!r}")
    head = _HEADER.pack(arr.size, 0.0, int(header.id), int(header.id2))
    return head + arr.tobytes() + bytes(payload)


def unpack_record(record: bytes, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record into its :class:`IRHeader` and payload (the encoded image).

    ``where`` names the record in error messages (file, key, offset).
    """
    if len(record) < _HEADER.size:
        raise DataFormatError(f"{where}: record of {len(record)} bytes is shorter than the 24-byte header")
    flag, label, id_, id2 = _HEADER.unpack_from(record, 0)
    if flag > 0:
        end = _HEADER.size + 4 * flag
        if len(record) < end:
            raise DataFormatError(f"{where}: header announces {flag} labels but the record has only {len(record)} bytes")
        arr = np.frombuffer(record, dtype="<f4", count=flag, offset=_HEADER.size).astype(np.float32)
        return IRHeader(flag, arr, id_, id2), bytes(record[end:])
    return IRHeader(0, float(label), id_, id2), bytes(record[_HEADER.size :])


def _split_parts(record: bytes) -> list[bytes]:
    """dmlc-core's split: cut at every 4-byte aligned occurrence of the magic word."""
    parts: list[bytes] = []
    start = 0
    pos = record.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            parts.append(record[start:pos])
            start = pos + 4
            pos = record.find(_MAGIC_BYTES, start)
        else:
            pos = record.find(_MAGIC_BYTES, pos + 1)
    parts.append(record[start:])
    return parts


def _frame(record: bytes) -> bytes:
    """Encode one logical record as its on-disk bytes (one or more parts + padding)."""
    if len(record) > _MAX_PART:
        raise ConfigError(f"RecordIO records must be shorter than 2^29 bytes, got {len(record)}")
    parts = _split_parts(record)
    out = bytearray()
    n = len(parts)
    for i, part in enumerate(parts):
        if n == 1:
            cflag = 0
        elif i == 0:
            cflag = 1
        elif i == n - 1:
            cflag = 3
        else:
            cflag = 2
        out += _FRAME.pack(MAGIC, (cflag << 29) | len(part))
        out += part
    # Non-final parts end at aligned positions, so only the tail needs padding.
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


class RecordWriter:
    """Write an indexed RecordIO pair (``.rec`` + ``.idx``); atomic on :meth:`close`.

    Use as a context manager; on an exception nothing is left at the target paths.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        self._stack = contextlib.ExitStack()
        tmp_rec = self._stack.enter_context(atomic_path(self.rec_path))
        tmp_idx = self._stack.enter_context(atomic_path(self.idx_path))
        self._rec = open(tmp_rec, "wb")
        self._idx = open(tmp_idx, "w", encoding="ascii", newline="\n")
        self._keys: set[int] = set()
        self._closed = False

    def tell(self) -> int:
        """Byte offset where the next record will start."""
        return self._rec.tell()

    def write(self, key: int, record: bytes) -> int:
        """Append ``record`` under ``key``; returns its byte offset."""
        if self._closed:
            raise ConfigError(f"{self.rec_path}: writer is closed; cannot write key {key}")
        key = int(key)
        if key < 0:
            raise ConfigError(f"{self.rec_path}: negative key {key}")
        if key in self._keys:
            raise ConfigError(f"{self.rec_path}: duplicate key {key}")
        self._keys.add(key)
        offset = self._rec.tell()
        self._rec.write(_frame(record))
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def overwrite(self, offset: int, record: bytes) -> None:
        """Replace the record at ``offset`` by one of exactly the same framed size."""
        framed = _frame(record)
        end = self._rec.tell()
        if offset < 0 or offset + len(framed) > end:
            raise ConfigError(f"{self.rec_path}: overwrite of {len(framed)} bytes at {offset} runs past the end ({end})")
        self._rec.seek(offset)
        self._rec.write(framed)
        self._rec.seek(end)

    def close(self) -> None:
        """Flush both files and move them into place."""
        if self._closed:
            return
        self._closed = True
        self._rec.close()
        self._idx.close()
        self._stack.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Discard everything written so far."""
        if self._closed:
            return
        self._closed = True
        self._rec.close()
        self._idx.close()
        err = exc or RuntimeError("aborted")
        with contextlib.suppress(BaseException):
            self._stack.__exit__(type(err), err, None)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc)


def _parse_idx(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``key<TAB>offset`` lines into (keys, offsets) int64 arrays sorted by key."""
    data = idx_path.read_bytes()
    tokens = data.split()
    if len(tokens) % 2:
        raise DataFormatError(f"{idx_path}: odd number of fields; every line must be 'key<TAB>offset'")
    try:
        arr = np.array(tokens, dtype=np.int64).reshape(-1, 2) if tokens else np.zeros((0, 2), np.int64)
    except (ValueError, OverflowError):
        for lineno, line in enumerate(data.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise DataFormatError(f"{idx_path}: line {lineno}: expected 'key<TAB>offset', got {line[:60]!r}") from None
        raise DataFormatError(f"{idx_path}: unreadable index") from None
    order = np.argsort(arr[:, 0], kind="stable")
    keys = np.ascontiguousarray(arr[order, 0])
    offsets = np.ascontiguousarray(arr[order, 1])
    if keys.size and (np.any(np.diff(keys) == 0)):
        dup = int(keys[np.nonzero(np.diff(keys) == 0)[0][0]])
        raise DataFormatError(f"{idx_path}: key {dup} appears more than once")
    if keys.size and (keys[0] < 0 or offsets.min() < 0):
        raise DataFormatError(f"{idx_path}: negative key or offset")
    return keys, offsets


class RecordReader:
    """Random access to an indexed RecordIO file by key.

    Picklable and safe in DataLoader workers: the file descriptor is opened lazily and
    re-opened when the process id changes (a forked worker never shares a handle).
    Reads use ``os.pread`` so no file position is shared between threads either.
    Without an ``.idx`` (``idx_path=None`` and no ``<rec>.idx`` next to the file) the
    file is scanned once and records are keyed 0, 1, 2, ... in file order.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(2, "No such file", str(self.rec_path))
        self.file_size = self.rec_path.stat().st_size
        if idx_path is None:
            cand = self.rec_path.with_suffix(".idx")
            idx_path = cand if cand.is_file() else None
        self.idx_path = Path(idx_path) if idx_path is not None else None
        if self.idx_path is not None:
            if not self.idx_path.is_file():
                raise FileNotFoundError(2, "No such file", str(self.idx_path))
            self._keys, self._offsets = _parse_idx(self.idx_path)
        else:
            offsets = self._scan()
            self._offsets = np.asarray(offsets, dtype=np.int64)
            self._keys = np.arange(len(offsets), dtype=np.int64)
        # Dense keys 0..n-1 (or k0..k0+n-1) allow O(1) lookup.
        n = self._keys.size
        self._dense = bool(n and self._keys[-1] - self._keys[0] == n - 1)
        self._fd: int | None = None
        self._pid: int | None = None

    # -- process-local file handle -------------------------------------------------
    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = pid
        return self._fd

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's descriptor (it reopens on the next read)."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._pid = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- index ------------------------------------------------------------------------
    @property
    def keys(self) -> np.ndarray:
        """All record keys, sorted (int64 array)."""
        return self._keys

    def __len__(self) -> int:
        return int(self._keys.size)

    def __contains__(self, key: object) -> bool:
        try:
            self.offset(int(key))  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def offset(self, key: int) -> int:
        """Byte offset of ``key``; ``KeyError`` if absent."""
        keys = self._keys
        if self._dense:
            i = key - int(keys[0])
            if 0 <= i < keys.size:
                return int(self._offsets[i])
        else:
            i = int(np.searchsorted(keys, key))
            if i < keys.size and keys[i] == key:
                return int(self._offsets[i])
        raise KeyError(key)

    # -- reading --------------------------------------------------------------------
    def _pread(self, n: int, offset: int) -> bytes:
        fd = self._file()
        if hasattr(os, "pread"):
            return os.pread(fd, n, offset)
        os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
        return os.read(fd, n)

    def _read_at(self, offset: int, where: str, limit: int | None = None) -> bytes:
        """Read the (possibly multi-part) record at ``offset``.

        ``limit``: stop once at least this many payload bytes are known (header peeks).
        """
        out = bytearray()
        pos = offset
        first = True
        while True:
            if pos + 8 > self.file_size:
                raise DataFormatError(f"{where}: truncated record (frame header at byte {pos} past end of file, size {self.file_size})")
            magic, lrec = _FRAME.unpack(self._pread(8, pos))
            if magic != MAGIC:
                raise DataFormatError(f"{where}: bad magic 0x{magic:08x} at byte {pos} (expected 0x{MAGIC:08x})")
            cflag, length = lrec >> 29, lrec & _MAX_PART
            if first and cflag not in (0, 1):
                raise DataFormatError(f"{where}: record starts with continuation flag {cflag} (a middle/last part)")
            if not first and cflag not in (2, 3):
                raise DataFormatError(f"{where}: continuation flag {cflag} at byte {pos} inside a multi-part record")
            want = length if limit is None else min(length, max(0, limit - len(out)))
            if pos + 8 + length > self.file_size:
                raise DataFormatError(
                    f"{where}: truncated record (part of {length} bytes at byte {pos} runs past end of file, size {self.file_size})"
                )
            data = self._pread(want, pos + 8) if want else b""
            if len(data) != want:
                raise DataFormatError(f"{where}: short read at byte {pos + 8}")
            out += data
            if cflag in (0, 3):
                return bytes(out)
            if limit is not None and len(out) >= limit:
                return bytes(out)
            out += _MAGIC_BYTES
            pos += 8 + ((length + 3) & ~3)
            first = False

    def _where(self, key: int, offset: int) -> str:
        return f"{self.rec_path}: key {key} at byte offset {offset}"

    def read(self, key: int) -> bytes:
        """The whole record stored under ``key`` (header + payload, see :func:`unpack_record`)."""
        key = int(key)
        try:
            offset = self.offset(key)
        except KeyError:
            raise DataFormatError(f"{self.rec_path}: key {key} is not in the index {self.idx_path or '(scanned)'}") from None
        if offset >= self.file_size:
            raise DataFormatError(f"{self._where(key, offset)}: offset past end of file (size {self.file_size})")
        return self._read_at(offset, self._where(key, offset))

    def read_header(self, key: int) -> IRHeader:
        """Only the :class:`IRHeader` of ``key`` (reads a few dozen bytes, not the image)."""
        key = int(key)
        offset = self.offset(key)
        where = self._where(key, offset)
        if offset >= self.file_size:
            raise DataFormatError(f"{where}: offset past end of file (size {self.file_size})")
        head = self._read_at(offset, where, limit=_HEADER.size)
        flag = _HEADER.unpack_from(head, 0)[0] if len(head) >= _HEADER.size else 0
        if flag > 0:
            head = self._read_at(offset, where, limit=_HEADER.size + 4 * flag)
        header, _ = unpack_record(head, where=where)
        return header

    def read_unpacked(self, key: int) -> tuple[IRHeader, bytes]:
        """``unpack_record(read(key))`` with errors naming file, key and offset."""
        rec = self.read(key)
        return unpack_record(rec, where=self._where(int(key), self.offset(int(key))))

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for key in self._keys:
            yield int(key), self.read(int(key))

    def _scan(self) -> list[int]:
        """Offsets of all records in file order (used when there is no ``.idx``)."""
        offsets = []
        pos = 0
        with open(self.rec_path, "rb") as fh:
            while pos < self.file_size:
                start = pos
                first = True
                while True:
                    fh.seek(pos)
                    head = fh.read(8)
                    if len(head) < 8:
                        raise DataFormatError(f"{self.rec_path}: truncated record at byte {pos}")
                    magic, lrec = _FRAME.unpack(head)
                    if magic != MAGIC:
                        raise DataFormatError(f"{self.rec_path}: record {len(offsets)} at byte offset {pos}: bad magic 0x{magic:08x}")
                    cflag, length = lrec >> 29, lrec & _MAX_PART
                    if first and cflag not in (0, 1):
                        raise DataFormatError(f"{self.rec_path}: record {len(offsets)} at byte offset {pos}: starts with continuation flag {cflag}")
                    pos += 8 + ((length + 3) & ~3)
                    if pos > self.file_size:
                        raise DataFormatError(f"{self.rec_path}: record {len(offsets)} at byte offset {start}: truncated")
                    first = False
                    if cflag in (0, 3):
                        break
                offsets.append(start)
        return offsets


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

"""Random access to an indexed RecordIO file by key (or by a one-time scan without ``.idx``)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from maskinv.errors import DataFormatError

from .format import _FRAME, _HEADER, _MAGIC_BYTES, _MAX_PART, MAGIC, IRHeader, unpack_record

__all__ = ["RecordReader"]


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

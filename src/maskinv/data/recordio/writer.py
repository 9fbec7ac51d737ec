"""Writing an indexed RecordIO file pair (``.rec`` + ``.idx``) atomically."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from maskinv.errors import ConfigError
from maskinv.utils.io import atomic_path

from .format import _frame

__all__ = ["RecordWriter"]


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

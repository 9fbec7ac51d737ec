"""RecordIO record format: the ``IRHeader`` payload header and the on-disk framing
(magic word, continuation flags, 4-byte padding) described in :mod:`maskinv.data.recordio`."""
from __future__ import annotations

import numbers
import struct
from typing import NamedTuple

import numpy as np

from maskinv.errors import ConfigError, DataFormatError

__all__ = ["MAGIC", "IRHeader", "pack_record", "unpack_record"]

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

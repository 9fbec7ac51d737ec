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

Modules: :mod:`.format` (header + framing), :mod:`.writer`, :mod:`.reader`,
:mod:`.insightface` (dataset and writer of the InsightFace layout).
"""
from __future__ import annotations

from .format import MAGIC, IRHeader, pack_record, unpack_record
from .insightface import RecordIODataset, find_recordio, read_property, recordio_info, write_insightface_recordio
from .reader import RecordReader
from .writer import RecordWriter

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
    "recordio_info",
]

"""RecordIO: spec-conformant reading (independent writer in this file), round trips, errors."""
from __future__ import annotations

import pickle
import struct

import cv2
import numpy as np
import pytest

from maskinv.data.recordio import (
    IRHeader,
    RecordIODataset,
    RecordReader,
    RecordWriter,
    pack_record,
    unpack_record,
    write_insightface_recordio,
)
from maskinv.errors import DataFormatError

MAGIC = 0xCED7230A


# ---------------------------------------------------------------------------
# An independent writer that follows REFERENCE §5 / dmlc-core literally.
def _spec_payload(flag: int, label: float, id_: int, labels: list[float] | None, body: bytes) -> bytes:
    head = struct.pack("<IfQQ", flag, label, id_, 0)
    if labels is not None:
        head += struct.pack(f"<{len(labels)}f", *labels)
    return head + body


def _spec_frame(logical: bytes) -> bytes:
    """Split at aligned magic words (dropped), flags 1/2/3, pad the tail to 4 bytes."""
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(logical) - 3, 4) if logical[i : i + 4] == magic]
    if not cuts:
        out = struct.pack("<II", MAGIC, len(logical)) + logical
    else:
        pieces, start = [], 0
        for c in cuts:
            pieces.append(logical[start:c])
            start = c + 4
        pieces.append(logical[start:])
        out = b""
        for k, piece in enumerate(pieces):
            flag = 1 if k == 0 else (3 if k == len(pieces) - 1 else 2)
            out += struct.pack("<II", MAGIC, (flag << 29) | len(piece)) + piece
    return out + b"\0" * (-len(out) % 4)


def _jpeg(seed: int, size: int = 24) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def _jpeg_with_magic(seed: int, prefix_len: int) -> bytes:
    """A valid JPEG whose COM segment holds the magic twice at 4-aligned record offsets."""
    jpg = _jpeg(seed)
    magic = struct.pack("<I", MAGIC)
    # record offset of the comment data: prefix + SOI(2) + marker(2) + length(2)
    start = prefix_len + 6
    pad = b"x" * (-start % 4)
    comment = pad + magic + b"abcd" + magic + b"tail"
    seg = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return jpg[:2] + seg + jpg[2:]


def _write_spec_insightface(tmp_path):
    """Header record, 3 images (one multi-part with an array label), 2 identity records."""
    imgs = [_jpeg(1), _jpeg_with_magic(2, 24 + 8), _jpeg(3)]
    labels = [0, 1, 1]
    records = {0: _spec_payload(2, 0.0, 0, [4.0, 6.0], b"")}
    records[1] = _spec_payload(0, 0.0, 1, None, imgs[0])
    records[2] = _spec_payload(2, 0.0, 2, [1.0, 99.0], imgs[1])  # array label: first value is the class
    records[3] = _spec_payload(0, 1.0, 3, None, imgs[2])
    records[4] = _spec_payload(2, 0.0, 4, [1.0, 2.0], b"")
    records[5] = _spec_payload(2, 0.0, 5, [2.0, 4.0], b"")
    rec = b""
    idx_lines = []
    for key in range(6):
        idx_lines.append(f"{key}\t{len(rec)}\n")
        rec += _spec_frame(records[key])
    (tmp_path / "train.rec").write_bytes(rec)
    (tmp_path / "train.idx").write_text("".join(idx_lines))
    (tmp_path / "property").write_text("2,24,24\n")
    return imgs, labels, records, rec


def test_independent_spec_file_is_read(tmp_path):
    imgs, labels, records, rec = _write_spec_insightface(tmp_path)
    # the multi-part record really has three parts (flags 1, 2, 3)
    off2 = int((tmp_path / "train.idx").read_text().splitlines()[2].split("\t")[1])
    assert struct.unpack_from("<II", rec, off2)[1] >> 29 == 1
    ds = RecordIODataset(tmp_path)
    assert ds.layout == "insightface"
    assert len(ds) == 3
    assert list(ds.keys) == [1, 2, 3]
    assert ds.labels.tolist() == labels
    assert ds.num_classes == 2 and ds.image_size == (24, 24)
    for i in range(3):
        payload, label = ds.read_encoded(i)
        assert payload == imgs[i]
        assert label == labels[i]
        img, lab = ds[i]
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(imgs[i], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert img.dtype == np.uint8 and img.shape == (24, 24, 3)
        np.testing.assert_array_equal(img, ref)
        assert lab == labels[i]
    header, _ = ds.reader.read_unpacked(2)
    np.testing.assert_array_equal(header.label, np.float32([1.0, 99.0]))
    assert header.flag == 2
    assert ds.reader.read(2) == records[2]
    assert ds.identity_range(1) == (2, 4)
    # header of a multi-part record without reading the image
    assert ds.reader.read_header(2).flag == 2


def test_our_writer_matches_independent_bytes(tmp_path):
    _, _, records, rec = _write_spec_insightface(tmp_path)
    out = tmp_path / "ours"
    out.mkdir()
    with RecordWriter(out / "train.rec", out / "train.idx") as w:
        for key in range(6):
            w.write(key, records[key])
    assert (out / "train.rec").read_bytes() == rec
    assert (out / "train.idx").read_text() == (tmp_path / "train.idx").read_text()


def test_pack_unpack_scalar_and_array():
    h, p = unpack_record(pack_record(IRHeader(0, 5.0, 7, 9), b"abc"))
    assert h == IRHeader(0, 5.0, 7, 9) and p == b"abc"
    h, p = unpack_record(pack_record(IRHeader(0, [1.5, 2.5, 3.0], 1, 2), b"xyz"))
    assert h.flag == 3 and p == b"xyz"
    np.testing.assert_array_equal(h.label, np.float32([1.5, 2.5, 3.0]))


def test_insightface_round_trip(tmp_path):
    items = [(0, _jpeg(10)), (0, _jpeg(11)), (2, _jpeg(12)), (3, _jpeg_with_magic(13, 24))]
    write_insightface_recordio(tmp_path, items, num_classes=4, image_size=24)
    assert (tmp_path / "property").read_text().strip() == "4,24,24"
    ds = RecordIODataset(tmp_path)
    assert ds.layout == "insightface"
    assert len(ds) == 4 and ds.num_classes == 4
    assert ds.labels.tolist() == [0, 0, 2, 3]
    for i, (label, data) in enumerate(items):
        assert ds.read_encoded(i) == (data, label)
    assert ds.identity_range(0) == (1, 3)
    assert ds.identity_range(1) == (3, 3)  # empty class
    assert ds.identity_range(2) == (3, 4)
    assert ds.identity_range(3) == (4, 5)
    h0 = ds.reader.read_header(0)
    assert h0.label.tolist() == [5.0, 9.0]


def test_writer_rejects_unsorted_labels_and_leaves_nothing(tmp_path):
    with pytest.raises(DataFormatError, match="grouped"):
        write_insightface_recordio(tmp_path, [(1, b"a"), (0, b"b")], num_classes=2, image_size=8)
    assert not (tmp_path / "train.rec").exists() and not (tmp_path / "train.idx").exists()
    assert not list(tmp_path.iterdir())


def test_plain_layout_and_missing_idx(tmp_path):
    imgs = [_jpeg(20), _jpeg(21)]
    with RecordWriter(tmp_path / "data.rec", tmp_path / "data.idx") as w:
        w.write(0, pack_record(IRHeader(0, 3.0, 0, 0), imgs[0]))
        w.write(1, pack_record(IRHeader(0, 1.0, 1, 0), imgs[1]))
    ds = RecordIODataset(tmp_path / "data.rec")
    assert ds.layout == "plain" and len(ds) == 2
    assert ds.labels.tolist() == [3, 1] and ds.num_classes == 4
    assert ds.image_size == (24, 24)
    (tmp_path / "data.idx").unlink()
    r = RecordReader(tmp_path / "data.rec")  # scans the file
    assert list(r.keys) == [0, 1]
    assert unpack_record(r.read(1))[1] == imgs[1]


def test_pickle_and_worker_processes(tmp_path):
    items = [(i // 2, _jpeg(30 + i)) for i in range(6)]
    write_insightface_recordio(tmp_path, items, num_classes=3, image_size=24)
    ds = RecordIODataset(tmp_path)
    first = ds[0][0]
    ds2 = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(ds2[0][0], first)
    import torch

    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    labels = torch.cat([b[1] for b in loader]).tolist()
    assert labels == [0, 0, 1, 1, 2, 2]


def _corrupt_target(tmp_path):
    items = [(0, _jpeg(40)), (1, _jpeg(41))]
    write_insightface_recordio(tmp_path, items, num_classes=2, image_size=24)
    lines = (tmp_path / "train.idx").read_text().splitlines()
    return {int(k): int(v) for k, v in (ln.split("\t") for ln in lines)}


def test_bad_magic_names_file_key_offset(tmp_path):
    offs = _corrupt_target(tmp_path)
    data = bytearray((tmp_path / "train.rec").read_bytes())
    data[offs[2]] ^= 0xFF
    (tmp_path / "train.rec").write_bytes(bytes(data))
    ds = RecordIODataset(tmp_path)
    with pytest.raises(DataFormatError) as ei:
        ds[1]
    msg = str(ei.value)
    assert "train.rec" in msg and "key 2" in msg and f"offset {offs[2]}" in msg and "bad magic" in msg


def test_truncated_and_offset_past_end(tmp_path):
    offs = _corrupt_target(tmp_path)
    rec = tmp_path / "train.rec"
    data = rec.read_bytes()
    # move the identity records and header out: truncate inside image record 2
    rec.write_bytes(data[: offs[2] + 20])
    reader = RecordReader(rec, tmp_path / "train.idx")
    with pytest.raises(DataFormatError, match=rf"key 2 at byte offset {offs[2]}.*truncated"):
        reader.read(2)
    with pytest.raises(DataFormatError, match=r"key 3 .*past end"):
        reader.read(3)


def test_undecodable_image(tmp_path):
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write(0, pack_record(IRHeader(0, 0.0, 0, 0), b"definitely not a jpeg"))
    ds = RecordIODataset(tmp_path)
    with pytest.raises(DataFormatError, match=r"train.rec: key 0 at byte offset 0: undecodable"):
        ds[0]


def test_bad_idx_line(tmp_path):
    _corrupt_target(tmp_path)
    (tmp_path / "train.idx").write_text("0\t0\n1\tabc\n")
    with pytest.raises(DataFormatError, match=r"train.idx: line 2"):
        RecordReader(tmp_path / "train.rec")


def _big_insightface(tmp_path, image_labels, ranges):
    """Header, len(image_labels) tiny records, identity records with ``ranges``."""
    n = len(image_labels)
    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write(0, pack_record(IRHeader(2, [n + 1, n + 1 + len(ranges)], 0, 0), b""))
        for k, lab in enumerate(image_labels, start=1):
            w.write(k, pack_record(IRHeader(0, float(lab), k, 0), b"x"))
        for j, (a, b) in enumerate(ranges):
            w.write(n + 1 + j, pack_record(IRHeader(2, [a, b], 0, 0), b""))


def test_labels_fast_path_and_fallback(tmp_path):
    labels = np.repeat(np.arange(4), 300)  # 1200 images: large enough for the fast path
    ranges = [(1 + 300 * c, 1 + 300 * (c + 1)) for c in range(4)]
    _big_insightface(tmp_path, labels, ranges)
    assert RecordIODataset(tmp_path).labels.tolist() == labels.tolist()
    # identity records that disagree with the image headers: the headers win
    other = tmp_path / "other"
    other.mkdir()
    shuffled = labels[::-1].copy()
    _big_insightface(other, shuffled, ranges)
    assert RecordIODataset(other).labels.tolist() == shuffled.tolist()


def test_bad_arguments_are_config_errors(tmp_path):
    """Caller mistakes raise ConfigError (a MaskinvError and still a ValueError) naming the value."""
    from maskinv.data.recordio import recordio_info
    from maskinv.errors import ConfigError

    with pytest.raises(ConfigError, match="array label needs at least one value"):
        pack_record(IRHeader(0, np.zeros(0), 0, 0), b"")
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as w:
        w.write(3, b"x")
        with pytest.raises(ConfigError, match="duplicate key 3"):
            w.write(3, b"y")
        with pytest.raises(ConfigError, match="negative key -1"):
            w.write(-1, b"y")
    with pytest.raises(ConfigError, match="writer is closed; cannot write key 4"):
        w.write(4, b"z")
    with pytest.raises(ValueError):  # callers catching ValueError keep working
        w.write(5, b"z")
    with pytest.raises(FileNotFoundError):
        recordio_info(tmp_path / "missing")


def test_recordio_info(tmp_path):
    from maskinv.data.recordio import recordio_info
    from maskinv.utils.images import encode_image

    img = np.zeros((6, 5, 3), np.uint8)
    write_insightface_recordio(tmp_path, [(0, encode_image(img)), (1, encode_image(img)), (1, encode_image(img))], 3, (6, 5))
    info = recordio_info(tmp_path)
    assert info == {"format": "recordio", "path": str(tmp_path / "train.rec"), "layout": "insightface",
                    "num_images": 3, "num_classes": 3, "image_size": [6, 5]}

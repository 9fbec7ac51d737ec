"""maskinv.data.packing: image folder <-> InsightFace RecordIO as library calls."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.data.packing import pack_image_folder, unpack_recordio
from maskinv.data.recordio import RecordIODataset
from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.images import decode_image, encode_image


def _tree(root, rng, sizes=None):
    """root/<name>/<j>.<ext>: JPEGs, one PNG; returns {(name, j): (bytes, image)}."""
    files = {}
    for name in ("b", "a"):
        for j in range(3):
            img = rng.integers(0, 256, size=(sizes or {}).get((name, j), (10, 8)) + (3,), dtype=np.uint8)
            fmt = "png" if (name, j) == ("a", 1) else "jpg"
            data = encode_image(img, fmt, 90)
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{j}.{fmt}").write_bytes(data)
            files[(name, j)] = (data, img)
    return files


def test_pack_keeps_jpeg_bytes_reencodes_others_and_unpacks(tmp_path, rng):
    files = _tree(tmp_path / "src", rng)
    info = pack_image_folder(tmp_path / "src", tmp_path / "rec", quality=80)
    assert info == {"rec": str(tmp_path / "rec" / "train.rec"), "num_images": 6, "num_classes": 2, "image_size": [10, 8],
                    "labels": str(tmp_path / "rec" / "labels.json"), "skipped": []}
    ds = RecordIODataset(tmp_path / "rec")
    got = [ds.read_encoded(i) for i in range(len(ds))]
    assert [lab for _, lab in got] == [0, 0, 0, 1, 1, 1]  # "a" < "b"
    assert got[0][0] == files[("a", 0)][0] and got[3][0] == files[("b", 0)][0]  # JPEG untouched
    assert got[1][0] == encode_image(files[("a", 1)][1], "jpg", 80)  # PNG -> JPEG at quality
    out = unpack_recordio(tmp_path / "rec", tmp_path / "un")
    assert out == {"out_dir": str(tmp_path / "un"), "num_images": 6}
    names = sorted(p.relative_to(tmp_path / "un").as_posix() for p in (tmp_path / "un").rglob("*") if p.is_file())
    assert names == ["a/1.jpg", "a/2.jpg", "a/3.jpg", "b/4.jpg", "b/5.jpg", "b/6.jpg"]  # names from labels.json
    assert (tmp_path / "un" / "b" / "4.jpg").read_bytes() == files[("b", 0)][0]
    np.testing.assert_array_equal(decode_image((tmp_path / "un" / "a" / "2.jpg").read_bytes()).shape, (10, 8, 3))


def test_pack_errors_name_the_problem(tmp_path, rng):
    _tree(tmp_path / "src", rng, sizes={("b", 2): (12, 8)})
    with pytest.raises(DataFormatError, match=r"2.jpg: 8x12 differs from the first image \(8x10\)"):
        pack_image_folder(tmp_path / "src", tmp_path / "rec")
    assert not (tmp_path / "rec").exists()  # nothing half-written, no empty folder left behind
    with pytest.raises(ConfigError, match="quality must be in 1..100, got 0"):
        pack_image_folder(tmp_path / "src", tmp_path / "rec", quality=0)


def test_pack_keeps_identity_names(tmp_path, rng, capsys):
    """issue 16 item 16: label -> name map written by pack, shown by info, used by unpack."""
    import json

    from maskinv.cli import main
    from maskinv.data.packing import read_label_names

    _tree(tmp_path / "src", rng)
    (tmp_path / "src" / "b").rename(tmp_path / "src" / "Zoe Smith")
    (tmp_path / "src" / "a").rename(tmp_path / "src" / "Adam_Jones")
    assert main(["data", "pack", str(tmp_path / "src"), str(tmp_path / "rec")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "rec" / "labels.json").read_text()) == {"0": "Adam_Jones", "1": "Zoe Smith"}
    assert read_label_names(tmp_path / "rec" / "train.rec", 2) == {0: "Adam_Jones", 1: "Zoe Smith"}
    assert main(["data", "info", str(tmp_path / "rec"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label_names"] == ["Adam_Jones", "Zoe Smith"]
    assert main(["data", "unpack", str(tmp_path / "rec"), str(tmp_path / "un")]) == 0
    assert sorted(p.name for p in (tmp_path / "un").iterdir()) == ["Adam_Jones", "Zoe Smith"]
    # round trip: packing the unpacked folder gives the same labels and names
    pack_image_folder(tmp_path / "un", tmp_path / "rec2")
    assert read_label_names(tmp_path / "rec2") == {0: "Adam_Jones", 1: "Zoe Smith"}
    a, b = RecordIODataset(tmp_path / "rec"), RecordIODataset(tmp_path / "rec2")
    assert [a.read_encoded(i) for i in range(len(a))] == [b.read_encoded(i) for i in range(len(b))]
    # a hostile or stale map is refused, naming the file
    (tmp_path / "rec" / "labels.json").write_text(json.dumps({"0": "../escape", "1": "x"}))
    with pytest.raises(DataFormatError, match="labels.json"):
        unpack_recordio(tmp_path / "rec", tmp_path / "un3")
    (tmp_path / "rec" / "labels.json").write_text(json.dumps({"0": "only one"}))
    with pytest.raises(DataFormatError, match="2 classes"):
        unpack_recordio(tmp_path / "rec", tmp_path / "un3")
    # without a map (RecordIO from elsewhere): numeric folders as before
    (tmp_path / "rec" / "labels.json").unlink()
    unpack_recordio(tmp_path / "rec", tmp_path / "un4")
    assert sorted(p.name for p in (tmp_path / "un4").iterdir()) == ["0", "1"]

"""``maskinv data`` synth / info / pack / unpack, in-process."""
from __future__ import annotations

import json

import cv2
import numpy as np

from maskinv.cli import main


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_synth_info_preview(tmp_path, capsys):
    out = tmp_path / "syn"
    grid = tmp_path / "grid.png"
    rc, stdout, _ = _run(capsys, "data", "synth", str(out), "--identities", "3", "--images-per-identity", "2",
                         "--seed", "4", "--size", "40", "--val-identities", "2", "--val-pairs", "4", "--preview", str(grid))
    assert rc == 0
    summary = json.loads(stdout)
    assert summary["num_images"] == 6 and summary["num_pairs"] == 4
    for name in ("train.rec", "train.idx", "property", "landmarks.npy", "synth_val.bin", "synth_val_landmarks.npy"):
        assert (out / name).is_file(), name
    img = cv2.imread(str(grid))
    assert img is not None and img.shape == (3 * 40, 8 * 40, 3)

    rc, stdout, _ = _run(capsys, "data", "info", str(out), "--json")
    assert rc == 0
    info = json.loads(stdout)
    assert info["format"] == "recordio" and info["num_images"] == 6 and info["num_classes"] == 3
    assert info["image_size"] == [40, 40]
    rc, stdout, _ = _run(capsys, "data", "info", str(out / "synth_val.bin"), "--json")
    info = json.loads(stdout)
    assert info == {**info, "format": "bin", "num_pairs": 4, "num_genuine": 2, "image_size": [40, 40]}


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "faces"
    files = {}
    for ident in ("ann", "bo", "cy"):
        (src / ident).mkdir(parents=True)
        for j in range(2):
            img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            ext = ".png" if (ident, j) == ("bo", 1) else ".jpg"
            data = cv2.imencode(ext, img)[1].tobytes()
            (src / ident / f"{j}{ext}").write_bytes(data)
            files[(ident, j)] = data
    return src, files


def test_pack_unpack_round_trip(tmp_path, capsys):
    from maskinv.data.recordio import RecordIODataset

    src, files = _folder(tmp_path)
    rc, _, _ = _run(capsys, "data", "pack", str(src), str(tmp_path / "rec"), "--quality", "90")
    assert rc == 0
    ds = RecordIODataset(tmp_path / "rec")
    assert ds.num_classes == 3 and len(ds) == 6 and ds.image_size == (20, 20)
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.read_encoded(0)[0] == files[("ann", 0)]  # JPEG bytes stored unchanged
    assert ds.read_encoded(5)[0] == files[("cy", 1)]
    png_as_jpeg = ds.read_encoded(3)[0]
    assert png_as_jpeg[:3] == b"\xff\xd8\xff"  # the PNG was re-encoded as JPEG

    rc, _, _ = _run(capsys, "data", "unpack", str(tmp_path / "rec"), str(tmp_path / "un"))
    assert rc == 0
    names = ["ann", "bo", "cy"]  # the identity folder names, kept by pack in labels.json
    for i in range(len(ds)):
        data, label = ds.read_encoded(i)
        assert (tmp_path / "un" / names[label] / f"{int(ds.keys[i])}.jpg").read_bytes() == data
    # pack(unpack(x)) keeps bytes and labels
    rc, _, _ = _run(capsys, "data", "pack", str(tmp_path / "un"), str(tmp_path / "rec2"))
    ds2 = RecordIODataset(tmp_path / "rec2")
    assert [ds2.read_encoded(i) for i in range(6)] == [ds.read_encoded(i) for i in range(6)]


def test_errors_one_line_exit_2(tmp_path, capsys):
    rc, out, err = _run(capsys, "data", "info", str(tmp_path / "missing"))
    assert rc == 2 and "missing" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x80\x04junk")
    rc, _, err = _run(capsys, "data", "info", str(bad), "--json")
    assert rc == 2 and "bad.bin" in err and len(err.strip().splitlines()) == 1
    src, _ = _folder(tmp_path)
    rc, _, err = _run(capsys, "data", "pack", str(src), str(tmp_path / "r"), "--quality", "0")
    assert rc == 2 and "quality" in err
    rc, _, err = _run(capsys, "data", "synth", str(tmp_path / "s"), "--identities", "2", "--images-per-identity", "1",
                      "--seed", "0", "--difficulty", "nightmare")
    assert rc == 2 and "difficulty" in err


def test_pack_rejects_mixed_sizes(tmp_path, capsys):
    src, _ = _folder(tmp_path)
    cv2.imwrite(str(src / "cy" / "9.png"), np.zeros((30, 20, 3), np.uint8))
    rc, _, err = _run(capsys, "data", "pack", str(src), str(tmp_path / "r"))
    assert rc == 2 and "9.png" in err
    assert not (tmp_path / "r" / "train.rec").exists()

"""Bad files in a folder are skipped and reported by every command that reads a folder of photos
(``eval`` on a folder benchmark, ``data bin``, ``data pack``, ``adapt``); ``--strict`` stops at the
first one with one line naming it (exit 2) and nothing is left behind. A truncated JPEG is named
as truncated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
PEOPLE = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay"]


def _cli(*argv):
    from maskinv.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny model and an LFW-layout folder of aligned crops whose Bob_0002.jpg is truncated and
    Cid_0001.png is a text file."""
    from maskinv.models import export_backbone, get_model
    from maskinv.utils.images import encode_image

    r = tmp_path_factory.mktemp("bad")
    export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0), r / "model.pt")
    rng = np.random.default_rng(0)
    folder = r / "faces"
    for name in PEOPLE:
        (folder / name).mkdir(parents=True)
        for j in (1, 2):
            img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            (folder / name / f"{name}_000{j}.jpg").write_bytes(encode_image(img, "jpg"))
    data = (folder / "Bob" / "Bob_0002.jpg").read_bytes()
    (folder / "Bob" / "Bob_0002.jpg").write_bytes(data[: len(data) // 2])
    (folder / "Cid" / "Cid_0001.jpg").write_bytes(b"this is not a photo\n")
    pairs = [f"{n} 1 2" for n in PEOPLE] + [f"{a} 1 {b} 2" for a, b in zip(PEOPLE, PEOPLE[1:] + PEOPLE[:1])]
    (folder / "pairs.txt").write_text("\n".join(pairs) + "\n")
    return r


def _one_error_line(err: str, cmd: str) -> str:
    lines = [x for x in err.strip().splitlines() if "error" in x]
    assert len(lines) == 1 and lines[0].startswith(f"maskinv {cmd}: error:"), err
    return lines[0]


def test_eval_on_a_folder_skips_bad_files_and_their_pairs(assets, tmp_path, capsys):
    out = tmp_path / "ev"
    assert _cli("eval", "--model", assets / "model.pt", "--bench", assets / "faces", "--aligned",
                "--protocols", "uu", "--no-plots", "--out", out) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable image(s)" in err and "Bob/Bob_0002.jpg: a truncated JPEG" in err
    doc = json.loads((out / "results.json").read_text())
    meta = json.dumps(doc)
    assert "Cid/Cid_0001.jpg" in meta and "truncated JPEG" in meta
    # Bob's and Cid's genuine pairs and the two impostor pairs using their bad images are dropped
    assert '"num_pairs_dropped": 4' in meta


def test_eval_strict_stops_with_one_line_and_writes_nothing(assets, tmp_path, capsys):
    out = tmp_path / "ev"
    assert _cli("eval", "--model", assets / "model.pt", "--bench", assets / "faces", "--aligned",
                "--protocols", "uu", "--no-plots", "--out", out, "--strict") == 2
    line = _one_error_line(capsys.readouterr().err, "eval")
    assert "Bob_0002.jpg: a truncated JPEG" in line and "--strict" in line
    assert not out.exists()


def test_data_bin_skips_bad_files(assets, tmp_path, capsys):
    assert _cli("data", "bin", assets / "faces", tmp_path / "f.bin", "--aligned") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_pairs"] == 8
    assert _cli("data", "bin", assets / "faces", tmp_path / "g.bin", "--aligned", "--strict") == 2
    assert "truncated JPEG" in _one_error_line(capsys.readouterr().err, "data bin")
    assert not (tmp_path / "g.bin").exists()


def test_data_pack_skips_bad_files_and_strict_leaves_nothing(assets, tmp_path, capsys):
    from maskinv.data.recordio import RecordIODataset

    assert _cli("data", "pack", assets / "faces", tmp_path / "rec") == 0
    cap = capsys.readouterr()
    info = json.loads(cap.out)
    assert info["num_images"] == 10 and len(RecordIODataset(tmp_path / "rec")) == 10
    assert sorted(s["image"] for s in info["skipped"]) == ["Bob/Bob_0002.jpg", "Cid/Cid_0001.jpg"]
    assert "skipped Bob/Bob_0002.jpg: a truncated JPEG" in cap.err
    assert _cli("data", "pack", assets / "faces", tmp_path / "rec2", "--strict") == 2
    _one_error_line(capsys.readouterr().err, "data pack")
    assert not (tmp_path / "rec2").exists()


def test_adapt_skips_bad_files_and_strict_leaves_nothing(assets, tmp_path, capsys):
    fast = ["runtime.batch_size=4", "runtime.device=cpu", "runtime.threads=1", "runtime.progress=false",
            "precision.mode=fp32"]
    run = tmp_path / "run"
    assert _cli("adapt", "--teacher", assets / "model.pt", "--images", assets / "faces", "--aligned",
                "--out", run, "--max-steps", "1", *fast) == 0
    assert "skipped 2 unreadable file(s)" in capsys.readouterr().out
    man = json.loads((run / "data" / "manifest.json").read_text())
    assert man["num_images"] == 10 and len(man["skipped"]) == 2
    assert _cli("adapt", "--teacher", assets / "model.pt", "--images", assets / "faces", "--aligned",
                "--out", tmp_path / "run2", "--strict", *fast) == 2
    _one_error_line(capsys.readouterr().err, "adapt")
    assert not (tmp_path / "run2").exists()

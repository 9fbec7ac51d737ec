"""CLI: align, embed, verify (exit codes), calibrate, gallery, export onnx."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.cli import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    path = tmp_path_factory.mktemp("m") / "backbone.pt"
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=32, seed=11), path)
    return path


@pytest.fixture(scope="module")
def crop_files(tmp_path_factory):
    import cv2

    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("crops")
    paths = []
    for i, s in enumerate(rng.integers(0, 256, size=(4, 14, 14, 3), dtype=np.uint8)):
        img = cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
        p = d / f"c{i}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        paths.append(p)
    return paths


def test_verify_exit_codes_and_json(model_path, crop_files, capsys):
    a, b = str(crop_files[0]), str(crop_files[1])
    m = ["--model", str(model_path), "--aligned"]
    assert main(["verify", a, a, *m, "--threshold", "0.9"]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main(["verify", a, b, *m, "--threshold", "1.0", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is False and out["threshold"] == 1.0 and out["threshold_source"] == "explicit"
    assert main(["verify", a, str(crop_files[0].parent / "nope.png"), *m, "--threshold", "0.5"]) == 2
    assert "nope.png" in capsys.readouterr().err
    # no threshold and nothing calibrated: an error, not a made-up default
    assert main(["verify", a, b, *m]) == 2
    assert "calibrate" in capsys.readouterr().err
    assert main(["verify", a, b, *m, "--threshold", "0.5", "--fmr", "1e-3"]) == 2


def test_embed_writes_npy(model_path, crop_files, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    assert main(["embed", *map(str, crop_files), "--model", str(model_path), "--aligned", "--out", str(out)]) == 0
    emb = np.load(out)
    assert emb.shape == (4, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert "4 embeddings" in capsys.readouterr().out


def test_gallery_commands(model_path, crop_files, tmp_path, capsys):
    from maskinv.models import export_backbone, get_model

    db = str(tmp_path / "g.db")
    m = ["--model", str(model_path), "--aligned"]
    for i, p in enumerate(crop_files[:3]):
        assert main(["gallery", "add", db, f"person{i}", str(p), *m]) == 0
    assert main(["gallery", "list", db]) == 0
    assert "person2\t1" in capsys.readouterr().out
    assert main(["gallery", "search", db, str(crop_files[1]), "-k", "2", "--json", *m]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res[0]["matches"][0]["name"] == "person1" and len(res[0]["matches"]) == 2
    other = tmp_path / "other.pt"
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=32, seed=12), other)
    assert main(["gallery", "search", db, str(crop_files[1]), "--model", str(other), "--aligned"]) == 2
    assert "different models" in capsys.readouterr().err
    assert main(["gallery", "remove", db, "person0"]) == 0
    assert main(["gallery", "search", db, "x.png", *m]) == 2  # missing probe image


@pytest.mark.slow
def test_calibrate_then_verify_by_fmr(model_path, crop_files, tmp_path, capsys):
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.thresholds import read_thresholds, thresholds_path

    rng = np.random.default_rng(3)
    faces = [cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
             for s in rng.integers(0, 256, size=(20, 14, 14, 3), dtype=np.uint8)]
    imgs, same = [], []
    for i in range(40):
        a = faces[i % 20]
        g = i % 2 == 0
        b = np.clip(a.astype(int) + rng.integers(-5, 6, a.shape), 0, 255).astype(np.uint8) if g else faces[(i + 3) % 20]
        imgs += [cv2.imencode(".png", a[:, :, ::-1])[1].tobytes(), cv2.imencode(".png", b[:, :, ::-1])[1].tobytes()]
        same.append(g)
    bench = tmp_path / "b.bin"
    save_bin(bench, imgs, np.array(same))
    tp = thresholds_path(model_path)
    try:
        assert main(["calibrate", "--model", str(model_path), "--bench", str(bench), "--protocol", "uu",
                     "--fmr", "0.1", "--seed", "1"]) == 0
        assert "uu@0.1 threshold" in capsys.readouterr().out
        entry = read_thresholds(tp)["entries"]["uu@0.1"]
        assert entry["seed"] == 1 and entry["bench"]["num_pairs"] == 40
        code = main(["verify", str(crop_files[0]), str(crop_files[0]), "--model", str(model_path), "--aligned",
                     "--fmr", "0.1", "--protocol", "uu"])
        assert code == 0 and "calibrated at FMR 0.1" in capsys.readouterr().out
        assert main(["verify", str(crop_files[0]), str(crop_files[1]), "--model", str(model_path), "--aligned",
                     "--fmr", "0.01", "--protocol", "uu"]) == 2  # not calibrated at that FMR
    finally:
        tp.unlink(missing_ok=True)


def test_export_onnx_command(model_path, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", str(model_path), str(out)]) == 0
    line = capsys.readouterr().out
    assert "max cosine distance" in line and out.is_file()
    assert main(["export", "onnx", str(tmp_path / "missing.pt"), str(out)]) == 2


def test_align_command(tmp_path, capsys):
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), data.astronaut()[:, :, ::-1])
    out = tmp_path / "aligned.png"
    assert main(["align", str(photo), str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info) == 1 and len(info[0]["landmarks"]) == 5
    assert cv2.imread(str(out)).shape == (112, 112, 3)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((150, 150, 3), 128, np.uint8))
    assert main(["align", str(blank), str(tmp_path / "o.png")]) == 2
    assert "no face" in capsys.readouterr().err
    assert main(["align", str(photo), str(tmp_path / "many.png"), "--all"]) == 0
    assert (tmp_path / "many_0.png").is_file()

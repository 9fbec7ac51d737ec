"""`maskinv calibrate` for every model: folders and probe lists like `eval`, feasibility (pair
counts, destination) checked before anything is embedded, --thresholds PATH (dlib has no file)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32


def _cli(*argv):
    from maskinv.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny model, a 24-pair .bin of 112-px crops and a folder of 8 people x 3 crops with a probe list."""
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model
    from maskinv.utils.images import encode_image

    r = tmp_path_factory.mktemp("cal")
    export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0), r / "model.pt")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)
    imgs, same = [], []
    for i in range(24):
        a = faces[i % 12]
        g = i % 2 == 0
        b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8) if g else faces[(i + 5) % 12]
        imgs += [a, b]
        same.append(g)
    save_bin(r / "small.bin", [cv2.imencode(".png", im)[1].tobytes() for im in imgs], np.array(same))
    folder = r / "people"
    probes = []
    for p in range(8):
        base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        (folder / f"P{p}").mkdir(parents=True)
        for j in range(3):
            img = np.clip(base.astype(int) + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)
            (folder / f"P{p}" / f"P{p}_{j}.png").write_bytes(encode_image(img, "png"))
        probes.append(f"P{p}/P{p}_0.png")
    (r / "masked.txt").write_text("\n".join(probes) + "\n")
    return r


def _err_line(capsys, cmd="calibrate"):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"maskinv {cmd}: error:"), err
    return err[-1]


def test_infeasible_fmr_fails_before_any_embedding(assets, tmp_path, capsys, monkeypatch):
    from maskinv.evaluate import runner

    def no(*a, **k):
        raise AssertionError("embedded before the feasibility check")

    monkeypatch.setattr(runner, "score_benchmark", no)  # the one scoring path calibrate takes
    assert _cli("calibrate", "--model", assets / "model.pt", "--bench", assets / "small.bin", "--fmr", "1e-3",
                "--thresholds", tmp_path / "t.json") == 2
    line = _err_line(capsys)
    assert "needs >= 1,000 impostor comparisons" in line and "has 12 impostor and 12 genuine" in line
    assert not (tmp_path / "t.json").exists()


def test_a_model_without_a_file_needs_thresholds_path_before_embedding(assets, capsys, monkeypatch):
    pytest.importorskip("dlib")
    from maskinv.models import dlib_resnet

    monkeypatch.setattr(dlib_resnet.DlibRecognizer, "embed_aligned",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("embedded")))
    assert _cli("calibrate", "--model", "dlib", "--bench", assets / "small.bin", "--fmr", "0.1") == 2
    assert "pass --thresholds PATH" in _err_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_model_folder_is_refused_before_embedding(assets, tmp_path, capsys):
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(assets / "model.pt", ro / "model.pt")
    shutil.copy(assets / "model.json", ro / "model.json")
    ro.chmod(0o555)
    try:
        assert _cli("calibrate", "--model", ro / "model.pt", "--bench", assets / "small.bin", "--fmr", "0.1") == 2
        assert "not writable; pass --thresholds PATH" in _err_line(capsys)
    finally:
        ro.chmod(0o755)


@pytest.mark.slow
def test_dlib_calibrates_into_thresholds_path_and_verify_reads_it(assets, tmp_path, capsys):
    pytest.importorskip("dlib")
    t = tmp_path / "dlib.thresholds.json"
    assert _cli("calibrate", "--model", "dlib", "--bench", assets / "small.bin", "--fmr", "0.1",
                "--protocol", "uu", "--thresholds", t) == 0
    assert str(t) in capsys.readouterr().out
    entry = json.loads(t.read_text())["entries"]["uu@0.1"]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    from maskinv.data.bins import load_bin

    imgs, _ = load_bin(assets / "small.bin")
    a.write_bytes(imgs[0])
    b.write_bytes(imgs[1])
    rc = _cli("verify", a, b, "--model", "dlib", "--aligned", "--thresholds", t, "--protocol", "uu", "--fmr", "0.1",
              "--json")
    assert rc in (0, 1)
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == entry["threshold"] and out["threshold_source"] == "calibrated"


def test_a_folder_with_a_probe_list_calibrates_probe_ref(assets, tmp_path, capsys):
    t = tmp_path / "m.thresholds.json"
    assert _cli("calibrate", "--model", assets / "model.pt", "--bench", assets / "people", "--aligned",
                "--probe-list", assets / "masked.txt", "--fmr", "0.01", "--thresholds", t) == 0
    out = capsys.readouterr().out
    assert "probe_ref@0.01" in out and "16 genuine and 112 impostor comparisons" in out
    e = json.loads(t.read_text())["entries"]["probe_ref@0.01"]
    assert e["bench"]["num_impostor"] == 112 and e["fmr_achieved"] <= 0.01 and e["mask_kind"] is None
    # a folder without pairs.txt or probe list: one line, before embedding
    assert _cli("calibrate", "--model", assets / "model.pt", "--bench", assets / "people", "--aligned",
                "--fmr", "0.1", "--thresholds", tmp_path / "x.json") == 2
    assert "no pairs.txt" in _err_line(capsys)


@pytest.mark.slow
def test_sface_calibrates_into_thresholds_path(assets, tmp_path, capsys):
    """Any named model: no file of its own to store beside, so --thresholds PATH (checked first)."""
    from maskinv.errors import MaskinvError
    from maskinv.models.recognizer import is_named_model

    if not is_named_model("sface"):
        pytest.skip("sface is not a registered model here")
    try:
        from maskinv.models.sface import sface_weights_path

        sface_weights_path()
    except MaskinvError as e:
        pytest.skip(f"SFace weights not installed: {e}")
    assert _cli("calibrate", "--model", "sface", "--bench", assets / "small.bin", "--fmr", "0.1") == 2
    assert "pass --thresholds PATH" in _err_line(capsys)
    t = tmp_path / "sface.thresholds.json"
    assert _cli("calibrate", "--model", "sface", "--bench", assets / "small.bin", "--fmr", "0.1", "--protocol", "uu",
                "--thresholds", t) == 0
    assert "uu@0.1" in json.loads(t.read_text())["entries"]

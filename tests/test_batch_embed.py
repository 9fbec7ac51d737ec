"""Batches that survive a bad image (embed, gallery add/search; maskinv.api.embed_batch) and one
resize rule for aligned crops of another size than the model's (issue 16, items 9 and 13)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from maskinv.cli import main


@pytest.fixture(scope="module")
def model32(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    path = tmp_path_factory.mktemp("m32") / "backbone.pt"
    export_backbone(get_model("r18", width_mult=0.125, embedding_size=32, input_size=32, seed=3), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three 32 px crops, one 112 px crop, one corrupt 'image' and one blank photo."""
    import cv2

    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(5)
    out = {}
    for i in range(3):
        img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (32, 32), interpolation=cv2.INTER_CUBIC)
        out[f"c{i}"] = d / f"c{i}.png"
        cv2.imwrite(str(out[f"c{i}"]), img)
    big = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    out["big"] = d / "big.png"
    cv2.imwrite(str(out["big"]), big)
    out["bad"] = d / "broken.jpg"
    out["bad"].write_bytes(b"\xff\xd8 not really a jpeg")
    out["blank"] = d / "blank.png"
    cv2.imwrite(str(out["blank"]), np.full((160, 160, 3), 128, np.uint8))
    return out


def _m(model):
    return ["--model", str(model), "--aligned"]


# ------------------------------------------------------------------ library
def test_embed_batch_skips_and_names_misses(model32, files):
    from maskinv.api import embed_batch

    imgs = [str(files["c0"]), str(files["bad"]), str(files["c1"])]
    r = embed_batch(imgs, str(model32), aligned=True)
    assert r.embeddings.shape == (2, 32) and r.indices == [0, 2] and r.sources == [imgs[0], imgs[2]]
    assert len(r.misses) == 1 and r.misses[0].index == 1 and "broken.jpg" in r.misses[0].reason
    assert r.misses[0].kind == "unreadable" and r.summary() == "1 of 3 images skipped (1 unreadable)"
    # the kept rows are exactly what embedding the good images alone gives
    from maskinv.api import embed

    np.testing.assert_allclose(r.embeddings, embed([imgs[0], imgs[2]], str(model32), aligned=True), atol=1e-6)
    from maskinv.errors import DataFormatError

    with pytest.raises(DataFormatError, match="broken.jpg"):
        embed_batch(imgs, str(model32), aligned=True, on_error="raise")
    from maskinv.errors import ConfigError

    with pytest.raises(ConfigError, match="on_error"):
        embed_batch(imgs, str(model32), aligned=True, on_error="ignore")


def test_no_face_is_a_miss_not_the_end(model32, files):
    pytest.importorskip("dlib")
    import cv2
    from skimage import data

    from maskinv.api import embed_batch

    photo = files["blank"].parent / "astronaut.jpg"
    cv2.imwrite(str(photo), data.astronaut()[:, :, ::-1])
    r = embed_batch([str(files["blank"]), str(photo)], str(model32))
    assert r.indices == [1] and r.embeddings.shape == (1, 32)
    assert r.misses[0].kind == "no face" and "blank.png" in r.misses[0].reason


# ------------------------------------------------------------------ item 9: one resize rule
def test_aligned_crops_of_another_size_are_resized_with_one_note(model32, files, capsys):
    from maskinv.api import embed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = embed([str(files["big"]), str(files["big"]), str(files["c0"])], str(model32), aligned=True)
    notes = [w for w in caught if "resized" in str(w.message)]
    assert len(notes) == 1 and "2 of 3 aligned images (112x112)" in str(notes[0].message)
    assert "32x32" in str(notes[0].message)
    assert emb.shape == (3, 32)
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # same crop; batch position may move the last bits
    # the same numbers as the embedding core (evaluation) gives for the same crops
    import cv2

    from maskinv.api import load_model
    from maskinv.models.embedding import embed_images

    m = load_model(model32)
    crop = cv2.imread(str(files["big"]))[:, :, ::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = embed_images(m.module, np.ascontiguousarray(crop[None]), precision="fp32")
    np.testing.assert_allclose(emb[0], ref[0], atol=1e-5)
    # the CLI: verify accepts them (no "aligned input must be 32x32" refusal)
    a = str(files["big"])
    assert main(["verify", a, a, *_m(model32), "--threshold", "0.9"]) == 0
    assert "VERIFIED" in capsys.readouterr().out


# ------------------------------------------------------------------ item 13: the CLI
def test_embed_cli_goes_on_and_records_rows(model32, files, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    imgs = [str(files["c0"]), str(files["bad"]), str(files["c1"]), str(files["c2"])]
    assert main(["embed", *imgs, *_m(model32), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "skipped" in err[0] and "broken.jpg" in err[0]
    assert "1 of 4 images skipped" in err[1] and "3 rows written" in err[1]
    emb = np.load(out)
    assert emb.shape == (3, 32)
    rows = json.loads(out.with_suffix(".json").read_text())
    assert rows["rows"] == [imgs[0], imgs[2], imgs[3]] and rows["input_index"] == [0, 2, 3]
    assert rows["skipped"][0]["image"] == imgs[1] and rows["embedding_size"] == 32
    # --strict: the first bad image stops everything, one line, exit 2, nothing new written
    out2 = tmp_path / "strict.npy"
    assert main(["embed", *imgs, *_m(model32), "--out", str(out2), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0] and not out2.exists()
    # all good: exit 0, the sidecar lists every image
    assert main(["embed", imgs[0], imgs[2], *_m(model32), "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["skipped"] == []


def test_gallery_add_and_search_go_on(model32, files, tmp_path, capsys):
    db = tmp_path / "g.db"
    good, bad = str(files["c0"]), str(files["bad"])
    assert main(["gallery", "add", str(db), "ann", good, bad, str(files["c1"]), *_m(model32)]) == 1
    cap = capsys.readouterr()
    assert "added 2 template(s)" in cap.out and "broken.jpg" in cap.err
    # only bad images: nothing added, no gallery file created
    db2 = tmp_path / "none.db"
    assert main(["gallery", "add", str(db2), "bob", bad, *_m(model32)]) == 1
    assert not db2.exists() and "nothing added" in capsys.readouterr().err
    assert main(["gallery", "search", str(db), bad, good, "--json", *_m(model32)]) == 1
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res[0]["matches"] is None and "broken.jpg" in res[0]["error"]
    assert res[1]["matches"][0]["name"] == "ann"
    assert "1 of 2 images skipped" in cap.err
    assert main(["gallery", "search", str(db), bad, good, "--strict", *_m(model32)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    # help documents the exit codes
    assert main(["embed", "--help"]) == 0  # main returns exit codes (never raises SystemExit)
    assert "1 = some images skipped" in capsys.readouterr().out

"""Files written by release v1 (tests/data/compat_v1, made once by its make.py) still load with the
same fingerprints and values: an exported checkpoint + sidecar, its thresholds file, a gallery and
a teacher cache. A failure here means users' files broke: fix the code, never regenerate the data."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskinv.cli import main

V1 = Path(__file__).resolve().parent / "data" / "compat_v1"
EXPECTED = json.loads((V1 / "expected.json").read_text())
FP = EXPECTED["model"]["fingerprint"]
CROPS = [str(V1 / "crops" / f"c{i}.png") for i in range(4)]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def v1(tmp_path):
    """A writable copy (opening a gallery or a cache may touch its files; the fixtures stay pristine)."""
    dst = tmp_path / "compat v1"
    shutil.copytree(V1, dst)
    return dst


def test_fixture_set_is_small_and_complete():
    files = [p for p in V1.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 300 * 1024
    for rel in ("model.pt", "model.json", "model.thresholds.json", "gallery.db", "data/train.rec", "data/train.idx",
                "teacher_cache/cache.json", "teacher_cache/emb.bin", "teacher_cache/filled.bin", "make.py"):
        assert (V1 / rel).is_file(), rel


def test_v1_checkpoint_and_sidecar_load_with_the_same_fingerprint_and_embeddings(v1):
    import maskinv
    from maskinv.models.checkpoint import model_fingerprint, read_model_meta

    assert model_fingerprint(v1 / "model.pt") == FP
    assert read_model_meta(v1 / "model.pt") == EXPECTED["model"]["sidecar"]
    m = maskinv.load_model(v1 / "model.pt")
    assert m.fingerprint == FP and m.backend == "torch"
    assert (m.embedding_size, m.input_size) == (EXPECTED["model"]["embedding_size"], EXPECTED["model"]["input_size"])
    emb = maskinv.embed(CROPS, m, aligned=True)
    np.testing.assert_allclose(emb, np.asarray(EXPECTED["embeddings_flip"]), atol=2e-5)


def test_v1_thresholds_file_is_found_beside_the_model_and_gives_the_same_thresholds(v1):
    import maskinv
    from maskinv.thresholds import lookup, read_thresholds

    data = read_thresholds(v1 / "model.thresholds.json")
    assert data["model_fingerprint"] == FP
    m = maskinv.load_model(v1 / "model.pt")
    assert m.thresholds_file == v1 / "model.thresholds.json"
    for key, thr in EXPECTED["thresholds"].items():
        proto, fmr = key.split("@")
        assert lookup(m.thresholds_file, FP, fmr=float(fmr), protocol=proto)["threshold"] == thr
    r = maskinv.verify(CROPS[0], CROPS[1], m, fmr=0.1, protocol="uu", aligned=True)
    assert r.threshold == EXPECTED["thresholds"]["uu@0.1"]
    emb = np.asarray(EXPECTED["embeddings_flip"])
    assert r.score == pytest.approx(float(emb[0] @ emb[1]), abs=1e-4)
    assert r.verified == (r.score >= r.threshold)


def test_v1_gallery_opens_bound_to_the_model_and_answers_the_same(v1, capsys):
    import maskinv
    from maskinv.gallery import Gallery

    exp = EXPECTED["gallery"]
    emb = maskinv.embed(CROPS, v1 / "model.pt", aligned=True)
    with Gallery(v1 / "gallery.db", create=False) as g:
        assert g.fingerprint == exp["fingerprint"] == FP and g.embedding_size == exp["embedding_size"]
        assert [list(x) for x in g.identities()] == exp["identities"]
        g.check_model(FP, 32)
        hits = g.search(emb, k=2, fingerprint=FP)
    for h, (name, score) in zip(hits, exp["top"]):
        assert h[0].name == name and h[0].score == pytest.approx(score, abs=1e-4)
    assert main(["gallery", "search", str(v1 / "gallery.db"), CROPS[2], "--model", str(v1 / "model.pt"),
                 "--aligned", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["matches"][0]["name"] == "bob"


def test_v1_teacher_cache_is_reused_with_the_same_fingerprints(v1):
    import torch

    from maskinv.data.recordio import RecordIODataset
    from maskinv.train.distill import load_teacher
    from maskinv.preprocess import to_tensor
    from maskinv.train.teacher_cache import TeacherCache, data_fingerprint, teacher_fingerprint

    meta = EXPECTED["teacher_cache"]["meta"]
    assert json.loads((v1 / "teacher_cache" / "cache.json").read_text()) == meta
    teacher = load_teacher(v1 / "model.pt")
    assert teacher_fingerprint(teacher, extra="precision=fp32") == meta["teacher"]
    rec = v1 / "data" / "train.rec"  # git does not keep mtimes: restore the one the data fingerprint saw
    os.utime(rec, ns=(rec.stat().st_atime_ns, EXPECTED["teacher_cache"]["train_rec_mtime_ns"]))
    assert data_fingerprint(v1 / "data") == meta["data"]
    ds = RecordIODataset(v1 / "data")
    cache = TeacherCache(v1 / "teacher_cache", num_records=len(ds), embedding_size=meta["embedding_size"],
                         teacher_fp=meta["teacher"], data_fp=meta["data"], image_size=meta["image_size"])
    assert not cache.rebuilt and cache.fill_fraction() == 1.0  # the pre-pass filled every (record, flip)
    for i in range(len(ds)):
        img = ds[i][0]
        for fl in (0, 1):
            got, hit = cache.lookup(np.array([i]), np.array([fl]))
            assert hit[0]
            torch.testing.assert_close(got[0], teacher(to_tensor(img[:, ::-1] if fl else img))[0], rtol=1e-4, atol=2e-5)

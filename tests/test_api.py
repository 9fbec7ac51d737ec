"""Facade: load_model, embed, verify, compare and thresholds as data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import maskinv
from maskinv.api import FaceModel, load_model
from maskinv.errors import CheckpointError, ConfigError, DataFormatError, ModelMismatchError
from maskinv.thresholds import entry_key, lookup, read_thresholds, thresholds_path, write_entry


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    torch.manual_seed(0)  # not used by get_model(seed=...), kept for foreign code paths
    m = get_model("r18", width_mult=0.125, embedding_size=32, seed=3)
    path = tmp_path_factory.mktemp("model") / "backbone.pt"
    export_backbone(m, path)
    return path


@pytest.fixture(scope="module")
def model(exported):
    return load_model(exported)


@pytest.fixture
def crops(rng):
    # smooth random "faces": low-res noise upsampled, so flips and re-encoding matter little
    import cv2

    small = rng.integers(0, 256, size=(6, 14, 14, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC) for s in small])


def test_load_export_and_bare_pth_agree(exported, model, tmp_path, crops):
    from maskinv.models import model_fingerprint

    assert model.backend == "torch" and model.arch == "r18"
    assert model.embedding_size == 32 and model.input_size == 112
    assert model.fingerprint == model_fingerprint(exported)
    # an InsightFace-style bare state dict saved from DDP ("module." prefix), arch given by name
    sd = {f"module.{k}": v for k, v in torch.load(exported, weights_only=True).items()}
    pth = tmp_path / "295672backbone.pth"
    torch.save(sd, pth)
    other = load_model(pth, arch="r18", width_mult=0.125, embedding_size=32)
    np.testing.assert_allclose(other.embed_aligned(crops), model.embed_aligned(crops), atol=1e-6)
    assert other.fingerprint != model.fingerprint  # different file, different fingerprint
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="precision"):
        load_model(exported, precision="fp8")


def test_embed_inputs_normalised_and_equivalent(model, crops, tmp_path):
    import cv2

    ok, png = cv2.imencode(".png", crops[0][:, :, ::-1])
    (tmp_path / "c.png").write_bytes(png.tobytes())
    ref = maskinv.embed(crops[0], model, aligned=True)
    assert ref.shape == (1, 32) and ref.dtype == np.float32
    assert np.linalg.norm(ref) == pytest.approx(1.0, abs=1e-5)
    for src in (tmp_path / "c.png", str(tmp_path / "c.png"), png.tobytes()):
        np.testing.assert_allclose(maskinv.embed(src, model, aligned=True), ref, atol=1e-6)
    batch = maskinv.embed(crops, model, aligned=True)
    assert batch.shape == (6, 32)
    np.testing.assert_allclose(batch[0], ref[0], atol=1e-5)
    listed = maskinv.embed(list(crops[:3]), model, aligned=True, batch_size=2)  # batching is invisible
    np.testing.assert_allclose(listed, batch[:3], atol=1e-5)


@pytest.mark.slow
def test_flip_test_is_mirror_invariant(model, crops):
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    a = maskinv.embed(crops, model, aligned=True, flip=True)
    b = maskinv.embed(mirrored, model, aligned=True, flip=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = maskinv.embed(crops, model, aligned=True, flip=False)
    d = maskinv.embed(mirrored, model, aligned=True, flip=False)
    assert np.abs(c - d).max() > 1e-3  # without the flip test the mirror changes the embedding
    # flip test = normalize(f(x) + f(mirror x)) of the raw (unnormalised) outputs
    raw = model.forward(crops) + model.forward(mirrored)
    np.testing.assert_allclose(a, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-4)


def test_bf16_close_to_fp32(exported, model, crops):
    bf = load_model(exported, precision="bf16")
    cos = (bf.embed_aligned(crops) * model.embed_aligned(crops)).sum(1)
    assert cos.min() > 0.98


def test_aligned_input_checked(model):
    # another size: resized to the model's input with one note (the evaluation rule, issue 16 item 9)
    with pytest.warns(UserWarning, match="resized 1 of 1 aligned images .112x100. to the model's input size 112x112"):
        assert maskinv.embed(np.zeros((100, 112, 3), np.uint8), model, aligned=True).shape[0] == 1
    with pytest.raises(DataFormatError, match="dtype"):
        maskinv.embed(np.zeros((112, 112, 3), np.float32), model, aligned=True)


def test_compare():
    a, b = np.array([3.0, 4.0]), np.array([4.0, 3.0])
    assert maskinv.compare(a, b) == pytest.approx(24 / 25)
    np.testing.assert_allclose(maskinv.compare(np.stack([a, b]), np.stack([b, b])), [24 / 25, 1.0])
    with pytest.raises(DataFormatError, match="sizes differ"):
        maskinv.compare(a, np.ones(3))
    with pytest.raises(DataFormatError, match="zeros"):
        maskinv.compare(a, np.zeros(2))


def test_compare_gives_the_scores_evaluation_and_verify_compute(model, crops, rng):
    """``maskinv.compare`` on embeddings = ``models.embedding.pair_scores`` (the score of a pair in
    evaluation, calibration and ``verify``) on the same embeddings, whatever their scale."""
    from maskinv.evaluate import protocols
    from maskinv.models.embedding import l2_normalize, pair_scores

    assert protocols.pair_scores is pair_scores  # evaluation scores with this one function
    emb = maskinv.embed(crops, model, aligned=True)  # float32, unit rows: what eval and verify score
    a, b = emb[[0, 1, 2, 3, 4]], emb[[1, 2, 3, 4, 5]]
    np.testing.assert_allclose(maskinv.compare(a, b), pair_scores(a, b), rtol=0, atol=1e-6)
    assert maskinv.compare(a[0], b[0]) == pytest.approx(float(pair_scores(a[:1], b[:1])[0]), abs=1e-6)
    np.testing.assert_allclose(maskinv.compare(a[0], b), pair_scores(np.repeat(a[:1], 5, 0), b), rtol=0, atol=1e-6)
    raw = rng.normal(size=(2, 5, 32)) * rng.uniform(0.01, 100, size=(2, 5, 1))  # any scale
    np.testing.assert_allclose(maskinv.compare(raw[0], raw[1]), pair_scores(l2_normalize(raw[0]), l2_normalize(raw[1])),
                               rtol=0, atol=1e-6)
    r = maskinv.verify(crops[2], crops[3], model, threshold=0.0, aligned=True)
    assert r.score == pytest.approx(float(maskinv.compare(emb[2], emb[3])), abs=1e-6)


def test_verify_explicit_threshold(model, crops):
    r = maskinv.verify(crops[0], crops[0], model, threshold=0.5, aligned=True)
    assert r.verified and r.score == pytest.approx(1.0, abs=1e-5)
    assert r.threshold_source == "explicit" and r.provenance is None
    assert r.faces == [None, None] and r.model_fingerprint == model.fingerprint
    assert {"embed_ms", "total_ms"} <= set(r.timings)
    s = float(maskinv.compare(*maskinv.embed(crops[:2], model, aligned=True)))
    r2 = maskinv.verify(crops[0], crops[1], model, threshold=s + 1e-4, aligned=True)
    assert not r2.verified and r2.score == pytest.approx(s, abs=1e-5)
    assert maskinv.verify(crops[0], crops[1], model, threshold=s - 1e-4, aligned=True).verified
    json.loads(r2.to_json())
    with pytest.raises(ConfigError, match="either"):
        maskinv.verify(crops[0], crops[1], model, threshold=0.3, fmr=1e-3, aligned=True)


def test_no_threshold_is_an_error_not_a_default(model, crops):
    assert not thresholds_path(model.path).exists()
    with pytest.raises(ConfigError, match="calibrate"):
        maskinv.verify(crops[0], crops[1], model, aligned=True)


def _entry(protocol, fmr, thr, flip=True):
    return {"protocol": protocol, "fmr": fmr, "threshold": thr, "flip": flip, "bench": {"path": "x.bin"}}


def test_thresholds_file_lookup_and_fingerprint(tmp_path):
    path = tmp_path / "m.thresholds.json"
    write_entry(path, "f" * 64, _entry("mu", 1e-3, 0.40))
    write_entry(path, "f" * 64, _entry("mu", 1e-4, 0.55))
    write_entry(path, "f" * 64, _entry("uu", 1e-3, 0.30))
    data = read_thresholds(path)
    assert set(data["entries"]) == {entry_key("mu", 1e-3), entry_key("mu", 1e-4), entry_key("uu", 1e-3)}
    assert lookup(path, "f" * 64, fmr=0.001)["threshold"] == 0.40
    assert lookup(path, "f" * 64, fmr=1e-3, protocol="uu")["threshold"] == 0.30
    assert lookup(path, "f" * 64)["threshold"] == 0.55  # default: smallest calibrated FMR
    with pytest.raises(ConfigError, match="mu@0.01"):
        lookup(path, "f" * 64, fmr=1e-2)
    with pytest.raises(ModelMismatchError, match="recalibrate"):
        lookup(path, "e" * 64, fmr=1e-3)
    with pytest.raises(ModelMismatchError):
        write_entry(path, "e" * 64, _entry("mu", 1e-3, 0.1))
    with pytest.raises(ModelMismatchError, match="flip"):
        lookup(path, "f" * 64, fmr=1e-3, flip=False)
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="unreadable"):
        read_thresholds(path)


def test_verify_uses_calibrated_threshold_with_provenance(exported, crops):
    model = load_model(exported)
    tp = thresholds_path(exported)
    try:
        write_entry(tp, model.fingerprint, _entry("mu", 1e-3, 0.25))
        r = maskinv.verify(crops[0], crops[1], model, fmr=1e-3, aligned=True)
        assert r.threshold == 0.25 and r.threshold_source == "calibrated"
        assert r.provenance["bench"]["path"] == "x.bin" and r.provenance["file"] == str(tp)
        assert r.verified == (r.score >= 0.25)
        r0 = maskinv.verify(crops[0], crops[1], model, aligned=True)  # neither given: stored one
        assert r0.threshold == 0.25
        with pytest.raises(ModelMismatchError, match="flip"):
            maskinv.verify(crops[0], crops[1], model, fmr=1e-3, aligned=True, flip=False)
    finally:
        tp.unlink()


@pytest.mark.slow
def test_calibrate_matches_api_scores(exported, crops, tmp_path, rng):
    """calibrate's threshold is the smallest one with FMR <= target on scores that equal
    the facade's own embeddings (same preprocessing, same flip test)."""
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.thresholds import calibrate

    n_pairs = 40
    faces = [cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
             for s in rng.integers(0, 256, size=(20, 14, 14, 3), dtype=np.uint8)]
    imgs = []
    issame = []
    for i in range(n_pairs):
        a = faces[i % 20]
        same = i % 2 == 0
        b = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8) if same \
            else faces[(i + 7) % 20]  # always another face
        imgs += [a, b]
        issame.append(same)
    encoded = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in imgs]
    bench = tmp_path / "bench.bin"
    save_bin(bench, encoded, np.array(issame))
    model = load_model(exported)
    tp = thresholds_path(exported)
    try:
        entry = calibrate(model, bench, fmr=0.05, protocol="uu", seed=0)
        emb = maskinv.embed(np.stack(imgs), model, aligned=True)
        scores = (emb[0::2] * emb[1::2]).sum(1)
        imp = scores[~np.array(issame)]
        thr = entry["threshold"]
        assert (imp >= thr).mean() <= 0.05 + 1e-12
        # the smallest such: the threshold is an observed score and the next lower one exceeds the FMR
        assert np.abs(scores - thr).min() < 1e-4
        below = scores[scores < thr - 1e-4]
        assert below.size and (imp >= below.max()).mean() > 0.05
        assert entry["bench"]["num_pairs"] == n_pairs and len(entry["bench"]["sha256"]) == 64
        assert entry["model_fingerprint"] == model.fingerprint and entry["flip"] is True
        stored = lookup(tp, model.fingerprint, fmr=0.05, protocol="uu")
        assert stored["threshold"] == thr
        r = maskinv.verify(imgs[0], imgs[1], model, fmr=0.05, protocol="uu", aligned=True)
        assert r.score == pytest.approx(scores[0], abs=1e-4) and r.verified == (r.score >= thr)
        with pytest.raises(ConfigError, match="impostor"):
            calibrate(model, bench, fmr=1e-3, protocol="uu")
    finally:
        tp.unlink(missing_ok=True)


def test_verify_photos_end_to_end(model):
    pytest.importorskip("dlib")
    from skimage import data

    photo = data.astronaut()
    r = maskinv.verify(photo, np.ascontiguousarray(photo[:, ::-1]), model, threshold=0.5)
    assert len(r.faces) == 2 and all(len(f["landmarks"]) == 5 for f in r.faces)
    assert r.faces[0]["box"][0] < 256 < r.faces[1]["box"][2]
    assert r.timings["detect_align_ms"] > 0
    from maskinv.align import align_faces

    crop = align_faces(photo)[0].crop
    np.testing.assert_allclose(maskinv.embed(photo, model), maskinv.embed(crop, model, aligned=True), atol=1e-6)
    from maskinv.errors import NoFaceError

    with pytest.raises(NoFaceError, match="bytes input #1"):
        import cv2

        blank = cv2.imencode(".png", np.full((120, 120, 3), 200, np.uint8))[1].tobytes()
        maskinv.embed([photo, blank], model)


def test_in_memory_module_model(crops):
    from maskinv.models import get_model

    m = load_model(get_model("r18", width_mult=0.25, embedding_size=16, seed=1))
    assert isinstance(m, FaceModel) and m.path is None and len(m.fingerprint) == 64
    with pytest.raises(ConfigError, match="threshold"):
        maskinv.verify(crops[0], crops[1], m, aligned=True)

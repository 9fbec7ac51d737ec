"""SynthFaces: determinism, exact landmarks, sizes, dataset layout."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.constants import template_for_size
from maskinv.data.synth import (
    five_points,
    generate_dataset,
    render_faces,
    sample_identity,
)
from maskinv.errors import ConfigError


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_same_seed_same_bytes_any_workers(tmp_path):
    kw = dict(identities=7, images_per_identity=10, size=32, val_identities=3, val_pairs=4)
    a = generate_dataset(tmp_path / "a", seed=5, **kw)
    generate_dataset(tmp_path / "b", seed=5, workers=2, **kw)  # 70 images: the pool is used
    generate_dataset(tmp_path / "c", seed=6, **kw)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    for name in ("train.rec", "train.idx", "property", "landmarks.npy", "synth_val.bin", "synth_val_landmarks.npy"):
        assert fa[name] == fb[name], name
    assert fa["train.rec"] != fc["train.rec"]
    assert a["num_images"] == 70 and a["num_pairs"] == 4


def test_dataset_layout(tmp_path):
    from maskinv.data.bins import decode_bin
    from maskinv.data.recordio import RecordIODataset

    generate_dataset(tmp_path, identities=4, images_per_identity=3, seed=1, size=48, val_identities=3, val_pairs=6)
    ds = RecordIODataset(tmp_path)
    assert ds.layout == "insightface" and len(ds) == 12 and ds.num_classes == 4
    assert ds.image_size == (48, 48)
    assert ds.labels.tolist() == [k // 3 for k in range(12)]
    assert ds.identity_range(2) == (7, 10)
    img, label = ds[5]
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8 and label == 1
    lms = np.load(tmp_path / "landmarks.npy")
    assert lms.dtype == np.float32 and lms.shape == (1 + 12 + 4, 68, 2)
    assert np.isnan(lms[0]).all() and np.isnan(lms[13:]).all() and np.isfinite(lms[1:13]).all()
    # landmarks are those of the stored image: the renderer reproduces record 5 exactly
    _, lm = render_faces([1], seed=1, image_indices=[1], size=48)
    np.testing.assert_allclose(lms[5], lm[0])
    vimg, issame = decode_bin(tmp_path / "synth_val.bin")
    assert vimg.shape == (12, 48, 48, 3) and issame.tolist() == [True, False] * 3
    assert np.load(tmp_path / "synth_val_landmarks.npy").shape == (12, 68, 2)


def _nearest(pixel, colours):
    return int(np.argmin([np.abs(pixel.astype(float) - np.asarray(c, float)).sum() for c in colours]))


def test_landmarks_on_drawn_features():
    ids = np.repeat(np.arange(12), 2)
    idx = np.tile(np.arange(2), 12)
    imgs, lms = render_faces(ids, seed=3, image_indices=idx, size=224, clean=True)  # big: few edge pixels
    for img, lm, i in zip(imgs, lms, ids):
        p = sample_identity(3, int(i)).params
        skin, lip = p["skin"], p["lip_rgb"]
        mouth = [lip, lip * 0.55, (40, 15, 20), (228, 222, 205)]  # lips, lip line, open mouth, teeth
        for a, b in ((48, 54), (54, 48)):  # mouth corners: the lips start right there
            u = (lm[b] - lm[a]) / np.linalg.norm(lm[b] - lm[a])
            hits = [_nearest(img[int(round(q[1])), int(round(q[0]))], [skin] + mouth) != 0
                    for q in (lm[a] + u * t for t in (1.0, 2.0, 3.0, 4.0))]  # within 2 template px
            assert any(hits), (i, a)
        for base in (36, 42):  # eye centres: iris/pupil, darker than the skin
            c = lm[base : base + 6].mean(0)
            assert img[int(round(c[1])), int(round(c[0]))].astype(int).sum() < skin.sum() - 60
        # upper lip middle (between 51 and 62) is lip-coloured
        q = (lm[51] + lm[62]) / 2
        assert _nearest(img[int(round(q[1])), int(round(q[0]))], [skin, lip, lip * 0.55]) != 0


def test_alignment_matches_template_and_sizes():
    ids = np.arange(40)
    _, lm112 = render_faces(ids, seed=0, size=112)
    _, lm64 = render_faces(ids, seed=0, size=64)
    np.testing.assert_allclose(lm64, lm112 * (64 / 112), atol=1e-4)
    five = five_points(lm112)
    err = np.abs(five.mean(0) - template_for_size(112))
    assert err.max() < 2.0  # detector noise averages out; face proportions differ a little
    assert np.abs(five - template_for_size(112)).max() > 0.5  # but each image is jittered
    inner = lm112[:, 17:]  # brows, eyes, nose, mouth are inside the crop (the chin may be cut)
    assert ((inner >= 0) & (inner <= 111)).all()


def test_difficulty_scales_variation():
    ids = np.repeat(np.arange(4), 6)
    idx = np.tile(np.arange(6), 4)
    _, easy = render_faces(ids, seed=2, image_indices=idx, difficulty="easy")
    _, hard = render_faces(ids, seed=2, image_indices=idx, difficulty="hard")

    def spread(lm):
        per_id = lm.reshape(4, 6, 68, 2)
        return float(per_id.std(1).mean())

    assert spread(hard) > 1.5 * spread(easy)
    a, _ = render_faces([0, 1], seed=2, difficulty=0.0)
    b, _ = render_faces([0, 1], seed=2, difficulty=0.0)
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="difficulty"):
        render_faces([0], difficulty="insane")
    with pytest.raises(ConfigError):
        generate_dataset("/nonexistent-never-written", identities=0, images_per_identity=1, seed=0)


def test_identity_independent_of_count():
    a = sample_identity(9, 17)
    b = sample_identity(9, 17)
    c = sample_identity(9, 18)
    np.testing.assert_array_equal(a.shape, b.shape)
    assert not np.array_equal(a.shape, c.shape)


def test_render_bytes_pinned():
    """Rendered pixels and landmarks are pinned: a refactor of the render steps must not
    change a single byte (hash from commit e458b11, before data/synth.py became a package).
    An OpenCV upgrade that changes anti-aliased drawing also shows up here."""
    import hashlib

    h = hashlib.sha256()
    for size, diff, clean, jpeg in ((40, "default", False, False), (112, "hard", False, True), (64, 1.0, True, False)):
        imgs, lms = render_faces(np.array([0, 1, 2, 5, 5]), seed=7, image_indices=[0, 1, 2, 3, 9], size=size,
                                 difficulty=diff, clean=clean, jpeg=jpeg)
        h.update(imgs.tobytes())
        h.update(lms.tobytes())
    assert h.hexdigest() == "8954ace52997599edf27e57d20d80ae398eb39277207bd5f17edc9d69f16377e"


def test_render_faces_length_mismatch_is_config_error():
    with pytest.raises(ConfigError, match="3 identities but 2 image indices"):
        render_faces([0, 1, 2], image_indices=[0, 1], size=32)

"""The service's mask classifier (maskinv.masks.detect) and its training/measurement helpers
(benchmarks/train_mask_classifier.py: procedural hard negatives; benchmarks/serve_rmfd.py: the
person-clustered bootstrap of the rmfd_test measurement)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the benchmarks package lives at the repository root
    sys.path.insert(0, str(REPO))


def _face_crop() -> np.ndarray:
    """scikit-image's astronaut (public domain), detected and aligned to the 112 ArcFace crop."""
    from skimage import data

    from maskinv.align import get_detector, warp_to_template

    img = data.astronaut()
    faces = get_detector().detect(img)
    if not faces:
        pytest.skip("no face detector weights here")
    return warp_to_template(img, faces[0].landmarks, 112)[0]


def test_shipped_classifier_is_small_hashed_and_says_where_it_came_from():
    from maskinv.masks.detect import DEFAULT_WEIGHTS, load_mask_classifier
    from maskinv.utils.hashing import file_sha256

    assert DEFAULT_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    side = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert side["sha256"] == file_sha256(DEFAULT_WEIGHTS)
    clf = load_mask_classifier()  # checks the sha256 itself
    assert 0 < clf.unmasked_below <= clf.masked_at < 1
    assert "rmfd_dev" in side["trained_on"]["splits"] and "rmfd_test" not in json.dumps(side["trained_on"])
    assert side["made_by"].startswith("python -m benchmarks.")
    v = side["validation"]
    assert v["rule"] and 0 <= v["false_masked"] <= 1 and v["photos"] == v["real_masked"] + v["real_unmasked"] + v["detection_failures"]


def test_shipped_sidecar_matches_its_weights_recipe_cut_and_splits():
    """The sidecar's recipe, input side, cut and data hashes agree with the weights and the repository."""
    import torch

    from benchmarks.serve_rmfd import SPLITS
    from benchmarks.train_mask_classifier import RECIPES
    from maskinv.masks.detect import DEFAULT_WEIGHTS, build_net, load_mask_classifier
    from maskinv.utils.hashing import file_sha256

    side = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    clf = load_mask_classifier()
    r = side["recipe"]
    assert {k: r[k] for k in RECIPES[r["name"]]} == RECIPES[r["name"]]  # the recipe as the training script has it
    assert clf.input_side == side["input_side"] == r["side"]
    state = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == side["params"]
    assert set(state) == set(build_net().state_dict())
    assert side["masked_at"] == pytest.approx(side["validation"]["masked_at"] if "masked_at" in side["validation"]
                                              else clf.masked_at)
    assert side["validation"]["recipe"] == r["name"]
    for name, digest in side["data"]["splits_sha256"].items():  # trained on the splits in this repository
        assert file_sha256(SPLITS / name) == digest, name
    n = side["data"]["training_set_shape"][0]
    assert n == sum(v for k, v in side["trained_on"].items() if isinstance(v, int) and k != "rmfd_dev_people")
    choice = side["recipe_choice"]  # the shipped recipe is the one the pre-declared rule picks on dev
    cands = {k: v for k, v in choice.items() if k in RECIPES}
    best = max(cands, key=lambda k: (cands[k]["accuracy_counting_detection_failures"], -cands[k]["false_masked_count"]))
    assert r["name"] == best and cands[best]["masked_at"] == pytest.approx(clf.masked_at)


def test_training_recipe_v2_at_another_side_round_trips(tmp_path):
    """augment v2 + bf16 autocast + an 80 px input train, save and load with their side; bad settings fail."""
    import torch

    from maskinv.errors import CheckpointError, DataFormatError
    from maskinv.masks.detect import MaskClassifier, _augment, load_mask_classifier, prepare, train_classifier

    g = np.random.default_rng(0)
    x = g.integers(0, 256, (24, 112, 112, 3), dtype=np.uint8)
    x[12:, 70:] = 230  # "masked": a bright lower half
    y = np.r_[np.zeros(12), np.ones(12)]
    net = train_classifier(x, y, epochs=1, batch_size=12, side=80, augment="v2", bf16=True)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    clf = MaskClassifier(net, 0.6, 0.3, input_side=80)
    path = clf.save(tmp_path / "m.pt")
    back = load_mask_classifier(path)
    assert back.input_side == 80 and json.loads((tmp_path / "m.json").read_text())["input_side"] == 80
    assert np.allclose(back.predict_proba(x[:3]), clf.predict_proba(x[:3]))
    a = _augment(prepare(x, 56), torch.Generator().manual_seed(1), "v2")
    b = _augment(prepare(x, 56), torch.Generator().manual_seed(1), "v2")
    assert a.shape == (24, 3, 56, 56) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    with pytest.raises(DataFormatError, match="augmentation"):
        train_classifier(x, y, epochs=1, augment="v9")
    with pytest.raises(CheckpointError, match="input side"):
        MaskClassifier(net, 0.6, 0.3, input_side=8)


def test_hard_colour_masks_cover_the_lower_face_in_the_missed_colours():
    from benchmarks.train_mask_classifier import HARD_COLOURS, hard_colour_masks

    base = np.full((6, 112, 112, 3), 128, np.uint8)
    base[:, ::5] = 60
    a, b = hard_colour_masks(base, 3), hard_colour_masks(base, 3)
    assert np.array_equal(a, b) and a.shape == base.shape
    changed = np.any(a != base, axis=3)
    assert changed[:, 95:105, 40:72].mean() > 0.9  # over the mouth and chin
    assert changed[:, :35].mean() < 0.02  # forehead and eyebrows stay
    assert len(HARD_COLOURS) >= 4


def test_shipped_classifier_on_a_real_face_masked_unmasked_and_occluded():
    from benchmarks.train_mask_classifier import HARD_KINDS, occlude
    from maskinv.masks import apply_mask
    from maskinv.masks.detect import load_mask_classifier

    clf = load_mask_classifier()
    crop = _face_crop()
    assert clf.decide(float(clf.predict_proba(crop)[0])) == "unmasked"
    masked = np.stack([apply_mask(crop, None, s).image for s in range(8)])
    assert (clf.predict_proba(masked) >= clf.masked_at).sum() >= 7
    g = np.random.default_rng(0)
    occluded = np.stack([occlude(crop, g, k) for k in HARD_KINDS for _ in range(3)])
    p = clf.predict_proba(occluded)
    assert (p >= clf.masked_at).sum() <= 1, [(k, round(float(v), 3)) for k, v in zip([k for k in HARD_KINDS for _ in range(3)], p)]


def test_occluders_are_not_masks_and_leave_the_rest_of_the_face():
    from benchmarks.train_mask_classifier import OCCLUDERS, hard_negatives, occlude

    g = np.random.default_rng(1)
    base = np.full((112, 112, 3), 180, np.uint8)
    base[::7] = 90  # some texture, so a changed pixel is visible
    for k in OCCLUDERS:
        out = occlude(base, g, k)
        assert out.shape == base.shape and out.dtype == np.uint8
        assert not np.array_equal(out, base), k
        changed = np.any(out != base, axis=2)
        rows = np.flatnonzero(changed.any(axis=1))
        if k == "sunglasses":  # the eye band only: mouth and chin stay bare
            assert rows.max() < 75
        if k in ("scarf_chin", "cut_off"):  # below the mouth corners (y ~ 92) only
            assert rows.min() >= 80
    assert np.array_equal(hard_negatives(np.stack([base] * 3), 4), hard_negatives(np.stack([base] * 3), 4))
    with pytest.raises(ValueError, match="unknown kind"):
        occlude(base, g, "balaclava")


def test_person_bootstrap_is_wider_when_errors_cluster_in_people():
    from benchmarks.serve_rmfd import person_bootstrap

    person = np.repeat([f"p{i}" for i in range(20)], 10)
    spread = np.ones(200, bool)
    spread[::10] = False  # one error per person
    clustered = np.ones(200, bool)
    clustered[:20] = False  # all errors in two people
    counted = np.ones(200, bool)
    a = person_bootstrap(person, {"acc": (spread, counted)}, n_boot=500)["acc"]
    b = person_bootstrap(person, {"acc": (clustered, counted)}, n_boot=500)["acc"]
    assert a["point"] == b["point"] == pytest.approx(0.9)
    assert a["ci95"][1] - a["ci95"][0] == pytest.approx(0.0)  # every person is 9/10: no spread between people
    assert b["ci95"][0] < 0.85 and b["ci95"][1] > 0.95
    # the denominator is resampled with the people: a rate over a subset (unmasked photos only)
    sub = np.zeros(200, bool)
    sub[100:] = True
    c = person_bootstrap(person, {"rate": (~clustered, sub)}, n_boot=200)["rate"]
    assert c["point"] == 0.0 and c["ci95"] == [0.0, 0.0]


def test_lower_face_colour_names_the_mask_colour():
    from benchmarks.mask_classifier_tools import lower_face_colour

    crop = np.full((112, 112, 3), (200, 160, 130), np.uint8)  # skin
    assert lower_face_colour(crop) == "coloured/skin"
    for rgb, name in (((30, 30, 34), "dark"), ((120, 120, 124), "grey"), ((228, 228, 226), "white/light")):
        c = crop.copy()
        c[78:110, 28:84] = rgb
        assert lower_face_colour(c) == name, rgb


def test_paired_bootstrap_of_a_difference_between_two_classifiers():
    from benchmarks.mask_classifier_tools import _paired

    person = np.repeat([f"p{i}" for i in range(20)], 10)
    a = np.ones(200, bool)
    a[::10] = False  # A: one error per person
    counted = np.ones(200, bool)
    same = _paired(person, {"acc": (a, a.copy(), counted)}, n_boot=300)["acc"]
    assert same["b_minus_a"] == 0.0 and same["ci95"] == [0.0, 0.0]
    b = np.ones(200, bool)  # B: right everywhere, +0.1 for every person
    up = _paired(person, {"acc": (a, b, counted)}, n_boot=300)["acc"]
    assert up["b_minus_a"] == pytest.approx(0.1) and up["ci95"] == pytest.approx([0.1, 0.1])
    c = a.copy()
    c[:10] = True  # B fixes one person's error only: the interval must include 0
    one = _paired(person, {"acc": (a, c, counted)}, n_boot=1000)["acc"]
    assert one["a"] == 180 and one["b"] == 181 and one["ci95"][0] == 0.0 < one["ci95"][1]

"""MTCNN backend: weights, masked-face recall on real photos, tight crops, several faces,
fallback to dlib without the weights, and folder alignment."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from maskinv.align import registry
from maskinv.align import mtcnn as mt
from maskinv.errors import ConfigError

needs_weights = pytest.mark.skipif(mt.mtcnn_weights_dir() is None,
                                   reason=f"MTCNN weights not installed ({mt.INSTALL_HINT})")


@pytest.fixture(scope="module")
def photos():
    from matplotlib import cbook
    from skimage import data

    from maskinv.align import read_image

    grace = read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return {"astronaut": data.astronaut(), "grace_hopper": grace}


@pytest.fixture(scope="module")
def det():
    if mt.mtcnn_weights_dir() is None:
        pytest.skip(f"MTCNN weights not installed ({mt.INSTALL_HINT})")
    from maskinv.align import get_detector

    return get_detector()  # the default


def _eye_error(face, ref_landmarks) -> float:
    """Mean eye-centre error as a fraction of the reference eye-to-eye distance."""
    iod = np.linalg.norm(ref_landmarks[1] - ref_landmarks[0])
    return float(np.linalg.norm(face.landmarks[:2] - ref_landmarks[:2], axis=1).mean() / iod)


def _mask_photo(img, landmarks, seed, kind, **pin):
    from maskinv.masks import mask_photo

    return mask_photo(img, landmarks, seed, kind, **pin).image


# ----------------------------------------------------------------------------- nets
@needs_weights
def test_weights_load_strictly_into_our_modules():
    import torch

    nets = mt.load_mtcnn_nets()
    d = mt.mtcnn_weights_dir()
    for net, fname in zip(nets, ("pnet.pt", "rnet.pt", "onet.pt")):
        sd = torch.load(d / fname, map_location="cpu", weights_only=True)
        ours = net.state_dict()
        assert list(ours) == list(sd)                      # same names, nothing extra or missing
        for k, v in sd.items():
            assert torch.equal(ours[k], v), k
        assert not net.training
    pnet, rnet, onet = nets
    with torch.inference_mode():
        prob, reg = pnet(torch.zeros(1, 3, 12, 12))
        assert prob.shape == (1, 1, 1) and reg.shape == (1, 4, 1, 1)
        prob, reg = rnet(torch.zeros(2, 3, 24, 24))
        assert prob.shape == (2,) and reg.shape == (2, 4)
        prob, reg, pts = onet(torch.zeros(3, 3, 48, 48))
        assert prob.shape == (3,) and pts.shape == (3, 10)


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert mt.nms(boxes, scores, 0.5).tolist() == [0, 2, 3]            # IoU(0,1)=0.68; box 2 nested, IoU .16
    assert mt.nms(boxes, scores, 0.5, mode="min").tolist() == [0, 3]   # nested box 2 overlaps 100 % of itself
    assert mt.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# ----------------------------------------------------------------------------- real photos
@pytest.mark.slow
@needs_weights
def test_default_detector_finds_masked_faces(photos, det):
    """Every mask kind, 5- and 68-point geometry, 3 seeds, on two real photos: >= 95 % found
    (the largest detection on the face) and median eye error <= 10 % of the eye distance.

    The "paper" kind is drawn where it is worn (shift (0, 0)): its training-time shift moves
    it up to +-40 template px, i.e. over the eyes, which is an augmentation, not a mask.
    """
    pytest.importorskip("dlib")
    from maskinv.align import get_detector
    from maskinv.masks import MASK_KINDS

    dlib = get_detector("dlib")
    hits, errors, total = 0, [], 0
    for name, img in photos.items():
        ref = det.detect(img)
        assert len(ref) == 1, name
        ref5 = ref[0].landmarks
        d68 = dlib.detect(img)[0].landmarks68
        assert _eye_error(ref[0], dlib.detect(img)[0].landmarks) < 0.1  # agrees with dlib unmasked
        for kind in MASK_KINDS:
            pin = {"shift": (0, 0)} if kind == "paper" else {}
            for geometry in (ref5, d68):
                for seed in range(3):
                    masked = _mask_photo(img, geometry, seed, kind, **pin)
                    faces = det.detect(masked)
                    total += 1
                    if faces and _eye_error(faces[0], ref5) < 0.25:
                        hits += 1
                        errors.append(_eye_error(faces[0], ref5))
    assert total == 2 * len(MASK_KINDS) * 2 * 3
    assert hits / total >= 0.95, f"found {hits}/{total}"
    assert np.median(errors) <= 0.10


@needs_weights
@pytest.mark.parametrize("frame", [0.95, 1.1, 1.3])
@pytest.mark.parametrize("kind", ["none", "surgical", "n95"])
def test_tight_crop_where_the_face_fills_the_frame(photos, det, frame, kind):
    """~160x160 crops around the face (box height x ``frame``), as in MFR2."""
    import cv2

    from maskinv.masks import apply_mask

    img = photos["astronaut"]
    ref = det.detect(img)[0]
    cx, cy = (ref.box[0] + ref.box[2]) / 2, (ref.box[1] + ref.box[3]) / 2
    side = (ref.box[3] - ref.box[1]) * frame
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    crop = cv2.resize(img[y0:y0 + s, x0:x0 + s], (160, 160), interpolation=cv2.INTER_AREA)
    ref160 = (ref.landmarks - [x0, y0]) * 160 / s
    if kind != "none":
        crop = apply_mask(crop, ref160, 0, kind).image
    faces = det.detect(crop)
    assert faces, f"no face in the {frame} tight crop ({kind})"
    assert _eye_error(faces[0], ref160) < 0.15


@needs_weights
def test_several_faces_largest_first(photos, det):
    import cv2

    a, g = photos["astronaut"], photos["grace_hopper"]
    for g_height, big in ((512, "grace"), (256, "astronaut")):
        gs = cv2.resize(g, (round(g.shape[1] * g_height / g.shape[0]), g_height), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((512, 512 + gs.shape[1], 3), np.uint8)
        canvas[:, :512] = a
        canvas[:g_height, 512:] = gs
        faces = det.detect(canvas)
        assert len(faces) == 2
        assert faces[0].area >= faces[1].area
        on_right = (faces[0].box[0] + faces[0].box[2]) / 2 > 512
        assert on_right == (big == "grace")


# ----------------------------------------------------------------------------- fallback
@pytest.mark.slow
def test_missing_weights_fall_back_to_dlib_with_one_note(monkeypatch, caplog, photos, tmp_path):
    pytest.importorskip("dlib")
    from maskinv.align import DetectorUnavailableError, DlibDetector, get_detector
    from maskinv.cli import main

    monkeypatch.setattr(mt, "mtcnn_weights_dir", lambda: None)
    monkeypatch.setattr(registry, "_CACHE", {})
    with caplog.at_level(logging.WARNING, logger="maskinv.align"):
        d1 = get_detector()
        d2 = get_detector()
    assert isinstance(d1, DlibDetector) and d2 is d1
    notes = [r for r in caplog.records if r.name == "maskinv.align"]
    assert len(notes) == 1 and "\n" not in notes[0].getMessage()
    assert "pip install --no-deps facenet-pytorch==2.6.0" in notes[0].getMessage()
    with pytest.raises(DetectorUnavailableError, match="facenet-pytorch==2.6.0"):
        get_detector("mtcnn")
    # CLI: the explicit choice is an error (exit 2), the default still aligns with dlib
    src = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(src), photos["astronaut"][:, :, ::-1])
    assert main(["align", str(src), str(tmp_path / "x.png"), "--detector", "mtcnn"]) == 2
    assert not (tmp_path / "x.png").exists()
    assert main(["align", str(src), str(tmp_path / "y.png")]) == 0
    assert (tmp_path / "y.png").is_file()


# ----------------------------------------------------------------------------- folder
@needs_weights
def test_folder_align_reports_misses_and_goes_on(photos, det, tmp_path, capsys):
    import cv2

    from maskinv.align.folder import align_folder
    from maskinv.cli import main

    src = tmp_path / "in"
    (src / "people" / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "people" / "astronaut.jpg"), photos["astronaut"][:, :, ::-1])
    cv2.imwrite(str(src / "people" / "sub" / "grace.bmp"), photos["grace_hopper"][:, :, ::-1])
    cv2.imwrite(str(src / "a_wall.png"), np.full((200, 300, 3), 127, np.uint8))   # no face; sorts first
    (src / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")

    r = align_folder(src, tmp_path / "out", progress=False)
    by = {row["image"]: row for row in r.rows}
    assert sorted(by) == ["a_wall.png", "broken.jpg", "people/astronaut.jpg", "people/sub/grace.bmp"]
    assert (r.n_found, r.n_missed) == (2, 2)
    assert by["a_wall.png"]["reason"] == "no face detected"
    assert by["broken.jpg"]["reason"].startswith("unreadable image")
    for name, out in (("people/astronaut.jpg", "people/astronaut.jpg"), ("people/sub/grace.bmp", "people/sub/grace.png")):
        assert by[name]["found"] and by[name]["out"] == out
        crop = cv2.imread(str(tmp_path / "out" / out))
        assert crop.shape == (112, 112, 3)
        assert len(by[name]["landmarks"]) == 5 and by[name]["score"] > 0.9
    rep = json.loads((tmp_path / "out" / "align_report.json").read_text())
    assert rep["n_found"] == 2 and rep["n_missed"] == 2 and rep["skipped_non_images"] == ["notes.txt"]
    csv_lines = (tmp_path / "out" / "align_report.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("image,found,out")

    # CLI: exit 1 with misses (one stderr line each + summary), 0 when every image aligned
    assert main(["align", str(src), str(tmp_path / "cli"), "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert "aligned 2/4 images with mtcnn" in cap.out and "a_wall.png: no face detected" in cap.err
    (src / "a_wall.png").unlink()
    (src / "broken.jpg").unlink()
    assert main(["align", str(src), str(tmp_path / "cli2"), "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="must differ"):
        align_folder(src, src, progress=False)
    with pytest.raises(ConfigError, match="no images"):
        align_folder(_empty(tmp_path), tmp_path / "o", progress=False)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "readme.txt").write_text("no images here")
    return d

"""dlib's ResNet descriptor through maskinv equals dlib's own pipeline, from photos."""
from __future__ import annotations

import numpy as np
import pytest

import maskinv
from maskinv.errors import NoFaceError

dlib = pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photo():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def model():
    return maskinv.load_model("dlib")


@pytest.fixture(scope="module")
def dlib_own():
    from maskinv.models.dlib_resnet import PREDICTOR_FILE, RECOGNITION_FILE, _models_dir

    root = _models_dir()
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(root / PREDICTOR_FILE)),
            dlib.face_recognition_model_v1(str(root / RECOGNITION_FILE)))


@pytest.mark.slow
def test_equals_dlib_full_image_pipeline(photo, model, dlib_own):
    det, sp, fr = dlib_own
    rects = det(photo, 1)
    ref = np.asarray(fr.compute_face_descriptor(photo, sp(photo, rects[0])))
    raw, faces = model.descriptors([photo], detector="dlib")  # dlib's own detector: the exact pipeline
    assert raw.shape == (1, 128)
    np.testing.assert_allclose(raw[0], ref, atol=1e-4)
    assert faces[0]["box"] == [rects[0].left(), rects[0].top(), rects[0].right(), rects[0].bottom()]
    emb = maskinv.embed(photo, "dlib", detector="dlib")  # the facade routes photos to the recogniser
    assert emb.shape == (1, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-4)
    # the default detector (MTCNN) gives another box; dlib's predictor inside it lands on the same face
    default = maskinv.embed(photo, "dlib")
    assert float(default[0] @ (ref / np.linalg.norm(ref))) > 0.99
    assert model.needs_photo and model.embedding_size == 128


def test_detector_box_is_used_with_dlib_own_predictor(photo, model, dlib_own):
    """Any detector's box works; its five points are ignored (dlib's 5-point predictor decides)."""
    from maskinv.align import Face, FaceDetector

    _, sp, fr = dlib_own
    box = np.array([168.0, 64.0, 272.0, 176.0])

    class FixedBox(FaceDetector):  # e.g. an MTCNN box, with deliberately wrong landmarks
        name = "fixed"

        def detect(self, image):
            return [Face(box=box, landmarks=np.zeros((5, 2), np.float32), score=0.99)]

    ref = np.asarray(fr.compute_face_descriptor(photo, sp(photo, dlib.rectangle(168, 64, 272, 176))))
    raw, faces = model.descriptors([photo], detector=FixedBox())
    np.testing.assert_allclose(raw[0], ref, atol=1e-4)
    emb = maskinv.embed(photo, model, detector=FixedBox())
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-4)


@pytest.mark.slow
def test_verify_gallery_and_aligned(photo, model, tmp_path):
    import cv2

    moved = cv2.warpAffine(photo, cv2.getRotationMatrix2D((220, 120), 8, 1.2), (512, 512),
                           borderMode=cv2.BORDER_REFLECT)
    r = maskinv.verify(photo, moved, "dlib", threshold=0.90)
    assert r.verified and r.score > 0.95 and r.threshold_source == "explicit"
    assert r.faces[0]["box"] and r.model_fingerprint == model.fingerprint
    with pytest.raises(maskinv.errors.ConfigError, match="threshold"):
        maskinv.verify(photo, moved, model)  # no calibrated thresholds for dlib: explicit only
    with pytest.raises(NoFaceError, match="ndarray input #1"):
        maskinv.embed([photo, np.full((200, 200, 3), 127, np.uint8)], model)
    # aligned crops: the box is the whole crop (not dlib's intended alignment: documented)
    crop = photo[60:190, 160:285].copy()
    emb = maskinv.embed(crop, model, aligned=True)
    np.testing.assert_allclose(emb, model.embed_aligned(crop[None]), atol=1e-6)
    raw = np.asarray(model._facerec.compute_face_descriptor(crop, model._sp5(crop, dlib.rectangle(0, 0, 124, 129))))
    np.testing.assert_allclose(emb[0], raw / np.linalg.norm(raw), atol=1e-4)
    # 1:N gallery with dlib embeddings
    from maskinv.gallery import Gallery

    with Gallery(tmp_path / "g.db", fingerprint=model.fingerprint, embedding_size=128) as g:
        g.add("eileen", maskinv.embed(photo, model), fingerprint=model.fingerprint)
        g.add("grey", maskinv.embed(np.full((1, 150, 150, 3), 90, np.uint8), model, aligned=True),
              fingerprint=model.fingerprint)
        hits = g.search(maskinv.embed(moved, model), k=2, fingerprint=model.fingerprint)[0]
    assert hits[0].name == "eileen" and hits[0].score > hits[1].score


def test_cli_verify_with_dlib(photo, tmp_path, capsys):
    import cv2

    from maskinv.cli import main

    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    cv2.imwrite(str(a), photo[:, :, ::-1])
    cv2.imwrite(str(b), photo[:, ::-1, ::-1])  # mirror image: same person
    rc = main(["verify", str(a), str(b), "--model", "dlib", "--threshold", "0.9"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("VERIFIED"), out


@pytest.mark.slow
def test_calibrate_dlib_on_aligned_crops(photo, model, tmp_path):
    """On a .bin's crops dlib runs with box = whole crop; no file to store beside: write=False."""
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.thresholds import calibrate
    from maskinv.utils.images import encode_image

    face = cv2.resize(photo[50:200, 150:290], (112, 112))
    others = [cv2.resize(im[:150, :150], (112, 112)) for im in (skdata.chelsea(), skdata.coffee(), skdata.rocket())]
    shifted = cv2.resize(photo[54:204, 146:286], (112, 112))
    pairs = [(face, shifted, True), (face, others[0], False), (shifted, face, True), (face, others[1], False),
             (shifted, others[2], False), (face, face, True)]
    save_bin(tmp_path / "t.bin", [encode_image(x, "png") for a, b, _ in pairs for x in (a, b)], [s for *_, s in pairs])
    e = calibrate(model, tmp_path / "t.bin", fmr=0.4, protocol="uu", write=False)
    assert e["model_fingerprint"] == model.fingerprint and e["tar"] == 1.0
    emb = model.embed_aligned(np.stack([face, shifted, others[0]]))
    assert emb[0] @ emb[1] >= e["threshold"] > emb[0] @ emb[2]
    with pytest.raises(maskinv.errors.ConfigError, match="no file to store thresholds beside.*--thresholds PATH"):
        calibrate(model, tmp_path / "t.bin", fmr=0.4, protocol="uu")

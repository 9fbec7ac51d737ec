"""Alignment: exact similarity geometry, and detection + alignment on a real photo."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.align import (
    align_face,
    align_faces,
    five_from_68,
    invert_affine,
    read_image,
    similarity_matrix,
    transform_points,
    umeyama,
    warp_to_template,
)
from maskinv.constants import ARCFACE_TEMPLATE_112, template_for_size
from maskinv.errors import DataFormatError, NoFaceError


def _similarity(angle_deg, scale, tx, ty):
    a = np.deg2rad(angle_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * scale
    return np.hstack([r, [[tx], [ty]]])


# ---------------------------------------------------------------- pure geometry, no detector
@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (30, 2.5, 100, -40), (-170, 0.3, 5, 7)])
def test_umeyama_recovers_exact_similarity(angle, scale, tx, ty):
    truth = _similarity(angle, scale, tx, ty)
    photo_pts = transform_points(invert_affine(truth), ARCFACE_TEMPLATE_112)
    m = umeyama(photo_pts, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(m, truth, atol=1e-9)
    np.testing.assert_allclose(transform_points(m, photo_pts), ARCFACE_TEMPLATE_112, atol=1e-4)


def test_umeyama_is_least_squares_optimum_with_noise(rng):
    src = ARCFACE_TEMPLATE_112 * 3 + rng.normal(0, 4, (5, 2))
    m = umeyama(src, ARCFACE_TEMPLATE_112)
    # no shear: the 2x2 part is a scaled rotation
    a = m[:, :2]
    assert abs(a[0, 0] - a[1, 1]) < 1e-12 and abs(a[0, 1] + a[1, 0]) < 1e-12
    best = ((transform_points(m, src) - ARCFACE_TEMPLATE_112) ** 2).sum()
    for _ in range(200):  # any perturbed similarity fits worse
        p = rng.normal(0, 1e-3, 4)
        s, c = a[0, 0] + p[0], a[1, 0] + p[1]
        mp = np.array([[s, -c, m[0, 2] + p[2]], [c, s, m[1, 2] + p[3]]])
        assert ((transform_points(mp, src) - ARCFACE_TEMPLATE_112) ** 2).sum() >= best - 1e-9


def test_umeyama_never_reflects():
    mirrored = ARCFACE_TEMPLATE_112 * np.array([-1.0, 1.0])
    m = umeyama(mirrored, ARCFACE_TEMPLATE_112)
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_and_malformed_landmarks_raise():
    with pytest.raises(DataFormatError, match="degenerate"):
        umeyama(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(DataFormatError, match="shape"):
        umeyama(np.ones((4, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(DataFormatError, match="NaN"):
        umeyama(np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112)


def test_warp_places_marked_pixels_on_template():
    """Dots drawn at known photo points land on the template after warping (no detector)."""
    to_photo = _similarity(25, 2.0, 150, 40)  # template -> photo, all points inside 400x400
    pts = transform_points(to_photo, ARCFACE_TEMPLATE_112)
    assert pts.min() > 10 and pts.max() < 390
    photo = np.zeros((400, 400, 3), np.uint8)
    for x, y in pts:
        photo[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = 255
    crop, m = warp_to_template(photo, pts)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for tx, ty in ARCFACE_TEMPLATE_112:
        assert crop[int(round(ty)), int(round(tx))].min() > 128
    big = align_face(photo, pts, size=224)
    for tx, ty in template_for_size(224):
        assert big[int(round(ty)), int(round(tx))].min() > 128
    np.testing.assert_allclose(similarity_matrix(pts, 112), m)


def test_five_from_68_mapping():
    p = np.zeros((68, 2))
    p[36:42] = [10, 20]
    p[42:48] = [30, 20]
    p[30], p[48], p[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_allclose(five_from_68(p), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


def test_read_image_inputs(tmp_path):
    import cv2

    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 200  # red
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    (tmp_path / "a.png").write_bytes(png.tobytes())
    for src in (tmp_path / "a.png", str(tmp_path / "a.png"), png.tobytes(), rgb):
        out = read_image(src)
        np.testing.assert_array_equal(out, rgb)
    assert read_image(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
    with pytest.raises(DataFormatError, match="dtype float"):
        read_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(DataFormatError, match="not found"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(DataFormatError, match="not a decodable image"):
        read_image(b"not an image")


# ---------------------------------------------------------------- real photo with dlib
@pytest.fixture(scope="module")
def astronaut():
    from skimage import data  # dev extra

    return data.astronaut()


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("dlib")
    from maskinv.align import get_detector

    return get_detector("dlib")


def _redetect(crop, detector):
    """Five points re-detected on an aligned crop (upscaled 4x: HOG needs faces >= 80 px)."""
    import cv2

    big = cv2.resize(crop, (448, 448), interpolation=cv2.INTER_CUBIC)
    faces = detector.detect(big)
    assert len(faces) == 1
    return faces[0].landmarks / 4.0


def test_astronaut_one_face_aligned_to_template(astronaut, detector):
    faces = align_faces(astronaut, detector)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].face.box
    assert 150 < x0 < 200 and 230 < x1 < 290 and 50 < y0 < 100 and 140 < y1 < 190  # her face
    crop = faces[0].crop
    assert crop.shape == (112, 112, 3)
    placed = transform_points(faces[0].matrix, faces[0].face.landmarks)
    redetected = _redetect(crop, detector)
    # The warp puts the face where the matrix says: re-detected points within 3 px.
    assert np.linalg.norm(redetected - placed, axis=1).max() < 3.0
    # Against the template: eyes within 4 px, mouth corners within 8 px. A similarity
    # transform cannot do better on this photo: her mouth-to-eye distance is 0.84 of
    # her eye spacing, the template's is 1.16, so the least-squares fit (proved optimal
    # above) leaves ~5-7 px at the mouth corners.
    err = np.linalg.norm(placed - ARCFACE_TEMPLATE_112, axis=1)
    assert err[:2].max() < 4.0 and err[3:].max() < 8.0
    assert np.linalg.norm(redetected - ARCFACE_TEMPLATE_112, axis=1)[:2].max() < 4.0


@pytest.mark.parametrize("variant", ["flip", "rot20", "rot-25-scale0.8"])
def test_flipped_and_rotated_copies_align_the_same(astronaut, detector, variant):
    import cv2

    base = _redetect(align_faces(astronaut, detector)[0].crop, detector)
    if variant == "flip":
        img = np.ascontiguousarray(astronaut[:, ::-1])
    else:
        angle, scale = (20, 1.0) if variant == "rot20" else (-25, 0.8)
        img = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), angle, scale), (512, 512))
    faces = align_faces(img, detector)
    assert len(faces) == 1
    crop = faces[0].crop
    if variant == "flip":
        # mirror the crop back; its points then compare with the original crop's points
        crop = np.ascontiguousarray(crop[:, ::-1])
    pts = _redetect(crop, detector)
    assert np.linalg.norm(pts - base, axis=1).max() < 3.0


def test_no_face_raises_or_returns_empty(detector):
    blank = np.full((200, 200, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        align_faces(blank, detector, name="blank.png")
    assert align_faces(blank, detector, on_no_face="empty") == []


def test_several_faces_largest_first(astronaut, detector):
    import cv2

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 800, 3), 90, np.uint8)
    canvas[:512, :512] = astronaut
    canvas[100:356, 530:786] = small
    faces = align_faces(canvas, detector)
    assert len(faces) == 2
    assert faces[0].face.area > faces[1].face.area
    assert faces[0].face.box[0] < 512 <= faces[1].face.box[0]

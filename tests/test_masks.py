"""Per-image mask engine: determinism, geometry, coverage, soft edges, clipping, pair protocols."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.constants import ARCFACE_TEMPLATE_112, template_for_size
from maskinv.errors import ConfigError, DataFormatError, UnknownNameError
from maskinv.masks import MASK_KINDS, RANDOM_KINDS, apply_mask, image_rng, mask_pair_images
from maskinv.masks.geometry import face_anchors, five_points
from maskinv.masks.kinds import BELOW_EYE_KINDS, TEXTURES


def drawn_face(size: int = 112, seed: int = 0) -> np.ndarray:
    """A simple drawn face on a textured background (uint8 RGB)."""
    import cv2

    g = np.random.default_rng(seed)
    img = g.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
    s = size / 112
    cv2.ellipse(img, (int(56 * s), int(70 * s)), (int(36 * s), int(48 * s)), 0, 0, 360, (200, 160, 140), -1)
    for x, y in ARCFACE_TEMPLATE_112[:2] * s:
        cv2.circle(img, (int(x), int(y)), max(1, int(4 * s)), (40, 30, 30), -1)
    cv2.ellipse(img, (int(56 * s), int(92 * s)), (int(14 * s), int(4 * s)), 0, 0, 360, (150, 60, 60), -1)
    return img


def synthetic_68(p5: np.ndarray) -> np.ndarray:
    """A plausible iBUG 68-point set built around five points (for geometry tests)."""
    el, er, nose, ml, mr = p5
    ex = (er - el) / np.linalg.norm(er - el)
    ey = np.array([-ex[1], ex[0]])
    d = np.linalg.norm(er - el)
    mid = (el + er) / 2
    pts = np.zeros((68, 2))
    for i, t in enumerate(np.linspace(-1, 1, 17)):   # jaw: half ellipse from ear to ear through chin
        ang = t * np.pi / 2
        pts[i] = mid + ex * (1.0 * d * np.sin(ang)) + ey * (0.15 * d + 1.45 * d * np.cos(ang))
    for i in range(10):                              # brows
        pts[17 + i] = mid + ex * d * (-0.9 + 0.2 * i) - ey * 0.3 * d
    for i in range(4):                               # nose bridge 27..30 ending at the tip
        pts[27 + i] = mid + (nose - mid) * (i / 3)
    for i in range(5):                               # nostrils 31..35
        pts[31 + i] = nose + ey * 0.15 * d + ex * d * (-0.2 + 0.1 * i)
    for j, c in enumerate((el, er)):                 # eyes 36..47
        for i in range(6):
            a = i / 6 * 2 * np.pi
            pts[36 + 6 * j + i] = c + ex * 0.15 * d * np.cos(a) + ey * 0.06 * d * np.sin(a)
    mm = (ml + mr) / 2
    for i in range(20):                              # mouth 48..67 (outer + inner ring)
        a = i / 12 * 2 * np.pi if i < 12 else (i - 12) / 8 * 2 * np.pi
        rx = np.linalg.norm(mr - ml) / 2 * (1.0 if i < 12 else 0.7)
        pts[48 + i] = mm + ex * rx * np.cos(a + np.pi) + ey * 0.12 * d * np.sin(a)
    pts[48], pts[54] = ml, mr
    return pts


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return drawn_face()


@pytest.mark.parametrize("kind", MASK_KINDS + ("random",))
def test_input_untouched_and_deterministic(face, kind):
    before = face.copy()
    ro = face.copy()
    ro.setflags(write=False)  # a read-only input must work too: nothing writes into it
    a = apply_mask(ro, None, 7, kind)
    b = apply_mask(face, None, np.random.default_rng(7), kind)
    assert np.array_equal(face, before) and np.array_equal(ro, before)
    assert a.image is not ro and a.image.dtype == np.uint8 and a.image.shape == face.shape
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.alpha, b.alpha)
    assert a.params == b.params
    assert not np.array_equal(a.image, face)


@pytest.mark.parametrize("kind", MASK_KINDS + ("random",))
def test_different_seeds_differ(face, kind):
    outs = {apply_mask(face, None, s, kind).image.tobytes() for s in range(4)}
    assert len(outs) == 4


def _eye_disc(size=112, radius=5.0):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    tpl = template_for_size(size)
    return np.any([np.hypot(xx - e[0], yy - e[1]) <= radius for e in tpl[:2]], axis=0)


@pytest.mark.parametrize("kind", BELOW_EYE_KINDS)
def test_covers_mouth_and_nose_keeps_eyes(face, kind):
    tpl = ARCFACE_TEMPLATE_112
    eyes = _eye_disc()
    mouth_mid = (tpl[3] + tpl[4]) / 2
    for s in range(25):
        r = apply_mask(face, None, s, kind)
        a = r.alpha
        for p in (tpl[3], tpl[4], mouth_mid):
            assert a[int(p[1]), int(p[0])] > 0.95, (kind, s, r.params)
        nose = a[int(tpl[2, 1]), int(tpl[2, 0])]
        if r.params["coverage"] == "over":
            assert nose > 0.95, (kind, s, r.params)
        else:
            assert nose < 0.05, (kind, s, r.params)
        # Eye neighbourhoods (radius 5 px) keep their exact bytes.
        assert np.array_equal(r.image[eyes], face[eyes]), (kind, s)


def test_paper_mode_geometry_and_shift(face):
    tpl = ARCFACE_TEMPLATE_112
    r0 = apply_mask(face, None, 0, "paper", shift=(0, 0))
    for p in tpl[2:]:
        assert r0.alpha[int(p[1]), int(p[0])] > 0.95
    assert np.array_equal(r0.image[_eye_disc()], face[_eye_disc()])
    # A downward template shift of 40 px = 10 px on a 112 crop moves the mask's centroid down by ~10.
    r1 = apply_mask(face, None, 0, "paper", shift=(0, 40))
    yy = np.arange(112)[:, None]
    cy0 = (r0.alpha * yy).sum() / r0.alpha.sum()
    cy1 = (r1.alpha * yy).sum() / r1.alpha.sum()
    assert 8.0 < cy1 - cy0 < 12.0
    # Correct geometry: the mask is centred on the true 112x112 landmarks (not 5 px left).
    xx = np.arange(112)[None, :]
    cx = (r0.alpha * xx).sum() / r0.alpha.sum()
    assert abs(cx - tpl[2, 0]) < 1.5


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_alpha_range_and_soft_edges(face, kind):
    r = apply_mask(face, None, 3, kind, **({"shift": (0, 0)} if kind == "paper" else {}))
    a = r.alpha
    assert a.dtype == np.float32 and a.shape == (112, 112)
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.max() > 0.99
    # Soft: walking down the centre column the top edge rises over >= 2 pixels, no hard step.
    col = a[:, 56]
    top = int(np.argmax(col > 0.5))
    assert 0.02 < col[top - 1] < 0.98 or 0.02 < col[top] < 0.98
    ramp = col[top - 3:top + 3]
    assert np.all(np.diff(ramp) >= -1e-6) and np.count_nonzero((ramp > 0.02) & (ramp < 0.98)) >= 2


def test_colours_clip_never_wrap():
    dark = np.full((112, 112, 3), 10, np.uint8)
    light = np.full((112, 112, 3), 245, np.uint8)
    for s in range(6):
        # White mask strongly lit: shaded values above 255 must clip to 255, not wrap to ~0.
        r = apply_mask(dark, None, s, "n95", color=(255, 255, 255), texture="none", light=(0.7, -0.5, 1.0),
                       ambient=0.45)
        inside = r.alpha > 0.999
        assert inside.sum() > 500 and r.image[inside].min() >= 60 and r.image[inside].max() == 255
        # Black mask on a white face stays dark everywhere inside.
        r = apply_mask(light, None, s, "surgical", color=(0, 0, 0), color2=(0, 0, 0), loops=False)
        assert r.image[r.alpha > 0.999].max() <= 10
        # Paper mode: colour x shading exceeds 255 for a white colour and must clip.
        r = apply_mask(dark, None, s, "paper", color=(255, 255, 255), shift=(0, 0))
        assert r.image[r.alpha > 0.999].min() >= 180


def test_textures_all_render(face):
    seen = set()
    for t in TEXTURES:
        r = apply_mask(face, None, 1, "cloth", texture=t, color=(200, 30, 30), color2=(20, 20, 200))
        seen.add(r.image.tobytes())
        if t != "none":
            blue = r.image[..., 2].astype(int) - r.image[..., 0].astype(int)
            assert (blue[r.alpha > 0.99] > 0).any(), t  # second colour shows up
    assert len(seen) == len(TEXTURES)


def test_rotation_follows_landmarks(face):
    import cv2

    c = (56.0, 56.0)
    M = cv2.getRotationMatrix2D(c, 20.0, 1.0)
    rot = cv2.warpAffine(face, M, (112, 112))
    lm = ARCFACE_TEMPLATE_112 @ M[:, :2].T + M[:, 2]
    a0 = apply_mask(face, None, 5, "surgical", loops=False).alpha
    a1 = apply_mask(rot, lm, 5, "surgical", loops=False).alpha
    a0r = cv2.warpAffine(a0, M, (112, 112))
    inter = np.minimum(a0r, a1).sum()
    union = np.maximum(a0r, a1).sum()
    assert inter / union > 0.9


def test_yaw_narrows_far_side():
    lm = ARCFACE_TEMPLATE_112.astype(np.float64).copy()
    lm[2, 0] += 7.0  # nose towards image-right: the right half of the face is the far side
    anchors = face_anchors(lm, (112, 112))
    assert anchors.frame.yaw > 0.2
    img = drawn_face()
    r = apply_mask(img, lm, 2, "surgical", loops=False, width=1.0)
    row = r.alpha[92] > 0.5
    xs = np.nonzero(row)[0]
    left, right = lm[2, 0] - xs[0], xs[-1] - lm[2, 0]
    assert right < 0.8 * left
    r0 = apply_mask(img, None, 2, "surgical", loops=False, width=1.0)
    xs0 = np.nonzero(r0.alpha[92] > 0.5)[0]
    assert abs((56 - xs0[0]) - (xs0[-1] - 56)) < 3  # frontal: symmetric


def test_68_points_use_jaw_contour():
    img = drawn_face()
    p68 = synthetic_68(ARCFACE_TEMPLATE_112.astype(np.float64))
    assert np.allclose(five_points(p68)[2:], ARCFACE_TEMPLATE_112[2:])
    r = apply_mask(img, p68, 4, "cloth", loops=False, coverage="over")
    assert r.alpha[int(p68[57, 1]), int(p68[57, 0])] > 0.95 and r.alpha[int(p68[30, 1]), int(p68[30, 0])] > 0.95
    # Moving the chin landmark down moves the mask's bottom edge down with it.
    low = p68.copy()
    low[5:12, 1] += 6.0
    r2 = apply_mask(img, low, 4, "cloth", loops=False, coverage="over")
    bottom = lambda a: np.nonzero(a[:, 56] > 0.5)[0].max()  # noqa: E731
    if bottom(r.alpha) < 111:
        assert bottom(r2.alpha) > bottom(r.alpha)
    assert np.array_equal(r2.alpha[:40], r.alpha[:40])


def test_other_image_size():
    img = drawn_face(224)
    r = apply_mask(img, None, 0, "kn95")
    tpl = template_for_size(224)
    assert r.image.shape == (224, 224, 3)
    assert r.alpha[int(tpl[3, 1]), int(tpl[3, 0])] > 0.95
    assert np.array_equal(r.image[_eye_disc(224, 10)], img[_eye_disc(224, 10)])


def test_bad_inputs(face):
    with pytest.raises(DataFormatError):
        apply_mask(face.astype(np.float32))
    with pytest.raises(DataFormatError):
        apply_mask(face[..., :2])
    with pytest.raises(DataFormatError, match="landmarks"):
        apply_mask(face, np.zeros((4, 2)))
    with pytest.raises(DataFormatError):
        apply_mask(face, np.full((5, 2), np.nan))
    with pytest.raises(DataFormatError, match="degenerate"):
        apply_mask(face, np.zeros((5, 2)))
    with pytest.raises(UnknownNameError, match="unknown mask kind"):
        apply_mask(face, kind="gas")
    with pytest.raises(ConfigError, match="unknown parameter"):
        apply_mask(face, kind="surgical", colour=(1, 2, 3))
    with pytest.raises(ConfigError):
        apply_mask(face, rng=None)
    with pytest.raises(ConfigError):
        image_rng(-1, 0)


def test_image_rng_depends_on_seed_and_index_only():
    a = image_rng(3, 10).random(4)
    assert np.array_equal(a, image_rng(3, 10).random(4))
    assert not np.array_equal(a, image_rng(3, 11).random(4))
    assert not np.array_equal(a, image_rng(4, 10).random(4))


def test_mask_pair_protocols():
    imgs = np.stack([drawn_face(112, s) for s in range(6)])
    before = imgs.copy()
    uu = mask_pair_images(imgs, "uu", 0)
    mu = mask_pair_images(imgs, "mu", 0)
    mm = mask_pair_images(imgs, "mm", 0)
    assert np.array_equal(imgs, before)
    assert np.array_equal(uu, imgs) and uu is not imgs
    changed = lambda out: [not np.array_equal(out[i], imgs[i]) for i in range(6)]  # noqa: E731
    assert changed(mu) == [False, True] * 3
    assert all(changed(mm))
    # Documented: the same index gets the same mask in mu and mm runs with the same seed.
    assert np.array_equal(mm[1::2], mu[1::2])
    # Image i depends on (seed, i) only: masking a subset alone gives the same bytes.
    for i in (1, 3):
        assert np.array_equal(apply_mask(imgs[i], None, image_rng(0, i), "random").image, mu[i])
    other = mask_pair_images(imgs, "mu", 1)
    assert not np.array_equal(other[1::2], mu[1::2])
    with pytest.raises(ConfigError):
        mask_pair_images(imgs, "um", 0)
    with pytest.raises(DataFormatError):
        mask_pair_images(imgs[:5], "mu", 0)


def test_random_kind_covers_every_realistic_kind(face):
    kinds = {apply_mask(face, None, s).params["kind"] for s in range(40)}
    assert kinds == set(RANDOM_KINDS)


def test_mask_photo_masks_only_around_the_face_of_a_real_photo():
    """A full photo: the mask lands on the lower face given by the landmarks; the rest is untouched."""
    skdata = pytest.importorskip("skimage.data")
    from maskinv.errors import DataFormatError
    from maskinv.masks import mask_photo

    photo = skdata.astronaut()
    five = np.array([[190.0, 110.0], [245.0, 108.0], [218.0, 140.0], [196.0, 165.0], [240.0, 163.0]])
    res = mask_photo(photo, five, 3, "surgical")
    changed = np.argwhere(np.any(res.image != photo, axis=-1))
    assert changed.size > 0 and res.alpha.shape == photo.shape[:2]
    (ymin, xmin), (ymax, xmax) = changed.min(0), changed.max(0)
    iod = 55.0
    assert ymin > five[:2, 1].mean() - 0.5 * iod  # nothing above the eyes
    assert 218 - 2.5 * iod <= xmin and xmax <= 218 + 2.5 * iod
    assert np.array_equal(mask_photo(photo, five, 3, "surgical").image, res.image)  # seeded
    with pytest.raises(DataFormatError, match="landmarks"):
        mask_photo(photo, five[:3], 0)

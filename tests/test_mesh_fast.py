"""The fast face-mesh runner (align/mesh_fast.py) gives the op-by-op runner's answers.

* On the hand-built graph of test_mesh.py (every op, stride-2 asymmetric padding, channel PAD into
  a residual ADD) the fast module equals the plain one to float rounding.
* On the real model and a shipped public-domain photo (skimage's astronaut.png), the fast path
  equals the plain path within 1e-3 px (measured: 0 on this machine: the same oneDNN kernels) and the reference
  runtime LiteRT within 5e-3 px, like the plain path (test_mesh.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.align import mesh as M
from maskinv.errors import ConfigError, DataFormatError

from test_mesh import ASTRO_5, _astronaut, _model_or_skip, astronaut_crop_and_litert_outputs


def _graph_with_stride2_same():
    """conv (stride 2, SAME on an even size: TF pads 0 before, 1 after) -> PRELU -> dw conv
    stride 2 SAME and max pool -> 1x1 conv to more channels; channel PAD of the pool -> ADD (RELU)
    -> a residual dw conv + ADD."""
    g = np.random.default_rng(1)
    f32 = np.float32
    w1, b1 = g.normal(size=(4, 3, 3, 3)).astype(f32), g.normal(size=4).astype(f32)
    alpha = g.uniform(-0.5, 0.5, size=(1, 1, 4)).astype(f32)
    wd, bd = g.normal(size=(1, 3, 3, 4)).astype(f32), g.normal(size=4).astype(f32)
    wp, bp = g.normal(size=(6, 1, 1, 4)).astype(f32), g.normal(size=6).astype(f32)
    pads = np.array([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32)
    w2, b2 = (g.normal(size=(1404, 2, 2, 6)) * 0.1).astype(f32), g.normal(size=1404).astype(f32)
    w3, b3 = g.normal(size=(1, 2, 2, 6)).astype(f32), g.normal(size=1).astype(f32)
    wd2, bd2 = g.normal(size=(1, 3, 3, 6)).astype(f32), g.normal(size=6).astype(f32)
    # tensors: 0 in (1,8,8,3); 3 conv; 5 prelu; 8 dw; 9 pool; 12 pw; 14 pad; 15 add; 22 dw; 25 add;
    # 18 lm; 21 score
    data = {1: w1, 2: b1, 4: alpha, 6: wd, 7: bd, 10: wp, 11: bp, 13: pads, 16: w2, 17: b2, 19: w3, 20: b3,
            23: wd2, 24: bd2}
    tensors = [{"name": f"t{i}", "shape": (), "data": data.get(i)} for i in range(26)]
    conv = {"activation": "NONE", "dilation": (1, 1)}
    ops = [
        {"op": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3], "padding": "SAME", "stride": (2, 2), **conv},
        {"op": "PRELU", "inputs": [3, 4], "outputs": [5]},
        {"op": "DEPTHWISE_CONV_2D", "inputs": [5, 6, 7], "outputs": [8], "padding": "SAME", "stride": (2, 2), **conv},
        {"op": "MAX_POOL_2D", "inputs": [5], "outputs": [9], "activation": "NONE", "padding": "VALID",
         "stride": (2, 2), "filter": (2, 2)},
        {"op": "CONV_2D", "inputs": [8, 10, 11], "outputs": [12], "padding": "VALID", "stride": (1, 1), **conv},
        {"op": "PAD", "inputs": [9, 13], "outputs": [14]},
        {"op": "ADD", "inputs": [14, 12], "outputs": [15], "activation": "RELU"},
        {"op": "DEPTHWISE_CONV_2D", "inputs": [15, 23, 24], "outputs": [22], "padding": "SAME", "stride": (1, 1), **conv},
        {"op": "ADD", "inputs": [15, 22], "outputs": [25], "activation": "NONE"},
        {"op": "CONV_2D", "inputs": [25, 16, 17], "outputs": [18], "padding": "VALID", "stride": (2, 2), **conv},
        {"op": "CONV_2D", "inputs": [25, 19, 20], "outputs": [21], "padding": "VALID", "stride": (2, 2), **conv},
    ]
    return {"tensors": tensors, "ops": ops, "inputs": [0], "outputs": [18, 21], "path": "hand"}


def test_fast_runner_equals_the_plain_runner_on_a_hand_built_graph():
    import torch

    from maskinv.align.mesh_fast import FastFaceMesh

    graph = _graph_with_stride2_same()
    plain = M.FaceMeshNet(graph).eval()
    fast = FastFaceMesh(graph, hw=(8, 8))
    # The channel PAD went into the ADD, the stride-2 SAME convs got a 4x4 kernel with padding 1.
    kinds = [st[0] for st in fast._plan]
    assert "chpad" not in kinds and "addch" in kinds and "add_" in kinds and "add" not in kinds
    assert tuple(fast.convs[0].weight.shape[2:]) == (4, 4) and fast.convs[0].padding == (1, 1)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        p0, s0 = plain(x)
        p1, s1 = fast(x)
    assert p1.shape == p0.shape == (3, 468, 3) and s1.shape == (3,)
    np.testing.assert_allclose(p1.numpy(), p0.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s1.numpy(), s0.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(DataFormatError, match="built for"):
        fast(torch.rand(1, 3, 10, 10))


def test_fast_path_equals_the_plain_path_on_a_photo(one_thread):
    """Tolerance: 1e-3 px of the 192 px input on the crop (the plain path's own agreement with
    LiteRT is 5e-3 px), 1e-3 px in photo pixels through mesh_points, scores to 1e-5."""
    import cv2
    import torch

    from maskinv.align.mesh_fast import load_fast_face_mesh

    plain = _model_or_skip()
    fast = load_fast_face_mesh()
    img = _astronaut()
    A = M.roi_matrix(M.roi_from_five(ASTRO_5))
    crop = cv2.warpAffine(img, A, (192, 192), flags=cv2.INTER_LINEAR).astype(np.float32)[None] / 255.0
    x = torch.from_numpy(crop).permute(0, 3, 1, 2)
    with torch.inference_mode():
        p0, l0 = plain(x)
        p1, l1 = fast(x)
    assert float((p1 - p0).abs().max()) < 1e-3
    assert abs(float(l1[0]) - float(l0[0])) < 1e-3
    r0 = M.mesh_points(img, ASTRO_5, fast=False, refine=1)
    r1 = M.mesh_points(img, ASTRO_5, refine=1)
    assert np.abs(r1.points - r0.points).max() < 1e-3                # photo pixels (measured: 0)
    np.testing.assert_allclose(r1.score, r0.score, atol=1e-5)


def test_fast_path_matches_the_reference_runtime(one_thread):
    import torch

    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="the reference runtime ai-edge-litert is not installed")
    _model_or_skip()
    from maskinv.align.mesh_fast import load_fast_face_mesh

    crop, ref = astronaut_crop_and_litert_outputs(litert)
    with torch.inference_mode():
        pts, logit = load_fast_face_mesh()(torch.from_numpy(crop).permute(0, 3, 1, 2))
    assert np.abs(pts[0].numpy() - ref[1404].reshape(468, 3)).max() < 5e-3
    assert abs(float(logit[0]) - float(ref[1].ravel()[0])) < 1e-3


@pytest.mark.slow
def test_compiled_fast_path_equals_the_eager_one(one_thread):
    """torch.compile (opt-in, for filling mesh caches): the same points within 1e-3 px."""
    import shutil

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile's CPU backend needs a C++ compiler (g++/c++ not on PATH)")
    _model_or_skip()
    img = _astronaut()
    r1 = M.mesh_points(img, ASTRO_5, compile=True)
    r0 = M.mesh_points(img, ASTRO_5)
    assert np.abs(r1.points - r0.points).max() < 1e-3
    np.testing.assert_allclose(r1.score, r0.score, atol=1e-5)
    with pytest.raises(ConfigError, match="fast=True"):
        M.mesh_points(img, ASTRO_5, fast=False, compile=True)

"""The one embedding core (maskinv.models.embedding): facade, evaluation and thresholds agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import maskinv
from maskinv.api import load_model
from maskinv.errors import DataFormatError
from maskinv.models.embedding import embed_images, embed_with


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from maskinv.models import export_backbone, get_model

    m = get_model("r18", width_mult=0.125, embedding_size=32, seed=5)
    path = tmp_path_factory.mktemp("model") / "backbone.pt"
    export_backbone(m, path)
    return path


def _faces(rng, n, size=112):
    import cv2

    small = rng.integers(0, 256, size=(n, 14, 14, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC) for s in small])


def test_facade_and_evaluation_embed_identically(exported, rng):
    model = load_model(exported)
    crops = _faces(rng, 5)
    a = model.embed_aligned(crops, batch_size=4)
    b = embed_images(model.module, crops, batch_size=2, **model.embed_options())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # the module is left as found: eval mode, contiguous memory format
    assert not model.module.training


def test_embed_with_flip_sums_before_normalising():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # 3 input channels -> 2-d output

    def forward(x):  # mean colour of the left half: changes under the mirror
        return x[:, :, :, : x.shape[3] // 2].mean((2, 3)) @ w + 1.0

    imgs = np.zeros((1, 4, 4, 3), np.uint8)
    imgs[0, :, :2] = 255
    got = embed_with(forward, imgs, flip=True)
    left, right = forward(torch.ones(1, 3, 4, 4)), forward(-torch.ones(1, 3, 4, 4))
    want = (left + right) / (left + right).norm()
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)
    with pytest.raises(DataFormatError, match="NaN"):
        embed_with(lambda x: forward(x) * float("nan"), imgs)


def test_verify_at_calibrated_threshold_sees_the_calibration_scores(exported, tmp_path, rng):
    """Thresholds measured by ``calibrate`` and applied by ``verify`` on the same (masked) images
    agree: every pair's verify score equals the score calibration saw, so the pair at the
    operating point is accepted and verify's decisions reproduce the calibrated FMR and TAR."""
    import cv2

    from maskinv.data.bins import save_bin
    from maskinv.masks import mask_pair_images
    from maskinv.thresholds import calibrate, thresholds_path

    faces = _faces(rng, 16)
    imgs, issame = [], []
    for i in range(32):
        a = faces[i % 16]
        same = i % 2 == 0
        b = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8) if same else faces[(i + 5) % 16]
        imgs += [a, b]
        issame.append(same)
    bench = tmp_path / "bench.bin"
    save_bin(bench, [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in imgs], np.array(issame))
    model = load_model(exported)
    try:
        entry = calibrate(model, bench, fmr=0.1, protocol="mu", seed=3, batch_size=16)
        masked = mask_pair_images(np.stack(imgs), "mu", 3)  # what calibration scored
        results = [maskinv.verify(masked[2 * i], masked[2 * i + 1], model, fmr=0.1, protocol="mu", aligned=True)
                   for i in range(len(issame))]
    finally:
        thresholds_path(exported).unlink(missing_ok=True)
    thr = entry["threshold"]
    scores = np.array([r.score for r in results])
    decisions = np.array([r.verified for r in results])
    g = np.array(issame)
    assert all(r.threshold == thr and r.threshold_source == "calibrated" for r in results)
    # the threshold is a calibration score; verify recomputes it in batches of another size, which
    # can move the last float32 bits with the CPU's thread count / kernel choice (seen under load):
    # scores agree to 1e-6, and every decision not within that distance of the threshold is the same
    at_point = np.flatnonzero(np.abs(scores - thr) <= 1e-6)
    assert at_point.size >= 1
    clear = np.abs(scores - thr) > 1e-6
    calibrated = scores >= thr
    assert (decisions[clear] == calibrated[clear]).all()
    if clear.all() or decisions[at_point].all():  # no pair jittered across the threshold
        assert decisions[~g].mean() == entry["fmr_achieved"]
        assert decisions[g].mean() == pytest.approx(entry["tar"], abs=1e-12)


def test_l2_normalize_one_normaliser():
    from maskinv.errors import DataFormatError
    from maskinv.models.embedding import l2_normalize

    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    got = l2_normalize(x)  # network output: a zero row stays zero
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize([1.0, 0.0], what="q"), [[1.0, 0.0]])  # a (D,) template: one row
    for bad, msg in (([[0.0, 0.0]], "all zeros"), ([[np.nan, 1.0]], "NaN"), (np.zeros((1, 2, 2)), "shape")):
        with pytest.raises(DataFormatError, match=f"templates of x: .*{msg}"):
            l2_normalize(bad, what="templates of x")


@pytest.mark.parametrize("scale", [1e30, 0.0, float("nan")])
def test_overflowing_zero_or_nan_outputs_are_refused_not_written_as_zero_vectors(scale):
    """An output of ~1e30 overflows the squared norm: normalize() used to return all-zero rows,
    which `embed` wrote and `eval` scored (98 % "accuracy" of a dead model)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    with torch.no_grad():
        net[1].weight.fill_(1.0)
        net[1].bias.fill_(0.0)
        net[1].weight.mul_(scale)
    imgs = np.full((2, 8, 8, 3), 200, np.uint8)
    with pytest.raises(DataFormatError, match="all-zero embeddings|NaN/infinite"):
        embed_images(net, imgs, flip=False, precision="fp32")

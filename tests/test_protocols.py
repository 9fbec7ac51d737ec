"""Masked protocols: which side is masked, embedding reuse, flip, resize, mode restore."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from maskinv.errors import DataFormatError, MaskinvError  # noqa: E402
from maskinv.evaluate import evaluate_bin  # noqa: E402  (runner.score_benchmark on one benchmark)
from maskinv.evaluate.metrics import verification_metrics  # noqa: E402
from maskinv.evaluate.protocols import (  # noqa: E402
    embed_images,
    embed_protocols,
    masked_images,
    pair_scores,
    parse_protocols,
)

SIZE = 32


@pytest.fixture(scope="module")
def model():
    from maskinv.models import get_model

    return get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(7)
    n = 12
    base = rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    images = np.repeat(base, 2, axis=0).copy()
    # impostor pairs get an unrelated second image; genuine ones a noisy copy
    issame = np.arange(n) % 2 == 0
    noise = rng.integers(-20, 21, size=(n, SIZE, SIZE, 3))
    images[1::2] = np.where(issame[:, None, None, None], np.clip(base.astype(int) + noise, 0, 255), rng.integers(0, 256, size=base.shape)).astype(np.uint8)
    return images, issame


def test_parse_protocols():
    assert parse_protocols("mm,UU") == ("uu", "mm")
    assert parse_protocols(["m-u"]) == ("mu",)
    with pytest.raises(MaskinvError, match="unknown protocol"):
        parse_protocols("uu,xx")


def test_mu_masks_exactly_one_side_mm_both(model, pairs):
    images, _ = pairs
    masked = masked_images(images, ("uu", "mu", "mm"), seed=3, kind="random")
    embs = embed_protocols(model, images, masked, ("uu", "mu", "mm"), flip=True, precision="fp32", batch_size=8)
    uu_a, uu_b = embs["uu"]
    mu_a, mu_b = embs["mu"]
    mm_a, mm_b = embs["mm"]
    n = uu_a.shape[0]
    differs = lambda x, y: np.abs(x - y).max(axis=1) > 1e-4  # noqa: E731
    # mu: the first image of every pair is the clean one, the second is masked
    np.testing.assert_array_equal(mu_a, uu_a)
    assert differs(mu_b, uu_b).sum() == n
    # mm: both sides differ from uu; the masked probe is the same as in mu
    assert differs(mm_a, uu_a).sum() == n and differs(mm_b, uu_b).sum() == n
    np.testing.assert_array_equal(mm_b, mu_b)
    # and mu's masked probes are what mask_pair_images(..., "mu") produces on its own
    from maskinv.masks import mask_pair_images

    mu_only = mask_pair_images(images, "mu", 3, kind="random")
    np.testing.assert_array_equal(mu_only[0::2], images[0::2])
    np.testing.assert_array_equal(mu_only[1::2], masked[1::2])


def test_flip_embedding_definition(model, pairs):
    images = pairs[0][:6]
    got = embed_images(model, images, flip=True, precision="fp32", batch_size=4)
    from maskinv.preprocess import to_tensor

    model.eval()
    with torch.no_grad():
        x = to_tensor(images)
        y = model(x) + model(x.flip(3))
        want = torch.nn.functional.normalize(y, dim=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    noflip = embed_images(model, images, flip=False, precision="fp32")
    assert np.abs(noflip - got).max() > 1e-4
    # batch size does not change the result
    np.testing.assert_allclose(embed_images(model, images, flip=True, precision="fp32", batch_size=1), got, atol=1e-5)


def test_bf16_close_to_fp32(model, pairs):
    images = pairs[0][:4]
    a = embed_images(model, images, precision="fp32")
    b = embed_images(model, images, precision="bf16")
    assert b.dtype == np.float32
    assert np.min(np.sum(a * b, axis=1)) > 0.98


def test_restores_train_mode_of_every_submodule(model, pairs):
    images, issame = pairs
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.eval()  # a frozen BN inside a training model must stay frozen
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    evaluate_bin(model, (images, issame), protocols="uu", folds=2, precision="fp32")
    assert model.training and not bn.training
    assert sum(m.training for m in model.modules()) == sum(1 for _ in model.modules()) - 1
    # running stats untouched (eval mode during inference)
    for n, p in model.state_dict().items():
        assert torch.equal(p, before[n]), n
    model.eval()
    evaluate_bin(model, (images, issame), protocols="uu", folds=2, precision="fp32")
    assert not model.training


def test_resize_warning(model, pairs):
    import cv2

    images = pairs[0][:4]
    big = np.stack([cv2.resize(im, (48, 48), interpolation=cv2.INTER_LINEAR) for im in images])
    with pytest.warns(UserWarning, match="resizing images from 48x48"):
        got = embed_images(model, big, precision="fp32")
    small = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in big])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = embed_images(model, small, precision="fp32")
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_evaluate_bin_arrays_and_file(model, pairs, tmp_path):
    import cv2

    from maskinv.data.bins import save_bin

    images, issame = pairs
    res = evaluate_bin(model, (images, issame), protocols=("uu", "mu", "mm"), seed=5, folds=3, precision="fp32")
    assert list(res) == ["uu", "mu", "mm"]
    for proto, m in res.items():
        assert m["scores"].shape == (len(issame),)
        np.testing.assert_array_equal(m["genuine"], issame)
        ref = verification_metrics(m["scores"], issame, folds=3)
        assert m["accuracy_mean"] == ref["accuracy_mean"] and m["eer"] == ref["eer"]
    # deterministic: same seed, same scores; another seed, other masks
    again = evaluate_bin(model, (images, issame), protocols="mu", seed=5, folds=3, precision="fp32")
    np.testing.assert_array_equal(again["mu"]["scores"], res["mu"]["scores"])
    other = evaluate_bin(model, (images, issame), protocols="mu", seed=6, folds=3, precision="fp32")
    assert np.abs(other["mu"]["scores"] - res["mu"]["scores"]).max() > 1e-6
    # the same through a .bin file (PNG is lossless, so the scores are identical)
    bgr = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images]
    path = tmp_path / "tiny.bin"
    save_bin(path, bgr, issame)
    from_file = evaluate_bin(model, path, protocols="uu,mu", seed=5, folds=3, precision="fp32")
    np.testing.assert_array_equal(from_file["uu"]["scores"], res["uu"]["scores"])
    np.testing.assert_array_equal(from_file["mu"]["scores"], res["mu"]["scores"])


def test_pair_scores_cosine():
    a = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    b = np.array([[0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    np.testing.assert_allclose(pair_scores(a, b), [0.0, 1.0], atol=1e-7)


def test_bad_bench(model):
    with pytest.raises(DataFormatError, match="images for 3 pairs"):
        evaluate_bin(model, (np.zeros((4, SIZE, SIZE, 3), np.uint8), np.array([1, 0, 1], bool)))
    with pytest.raises(DataFormatError, match="uint8"):
        embed_images(model, np.zeros((2, SIZE, SIZE, 3), np.float32))


def test_mm_refuses_mu_only_masks(model, pairs):
    images, _ = pairs
    mu_only = masked_images(images, ("mu",), seed=1, kind="random")
    with pytest.raises(MaskinvError, match="mm needs masked first images"):
        embed_protocols(model, images, mu_only, ("mm",), precision="fp32")
    with pytest.raises(MaskinvError, match="required"):
        embed_protocols(model, images, None, ("mu",), precision="fp32")


def test_embed_protocols_takes_the_sides_the_vocabulary_names(pairs):
    # masks.protocols.pair_sides is the definition; embed_protocols (which embeds each distinct
    # image set once) and thresholds.calibrate (which uses pair_sides) must agree with it
    from maskinv.masks.protocols import PROTOCOLS, pair_sides

    images, _ = pairs
    masked = masked_images(images, PROTOCOLS, seed=5, kind="random")
    embed = lambda x: x.reshape(len(x), -1)[:, :64].astype(np.float32)  # noqa: E731  (row-wise, exact)
    embs = embed_protocols(None, images, masked, PROTOCOLS, embed=embed)
    for p in PROTOCOLS:
        first, second = pair_sides(images, masked, p)
        np.testing.assert_array_equal(embs[p][0], embed(first), err_msg=p)
        np.testing.assert_array_equal(embs[p][1], embed(second), err_msg=p)
    assert pair_sides(images, None, "uu")[1] is not None
    with pytest.raises(MaskinvError, match="protocol must be one of"):
        pair_sides(images, masked, "um")

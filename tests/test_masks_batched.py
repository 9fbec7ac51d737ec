"""BatchMasker: new tensor, determinism, prob semantics, uint8/float agreement, devices."""
from __future__ import annotations

import pytest
import torch

from maskinv.constants import ARCFACE_TEMPLATE_112
from maskinv.errors import ConfigError, DataFormatError, UnknownNameError
from maskinv.masks import BatchMasker


@pytest.fixture(scope="module")
def masker() -> BatchMasker:
    return BatchMasker(112, per_kind=4, seed=0)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (12, 3, 112, 112), dtype=torch.uint8, generator=g)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_new_tensor_input_untouched(masker, batch):
    before = batch.clone()
    out, applied = masker(batch, prob=1.0, generator=_gen(1))
    assert torch.equal(batch, before)
    assert out.data_ptr() != batch.data_ptr()
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    assert applied.dtype == torch.bool and applied.shape == (12,) and bool(applied.all())
    for i in range(12):
        assert not torch.equal(out[i], batch[i])


def test_same_generator_same_bytes_and_seeds_differ(masker, batch):
    a, _ = masker(batch, generator=_gen(5))
    b, _ = masker(batch, generator=_gen(5))
    c, _ = masker(batch, generator=_gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # A second masker with the same bank seed behaves identically.
    other = BatchMasker(112, per_kind=4, seed=0)
    d, _ = other(batch, generator=_gen(5))
    assert torch.equal(a, d)


def test_prob_semantics(masker, batch):
    out, applied = masker(batch, prob=0.0, generator=_gen(2))
    assert not bool(applied.any()) and torch.equal(out, batch)
    out, applied = masker(batch, prob=0.5, generator=_gen(3))
    assert 0 < int(applied.sum()) < 12
    for i in range(12):
        assert torch.equal(out[i], batch[i]) != bool(applied[i])
    with pytest.raises(ConfigError):
        masker(batch, prob=1.5)


def test_mask_covers_mouth_not_forehead(masker, batch):
    out, _ = masker(batch, generator=_gen(4))
    diff = (out != batch).any(1)  # (B, H, W)
    mx, my = ((ARCFACE_TEMPLATE_112[3] + ARCFACE_TEMPLATE_112[4]) / 2).astype(int)
    mouth = diff[:, my - 3:my + 4, mx - 3:mx + 4].float().mean((1, 2))
    assert bool((mouth > 0.9).all())
    assert not bool(diff[:, :30].any())  # forehead rows untouched


def test_float_input_matches_uint8_and_keeps_unmasked_pixels(masker, batch):
    u8, _ = masker(batch, generator=_gen(8))
    xf = (batch.float() / 255.0 - 0.5) / 0.5
    fl, applied = masker(xf, generator=_gen(8))
    assert fl.dtype == torch.float32
    assert float(fl.min()) >= -1.0 - 1e-5 and float(fl.max()) <= 1.0 + 1e-5
    back = ((fl * 0.5 + 0.5) * 255.0).round()
    # Same draws -> same masks; the float path agrees with uint8 up to rounding: no wrap-around.
    assert float((back - u8.float()).abs().max()) <= 1.0
    # Pixels the mask does not reach keep their exact float values; pixels whose uint8 value
    # did not change moved by less than one grey level in the float path.
    assert torch.equal(fl[:, :, :30], xf[:, :, :30])
    same = (u8 == batch).all(1, keepdim=True).expand_as(xf)
    assert float((fl[same] - xf[same]).abs().max()) <= 2.0 / 255.0


def test_uint8_no_wrap_on_extreme_images(masker):
    white = torch.full((8, 3, 112, 112), 255, dtype=torch.uint8)
    black = torch.zeros((8, 3, 112, 112), dtype=torch.uint8)
    for img in (white, black):
        out, _ = masker(img, generator=_gen(9))
        ref, _ = BatchMasker(112, per_kind=4, seed=0, float_range=(0.0, 255.0))(img.float(), generator=_gen(9))
        assert float((out.float() - ref).abs().max()) <= 0.5 + 1e-3


@pytest.mark.parametrize("jitter", ["none", "shift", "affine"])
def test_jitter_modes_deterministic(batch, jitter):
    m = BatchMasker(112, kinds=("surgical", "paper"), per_kind=2, jitter=jitter)
    assert len(m) == 4
    a, _ = m(batch, generator=_gen(11))
    b, _ = m(batch, generator=_gen(11))
    assert torch.equal(a, b) and not torch.equal(a, batch)


def test_other_size_and_bad_inputs(batch):
    m = BatchMasker(64, kinds="kn95", per_kind=2)
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=_gen(0))
    out, applied = m(x, generator=_gen(1))
    assert out.shape == x.shape and bool(applied.all())
    with pytest.raises(DataFormatError, match="built for"):
        m(batch)
    with pytest.raises(DataFormatError):
        m(x[:, :2])
    with pytest.raises(DataFormatError):
        m(x.to(torch.int32))
    with pytest.raises(UnknownNameError):
        BatchMasker(64, kinds=("gas",), per_kind=1)
    with pytest.raises(ConfigError):
        BatchMasker(64, per_kind=0)
    with pytest.raises(ConfigError):
        BatchMasker(64, per_kind=1, jitter="wobble")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(masker, batch):
    cpu, a_cpu = masker(batch, generator=_gen(12))
    gpu, a_gpu = masker(batch.cuda(), generator=_gen(12))
    assert gpu.is_cuda and a_gpu.is_cuda
    assert torch.equal(a_cpu, a_gpu.cpu())
    assert int((gpu.cpu().int() - cpu.int()).abs().max()) <= 1
    g = torch.Generator(device="cuda").manual_seed(3)
    x, _ = masker(batch.cuda().float() / 127.5 - 1, generator=g)
    assert x.is_cuda and x.dtype == torch.float32

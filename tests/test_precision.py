"""Precision "auto": one meaning for training, evaluation and inference."""

import pytest
import torch

from maskinv.errors import ConfigError
from maskinv.utils import precision as P

XEON_NO_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
XEON_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def _support(tmp_path, text, env=None):
    f = tmp_path / "cpuinfo"
    f.write_text(text)
    return P.cpu_bf16_support(f, env=env or {})


def test_cpu_without_native_bf16_is_not_bf16(tmp_path):
    native, why = _support(tmp_path, XEON_NO_BF16)
    assert native is False and "no native bf16" in why


def test_cpu_with_avx512_bf16_or_amx(tmp_path):
    native, why = _support(tmp_path, XEON_BF16)
    assert native is True and "avx512_bf16" in why and "amx_bf16" in why


def test_arm_bf16_feature(tmp_path):
    assert _support(tmp_path, ARM_BF16)[0] is True


def test_unreadable_flags_assume_fp32(tmp_path):
    native, why = P.cpu_bf16_support(tmp_path / "missing", env={})
    assert native is False and "unreadable" in why


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False)])
def test_env_override(tmp_path, value, expected):
    native, why = _support(tmp_path, XEON_NO_BF16 if expected else XEON_BF16, env={"MASKINV_CPU_BF16": value})
    assert native is expected and "MASKINV_CPU_BF16" in why


def test_auto_follows_cpu_detection(monkeypatch):
    monkeypatch.setattr(P, "_cached_cpu_bf16", lambda: (False, "no native"))
    assert P.choose_precision("auto", "cpu") == P.PrecisionChoice("fp32", "no native")
    monkeypatch.setattr(P, "_cached_cpu_bf16", lambda: (True, "native"))
    assert P.choose_precision("auto", "cpu").precision == "bf16"


def test_auto_is_the_same_for_training_and_evaluation(monkeypatch):
    from maskinv.evaluate.protocols import resolve_precision as eval_resolve
    from maskinv.train.build import resolve_precision as train_resolve

    for native in (False, True):
        monkeypatch.setattr(P, "_cached_cpu_bf16", lambda native=native: (native, "x"))
        want = "bf16" if native else "fp32"
        assert train_resolve("auto", torch.device("cpu")) == want
        assert eval_resolve("auto") == want


def test_explicit_modes_and_errors():
    assert P.choose_precision("fp32", "cpu").reason == "set explicitly"
    assert P.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="CUDA"):
        P.choose_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="fp16"):  # inference has no fp16 mode
        P.choose_precision("fp16", "cpu", training=False)
    with pytest.raises(ConfigError, match="half"):
        P.choose_precision("half", "cpu")

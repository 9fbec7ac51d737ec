"""What precision ``"auto"`` means, written once for training, evaluation and inference.

``auto`` picks bf16 on a CPU only where the CPU computes bf16 natively (AVX512-BF16 or AMX):
elsewhere PyTorch emulates it and a training step runs at about half the fp32 speed (a Xeon
with AVX-512 but no AVX512_BF16: r18 fp32 163.7 img/s vs bf16 92.8 img/s). We do not ask
``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: it answers True on such CPUs.

On CUDA ``auto`` is bf16 where the GPU supports it, else fp16 (training, with GradScaler) or
fp32 (inference, where fp16 without a scaler is not worth the risk).

``MASKINV_CPU_BF16=1`` / ``=0`` overrides the CPU detection (e.g. a platform whose flags we
cannot read); the reason then says so.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CPU flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic in oneDNN.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MODES_TRAIN = ("auto", "fp32", "bf16", "fp16")
MODES_INFER = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16 | fp16
    reason: str     # one line for logs and the run's saved record

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.precision, "reason": self.reason}


def _read_cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str] | None:
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / arm64
            return set(value.split())
    return None


def cpu_bf16_support(cpuinfo: str | os.PathLike = "/proc/cpuinfo",
                     env: dict[str, str] | None = None) -> tuple[bool, str]:
    """(native bf16 on this CPU?, why we think so)."""
    env = os.environ if env is None else env
    forced = env.get("MASKINV_CPU_BF16")
    if forced is not None and forced.strip() in ("0", "1"):
        on = forced.strip() == "1"
        return on, f"MASKINV_CPU_BF16={forced.strip()} set"
    flags = _read_cpu_flags(cpuinfo)
    if flags is None:
        return False, f"CPU flags unreadable on {platform.system() or 'this platform'}; assuming no native bf16"
    found = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"CPU has native bf16 ({', '.join(found)})"
    if "bf16" in flags:  # arm64 FEAT_BF16 ("bf16" in Features)
        return True, "CPU has native bf16 (arm64 bf16)"
    return False, "CPU has no native bf16 (no " + "/".join(NATIVE_BF16_FLAGS) + " flag): bf16 would be emulated, slower than fp32"


@functools.lru_cache(maxsize=None)
def _cached_cpu_bf16() -> tuple[bool, str]:
    return cpu_bf16_support()


def choose_precision(mode: str, device: Any = None, *, training: bool = True) -> PrecisionChoice:
    """Resolve ``mode`` (``auto``/``fp32``/``bf16``/``fp16``) for ``device`` (default CPU).

    Raises ``ConfigError`` for an unknown mode, or fp16 anywhere but CUDA.
    """
    import torch

    from maskinv.errors import ConfigError

    allowed = MODES_TRAIN if training else MODES_INFER
    if mode not in allowed:
        raise ConfigError(f"precision must be one of {', '.join(allowed)}, got {mode!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if mode == "fp16" and dev.type != "cuda":
        raise ConfigError("precision fp16 (GradScaler) needs a CUDA device; use bf16 or fp32 on CPU")
    if mode != "auto":
        return PrecisionChoice(mode, "set explicitly")
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "CUDA device supports bf16")
        if training:
            return PrecisionChoice("fp16", "CUDA device without bf16: fp16 with GradScaler")
        return PrecisionChoice("fp32", "CUDA device without bf16")
    if dev.type == "cpu":
        native, why = _cached_cpu_bf16()
        return PrecisionChoice("bf16" if native else "fp32", why)
    return PrecisionChoice("fp32", f"device {dev.type}: no autocast support assumed")


def resolve_precision(mode: str, device: Any = None, *, training: bool = True) -> str:
    return choose_precision(mode, device, training=training).precision

"""Input conventions of foreign checkpoints, applied inside the loaded module.

Every maskinv caller feeds a backbone the *standard* tensor: RGB, ``(x/255 - 0.5)/0.5``
(:func:`maskinv.preprocess.to_tensor`, the trainer, the teacher cache, ``evaluate_bin``).
A checkpoint trained with another convention (MagFace: BGR, ``x/255``) would silently give
wrong embeddings there. So instead of teaching every caller, :func:`apply_convention`
installs a forward pre-hook that converts the standard tensor into the model's own
convention (one per-channel affine map plus a channel swap). Hooks are not part of the
state dict, are traced into ONNX exports (the export then takes the standard input, as its
metadata says) and survive ``FrozenTeacher``. The convention is recorded in
``model.maskinv_input`` and in ``model.arch["input"]`` (so teacher-cache fingerprints
change with it) and written to the sidecar by ``export_backbone``.

A convention is ``{"channel_order": "RGB"|"BGR", "normalization": {"scale", "mean", "std"}}``
meaning ``model_input = (pixel/scale - mean)/std`` per channel (``mean``/``std`` a number or
three numbers in the model's channel order), plus optional ``bn_eps`` (MagFace's iResNet
uses BatchNorm eps 2e-5 where InsightFace's uses 1e-5).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..constants import PIXEL_MEAN, PIXEL_STD
from ..errors import CheckpointError

STANDARD: dict[str, Any] = {"channel_order": "RGB", "normalization": {"scale": 255.0, "mean": 0.5, "std": 0.5}}

#: Conventions of the published trainers, by checkpoint layout.
#: MagFace (IrvingMeng/MagFace inference/gen_feat.py): images read with cv2 (BGR),
#: ToTensor() then Normalize(mean=0, std=1), i.e. BGR in [0, 1]; models/iresnet.py: BN eps 2e-5.
LAYOUT_CONVENTIONS: dict[str, dict[str, Any]] = {
    "insightface": STANDARD,
    "elasticface": STANDARD,
    "magface": {"channel_order": "BGR", "normalization": {"scale": 255.0, "mean": 0.0, "std": 1.0},
                "bn_eps": 2e-5},
}


def _triple(v: Any, what: str, source: str) -> list[float]:
    vals = [v] * 3 if isinstance(v, (int, float)) else list(v) if isinstance(v, (list, tuple)) else None
    if vals is None or len(vals) != 3 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in vals):
        raise CheckpointError(f"{source}: input normalization {what} must be a number or 3 numbers, got {v!r}")
    return [float(x) for x in vals]


def parse_convention(conv: Mapping | None, source: str = "<model>") -> dict[str, Any]:
    """Validated convention with ``mean``/``std`` as 3-lists; ``None`` -> the standard one.

    Also accepts the string ``"(x/255-0.5)/0.5"`` that older sidecars/ONNX metadata carry.
    """
    if conv is None:
        conv = STANDARD
    order = str(conv.get("channel_order", "RGB")).upper()
    if order not in ("RGB", "BGR"):
        raise CheckpointError(f"{source}: channel_order must be 'RGB' or 'BGR', got {conv.get('channel_order')!r}")
    norm = conv.get("normalization", STANDARD["normalization"])
    if norm == "(x/255-0.5)/0.5":
        norm = STANDARD["normalization"]
    if not isinstance(norm, Mapping):
        raise CheckpointError(f"{source}: normalization must be an object {{scale, mean, std}}, got {norm!r}")
    scale = norm.get("scale", 255.0)
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise CheckpointError(f"{source}: normalization scale must be a positive number, got {scale!r}")
    mean = _triple(norm.get("mean", 0.0), "mean", source)
    std = _triple(norm.get("std", 1.0), "std", source)
    if any(s == 0 for s in std):
        raise CheckpointError(f"{source}: normalization std may not be 0")
    out: dict[str, Any] = {"channel_order": order, "normalization": {"scale": float(scale), "mean": mean, "std": std}}
    if conv.get("bn_eps") is not None:
        eps = conv["bn_eps"]
        if not isinstance(eps, (int, float)) or not eps > 0:
            raise CheckpointError(f"{source}: bn_eps must be a positive number, got {eps!r}")
        out["bn_eps"] = float(eps)
    return out


def is_standard(conv: Mapping) -> bool:
    c = parse_convention(conv)
    n = c["normalization"]
    pix_mean = [m * n["scale"] for m in n["mean"]]        # mean in 0..255 pixel units
    pix_std = [s * n["scale"] for s in n["std"]]
    return (c["channel_order"] == "RGB" and all(abs(m - 127.5) < 1e-9 for m in pix_mean)
            and all(abs(s - 127.5) < 1e-9 for s in pix_std))


def same_convention(a: Mapping, b: Mapping) -> bool:
    """Same map from pixels to model input (compared in pixel units; bn_eps not compared)."""
    a, b = parse_convention(a), parse_convention(b)
    na, nb = a["normalization"], b["normalization"]
    pa = [(m * na["scale"], s * na["scale"]) for m, s in zip(na["mean"], na["std"])]
    pb = [(m * nb["scale"], s * nb["scale"]) for m, s in zip(nb["mean"], nb["std"])]
    return a["channel_order"] == b["channel_order"] and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for p, q in zip(pa, pb) for x, y in zip(p, q))


def affine_from_standard(conv: Mapping) -> tuple[list[float], list[float], bool]:
    """``(a, b, swap)`` with ``model_input[c] = a[c] * standard[src(c)] + b[c]``; ``swap``:
    model channel c reads standard channel 2 - c (BGR)."""
    c = parse_convention(conv)
    n = c["normalization"]
    # standard t = (p/255 - 0.5)/0.5  =>  p = 127.5 t + 127.5 ;  model = (p/scale - mean)/std
    a = [127.5 / (n["scale"] * s) for s in n["std"]]
    b = [(127.5 / n["scale"] - m) / s for m, s in zip(n["mean"], n["std"])]
    return a, b, c["channel_order"] == "BGR"


class _ConventionHook:
    """Forward pre-hook: standard tensor -> the model's own convention."""

    def __init__(self, conv: Mapping):
        self.a, self.b, self.swap = affine_from_standard(conv)

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self.swap:
            x = x.flip(1)
        a = torch.tensor(self.a, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        b = torch.tensor(self.b, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * a + b, *args[1:])


def apply_convention(model: nn.Module, conv: Mapping | None, source: str = "<model>") -> nn.Module:
    """Make ``model`` take standard input although its weights expect ``conv``; idempotent
    per model (a second call replaces the first hook). Sets BatchNorm eps from ``bn_eps``."""
    c = parse_convention(conv, source)
    old = getattr(model, "_maskinv_input_hook", None)
    if old is not None:
        old.remove()
        model._maskinv_input_hook = None
    if "bn_eps" in c:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = c["bn_eps"]
    if not is_standard(c):
        model._maskinv_input_hook = model.register_forward_pre_hook(_ConventionHook(c))
    model.maskinv_input = c
    arch = getattr(model, "arch", None)
    if isinstance(arch, dict) and (not is_standard(c) or "bn_eps" in c):
        model.arch = {**arch, "input": c}
    return model


def sidecar_fields(model: nn.Module) -> dict[str, Any]:
    """``channel_order``/``normalization`` (and ``bn_eps``) for an export sidecar."""
    c = getattr(model, "maskinv_input", None)
    std_form = {"channel_order": "RGB", "normalization": {"scale": 255, "mean": PIXEL_MEAN, "std": PIXEL_STD}}
    if c is None or (is_standard(c) and "bn_eps" not in c):
        return std_form
    n = c["normalization"]
    compact = {k: (n[k][0] if len(set(n[k])) == 1 else list(n[k])) for k in ("mean", "std")}
    out = {"channel_order": c["channel_order"], "normalization": {"scale": n["scale"], **compact}}
    if "bn_eps" in c:
        out["bn_eps"] = c["bn_eps"]
    return out


__all__ = ["STANDARD", "LAYOUT_CONVENTIONS", "parse_convention", "is_standard", "affine_from_standard",
           "apply_convention", "sidecar_fields", "same_convention"]

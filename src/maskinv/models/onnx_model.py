"""ONNX recognition models: ours (``maskinv export onnx``) and ArcFace-style files from the
InsightFace model zoo (``w600k_r50.onnx``: input ``N x 3 x 112 x 112``, output 512-d).

:class:`OnnxEmbedder` runs a graph on the *standard* maskinv tensor (RGB,
``(x/255-0.5)/0.5``, what :func:`maskinv.preprocess.to_tensor` gives) and converts it to the
graph's own input convention first. The convention comes from, strongest first:

1. a JSON sidecar ``<model>.json`` (``channel_order``, ``normalization`` {scale, mean, std}
   or ``input_mean``/``input_std`` in pixel units, optional ``input_size``); a
   ``maskinv-backbone`` sidecar beside our export describes the ``.pt`` weights and is ignored;
2. the graph's ``maskinv.*`` metadata (our exports);
3. explicit ``input_mean``/``input_std``/``channel_order`` arguments (``model = (pixel -
   input_mean) / input_std``, pixels 0..255) — they may fill gaps of 1-2 but contradicting
   them is an error, never a silent choice;
4. the graph: InsightFace's rule — a ``Sub`` and a ``Mul`` among the first 8 nodes mean the
   graph normalises itself (feed raw pixels: mean 0, std 1), otherwise ``(x-127.5)/127.5``;
   channel order RGB (the zoo's models are fed RGB).

The input side comes from the graph's input shape when it is fixed, else the sidecar, else 112.
Where each value came from is recorded in ``meta["input_convention_source"]``.

Graphs as zoos ship them: initializers (or unused tensors) declared as extra graph inputs are
dropped in memory (only the image input is fed), and a fixed batch dimension is honoured
(``max_batch``; :meth:`OnnxEmbedder.run` feeds larger batches in chunks). An operator the
installed onnxruntime cannot run is one :class:`~maskinv.errors.CheckpointError` line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import INPUT_SIZE
from ..errors import CheckpointError, ConfigError
from ..utils.io import read_json_file
from .input_convention import affine_from_standard, is_standard, parse_convention, same_convention

META_PREFIX = "maskinv."
ZOO_DEFAULT = {"channel_order": "RGB", "normalization": {"scale": 1.0, "mean": 127.5, "std": 127.5}}


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    side = path.with_suffix(".json")
    data = read_json_file(side, "model sidecar", CheckpointError)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CheckpointError(f"{side}: model sidecar must be a JSON object")
    if data.get("format") == "maskinv-backbone":  # describes the PyTorch weights of the same stem, not this graph
        return None
    keys = {"channel_order", "normalization", "input_mean", "input_std", "input_size"}
    return data if keys & set(data) else None


def _pixel_convention(mean: Any, std: Any, order: str | None) -> dict[str, Any]:
    return {"channel_order": order or "RGB", "normalization": {"scale": 1.0, "mean": mean, "std": std}}


def _from_fields(d: dict[str, Any], source: str) -> dict[str, Any] | None:
    """Convention from sidecar/metadata fields (``normalization`` or ``input_mean``/``input_std``)."""
    if "normalization" in d:
        return parse_convention({"channel_order": d.get("channel_order", "RGB"), "normalization": d["normalization"]}, source)
    if "input_mean" in d or "input_std" in d:
        return parse_convention(_pixel_convention(d.get("input_mean", 0.0), d.get("input_std", 1.0),
                                                  d.get("channel_order")), source)
    if "channel_order" in d:
        return parse_convention({"channel_order": d["channel_order"], "normalization": ZOO_DEFAULT["normalization"]}, source)
    return None


def _image_input_names(proto) -> list[str]:
    """Graph inputs that are real inputs: not initializers and read by some node."""
    inits = {i.name for i in proto.graph.initializer}
    used = {x for n in proto.graph.node for x in n.input} | {o.name for o in proto.graph.output}
    return [i.name for i in proto.graph.input if i.name not in inits and i.name in used]


def graph_normalizes_itself(proto) -> bool:
    """InsightFace's test for zoo graphs with the normalisation built in (Sub and Mul among
    the first 8 nodes), counting only nodes that depend on the image input (so Identity /
    Constant nodes and weight-only subgraphs, e.g. DequantizeLinear + Reshape of int8
    weights, that exporters put in front are skipped)."""
    live = set(_image_input_names(proto))
    ops = []
    for n in proto.graph.node:
        if any(x in live for x in n.input):
            live.update(n.output)
            if n.op_type != "Identity":
                ops.append(n.op_type)
    ops = ops[:8]
    return "Sub" in ops and "Mul" in ops


def _decode_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata values are strings: numbers / JSON objects of the convention fields decoded."""
    out = dict(meta)
    for k in ("normalization", "input_mean", "input_std"):
        v = out.get(k)
        if isinstance(v, str) and v[:1] in "{[-0123456789.":
            try:
                out[k] = json.loads(v)
            except ValueError:
                pass
    return out


_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")
_NO_OP = re.compile(r"No Op registered for (\w+) with domain_version of (\d+)")


def _session_error(src: str, exc: Exception) -> CheckpointError:
    """One line for onnxruntime's load errors, naming an operator it cannot run."""
    text = str(exc)
    m = _NO_KERNEL.search(text) or _NO_OP.search(text)
    if m:
        try:
            import onnxruntime as ort

            ver = f" {ort.__version__}"
        except ImportError:  # pragma: no cover - we got here through onnxruntime
            ver = ""
        return CheckpointError(f"{src}: onnxruntime{ver} cannot run operator {m.group(1)} (opset {m.group(2)}) "
                               "of this graph; a newer onnxruntime may, or convert the graph")
    first = " ".join(text.split())[:300]
    return CheckpointError(f"{src}: onnxruntime cannot load this model: {first}")


def _make_session(ort, src: str, model: str | bytes):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise _session_error(src, exc) from exc


def _without_extra_inputs(src: str) -> tuple[bytes, list[str]]:
    """The graph with every input but the real image input removed (initializers declared as
    inputs, inputs no node reads), serialised; and the names dropped."""
    import onnx

    proto = onnx.load(src, load_external_data=False)
    real = _image_input_names(proto)
    if len(real) != 1:
        raise CheckpointError(f"{src}: the graph needs {len(real)} inputs ({', '.join(real) or 'none'}); "
                              "an embedding model takes one image tensor")
    dropped = [i.name for i in proto.graph.input if i.name != real[0]]
    keep = [i for i in proto.graph.input if i.name == real[0]]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    if proto.ir_version < 4:  # before IR 4 initializers had to be graph inputs
        proto.ir_version = 4
    return proto.SerializeToString(), dropped


class OnnxEmbedder:
    """An onnxruntime session plus the graph's input convention (see module doc).

    ``run(x)`` takes the standard float32 NCHW tensor and returns raw (N, D) embeddings.
    """

    def __init__(self, path: str | Path, *, input_mean: Any = None, input_std: Any = None,
                 channel_order: str | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError("the ONNX backend needs onnxruntime: pip install 'maskinv[onnx]'") from exc
        self.path = Path(path)
        src = str(self.path)
        if channel_order is not None and str(channel_order).upper() not in ("RGB", "BGR"):
            raise ConfigError(f"{src}: channel_order must be RGB or BGR, got {channel_order!r}")
        self.session = _make_session(ort, src, src)
        self.dropped_inputs: list[str] = []
        if len(self.session.get_inputs()) > 1:  # initializers / unused tensors declared as inputs
            data, self.dropped_inputs = _without_extra_inputs(src)
            self.session = _make_session(ort, src, data)
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta: dict[str, Any] = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        self.meta = _decode_meta(self.meta)
        inp = self.session.get_inputs()[0]
        #: largest batch the graph accepts (a fixed batch dimension), None when dynamic
        self.max_batch: int | None = inp.shape[0] if len(inp.shape) and isinstance(inp.shape[0], int) else None
        self.input_name = inp.name
        if len(inp.shape) != 4:
            raise CheckpointError(f"{src}: expected a 4-d NCHW image input, the graph's input {inp.name!r} is {inp.shape}")
        if isinstance(inp.shape[1], int) and inp.shape[1] != 3:
            raise CheckpointError(f"{src}: the graph takes {inp.shape[1]} channels, expected 3 (NCHW)")
        sidecar = _read_sidecar(self.path)
        explicit = None
        if input_mean is not None or input_std is not None or channel_order is not None:
            explicit = _from_fields({k: v for k, v in (("input_mean", input_mean), ("input_std", input_std),
                                                       ("channel_order", channel_order)) if v is not None}, src)
            if input_mean is None or input_std is None:  # one given: the other from the zoo default
                explicit = parse_convention(_pixel_convention(127.5 if input_mean is None else input_mean,
                                                              127.5 if input_std is None else input_std,
                                                              explicit["channel_order"]), src)
        conv, origin = None, None
        for label, fields in ((f"sidecar {self.path.with_suffix('.json')}", sidecar), ("graph metadata", self.meta)):
            if fields and conv is None:
                conv = _from_fields(fields, f"{src} ({label})")
                origin = label if conv is not None else None
        if conv is not None and explicit is not None and not same_convention(conv, explicit):
            raise ConfigError(f"{src}: the {origin} gives input convention {conv}, which contradicts the "
                              f"explicit input_mean/input_std/channel_order {explicit}; drop one of them")
        if conv is None and explicit is not None:
            conv, origin = explicit, "explicit arguments"
        if conv is None:
            import onnx

            if graph_normalizes_itself(onnx.load(src, load_external_data=False)):
                conv, origin = parse_convention(_pixel_convention(0.0, 1.0, "RGB")), "graph (Sub+Mul in its first nodes: raw pixels)"
            else:
                conv, origin = parse_convention(ZOO_DEFAULT), "default (InsightFace model zoo: RGB, (x-127.5)/127.5)"
        self.convention = conv
        self.meta["input_convention_source"] = origin
        size = inp.shape[-1] if isinstance(inp.shape[-1], int) else None
        if size is None:
            size = int((sidecar or {}).get("input_size") or self.meta.get("input_size") or INPUT_SIZE)
        self.input_size = int(size)
        out = self.session.get_outputs()[0].shape
        emb = self.meta.get("embedding_size") or (out[-1] if len(out) == 2 and isinstance(out[-1], int) else None)
        if emb is None:
            emb = self.run(np.zeros((1, 3, self.input_size, self.input_size), np.float32)).shape[1]
        self.embedding_size = int(emb)
        self._affine = None if is_standard(conv) else affine_from_standard(conv)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw embeddings (N, D) float32 of a standard float32 NCHW batch."""
        x = np.asarray(x, dtype=np.float32)
        if self._affine is not None:
            a, b, swap = self._affine
            if swap:
                x = x[:, ::-1]
            x = x * np.asarray(a, np.float32).reshape(1, 3, 1, 1) + np.asarray(b, np.float32).reshape(1, 3, 1, 1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0 and getattr(self, "embedding_size", None):
            return np.zeros((0, self.embedding_size), np.float32)
        step = max(1, self.max_batch or len(x))
        outs = []
        for i in range(0, max(len(x), 1), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if self.max_batch is not None and n < self.max_batch:  # fixed batch: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((self.max_batch - n, *chunk.shape[1:]), np.float32)])
            try:
                out = self.session.run(None, {self.input_name: chunk})[0]
            except Exception as exc:  # onnxruntime's own exception types
                raise CheckpointError(f"{self.path}: onnxruntime failed on a batch of {len(chunk)}: "
                                      f"{' '.join(str(exc).split())[:300]}") from exc
            out = np.asarray(out, dtype=np.float32)
            outs.append(out.reshape(len(out), -1)[:n])
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def get_inputs(self):  # onnxruntime-session look-alike for older callers
        return self.session.get_inputs()


__all__ = ["OnnxEmbedder", "graph_normalizes_itself", "ZOO_DEFAULT"]

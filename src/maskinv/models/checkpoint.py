"""Backbone checkpoint I/O.

Accepted inputs of :func:`load_backbone`:

- a bare state dict (InsightFace ``arcface_torch``, ElasticFace and MaskInv ``*backbone.pth``);
- the same with a ``module.`` (DDP) and/or ``_orig_mod.`` (``torch.compile``) prefix;
- our full training checkpoint ``{"backbone": state_dict, "arch": {"name", "kwargs"}, ...}``;
- a MagFace checkpoint ``{"state_dict": {"features.module.<iresnet keys>" (or
  ``module.features.``): ..., "fc.weight": <MagLinear head>}, ...}`` (layout ``"magface"``,
  detected from the key prefix; the head is dropped; BGR ``x/255`` input and BN eps 2e-5 are
  recorded and applied, see :mod:`.input_convention`);
- a path to any of these (always read with ``torch.load(weights_only=True)``), optionally with
  a JSON sidecar written by :func:`export_backbone` that makes the file self-describing (its
  ``channel_order``/``normalization``/``bn_eps`` win over the layout's convention).

The architecture comes from, in this order: the ``name`` argument, the sidecar, the
checkpoint's ``arch`` entry, or inference from the key set and shapes (iResNet depth, widths,
embedding and input size; MobileFaceNet variant). Explicit ``**kwargs`` override the rest.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, MaskinvError
from ..utils.io import atomic_write_bytes, atomic_write_json, read_json_file
from .input_convention import LAYOUT_CONVENTIONS, apply_convention, same_convention, sidecar_fields
from .iresnet import IRESNET_DEPTHS, IRESNET_WIDTHS, scale_width
from .registry import canonical_name, get_model

FORMAT = "maskinv-backbone"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 5  # keys named per category in mismatch messages
_RESERVED_META = {"format", "format_version", "sha256"}
LAYOUTS = ("auto", "insightface", "elasticface", "magface")
# MagFace wraps the iResNet as `features` in DataParallel/DDP; its MagLinear head is `fc`.
_MAGFACE_PREFIXES = ("features.module.", "module.features.")


# --------------------------------------------------------------------------- reading
def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if path.suffix.lower() == ".onnx":  # torch.load would only say "not a zip archive"
        raise CheckpointError(f"{path}: an ONNX model; this needs PyTorch weights (.pt/.pth). ONNX models run in "
                              "inference and evaluation only (maskinv.load_model, embed/verify/eval)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling / zip / truncation errors all mean "unreadable"
        raise CheckpointError(f"{path}: {_unreadable_reason(path, exc)}") from exc


_WANTED = "expected PyTorch weights (a .pt/.pth state dict, an exported backbone.pt or a training checkpoint)"


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """One line saying what the file is instead of torch's multi-paragraph unpickler text."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as e:
        return f"cannot read the file ({e.strerror or e})"
    kind = None
    if not head:
        kind = "an empty file"
    elif path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower())):
        return (f"is an ONNX model, not PyTorch weights; {_WANTED}. ONNX models run in inference and "
                "evaluation only (maskinv.load_model, embed/verify/eval)")
    elif head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n":
        kind = "an image"
    elif b"\x00" not in head:
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError:
            pass
    if kind:
        return f"is {kind}, not a PyTorch checkpoint; {_WANTED}"
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (f"holds pickled Python objects ({m.group(1)}) that torch.load(weights_only=True) refuses; "
                f"{_WANTED}: save model.state_dict(), not the model")
    first = (text.strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
    if first.startswith("Weights only load failed"):
        first = "torch.load(weights_only=True) refused it"
    return f"not a readable PyTorch checkpoint, truncated or corrupted? ({first}); {_WANTED}"


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key = key[len(p):]
                changed = True
    return key


def detect_layout(obj: Any) -> str:
    """``"magface"`` when a ``state_dict`` entry holds ``features.module.``/``module.features.``
    keys, else ``"insightface"`` (bare dicts of arcface_torch / ElasticFace / MaskInv and ours)."""
    sd = obj.get("state_dict") if isinstance(obj, Mapping) else None
    if isinstance(sd, Mapping) and any(isinstance(k, str) and k.startswith(_MAGFACE_PREFIXES) for k in sd):
        return "magface"
    return "insightface"


def _magface_backbone(obj: Mapping, source: str) -> dict:
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{source}: layout 'magface' expects a {{'state_dict': ...}} checkpoint")
    out = {}
    for k, v in sd.items():
        if isinstance(k, str) and k.startswith(_MAGFACE_PREFIXES):
            out[k.split(".", 2)[2]] = v  # drop "features.module." / "module.features."
    if not out:
        raise CheckpointError(f"{source}: layout 'magface' but no 'features.module.' / 'module.features.' keys "
                              f"(first keys: {', '.join(map(str, list(sd)[:_MAX_LISTED]))})")
    return out  # other entries (the MagLinear head `fc.weight`) are not backbone weights


def extract_state_dict(obj: Any, source: str = "<state_dict>", layout: str = "auto"
                       ) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Return ``(bare_state_dict, arch_or_None)`` from any accepted checkpoint object.

    Strips ``module.`` / ``_orig_mod.`` prefixes; a full training checkpoint's ``backbone``
    entry is used and its ``arch`` entry (``{"name", "kwargs"}``) returned when present.
    ``layout`` (``auto``, ``insightface``, ``elasticface``, ``magface``): ``magface`` keeps
    only the backbone keys of a MagFace checkpoint (``auto`` detects it from the prefix).
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (mapping), got {type(obj).__name__}")
    if layout not in LAYOUTS:
        raise ConfigError(f"{source}: unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if (detect_layout(obj) if layout == "auto" else layout) == "magface":
        obj = _magface_backbone(obj, source)
    arch = None
    sd: Any = obj
    if isinstance(obj.get("backbone"), Mapping):
        sd = obj["backbone"]
        a = obj.get("arch")
        if isinstance(a, Mapping) and isinstance(a.get("name"), str):
            arch = {"name": a["name"], "kwargs": dict(a.get("kwargs") or {})}
    elif isinstance(obj.get("state_dict"), Mapping):
        sd = obj["state_dict"]
    bad = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str)]
    if bad:
        raise CheckpointError(
            f"{source}: not a backbone state dict: {len(bad)} entries are not tensors "
            f"(e.g. {', '.join(bad[:_MAX_LISTED])})"
        )
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        nk = _strip_prefixes(k)
        if nk in out:
            raise CheckpointError(f"{source}: key {k!r} collides with {nk!r} after removing the DDP prefix")
        out[nk] = v
    if not out:
        raise CheckpointError(f"{source}: the state dict is empty")
    return out, arch


def infer_arch(sd: Mapping[str, torch.Tensor], source: str = "<state_dict>") -> tuple[str, dict]:
    """Guess ``(name, kwargs)`` from a bare state dict's keys and shapes.

    Recognises the iResNet depths r18..r200 (any width multiplier, embedding and input size)
    and MobileFaceNet ``mbf`` / ``mbf_large``. Raises :class:`CheckpointError` otherwise.
    """
    try:
        if "layer1.0.conv1.weight" in sd and "fc.weight" in sd and "conv1.weight" in sd:
            depths = []
            for i in range(1, 5):
                idx = {int(m.group(1)) for k in sd if (m := re.match(rf"layer{i}\.(\d+)\.", k))}
                depths.append(len(idx))
            name = next((n for n, d in IRESNET_DEPTHS.items() if tuple(depths) == d), None)
            if name is None:
                raise CheckpointError(f"{source}: iResNet with unknown stage depths {depths}")
            widths = [int(sd["conv1.weight"].shape[0])] + [
                int(sd[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5)
            ]
            refs = [64, *IRESNET_WIDTHS]
            wm = next(
                (
                    c
                    for c in (w / r for w, r in zip(widths, refs))
                    if all(scale_width(r, c) == w for w, r in zip(widths, refs))
                ),
                None,
            )
            if wm is None:
                raise CheckpointError(f"{source}: iResNet widths {widths} match no width multiplier")
            emb = int(sd["fc.weight"].shape[0])
            side = math.isqrt(int(sd["fc.weight"].shape[1]) // widths[-1])
            input_size = 112 if side == 7 else side * 16
            return name, {"embedding_size": emb, "width_mult": float(wm), "input_size": input_size}
        if "conv_sep.layers.0.weight" in sd and "features.layers.2.weight" in sd:
            n_res = len({int(m.group(1)) for k in sd if (m := re.match(r"layers\.3\.layers\.(\d+)\.", k))})
            name, scale = ("mbf", 2) if n_res == 4 else ("mbf_large", 4) if n_res == 8 else (None, 0)
            if name is None:
                raise CheckpointError(f"{source}: MobileFaceNet with {n_res} blocks in stage 2 (known: 4, 8)")
            c1 = int(sd["layers.0.layers.0.weight"].shape[0])
            wm = c1 / (64 * scale)
            emb = int(sd["features.layers.2.weight"].shape[0])
            side = int(sd["features.layers.0.layers.0.weight"].shape[-1])
            input_size = 112 if side == 7 else side * 16
            return name, {"embedding_size": emb, "width_mult": float(wm), "input_size": input_size}
    except CheckpointError:
        raise
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{source}: cannot infer the architecture ({exc}); pass name=") from exc
    raise CheckpointError(f"{source}: cannot infer the architecture from the state dict keys; pass name=")


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "<state_dict>") -> None:
    """``model.load_state_dict(sd, strict=True)`` with a readable :class:`CheckpointError`.

    The message names the first few missing keys, unexpected keys and shape conflicts.
    BatchNorm ``num_batches_tracked`` counters (absent from very old checkpoints, unused in
    eval and by the momentum update) may be missing; the model's own values are kept.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    conflicts = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or conflicts:
        arch = getattr(model, "arch", {"name": type(model).__name__, "kwargs": {}})
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", conflicts)):
            if items:
                more = f", ... (+{len(items) - _MAX_LISTED})" if len(items) > _MAX_LISTED else ""
                parts.append(f"{len(items)} {label}: " + ", ".join(items[:_MAX_LISTED]) + more)
        hint = ""
        try:
            guess, gkw = infer_arch(sd, source)
            hint = f" (the checkpoint looks like {guess} {gkw})"
        except MaskinvError:
            pass
        raise CheckpointError(
            f"{source}: state dict does not match {arch['name']} {arch.get('kwargs', {})}: "
            + "; ".join(parts)
            + hint
        )
    full = dict(sd)
    for k, v in own.items():
        if k not in full:  # only num_batches_tracked can get here
            full[k] = v
    model.load_state_dict(full, strict=True)


def read_model_meta(path: str | os.PathLike) -> dict | None:
    """The JSON sidecar of an exported backbone (``path.with_suffix('.json')``), or ``None``.

    A sidecar that is not JSON, or claims our format with bad fields, raises :class:`CheckpointError`;
    a JSON file of some other format next to the weights is ignored (``None``).
    """
    p = Path(path)
    side = p if p.suffix == ".json" else p.with_suffix(".json")
    meta = read_json_file(side, "model sidecar", CheckpointError)
    if meta is None:
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{side}: unsupported {FORMAT} format_version {meta.get('format_version')!r} (this maskinv reads {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("arch_kwargs", {}), dict):
        raise CheckpointError(f"{side}: sidecar needs 'arch' (string) and 'arch_kwargs' (object)")
    return meta


def model_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the weights file; galleries and thresholds refuse to mix fingerprints."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found")
    from maskinv.utils.hashing import file_sha256

    return file_sha256(p)


def load_backbone(src: str | os.PathLike | Mapping, name: str | None = None, *, layout: str = "auto",
                  input_convention: Mapping | None = None, **kwargs: Any) -> nn.Module:
    """Build the backbone and load weights strictly; returns the model in eval mode on CPU.

    ``src``: a path or an in-memory checkpoint (see module doc). ``name``: architecture
    (needed only when neither a sidecar, a checkpoint ``arch`` entry nor key inference tells).
    ``layout``: ``auto`` | ``insightface`` | ``elasticface`` | ``magface`` (see module doc).
    ``input_convention``: the weights' input convention (:mod:`.input_convention`); default:
    the sidecar's, else the layout's. The returned module always takes the standard input.
    ``kwargs`` (embedding_size, width_mult, input_size, dropout) override the recorded ones.
    Sets ``model.maskinv_source`` (path or ``"<state_dict>"``), ``model.maskinv_layout``,
    ``model.maskinv_input`` and, with a sidecar, ``model.maskinv_meta``.
    """
    meta = None
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        source = str(path)
        obj = _torch_load(path)
        meta = read_model_meta(path)
    elif isinstance(src, Mapping):
        source = "<state_dict>"
        obj = src
    else:
        raise CheckpointError(f"load_backbone: expected a path or a state dict, got {type(src).__name__}")
    if layout not in LAYOUTS:
        raise ConfigError(f"{source}: unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    layout = detect_layout(obj) if layout == "auto" else layout
    sd, ck_arch = extract_state_dict(obj, source, layout)

    recorded = []  # (name, kwargs) candidates, weakest first
    try:
        recorded.append(infer_arch(sd, source))
    except CheckpointError:
        pass
    if ck_arch:
        recorded.append((ck_arch["name"], ck_arch["kwargs"]))
    if meta:
        recorded.append((meta["arch"], dict(meta.get("arch_kwargs") or {})))

    if name is not None:
        arch_name = canonical_name(name)
    elif recorded:
        arch_name = canonical_name(recorded[-1][0])
    else:
        raise CheckpointError(f"{source}: cannot tell the architecture; pass name= (one of the registered backbones)")
    arch_kwargs: dict[str, Any] = {}
    for rname, rkw in recorded:
        try:
            same = canonical_name(rname) == arch_name
        except MaskinvError:
            same = False
        if same:
            arch_kwargs.update({k: v for k, v in rkw.items() if k in ("embedding_size", "width_mult", "input_size", "dropout")})
    arch_kwargs.update(kwargs)
    try:
        model = get_model(arch_name, seed=0, **arch_kwargs)
    except TypeError as exc:
        raise ConfigError(f"load_backbone({source}): {exc}") from exc
    load_state_dict_strict(model, sd, source)
    model.eval()
    if meta and ("channel_order" in meta or "normalization" in meta):
        recorded_conv = {k: meta[k] for k in ("channel_order", "normalization", "bn_eps") if k in meta}
        if input_convention is not None and not same_convention(recorded_conv, input_convention):
            raise ConfigError(f"{source}: its sidecar records input convention {recorded_conv}, which contradicts "
                              f"the explicit {dict(input_convention)}; drop one of them")
        input_convention = recorded_conv
    apply_convention(model, input_convention or LAYOUT_CONVENTIONS[layout], source)
    model.maskinv_source = source
    model.maskinv_layout = layout
    if meta is not None:
        model.maskinv_meta = meta
    return model


# --------------------------------------------------------------------------- writing
def _unwrap(model: nn.Module) -> nn.Module:
    """Peel DDP (``.module``), ``torch.compile`` (``._orig_mod``) and FrozenTeacher (``.model``)."""
    for _ in range(8):
        inner = next(
            (getattr(model, a) for a in ("module", "_orig_mod", "model") if isinstance(getattr(model, a, None), nn.Module)),
            None,
        )
        if inner is None:
            return model
        model = inner
    return model


#: Sidecar fields a model's weights pass on to every file derived from them (fine-tunes, copies).
LICENCE_KEYS = ("licence", "source_weights", "source_sha256")


def export_backbone(model: nn.Module, path: str | os.PathLike, extra_meta: dict | None = None) -> Path:
    """Write a bare state dict to ``path`` and a JSON sidecar to ``path.with_suffix('.json')``.

    Both writes are atomic. The sidecar records the architecture (``model.arch``), embedding
    and input size, the weights' input convention (``channel_order``, ``normalization``, ``bn_eps``;
    standard: RGB, (x/255-0.5)/0.5) and the SHA-256 of the weights
    file, plus ``extra_meta`` (which may not override format, format_version or sha256).
    """
    path = Path(path)
    if path.suffix == ".json":
        raise ConfigError(f"{path}: the weights file cannot end in .json (that name is its sidecar)")
    inner = _unwrap(model)
    arch = getattr(inner, "arch", None)
    if not isinstance(arch, Mapping) or "name" not in arch:
        raise CheckpointError(
            f"export_backbone({path}): the model has no .arch; build it with maskinv.models.get_model"
        )
    extra = dict(extra_meta or {})
    clash = _RESERVED_META & set(extra)
    if clash:
        raise ConfigError(f"export_backbone({path}): extra_meta may not set {sorted(clash)}")
    sd = {k: v.detach().to("cpu").clone() for k, v in inner.state_dict().items()}
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    kw = dict(arch.get("kwargs") or {})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch["name"],
        "arch_kwargs": kw,
        "embedding_size": int(kw.get("embedding_size", getattr(inner, "embedding_size", 512))),
        "input_size": int(kw.get("input_size", getattr(inner, "input_size", 112))),
        **sidecar_fields(inner),
        # weights derived from licensed ones (SFace: Apache-2.0) keep the licence and where they came from
        **{k: v for k, v in (getattr(inner, "maskinv_meta", None) or {}).items() if k in LICENCE_KEYS},
        "sha256": hashlib.sha256(data).hexdigest(),
        **extra,
    }
    atomic_write_bytes(path, data)
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


__all__ = [
    "LAYOUTS",
    "detect_layout",
    "export_backbone",
    "extract_state_dict",
    "infer_arch",
    "load_backbone",
    "load_state_dict_strict",
    "model_fingerprint",
    "read_model_meta",
]

"""Backbones (InsightFace iResNet, MobileFaceNet) and their checkpoint I/O.

- :func:`get_model` / :func:`list_models` — build a backbone by name.
- :func:`load_backbone` — InsightFace/ElasticFace/MaskInv ``*backbone.pth``, DDP (``module.``)
  dicts, our training checkpoints and exported models (with a JSON sidecar).
- :func:`export_backbone`, :func:`read_model_meta`, :func:`model_fingerprint`.
- foreign checkpoints: MagFace/ElasticFace layouts (:func:`detect_layout`), input conventions
  (:mod:`.input_convention`), ArcFace-style ONNX graphs (:mod:`.onnx_model`), dlib's ResNet
  descriptor (:mod:`.dlib_resnet`, ``maskinv.load_model("dlib")``).
- :class:`Recognizer` — the one interface of every recogniser; :func:`register_recognizer` adds a
  named one (:mod:`.recognizer`).
"""
from __future__ import annotations

from .checkpoint import (
    LAYOUTS,
    detect_layout,
    export_backbone,
    extract_state_dict,
    infer_arch,
    load_backbone,
    load_state_dict_strict,
    model_fingerprint,
    read_model_meta,
)
from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet
from .recognizer import RECOGNIZERS, Recognizer, is_named_model, register_recognizer
from .registry import BACKBONES, canonical_name, get_model, list_models

__all__ = [
    "BACKBONES",
    "LAYOUTS",
    "RECOGNIZERS",
    "Recognizer",
    "is_named_model",
    "register_recognizer",
    "detect_layout",
    "IResNet",
    "MobileFaceNet",
    "canonical_name",
    "export_backbone",
    "extract_state_dict",
    "get_model",
    "infer_arch",
    "list_models",
    "load_backbone",
    "load_state_dict_strict",
    "model_fingerprint",
    "read_model_meta",
]

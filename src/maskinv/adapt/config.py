"""The ``maskinv adapt`` run config: the shipped defaults, what a teacher says about itself, and
:func:`adapt_config` (defaults + teacher + data + overrides).

The defaults live in one place, ``adapt.yaml`` beside this module (package data, so they work
installed): :data:`ADAPT_DEFAULTS` is that file read once; ``maskinv adapt --show-defaults``
prints it with its comments (why each value).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from maskinv.errors import ConfigError, DataFormatError
from maskinv.train.config import Overrides, TrainConfig, apply_overrides, config_from_dict, is_external_teacher

__all__ = ["ADAPT_DEFAULTS", "DEFAULTS_FILE", "IN_MEMORY_LIMIT", "adapt_config", "defaults_text", "teacher_info"]

DEFAULTS_FILE = "adapt.yaml"  # package data of maskinv.adapt
IN_MEMORY_LIMIT = 1 << 30  # decode the aligned set into RAM when it is smaller than this


def defaults_text() -> str:
    """``adapt.yaml`` as shipped (comments included)."""
    from importlib.resources import files

    return files(__package__).joinpath(DEFAULTS_FILE).read_text(encoding="utf-8")


def _load_defaults() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(defaults_text())
    if not isinstance(data, dict):
        raise ConfigError(f"maskinv/adapt/{DEFAULTS_FILE}: top level must be a mapping")
    return data


#: The shipped defaults of an adaptation run (``adapt.yaml``; copy before changing).
ADAPT_DEFAULTS: dict[str, Any] = _load_defaults()


def teacher_info(teacher: str, arch: str | None = None) -> dict[str, Any]:
    """``{"external", "embedding_size", "input_size", "fingerprint"}`` of a teacher path (or ``dlib``);
    ``arch``: the architecture of a bare ``.pth`` that does not say (``teacher.name=r100``)."""
    from maskinv.models.loading import load_model
    from maskinv.models.recognizer import is_named_model

    if not is_named_model(teacher) and not Path(teacher).is_file():
        from maskinv.errors import CheckpointError

        raise CheckpointError(f"--teacher: {teacher}: model file not found")
    m = load_model(teacher, arch)
    ext = is_external_teacher(teacher)
    return {"external": ext, "embedding_size": int(m.embedding_size),
            "input_size": 112 if m.needs_photo else int(m.input_size), "fingerprint": m.fingerprint}


def adapt_config(teacher: str, data_root: str | os.PathLike, *, overrides: Overrides = None,
                 info: dict[str, Any] | None = None) -> TrainConfig:
    """The adaptation run config: :data:`ADAPT_DEFAULTS` + the teacher + the data + ``overrides``
    (``key.sub=value`` items or a typed ``{"key.sub": value}`` mapping).

    A torch teacher is copied (``model.init_from_teacher``, templates cached lazily); an ONNX or
    dlib teacher gets a student of ``model.name`` with its embedding size, templates computed by
    the cache pre-pass. ``data.in_memory`` is on for sets under 1 GiB decoded.
    """
    info = info or teacher_info(teacher)
    d = copy.deepcopy(ADAPT_DEFAULTS)
    d["teacher"]["path"] = str(teacher)
    d["data"]["path"] = str(data_root)
    if info["external"]:
        d["model"]["init_from_teacher"] = False
        # a student built from scratch must learn its BatchNorm statistics: frozen at their
        # initial values it trains as an unnormalised network
        d["model"]["freeze_bn_stats"] = False
        d["model"]["embedding_size"] = info["embedding_size"]
        d["teacher"]["cache"]["mode"] = "prepass"
    try:
        from maskinv.data.recordio import RecordIODataset

        ds = RecordIODataset(data_root)
        h, w = ds.image_size
        d["data"]["in_memory"] = len(ds) * h * w * 3 < IN_MEMORY_LIMIT
    except (DataFormatError, OSError):
        pass  # the trainer reports unreadable data with its own message
    cfg = config_from_dict(apply_overrides(d, overrides))
    if cfg.head.name != "none" or cfg.data.labels != "ignore":
        raise ConfigError("maskinv adapt trains without labels: head.name must stay none and data.labels ignore")
    return cfg

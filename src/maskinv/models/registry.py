"""Backbone registry: ``get_model(name, **kw)`` and ``list_models()`` (:data:`BACKBONES`)."""
from __future__ import annotations

import numbers
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.registry import Registry
from .iresnet import IRESNET_DEPTHS, IResNet
from .mobilefacenet import MobileFaceNet
from .sface import build_sface

#: name -> constructor(**arch_kwargs); aliases are the spellings other trainers use.
BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
for _name, _depths in IRESNET_DEPTHS.items():
    BACKBONES.register(_name, (lambda depths: (lambda **kw: IResNet(depths, **kw)))(_depths),
                       aliases=(f"iresnet{_name[1:]}",))
BACKBONES.register("mbf", lambda **kw: MobileFaceNet((1, 4, 6, 2), 2, **kw), aliases=("mobilefacenet",))
BACKBONES.register("mbf_large", lambda **kw: MobileFaceNet((2, 8, 12, 4), 4, **kw))
# SFace's layout (random init here; maskinv.models.sface.load_sface gives the real weights)
BACKBONES.register("sface", build_sface)
# embedding size when the caller gives none (512 for the rest)
_DEFAULT_EMBEDDING = {"sface": 128}


def list_models() -> list[str]:
    """Canonical backbone names accepted by :func:`get_model`."""
    return BACKBONES.names()


def canonical_name(name: str) -> str:
    """Map ``name`` (or a known alias such as ``iresnet100``) to its canonical name.

    Raises :class:`UnknownNameError` listing the known names.
    """
    return BACKBONES.canonical(name)


def _check_kwargs(embedding_size: Any, width_mult: Any, input_size: Any, dropout: Any) -> dict:
    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not is_int(embedding_size) or embedding_size < 1:
        raise ConfigError(f"embedding_size must be a positive integer, got {embedding_size!r}")
    if isinstance(width_mult, bool) or not isinstance(width_mult, numbers.Real) or not width_mult > 0:
        raise ConfigError(f"width_mult must be a positive number, got {width_mult!r}")
    if not is_int(input_size) or input_size < 16:
        raise ConfigError(f"input_size must be an integer >= 16 (square crops), got {input_size!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    return {
        "embedding_size": int(embedding_size),
        "width_mult": float(width_mult),
        "input_size": int(input_size),
        "dropout": float(dropout),
    }


def get_model(
    name: str,
    *,
    embedding_size: int | None = None,
    width_mult: float = 1.0,
    input_size: int = 112,
    dropout: float = 0.0,
    seed: int | None = None,
) -> nn.Module:
    """Build a backbone by name (``r18 r34 r50 r100 r200 mbf mbf_large sface``).

    ``embedding_size`` defaults to 512 (128 for ``sface``, SFace's size).

    ``width_mult`` scales every channel count (names unchanged); ``input_size`` (square side)
    adapts the head's input to the spatial size left after the four stride-2 stages.
    Weights are initialised from a private ``torch.Generator`` seeded with ``seed``
    (fresh entropy when ``None``); the global torch RNG is neither used nor advanced.

    The returned module carries ``model.arch = {"name": ..., "kwargs": {...}}`` (JSON-able,
    ``get_model(model.arch["name"], **model.arch["kwargs"])`` rebuilds it), plus
    ``embedding_size`` and ``input_size`` attributes.
    """
    canon = canonical_name(name)
    if embedding_size is None:
        embedding_size = _DEFAULT_EMBEDDING.get(canon, 512)
    kwargs = _check_kwargs(embedding_size, width_mult, input_size, dropout)
    # Module constructors draw default inits from the global RNG: fork it so the caller's
    # global state is untouched, then re-initialise everything from our own generator.
    with torch.random.fork_rng(devices=[]):
        model = BACKBONES.get(canon)(**kwargs)
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    model.reset_parameters(gen)
    model.arch = {"name": canon, "kwargs": dict(kwargs)}
    return model

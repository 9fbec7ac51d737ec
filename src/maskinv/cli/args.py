"""Validated argument types for the ``maskinv`` command line.

Each function is an argparse ``type=``: it returns the converted value or raises
:class:`argparse.ArgumentTypeError`, which argparse turns into one line
``maskinv CMD: error: argument --flag: <what is wrong>`` and exit code 2 before any command
runs, so a bad value never starts work or writes a file. Path checks are made at parse time
too: an input must exist and be readable, an output must not be blocked by a file or a
folder of the wrong kind. Module import is standard library only (``--help`` stays fast);
:func:`protocol_list`, :func:`mask_kind` and :func:`device` import what they check when their flag
is given.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "positive_int", "non_negative_int", "seed", "int_range", "number", "positive_float", "non_negative_float",
    "probability", "cosine", "existing_file", "model_ref", "existing_dir", "existing_path", "output_file",
    "output_dir", "output_path", "choice_list", "protocol_list", "mask_kind", "device",
]

_Bad = argparse.ArgumentTypeError


# --------------------------------------------------------------------------- numbers
def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise _Bad(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(str(text).strip())
    except ValueError:
        raise _Bad(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise _Bad(f"expected a finite number, got {text!r}")
    return v


def _bounded(parse: Callable[[str], Any], ok: Callable[[Any], bool], must: str, name: str,
             doc: str) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text, then refuse a value outside ``ok`` with
    ``<must>, got '<text>'``."""

    def check(text: str):
        v = parse(text)
        if not ok(v):
            raise _Bad(f"{must}, got {text!r}")
        return v

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    return check


positive_int = _bounded(_int, lambda v: v >= 1, "must be a positive integer (>= 1)", "positive_int",
                        "An integer >= 1 (counts, sizes, batch sizes, steps).")
non_negative_int = _bounded(_int, lambda v: v >= 0, "must be an integer >= 0", "non_negative_int",
                            "An integer >= 0 (optional counts).")
seed = _bounded(_int, lambda v: 0 <= v < 2 ** 63, "a seed must be an integer in [0, 2**63)", "seed",
                "A random seed: an integer in [0, 2**63).")


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in [lo, hi] (e.g. JPEG quality 1..100)."""
    return _bounded(_int, lambda v: lo <= v <= hi, f"must be an integer in {lo}..{hi}", f"int_{lo}_{hi}",
                    f"An integer in [{lo}, {hi}].")


def number(text: str) -> float:
    """Any finite number."""
    return _float(text)


positive_float = _bounded(_float, lambda v: v > 0, "must be a number > 0", "positive_float",
                          "A finite number > 0 (time budgets).")
non_negative_float = _bounded(_float, lambda v: v >= 0, "must be a number >= 0", "non_negative_float",
                              "A finite number >= 0 (tolerances).")
probability = _bounded(_float, lambda v: 0.0 < v < 1.0, "must be a rate strictly between 0 and 1 (e.g. 1e-3)",
                       "probability", "A rate strictly between 0 and 1 (false-match rates, FAR targets).")
cosine = _bounded(_float, lambda v: -1.0 <= v <= 1.0, "a cosine-similarity threshold must lie in [-1, 1]", "cosine",
                  "A cosine-similarity threshold in [-1, 1].")


def choice_list(choices: tuple[str, ...], what: str = "value") -> Callable[[str], str]:
    """A comma-separated, non-empty subset of ``choices`` (returned as the normalised string)."""

    def parse(text: str) -> str:
        items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad:
            raise _Bad(f"unknown {what} {bad[0]!r} (expected a comma-separated subset of {','.join(choices)})")
        if not items:
            raise _Bad(f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
        return ",".join(items)

    parse.__name__ = "choice_list"
    return parse


def protocol_list(text: str) -> str:
    """Masked protocols, comma-separated (``uu,mu,mm``; ``M-U`` spellings too)."""
    from maskinv.errors import ConfigError
    from maskinv.masks.protocols import parse_protocols

    try:
        parse_protocols(text)
    except ConfigError as exc:
        raise _Bad(str(exc)) from None
    return text


def mask_kind(text: str) -> str:
    """``random`` or one of :data:`maskinv.masks.MASK_KINDS` (checked when the flag is given)."""
    from maskinv.masks.kinds import MASK_KINDS

    if text != "random" and text not in MASK_KINDS:
        raise _Bad(f"unknown mask kind {text!r}; known: random, {', '.join(MASK_KINDS)}")
    return text


def device(text: str) -> str:
    """A torch device that exists here (``cpu``, ``cuda``, ``cuda:1``, ``mps``); imports torch
    only when the flag is given."""
    import torch

    try:
        d = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise _Bad(f"unknown torch device {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
            raise _Bad(f"{text!r}: CUDA is not available here (torch {torch.__version__}, {build})")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise _Bad(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise _Bad(f"{text!r}: the MPS backend is not available here")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise _Bad(f"{text!r}: unsupported device type (use cpu, cuda or mps)")
    return text


# --------------------------------------------------------------------------- paths
def _readable(p: Path, text: str) -> None:
    if not os.access(p, os.R_OK):
        raise _Bad(f"{text}: permission denied (not readable)")


def existing_file(text: str) -> str:
    """An existing, readable regular file."""
    p = Path(text)
    if not p.exists():
        raise _Bad(f"{text}: no such file")
    if p.is_dir():
        raise _Bad(f"{text}: is a folder, expected a file")
    _readable(p, text)
    return text


def looks_like_bin(path: str | os.PathLike) -> bool:
    """Every verification .bin is a pickle of protocol >= 2 (first byte 0x80)."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def bin_file(text: str) -> str:
    """An existing verification ``.bin`` (checked by its first byte; decoded later)."""
    existing_file(text)
    if not looks_like_bin(text):
        raise _Bad(f"{text}: not a verification .bin (a pickle of images and issame flags, "
                   "as InsightFace and `maskinv data bin` write)")
    return text


def model_ref(text: str) -> str:
    """A model file, or a registered recogniser name (``dlib``, ...) when no file has that name;
    a missing file whose name is close to one gets a suggestion (``dilb`` -> ``dlib``)."""
    from maskinv.models.recognizer import RECOGNIZERS, is_named_model

    if is_named_model(text):
        return text
    if not Path(text).exists() and not Path(text).suffix and os.sep not in text:
        close = RECOGNIZERS.suggest(text)
        if close:
            raise _Bad(f"{text}: no such file (did you mean the model {close!r}?)")
    return existing_file(text)


def existing_dir(text: str) -> str:
    """An existing, readable folder."""
    p = Path(text)
    if not p.exists():
        raise _Bad(f"{text}: no such folder")
    if not p.is_dir():
        raise _Bad(f"{text}: is a file, expected a folder")
    if not os.access(p, os.R_OK | os.X_OK):
        raise _Bad(f"{text}: permission denied (folder not readable)")
    return text


def existing_path(text: str) -> str:
    """An existing, readable file or folder."""
    p = Path(text)
    if not p.exists():
        raise _Bad(f"{text}: no such file or folder")
    if p.is_dir():
        return existing_dir(text)
    _readable(p, text)
    return text


def _check_creatable(p: Path, text: str) -> None:
    """The nearest existing ancestor of ``p`` must be a writable folder (not a file)."""
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise _Bad(f"{text}: {anc} is a file, not a folder")
    if anc.exists() and not os.access(anc, os.W_OK | os.X_OK):
        raise _Bad(f"{text}: permission denied (cannot write in {anc})")


def output_file(text: str) -> str:
    """A file to write: not a folder; missing parent folders are created at write time
    (:mod:`maskinv.utils.io`), so the nearest existing one must be a writable folder."""
    p = Path(text)
    if not str(text).strip():
        raise _Bad("empty output path")
    if p.is_dir():
        raise _Bad(f"{text}: is a folder, expected a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise _Bad(f"{text}: permission denied (file not writable)")
    _check_creatable(p, text)
    return text


def output_dir(text: str) -> str:
    """A folder to write into: an existing writable folder or a new one (parents are created)."""
    p = Path(text)
    if not str(text).strip():
        raise _Bad("empty output path")
    if p.exists() and not p.is_dir():
        raise _Bad(f"{text}: is a file, expected a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise _Bad(f"{text}: permission denied (folder not writable)")
        return text
    _check_creatable(p, text)
    return text


def output_path(text: str) -> str:
    """An output that may be a file or a folder (decided by the command from its input)."""
    p = Path(text)
    if not str(text).strip():
        raise _Bad("empty output path")
    if p.is_dir():
        return output_dir(text)
    if p.exists() and not os.access(p, os.W_OK):
        raise _Bad(f"{text}: permission denied (file not writable)")
    _check_creatable(p, text)
    return text


def detector_arg(p, help_text: str = "face detector") -> None:
    """``--detector`` with the registered backends as choices (:data:`maskinv.align.backends.DETECTORS`).

    Default None (not "mtcnn") so an explicit ``--detector mtcnn`` without its weights is an
    error, while the default falls back to dlib with a warning."""
    from maskinv.align.backends import DEFAULT_DETECTOR, DETECTORS

    names = DETECTORS.names()
    p.add_argument("--detector", choices=names, default=None,
                   help=f"{help_text}: {', '.join(names)} (default {DEFAULT_DETECTOR}; dlib with a warning if "
                        "its weights are missing; dlib's HOG misses most masked faces)")


def model_help(what: str = "model") -> str:
    """``--model`` help naming the registered recognisers (built from the registry)."""
    from maskinv.models.recognizer import RECOGNIZERS

    named = "; ".join(f"{n}: {RECOGNIZERS.get(n).summary}" for n in RECOGNIZERS.names()).replace("%", "%%")
    return f"{what} (named models: {named})"


def arch_help() -> str:
    """``--arch`` help listing the backbone registry's names."""
    from maskinv.models.registry import list_models

    return f"architecture name for a bare .pth ({' '.join(list_models())})"

"""Seeds derived from a run's seed: :func:`derive_seed` (one seed per named use) and
:func:`step_seed` (one seed per training step and random stream).

Every place that needs "another seed" from the user's seed asks :func:`derive_seed` with a tag
naming the use (and the integers that vary within it, e.g. the rank), instead of its own
arithmetic. Tags in :data:`LEGACY_DERIVATIONS` keep the formula the code used before, so runs
and committed numbers made with it reproduce bit for bit; any other tag gets a hash derivation
(``numpy.random.SeedSequence`` mixing of the seed, the tag text and the integers: stable across
processes, platforms and Python's hash randomisation).
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

__all__ = ["LEGACY_DERIVATIONS", "derive_seed", "step_seed"]


#: tag -> (number of integer arguments after the tag, formula of (seed, *ints), what it seeds).
#: These formulas predate derive_seed; they stay as they were so that results reproduce.
LEGACY_DERIVATIONS: dict[str, tuple[int, Callable[..., int], str]] = {
    "dropout": (1, lambda seed, rank: seed * 7919 + rank,
                "the process-global torch RNG of one rank during training (dropout only): rank"),
    "partial_fc": (1, lambda seed, rank: seed * 1000 + 17 + rank,
                   "PartialFC's class-centre sampling generator of one rank: rank"),
    "head": (0, lambda seed: seed + 1,
             "a margin head's own seed (kernel initialisation, margin draws) when the config gives none"),
    "study_run": (1, lambda seed, offset: seed * 1000 + offset,
                  "the trainer's runtime.seed of a study run: the run's offset (teacher 1, students 2)"),
    "adapt_data": (0, lambda seed: seed + 1_000_000,
                   "the SynthFaces generator seed of the study's unlabeled adapt photos"),
    "mask_preview": (2, lambda seed, row, column: 1_000_000 + row * 1000 + column,
                     "the stream index of one preview cell under image_rng(seed, .) (the seed is "
                     "image_rng's own first word, so it does not enter the index): row, column"),
    "head_margins": (0, lambda seed: seed + 0x9E3779B9,
                     "a margin head's margin-draw generator, apart from its kernel initialisation (heads.py)"),
    "realism_bootstrap": (0, lambda seed: seed + 1,
                          "the identity bootstrap of `maskinv mask-realism` (evaluate/realism.py)"),
    "mask_gallery": (1, lambda seed, column: seed + 1 + column,
                     "the mask seed of one column of the study report's mask gallery (study/report.py): column"),
}


def _mix(words: list[int]) -> int:
    """A 63-bit seed from non-negative integers (SeedSequence mixing)."""
    a, b = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def _tag_word(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(tag.encode("utf-8")).digest()[:8], "little")


def derive_seed(seed: int, *tags: str | int) -> int:
    """The seed of one use of ``seed``: ``tags`` = a name (str) then the integers that vary within
    that use, e.g. ``derive_seed(seed, "dropout", rank)``.

    A name in :data:`LEGACY_DERIVATIONS` gives its historical formula (and must get exactly its
    integers); any other tags give a 63-bit hash derivation, different for every (seed, tags).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"derive_seed: seed must be an integer, got {seed!r}")
    if not tags or not isinstance(tags[0], str):
        raise TypeError(f"derive_seed: the first tag names the use (a str), got {tags!r}")
    for t in tags[1:]:
        if isinstance(t, bool) or not isinstance(t, (str, int, np.integer)):
            raise TypeError(f"derive_seed: tags are str or int, got {t!r}")
    seed = int(seed)
    name, rest = tags[0], tags[1:]
    if name in LEGACY_DERIVATIONS:
        arity, formula, _ = LEGACY_DERIVATIONS[name]
        if len(rest) != arity or not all(isinstance(t, (int, np.integer)) for t in rest):
            raise TypeError(f"derive_seed: {name!r} takes {arity} integer tag(s) after the name, got {rest!r}")
        return int(formula(seed, *(int(t) for t in rest)))
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, 1 if seed < 0 else 0]
    for t in tags:
        # a type marker keeps ("a", 1) and (1, "a") or an int equal to a tag's hash apart
        words += [1, _tag_word(t)] if isinstance(t, str) else [2, abs(int(t)), 1 if int(t) < 0 else 0]
    return _mix(words)


def step_seed(seed: int, rank: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, rank, step, stream)`` (SeedSequence mixing, no collisions by design)."""
    return _mix([int(seed) & 0xFFFFFFFF, int(rank), int(step), int(stream)])

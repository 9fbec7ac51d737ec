"""The masked verification protocols' vocabulary, written once: names, titles, parsing, pair sides.

* ``uu`` (U-U) — no image of a pair masked.
* ``mu`` (M-U) — exactly one image of every pair masked: the second (the probe).
* ``mm`` (M-M) — both images masked, each with its own mask.
* ``probe_ref`` — a folder with a probe list: every (really masked) probe against every reference.

:data:`PROTOCOL_TABLE` says which side each protocol masks; everything else reads it.

This sits in :mod:`maskinv.masks` (the lowest layer that masks pairs) so that masking,
evaluation, thresholds, the CLI and the study all spell the protocols the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from maskinv.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    """One verification protocol: what it masks and how it is scored.

    ``masks_reference`` / ``masks_probe``: a synthetic mask is drawn on the first / second image of
    every pair. ``pair_list``: scored on a pair list (``.bin``, ``pairs.txt``); otherwise every
    probe of a probe list is compared with every reference image (``probe_ref``: the probes carry
    real masks, nothing synthetic is drawn).
    """

    name: str
    title: str
    description: str
    masks_reference: bool
    masks_probe: bool
    pair_list: bool = True

    @property
    def masked(self) -> bool:
        return self.masks_reference or self.masks_probe


#: The protocol names: code outside this module spells them through these constants (a test in
#: tests/test_name_owners.py rejects the string literals elsewhere).
UU = "uu"
MU = "mu"
MM = "mm"
#: The probe/reference protocol of folder benchmarks with a probe list.
PROBE_REF = "probe_ref"

#: Every protocol, in canonical (table) order. Evaluation, calibration, config validation, the CLI
#: and the study tables read it; nothing else spells the names out.
PROTOCOL_TABLE: dict[str, Protocol] = {p.name: p for p in (
    Protocol(UU, "U-U", "no image masked", False, False),
    Protocol(MU, "M-U", "the second image of every pair masked", False, True),
    Protocol(MM, "M-M", "both masked (independent masks)", True, True),
    Protocol(PROBE_REF, PROBE_REF,
             "every probe-list image (real masks) against every reference image (the folder's other images): "
             "probes x references", False, False, pair_list=False),
)}
#: Pair-list protocols in canonical order (what ``--protocols`` accepts).
PROTOCOLS: tuple[str, ...] = tuple(n for n, p in PROTOCOL_TABLE.items() if p.pair_list)
#: Pair-list protocols that mask at least one image of a pair.
MASKED_PROTOCOLS: tuple[str, ...] = tuple(n for n in PROTOCOLS if PROTOCOL_TABLE[n].masked)
#: Display titles (paper notation).
TITLES: dict[str, str] = {n: p.title for n, p in PROTOCOL_TABLE.items()}
#: One-line meaning of each protocol (reports, help texts).
DESCRIPTIONS: dict[str, str] = {n: p.description for n, p in PROTOCOL_TABLE.items()}
#: The protocol of the gate use case (masked probe vs unmasked reference): default of thresholds.
DEFAULT_PROTOCOL = MU


def title(protocol: str) -> str:
    """``"mu"`` -> ``"M-U"``; an unknown name is returned unchanged (e.g. a free curve label)."""
    return TITLES.get(protocol, protocol)


def legend(protocols: Iterable[str] = PROTOCOLS) -> str:
    """``"U-U: no image masked; M-U: ...; M-M: ..."`` for report footers."""
    return "; ".join(f"{TITLES[p]}: {DESCRIPTIONS[p]}" for p in protocols)


def check_protocol(protocol: str, what: str = "protocol") -> str:
    """A single valid protocol name, or :class:`ConfigError` naming ``what``."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{what} must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol


def parse_protocols(protocols: str | Iterable[str]) -> tuple[str, ...]:
    """``"uu,mu"``, ``"M-U"`` or an iterable -> validated tuple in canonical order, no duplicates."""
    items = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    names = [str(p).strip().lower().replace("-", "") for p in items if str(p).strip()]
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise ConfigError(f"unknown protocol(s) {bad or items!r}; choose from {', '.join(PROTOCOLS)}")
    return tuple(p for p in PROTOCOLS if p in names)


def masked_indices(n_images: int, protocol: str) -> range:
    """Indices a protocol masks in a pair list of ``n_images`` (= 2 x pairs): image ``2j`` is
    the reference of pair ``j``, ``2j+1`` its probe."""
    p = PROTOCOL_TABLE[check_protocol(protocol)]
    if p.masks_reference and p.masks_probe:
        return range(n_images)
    return range(0 if p.masks_reference else 1, n_images, 2) if p.masked else range(0)


def pair_sides(images, masked, protocol: str):
    """``(references, probes)`` of every pair under ``protocol``: image ``2j`` and ``2j+1`` taken from
    ``images`` (clean) or ``masked`` (all images masked as ``mm`` masks them; ``mu`` reads only
    the odd ones, ``uu`` none, so ``masked`` may then be ``None``)."""
    p = PROTOCOL_TABLE[check_protocol(protocol)]
    first = masked[0::2] if p.masks_reference else images[0::2]
    second = masked[1::2] if p.masks_probe else images[1::2]
    return first, second

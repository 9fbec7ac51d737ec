"""The masked verification protocols' vocabulary, written once: names, titles, parsing, pair sides.

* ``uu`` (U-U) — no image of a pair masked.
* ``mu`` (M-U) — exactly one image of every pair masked: the second (the probe).
* ``mm`` (M-M) — both images masked, each with its own mask.

This sits in :mod:`maskinv.masks` (the lowest layer that masks pairs) so that masking,
evaluation, thresholds, the CLI and the study all spell the protocols the same way.
"""
from __future__ import annotations

from typing import Iterable

from maskinv.errors import ConfigError

#: Protocol names in canonical (table) order.
PROTOCOLS: tuple[str, ...] = ("uu", "mu", "mm")
#: Protocols that mask at least one image of a pair.
MASKED_PROTOCOLS: tuple[str, ...] = ("mu", "mm")
#: Display titles (paper notation).
TITLES: dict[str, str] = {"uu": "U-U", "mu": "M-U", "mm": "M-M"}
#: One-line meaning of each protocol (reports, help texts).
DESCRIPTIONS: dict[str, str] = {
    "uu": "no image masked",
    "mu": "the second image of every pair masked",
    "mm": "both masked (independent masks)",
}
#: The protocol of the gate use case (masked probe vs unmasked reference): default of thresholds.
DEFAULT_PROTOCOL = "mu"


def title(protocol: str) -> str:
    """``"mu"`` -> ``"M-U"``; an unknown name is returned unchanged (e.g. a free curve label)."""
    return TITLES.get(protocol, protocol)


def legend() -> str:
    """``"U-U: no image masked; M-U: ...; M-M: ..."`` for report footers."""
    return "; ".join(f"{TITLES[p]}: {DESCRIPTIONS[p]}" for p in PROTOCOLS)


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
    check_protocol(protocol)
    if protocol == "uu":
        return range(0)
    return range(1, n_images, 2) if protocol == "mu" else range(n_images)


def pair_sides(images, masked, protocol: str):
    """``(references, probes)`` of every pair under ``protocol``: image ``2j`` and ``2j+1`` taken from
    ``images`` (clean) or ``masked`` (all images masked as ``mm`` masks them; ``mu`` reads only
    the odd ones, ``uu`` none, so ``masked`` may then be ``None``)."""
    check_protocol(protocol)
    first = masked[0::2] if protocol == "mm" else images[0::2]
    second = images[1::2] if protocol == "uu" else masked[1::2]
    return first, second

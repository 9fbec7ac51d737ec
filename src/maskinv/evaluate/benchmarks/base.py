"""What a *benchmark* is for evaluation: labelled verification pairs plus where they came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskinv.errors import DataFormatError
from maskinv.masks.protocols import PROBE_REF
from maskinv.models.embedding import check_images

__all__ = ["Benchmark", "check_arrays"]


@dataclass
class Benchmark:
    """Verification pairs: ``images`` (2N, H, W, 3) uint8 RGB, pair ``j`` = images ``2j, 2j+1``;
    ``issame`` (N,) bool; ``meta`` is what results documents record about the source."""

    label: str
    images: np.ndarray
    issame: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: a prepared :class:`~maskinv.data.folder_bench.FolderBench` (folder sources only)
    folder: Any = None
    #: probe flags per ``folder`` image (protocol ``probe_ref``), or None
    probe: np.ndarray | None = None
    #: the detector object the folder was aligned with (None: aligned crops / not a folder)
    detector: Any = None
    #: probe_ref operating-point rule (:mod:`maskinv.evaluate.probe_ref`)
    min_false_matches: int = 1
    #: (N, 2): the identity of each pair's two images (SynthFaces: identity index, from the
    #: ``<stem>_identities.npy`` sidecar; folders: person names), or None when the source has none.
    #: The bootstrap resamples identities with it (:func:`maskinv.evaluate.bootstrap.paired_bootstrap`).
    pair_identity: np.ndarray | None = None

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    @property
    def has_pairs(self) -> bool:
        """Pair protocols (uu/mu/mm) apply: a pair list (a folder may have only a probe list)."""
        return self.folder is None or self.folder.pairs is not None

    def describe(self) -> dict[str, Any]:
        """``results["benchmarks"][label]``: source metadata plus pair counts and image size
        (folders: also images dropped and the probe/reference comparison counts)."""
        out = {**self.meta, "num_pairs": self.num_pairs, "num_genuine": int(self.issame.sum()),
               "num_impostor": int((~self.issame).sum()),
               "image_size": [int(self.images.shape[1]), int(self.images.shape[2])]}
        if self.probe is not None:
            f = self.folder
            ids = np.unique(np.asarray(f.identities, dtype=object).astype(str), return_inverse=True)[1]
            pi, ri = self.probe & f.valid, ~self.probe & f.valid
            same = int((ids[pi][:, None] == ids[ri][None, :]).sum())
            total = int(pi.sum()) * int(ri.sum())
            out.update(num_probe_images=int(self.probe.sum()), num_reference_images=int((~self.probe).sum()))
            # comparisons of the kept images (the same for every model)
            out[PROBE_REF] = {"num_probes": int(pi.sum()), "num_references": int(ri.sum()),
                                "num_comparisons": total, "num_genuine": same, "num_impostor": total - same}
        return out


def check_arrays(images: Any, issame: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (2N, H, W, 3) uint8, issame (N,) bool)`` checked; :class:`DataFormatError` naming ``name``."""
    images = check_images(images, name)
    issame = np.asarray(issame)
    if issame.ndim != 1 or images.shape[0] != 2 * issame.shape[0]:
        raise DataFormatError(f"{name}: {images.shape[0]} images for {issame.shape[0]} pairs (need 2 per pair)")
    return images, issame.astype(bool)

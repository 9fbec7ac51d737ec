"""Is the face in an aligned crop masked? A small CNN on the 112 px ArcFace crop.

The service (:mod:`maskinv.serve`) uses it to choose the threshold: M-U for a masked probe
against an unmasked enrolment, U-U otherwise, and the stricter of the two when the classifier
is unsure. A false "masked" could buy an unmasked impostor a looser threshold, so the decision
threshold is set for few false "masked" (see :class:`MaskClassifier`).

Training data (``benchmarks/train_mask_classifier.py``; ``benchmarks/serve_rmfd.py test`` tests it): all
RMFD dev people (real masks, identity split ``benchmarks/splits/rmfd_dev.txt``), the same unmasked
photos with synthetic masks (:func:`maskinv.masks.apply_mask`) and with procedural occluders that are
not masks (sunglasses, a beard, a scarf under the chin, a cut-off chin: labelled
unmasked), and LFW training people likewise — RMFD's masked and unmasked photos come from different
sources, and the synthetic copies make "mask" and "source" disagree in training. Round 4 adds a second
synthetic mask per unmasked crop in the colours round 3 missed (beige, cream, white, grey, black). The
recipe and the masked cut-off come from person-grouped cross-validation over the dev people. The weights
ship as package data (``mask_classifier.pt`` + ``mask_classifier.json``: sha256, provenance, recipe,
input side, data hashes, the chosen cut-offs).

>>> clf = load_mask_classifier()
>>> clf.predict_proba(crops)           # (N,) P(masked) of uint8 (N, 112, 112, 3) RGB crops
>>> clf.decide(p)                      # "masked" | "unmasked" | "unsure"
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, DataFormatError

__all__ = ["MaskClassifier", "load_mask_classifier", "build_net", "train_classifier", "DEFAULT_WEIGHTS",
           "INPUT_SIDE"]

#: The crop is resized to this side before the network (the mask covers the lower half: coarse is enough).
#: A classifier's own side is in its sidecar (``input_side``); this is the default for new ones.
INPUT_SIDE = 56
#: Training augmentations: "v1" flip, brightness/contrast, a 3 px shift (rounds 1-3); "v2" adds, on half
#: the batch, a rotation (+-25 deg), a zoom (0.75-1.1) and a shift (+-10 %) with black fill, as the
#: service's alignment produces on faces it half-misses, and a per-channel colour gain / desaturation.
AUGMENTS = ("v1", "v2")
DEFAULT_WEIGHTS = Path(__file__).with_name("mask_classifier.pt")
FORMAT = "maskinv-mask-classifier"


def build_net():
    """The classifier network: 4 conv blocks, global average pooling, one logit (P(masked))."""
    import torch.nn as nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 64), nn.MaxPool2d(2), *block(64, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))


def prepare(crops: np.ndarray, side: int = INPUT_SIDE):
    """uint8 (N, H, W, 3) RGB crops -> float tensor (N, 3, side, side) in [-1, 1]."""
    import cv2
    import torch

    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise DataFormatError(f"mask classifier: expected uint8 (N, H, W, 3) RGB crops, got {crops.dtype} {crops.shape}")
    if crops.shape[1:3] != (side, side):
        crops = np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops]) \
            if len(crops) else np.zeros((0, side, side, 3), np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class MaskClassifier:
    """A trained classifier with its cut-offs.

    ``masked_at``: P(masked) at or above which a crop counts as masked (chosen on validation
    people for few false "masked"); ``unmasked_below``: below it, unmasked; between: unsure.
    """

    def __init__(self, net, masked_at: float, unmasked_below: float, meta: dict[str, Any] | None = None,
                 input_side: int = INPUT_SIDE):
        if not 0.0 < unmasked_below <= masked_at < 1.0:
            raise CheckpointError(f"mask classifier cut-offs must satisfy 0 < unmasked_below <= masked_at < 1, "
                                  f"got {unmasked_below}, {masked_at}")
        if not 16 <= int(input_side) <= 112:
            raise CheckpointError(f"mask classifier input side must be 16..112 px, got {input_side}")
        self.net = net.eval()
        self.input_side = int(input_side)
        self.masked_at = float(masked_at)
        self.unmasked_below = float(unmasked_below)
        self.meta = dict(meta or {})
        self._lock = threading.Lock()  # BatchNorm in eval mode is stateless, but keep inference serial per object

    def predict_proba(self, crops: np.ndarray) -> np.ndarray:
        import torch

        x = prepare(crops, self.input_side)
        if len(x) == 0:
            return np.zeros(0, np.float32)
        with self._lock, torch.inference_mode():
            return torch.sigmoid(self.net(x)[:, 0]).numpy().astype(np.float32)

    def decide(self, p: float) -> str:
        """``"masked"`` / ``"unmasked"`` / ``"unsure"`` for one probability."""
        if p >= self.masked_at:
            return "masked"
        if p < self.unmasked_below:
            return "unmasked"
        return "unsure"

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Weights to ``path`` (state dict) and the cut-offs + provenance to ``path.json``."""
        from ..utils.io import atomic_torch_save, atomic_write_json
        from ..utils.hashing import file_sha256

        p = Path(path)
        atomic_torch_save(self.net.state_dict(), p)
        info = {"format": FORMAT, "format_version": 1, "input_side": self.input_side, "masked_at": self.masked_at,
                "unmasked_below": self.unmasked_below, "sha256": file_sha256(p), **self.meta, **(meta or {})}
        atomic_write_json(p.with_suffix(".json"), info)
        self.meta = {k: v for k, v in info.items() if k not in ("format", "format_version")}
        return p


_LOADED: dict[str, MaskClassifier] = {}
_LOAD_LOCK = threading.Lock()


def load_mask_classifier(path: str | Path | None = None) -> MaskClassifier:
    """The classifier at ``path`` (default: the one shipped with maskinv), loaded once per path."""
    import torch

    from ..utils.hashing import file_sha256
    from ..utils.io import read_json_file

    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    key = str(p.resolve())
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if not p.is_file():
            raise CheckpointError(f"{p}: mask classifier weights not found")
        info = read_json_file(p.with_suffix(".json"), "mask classifier sidecar", CheckpointError)
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise CheckpointError(f"{p}: not a mask classifier (no {p.with_suffix('.json').name} sidecar with its cut-offs)")
        if info.get("sha256") != file_sha256(p):
            raise CheckpointError(f"{p}: weights do not match the sha256 in {p.with_suffix('.json').name}")
        net = build_net()
        try:
            net.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - re-raised typed, naming the file
            raise CheckpointError(f"{p}: not a mask classifier state dict: {exc}") from exc
        clf = MaskClassifier(net, info["masked_at"], info["unmasked_below"],
                             {k: v for k, v in info.items() if k not in ("format", "format_version")},
                             info.get("input_side", INPUT_SIDE))
        _LOADED[key] = clf
        return clf


def _augment(x, g, kind: str = "v1"):
    """Random flip, brightness/contrast and a shift of up to 3 px (tensors (B, 3, S, S) in [-1, 1]); "v2" adds
    geometry with black fill and colour jitter on random halves of the batch (see :data:`AUGMENTS`)."""
    import math

    import torch

    b, side = x.shape[0], x.shape[-1]
    if kind == "v2":
        F = torch.nn.functional
        on = (torch.rand(b, generator=g) < 0.5).float()
        ang = (torch.rand(b, generator=g) - 0.5) * (2 * math.radians(25)) * on
        zoom = 1 / (0.75 + torch.rand(b, generator=g) * 0.35 * on + 0.25 * (1 - on))  # on: 0.75..1.1, off: 1
        t = (torch.rand(b, 2, generator=g) - 0.5) * 0.4 * on[:, None]
        cos, sin = torch.cos(ang) * zoom, torch.sin(ang) * zoom
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1  # black fill
        col = (torch.rand(b, generator=g) < 0.5).float()[:, None, None, None]
        gain = 1 + (torch.rand(b, 3, 1, 1, generator=g) - 0.5) * 0.3
        grey = x.mean(1, keepdim=True)
        sat = torch.rand(b, 1, 1, 1, generator=g)
        x = col * ((grey + (x - grey) * sat) * gain) + (1 - col) * x
    elif kind != "v1":
        raise DataFormatError(f"mask classifier: unknown augmentation {kind!r}; known: {AUGMENTS}")
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    c = 1 + (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.6
    br = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.4
    x = (x * c + br).clamp(-1, 1)
    pad = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 7, (2,), generator=g))
    return pad[:, :, dy:dy + side, dx:dx + side]


def train_classifier(crops: np.ndarray, labels: np.ndarray, *, epochs: int = 12, batch_size: int = 64,
                     lr: float = 3e-3, seed: int = 0, weights: np.ndarray | None = None, log=None,
                     side: int = INPUT_SIDE, augment: str = "v1", bf16: bool = False):
    """Train :func:`build_net` on uint8 crops and 0/1 labels (1 = masked); returns the network (float32).

    side: the network's input side; augment: one of :data:`AUGMENTS`; bf16: forward/backward under CPU
    bfloat16 autocast (faster where the CPU has AMX/AVX512-BF16; the weights stay float32)."""
    import torch

    labels = np.asarray(labels, np.float32)
    if len(crops) != len(labels) or len(crops) == 0:
        raise DataFormatError(f"train_classifier: {len(crops)} crops for {len(labels)} labels")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = build_net()
    if augment not in AUGMENTS:
        raise DataFormatError(f"mask classifier: unknown augmentation {augment!r}; known: {AUGMENTS}")
    x_all = prepare(crops, side)
    y_all = torch.from_numpy(labels)
    w_all = torch.from_numpy(np.ones(len(labels), np.float32) if weights is None else np.asarray(weights, np.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for ep in range(epochs):
        perm = torch.randperm(len(labels), generator=g)
        tot = 0.0
        for i in range(0, len(labels), batch_size):
            idx = perm[i:i + batch_size]
            x = _augment(x_all[idx], g, augment)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logit = net(x)[:, 0].float()
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, y_all[idx], reduction="none")
                    * w_all[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        if log:
            log(f"epoch {ep + 1}/{epochs}: loss {tot / len(labels):.4f}")
    return net.eval()

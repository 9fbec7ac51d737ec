"""MTCNN face detector (Zhang et al. 2016): P-Net -> R-Net -> O-Net cascade, five landmarks.

Our own modules and cascade; only the trained weights come from the ``facenet-pytorch``
wheel (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, MIT licence). That package pins old
torch/numpy/torchvision, so it is never imported: its folder is found with
``importlib.util.find_spec`` (which does not execute it) and the state dicts are read with
``torch.load(weights_only=True)``. Install the files with
``pip install --no-deps facenet-pytorch==2.6.0``.

Conventions of those weights: RGB input scaled ``(x - 127.5) / 128``; the dense layers of
R-Net and O-Net expect the feature map flattened in (W, H, C) order (Caffe heritage);
O-Net's ten landmark outputs are five x's then five y's, as fractions of the box, in the
ArcFace order (image-left eye first).
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils.wheel_files import package_file
from .interface import DetectorUnavailableError, Face, FaceDetector, downscaled

__all__ = ["MTCNNDetector", "mtcnn_weights_dir", "load_mtcnn_nets", "INSTALL_HINT", "nms"]

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"
_NET_FILES = ("pnet.pt", "rnet.pt", "onet.pt")


def mtcnn_weights_dir() -> Path | None:
    """Folder holding pnet.pt/rnet.pt/onet.pt, or None when the wheel is not installed."""
    return package_file("facenet_pytorch", "data", ok=lambda d: all((d / f).is_file() for f in _NET_FILES))

def _build_nets():
    import torch
    from torch import nn

    class PNet(nn.Module):
        """Fully convolutional 12x12 proposal net: per cell a face probability and box offsets."""

        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 10, 3), nn.PReLU(10), nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
            self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return torch.softmax(self.conv4_1(x), 1)[:, 1], self.conv4_2(x)

    class RNet(nn.Module):
        """24x24 refinement net."""

        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 28, 3), nn.PReLU(28), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2, self.pool2 = nn.Conv2d(28, 48, 3), nn.PReLU(48), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))  # (W, H, C) flatten order
            return torch.softmax(self.dense5_1(x), 1)[:, 1], self.dense5_2(x)

    class ONet(nn.Module):
        """48x48 output net: probability, box offsets and five landmarks."""

        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2, self.pool2 = nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3, self.pool3 = nn.Conv2d(64, 64, 3), nn.PReLU(64), nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
            return torch.softmax(self.dense6_1(x), 1)[:, 1], self.dense6_2(x), self.dense6_3(x)

    return PNet(), RNet(), ONet()


def load_mtcnn_nets(weights_dir: str | Path | None = None):
    """(pnet, rnet, onet) in eval mode with the published weights loaded strictly."""
    import torch

    d = Path(weights_dir) if weights_dir is not None else mtcnn_weights_dir()
    if d is None:
        raise DetectorUnavailableError(f"the mtcnn detector needs its weight files: {INSTALL_HINT}")
    nets = _build_nets()
    for net, fname in zip(nets, _NET_FILES):
        path = d / fname
        if not path.is_file():
            raise DetectorUnavailableError(f"{path}: MTCNN weight file not found ({INSTALL_HINT})")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        net.eval().requires_grad_(False)
    return nets


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first.

    ``mode="min"`` divides the overlap by the smaller box (O-Net stage: drops a box nested
    inside a larger detection of the same face).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(denom, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the nets were trained on square crops)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the nets' box offsets (fractions of the box width/height)."""
    wh = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
    return boxes + reg * wh


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class MTCNNDetector(FaceDetector):
    """MTCNN cascade on CPU (offline weights from the facenet-pytorch wheel).

    ``min_face_size`` (default 40 px, the reach of dlib's HOG at one up-step): smaller
    faces are not searched; every halving of it roughly quadruples the P-Net cost.
    ``thresholds``: P/R/O-Net face probabilities (the published 0.6/0.7/0.7).
    ``factor``: pyramid step. ``pad``: border added around the photo, as a fraction of its
    shorter side, so a face that fills a tight crop (chin or forehead cut off) is still
    framed by a P-Net window; photos whose shorter side is above ``pad_below`` px are first
    searched unpadded and padded only when nothing was found (keeps big photos fast).
    ``max_side``: larger photos are downscaled for detection; coordinates are mapped back.
    ``threads``: torch intra-op threads while detecting (default 1; ``None`` leaves the
    setting alone). The nets are tiny, so extra threads mostly add synchronisation; on a
    busy 2-core machine two threads made one 512x512 photo ~20x slower than one.
    """

    name = "mtcnn"

    def __init__(self, min_face_size: float = 40.0, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709,
                 pad: float = 0.25, pad_below: int = 400, max_side: int = 1024,
                 threads: int | None = 1, weights_dir: str | Path | None = None):
        self.pnet, self.rnet, self.onet = load_mtcnn_nets(weights_dir)
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.pad = float(pad)
        self.pad_below = int(pad_below)
        self.max_side = int(max_side)
        self.threads = None if threads is None else max(1, int(threads))
        if not (0.1 < self.factor < 0.95) or self.min_face_size < 12 or len(self.thresholds) != 3:
            raise ConfigError(f"mtcnn: bad settings factor={factor} min_face_size={min_face_size} "
                                  f"thresholds={thresholds}")
        self._lock = threading.Lock()  # torch modules are shared; keep one image at a time

    # ------------------------------------------------------------------ public
    def detect(self, image: np.ndarray) -> list[Face]:
        _, small, factor = downscaled(image, self.max_side)
        with self._lock, _torch_threads(self.threads):
            padded = min(small.shape[:2]) <= self.pad_below
            boxes, points = self._detect_padded(small) if padded else self._cascade(small)
            if not len(boxes) and not padded:
                boxes, points = self._detect_padded(small)
        faces = [Face(box=b[:4].astype(np.float64) / factor, landmarks=(p / factor).astype(np.float32),
                      score=float(b[4])) for b, p in zip(boxes, points)]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    # ------------------------------------------------------------------ stages
    def _detect_padded(self, img: np.ndarray):
        import cv2

        p = int(round(self.pad * min(img.shape[:2])))
        if p <= 0:
            return self._cascade(img)
        # Replicated edges keep the face outline continuous (a black frame reads as an edge).
        big = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)
        boxes, points = self._cascade(big)
        boxes[:, :4] -= p
        points -= p
        return boxes, points

    def _cascade(self, img: np.ndarray):
        import torch

        with torch.inference_mode():
            boxes = self._stage1(img)
            if len(boxes):
                boxes = self._refine(img, boxes, 24, self.rnet, self.thresholds[1])
            if len(boxes):
                return self._output(img, boxes)
        return np.zeros((0, 5), np.float64), np.zeros((0, 5, 2), np.float64)

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        """P-Net over the image pyramid -> square candidate boxes (x0, y0, x1, y1, score)."""
        import cv2
        import torch

        h, w = img.shape[:2]
        scale = 12.0 / self.min_face_size
        found = []
        src = img
        while min(h, w) * scale >= 12:
            sh, sw = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            # INTER_AREA at a non-integer ratio costs in proportion to its source: resample from
            # an exact 2x box-averaged copy when the level is <= half of it (~4x cheaper). Chaining
            # level from level instead blurs more and lost masked faces in the tests.
            while sw * 2 <= src.shape[1] and sh * 2 <= src.shape[0]:
                src = cv2.resize(src, (src.shape[1] // 2, src.shape[0] // 2), interpolation=cv2.INTER_AREA)
            lvl = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(lvl).permute(2, 0, 1)[None].float().sub_(127.5).mul_(1 / 128)
            prob, reg = self.pnet(x)
            prob, reg = prob[0].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys):
                # Cell (x, y) of the stride-2 output covers the 12x12 window at (2x, 2y) of this level.
                cells = np.stack([xs, ys, xs, ys], 1).astype(np.float64) * 2
                cells[:, 2:] += 12
                b = np.concatenate([cells / scale, prob[ys, xs, None], reg[:, ys, xs].T], 1)
                found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
            scale *= self.factor
        if not found:
            return np.zeros((0, 5))
        b = np.concatenate(found)
        b = b[nms(b[:, :4], b[:, 4], 0.7)]
        return np.concatenate([_square(_regress(b[:, :4], b[:, 5:9])), b[:, 4:5]], 1)

    @staticmethod
    def _crops(img: np.ndarray, boxes: np.ndarray, size: int):
        """Square crops resized to ``size`` (zero outside the image), as a normalised NCHW tensor."""
        import cv2
        import torch

        h, w = img.shape[:2]
        b = np.round(boxes[:, :4]).astype(np.int64)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        # One zero-padded copy so every crop is a plain slice (no per-box bounds logic).
        m = int(max(0, -b[:, :2].min(), (b[:, 2] - w).max(), (b[:, 3] - h).max()))
        src = cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_CONSTANT, value=0) if m else img
        out = np.empty((len(b), size, size, 3), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(b + m):  # ~10 us per box in OpenCV
            out[i] = cv2.resize(src[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().sub_(127.5).mul_(1 / 128)

    def _refine(self, img, boxes, size, net, thr):
        """R-Net on all candidates in one batch: keep, suppress, regress, square."""
        prob, reg = net(self._crops(img, boxes, size))
        prob, reg = prob.numpy(), reg.numpy()
        ok = prob > thr
        boxes, prob, reg = boxes[ok, :4], prob[ok], reg[ok]
        keep = nms(boxes, prob, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        return np.concatenate([boxes, prob[keep, None]], 1)

    def _output(self, img, boxes):
        """O-Net in one batch: final boxes, probabilities and five landmarks.

        A near miss (probability in [t/2, t)) gets one more O-Net look at its own regressed
        box: a mask shifts the first box off the face's centre and the re-centred crop often
        scores well above t (recovers masked faces; the threshold itself is unchanged).
        """
        thr = self.thresholds[2]
        prob, reg, pts = (t.numpy() for t in self.onet(self._crops(img, boxes, 48)))
        boxes = boxes[:, :4].copy()
        retry = np.flatnonzero((prob < thr) & (prob >= thr / 2))
        if len(retry):
            again = _square(_regress(boxes[retry], reg[retry]))
            p2, r2, l2 = (t.numpy() for t in self.onet(self._crops(img, again, 48)))
            better = p2 > prob[retry]
            i = retry[better]
            boxes[i], prob[i], reg[i], pts[i] = again[better], p2[better], r2[better], l2[better]
        ok = prob >= thr
        boxes, prob, reg, pts = boxes[ok], prob[ok], reg[ok], pts[ok]
        wh = boxes[:, 2:4] - boxes[:, 0:2]
        points = np.stack([boxes[:, None, 0] + wh[:, None, 0] * pts[:, :5],
                           boxes[:, None, 1] + wh[:, None, 1] * pts[:, 5:]], axis=2)
        boxes = _regress(boxes, reg)
        keep = nms(boxes, prob, 0.7, mode="min")
        return np.concatenate([boxes[keep], prob[keep, None]], 1), points[keep]

"""Data-layer throughput: RecordIO reads, read+decode, SynthFaces generation.

    python -m benchmarks.bench_data [--images 4000] [--size 112]
    python -m benchmarks.bench_data --calibrate [--device cuda]   # SynthFaces difficulty check

Figures (single process = one core):
- ``records_per_s``: RecordReader.read of every key in random order (no decode), with the
  baseline ``raw_pread_records_per_s`` (os.pread of the same byte ranges, no parsing).
- ``decode_images_per_s``: RecordIODataset[i] (read + unpack + JPEG decode + BGR->RGB), with
  the baseline ``imdecode_only_per_s`` (cv2.imdecode on bytes already in memory).
- ``synth_images_per_s``: SynthFaces render + JPEG encode, vs the 1,000 img/s/core target.

``--calibrate`` trains a tiny iResNet-like CNN (REFERENCE §9 size) with a CosFace head on
SynthFaces and reports 10-fold accuracy on held-out identities, unmasked (U-U) and with a
crude nose-mouth-chin occluder drawn from the exact landmarks (M-U, M-M).  It is how the
default difficulty was chosen (docs/synthfaces.md); it needs torch and is slow on CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks._common import report, write_result  # noqa: E402


def _throughput(out: Path, n_images: int, size: int) -> dict:
    from maskinv.data.recordio import RecordIODataset, RecordReader
    from maskinv.utils.images import decode_image
    from maskinv.data.synth import generate_dataset

    ids = max(1, n_images // 10)
    t0 = time.perf_counter()
    generate_dataset(out, identities=ids, images_per_identity=10, seed=0, size=size)
    t_gen = time.perf_counter() - t0
    n = ids * 10
    synth_rate = n / t_gen

    reader = RecordReader(out / "train.rec", out / "train.idx")
    keys = np.random.default_rng(0).permutation(np.arange(1, n + 1))
    offsets = [reader.offset(int(k)) for k in keys]
    ends = {}
    all_offs = sorted(reader.offset(int(k)) for k in reader.keys) + [reader.file_size]
    for a, b in zip(all_offs[:-1], all_offs[1:]):
        ends[a] = b
    fd = os.open(out / "train.rec", os.O_RDONLY)
    try:
        best_raw = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for o in offsets:
                os.pread(fd, ends[o] - o, o)
            best_raw = min(best_raw, time.perf_counter() - t)
    finally:
        os.close(fd)
    best_rec = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for k in keys:
            reader.read(int(k))
        best_rec = min(best_rec, time.perf_counter() - t)

    ds = RecordIODataset(out)
    order = np.random.default_rng(1).permutation(len(ds))
    payloads = [ds.read_encoded(int(i))[0] for i in order]
    best_imdec = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for p in payloads:
            decode_image(p)
        best_imdec = min(best_imdec, time.perf_counter() - t)
    best_dec = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for i in order:
            ds[int(i)]
        best_dec = min(best_dec, time.perf_counter() - t)
    return {
        "images": n,
        "size": size,
        "records_per_s": n / best_rec,
        "raw_pread_records_per_s": n / best_raw,
        "records_vs_raw_pread": (n / best_rec) / (n / best_raw),
        "decode_images_per_s": n / best_dec,
        "imdecode_only_per_s": n / best_imdec,
        "decode_vs_imdecode_only": (n / best_dec) / (n / best_imdec),
        "synth_images_per_s": synth_rate,
        "synth_ms_per_image": 1000.0 / synth_rate,
        "synth_vs_1000_per_s_target": synth_rate / 1000.0,
        "synth_10k_images_s_estimate": 10_000 / synth_rate,
    }


# ------------------------------------------------------------------------------------
# Calibration: does a small CNN reach ~90-98 % on held-out SynthFaces identities?
def _tiny_net(emb: int = 128, widths=(16, 32, 64, 128), input_size: int = 64):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.prelu = nn.PReLU(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return y + self.down(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
            layers, cin = [], widths[0]
            for w in widths:
                layers.append(Block(cin, w, 2))
                cin = w
            self.body = nn.Sequential(*layers)
            side = input_size // 32
            self.bn = nn.BatchNorm2d(cin)
            self.fc = nn.Linear(cin * side * side, emb)
            self.feat = nn.BatchNorm1d(emb)

        def forward(self, x):
            x = self.bn(self.body(self.stem(x)))
            return self.feat(self.fc(torch.flatten(x, 1)))

    return Net()


def _ten_fold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """LFW 10-fold accuracy (REFERENCE §6): thresholds on squared L2 distance 0..3.99."""
    dist = 2.0 - 2.0 * scores
    ths = np.arange(0, 4, 0.01)
    folds = np.array_split(np.arange(len(scores)), 10)
    accs = []
    pred = dist[None, :] < ths[:, None]
    correct = pred == issame[None, :]
    for f in folds:
        train = np.setdiff1d(np.arange(len(scores)), f)
        best = np.argmax(correct[:, train].mean(1))
        accs.append(correct[best, f].mean())
    return float(np.mean(accs)), float(np.std(accs))


def _occlude(imgs: np.ndarray, lms: np.ndarray, seed: int) -> np.ndarray:
    """Crude surgical-mask stand-in: jaw points 1..15 up to the nose bridge (point 28)."""
    import cv2

    out = imgs.copy()
    rng = np.random.default_rng(seed)
    for im, lm in zip(out, lms):
        top = lm[28, 1]
        poly = np.concatenate([lm[1:16], [[lm[15, 0], top], [lm[1, 0], top]]])
        col = tuple(float(c) for c in rng.uniform(60, 230, 3))
        cv2.fillPoly(im, [np.round(poly * 16).astype(np.int32)], col, cv2.LINE_AA, 4)
    return out


def _calibrate_one(root: Path, difficulty, identities, ipi, size, val_ids, val_pairs, steps, batch, device, workers, seed,
                   mask_prob: float = 0.0) -> dict:
    import torch
    import torch.nn.functional as F

    from maskinv.data.bins import decode_bin
    from maskinv.data.recordio import RecordIODataset
    from maskinv.data.synth import generate_dataset

    out = root / f"d{difficulty}_{identities}x{ipi}"
    t0 = time.perf_counter()
    generate_dataset(out, identities=identities, images_per_identity=ipi, seed=seed, size=size,
                     val_identities=val_ids, val_pairs=val_pairs, difficulty=difficulty, workers=workers)
    t_gen = time.perf_counter() - t0
    ds = RecordIODataset(out)
    x = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.from_numpy(ds.labels).to(device)
    xm = None
    if mask_prob > 0:  # mask-augmented baseline: occluded copies from the exact landmarks
        lms = np.load(out / "landmarks.npy")[ds.keys]
        occl = _occlude(x.permute(0, 2, 3, 1).cpu().numpy(), lms, seed=2)
        xm = torch.from_numpy(occl).permute(0, 3, 1, 2).contiguous().to(device)
    vimg, issame = decode_bin(out / "synth_val.bin")
    vlm = np.load(out / "synth_val_landmarks.npy")

    g = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    net = _tiny_net(input_size=size).to(device)
    W = torch.nn.Parameter(torch.randn(128, identities, generator=g).mul_(0.01).to(device))
    opt = torch.optim.SGD([*net.parameters(), W], lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.05)
    s_, m_ = 30.0, 0.35
    amp = device.startswith("cuda")
    t1 = time.perf_counter()
    losses = []
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g).to(device)
        xb = x[idx]
        if xm is not None:
            use = (torch.rand(batch, generator=g) < mask_prob).to(device)
            xb = torch.where(use[:, None, None, None], xm[idx], xb)
        xb = xb.float().div_(127.5).sub_(1.0)
        flip = torch.rand(batch, generator=g).to(device) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        with torch.autocast(device_type="cuda" if amp else "cpu", dtype=torch.bfloat16, enabled=amp):
            e = net(xb)
        cos = F.normalize(e.float()) @ F.normalize(W, dim=0)
        logits = s_ * (cos - m_ * F.one_hot(y[idx], identities))
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        if step >= steps - 50:
            losses.append(loss.item())
    t_train = time.perf_counter() - t1
    net.eval()

    @torch.no_grad()
    def embed(imgs: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device).float().div_(127.5).sub_(1.0)
        outs = []
        for i in range(0, len(t), 512):
            b = t[i : i + 512]
            outs.append(F.normalize(net(b) + net(b.flip(3))).cpu())
        return torch.cat(outs).numpy()

    res = {"difficulty": difficulty, "mask_prob": mask_prob, "identities": identities, "images_per_identity": ipi, "size": size,
           "steps": steps, "final_train_loss": float(np.mean(losses)), "gen_s": t_gen, "train_s": t_train}
    masked = _occlude(vimg, vlm, seed=1)
    variants = {"uu": vimg, "mu": np.where((np.arange(len(vimg)) % 2 == 1)[:, None, None, None], masked, vimg), "mm": masked}
    for name, imgs in variants.items():
        e = embed(imgs)
        sc = (e[0::2] * e[1::2]).sum(1)
        acc, std = _ten_fold(sc, issame)
        res[f"{name}_acc"] = acc
        res[f"{name}_std"] = std
    return res


def calibrate(argv_ns) -> dict:
    import torch

    device = argv_ns.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for diff in argv_ns.difficulties.split(","):
            d = float(diff) if diff.replace(".", "", 1).isdigit() else diff
            for spec in argv_ns.sets.split(","):
                ids, ipi = (int(v) for v in spec.split("x"))
                for mp_ in (float(v) for v in argv_ns.mask_probs.split(",")):
                    r = _calibrate_one(Path(tmp), d, ids, ipi, argv_ns.size, argv_ns.val_identities, argv_ns.val_pairs,
                                       argv_ns.steps, 128, device, argv_ns.workers, 0, mask_prob=mp_)
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
                    rows.append(r)
    return {"device": device, "rows": rows}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=None, help="image side (default 112; 64 with --calibrate)")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--difficulties", default="default")
    ap.add_argument("--sets", default="600x12", help="comma list of IDSxIMAGES training sets for --calibrate")
    ap.add_argument("--val-identities", type=int, default=200)
    ap.add_argument("--val-pairs", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--mask-probs", default="0", help="comma list: train with the occluder on this fraction (0 = clean)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the result JSON here")
    ns = ap.parse_args(argv)
    if ns.calibrate:
        ns.size = ns.size or 64
        figures = calibrate(ns)
        name = "data_synth_calibration"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = _throughput(Path(tmp), ns.images, ns.size or 112)
        report("bench_data", figures)
        name = "data"
    path = write_result(name, figures)
    if ns.out:
        from maskinv.utils.io import atomic_write_json

        atomic_write_json(ns.out, figures)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])

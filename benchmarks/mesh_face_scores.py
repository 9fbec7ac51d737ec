"""The face mesh's face score (sigmoid of its face logit) on aligned training-style crops, and the
one-off cost per image of the training mesh pre-pass (hash + mesh on one thread).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/mesh_face_scores.py --synth DIR [--lfw N] [--json OUT]

``--synth``: a ``maskinv data synth`` folder (train.rec); ``--lfw N``: N LFW aligned112 crops drawn
with seed 0 from the people outside the held-out list (../shared/data/README.md). Prints the score
quantiles, the share below each threshold of ``--thresholds`` and the pre-pass ms per image
(wall and process CPU time).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HELD_OUT = {"Ben_Affleck", "Floyd_Mayweather", "Imran_Khan", "Joseph_Biden", "Nancy_Pelosi", "Pharrell_Williams",
            "Simon_Cowell", "Liu_Xiaoqing", "Liu_Ye", "Tian_Liang", "Wang_Fei"}


def _shared() -> Path:
    env = os.environ.get("MASKINV_SHARED_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]       # /work/main or a worktree /work/wt/X
    cands = [repo.parent / "shared" / "data", repo.parent.parent / "shared" / "data"]
    return next((c for c in cands if c.is_dir()), cands[0])


def lfw_crops(n: int) -> np.ndarray:
    import cv2

    root = _shared() / "lfw" / "aligned112"
    if not root.is_dir():
        raise SystemExit(f"{root}: LFW aligned112 not found")
    files = sorted(p for p in root.glob("*/*.jpg") if p.parent.name not in HELD_OUT)
    pick = np.random.default_rng(0).choice(len(files), size=min(n, len(files)), replace=False)
    return np.stack([cv2.imread(str(files[i]))[:, :, ::-1] for i in sorted(pick)])


def synth_crops(folder: str) -> np.ndarray:
    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(folder)
    return np.stack([ds[i][0] for i in range(len(ds))])


def measure(name: str, crops: np.ndarray, thresholds) -> dict:
    from maskinv.masks.mesh_cache import MeshCache, crop_meshes_scored

    crop_meshes_scored(crops[:8])                        # warm-up (model load)
    t0, c0 = time.perf_counter(), time.process_time()
    cache = MeshCache()
    from maskinv.constants import template_for_size

    _, s = cache.get_many(crops, template_for_size(crops.shape[1:3]), batch_size=32)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    q = np.quantile(s, [0.0, 0.01, 0.05, 0.5, 0.95, 1.0])
    out = {"set": name, "n": len(s), "size": list(crops.shape[1:3]),
           "score_quantiles": dict(zip(["min", "p01", "p05", "median", "p95", "max"], q.round(4).tolist())),
           "share_below": {str(t): float((s < t).mean()) for t in thresholds},
           "prepass_ms_per_image_wall": 1e3 * wall / len(s), "prepass_ms_per_image_cpu": 1e3 * cpu / len(s)}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", required=True)
    ap.add_argument("--lfw", type=int, default=200)
    ap.add_argument("--thresholds", default="0.1,0.5,0.9")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from maskinv.utils.machine import machine_line

    th = [float(t) for t in a.thresholds.split(",")]
    res = {"machine": machine_line(), "results": [measure("synth", synth_crops(a.synth), th)]}
    if a.lfw:
        res["results"].append(measure("lfw_aligned112", lfw_crops(a.lfw), th))
    if a.json:
        from maskinv.utils.io import atomic_write_json

        atomic_write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

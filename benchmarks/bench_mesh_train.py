"""Mesh masks in the training loop (issue 21): pre-pass cost, warp speed before/after, step time.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_mesh_train.py [--n 128] [--steps 5] \
        [--repeats 7] [--json benchmarks/results/mesh_train.json]

On ``--n`` LFW aligned112 crops (people outside the held-out list, seed 0; the script stops
without ../shared/data), one thread:

* pre-pass: hash + face mesh (fast runner) per image through a fresh ``MeshCache``, batch 32;
* agreement: alpha IoU with the per-image renderer on posed fixture meshes, both warps;
* warp: ``MeshBatchRenderer`` on the batch of ``--n`` images with their own meshes (bank on the
  first 32), ``warp="cubic"`` (round 2) and ``"tps"`` (now) in the same run, median of ``--repeats``;
* views: the step's flip + masking of the batch alone (``prepare_views``), median of ``--repeats``;
* step: one training step (``TrainStep``: flip, masks with prob 1, student forward/backward,
  ElasticFace head with 1,000 classes, SGD) of an iResNet-18 x0.125 at 112 px on the same batch,
  without masks, with ``v1`` masks (``BatchMasker``) and with ``mesh`` masks from each record's
  own mesh (``RecordMeshMasker``), median of ``--steps`` after one warm-up step.

Wall-clock ms and CPU ms of this process (``time.process_time``: on a shared machine the CPU time
is what the wall clock would read on an idle core).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from mesh_face_scores import lfw_crops  # noqa: E402


def _timed(fn, repeats: int) -> tuple[float, float]:
    w, c = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        w.append(time.perf_counter() - t0)
        c.append(time.process_time() - c0)
    return 1e3 * statistics.median(w), 1e3 * statistics.median(c)


def agreement() -> dict:
    """Alpha IoU (> 0.5) of MeshBatchRenderer against the per-image renderer with the same
    parameters, on the posed astronaut fixture mesh (tests/test_mesh.py's ``_posed``), bank on the
    frontal mesh, seeds 0 and 1 x 8 entries: min and mean per pose, for both warps."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_mesh import MESH_FIXTURE, _posed

    from maskinv.masks.mesh import mesh_layers
    from maskinv.masks.mesh_batch import MeshBatchRenderer

    img = np.full((180, 180, 3), 128, np.uint8)
    out: dict = {}
    for warp in ("cubic", "tps"):
        v: dict = {}
        for seed in (0, 1):
            r = MeshBatchRenderer(180, meshes=np.load(MESH_FIXTURE)[None], per_kind=2, seed=seed, warp=warp)
            for pose in [(0, 0), (25, 0), (-25, 0), (0, 20), (20, -15), (35, 0), (-35, 10)]:
                mesh = _posed(*pose)
                for e in range(len(r)):
                    ref = mesh_layers(img, mesh, r.entry_params[e])[0]["alpha"] > 0.5
                    got = r.render(img, mesh, e, np.random.default_rng(0))[1] > 0.5
                    v.setdefault(f"yaw{pose[0]} roll{pose[1]}", []).append(float((ref & got).sum() / (ref | got).sum()))
        out[warp] = {k: {"min": round(min(x), 3), "mean": round(float(np.mean(x)), 3)} for k, x in v.items()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from maskinv.constants import template_for_size
    from maskinv.masks.mesh_cache import MeshCache, crop_meshes_scored
    from maskinv.masks.mesh_batch import MeshBatchRenderer
    from maskinv.utils.machine import machine_line

    imgs = lfw_crops(a.n)
    n = len(imgs)
    res: dict = {"machine": machine_line(), "n": n, "threads": 1}
    crop_meshes_scored(imgs[:4])                                    # model load, warm-up
    cache = MeshCache()
    t0, c0 = time.perf_counter(), time.process_time()
    meshes, scores = cache.get_many(imgs, template_for_size(112), batch_size=32)
    res["prepass_ms_per_image"] = {"wall": 1e3 * (time.perf_counter() - t0) / n, "cpu": 1e3 * (time.process_time() - c0) / n}
    res["face_score_below_0.5"] = int((scores < 0.5).sum())
    m2 = meshes[..., :2]
    res["agreement_iou"] = agreement()
    res["warp_ms_per_image"] = {}
    for warp in ("cubic", "tps"):
        r = MeshBatchRenderer(112, meshes=m2[:32], seed=0, warp=warp)
        r(imgs, m2, 0)
        k = iter(range(10 ** 6))
        w, c = _timed(lambda: r(imgs, m2, next(k)), a.repeats)
        res["warp_ms_per_image"][warp] = {"wall": w / n, "cpu": c / n}
    print(json.dumps(res), flush=True)

    from maskinv.masks import BatchMasker
    from maskinv.masks.mesh_records import RecordMeshMasker
    from maskinv.models import get_model
    from maskinv.train.heads import get_head
    from maskinv.train.step import StudentNet, TrainStep

    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.random.default_rng(0).integers(0, 1000, n))
    idx = torch.arange(n)
    maskers = {"none": None, "v1": BatchMasker(112, seed=0),
               "mesh": RecordMeshMasker(112, meshes, scores, seed=0)}
    from maskinv.train.step import make_generator, prepare_views

    res["views_ms"] = {}
    for name, mk in maskers.items():
        k = iter(range(10 ** 6))
        w, c = _timed(lambda: prepare_views(x, flip=True, masker=mk, mask_prob=1.0, generator=make_generator(next(k)),
                                            indices=idx), a.repeats)
        res["views_ms"][name] = {"wall": w, "cpu": c}
    print("views (flip + masks of the batch)", json.dumps(res["views_ms"]), flush=True)
    res["step_ms"] = {}
    for name, mk in maskers.items():
        torch.manual_seed(0)
        backbone = get_model("r18", embedding_size=512, width_mult=0.125, input_size=112, seed=0)
        head = get_head("elastic_arc", 512, 1000, seed=2)
        net = StudentNet(backbone, head, contextlib.nullcontext)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        step = TrainStep(model=net, backbone=backbone, optimizers=[opt], masker=mk, mask_prob=1.0 if mk else 0.0,
                         flip=True, clip_grad_norm=5.0, seed=0)
        s = iter(range(10 ** 6))
        step(x, y, next(s), idx)
        w, c = _timed(lambda: step(x, y, next(s), idx), a.steps)
        res["step_ms"][name] = {"wall": w, "cpu": c}
        print(name, res["step_ms"][name], flush=True)
    print(json.dumps(res, indent=1))
    if a.json:
        from maskinv.utils.io import atomic_write_json

        atomic_write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

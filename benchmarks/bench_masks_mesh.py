"""Speed of the mask renderers, in one run on one thread (issue 21's goals).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_masks_mesh.py [--repeats 3] [--json OUT.json]

Measures (median over repeats, one thread):
* mesh: the 468-point face mesh in torch, ms per face at batch 32 (192 px input), beside the
  reference LiteRT runtime (batch 1, XNNPACK, one thread) when ``ai-edge-litert`` is installed;
* render: ms per 112 px aligned crop of the NumPy renderer, ``v1`` (5 points) and ``mesh`` (from
  a cached mesh, the fixture tests/helpers/mesh_astronaut.npy moved onto the crop), 128 images;
* batched: ms per image of the training-time ``BatchMasker``, batch 128, uint8: the v1 bank and
  the mesh bank (entries rendered from a cached mesh: the fixture mesh on the 112 px template).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _median_ms(fn, n_items: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3 / n_items)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from maskinv.align.mesh import face_landmark_path, load_face_mesh
    from maskinv.constants import template_for_size
    from maskinv.masks import apply_mask
    from maskinv.masks.batched import BatchMasker
    from maskinv.masks.mesh import mesh_five

    out: dict = {"cpu": platform.processor() or platform.machine(), "threads": 1}
    net = load_face_mesh()
    x = torch.rand(32, 3, 192, 192)
    with torch.inference_mode():
        out["mesh_torch_ms_per_face_b32"] = _median_ms(lambda: net(x), 32, a.repeats)
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(face_landmark_path()), num_threads=1)
        it.allocate_tensors()
        idx = it.get_input_details()[0]["index"]
        xi = np.random.default_rng(0).random((1, 192, 192, 3), dtype=np.float32)

        def one():
            for _ in range(8):
                it.set_tensor(idx, xi)
                it.invoke()

        out["mesh_litert_ms_per_face_b1"] = _median_ms(one, 8, a.repeats)
    except ImportError:
        out["mesh_litert_ms_per_face_b1"] = None

    g = np.random.default_rng(0)
    crops = g.integers(60, 200, (128, 112, 112, 3), dtype=np.uint8)
    # The fixture mesh moved onto the 112 px template: similarity from its five points.
    import cv2

    mesh = np.load(REPO / "tests" / "helpers" / "mesh_astronaut.npy").astype(np.float64)
    M, _ = cv2.estimateAffinePartial2D(mesh_five(mesh).astype(np.float32), template_for_size((112, 112)).astype(np.float32))
    mesh112 = mesh[:, :2] @ M[:, :2].T + M[:, 2]
    out["render_v1_ms_per_image"] = _median_ms(lambda: [apply_mask(c, None, i) for i, c in enumerate(crops)], 128, a.repeats)
    out["render_mesh_cached_ms_per_image"] = _median_ms(
        lambda: [apply_mask(c, None, i, renderer="mesh", mesh=mesh112) for i, c in enumerate(crops)], 128, a.repeats)
    bm = BatchMasker(112, per_kind=4, seed=0)
    t = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    gen = torch.Generator().manual_seed(0)
    out["batchmasker_v1_ms_per_image_b128"] = _median_ms(lambda: bm(t, 1.0, gen), 128, a.repeats)
    t0 = time.perf_counter()
    bmm = BatchMasker(112, renderer="mesh", meshes=mesh112[None], per_kind=6, seed=0)
    out["batchmasker_mesh_bank_build_s"] = time.perf_counter() - t0
    out["batchmasker_mesh_ms_per_image_b128"] = _median_ms(lambda: bmm(t, 1.0, gen), 128, a.repeats)
    for k, v in out.items():
        print(f"{k}: {v if not isinstance(v, float) else round(v, 3)}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

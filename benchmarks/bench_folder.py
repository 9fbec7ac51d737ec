"""Folder benchmark + probe/reference protocol: embedding time vs scoring time.

A folder of 1,000 SynthFaces images (100 identities × 10, 112 px, already aligned, PNG in
the LFW layout) with half of each identity's images listed as probes: 500 × 500 = 250,000
comparisons. Each image is embedded once (tiny r18, width 1/8, 16-d, flip test); all
comparisons are one matrix product, then the metrics. Target: scoring (matrix product +
metrics) <= 1 s. The ratio against embedding every comparison's two images separately (what
a pair list of the same comparisons would cost) is reported from the measured per-image time.
A second figure scores random embeddings at a larger scale (``--big`` probes × references).

Run: ``.venv/bin/python -m benchmarks.bench_folder [--identities 100 --per-identity 10 --big 2000]``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import report, write_result


def make_folder(root: Path, identities: int, per_identity: int, seed: int = 0) -> Path:
    from maskinv.data.synth import render_faces
    from maskinv.utils.images import encode_image

    imgs, _ = render_faces(np.repeat(np.arange(identities), per_identity), seed=seed,
                           image_indices=np.tile(np.arange(per_identity), identities), size=112)
    probes = []
    for k, img in enumerate(imgs):
        name, j = f"id{k // per_identity:04d}", k % per_identity + 1
        p = root / name / f"{name}_{j:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode_image(img, "png"))
        if j <= per_identity // 2:
            probes.append(f"{name}_{j:04d}")
    (root / "probes.txt").write_text("\n".join(probes) + "\n")
    return root


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--per-identity", type=int, default=10)
    ap.add_argument("--big", type=int, default=2000, help="probes = references for the random-embedding scoring figure")
    args = ap.parse_args(argv)

    import torch

    from maskinv.data.folder_bench import prepare_folder_bench
    from maskinv.evaluate.probe_ref import probe_ref_metrics, probe_ref_scores, read_probe_list
    from maskinv.evaluate.protocols import embed_images
    from maskinv.models import get_model

    torch.manual_seed(0)
    model = get_model("r18", width_mult=0.125, embedding_size=16, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = make_folder(Path(tmp) / "bench", args.identities, args.per_identity)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        bench = prepare_folder_bench(root, aligned=True)
        probe = read_probe_list(root / "probes.txt", bench.keys)
        t_prepare = time.perf_counter() - t0
    n = len(bench.keys)
    t0 = time.perf_counter()
    emb = embed_images(model, bench.images, batch_size=128, precision="fp32")
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp = probe_ref_scores(emb, bench.identities, probe, bench.valid)
    t_matmul = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = probe_ref_metrics(comp["scores"], comp["genuine"])
    t_metrics = time.perf_counter() - t0
    n_comp = comp["scores"].size
    t_score = t_matmul + t_metrics
    naive = 2 * n_comp * t_embed / n  # embedding both images of every comparison

    rng = np.random.default_rng(0)
    big = rng.normal(size=(2 * args.big, 16)).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    ids = [f"b{i // 5}" for i in range(2 * args.big)]
    t0 = time.perf_counter()
    cb = probe_ref_scores(big, ids, np.arange(2 * args.big) % 2 == 0)
    mb = probe_ref_metrics(cb["scores"], cb["genuine"])
    t_big = time.perf_counter() - t0

    figures = {
        "images": n,
        "probes": int(comp["probe_index"].size),
        "references": int(comp["reference_index"].size),
        "comparisons": int(n_comp),
        "genuine": m["num_genuine"],
        "impostor": m["num_impostor"],
        "write_folder_s": t_write,
        "prepare_folder_s": t_prepare,
        "embed_s": t_embed,
        "embed_ms_per_image": 1000 * t_embed / n,
        "score_matmul_s": t_matmul,
        "score_metrics_s": t_metrics,
        "score_total_s": t_score,
        "score_target_s": 1.0,
        "score_within_target": bool(t_score <= 1.0),
        "embed_every_comparison_estimate_s": naive,
        "speedup_vs_embedding_every_comparison": naive / (t_embed + t_score),
        "big_comparisons": int(cb["scores"].size),
        "big_score_total_s": t_big,
        "big_tar_at_far_5e-4": mb["tar_at_far"][5e-4],
        "torch_threads": torch.get_num_threads(),
    }
    report("folder benchmark + probe_ref", figures)
    figures["path"] = str(write_result("bench_folder", figures))
    return figures


if __name__ == "__main__":
    main()

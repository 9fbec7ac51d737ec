"""Inference benchmark: photo -> decision latency, embedding throughput, 1:N search.

Figures (CPU):
- ``verify`` latency of two photos (decode + dlib detection + alignment + embedding with the
  flip test + decision), median of N runs, with its breakdown;
- embedding throughput in aligned images/s for torch fp32 (baseline), torch bf16 autocast and
  onnxruntime, flip test off (raw network throughput), ratios vs fp32 measured in this run;
- exact cosine search over a gallery of random templates (queries/s).

Run: ``.venv/bin/python -m benchmarks.bench_inference [--models r18:0.5,r50:1] [--batch 32]``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import report, timeit, write_result


def _spec(s: str) -> tuple[str, float]:
    name, _, w = s.partition(":")
    return name, float(w or 1.0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="r18:0.5", help="comma list of name:width_mult (e.g. r18:0.5,r50:1)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--gallery-size", type=int, default=100_000)
    args = ap.parse_args(argv)

    import maskinv
    from maskinv.api import load_model
    from maskinv.export import export_onnx
    from maskinv.models import export_backbone, get_model

    figures: dict = {"batch": args.batch, "flip_in_throughput": False}
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(args.batch, 112, 112, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            name, width = _spec(spec)
            tag = f"{name}_w{width:g}"
            path = Path(tmp) / f"{tag}.pt"
            export_backbone(get_model(name, width_mult=width, seed=0), path)
            fp32 = load_model(path)
            bf16 = load_model(path, precision="bf16")
            onnx_path = path.with_suffix(".onnx")
            rep = export_onnx(fp32, onnx_path)
            ox = load_model(onnx_path)
            rates = {}
            for label, m in (("torch_fp32", fp32), ("torch_bf16", bf16), ("onnx", ox)):
                sec = timeit(lambda m=m: m.forward(crops), repeat=args.repeat)
                rates[label] = args.batch / sec
            lines = {f"{tag} {k} images/s": v for k, v in rates.items()}
            lines[f"{tag} bf16 / fp32"] = rates["torch_bf16"] / rates["torch_fp32"]
            lines[f"{tag} onnx / fp32"] = rates["onnx"] / rates["torch_fp32"]
            lines[f"{tag} onnx parity max cosine distance"] = rep["max_cosine_distance"]
            report(f"embed throughput {tag} (batch {args.batch}, no flip)", lines)
            figures[tag] = {"images_per_s": rates, "bf16_vs_fp32": lines[f"{tag} bf16 / fp32"],
                            "onnx_vs_fp32": lines[f"{tag} onnx / fp32"],
                            "onnx_max_cosine_distance": rep["max_cosine_distance"]}

            # photo -> decision (needs the detect extra)
            try:
                import dlib  # noqa: F401
                from skimage import data
            except ImportError as exc:
                figures[tag]["latency"] = f"skipped: {exc}"
                continue
            photo = data.astronaut()
            probe = np.ascontiguousarray(photo[:, ::-1])
            for label, m in (("torch_fp32", fp32), ("onnx", ox)):
                maskinv.verify(photo, probe, m, threshold=0.3)  # warm-up: loads the detector
                runs = [maskinv.verify(photo, probe, m, threshold=0.3).timings for _ in range(args.latency_runs)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                report(f"photo -> decision {tag} {label} (2 photos 512x512, flip test, ms, median)", med)
                figures[tag][f"latency_ms_{label}"] = med

    # 1:N search
    from maskinv.gallery import Gallery

    n, d = args.gallery_size, 512
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery(Path(tmp) / "g.db")
        x = rng.standard_normal((n, d)).astype(np.float32)
        t0 = time.perf_counter()
        g.add_many([f"id{i}" for i in range(n)], x, fingerprint="0" * 64)
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        g.search(x[0], k=5)
        t_load = time.perf_counter() - t0
        q = x[:64] + 0.1 * rng.standard_normal((64, d)).astype(np.float32)
        one = timeit(lambda: g.search(q[0], k=5), repeat=args.repeat)
        batched = timeit(lambda: g.search(q, k=5), repeat=args.repeat)
        ok = all(h[0].name == f"id{i}" for i, h in enumerate(g.search(q, k=5)))
        g.close()
    lines = {"templates": n, "enrol s": t_add, "first search incl. load s": t_load,
             "single query ms": one * 1e3, "batched queries/s (64 per call)": 64 / batched,
             "batched / single speed-up": (64 / batched) / (1 / one), "planted matches first": ok}
    report(f"gallery search ({n} x {d})", lines)
    figures["gallery"] = lines
    write_result("inference", figures)
    return figures


if __name__ == "__main__":
    main()

"""Mask synthesis throughput per CPU core at 112x112.

Measured in one run, single-threaded (torch and OpenCV set to 1 thread):
  * decoding a 112x112 JPEG (cv2.imdecode) - the cost every training sample pays anyway;
  * the reference recipe (MaskInv: homography from 5 template points, warpPerspective of the
    RGBA template, per-channel colour blend) = ``apply_mask(kind="paper")``;
  * ``apply_mask`` with random realistic kinds (per image);
  * ``BatchMasker`` on a uint8 batch and on a float batch (default "shift" jitter) and with
    the "affine" jitter.
Prints masks/s and per-image ms, and the ratios against the reference recipe measured here.
Target: batched masking >= 5x faster per image than the reference recipe.

    .venv/bin/python -m benchmarks.bench_masks [--batch 128] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

try:
    from ._common import report, timeit, write_result
except ImportError:  # run as a script
    from _common import report, timeit, write_result  # type: ignore


def _face(seed: int) -> np.ndarray:
    import cv2

    g = np.random.default_rng(seed)
    img = g.integers(40, 200, size=(112, 112, 3), dtype=np.uint8)
    cv2.ellipse(img, (56, 70), (36, 48), 0, 0, 360, tuple(int(c) for c in g.integers(90, 230, 3)), -1)
    return img


def main(argv=None) -> dict:
    import cv2
    import torch

    from maskinv.masks import BatchMasker, apply_mask, image_rng

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="images per single-image timing")
    ap.add_argument("--device", default="cpu", help="also time BatchMasker on this device (e.g. cuda)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    faces = [_face(i) for i in range(args.images)]
    jpegs = [cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for f in faces]
    n = args.images

    def decode():
        for b in jpegs:
            cv2.imdecode(b, cv2.IMREAD_COLOR)

    def reference():
        for i, f in enumerate(faces):
            apply_mask(f, None, image_rng(0, i), "paper")

    def single():
        for i, f in enumerate(faces):
            apply_mask(f, None, image_rng(0, i), "random")

    t_dec = timeit(decode, repeat=args.repeat) / n
    t_ref = timeit(reference, repeat=args.repeat) / n
    t_single = timeit(single, repeat=max(2, args.repeat // 2)) / n

    t0 = time.perf_counter()
    masker = BatchMasker(112, seed=0)
    t_bank = time.perf_counter() - t0
    affine = BatchMasker(112, seed=0, jitter="affine")
    x = torch.from_numpy(np.stack([faces[i % n] for i in range(args.batch)])).permute(0, 3, 1, 2).contiguous()
    xf = (x.float() / 255.0 - 0.5) / 0.5
    g = torch.Generator().manual_seed(0)
    t_b_u8 = timeit(lambda: masker(x, prob=1.0, generator=g), repeat=args.repeat) / args.batch
    t_b_f = timeit(lambda: masker(xf, prob=1.0, generator=g), repeat=args.repeat) / args.batch
    t_b_half = timeit(lambda: masker(x, prob=0.5, generator=g), repeat=args.repeat) / args.batch
    t_b_aff = timeit(lambda: affine(x, prob=1.0, generator=g), repeat=args.repeat) / args.batch

    fig = {
        "jpeg_decode_ms_per_image": t_dec * 1e3,
        "reference_recipe_ms_per_image": t_ref * 1e3,
        "apply_mask_random_ms_per_image": t_single * 1e3,
        "batched_uint8_ms_per_image": t_b_u8 * 1e3,
        "batched_float_ms_per_image": t_b_f * 1e3,
        "batched_uint8_prob0.5_ms_per_batch_image": t_b_half * 1e3,
        "batched_affine_uint8_ms_per_image": t_b_aff * 1e3,
        "batched_bank_build_s": t_bank,
        "jpeg_decode_per_s": 1.0 / t_dec,
        "reference_recipe_masks_per_s": 1.0 / t_ref,
        "apply_mask_masks_per_s": 1.0 / t_single,
        "batched_uint8_masks_per_s": 1.0 / t_b_u8,
        "batched_float_masks_per_s": 1.0 / t_b_f,
        "ratio_batched_uint8_vs_reference": t_ref / t_b_u8,
        "ratio_batched_float_vs_reference": t_ref / t_b_f,
        "ratio_batched_affine_vs_reference": t_ref / t_b_aff,
        "ratio_apply_mask_vs_reference": t_ref / t_single,
        "ratio_batched_uint8_vs_jpeg_decode": t_dec / t_b_u8,
        "batch": args.batch,
        "threads": 1,
        "target_ratio_batched_vs_reference": 5.0,
    }
    if args.device != "cpu":
        dev = torch.device(args.device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        bg = BatchMasker(112, seed=0, device=dev)
        ba = BatchMasker(112, seed=0, device=dev, jitter="affine")
        big = 1024
        xd = torch.from_numpy(np.stack([faces[i % n] for i in range(big)])).permute(0, 3, 1, 2).contiguous().to(dev)
        xdf = (xd.float() / 255.0 - 0.5) / 0.5
        gd = torch.Generator(device=dev).manual_seed(0)

        def run(m, inp):
            m(inp, prob=1.0, generator=gd)
            sync()

        for name, m, inp in (("shift_uint8", bg, xd), ("shift_float", bg, xdf), ("affine_uint8", ba, xd),
                             ("affine_float", ba, xdf)):
            t = timeit(lambda: run(m, inp), repeat=args.repeat, warmup=2) / big
            fig[f"{dev.type}_batched_{name}_ms_per_image"] = t * 1e3
            fig[f"{dev.type}_batched_{name}_masks_per_s"] = 1.0 / t
            fig[f"ratio_{dev.type}_batched_{name}_vs_cpu_reference"] = t_ref / t
        fig["device_batch"] = big
    report("masks (112x112, 1 thread)", fig)
    write_result("masks", fig)
    return fig


if __name__ == "__main__":
    main()

"""Cost of capturing native stderr around ``decode_image`` (what ``maskinv`` does, see
:mod:`maskinv.utils.native_stderr`): JPEG decode with capture off vs on, and the empty capture.

Figures: best-of-repeat microseconds per decode of a 112x112 and a 512x512 JPEG, capture off
and on (interleaved, so load drift hits both), the overhead ratio, and the empty context.

Run: ``.venv/bin/python -m benchmarks.bench_decode_capture [--number N]``.
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks._common import report, timeit, write_result
from maskinv.utils import native_stderr
from maskinv.utils.images import decode_image, encode_image


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--number", type=int, default=500, help="decodes per timing repeat")
    args = ap.parse_args(argv)

    import cv2

    rng = np.random.default_rng(0)
    figures: dict = {"number": args.number}
    for side in (112, 512):
        img = cv2.resize(rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8), (side, side))
        data = encode_image(img, "jpg", 95)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(5):  # interleave off/on
            for on in (False, True):
                native_stderr.enable(on)
                best[on] = min(best[on], timeit(lambda: decode_image(data), repeat=1, number=args.number, warmup=0))
        native_stderr.enable(False)
        figures[f"decode_{side}_off_us"] = best[False] * 1e6
        figures[f"decode_{side}_on_us"] = best[True] * 1e6
        figures[f"decode_{side}_ratio_on_off"] = best[True] / best[False]
    native_stderr.enable(True)

    def empty() -> None:
        with native_stderr.captured("x"):
            pass

    figures["empty_capture_us"] = timeit(empty, repeat=5, number=args.number) * 1e6
    native_stderr.enable(False)
    report("decode_capture", figures)
    write_result("decode_capture", figures)
    return figures


if __name__ == "__main__":
    main()

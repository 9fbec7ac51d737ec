"""LFW accuracy of SFace (maskinv.models.sface) fed in one channel order: all 6,000 pairs of
pairs.txt on the aligned112 crops (passed as aligned), protocol U-U, 10-fold, fp32, no flip test.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sface_channel_order.py BGR   # or RGB; add "flip" for the flip test

Data: ``$MASKINV_SHARED_DATA`` or ``../shared/data`` beside the checkout (docs/sface.md).
"""
import json
import os
import sys
import time
from pathlib import Path

from maskinv.evaluate import evaluate_models
from maskinv.evaluate.benchmarks import FolderBenchSpec
from maskinv.models.sface import load_sface


def main() -> None:
    order = sys.argv[1].upper()
    flip = len(sys.argv) > 2 and sys.argv[2] == "flip"
    data = Path(os.environ.get("MASKINV_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    model = load_sface()
    model.input.set_channel_order(order)
    spec = FolderBenchSpec(data / "lfw" / "aligned112", pairs=data / "lfw" / "pairs.txt", aligned=True)
    t = time.time()
    res = evaluate_models({f"sface_{order}": model}, [spec], "uu", flip=flip, precision="fp32", batch_size=64,
                          plots=False, log=print)
    print("wall_s", round(time.time() - t, 1))
    m = res["results"][0]["metrics"]
    print(json.dumps({k: m[k] for k in ("accuracy_mean", "accuracy_std", "eer", "auc", "num_pairs")}))


if __name__ == "__main__":
    main()

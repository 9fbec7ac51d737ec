"""The realism measurement on an RMFD split for several models and renderers in one process.

Same as ``maskinv mask-realism`` once per model (``--model M --renderer v1,mesh``), but the photos,
MTCNN detections and synthetic-masked photos are computed once and shared by every model (CPU is
scarce), so all models see the same masked probes. Writes ``OUT/<split>_<model>/realism_<renderer>.json``,
``.md`` and ``contact_sheet_<renderer>.png`` like the CLI.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/realism_rmfd.py --split test \\
        --models dlib,sface --renderers v1,mesh --out benchmarks/results/realism_rmfd/round2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MASKINV_SHARED_DATA") or next(
    (q for q in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if q.is_dir()),
    ROOT.parent / "shared" / "data"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True, choices=("dev", "test"))
    ap.add_argument("--models", default="dlib,sface")
    ap.add_argument("--renderers", default="v1,mesh")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1, help="synthetic masks per unmasked probe (default 1)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=None,
                    help="pickle of photos, detections and clean/real/reference embeddings kept between runs "
                         "(synthetic photos are always redrawn); e.g. /tmp/realism_diag_dev.pkl")
    a = ap.parse_args(argv)
    import pickle

    import cv2

    from maskinv.api import load_model
    from maskinv.evaluate.realism import realism, realism_report
    from maskinv.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
    from maskinv.utils.machine import machine_line

    rmfd = DATA / "rmfd"
    cache: dict = {}
    if a.cache and Path(a.cache).is_file():
        with open(a.cache, "rb") as f:
            cache = pickle.load(f)
        for k in [k for k in cache if isinstance(k, tuple) and k[0] == "synth"]:   # redraw with this renderer
            del cache[k]
    for name in a.models.split(","):
        model = load_model(name)
        for rname in a.renderers.split(","):
            t0 = time.perf_counter()
            res = realism(model, rmfd / "images", rmfd / "masked.txt",
                          people_file=ROOT / f"benchmarks/splits/rmfd_{a.split}.txt", renderer=rname,
                          bootstrap=a.bootstrap, cache=cache, draws=a.draws)
            sheet = res.pop("_sheet")
            res["model_name"] = name
            res["machine"] = machine_line()
            res["command"] = "python benchmarks/realism_rmfd.py " + " ".join(argv if argv is not None else sys.argv[1:])
            out = Path(a.out) / f"{a.split}_{name}"
            atomic_write_json(out / f"realism_{rname}.json", res)
            atomic_write_text(out / f"realism_{rname}.md", realism_report(res))
            if sheet is not None:
                atomic_write_bytes(out / f"contact_sheet_{rname}.png",
                                   cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))[1].tobytes())
            r, up = res["ratio"], res["upper_face_control"]
            print(f"{a.split} {name} {rname}: ratio EER {r['eer']['point']:.3f} {r['eer']['ci95']}, "
                  f"FNMR@1e-2 {r['fnmr@fmr0.01']['point']:.3f} {r['fnmr@fmr0.01']['ci95']}; adjusted EER "
                  f"{up['adjusted_ratio']['eer']['point']} ({time.perf_counter() - t0:.0f} s)", flush=True)
            for d in res["per_draw"] or []:
                print(f"  draw {d['draw']}: synthetic EER {d['metrics']['eer']:.4f}, ratio EER {d['ratio']['eer']}, "
                      f"lost {d['lost']}", flush=True)
    if a.cache:
        with open(a.cache + ".tmp", "wb") as f:
            pickle.dump({k: v for k, v in cache.items() if not (isinstance(k, tuple) and k[0] == "synth")}, f)
        os.replace(a.cache + ".tmp", a.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())

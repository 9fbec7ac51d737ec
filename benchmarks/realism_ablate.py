"""What SFace's (or dlib's) cost of a synthetic mask depends on: ablations on ``rmfd_dev`` only.

Each variant overrides some parameters of every mask the mesh renderer draws
(:func:`maskinv.masks.mesh.sample_mesh_params`) and reruns the realism measurement's synthetic
condition (:func:`maskinv.evaluate.realism.realism`, no upper-face control, 300 bootstrap
replicates); photos, detections and the clean/real/reference embeddings come from ``--cache``
(the pickle that ``realism_rmfd.py --cache`` / ``realism_diagnose.py`` write). Variants compare
with each other on the same probes (not with a different renderer revision); MTCNN may lose a
different number of masked probes per variant (``lost``), which is part of what a mask does.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/realism_ablate.py --variants base,flat,top_high \\
        --models sface --cache /tmp/realism_diag_dev.pkl --out OUT.json
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MASKINV_SHARED_DATA") or next(
    (q for q in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if q.is_dir()),
    ROOT.parent / "shared" / "data"))

#: variant -> parameter overrides of every mask
VARIANTS: dict[str, dict] = {
    "base": {},
    "top_high": {"top": 0.0},                       # top edge as high on the bridge as the kind allows
    "top_low": {"top": 1.0},                        # ... as low
    "flat": {"ambient": 1.0, "grain": 0.0, "folds": 0, "pleats": 0, "shadow": 0.0},   # no shading or texture
    "contrast": {"ambient": 0.3, "grain": 0.10, "folds": 3},                          # strong shading and texture
    "tight": {"expand": 0.0, "bottom": 0.0, "side": 0.0},     # no stand-off or chin overhang, side corners highest
    "all_black": {"color": [50, 50, 55], "texture": "none"},
    "all_white": {"color": [222, 224, 224], "texture": "none"},
    "all_blue": {"color": [150, 196, 226], "texture": "none"},
    "grey_flat": {"color": [128, 128, 128], "color2": [128, 128, 128], "texture": "none", "ambient": 1.0,
                  "grain": 0.0, "folds": 0, "pleats": 0, "shadow": 0.0, "loops": False},  # a flat grey occluder
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="base")
    ap.add_argument("--models", default="sface")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import maskinv.masks.mesh as mm
    from maskinv.api import load_model
    from maskinv.evaluate.realism import realism
    from maskinv.utils.io import atomic_write_json
    from maskinv.utils.machine import machine_line

    unknown = [v for v in a.variants.split(",") if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    rmfd = DATA / "rmfd"
    with open(a.cache, "rb") as f:
        cache = pickle.load(f)
    orig = mm.sample_mesh_params
    out = {"machine": machine_line(), "renderer_revision": mm.renderer_revision("mesh"), "split": "rmfd_dev",
           "command": "python benchmarks/realism_ablate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "variants": {v: VARIANTS[v] for v in a.variants.split(",")}, "results": {}}
    try:
        for mname in a.models.split(","):
            model = load_model(mname)
            for v in a.variants.split(","):
                def patched(kind, rng, over=VARIANTS[v]):
                    p = orig(kind, rng)
                    p.update(over)
                    return p

                mm.sample_mesh_params = patched
                for k in [k for k in cache if isinstance(k, tuple) and k[0] == "synth"]:
                    del cache[k]
                t0 = time.perf_counter()
                r = realism(model, rmfd / "images", rmfd / "masked.txt", people_file=ROOT / "benchmarks/splits/rmfd_dev.txt",
                            renderer="mesh", bootstrap=300, cache=cache, upper_cut=None)
                res = {"ratio_eer": r["ratio"]["eer"], "ratio_fnmr@fmr0.01": r["ratio"]["fnmr@fmr0.01"],
                       "eer_pct": {c: round(m["eer"] * 100, 2) for c, m in r["metrics"].items()},
                       "synthetic_probes": r["counts"]["synthetic"]["probes"],
                       "lost": r["dropped_no_face"].get("synthetic", 0), "seconds": round(time.perf_counter() - t0, 1)}
                out["results"][f"{mname}:{v}"] = res
                print(mname, v, json.dumps(res), flush=True)
    finally:
        mm.sample_mesh_params = orig
    atomic_write_json(Path(a.out), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

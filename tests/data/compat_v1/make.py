"""Write the compatibility fixtures of release v1 (maskinv 0.1.0) into this folder.

RUN ONCE AT A RELEASE, NEVER REGENERATE TO MAKE tests/test_compat.py PASS. These files are what
the release wrote; the test checks that the current code still reads them with the same
fingerprints and values. If the test fails, the current code broke users' files: fix the code (or
add a migration), do not rerun this script. A new release with a new on-disk format gets a new
folder (compat_v2/) from its own copy of this script, and compat_v1 stays.

    cd REPO && OMP_NUM_THREADS=1 PYTHONPATH=src python tests/data/compat_v1/make.py

Files (all small; every one written by the release's own code paths):
  model.pt, model.json         an exported backbone and its sidecar (`export_backbone`)
  crops/c0.png .. c3.png       4 aligned 32 px crops (random pixels)
  model.thresholds.json        `maskinv calibrate --fmr 0.1` and `--fmr 0.05` (protocol uu), beside the model
  gallery.db                   `maskinv gallery add` of two identities (c0+c1 as "ann", c2 as "bob")
  data/train.rec, train.idx    a 4-record RecordIO training set (2 classes x 2)
  teacher_cache/               the teacher cache a KD run (`run_training`, teacher model.pt, fp32,
                               cache mode prepass) wrote: cache.json, emb.bin, filled.bin
  expected.json                the fingerprints and values the release computed from these files
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SIZE = 32


def main() -> None:
    import cv2
    import numpy as np
    import torch

    import maskinv
    from maskinv.cli import main as cli
    from maskinv.data.bins import save_bin
    from maskinv.gallery import Gallery
    from maskinv.models import export_backbone, get_model
    from maskinv.models.checkpoint import read_model_meta
    from maskinv.train.config import load_config
    from maskinv.train.trainer import run_training

    sys.path.insert(0, str(REPO / "tests"))
    from helpers.toy_data import make_toy_recordio

    torch.set_num_threads(1)
    for p in ("model.pt", "model.json", "model.thresholds.json", "gallery.db", "expected.json"):
        (HERE / p).unlink(missing_ok=True)
    for d in ("crops", "data", "teacher_cache"):
        shutil.rmtree(HERE / d, ignore_errors=True)

    model_path = HERE / "model.pt"
    export_backbone(get_model("r18", width_mult=0.05, input_size=SIZE, embedding_size=32, seed=11), model_path)
    rng = np.random.default_rng(11)
    (HERE / "crops").mkdir()
    crops = [str(HERE / "crops" / f"c{i}.png") for i in range(4)]
    for c in crops:
        cv2.imwrite(c, rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    model = maskinv.load_model(model_path)
    emb = maskinv.embed(crops, model, aligned=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # a calibration benchmark of 44 pairs (22 impostor): enough for FMR 0.1 and 0.05
        imgs = [cv2.imencode(".png", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))[1].tobytes()
                for _ in range(88)]
        save_bin(tmp / "cal.bin", imgs, np.arange(44) % 2 == 0)
        for fmr in ("0.1", "0.05"):
            assert cli(["calibrate", "--model", str(model_path), "--bench", str(tmp / "cal.bin"), "--fmr", fmr,
                        "--protocol", "uu"]) == 0
        gal = HERE / "gallery.db"
        assert cli(["gallery", "add", str(gal), "ann", crops[0], crops[1], "--model", str(model_path), "--aligned"]) == 0
        assert cli(["gallery", "add", str(gal), "bob", crops[2], "--model", str(model_path), "--aligned"]) == 0

        make_toy_recordio(HERE / "data", classes=2, per_class=2, size=SIZE, seed=11)
        ov = ["data.source=recordio", f"data.path={HERE / 'data'}", "runtime.batch_size=4", "kd.weight=1",
              f"teacher.path={model_path}", "masks.prob=0.0", "precision.mode=fp32", "schedule.epochs=1",
              "teacher.cache.enabled=true", "teacher.cache.mode=prepass", f"teacher.cache.path={HERE / 'teacher_cache'}",
              "runtime.progress=false"]
        run_training(load_config(REPO / "configs" / "tiny-cpu.yaml", ov), tmp / "run")

    with Gallery(HERE / "gallery.db", create=False) as g:
        hits = g.search(emb, k=2, fingerprint=model.fingerprint)
        gallery = {"fingerprint": g.fingerprint, "embedding_size": g.embedding_size,
                   "identities": [list(x) for x in g.identities()],
                   "top": [[h[0].name, float(h[0].score)] for h in hits]}
    thr = json.loads((HERE / "model.thresholds.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    expected = {
        "written_by": {"maskinv": maskinv.__version__, "git_commit": commit, "torch": torch.__version__,
                       "numpy": np.__version__},
        "model": {"fingerprint": model.fingerprint, "sidecar": read_model_meta(model_path),
                  "embedding_size": model.embedding_size, "input_size": model.input_size},
        "embeddings_flip": emb.astype(float).round(7).tolist(),
        "thresholds": {k: e["threshold"] for k, e in thr["entries"].items()},
        "gallery": gallery,
        "teacher_cache": {"meta": json.loads((HERE / "teacher_cache" / "cache.json").read_text()),
                          "train_rec_mtime_ns": os.stat(HERE / "data" / "train.rec").st_mtime_ns},
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {HERE} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

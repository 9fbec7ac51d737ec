"""Assets of the command-line contract tests: a tiny model, crops, a .bin, a CSV, a gallery,
a config, an LFW-style folder, plain folders and a text file that is nothing in particular."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SIZE = 32
REPO = Path(__file__).resolve().parents[2]


def make_cli_assets(r: Path) -> Path:
    """Fill ``r`` with a tiny model, images, a .bin, a CSV, a gallery, a config and folders."""
    import cv2

    from maskinv.cli import main
    from maskinv.data.bins import save_bin
    from maskinv.models import export_backbone, get_model

    export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0), r / "model.pt")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    for i in (0, 1):
        cv2.imwrite(str(r / f"crop{i}.png"), crops[i])
    save_bin(r / "tiny.bin", [cv2.imencode(".png", c)[1].tobytes() for c in crops], np.array([1, 0, 1, 0], bool))
    (r / "scores.csv").write_text("score,genuine\n" + "".join(f"{v:.4f},{i % 2}\n" for i, v in enumerate(rng.random(40))))
    (r / "notes.txt").write_text("not a model, image, bin, CSV, gallery or config\n")
    (r / "fake.onnx").write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))  # looks like ONNX, loads as nothing
    np.save(r / "lm.npy", np.zeros((5, 2), np.float32) + 10)
    shutil.copy(REPO / "configs" / "tiny-cpu.yaml", r / "cfg.yaml")
    for d in ("adir", "faces/person0", "run", "recs"):
        (r / d).mkdir(parents=True)
    for name in ("Ann", "Bob"):  # an LFW-style folder benchmark of aligned 112 px crops
        for j in (1, 2):
            (r / "lfw" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(r / "lfw" / name / f"{name}_000{j}.png"),
                        rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
    (r / "lfw" / "pairs.txt").write_text("Ann 1 2\nAnn 1 Bob 1\nBob 1 2\nBob 2 Ann 2\n")
    shutil.copy(r / "crop0.png", r / "faces" / "person0" / "a.png")
    assert main(["gallery", "add", str(r / "g.db"), "someone", str(r / "crop0.png"),
                 "--model", str(r / "model.pt"), "--aligned"]) == 0
    _serve_assets(r)
    return r


def _serve_assets(r: Path) -> None:
    """`maskinv serve`'s inputs: an API keys file and U-U / M-U thresholds of model.pt (from
    random scores: the contract tests never start the server)."""
    from maskinv.models import model_fingerprint
    from maskinv.serve.keys import add_key
    from maskinv.thresholds import calibrate_from_scores, write_entry

    add_key(r / "keys.json", "contract", ["admin"])
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0.6, 0.1, 200), rng.normal(0.0, 0.1, 4000)]
    genuine = np.r_[np.ones(200, bool), np.zeros(4000, bool)]
    fp = model_fingerprint(r / "model.pt")
    for prot in ("uu", "mu"):
        write_entry(r / "serve.thresholds.json", fp,
                    calibrate_from_scores(scores, genuine, fmr=1e-3, protocol=prot, fingerprint=fp, source={"bench": "random"}))


def corrupt_jpeg() -> bytes:
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    return data[:-2] + bytes(7) + b"\xff\xd9"  # junk before the end marker: libjpeg warns, still decodes

"""The README's Python snippets run as written, on generated data laid out under the names they
use (a tiny model at runs/maskinv_lg/backbone.pt, real face photos from scikit-image and
matplotlib, a masked copy, a photo without a face, small pair files and an MFR2-style folder)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _save_bin(path, crops, same):
    from maskinv.data.bins import save_bin
    from maskinv.utils.images import encode_image

    save_bin(path, [encode_image(c, "png") for c in crops], np.asarray(same, bool))


def _make_assets(root: Path) -> None:
    from matplotlib import cbook
    from skimage import data as skdata

    from maskinv.align import get_detector, read_image
    from maskinv.masks import mask_photo
    from maskinv.models import export_backbone, get_model
    from maskinv.utils.images import encode_image

    export_backbone(get_model("r18", width_mult=0.125, embedding_size=32, seed=0), root / "runs/maskinv_lg/backbone.pt")
    astronaut = skdata.astronaut()
    grace = read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    det = get_detector()
    masked = {}
    for name, img in (("astronaut", astronaut), ("grace", grace)):
        face = det.detect(img)[0]
        masked[name] = mask_photo(img, face.landmarks, 0, "surgical").image
    photos = {"id_photo.jpg": astronaut, "gate.jpg": masked["astronaut"], "a.jpg": astronaut, "b.jpg": grace,
              "no_face.jpg": skdata.coffee()}
    for name, img in photos.items():
        (root / name).write_bytes(encode_image(img, "jpg"))
    for person, img in (("astronaut", astronaut), ("grace", grace)):
        (root / "MFR2" / person).mkdir(parents=True)
        (root / "MFR2" / person / f"{person}_0001.jpg").write_bytes(encode_image(img, "jpg"))
        (root / "MFR2" / person / f"{person}_0002.jpg").write_bytes(encode_image(masked[person], "jpg"))
    (root / "mfr2_masked.txt").write_text("astronaut/astronaut_0002.jpg\ngrace/grace_0002.jpg\n")
    rng = np.random.default_rng(0)
    people = rng.integers(0, 256, (30, 112, 112, 3), dtype=np.uint8)

    def pairs(n):
        crops, same = [], []
        for i in range(n):
            a = people[i % 30]
            g = i % 2 == 0
            b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8) if g else people[(i + 7) % 30]
            crops += [a, b]
            same.append(g)
        return crops, same

    _save_bin(root / "val.bin", *pairs(200))   # 100 impostor pairs: enough for FMR 1e-2
    _save_bin(root / "lfw.bin", *pairs(20))


def test_the_readme_has_python_snippets():
    assert len(python_blocks(README.read_text())) >= 1


@pytest.mark.slow
def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dlib")
    from maskinv.align import mtcnn

    if mtcnn.mtcnn_weights_dir() is None:
        pytest.skip(f"MTCNN weights not installed ({mtcnn.INSTALL_HINT}): the snippets detect faces in photos")
    _make_assets(tmp_path)
    monkeypatch.chdir(tmp_path)
    for code in python_blocks(README.read_text()):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "calibrated" in out and "1 of 3 images skipped (1 no face)" in out
    thr = json.loads((tmp_path / "runs/maskinv_lg/backbone.thresholds.json").read_text())
    assert "mu@0.01" in thr["entries"]
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {(e["model"], e["benchmark"]) for e in doc["results"]} >= {("lg", "lfw"), ("dlib", "lfw")}
    assert any(e["protocol"] == "probe_ref" for e in doc["results"])

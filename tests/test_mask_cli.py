"""``maskinv mask`` / ``maskinv mask-bin`` end to end on small generated files."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from maskinv.cli import main
from maskinv.constants import ARCFACE_TEMPLATE_112
from maskinv.masks import apply_mask, image_rng, mask_pair_images



def drawn_face(size: int = 112, seed: int = 0) -> np.ndarray:
    """A simple drawn face on a noisy background (uint8 RGB)."""
    g = np.random.default_rng(seed)
    img = g.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
    cv2.ellipse(img, (56, 70), (36, 48), 0, 0, 360, (200, 160 - 10 * seed, 140), -1)
    for x, y in ARCFACE_TEMPLATE_112[:2]:
        cv2.circle(img, (int(x), int(y)), 4, (40, 30, 30), -1)
    return img


def _write_png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    assert ok
    path.write_bytes(buf.tobytes())


def _read(path):
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_mask_single_image_reproducible(tmp_path):
    src = tmp_path / "face.png"
    img = drawn_face()
    _write_png(src, img)
    before = src.read_bytes()
    assert main(["mask", str(src), str(tmp_path / "a.png"), "--seed", "3", "--kind", "surgical"]) == 0
    assert main(["mask", str(src), str(tmp_path / "b.png"), "--seed", "3", "--kind", "surgical"]) == 0
    assert main(["mask", str(src), str(tmp_path / "c.png"), "--seed", "4", "--kind", "surgical"]) == 0
    assert src.read_bytes() == before
    a = (tmp_path / "a.png").read_bytes()
    assert a == (tmp_path / "b.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    # Image 0 of seed 3: exactly what the library gives (PNG is lossless).
    expect = apply_mask(img, None, image_rng(3, 0), "surgical").image
    assert np.array_equal(_read(tmp_path / "a.png"), expect)


def test_mask_folder_landmarks_and_preview(tmp_path):
    src = tmp_path / "in"
    imgs = {"id0/x.png": drawn_face(112, 0), "id1/y.png": drawn_face(112, 1), "z.png": drawn_face(112, 2)}
    for rel, im in imgs.items():
        _write_png(src / rel, im)
    rels = sorted(imgs)  # id0/x.png, id1/y.png, z.png
    lm = np.stack([ARCFACE_TEMPLATE_112 + np.float32([d, 0]) for d in (0.0, 2.0, -2.0)])
    np.save(tmp_path / "lm.npy", lm)
    out = tmp_path / "out"
    grid = tmp_path / "grid.png"
    rc = main(["mask", str(src), str(out), "--seed", "1", "--landmarks", str(tmp_path / "lm.npy"),
               "--preview", str(grid), "--preview-masks", "5"])
    assert rc == 0
    for i, rel in enumerate(rels):
        got = _read(out / rel)
        assert np.array_equal(got, apply_mask(imgs[rel], lm[i], image_rng(1, i), "random").image)
    g = _read(grid)
    assert g.shape == (18 + 3 * 112, 6 * 112, 3)
    # JSON landmarks keyed by relative path give the same result.
    (tmp_path / "lm.json").write_text(json.dumps({r: lm[i].tolist() for i, r in enumerate(rels)}))
    out2 = tmp_path / "out2"
    assert main(["mask", str(src), str(out2), "--seed", "1", "--landmarks", str(tmp_path / "lm.json")]) == 0
    assert all((out2 / r).read_bytes() == (out / r).read_bytes() for r in rels)


def test_mask_cli_errors(tmp_path, capsys):
    src = tmp_path / "face.png"
    _write_png(src, drawn_face())
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    assert main(["mask", str(src), str(tmp_path / "o.png"), "--landmarks", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "(5, 2)" in err and len(err.strip().splitlines()) == 1
    assert main(["mask", str(tmp_path / "missing.png"), str(tmp_path / "o.png")]) == 2
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main(["mask", str(tmp_path / "junk.png"), str(tmp_path / "o.png")]) == 2
    assert "junk.png" in capsys.readouterr().err
    assert main(["mask", str(src), str(src)]) == 2


@pytest.fixture
def small_bin(tmp_path):
    bins = pytest.importorskip("maskinv.data.bins")
    imgs = [drawn_face(112, s) for s in range(8)]
    enc = [cv2.imencode(".jpg", im[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for im in imgs]
    path = tmp_path / "pairs.bin"
    bins.save_bin(path, enc, [True, False, True, False])
    return path, enc


def test_mask_bin_protocols(tmp_path, small_bin):
    from maskinv.data.bins import load_bin

    path, enc = small_bin
    mu, mm, mu2 = tmp_path / "mu.bin", tmp_path / "mm.bin", tmp_path / "mu2.bin"
    assert main(["mask-bin", str(path), str(mu), "--protocol", "mu", "--seed", "5", "--format", "png"]) == 0
    assert main(["mask-bin", str(path), str(mm), "--protocol", "mm", "--seed", "5", "--format", "png"]) == 0
    assert main(["mask-bin", str(path), str(mu2), "--protocol", "mu", "--seed", "5", "--format", "png"]) == 0
    assert mu.read_bytes() == mu2.read_bytes()
    imu, smu = load_bin(mu)
    imm, smm = load_bin(mm)
    assert list(smu) == list(smm) == [True, False, True, False]
    # mu: in every pair exactly the second image changed; unchanged images keep their bytes.
    for j in range(4):
        assert imu[2 * j] == enc[2 * j] and imu[2 * j + 1] != enc[2 * j + 1]
        assert imm[2 * j] != enc[2 * j] and imm[2 * j + 1] != enc[2 * j + 1]
        assert imm[2 * j + 1] == imu[2 * j + 1]  # documented: same index -> same mask in mu and mm
    # The files decode to exactly what the in-memory protocol gives (PNG is lossless).
    dec = np.stack([_read_bytes(b) for b in enc])
    ref = mask_pair_images(dec, "mm", 5)
    assert all(np.array_equal(_read_bytes(imm[i]), ref[i]) for i in range(8))
    # JPEG output (default) re-encodes only the masked images.
    jp = tmp_path / "mujpg.bin"
    assert main(["mask-bin", str(path), str(jp), "--protocol", "mu", "--seed", "5"]) == 0
    ij, _ = load_bin(jp)
    assert ij[0] == enc[0] and ij[1][:2] == b"\xff\xd8"
    assert np.abs(_read_bytes(ij[1]).astype(int) - ref[1].astype(int)).mean() < 3


def test_mask_bin_errors(tmp_path, small_bin, capsys):
    path, _ = small_bin
    assert main(["mask-bin", str(path), str(path), "--protocol", "mu", "--seed", "1"]) == 2
    assert main(["mask-bin", str(tmp_path / "nope.bin"), str(tmp_path / "o.bin"), "--protocol", "mu", "--seed", "1"]) == 2
    (tmp_path / "bad.bin").write_bytes(b"garbage")
    assert main(["mask-bin", str(tmp_path / "bad.bin"), str(tmp_path / "o.bin"), "--protocol", "mm", "--seed", "1"]) == 2
    assert "bad.bin" in capsys.readouterr().err
    assert not (tmp_path / "o.bin").exists()


def _read_bytes(b):
    return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]

"""Folder benchmarks: LFW pairs.txt parsing, alignment/miss handling and cache, the .bin round trip."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.errors import DataFormatError

SIZE = 112


def _write(path, img):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    # PNG bytes under every name (OpenCV sniffs the content): lossless, the tests compare pixels
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    path.write_bytes(buf.tobytes())


@pytest.fixture(scope="module")
def faces():
    from maskinv.data.synth import render_faces

    ids = np.repeat(np.arange(4), 3)
    imgs, _ = render_faces(ids, seed=5, image_indices=np.tile(np.arange(3), 4), size=SIZE)
    return imgs  # identity k -> images 3k .. 3k+2


NAMES = ["Ann_Lee", "Bob", "Cy_D", "Dee"]
EXTS = [".png", ".JPG", ".jpeg"]


def make_folder(root, faces, exts=EXTS):
    for k, name in enumerate(NAMES):
        for j in range(3):
            _write(root / name / f"{name}_{j + 1:04d}{exts[(k + j) % len(exts)]}", faces[3 * k + j])
    return root


PAIRS = """10 300
Ann_Lee 1 2
Bob 1 3
Ann_Lee 1 Bob 2
Cy_D 2 Dee 3   # impostor
Bob 1 3

Dee 1 2
"""


def test_read_pairs_header_duplicates_mixed_extensions(tmp_path, faces):
    from maskinv.data.pairs import read_pairs

    root = make_folder(tmp_path / "bench", faces)
    (root / "pairs.txt").write_text(PAIRS)
    pl = read_pairs(root / "pairs.txt")
    assert pl.header == (10, 300)
    assert len(pl) == 6  # duplicate "Bob 1 3" kept
    assert pl.issame.tolist() == [True, True, False, False, True, True]
    assert pl.lines.tolist() == [2, 3, 4, 5, 6, 8]
    assert pl.first[1] == pl.first[4] and pl.second[1] == pl.second[4]
    assert len(pl.images) == len(set(pl.images)) == 9  # each file once
    assert {p.suffix for p in pl.images} == {".png", ".JPG", ".jpeg"}
    assert pl.identities[pl.first[2]] == "Ann_Lee" and pl.identities[pl.second[2]] == "Bob"
    # no header, and a single-number header
    (root / "p2.txt").write_text("\n".join(PAIRS.splitlines()[1:]))
    assert read_pairs(root / "p2.txt", root).header is None and len(read_pairs(root / "p2.txt", root)) == 6
    (root / "p3.txt").write_text("6\n" + "\n".join(PAIRS.splitlines()[1:]))
    assert read_pairs(root / "p3.txt").header == (6,)


def test_read_pairs_errors_name_line_and_path(tmp_path, faces):
    from maskinv.data.pairs import read_pairs

    root = make_folder(tmp_path / "b", faces)
    (root / "pairs.txt").write_text("Ann_Lee 1 2\nBob 1 7\n")
    with pytest.raises(DataFormatError, match=r"pairs.txt: line 2: image not found: .*Bob_0007\.\{png,jpg"):
        read_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("2\nAnn_Lee 1 2\nBob 1 2 3 4\n")
    with pytest.raises(DataFormatError, match=r"line 3: expected 'name i j'.*5 fields"):
        read_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("Ann_Lee 1 x\n")
    with pytest.raises(DataFormatError, match=r"line 1: image number 'x'"):
        read_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("Ann_Lee 1 2\n10 300\n")  # a header after pairs is malformed
    with pytest.raises(DataFormatError, match="line 2"):
        read_pairs(root / "pairs.txt")
    _write(root / "Bob" / "Bob_0001.bmp", faces[0])
    (root / "pairs.txt").write_text("Bob 1 2\n")
    with pytest.raises(DataFormatError, match="2 files match"):
        read_pairs(root / "pairs.txt")


def test_aligned_folder_bin_round_trip_equals_direct_evaluation(tmp_path, faces, one_thread):
    from maskinv.data.bins import decode_bin
    from maskinv.data.folder_bench import prepare_folder_bench, save_folder_bin
    from maskinv.evaluate import evaluate_bin
    from maskinv.evaluate.protocols import evaluate_arrays, masked_images
    from maskinv.models import get_model

    root = make_folder(tmp_path / "bench", faces)
    (root / "pairs.txt").write_text(PAIRS)
    bench = prepare_folder_bench(root, aligned=True)
    images, issame = bench.pair_arrays()
    assert images.shape == (12, SIZE, SIZE, 3) and issame.tolist() == [True, True, False, False, True, True]
    k = bench.keys.index("Cy_D/Cy_D_0002.png")  # (2 + 1) % 3 -> .png
    np.testing.assert_array_equal(bench.images[k], faces[7])
    np.testing.assert_array_equal(images[6], faces[7])
    info = save_folder_bin(bench, tmp_path / "bench.bin")
    assert info["num_pairs"] == 6 and info["num_genuine"] == 4 and info["num_missed"] == 0
    dec, dec_same = decode_bin(tmp_path / "bench.bin")
    np.testing.assert_array_equal(dec, images)
    np.testing.assert_array_equal(dec_same, issame)

    model = get_model("r18", width_mult=0.125, embedding_size=16, seed=0)
    kw = dict(precision="fp32", folds=2, batch_size=8)
    direct = evaluate_arrays(model, images, issame, masked_images(images, ("uu", "mu"), 3, "random"), ("uu", "mu"), **kw)
    via_bin = evaluate_bin(model, tmp_path / "bench.bin", protocols="uu,mu", seed=3, **kw)
    for p in ("uu", "mu"):
        np.testing.assert_array_equal(direct[p]["scores"], via_bin[p]["scores"])
        assert direct[p]["eer"] == via_bin[p]["eer"]


class _FakeDetector:
    """Finds a 'face' (the template points) only in images whose mean brightness is above a cut."""

    name = "fake"

    def __init__(self, cut):
        self.cut, self.calls = cut, 0

    def detect(self, image):
        from maskinv.align import Face
        from maskinv.constants import ARCFACE_TEMPLATE_112

        self.calls += 1
        if image.mean() <= self.cut:
            return []
        pts = np.asarray(ARCFACE_TEMPLATE_112, np.float32) * image.shape[0] / 112.0
        return [Face(box=np.array([0, 0, image.shape[1], image.shape[0]], float), landmarks=pts, score=1.0)]


def test_folder_benchmark_detector_is_resolved_once_at_the_entry(tmp_path, faces):
    import cv2

    from maskinv.align import registry

    root = make_folder(tmp_path / "mfr", np.stack([cv2.resize(f, (160, 160)) for f in faces]), exts=[".png"])
    (root / "pairs.txt").write_text(PAIRS)
    made = []
    registry.register_detector("fake", lambda: made.append(_FakeDetector(1.0)) or made[-1])
    try:
        _resolved_once(root, made)
    finally:
        registry.DETECTORS.unregister("fake")


def _resolved_once(root, made):
    from maskinv.errors import ConfigError
    from maskinv.evaluate.benchmarks import FolderBenchSpec, load_benchmark, load_folder_benchmark

    spec = FolderBenchSpec(root, detector="fake")
    with pytest.raises(ConfigError, match="not resolved"):  # lower layers take the object only
        load_folder_benchmark(spec, None)
    resolved = spec.resolved()
    assert resolved.detector is made[0] and spec.detector == "fake" and resolved.resolved() is resolved
    bench = load_benchmark(resolved)
    assert bench.detector is made[0] and made[0].calls == 9 and len(made) == 1
    assert bench.meta["detector"] == "fake"
    assert FolderBenchSpec(root, aligned=True, detector="fake").resolved().detector is None  # crops need none
    assert len(made) == 1


def test_on_miss_drop_vs_center_and_cache(tmp_path, faces):
    from maskinv.data.folder_bench import center_crop, prepare_folder_bench

    import cv2

    big = np.stack([cv2.resize(f, (160, 160)) for f in faces])
    big[4] = 0  # Bob_0002: no face
    root = make_folder(tmp_path / "mfr", big, exts=[".png"])
    (root / "pairs.txt").write_text(PAIRS)
    cache = tmp_path / "cache"
    det = _FakeDetector(cut=1.0)
    drop = prepare_folder_bench(root, detector=det, on_miss="drop", cache_dir=cache)
    assert drop.missed == ["Bob/Bob_0002.png"] and drop.info["num_missed"] == 1
    assert drop.info["num_pair_lines"] == 6 and drop.info["num_pairs"] == 5 and drop.info["num_pairs_dropped"] == 1
    assert drop.pair_keep.tolist() == [True, True, False, True, True, True]  # "Ann_Lee 1 Bob 2" dropped
    assert drop.info["detector"] == "fake" and det.calls == 9
    # template points on a 160 px image scaled to 112: the crop is the image resized
    k = drop.keys.index("Ann_Lee/Ann_Lee_0001.png")
    assert np.abs(drop.images[k].astype(int) - faces[0].astype(int)).mean() < 6

    det2 = _FakeDetector(cut=1.0)
    center = prepare_folder_bench(root, detector=det2, on_miss="center", cache_dir=cache)
    assert det2.calls == 0 and center.info["num_from_cache"] == 9  # crops and the no-face verdict cached
    assert center.missed == ["Bob/Bob_0002.png"] and center.info["num_pairs"] == 6 and center.info["num_pairs_dropped"] == 0
    m = center.keys.index("Bob/Bob_0002.png")
    np.testing.assert_array_equal(center.images[m], center_crop(big[4], SIZE))
    for i in range(len(center.keys)):
        if i != m:
            np.testing.assert_array_equal(center.images[i], drop.images[i])
    assert center.pair_arrays()[0].shape[0] == 12 and drop.pair_arrays()[0].shape[0] == 10
    with pytest.raises(Exception, match="on_miss"):
        prepare_folder_bench(root, detector=det2, on_miss="skip")


def test_all_images_without_pairs_and_resize_note(tmp_path, faces):
    from maskinv.data.folder_bench import prepare_folder_bench

    root = make_folder(tmp_path / "nopairs", faces)
    _write(root / "Dee" / "extra.png", faces[0][:100, :90])
    with pytest.warns(UserWarning, match="resized 1 of 13"):
        bench = prepare_folder_bench(root, aligned=True)
    assert bench.pairs is None and len(bench.keys) == 13 and bench.info["num_resized"] == 1
    assert bench.identities.count("Dee") == 4
    with pytest.raises(Exception, match="no pair list"):
        bench.pair_arrays()


def test_real_photo_through_detector(tmp_path):
    pytest.importorskip("dlib")
    from skimage import data

    from maskinv.data.folder_bench import prepare_folder_bench

    photo = data.astronaut()
    _write(tmp_path / "f" / "Eileen" / "Eileen_0001.png", photo)
    _write(tmp_path / "f" / "Eileen" / "Eileen_0002.png", np.full((200, 200, 3), 128, np.uint8))
    (tmp_path / "f" / "pairs.txt").write_text("1\nEileen 1 2\n")
    bench = prepare_folder_bench(tmp_path / "f", detector="dlib", on_miss="center")
    assert bench.missed == ["Eileen/Eileen_0002.png"]
    assert bench.images.shape == (2, SIZE, SIZE, 3) and bench.images[0].std() > 20


def test_cli_data_bin(tmp_path, faces, capsys):
    import json

    from maskinv.cli import main
    from maskinv.data.bins import decode_bin
    from maskinv.data.folder_bench import prepare_folder_bench

    root = make_folder(tmp_path / "bench", faces)
    (root / "pairs.txt").write_text(PAIRS)
    assert main(["data", "bin", str(root), str(tmp_path / "out" / "b.bin"), "--aligned"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_pairs"] == 6 and info["num_missed"] == 0 and info["aligned"] is True
    images, issame = decode_bin(tmp_path / "out" / "b.bin")
    exp_images, exp_same = prepare_folder_bench(root, aligned=True).pair_arrays()
    np.testing.assert_array_equal(images, exp_images)
    np.testing.assert_array_equal(issame, exp_same)
    (root / "pairs.txt").write_text("Bob 1 9\n")
    assert main(["data", "bin", str(root), str(tmp_path / "x.bin"), "--aligned"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 1: image not found" in err and "Bob_0009" in err


def test_register_loader_plugs_a_source_into_load_benchmark_and_evaluate_models(tmp_path, faces, one_thread):
    from maskinv.evaluate import evaluate_models, metrics_of
    from maskinv.evaluate.benchmarks import LOADERS, Benchmark, check_arrays, load_benchmark, register_loader
    from maskinv.models import get_model

    def load_npz(path, label):
        with np.load(path) as z:
            images, issame = check_arrays(z["images"], z["issame"], str(path))
        return Benchmark(label or path.stem, images, issame, {"path": str(path), "format": "npz"})

    np.savez(tmp_path / "toy.npz", images=faces[:8], issame=np.array([True, False, True, False]))
    register_loader("npz", lambda p: p.suffix == ".npz", load_npz, first=True)  # the .bin reader would claim the file
    try:
        assert LOADERS.names()[0] == "npz"
        b = load_benchmark(tmp_path / "toy.npz")
        assert b.label == "toy" and b.meta["format"] == "npz" and b.issame.tolist() == [True, False, True, False]
        model = get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0)
        doc = evaluate_models({"m": model}, [tmp_path / "toy.npz"], "uu", precision="fp32", folds=2)
        assert doc["benchmarks"]["toy"]["format"] == "npz" and metrics_of(doc, "m", "toy", "uu")["num_pairs"] == 4
    finally:
        LOADERS.unregister("npz")
    assert "npz" not in LOADERS.names()

"""maskinv study-real (MaskInv on SFace, real photos): end to end on a tiny SFaceNet and generated photos
(cache reuse, identity-clustered intervals, determinism), bad input, and checks on the real data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from maskinv.align import register_detector  # noqa: E402
from maskinv.align.backends import Face, FaceDetector  # noqa: E402
from maskinv.errors import ConfigError, DataFormatError  # noqa: E402

PAD = 19
CANVAS = 150


class _FixedDetector(FaceDetector):
    """The photos of this test are template-aligned crops pasted at (PAD, PAD) on a grey canvas:
    the face is at the template + PAD; a plain grey photo has no face."""

    name = "fixed-test"

    def detect(self, image):
        from maskinv.constants import template_for_size

        if float(np.asarray(image).std()) < 1.0:
            return []
        lm = np.asarray(template_for_size(112), np.float32) + PAD
        return [Face(box=np.array([PAD, PAD, PAD + 112, PAD + 112], float), landmarks=lm, score=1.0)]


register_detector("fixed-test", lambda **kw: _FixedDetector())


def _shared_data() -> Path:
    """``$MASKINV_SHARED_DATA``, else ``../shared/data`` of the checkout (a worktree under ``wt/`` looks one up)."""
    env = os.environ.get("MASKINV_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    cands = [here.parents[2] / "shared" / "data", here.parents[3] / "shared" / "data"]
    return next((c for c in cands if c.is_dir()), cands[0])


class TinySFace(torch.nn.Module):
    """Stand-in with SFaceNet's API (stem + 13 blocks in ``stages``, ``head``, ``split(k)``, raw 128-d
    output of the standard tensor), 4x cheaper input (the stem average-pools to 28x28)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        nn = torch.nn

        def block(c_in, c_out, stride):
            return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                                 nn.PReLU(c_in), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.PReLU(c_out))

        stem = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8))
        blocks = [block(8, 8, 1) for _ in range(11)] + [block(8, 16, 2), block(16, 16, 1)]
        self.stages = nn.ModuleList([stem] + blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(16), nn.Flatten(1), nn.Linear(16 * 14 * 14, 128), nn.BatchNorm1d(128))
        self.embedding_size = 128
        self.arch = {"name": "tiny-sface-standin", "kwargs": {}}
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in = m.weight[0].numel()
                    m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
                    if m.bias is not None:
                        m.bias.zero_()
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = None  # cumulative statistics of the calibration batch below
            self.train()
            self(torch.randn(32, 3, 112, 112, generator=g))
        self.eval()

    def forward(self, x):
        for s in self.stages:
            x = s(x)
        return self.head(x)

    def split(self, k):
        return torch.nn.Sequential(*self.stages[:k + 1]), torch.nn.Sequential(*self.stages[k + 1:], self.head)


def _tiny_model():
    return TinySFace()


def _write(path: Path, img: np.ndarray) -> None:
    from maskinv.utils.images import encode_image

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(img, "png"))


def _photo(crop: np.ndarray) -> np.ndarray:
    out = np.full((CANVAS, CANVAS, 3), 128, np.uint8)
    out[PAD:PAD + 112, PAD:PAD + 112] = crop
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """LFW-like and RMFD-like folders with generated faces, and split lists."""
    from maskinv.data.synth import render_faces
    from maskinv.masks import apply_mask

    root = tmp_path_factory.mktemp("real")
    lfw, rmfd, splits = root / "lfw", root / "rmfd", root / "splits"
    people: dict[str, int] = {}
    train = [f"P{i:02d}" for i in range(6)] + ["S00", "S01"]
    val = [f"V{i:02d}" for i in range(4)]
    test = [f"T{i:02d}" for i in range(10)]
    rm = [f"R{i:02d}" for i in range(6)]
    for i, n in enumerate(train + val + test + rm):
        people[n] = i
    n_img = {n: (1 if n.startswith("S") else (4 if n.startswith("R") else 3)) for n in people}
    for n, ident in people.items():
        imgs, _ = render_faces([ident] * n_img[n], seed=3, image_indices=list(range(n_img[n])), size=112)
        for j, crop in enumerate(imgs):
            fname = f"{n}_{j + 1:04d}.png"
            if n.startswith("R"):
                if j < 2:
                    crop = apply_mask(crop, None, np.random.default_rng(j + ident), "surgical").image
                _write(rmfd / "images" / n / fname, _photo(crop))
            else:
                _write(lfw / "images" / n / fname, _photo(crop))
                _write(lfw / "aligned112" / n / fname, crop)
    _write(rmfd / "images" / "R03" / "R03_0005.png", np.full((CANVAS, CANVAS, 3), 128, np.uint8))  # no face
    (rmfd / "masked.txt").write_text("".join(f"{n}/{n}_{j:04d}.png\n" for n in rm for j in (1, 2)))
    (lfw / "pairs.txt").write_text("1\t1\n")

    def pairs(names: list[str], folds: int) -> list[str]:
        lines = []
        for k in range(folds):
            a, b = names[2 * k], names[2 * k + 1]
            c = names[(2 * k + 2) % len(names)]
            lines += [f"{a}\t1\t2", f"{b}\t1\t2", f"{a}\t1\t{b}\t3", f"{b}\t3\t{c}\t1"]
        return lines

    splits.mkdir()
    (splits / "lfw_val_pairs.txt").write_text("\n".join(["2\t2"] + pairs(val, 2)) + "\n")
    (splits / "lfw_test_pairs.txt").write_text("\n".join(["5\t2"] + pairs(test, 5)) + "\n")
    (splits / "lfw_train_people.txt").write_text("\n".join(train) + "\n")
    (splits / "rmfd_dev.txt").write_text("R00\nR01\nR02\n")
    (splits / "rmfd_test.txt").write_text("R03\nR04\nR05\n")
    return {"lfw": lfw, "rmfd": rmfd, "splits": splits, "root": root}


def _settings(**kw):
    from maskinv.study.real.settings import RealSettings, apply_overrides

    base = ["detector=fixed-test", "renderer=v1", "select_adapt=true", "epochs=1", "hg_epochs=1", "batch_size=8", "n_boot=50", "select_lrs=0.01",
            "select_lambdas=250", "select_epochs=1", "feature_batch=16"]
    return apply_overrides(RealSettings(), base + [f"{k}={v}" for k, v in kw.items()])


# slow: a selection grid then a study that reuses it; fast: test_choose_rule, and the
# end-to-end study below (cache reuse, deterministic retraining)
@pytest.mark.slow
def test_select_chooses_on_validation_only(tiny, tmp_path):
    from maskinv.study.real import run_real_select
    from maskinv.study.real.select import selected_overrides

    sel = run_real_select(tmp_path / "sel", tiny["lfw"], tiny["rmfd"], settings=_settings(), splits_dir=tiny["splits"],
                          cache_dir=tmp_path / "cache", model=_tiny_model(), quiet=True)
    assert {c["family"] for c in sel["candidates"]} == {"aug", "lg", "adapt"}
    assert [c["lam"] for c in sel["candidates"] if c["family"] == "lg"] == [25.0, 250.0]
    assert set(sel["chosen"]) == {"lr_aug", "lr_lg", "lam_lg", "lr_adapt"}
    assert sel["chosen"]["lam_lg"] in (25.0, 250.0)
    assert set(sel["detection"]) == {"lfw_train", "lfw_val"}  # no test subset touched
    assert "lfw_val" in (tmp_path / "sel" / "select.md").read_text() or "SFace" in (tmp_path / "sel" / "select.md").read_text()
    assert selected_overrides(sel)[0].startswith("lr_aug=")

    # the study with the chosen settings reuses the matching candidates (deterministic training) instead
    # of retraining them
    from maskinv.study.real import run_real_study
    from maskinv.study.real.settings import apply_overrides

    s = apply_overrides(_settings(with_hg="false", with_adapt="false"), selected_overrides(sel))
    doc = run_real_study(tmp_path / "full", tiny["lfw"], tiny["rmfd"], settings=s, splits_dir=tiny["splits"],
                         cache_dir=tmp_path / "cache", model=_tiny_model(), selected=sel, quiet=True,
                         reuse_dirs=(tmp_path / "sel" / "candidates",))
    for r in ("aug", "lg"):
        t = doc["results"][r]["training"]
        assert t["reused"] is True and "candidates" in t["reused_from"]
        assert (tmp_path / "full" / "models" / f"{r}.pt").is_file()
    assert doc["cost"]["features_computed"] > 0 and doc["selected"]["chosen"] == sel["chosen"]


def test_choose_rule():
    from maskinv.study.real.select import choose

    c = [{"uu_acc": 0.90, "mu_acc": 0.95, "mu_eer": 0.1}, {"uu_acc": 0.985, "mu_acc": 0.93, "mu_eer": 0.1},
         {"uu_acc": 0.99, "mu_acc": 0.92, "mu_eer": 0.1}]
    assert choose(c, 0.99, 0.5) is c[1]        # the best M-U within 0.5 points of SFace's U-U
    assert choose(c[:1], 0.99, 0.5) is c[0]    # none qualifies: the best U-U


def test_study_end_to_end_cache_reuse_and_determinism(tiny, tmp_path):
    from maskinv.study.real import run_real_study

    cache = tmp_path / "cache"
    s = _settings(adapt_unlabelled="true")
    doc = run_real_study(tmp_path / "a", tiny["lfw"], tiny["rmfd"], settings=s, splits_dir=tiny["splits"],
                         cache_dir=cache, model=_tiny_model(), quiet=True)
    assert list(doc["results"]) == ["sface", "aug", "lg", "hg", "adapt"]
    assert doc["renderer"]["name"] == "v1"
    det = doc["detection"]
    assert (det["rmfd_test"]["images"], det["rmfd_test"]["detected"]) == (13, 12)
    assert det["rmfd_test_unmasked"]["missed"] == ["R03/R03_0005.png"] and det["rmfd_test_masked"]["rate"] == 1.0
    assert doc["lambda_per_sample"]["lg"] == pytest.approx(s.lam_lg / 128)
    assert doc["lambda"]["hg"] == pytest.approx(30 * s.lam_lg)
    # 6 labelled people x 3 photos, plus 2 one-photo people used only by adapt
    assert doc["data"]["train_labelled"] == 18 and doc["data"]["train_photos"] == 20
    assert doc["results"]["adapt"]["training"]["photos"] == 20 and doc["results"]["lg"]["training"]["photos"] == 18
    # every row is scored on the same comparisons: 6 probes x 6 references, 20 LFW pairs
    assert doc["data"]["rmfd_comparisons"] == 36
    assert {r["rmfd"]["num_pairs"] for r in doc["results"].values()} == {36}
    assert {r["lfw"][p]["num_pairs"] for r in doc["results"].values() for p in ("uu", "mu", "mm")} == {20}
    assert doc["rmfd_bootstrap_metrics"] == ["eer"]  # 30 impostor comparisons: no FNMR@FMR interval
    # identity-clustered intervals for every trained row against SFace, on both benchmarks
    comps = doc["comparisons"]
    assert {(c["b"], c["benchmark"]) for c in comps if c["a"] == "sface"} == \
        {(r, b) for r in ("aug", "lg", "hg", "adapt") for b in ("lfw_test", "rmfd_test")}
    for c in comps:
        assert c["resampling"] == "clusters (groups)"
        assert c["n_clusters"] == (10 if c["benchmark"] == "lfw_test" else 3)
        for m in c["metrics"].values():
            assert m["ci95"][0] <= m["diff"] + 1e-9 and m["diff"] <= m["ci95"][1] + 1e-9
    assert set(doc["goals"]) == {"rmfd_eer", "rmfd_tar_1e-3", "lfw_uu", "lfw_mu", "lfw_mm"}
    report = (tmp_path / "a" / "report.md").read_text()
    assert "MaskInv-LG" in report and "identity clusters" in report and "## Cost" in report
    assert "λ/D" in report and "renderer" in report.lower()
    for p in doc["plots"].values():
        assert (tmp_path / "a" / p).is_file()
    assert doc["cost"]["features_computed"] > 0
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["goals"] == json.loads(json.dumps(doc["goals"]))

    # same cache, new folder, HG/adapt off: no trunk feature recomputed; retrained rows give the same bytes
    s2 = _settings(adapt_unlabelled="true", with_hg="false", with_adapt="false")
    doc2 = run_real_study(tmp_path / "b", tiny["lfw"], tiny["rmfd"], settings=s2, splits_dir=tiny["splits"],
                          cache_dir=cache, model=_tiny_model(), quiet=True)
    assert doc2["cost"]["features_computed"] == 0 and doc2["cost"]["features_reused"] > 0
    for r in ("aug", "lg"):
        assert doc2["results"][r]["training"]["reused"] is False
        assert doc2["results"][r]["training"]["weights_sha256"] == doc["results"][r]["training"]["weights_sha256"]
    assert doc2["results"]["lg"]["rmfd"]["eer"] == doc["results"]["lg"]["rmfd"]["eer"]
    # same folder again: finished rows reused
    doc3 = run_real_study(tmp_path / "b", tiny["lfw"], tiny["rmfd"], settings=s2, splits_dir=tiny["splits"],
                          cache_dir=cache, model=_tiny_model(), quiet=True)
    assert all(doc3["results"][r]["training"]["reused"] for r in ("aug", "lg"))
    assert doc3["results"]["lg"]["lfw"] == doc2["results"]["lg"]["lfw"]


def test_training_changes_the_tail_and_kd_pulls_masked_towards_the_teacher(tiny, tmp_path):
    """A KD-only tail trained on masked features moves its masked embeddings towards the teacher's clean ones."""
    from maskinv.study.real.core import StudyContext
    from maskinv.study.real.tails import RowSpec, embed_features, train_tail
    import copy

    ctx = StudyContext(tiny["lfw"], tiny["rmfd"], _settings(), splits_dir=tiny["splits"], cache_dir=tmp_path / "c",
                       model=_tiny_model(), log=lambda m: None)
    train, labels, _ = ctx.train_photos()
    data = ctx.train_set(train, labels)
    model = copy.deepcopy(ctx.model)
    tail = ctx.row_tail(model)
    before = (embed_features(tail, data.masked.astype(np.float32)) * data.teacher).sum(1).mean()
    train_tail(tail, data, RowSpec("kd", 128.0, False, 0.05, 20, batch_size=8, mask_prob=1.0), log=None)
    after = (embed_features(tail, data.masked.astype(np.float32)) * data.teacher).sum(1).mean()
    assert after > before + 0.01
    # the frozen teacher (SFace's own tail) did not move
    t0 = embed_features(ctx.tail0, data.clean.astype(np.float32))
    np.testing.assert_array_equal(t0, data.teacher)


def test_bad_inputs_name_the_file_or_setting(tiny, tmp_path):
    from maskinv.study.real.data import read_splits
    from maskinv.study.real.settings import RealSettings, apply_overrides

    bad = tmp_path / "splits"
    bad.mkdir()
    for f in tiny["splits"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "rmfd_test.txt").unlink()
    with pytest.raises(DataFormatError, match="rmfd_test.txt"):
        read_splits(bad)
    (bad / "rmfd_test.txt").write_text("R00\n")
    with pytest.raises(DataFormatError, match="both"):
        read_splits(bad)
    with pytest.raises(ConfigError, match="epochs"):
        apply_overrides(RealSettings(), ["epochs=0"])
    with pytest.raises(ConfigError, match="unknown setting"):
        apply_overrides(RealSettings(), ["nope=1"])
    with pytest.raises(ConfigError, match="select_lrs"):
        apply_overrides(RealSettings(), ["select_lrs=a,b"])


def test_against_pairs_rows_of_two_runs_that_differ_only_in_the_renderer(tiny, tmp_path):
    """--against: the same settings twice give differences of exactly 0 (same weights, same pairs);
    a renderer change is allowed and reported; any other difference is refused before training."""
    from maskinv.study.real import run_real_study

    cache = tmp_path / "cache"
    kw = dict(splits_dir=tiny["splits"], cache_dir=cache, quiet=True)
    s = _settings(with_hg="false", with_adapt="false", n_boot=20)
    run_real_study(tmp_path / "a", tiny["lfw"], tiny["rmfd"], settings=s, model=_tiny_model(), **kw)
    doc = run_real_study(tmp_path / "b", tiny["lfw"], tiny["rmfd"], settings=s, model=_tiny_model(),
                         against=tmp_path / "a", **kw)
    comps = doc["against"]["comparisons"]
    assert {(c["row"], c["benchmark"]) for c in comps} == {(r, b) for r in ("aug", "lg") for b in ("rmfd_test", "lfw_test")}
    for c in comps:
        for m in c["metrics"].values():
            assert m["diff"] == 0.0 and tuple(m["ci95"]) == (0.0, 0.0)
    assert "## Against" in (tmp_path / "b" / "report.md").read_text()

    mesh = _settings(with_hg="false", with_adapt="false", n_boot=20, renderer="mesh")
    doc = run_real_study(tmp_path / "c", tiny["lfw"], tiny["rmfd"], settings=mesh, model=_tiny_model(),
                         against=tmp_path / "a", **kw)
    assert doc["against"]["settings"]["renderer"] == "v1" and doc["renderer"]["name"] == "mesh"
    lg = next(c for c in doc["against"]["comparisons"] if c["row"] == "lg" and c["benchmark"] == "rmfd_test")
    assert lg["n_clusters"] == 3 and lg["metrics"]["eer"]["diff"] != 0.0  # other masks, other weights

    other_lr = _settings(with_hg="false", with_adapt="false", n_boot=20, lr_lg=0.5)
    with pytest.raises(ConfigError, match="lr_lg") as e:
        run_real_study(tmp_path / "d", tiny["lfw"], tiny["rmfd"], settings=other_lr, model=_tiny_model(),
                       against=tmp_path / "a", **kw)
    assert e.value.key == "lr_lg" and not (tmp_path / "d").exists()   # refused before anything is written
    with pytest.raises(DataFormatError, match="results.json"):
        run_real_study(tmp_path / "e", tiny["lfw"], tiny["rmfd"], settings=s, model=_tiny_model(),
                       against=tmp_path / "nothing", **kw)
    assert not (tmp_path / "e").exists()


def test_cli_against_a_folder_without_a_run_one_line_exit_2_nothing_written(tiny, tmp_path, capsys):
    from maskinv.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    for bad in (empty, tmp_path / "missing"):
        out = tmp_path / "out"
        code = main(["study-real", str(tiny["lfw"]), str(tiny["rmfd"]), "--out", str(out), "--splits",
                     str(tiny["splits"]), "--against", str(bad)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and str(bad.name) in err[0], err
        assert not out.exists()


def test_cli_bad_split_dir_one_line_exit_2_nothing_written(tiny, tmp_path, capsys):
    from maskinv.cli import main

    empty = tmp_path / "nosplits"
    empty.mkdir()
    out = tmp_path / "out"
    code = main(["study-real", str(tiny["lfw"]), str(tiny["rmfd"]), "--out", str(out), "--splits", str(empty)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "lfw_val_pairs.txt" in err[0]
    assert not out.exists()


def test_masks_are_fixed_per_image_key_and_draw():
    from maskinv.study.real.data import mask_crops, mask_seed_index
    from maskinv.data.synth import render_faces
    from maskinv.constants import template_for_size

    crops, _ = render_faces([0, 1], seed=0, size=112)
    lm = np.tile(np.asarray(template_for_size(112))[None], (2, 1, 1))
    a = mask_crops(crops, lm, ["A/1.jpg", "B/1.jpg"], seed=0)
    b = mask_crops(crops[::-1], lm, ["B/1.jpg", "A/1.jpg"], seed=0)
    np.testing.assert_array_equal(a, b[::-1])
    assert not np.array_equal(a, crops)
    assert mask_seed_index("A/1.jpg", 0) != mask_seed_index("A/1.jpg", 1)


# ----------------------------------------------------------------------------- real data
DATA = _shared_data()
needs_data = pytest.mark.skipif(not (DATA / "lfw" / "pairs.txt").is_file() or not (DATA / "rmfd").is_dir(),
                                reason=f"shared real data not found at {DATA} (set MASKINV_SHARED_DATA)")


@needs_data
def test_committed_splits_match_the_real_data_and_exclude_held_out_people():
    from maskinv.study.real.core import HELD_OUT
    from maskinv.study.real.data import lfw_person_photos, read_splits, rmfd_photos
    from maskinv.data.pairs import read_pairs

    s = read_splits()
    assert not set(s.train_people) & set(HELD_OUT)
    photos = lfw_person_photos(DATA / "lfw" / "images", s.train_people)
    assert len(s.train_people) == 2705 and len(photos) == 4519
    test = read_pairs(s.test_pairs, DATA / "lfw" / "aligned112")
    val = read_pairs(s.val_pairs, DATA / "lfw" / "aligned112")
    assert len(test) == 3000 and len(val) == 1200
    assert not (set(test.identities) | set(val.identities)) & set(s.train_people)
    assert not set(test.identities) & set(val.identities)
    p, masked = rmfd_photos(DATA / "rmfd", s.rmfd_test)
    assert masked.sum() == 384 and len(p) == 929


@needs_data
def test_real_rmfd_photos_align_and_mask_with_renderer_v1(tmp_path):
    from maskinv.study.real.data import align_photos, mask_crops, read_splits, rmfd_photos

    s = read_splits()
    photos, masked = rmfd_photos(DATA / "rmfd", s.rmfd_test[:1])
    a = align_photos(photos[:3], tmp_path, name="rmfd_probe")
    assert a.crops.shape == (3, 112, 112, 3) and a.info["num_images"] == 3
    b = align_photos(photos[:3], tmp_path, name="rmfd_probe")
    assert b.info["num_from_cache"] == 3
    np.testing.assert_array_equal(a.crops, b.crops)
    m = mask_crops(a.crops[a.valid], a.landmarks[a.valid], [k for k, v in zip(a.keys, a.valid) if v], seed=0)
    assert m.shape == a.crops[a.valid].shape


def test_validation_pairs_are_interleaved_so_every_fold_holds_both_kinds():
    from maskinv.study.real.select import _interleave

    issame = np.array([True] * 300 + [False] * 300)
    order = _interleave(issame)
    assert sorted(order.tolist()) == list(range(600))
    folds = issame[order].reshape(10, 60)
    assert (folds.sum(axis=1) == 30).all()
    odd = np.array([True, True, True, False])
    assert issame[_interleave(issame)].tolist()[:2] == [True, False] and _interleave(odd).tolist() == [0, 3, 1, 2]


def test_the_default_renderer_is_mesh():
    from maskinv.study.real.settings import RealSettings

    assert RealSettings().renderer == "mesh"


def test_settings_text_goes_through_the_schema_coercion():
    """``--set`` numbers and strings are read by train.config_schema.coerce (one meaning of "1e-3",
    "1_000", "2.0" for an int), booleans also as yes/no; errors name the setting."""
    from maskinv.errors import ConfigError
    from maskinv.study.real.settings import RealSettings, apply_overrides
    from maskinv.train.config_schema import Origin, coerce

    s = apply_overrides(RealSettings(), ["lr_lg=1e-3", "n_boot=1_000", "split_k=2.0", "with_hg=no",
                                         "with_adapt=on", "freeze_bn=0", "detector=yunet", "epochs=2"])
    assert (s.lr_lg, s.n_boot, s.split_k, s.with_hg, s.with_adapt, s.freeze_bn, s.detector) == \
        (1e-3, 1000, 2, False, True, False, "yunet")
    assert type(s.split_k) is int and type(s.epochs) is float
    for text, tp in (("1e-3", float), ("1_000", int), ("2.0", int)):
        assert coerce(text, tp, "k", Origin()) == getattr(s, {"1e-3": "lr_lg", "1_000": "n_boot", "2.0": "split_k"}[text])
    for item, msg in (("split_k=1.5", "split_k: expected an integer"), ("lr_aug=inf", "lr_aug: expected a number"),
                      ("with_hg=maybe", "with_hg: expected true/false"), ("mask_prob=x", "mask_prob: expected a number")):
        with pytest.raises(ConfigError, match=f"study-real setting {msg}"):
            apply_overrides(RealSettings(), [item])

"""The realism measurement (evaluate/realism.py, ``maskinv mask-realism``): the ratio's arithmetic on
synthetic scores, the identity weighting, the probe split, and the whole command on a generated
photo folder with a stand-in detector and model (fast, no downloads)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.errors import ConfigError, DataFormatError
from maskinv.evaluate import realism as R


# ----------------------------------------------------------------------------- arithmetic
def test_weighted_eer_and_fnmr_on_hand_computed_scores():
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.75])
    g = np.array([1, 1, 1, 0, 0, 0], bool)
    r = R.weighted_error_rates(s, g, np.ones(6), (0.34, 0.0))
    # Accept >= 0.75: FNMR 1/3 (0.7 rejected), FMR 1/3 (0.75 accepted): they cross there.
    assert r["eer"] == pytest.approx(1 / 3)
    assert r["fnmr@fmr0.34"] == pytest.approx(0.0)           # accept >= 0.7: FMR 1/3 <= 0.34, no miss
    assert r["fnmr@fmr0"] == pytest.approx(1 / 3)        # threshold above 0.75: 0.9, 0.8 still accepted
    # Weighting the missed genuine score 0 removes the error.
    w = np.array([1, 1, 0, 1, 1, 1.0])
    assert R.weighted_error_rates(s, g, w, (0.0,))["fnmr@fmr0"] == pytest.approx(0.0)
    with pytest.raises(DataFormatError):
        R.weighted_error_rates(s, np.ones(6, bool), np.ones(6))


def test_each_identity_weighs_equally():
    pid = np.array([0, 0, 0, 0, 1, 1])
    g = np.array([1, 1, 1, 0, 1, 0], bool)
    w = R.identity_weights(pid, g)
    assert w[g & (pid == 0)].sum() == pytest.approx(1) and w[g & (pid == 1)].sum() == pytest.approx(1)
    assert w[~g & (pid == 0)].sum() == pytest.approx(1) and w[~g & (pid == 1)].sum() == pytest.approx(1)
    # A bootstrap draw that takes identity 1 twice and 0 never.
    w2 = R.identity_weights(pid, g, np.array([0, 2]))
    assert w2[pid == 0].sum() == 0 and w2[g & (pid == 1)].sum() == pytest.approx(2)
    # Three genuine scores of one person do not outvote one of another: identity 0 all wrong.
    s = np.array([0.1, 0.1, 0.1, 0.5, 0.9, 0.2])
    eer_w = R.weighted_error_rates(s, g, w)["eer"]
    eer_u = R.weighted_error_rates(s, g, np.ones(6))["eer"]
    assert eer_w != pytest.approx(eer_u)


def test_ratio_arithmetic():
    assert R.realism_ratio(0.10, 0.20, 0.30) == pytest.approx(0.5)
    assert R.realism_ratio(0.05, 0.25, 0.15) == pytest.approx(2.0)      # synthetic too strong
    assert R.realism_ratio(0.10, 0.05, 0.30) == pytest.approx(-0.25)
    assert R.realism_ratio(0.10, 0.20, 0.10) is None                     # real masks cost nothing


def test_adjusted_ratio_takes_the_upper_face_excess_off_the_real_side():
    # unmasked 0.10, synthetic 0.20, real 0.30; upper face alone: real 0.25, synthetic 0.20 -> excess 0.05
    assert R.adjusted_ratio(0.10, 0.20, 0.30, 0.20, 0.25) == pytest.approx(0.10 / 0.15)
    assert R.adjusted_ratio(0.10, 0.20, 0.30, 0.20, 0.20) == pytest.approx(R.realism_ratio(0.10, 0.20, 0.30))
    assert R.adjusted_ratio(0.10, 0.20, 0.30, 0.10, 0.35) is None        # nothing left of the real gap


def test_blank_below_follows_the_eye_line():
    from maskinv.constants import template_for_size

    img = np.full((112, 112, 3), 200, np.uint8)
    lm = template_for_size(112)
    out = R.blank_below(img, lm, 0.11)
    rows = np.flatnonzero((out[:, 56] == 128).all(1))
    cut_row = (lm[0, 1] + lm[1, 1]) / 2 + 0.11 * ((lm[3, 1] + lm[4, 1]) / 2 - (lm[0, 1] + lm[1, 1]) / 2)
    assert rows.min() == int(np.ceil(cut_row)) and rows.max() == 111
    assert (out[: rows.min(), 56] == 200).all() and (img == 200).all()     # the input is not modified
    # rotated face: the line turns with the eyes
    import cv2

    M = cv2.getRotationMatrix2D((56, 56), 30, 1.0)
    lm_r = np.c_[lm, np.ones(5)] @ M.T
    out_r = R.blank_below(img, lm_r, 0.11)
    nose = np.round(lm_r[2]).astype(int)
    assert (out_r[nose[1], nose[0]] == 128).all()
    eyes = np.round(lm_r[:2]).astype(int)
    assert all((out_r[y, x] == 200).all() for x, y in eyes)
    with pytest.raises(DataFormatError):
        R.blank_below(img, lm[:4], 0.11)


def test_ratio_on_synthetic_score_distributions():
    """Genuine scores shifted down by d_syn and d_real: the EER ratio follows the shifts' ratio."""
    g = np.random.default_rng(0)
    n = 20000
    imp = g.normal(0.0, 0.1, n)

    def eer(shift):
        s = np.r_[g.normal(0.5 - shift, 0.1, n), imp]
        return R.weighted_error_rates(s, np.r_[np.ones(n, bool), np.zeros(n, bool)], np.ones(2 * n))["eer"]

    e0, e_syn, e_real = eer(0.0), eer(0.1), eer(0.1)
    assert R.realism_ratio(e0, e_syn, e_real) == pytest.approx(1.0, abs=0.1)
    e_half = eer(0.05)
    assert R.realism_ratio(e0, e_half, e_real) < 0.6


def test_split_never_pairs_a_photo_with_itself():
    ids = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"] * 3
    masked = np.array([1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0], bool)   # c: 1 unmasked; d: no masked
    sp = R.split_probes(ids, masked, holdout=5, seed=3)
    assert sp["people"] == ["a", "b"]
    refs, up, rp = set(sp["references"]), set(sp["unmasked_probes"]), set(sp["real_probes"])
    assert not refs & up and not refs & rp and not up & rp
    assert rp == {0, 4}
    assert len(up) == 3 and len(refs) == 2                      # all but one unmasked photo held back
    assert R.split_probes(ids, masked, seed=3)["unmasked_probes"].size == 2   # holdout 1
    with pytest.raises(DataFormatError):
        R.split_probes(ids, np.zeros(12, bool))


# ----------------------------------------------------------------------------- end to end
class _Det:
    name = "stand-in"

    def detect(self, image):
        from maskinv.align.backends import Face
        from maskinv.constants import template_for_size

        h, w = image.shape[:2]
        if image.mean() < 3:  # an all-black photo has no face
            return []
        return [Face(box=np.array([0, 0, w - 1, h - 1], float), landmarks=template_for_size((h, w)).astype(np.float32),
                     score=1.0)]


class _PhotoModel:
    """Embeds a photo as its 8x8 thumbnail (mean-centred): lower-face changes lower the scores."""

    needs_photo = True
    embedding_size = 192
    fingerprint = "stand-in"

    def embed_images(self, images, *, aligned=False, detector=None):
        import cv2

        out = []
        for im in images:
            f = detector.detect(im)[0]
            x0, y0, x1, y1 = (int(v) for v in f.box)
            t = cv2.resize(im[y0:y1 + 1, x0:x1 + 1], (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
            t -= t.mean()
            out.append(t / (np.linalg.norm(t) + 1e-9))
        return np.array(out, np.float32), [None] * len(images), {}


def _folder(tmp_path, people=6, contrast=1.0):
    """A photo folder: ``people`` identities of four photos (photo 3 "really" masked); p5 lacks a photo
    and p4's photo 0 is black. ``contrast`` < 1 makes the identities look more alike."""
    import cv2

    g = np.random.default_rng(1)
    root = tmp_path / "bench"
    masked = []
    for k in range(people):
        d = root / f"p{k}"
        d.mkdir(parents=True)
        base = cv2.resize(g.integers(0, 256, (6, 6, 3)).astype(np.uint8), (96, 96), interpolation=cv2.INTER_CUBIC)
        if contrast != 1.0:
            base = np.clip(128 + contrast * (base.astype(float) - 128), 0, 255).astype(np.uint8)
        for j in range(4):
            im = np.clip(base.astype(int) + g.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            if j == 3:
                im[55:90, 20:76] = (230, 230, 228)     # a "real" mask: white patch over the lower face
                masked.append(f"p{k}/{j}.png")
            cv2.imwrite(str(d / f"{j}.png"), im[..., ::-1])
    (root / "p5" / "2.png").unlink()
    cv2.imwrite(str(root / "p4" / "0.png"), np.zeros((96, 96, 3), np.uint8))   # no face
    lst = tmp_path / "masked.txt"
    lst.write_text("\n".join(masked) + "\n")
    return root, lst


@pytest.mark.parametrize("renderer", ["v1"])
def test_realism_end_to_end_with_stand_ins(tmp_path, renderer):
    root, lst = _folder(tmp_path)
    res = R.realism(_PhotoModel(), root, lst, renderer=renderer, detector=_Det(), bootstrap=200, seed=0, holdout=1)
    assert res["people"] == 6
    assert res["masks"]["renderer"] == renderer
    m = res["metrics"]
    # The recorded ratio is the arithmetic of the recorded EERs.
    assert res["ratio"]["eer"]["point"] == pytest.approx(
        R.realism_ratio(m["unmasked"]["eer"], m["synthetic"]["eer"], m["real"]["eer"]))
    assert m["synthetic"]["eer"] >= m["unmasked"]["eer"]
    assert sum(res["dropped_no_face"].values()) >= 1           # the black photo
    assert res["counts"]["real"]["probes"] == 6
    assert res["_sheet"] is not None and res["_sheet"].shape[1] == 3 * 112
    up = res["upper_face_control"]
    assert set(up["metrics"]) == set(R.CONDITIONS)
    assert up["real_minus_synthetic"]["eer"]["point"] == pytest.approx(
        up["metrics"]["real"]["eer"] - up["metrics"]["synthetic"]["eer"])
    assert "Upper-face control" in R.realism_report(res)
    json.dumps({k: v for k, v in res.items() if k != "_sheet"})   # JSON-able
    assert R.realism(_PhotoModel(), root, lst, renderer=renderer, detector=_Det(), bootstrap=0,
                     upper_cut=None)["upper_face_control"] is None


def test_realism_cli_writes_results_and_refuses_a_bad_people_file(tmp_path, monkeypatch, capsys):
    from maskinv.cli import main

    root, lst = _folder(tmp_path)
    bad = tmp_path / "people.txt"
    bad.write_text("p0\nnobody\n")
    out = tmp_path / "out"
    code = main(["mask-realism", "--model", "dlib", "--bench", str(root), "--probe-list", str(lst),
                 "--people", str(bad), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    if code != 2 or "nobody" not in err[-1]:
        pytest.skip(f"dlib recogniser unavailable here: {err[-1] if err else code}")
    assert len(err) == 1 and not out.exists()

    import maskinv.evaluate.realism as mod

    monkeypatch.setattr(mod, "_Det", _Det, raising=False)
    monkeypatch.setattr("maskinv.api.load_model", lambda *a, **k: _PhotoModel())
    orig = mod.realism
    monkeypatch.setattr(mod, "realism", lambda *a, **k: orig(*a, **dict(k, detector=_Det(), bootstrap=50)))
    assert main(["mask-realism", "--model", "dlib", "--bench", str(root), "--probe-list", str(lst),
                 "--out", str(out)]) == 0
    assert (out / "realism.json").is_file() and (out / "contact_sheet.png").is_file()
    doc = json.loads((out / "realism.json").read_text())
    assert doc["masks"]["renderer"] == "v1" and "caveat" in doc
    assert "realism ratio" in (out / "realism.md").read_text()


# ----------------------------------------------------------------------------- several draws per probe
def _reference_synthetic(root, lst, draws, seed=0, lose=()):
    """The synthetic condition written out by hand: probe split, masks from image_rng(draw seed, i),
    the stand-in model's scores against the references and each identity's weight spread evenly
    over its draws and references. ``lose``: (identity, draw) pairs whose masked photo is dropped
    (as if MTCNN missed it). Returns (scores, genuine, weights, draw per comparison, the dropped
    photos' image keys)."""
    from maskinv.masks.mesh import image_key

    import cv2

    from maskinv.evaluate.probe_ref import read_probe_list
    from maskinv.masks import image_rng, mask_photo
    from maskinv.evaluate.realism_parts import draw_seed

    files = sorted(q for q in root.rglob("*.png"))
    keys = [q.relative_to(root).as_posix() for q in files]
    ids = [k.split("/")[0] for k in keys]
    sp = R.split_probes(ids, read_probe_list(lst, keys), holdout=1, seed=seed)
    det, model = _Det(), _PhotoModel()
    imgs = [cv2.imread(str(q))[..., ::-1].copy() for q in files]
    refs = [i for i in sp["references"] if det.detect(imgs[i])]
    re = model.embed_images([imgs[i] for i in refs], detector=det)[0]
    rows, lost = [], set()                       # (identity, draw, embedding)
    for d in range(draws):
        for i in sp["unmasked_probes"]:
            faces = det.detect(imgs[i])
            if not faces:
                continue
            m = mask_photo(imgs[i], faces[0].landmarks, image_rng(draw_seed(seed, d), int(i)), "random",
                           renderer="v1").image
            if (ids[i], d) in lose:
                lost.add(image_key(m))
                continue
            rows.append((ids[i], d, model.embed_images([m], detector=det)[0][0]))
    s, g, w, dr = [], [], [], []
    for name, d, e in rows:
        n_draws = sum(1 for r in rows if r[0] == name)
        n_gen = sum(1 for j in refs if ids[j] == name)
        n_imp = len(refs) - n_gen
        for j, rj in zip(refs, re):
            same = ids[j] == name
            s.append(float(np.dot(e.astype(np.float64), rj.astype(np.float64))))
            g.append(same)
            w.append(1.0 / (n_draws * (n_gen if same else n_imp)))
            dr.append(d)
    return np.array(s), np.array(g), np.array(w), np.array(dr), lost


def _brute_force_eer(s, g, w):
    """EER by trying every threshold (accept score >= t, plus accept nothing): the FNMR/FMR pair
    closest to crossing, averaged."""
    best = None
    for t in np.r_[np.unique(s), np.inf]:
        fnmr = w[g & (s < t)].sum() / w[g].sum()
        fmr = w[~g & (s >= t)].sum() / w[~g].sum()
        if best is None or abs(fnmr - fmr) < best[0] - 1e-15:
            best = (abs(fnmr - fmr), (fnmr + fmr) / 2)
    return best[1]


def test_one_draw_is_the_single_draw_of_earlier_rounds(tmp_path):
    root, lst = _folder(tmp_path)
    one = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=100, seed=0, pad=0)
    assert one["masks"]["draws"] == 1 and one["per_draw"] is None
    s, g, w, _, _ = _reference_synthetic(root, lst, 1)
    assert one["metrics"]["synthetic"]["eer"] == pytest.approx(_brute_force_eer(s, g, w), abs=1e-12)
    # The default is one draw, and draw 0 of a five-draw run is that same draw.
    dflt = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=100, seed=0, pad=0, draws=1)
    assert dflt["metrics"] == one["metrics"] and dflt["ratio"] == one["ratio"]
    five = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=100, seed=0, pad=0, draws=5)
    assert five["per_draw"][0]["metrics"] == pytest.approx(one["metrics"]["synthetic"], abs=1e-12)
    assert five["per_draw"][0]["seed"] == 0 and len({d["seed"] for d in five["per_draw"]}) == 5
    for c in ("unmasked", "real"):
        assert five["metrics"][c] == one["metrics"][c]


def test_several_draws_are_all_probes_and_share_their_probe_weight(tmp_path):
    root, lst = _folder(tmp_path, people=12, contrast=0.12)   # alike people: masked probes get confused
    n = 3
    res = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=100, seed=0, pad=0, draws=n)
    one = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=0, seed=0, pad=0)
    assert res["counts"]["synthetic"]["probes"] == n * one["counts"]["synthetic"]["probes"]
    assert res["synthetic_lost_per_draw"] == [0] * n and [d["probes"] for d in res["per_draw"]] == [11] * n
    s, g, w, dr, _ = _reference_synthetic(root, lst, n)
    assert g.sum() and (~g).sum() and 0.02 < _brute_force_eer(s, g, w) < 0.5
    # Each identity's genuine (and impostor) weights add up to 1 over all its draws.
    assert res["metrics"]["synthetic"]["eer"] == pytest.approx(_brute_force_eer(s, g, w), abs=1e-12)
    # ... which is not what equal weights per comparison give (the weighting matters here).
    assert _brute_force_eer(s, g, np.ones_like(w)) != pytest.approx(_brute_force_eer(s, g, w), abs=1e-6)
    for d in range(n):
        k = dr == d
        assert res["per_draw"][d]["metrics"]["eer"] == pytest.approx(_brute_force_eer(s[k], g[k], w[k]), abs=1e-12)
        assert res["per_draw"][d]["ratio"]["eer"] == pytest.approx(R.realism_ratio(
            res["metrics"]["unmasked"]["eer"], res["per_draw"][d]["metrics"]["eer"], res["metrics"]["real"]["eer"]))
    assert res["ratio"]["eer"]["replicates"] > 20 and res["ratio"]["eer"]["ci95"] is not None
    oc = res["draws_on_common_identities"]                    # nothing lost: every identity is common
    assert oc["identities"] == 11 and oc["pooled"] == pytest.approx(res["metrics"]["synthetic"], abs=1e-12)
    assert [m["eer"] for m in oc["per_draw"]] == pytest.approx([d["metrics"]["eer"] for d in res["per_draw"]], abs=1e-12)
    assert "draws 3" in R.realism_report(res)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_Det(), bootstrap=0, draws=bad)


@pytest.mark.parametrize("bad", ["0", "-2", "1.5", "five"])
def test_bad_draws_is_a_one_line_cli_error(tmp_path, capsys, bad):
    from maskinv.cli import main

    root, lst = _folder(tmp_path)
    out = tmp_path / "out"
    code = main(["mask-realism", "--model", "dlib", "--bench", str(root), "--probe-list", str(lst),
                 "--draws", bad, "--out", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--draws" in err[0]


class _LosingDet(_Det):
    """The stand-in detector, blind to the given photos (by image key)."""

    def __init__(self, blind):
        self.blind = set(blind)

    def detect(self, image):
        from maskinv.masks.mesh import image_key

        return [] if image_key(image) in self.blind else super().detect(image)


def test_a_lost_draw_is_dropped_and_its_probe_keeps_its_weight(tmp_path):
    root, lst = _folder(tmp_path, people=12, contrast=0.12)
    lose = {("p0", 1), ("p3", 1), ("p3", 2)}
    s, g, w, dr, blind = _reference_synthetic(root, lst, 3, lose=lose)
    assert len(blind) == 3
    res = R.realism(_PhotoModel(), root, lst, renderer="v1", detector=_LosingDet(blind), bootstrap=0, seed=0,
                    pad=0, draws=3)
    assert res["synthetic_lost_per_draw"] == [0, 2, 1] and res["dropped_no_face"]["synthetic"] == 3
    assert res["counts"]["synthetic"]["probes"] == 3 * 11 - 3 and res["counts"]["synthetic"]["identities"] == 11
    assert sum("[draw 1]" in k for k in res["dropped_files"]["synthetic"]) == 2
    # p3's one remaining draw carries all of p3's weight; p0's two share it.
    assert res["metrics"]["synthetic"]["eer"] == pytest.approx(_brute_force_eer(s, g, w), abs=1e-12)
    assert res["draws_on_common_identities"]["identities"] == 9

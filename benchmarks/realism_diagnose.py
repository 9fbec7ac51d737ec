"""Why do synthetic masks cost a recogniser less than real ones? Diagnostics on ``rmfd_dev``.

Looks at what an aligned-crop recogniser (SFace) sees: the 112 px ArcFace crops that MTCNN's five
points give for the real masked probes, the synthetic-masked probes and the unmasked probes (the
realism protocol of :mod:`maskinv.evaluate.realism`: same people, probes, references, pad and
detector), and writes under ``--out``:

* ``diagnose.json``:
  - ``ratio``: the realism ratios (EER, FNMR@FMR1e-2; 1,000 identity-bootstrap replicates);
  - ``coverage_rows_skin`` / ``coverage_cols_skin``: fraction of skin-coloured pixels (YCrCb skin
    box) per crop row band (central columns) and column band (rows 70-100): where the mask sits;
  - ``colour_classes_mouth_box`` (round 3): dark / blue / white / grey / other crops (median colour
    of the inner mouth box), with median RGB and luma quartiles per class;
  - ``top_edge_row`` (round 3): percentiles of the crop row where the mask's top edge lies (skin
    share < 0.4), at the nose bridge and under the eyes;
  - ``looks_mouth_box``: luma deciles, within-crop luma spread and texture (mean |Laplacian|)
    in the mouth/cheek box (rows 72-100, columns 30-82);
  - ``alignment_five_points``: MTCNN's five-point geometry (median, sd);
  - ``source``: face size (MTCNN box side, photo px) and upper-face sharpness (variance of the
    Laplacian on the eye band): the photo source/session confound;
  - ``occluded``: the three conditions again with every probe crop blanked from row ``cut`` down
    (references untouched), for cuts 56 (just below the eyes: no mask left) and 64; real - synthetic
    there is error from the upper face alone, i.e. not from the mask's looks (session/source, and
    alignment differences), with identity-bootstrap intervals;
* pictures: ``aligned_real.jpg`` / ``aligned_synthetic.jpg`` (grids of SFace's crops, the first 48),
  ``mean_crops.png`` (mean crop of unmasked | synthetic | real, 3x) and ``skin_maps.png`` (mean skin
  map of unmasked | synthetic | real | real - synthetic (red: real has more skin), 3x).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/realism_diagnose.py --out DIR

The unmasked/real/reference photos, detections and their (clean and occluded) embeddings are cached
in ``--cache`` (pickle) so that a renderer change re-runs only the synthetic condition.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MASKINV_SHARED_DATA") or next(
    (q for q in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if q.is_dir()),
    ROOT.parent / "shared" / "data"))
CUTS = (56, 64)


def skin(crops: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: YCrCb skin box (Cr 133..173, Cb 77..127)."""
    ycc = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2YCrCb) for c in crops])
    return (ycc[..., 1] >= 133) & (ycc[..., 1] <= 173) & (ycc[..., 2] >= 77) & (ycc[..., 2] <= 127)


def grid(crops: np.ndarray, cols: int = 8, n: int = 48) -> np.ndarray:
    crops = crops[:n]
    rows = -(-len(crops) // cols)
    c = np.concatenate([crops, np.zeros((rows * cols - len(crops),) + crops.shape[1:], np.uint8)])
    return np.concatenate([np.concatenate(list(c[r * cols:(r + 1) * cols]), 1) for r in range(rows)], 0)


def five_geometry(lm: np.ndarray) -> dict:
    le, re_, nose, ml, mr = np.asarray(lm, np.float64)
    eye_c, mouth_c = (le + re_) / 2, (ml + mr) / 2
    d_io = np.linalg.norm(re_ - le)
    ex = (re_ - le) / d_io
    ey = np.array([-ex[1], ex[0]])
    return {"em_over_io": float(np.dot(mouth_c - eye_c, ey) / d_io),
            "nose_down": float(np.dot(nose - eye_c, ey) / d_io),
            "nose_side": float(np.dot(nose - (eye_c + mouth_c) / 2, ex) / d_io),
            "mouth_width": float(np.linalg.norm(mr - ml) / d_io)}


def colour_classes(crops: np.ndarray) -> dict:
    """Each crop's median colour in the inner mouth box (rows 74-98, columns 36-76) sorted into
    dark (luma < 85), blue (hue 80-115 of 180, saturation > 40), white (saturation <= 40, luma >= 150),
    grey (the rest of the low-saturation ones) and other (skin, coloured, printed): share of the
    crops, median RGB and luma quartiles per class."""
    c = crops[:, 74:98, 36:76]
    med = np.median(c.reshape(len(c), -1, 3), 1)
    hsv = np.median(np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2HSV) for x in c]).reshape(len(c), -1, 3).astype(np.float32), 1)
    luma = med @ np.array([0.299, 0.587, 0.114])
    dark = luma < 85
    blue = ~dark & (hsv[:, 0] >= 80) & (hsv[:, 0] <= 115) & (hsv[:, 1] > 40)
    white = ~dark & ~blue & (hsv[:, 1] <= 40) & (luma >= 150)
    grey = ~dark & ~blue & (hsv[:, 1] <= 40) & (luma < 150)
    out = {}
    for name, m in (("dark", dark), ("blue", blue), ("white", white), ("grey", grey),
                    ("other", ~(dark | blue | white | grey))):
        out[name] = {"share": round(float(m.mean()), 3), "n": int(m.sum()),
                     "median_rgb": [round(float(v)) for v in np.median(med[m], 0)] if m.any() else None,
                     "luma_q25_50_75": [round(float(v)) for v in np.percentile(luma[m], [25, 50, 75])] if m.any() else None}
    return out


def top_edge(sk: np.ndarray) -> dict:
    """Where the mask's top edge lies: per crop, the first row from 50 down (to 100) where the share
    of skin pixels falls below 0.4, over the bridge columns 50-62 and over the cheek columns under
    the eyes (30-46, 66-82); 10th/25th/50th/75th/90th percentiles (100 = not found)."""
    def first(share):
        rows = [50 + (np.where(r[50:100] < 0.4)[0][0] if (r[50:100] < 0.4).any() else 50) for r in share]
        return [round(float(v), 1) for v in np.percentile(rows, [10, 25, 50, 75, 90])]

    return {"bridge_cols50-62": first(sk[:, :, 50:62].mean(2)),
            "cheeks_cols30-46_66-82": first(np.concatenate([sk[:, :, 30:46], sk[:, :, 66:82]], 2).mean(2))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renderer", default="mesh", choices=("v1", "mesh"))
    ap.add_argument("--cache", default="/tmp/realism_diag_dev.pkl")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--save-crops", action="store_true", help="also write crops.npz (the aligned crops, ~12 MB)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from maskinv.align import align_face, resolve_detector
    from maskinv.api import load_model
    from maskinv.evaluate.realism import _metrics, _scores, realism, realism_ratio, split_probes
    from maskinv.masks import image_rng, mask_photo

    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rmfd = DATA / "rmfd"
    split = ROOT / "benchmarks/splits/rmfd_dev.txt"      # diagnostics on dev only
    model = load_model("sface")
    cache = pickle.load(open(a.cache, "rb")) if Path(a.cache).is_file() else {}
    n_before = len(cache)
    if not any(isinstance(k, tuple) and k[0] == "emb" for k in cache):   # photos, detections, clean embeddings
        realism(model, rmfd / "images", rmfd / "masked.txt", people_file=split, renderer=a.renderer, bootstrap=0,
                cache=cache)
    files = sorted((q for q in (rmfd / "images").rglob("*") if q.is_file() and q.suffix.lower() in (".jpg", ".jpeg", ".png")),
                   key=lambda q: q.relative_to(rmfd / "images").as_posix())
    keys = [q.relative_to(rmfd / "images").as_posix() for q in files]
    ident = [k.split("/", 1)[0] for k in keys]
    masked = set((rmfd / "masked.txt").read_text().split())
    sp = split_probes(ident, np.array([k in masked for k in keys]), people=set(split.read_text().split()))
    det = resolve_detector("mtcnn")
    items = {g: [(int(i), *cache[int(i)]) for i in sp[f] if cache[int(i)][1] is not None]
             for g, f in (("unmasked", "unmasked_probes"), ("real", "real_probes"), ("references", "references"))}
    synth, synth_failed = [], []
    for i, img, face in items["unmasked"]:
        r = mask_photo(img, face.landmarks, image_rng(0, i), "random", renderer=a.renderer)
        f = det.detect(r.image)
        (synth.append((i, r.image, f[0])) if f else synth_failed.append(keys[i]))
    items["synthetic"] = synth
    crops = {g: np.stack([align_face(img, f.landmarks, 112) for _, img, f in v]) for g, v in items.items()}
    if a.save_crops:
        np.savez_compressed(out / "crops.npz", **{g: c for g, c in crops.items() if g != "references"})
    names = sp["people"]
    code = {n: k for k, n in enumerate(names)}
    pid = {g: np.array([code[ident[r[0]]] for r in v]) for g, v in items.items()}

    def emb_of(g, cut=None):
        key = ("diag-emb", g, cut, tuple(r[0] for r in items[g]))
        if g != "synthetic" and key in cache:
            return cache[key]
        if cut is None and g != "synthetic":
            ck = [k for k in cache if isinstance(k, tuple) and k[0] == "emb" and k[2] == key[3]]
            if ck:
                return cache[ck[0]]
        c = crops[g].copy()
        if cut is not None:
            c[:, cut:] = 128
        e = np.asarray(model.embed_aligned(c, flip=True, batch_size=64), np.float32)
        if g != "synthetic":
            cache[key] = e
        return e

    re_ = emb_of("references")
    conds = ("unmasked", "synthetic", "real")
    comps = {(c, cut): _scores(emb_of(c, cut), re_, pid[c], pid["references"]) for c in conds for cut in (None,) + CUTS}
    rng = np.random.default_rng(1)
    n_id = len(names)
    fkey = "fnmr@fmr0.01"
    point = {k: _metrics(v) for k, v in comps.items()}
    boots = []
    for _ in range(a.bootstrap):
        cnt = np.bincount(rng.integers(0, n_id, n_id), minlength=n_id)
        boots.append({k: _metrics(v, cnt) for k, v in comps.items()})

    def ci(vals):
        v = [x for x in vals if x is not None and np.isfinite(x)]
        return [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)] if len(v) > 20 else None

    def stat(fn):
        return {"point": round(float(fn(point)), 4), "ci95": ci([fn(b) for b in boots])}

    rep: dict = {"split": "rmfd_dev", "renderer": a.renderer, "model": "sface",
                 "counts": {g: len(v) for g, v in items.items()}, "synthetic_no_face_after_masking": len(synth_failed)}
    rep["metrics"] = {c: {m: round(point[(c, None)][m], 4) for m in ("eer", fkey)} for c in conds}
    rep["ratio"] = {m: stat(lambda d, m=m: realism_ratio(d[("unmasked", None)][m], d[("synthetic", None)][m],
                                                         d[("real", None)][m]) or np.nan) for m in ("eer", fkey)}
    rep["synthetic_minus_real"] = {m: stat(lambda d, m=m: d[("synthetic", None)][m] - d[("real", None)][m])
                                   for m in ("eer", fkey)}
    occ = {}
    for cut in CUTS:
        occ[f"cut{cut}"] = {
            "metrics": {c: {m: round(point[(c, cut)][m], 4) for m in ("eer", fkey)} for c in conds},
            "real_minus_synthetic": {m: stat(lambda d, m=m: d[("real", cut)][m] - d[("synthetic", cut)][m])
                                     for m in ("eer", fkey)},
            "real_minus_unmasked": {m: stat(lambda d, m=m: d[("real", cut)][m] - d[("unmasked", cut)][m])
                                    for m in ("eer", fkey)},
            "synthetic_minus_unmasked": {m: stat(lambda d, m=m: d[("synthetic", cut)][m] - d[("unmasked", cut)][m])
                                         for m in ("eer", fkey)},
        }
    rep["occluded"] = occ
    # Coverage, looks, alignment, source.
    sk = {g: skin(c) for g, c in crops.items()}
    bands = [(40, 52), (52, 58), (58, 64), (64, 70), (70, 76), (76, 82), (82, 88), (88, 94), (94, 100), (100, 112)]
    rep["coverage_rows_skin"] = {g: {f"{r0}-{r1}": round(float(sk[g][:, r0:r1, 28:84].mean()), 3) for r0, r1 in bands}
                                 for g in conds}
    cb = [(0, 14), (14, 28), (28, 42), (42, 70), (70, 84), (84, 98), (98, 112)]
    rep["coverage_cols_skin"] = {g: {f"{c0}-{c1}": round(float(sk[g][:, 70:100, c0:c1].mean()), 3) for c0, c1 in cb}
                                 for g in conds}
    rep["coverage_side_cheeks_rows52-70_skin"] = {g: round(float(np.concatenate(
        [sk[g][:, 52:70, 8:30], sk[g][:, 52:70, 82:104]], 2).mean()), 3) for g in conds}
    looks = {}
    for g in conds:
        c = crops[g]
        luma = c[:, 72:100, 30:82].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
        m = luma.reshape(len(c), -1).mean(1)
        lap = [float(np.abs(cv2.Laplacian(x, cv2.CV_32F)).mean()) for x in luma]
        sat = [float(cv2.cvtColor(x[72:100, 30:82], cv2.COLOR_RGB2HSV)[..., 1].mean()) for x in c]
        looks[g] = {"luma_deciles": [round(float(v), 1) for v in np.percentile(m, np.arange(10, 100, 10))],
                    "luma_within_std": round(float(luma.reshape(len(c), -1).std(1).mean()), 1),
                    "texture_abs_laplacian": round(float(np.mean(lap)), 2), "saturation": round(float(np.mean(sat)), 1)}
    rep["looks_mouth_box"] = looks
    rep["colour_classes_mouth_box"] = {g: colour_classes(crops[g]) for g in conds}
    rep["top_edge_row"] = {g: top_edge(sk[g]) for g in conds}
    geo, src = {}, {}
    for g, v in items.items():
        gg = [five_geometry(f.landmarks) for _, _, f in v]
        geo[g] = {k: [round(float(np.median([x[k] for x in gg])), 3), round(float(np.std([x[k] for x in gg])), 3)]
                  for k in gg[0]}
        side = [max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for _, _, f in v]
        eye = crops[g][:, 44:60, 24:88].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
        src[g] = {"face_box_px_median": round(float(np.median(side)), 1),
                  "eye_band_laplacian_var_median": round(float(np.median([cv2.Laplacian(x, cv2.CV_32F).var() for x in eye])), 1),
                  "det_score_median": round(float(np.median([f.score for _, _, f in v])), 4)}
    rep["alignment_five_points_median_sd"] = geo
    rep["source"] = src
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    # Pictures.
    def png(name, rgb):
        cv2.imwrite(str(out / name), cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))

    for g in ("real", "synthetic"):
        cv2.imwrite(str(out / f"aligned_{g}.jpg"), cv2.cvtColor(grid(crops[g]), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    big = lambda x: cv2.resize(x, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)  # noqa: E731
    png("mean_crops.png", big(np.concatenate([crops[g].astype(np.float32).mean(0) for g in conds], 1)))
    maps = [sk[g].mean(0) for g in conds]
    d = maps[2] - maps[1]
    diff = np.stack([np.clip(d, 0, 1), np.zeros_like(d), np.clip(-d, 0, 1)], -1) * 255 * 2
    png("skin_maps.png", big(np.concatenate([np.repeat(m[..., None], 3, -1) * 255 for m in maps] + [diff], 1)))
    (out / "diagnose.json").write_text(json.dumps(rep, indent=1))
    if len(cache) != n_before:
        with open(a.cache + ".tmp", "wb") as f:
            pickle.dump(cache, f)
        os.replace(a.cache + ".tmp", a.cache)
    print(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

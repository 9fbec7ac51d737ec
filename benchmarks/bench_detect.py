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
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    main()

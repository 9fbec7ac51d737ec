"""Tools around the service's mask classifier (round 4): out-of-fold diagnosis, speed, contact sheets.

    python -m benchmarks.mask_classifier_tools diagnose --recipe r3   # which dev photos a recipe's CV gets wrong
    python -m benchmarks.mask_classifier_tools speed --weights A.pt B.pt  # ms per face, one thread, one crop per call
    python -m benchmarks.mask_classifier_tools sheet                  # the hard negatives, one row per kind
    python -m benchmarks.mask_classifier_tools test --look 4          # serve_rmfd test + which look at rmfd_test
    python -m benchmarks.mask_classifier_tools paired --recipe r3 r4c --weights OLD.pt NEW.pt  # differences

``diagnose`` reads a recipe's out-of-fold probabilities on ``rmfd_dev`` (``train_mask_classifier cv`` /
``choose``), never ``rmfd_test``. It sorts the errors at the recipe's chosen cut by the colour of the lower
face (CIELAB lightness and chroma of rows 80-108, columns 30-82 of the 112 crop: dark < L 30, grey chroma < 12,
white/light grey above L 70, else coloured or skin-like) and writes contact sheets of them to ``/tmp``
(RMFD photos stay out of the repository).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.train_mask_classifier import (OCCLUDERS, RECIPES, CACHE, HARD_KINDS, occlude, pools,
                                               out_of_fold_p, rdir)

COLOURS = ("dark", "grey", "white/light", "coloured/skin")


def lower_face_colour(crop: np.ndarray) -> str:
    """One of :data:`COLOURS` for the lower face of an aligned 112 crop."""
    import cv2

    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(float)[80:108, 30:82].reshape(-1, 3)
    light = lab[:, 0].mean() * 100 / 255
    chroma = float(np.hypot(lab[:, 1] - 128, lab[:, 2] - 128).mean())
    if light < 30:
        return "dark"
    if chroma < 12:
        return "white/light" if light > 70 else "grey"
    return "coloured/skin"


def out_of_fold(model_name: str, detector: str, recipe: str) -> tuple[dict, np.ndarray, float]:
    P = pools(model_name, detector, RECIPES[recipe].get("hard_kinds", HARD_KINDS))
    p = out_of_fold_p(P, model_name, detector, recipe)
    cut = json.loads((rdir(recipe) / f"choose_{model_name}_{detector}.json").read_text())["masked_at"]
    return P, p, float(cut)


def diagnose(model_name: str, detector: str, recipe: str, out_dir: Path = Path("/tmp")) -> dict:
    import cv2

    P, p, cut = out_of_fold(model_name, detector, recipe)
    found, m = P["n_faces"] > 0, P["masked"]
    colour = np.array([lower_face_colour(c) for c in P["crops"]])
    masked = found & m
    out = {"recipe": recipe, "masked_at": cut, "detection_failures_masked": int((~found & m).sum()),
           "masked_called_masked_by_colour": {c: f"{int((masked & (colour == c) & (p >= cut)).sum())} of "
                                                 f"{int((masked & (colour == c)).sum())}" for c in COLOURS},
           "missed_masked": {c: int(v) for c, v in Counter(colour[masked & (p < cut)]).items()},
           "false_masked": [str(q) for q in P["path"][found & ~m & (p >= cut)]],
           "unsure_unmasked": int((found & ~m & (p >= 0.2) & (p < cut)).sum())}
    for name, sel in (("missed", masked & (p < cut)), ("unmasked_high", found & ~m & (p >= 0.2))):
        idx = np.flatnonzero(sel)[np.argsort(p[sel])]
        ims = [cv2.putText(cv2.cvtColor(P["crops"][i], cv2.COLOR_RGB2BGR), f"{p[i]:.2f}", (2, 12), 0, 0.4,
                           (0, 255, 0), 1) for i in idx]
        if ims:
            ims += [np.zeros_like(ims[0])] * (-len(ims) % 10)
            f = out_dir / f"maskcls_{recipe}_{name}.png"
            cv2.imwrite(str(f), np.vstack([np.hstack(ims[i:i + 10]) for i in range(0, len(ims), 10)]))
            out[f"sheet_{name}"] = str(f)
    print(json.dumps(out, indent=2))
    return out


def speed(weights: list[str], n: int = 300) -> dict:
    """Milliseconds per face, one torch thread, one crop per call (as the service calls it): median and p95
    of ``n`` calls after 20 warm-up calls, for each classifier file, interleaved in rounds so that load
    from other jobs on the machine falls on all of them alike."""
    import torch

    from maskinv.masks.detect import load_mask_classifier
    from maskinv.utils.machine import machine_line

    torch.set_num_threads(1)
    crop = np.random.default_rng(0).integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    clfs = {w: load_mask_classifier(w) for w in weights}
    ts: dict[str, list[float]] = {w: [] for w in weights}
    for c in clfs.values():
        for _ in range(20):
            c.predict_proba(crop)
    for _ in range(n // 10):
        for w, c in clfs.items():
            for _ in range(10):
                t0 = time.perf_counter()
                c.predict_proba(crop)
                ts[w].append(time.perf_counter() - t0)
    out = {"machine": machine_line(), "torch_threads": 1, "calls": n}
    for w, c in clfs.items():
        out[w] = {"input_side": c.input_side, "ms_per_face_median": round(1000 * float(np.median(ts[w])), 3),
                  "ms_per_face_p95": round(1000 * float(np.percentile(ts[w], 95)), 3),
                  "bytes": Path(w).stat().st_size, "params": int(sum(q.numel() for q in c.net.parameters()))}
    print(json.dumps(out, indent=2))
    return out


def sheet(model_name: str, detector: str) -> None:
    """A contact sheet of hard negatives (one row per kind) under the cache, to check them by eye."""
    import cv2

    P = pools(model_name, detector)
    g = np.random.default_rng(0)
    un = P["crops"][(P["n_faces"] > 0) & ~P["masked"]][:8]
    rows = [np.hstack([occlude(c, g, k) for c in un]) for k in OCCLUDERS]
    out = CACHE / "hard_negatives.png"
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    print(out)


def test(model_name: str, detector: str, look: int) -> dict:
    """``benchmarks.serve_rmfd test`` (the shipped classifier on ``rmfd_test``, once), with the round and how
    many times the test split has been looked at recorded in its JSON."""
    from benchmarks.serve_rmfd import OUT, test as rmfd_test
    from maskinv.masks.detect import load_mask_classifier
    from maskinv.utils.io import atomic_write_json

    out = rmfd_test(model_name, detector)
    meta = load_mask_classifier().meta
    out["round"] = meta.get("round")
    out["recipe"] = meta.get("recipe")
    out["test_split_looks"] = {"this": look, "note": f"look {look} at rmfd_test: rounds 1-{look - 1} measured it "
                                                    "once each; this round's recipe and cut were chosen on rmfd_dev "
                                                    "cross-validation before this measurement"}
    out["command"] = f"python -m benchmarks.mask_classifier_tools test --look {look} --model {model_name} " \
                     f"--detector {detector}"
    atomic_write_json(OUT / "mask_classifier_test.json", out)
    return out


def _paired(person: np.ndarray, hits: dict, n_boot: int = 4000, seed: int = 0) -> dict:
    """B - A of ratio statistics with the people resampled (both classifiers on the same draws).
    ``hits``: name -> (hit_a, hit_b, counted) bool arrays over the same photos."""
    names, inv = np.unique(person, return_inverse=True)
    w = np.stack([np.bincount(d, minlength=len(names))
                  for d in np.random.default_rng(seed).integers(0, len(names), (n_boot, len(names)))])
    out = {"method": f"person-clustered paired bootstrap, {n_boot} resamples of {len(names)} people, percentile 95 %"}
    for k, (a, b, counted) in hits.items():
        ha, hb, n = (np.bincount(inv, weights=(v & counted).astype(float), minlength=len(names)) for v in (a, b, counted))
        d = (w @ hb - w @ ha) / np.maximum(w @ n, 1)
        out[k] = {"a": int(ha.sum()), "b": int(hb.sum()), "of": int(n.sum()), "b_minus_a": float((hb.sum() - ha.sum()) / n.sum()),
                  "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]}
    return out


def paired(model_name: str, detector: str, recipes: list[str], weights: list[str]) -> dict:
    """Recipe B against recipe A: out of fold on ``rmfd_dev`` (each at its chosen cut) and, given the two
    classifier files, on ``rmfd_test`` (each at its own cut; detection failures are errors for both)."""
    from benchmarks.serve_rmfd import load_cache
    from maskinv.masks.detect import load_mask_classifier

    out: dict = {"a": recipes[0], "b": recipes[1]}
    (P, pa, ca), (_, pb, cb) = (out_of_fold(model_name, detector, r) for r in recipes)
    found, m = P["n_faces"] > 0, P["masked"]
    ok = [np.where(found, (p >= c) == m, False) for p, c in ((pa, ca), (pb, cb))]
    fm = [found & ~m & (p >= c) for p, c in ((pa, ca), (pb, cb))]
    out["rmfd_dev_out_of_fold"] = _paired(P["person"], {"accuracy": (ok[0], ok[1], np.ones(len(m), bool)),
                                                        "false_masked": (fm[0], fm[1], found & ~m)})
    if weights:
        c = load_cache(model_name, detector)
        te = c["split"] == "test"
        found, m, crops = c["n_faces"][te] > 0, c["masked"][te], c["crops"][te]
        ok, fm = [], []
        for w in weights:
            clf = load_mask_classifier(w)
            p = np.zeros(len(m))
            p[found] = clf.predict_proba(crops[found])
            ok.append(np.where(found, (p >= clf.masked_at) == m, False))
            fm.append(found & ~m & (p >= clf.masked_at))
        out["weights"] = weights
        out["rmfd_test"] = _paired(c["person"][te], {"accuracy": (ok[0], ok[1], np.ones(len(m), bool)),
                                                     "false_masked": (fm[0], fm[1], found & ~m)})
        from benchmarks.serve_rmfd import OUT
        from maskinv.utils.io import atomic_write_json

        out["command"] = (f"python -m benchmarks.mask_classifier_tools paired --recipe {' '.join(recipes)} "
                          f"--weights {' '.join(weights)}")
        atomic_write_json(OUT / f"mask_classifier_paired_{recipes[0]}_{recipes[1]}.json", out)
    print(json.dumps(out, indent=2))
    return out


def main(argv=None) -> None:
    from benchmarks.serve_rmfd import DEFAULT_DETECTOR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("diagnose", "speed", "sheet", "test", "paired"))
    ap.add_argument("--look", type=int, default=None, help="test: which look at rmfd_test this is (1 = the first)")
    ap.add_argument("--model", default="sface")
    ap.add_argument("--detector", default=DEFAULT_DETECTOR)
    ap.add_argument("--recipe", choices=tuple(RECIPES), nargs="+", default=["r3"], help="paired: A B")
    ap.add_argument("--weights", nargs="+", default=None, help="speed: classifier files (default: the shipped one)")
    a = ap.parse_args(argv)
    if a.step == "diagnose":
        diagnose(a.model, a.detector, a.recipe[0])
    elif a.step == "paired":
        if len(a.recipe) != 2:
            raise SystemExit("paired: two recipes, A then B (--recipe r3 r4c)")
        paired(a.model, a.detector, a.recipe, a.weights or [])
    elif a.step == "test":
        if not a.look or a.look < 1:
            raise SystemExit("test: say which look at rmfd_test this is (--look N)")
        test(a.model, a.detector, a.look)
    elif a.step == "speed":
        speed(a.weights or [str(Path(__file__).resolve().parents[1] / "src/maskinv/masks/mask_classifier.pt")])
    else:
        sheet(a.model, a.detector)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Train the service's mask classifier (rounds 2-4): all ``rmfd_dev`` people, hard negatives, cut by CV.

    python -m benchmarks.serve_rmfd prep --model sface            # RMFD crops through the service's pipeline (cache)
    python -m benchmarks.train_mask_classifier cv --fold K        # K = 0..4: one person-grouped fold of rmfd_dev
    python -m benchmarks.train_mask_classifier choose             # masked_at from the out-of-fold dev probabilities
    python -m benchmarks.train_mask_classifier final              # all dev people -> src/maskinv/masks/mask_classifier.pt
    python -m benchmarks.serve_rmfd test --model sface            # once, at the end: rmfd_test

Round 4: ``--recipe`` (:data:`RECIPES`) picks what a fold/choose/final trains; ``benchmarks/mask_classifier_tools.py``
holds the out-of-fold diagnosis, the speed measurement and the contact sheets.

Everything here sees ``rmfd_dev`` only (``benchmarks/splits/rmfd_dev.txt``) plus LFW training people
(``lfw_train_people.txt``, aligned112; the held-out names of ``../shared/data/README.md`` are not in it).
What changed from round 1 (``serve_rmfd train``, which kept a fifth of dev for its cut):

* **all dev people train the final network**; its cut comes from 5-fold cross-validation grouped by
  person over dev (each fold's network never saw that fold's people);
* **hard negatives**: unmasked crops with procedural occluders that are not masks, drawn here
  (:func:`occlude`): sunglasses, a beard, a scarf or collar under the chin, a hand on the chin or across
  the mouth, a dark shadow over the lower face, the bottom of the crop cut off (a face at the photo's
  edge). Labelled "unmasked": a fake mask must not buy the looser M-U threshold;
* more LFW negatives (every training person, up to 2 photos) and the same synthetic masks as round 1.

CPU only (one torch thread): one network takes a few minutes on a 2-core Xeon. Caches under
``$MASKCLS_CACHE`` (default ``/tmp/maskcls_cache``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.serve_rmfd import DEFAULT_DETECTOR, SPLITS, lfw_crops, load_cache, people, synth, wilson

CACHE = Path(os.environ.get("MASKCLS_CACHE", "/tmp/maskcls_cache"))
N_FOLDS = 5
EPOCHS = 12
#: choose: among cuts >= 0.5 whose out-of-fold dev false "masked" rate is at most this (half the issue's 1 %
#: goal: the margin is for new people), the one with the best out-of-fold accuracy (then fewer false "masked").
MAX_DEV_FALSE_MASKED = 0.005
UNMASKED_BELOW = 0.2
#: Every procedural occluder :func:`occlude` draws.
OCCLUDERS = ("sunglasses", "beard", "scarf_chin", "hand", "shadow", "cut_off")
#: The ones used as hard negatives. A first cross-validation with all six (round 3a, docs/serve.md) missed real
#: beige / skin-coloured masks (P 0.02-0.15 out of fold) and dark masks: a skin-coloured "hand" over the mouth
#: and a dark "shadow" over the lower face look like them at 56 px. Those two stay out by default.
HARD_KINDS = ("sunglasses", "beard", "scarf_chin", "cut_off")
#: Training recipes, each cross-validated on rmfd_dev with the same rule (:func:`choose`). r3: rounds 2-3 (shipped
#: in round 3). r4a (round 4): augmentation v2 (rotation/zoom/shift with black fill, colour jitter:
#: maskinv.masks.detect.AUGMENTS) and a second synthetic mask per unmasked crop drawn in the colours the round-3
#: network missed on dev (beige, cream, white, grey, black; mesh renderer or v1: :func:`hard_colour_masks`).
#: r4a's CV missed more black masks than r3 (12 vs 3 of 127): the black fill of augment v2 and the "cut_off"
#: occluder both teach "dark lower face = not a mask". So, declared after r4a and before their folds ran:
#: r4c: r3's augmentation + the colour masks (the data change alone); r4b: r4c at 80 px. r4a's folds ran on the
#: pool of round 3a (hard negatives of all six OCCLUDERS) by mistake; its entry says so, and it was not re-run.
#: bf16: training under CPU bfloat16 autocast (speed; the weights are float32).
RECIPES = {"r3": {"side": 56, "augment": "v1", "colour_masks": False, "bf16": False},
           "r4a": {"side": 56, "augment": "v2", "colour_masks": True, "bf16": True, "hard_kinds": OCCLUDERS},
           "r4b": {"side": 80, "augment": "v1", "colour_masks": True, "bf16": True},
           "r4c": {"side": 56, "augment": "v1", "colour_masks": True, "bf16": True}}
#: Mask colours the round-3 network missed on rmfd_dev out of fold (RGB): beige, skin-beige, cream, white, grey, black.
HARD_COLOURS = ((208, 188, 162), (196, 166, 138), (236, 226, 204), (226, 226, 222), (150, 150, 154), (44, 44, 48))

# ArcFace 112 template points: eyes, nose tip, mouth corners
_LE, _RE, _NO, _ML, _MR = (38.3, 51.7), (73.5, 51.5), (56.0, 71.7), (41.5, 92.4), (70.7, 92.2)


def fold_of(person: str) -> int:
    """A person's cross-validation fold (by hash, deterministic)."""
    return hashlib.sha256(("cv:" + person).encode()).digest()[0] % N_FOLDS


def _colour(g) -> tuple[int, int, int]:
    return tuple(int(v) for v in g.integers(0, 256, 3))


def occlude(crop: np.ndarray, g: np.random.Generator, kind: str | None = None,
            kinds: tuple[str, ...] = HARD_KINDS) -> np.ndarray:
    """A copy of an aligned 112 crop with a procedural occluder that is NOT a mask (one of ``OCCLUDERS``;
    None: a random one of ``kinds``)."""
    import cv2

    kind = kind or kinds[int(g.integers(len(kinds)))]
    if kind not in OCCLUDERS:
        raise ValueError(f"occlude: unknown kind {kind!r}; known: {OCCLUDERS}")
    img = crop.copy()
    ov = img.copy()
    j = lambda s: float(g.normal(0, s))  # noqa: E731 - jitter in pixels
    if kind == "sunglasses":
        c = tuple(int(v) for v in g.integers(0, 70, 3))
        ax = (int(g.integers(11, 17)), int(g.integers(7, 12)))
        for (x, y) in (_LE, _RE):
            cv2.ellipse(ov, (int(x + j(1.5)), int(y + j(1.5))), ax, j(5), 0, 360, c, -1, cv2.LINE_AA)
        cv2.line(ov, (int(_LE[0] + ax[0] - 2), int(_LE[1])), (int(_RE[0] - ax[0] + 2), int(_RE[1])), c, 2)
        for x0, x1 in ((_LE[0] - ax[0], 2), (_RE[0] + ax[0], 110)):
            cv2.line(ov, (int(x0), int(_LE[1])), (int(x1), int(_LE[1] - 3)), c, 2)
        a = g.uniform(0.8, 1.0)
    elif kind == "beard":
        c = tuple(int(v) for v in g.integers(10, 90, 3) * np.array([1.0, 0.85, 0.7]))
        top = g.uniform(74, 86)
        pts = np.array([[18, top], [26, 102 + j(2)], [56, 112], [86, 102 + j(2)], [94, top], [82, top + 4],
                        [56, 98], [30, top + 4]], np.int32)
        cv2.fillPoly(ov, [pts], c, cv2.LINE_AA)
        cv2.ellipse(ov, (56, 80), (12, 3), 0, 0, 360, c, -1)  # moustache
        cv2.ellipse(ov, (56, 93), (12, 5), 0, 0, 360, tuple(int(v) for v in img[93, 56]), -1)  # lips stay visible
        noise = g.integers(-40, 40, ov.shape[:2])[..., None]
        mask = np.zeros(ov.shape[:2], np.uint8)
        cv2.fillPoly(mask, [pts], 1)
        ov = np.where(mask[..., None] > 0, np.clip(ov.astype(int) + noise, 0, 255), ov).astype(np.uint8)
        a = g.uniform(0.5, 0.9)
    elif kind == "scarf_chin":
        c = _colour(g)
        y = g.uniform(94, 106)
        pts = np.array([[0, y + 6 + j(2)], [30, y + j(2)], [56, y - 2], [82, y + j(2)], [112, y + 6 + j(2)],
                        [112, 112], [0, 112]], np.int32)
        cv2.fillPoly(ov, [pts], c, cv2.LINE_AA)
        if g.random() < 0.5:  # stripes
            c2 = _colour(g)
            for k in range(int(y), 112, 4):
                cv2.line(ov, (0, k), (112, k), c2, 1)
        a = 1.0
    elif kind == "hand":
        skin = img[62:84, 14:36].reshape(-1, 3).mean(0) * g.uniform(0.8, 1.15)
        c = tuple(int(v) for v in np.clip(skin, 0, 255))
        side = 1 if g.random() < 0.5 else -1
        cx = 56 + side * g.uniform(5, 25)
        cy = g.uniform(95, 115)
        cv2.ellipse(ov, (int(cx), int(cy)), (int(g.uniform(16, 24)), int(g.uniform(12, 18))), j(20), 0, 360, c, -1,
                    cv2.LINE_AA)
        n_f = int(g.integers(2, 5))
        ang = g.uniform(-0.6, 0.6) + (-np.pi / 2)
        for f in range(n_f):
            bx, by = cx + (f - n_f / 2) * 7, cy - 8
            ln = g.uniform(14, 26)
            ex, ey = bx + ln * np.cos(ang), by + ln * np.sin(ang)
            cv2.line(ov, (int(bx), int(by)), (int(ex), int(ey)), c, int(g.integers(5, 8)), cv2.LINE_AA)
            cv2.line(ov, (int(bx) + 3, int(by)), (int(ex) + 3, int(ey)), tuple(int(v * 0.8) for v in c), 1)
        a = 1.0
    elif kind == "shadow":
        y0 = g.uniform(55, 85)
        ramp = np.clip((np.arange(112) - y0) / g.uniform(5, 20), 0, 1)[:, None, None]
        dark = g.uniform(0.15, 0.5)
        return np.clip(img * (1 - ramp * (1 - dark)), 0, 255).astype(np.uint8)
    elif kind == "cut_off":
        y = int(g.uniform(82, 104))
        img[y:] = 0
        return img
    else:
        raise AssertionError(kind)
    return cv2.addWeighted(ov, a, img, 1 - a, 0)


def hard_negatives(crops: np.ndarray, seed: int, kinds: tuple[str, ...] = HARD_KINDS) -> np.ndarray:
    g = np.random.default_rng(seed)
    return np.stack([occlude(c, g, None, kinds) for c in crops]) if len(crops) else crops


def hard_colour_masks(crops: np.ndarray, seed: int) -> np.ndarray:
    """One synthetic mask per crop: the mesh renderer or v1 (half each), 70 % in one of :data:`HARD_COLOURS`
    (jittered), the rest in the renderer's own colours."""
    from maskinv.masks import apply_mask

    g = np.random.default_rng(seed)
    out = []
    for c in crops:
        renderer = "mesh" if g.random() < 0.5 else "v1"
        pin = {}
        if g.random() < 0.7:
            base = np.asarray(HARD_COLOURS[int(g.integers(len(HARD_COLOURS)))], float)
            pin["color"] = [int(v) for v in np.clip(base * g.uniform(0.9, 1.06) + g.normal(0, 6, 3), 0, 255)]
            if renderer == "v1":
                pin["color"] = tuple(pin["color"])
        out.append(apply_mask(c, None, g, renderer=renderer, **pin).image)
    return np.stack(out) if out else crops


def colour_pools(P: dict, model_name: str, detector: str) -> dict:
    """:func:`hard_colour_masks` of the dev and LFW crops (cached next to the pools)."""
    f = CACHE / f"pools_colour_{model_name}_{detector}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    out = {"colour_syn": hard_colour_masks(P["crops"], 21), "lfw_colour_syn": hard_colour_masks(P["lfw"], 22)}
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, f)
    return out


def pools(model_name: str, detector: str, kinds: tuple[str, ...] = HARD_KINDS) -> dict:
    """RMFD dev crops + LFW training crops and their synthetic/hard-negative copies (cached)."""
    f = CACHE / f"pools_{model_name}_{detector}{'' if kinds == HARD_KINDS else '_' + '-'.join(kinds)}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    c = load_cache(model_name, detector)
    dev = c["split"] == "dev"
    crops = c["crops"][dev]
    lfw = lfw_crops(people("lfw_train_people.txt"), 2, 4000)
    out = {"crops": crops, "person": c["person"][dev], "masked": c["masked"][dev], "n_faces": c["n_faces"][dev],
           "path": c["path"][dev], "syn": synth(crops, 1), "hard": hard_negatives(crops, 5, kinds),
           "lfw": lfw, "lfw_syn": synth(lfw, 2), "lfw_hard": hard_negatives(lfw, 6, kinds)}
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, f)
    return out


def training_set(P: dict, use: np.ndarray, colour: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crops and labels from the dev rows ``use`` (faces found) + all LFW training crops (+ ``colour``:
    :func:`colour_pools`, every dev unmasked crop and the LFW crops without a hard negative)."""
    m = P["masked"]
    un = use & ~m
    g = np.random.default_rng(7)
    half = g.random(len(P["lfw"])) < 0.5  # half of the LFW crops give a hard negative
    parts = [(P["crops"][use & m], 1), (P["crops"][un], 0), (P["syn"][un], 1), (P["hard"][un], 0),
             (P["lfw"], 0), (P["lfw_syn"], 1), (P["lfw_hard"][half], 0)]
    names = ["rmfd_real_masked", "rmfd_unmasked", "rmfd_unmasked_synthetic_masked", "rmfd_unmasked_hard_negatives",
             "lfw_train_unmasked", "lfw_train_synthetic_masked", "lfw_train_hard_negatives"]
    if colour is not None:
        parts += [(colour["colour_syn"][un], 1), (colour["lfw_colour_syn"][~half], 1)]
        names += ["rmfd_unmasked_colour_masked", "lfw_train_colour_masked"]
    x = np.concatenate([p for p, _ in parts])
    y = np.concatenate([np.full(len(p), lab, np.float32) for p, lab in parts])
    counts = dict(zip(names, (len(p) for p, _ in parts)))
    return x, y, counts


def _train(x, y, seed: int, recipe: str):
    import torch

    from maskinv.masks.detect import train_classifier

    torch.set_num_threads(1)
    r = RECIPES[recipe]
    return train_classifier(x, y, epochs=EPOCHS, seed=seed, log=lambda s: print(s, flush=True), side=r["side"],
                            augment=r["augment"], bf16=r["bf16"])


def rdir(recipe: str) -> Path:
    """Where a recipe's out-of-fold probabilities, chosen cut and final network live (r3: the cache itself)."""
    d = CACHE if recipe == "r3" else CACHE / recipe
    d.mkdir(parents=True, exist_ok=True)
    return d


def recipe_data(model_name: str, detector: str, recipe: str, use=None):
    P = pools(model_name, detector, RECIPES[recipe].get("hard_kinds", HARD_KINDS))
    colour = colour_pools(P, model_name, detector) if RECIPES[recipe]["colour_masks"] else None
    return P, training_set(P, P["n_faces"] > 0 if use is None else use, colour)


def run_fold(model_name: str, detector: str, k: int, recipe: str = "r3") -> Path:
    from maskinv.masks.detect import MaskClassifier

    P = pools(model_name, detector)
    found = P["n_faces"] > 0
    fold = np.array([fold_of(p) for p in P["person"]])
    _, (x, y, counts) = recipe_data(model_name, detector, recipe, found & (fold != k))
    print(f"fold {k} ({recipe}): training on {len(y)} crops {counts}", flush=True)
    t0 = time.time()
    net = _train(x, y, seed=k, recipe=recipe)
    clf = MaskClassifier(net, 0.5, 0.5, input_side=RECIPES[recipe]["side"])
    te = fold == k
    p = np.full(int(te.sum()), np.nan, np.float32)
    p[found[te]] = clf.predict_proba(P["crops"][te & found])
    out = rdir(recipe) / f"oof_{model_name}_{detector}_fold{k}.npz"
    np.savez(out, path=P["path"][te], p=p, seconds=time.time() - t0)
    print(f"fold {k}: {time.time() - t0:.0f} s -> {out}", flush=True)
    return out


def out_of_fold_p(P: dict, model_name: str, detector: str, recipe: str) -> np.ndarray:
    """Each pool photo's out-of-fold probability (NaN where no fold wrote one)."""
    p = np.full(len(P["path"]), np.nan)
    pos = {q: i for i, q in enumerate(P["path"])}
    for k in range(N_FOLDS):
        z = np.load(rdir(recipe) / f"oof_{model_name}_{detector}_fold{k}.npz")
        for q, v in zip(z["path"], z["p"]):
            p[pos[str(q)]] = v
    return p


def choose(model_name: str, detector: str, recipe: str = "r3") -> dict:
    """masked_at from the out-of-fold probabilities of all dev photos (detection failures = errors)."""
    P = pools(model_name, detector)
    p = out_of_fold_p(P, model_name, detector, recipe)
    found = P["n_faces"] > 0
    if np.isnan(p[found]).any():
        raise SystemExit("missing out-of-fold probabilities: run every fold")
    m = P["masked"]
    pu, pm = p[found & ~m], p[found & m]
    n_all = len(p)

    def stats(t):
        fm = int((pu >= t).sum())
        ok = int((pm >= t).sum() + (pu < t).sum())
        return fm, ok / n_all

    cands = sorted(set(np.r_[pu, pm].astype(float).tolist()) | {0.5})  # exact values: a cut never splits a photo
    ok = [t for t in cands if t >= 0.5 and stats(t)[0] / len(pu) <= MAX_DEV_FALSE_MASKED]
    best = max(ok, key=lambda t: (stats(t)[1], -stats(t)[0], -t))  # accuracy, then fewer false "masked"
    below = [v for v in cands if v < best]
    masked_at = float((best + max(below)) / 2) if below and max(below) >= 0.5 else float(best)
    fm, acc = stats(masked_at)
    k_ok = round(acc * n_all)
    info = {"rule": f"cut with the best out-of-fold accuracy (detection failures counted as errors) among cuts "
                    f">= 0.5 with out-of-fold false 'masked' <= {MAX_DEV_FALSE_MASKED:.1%}; midway to the next "
                    "lower dev probability",
            "cv": f"{N_FOLDS} folds of rmfd_dev grouped by person (sha256('cv:'+name) mod {N_FOLDS})",
            "detector": detector, "photos": n_all, "detection_failures": int((~found).sum()),
            "real_masked": int(len(pm)), "real_unmasked": int(len(pu)),
            "accuracy_counting_detection_failures": acc, "accuracy_ci95": wilson(k_ok, n_all),
            "false_masked": fm / len(pu), "false_masked_count": fm, "false_masked_ci95": wilson(fm, len(pu)),
            "real_masked_detected": float((pm >= masked_at).mean()),
            "unsure_unmasked": int(((pu >= UNMASKED_BELOW) & (pu < masked_at)).sum()),
            "unsure_masked": int(((pm >= UNMASKED_BELOW) & (pm < masked_at)).sum()),
            "auc": float((pm[:, None] > pu[None, :]).mean() + 0.5 * (pm[:, None] == pu[None, :]).mean())}
    for t in (0.5, 0.6875):
        info[f"at_{t:g}"] = dict(zip(("false_masked_count", "accuracy"), stats(t)))
    info["recipe"] = recipe
    (rdir(recipe) / f"choose_{model_name}_{detector}.json").write_text(json.dumps({"masked_at": masked_at, **info}, indent=2))
    print(json.dumps({"masked_at": masked_at, **info}, indent=2))
    return {"masked_at": masked_at, **info}


def data_hashes(x: np.ndarray, y: np.ndarray) -> dict:
    """sha256 of the training arrays (crops then labels, as trained) and of the split files they came from."""
    from maskinv.utils.hashing import file_sha256

    h = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y, np.float32).tobytes())
    return {"training_set_sha256": h.hexdigest(), "training_set_shape": list(x.shape),
            "splits_sha256": {n: file_sha256(SPLITS / n) for n in ("rmfd_dev.txt", "lfw_train_people.txt")}}


def final(model_name: str, detector: str, recipe: str = "r3", compared: dict | None = None) -> Path:
    import torch

    from maskinv.masks.detect import DEFAULT_WEIGHTS, MaskClassifier, build_net

    P, (x, y, counts) = recipe_data(model_name, detector, recipe)
    r = RECIPES[recipe]
    net_file = rdir(recipe) / f"final_net_{model_name}_{detector}.pt"  # the trained network, kept until the cut is chosen
    t0 = time.time()
    if net_file.is_file():
        net = build_net()
        net.load_state_dict(torch.load(net_file, weights_only=True))
        net.eval()
        train_s = json.loads(net_file.with_suffix(".json").read_text())["train_seconds"]
    else:
        print(f"final: training on {len(y)} crops {counts}", flush=True)
        net = _train(x, y, seed=100, recipe=recipe)
        train_s = round(time.time() - t0, 1)
        torch.save(net.state_dict(), net_file)
        net_file.with_suffix(".json").write_text(json.dumps({"train_seconds": train_s}))
    cf = rdir(recipe) / f"choose_{model_name}_{detector}.json"
    if not cf.is_file():
        raise SystemExit(f"{cf}: no chosen cut yet; run every cv fold and choose, then final again (the network is kept)")
    ch = json.loads(cf.read_text())
    masked_at = float(ch.pop("masked_at"))
    clf = MaskClassifier(net, masked_at, min(masked_at, UNMASKED_BELOW), input_side=r["side"])
    clf.save(DEFAULT_WEIGHTS, {
        "data": data_hashes(x, y),
        "trained_on": {"rmfd_dev_people": int(len(set(P["person"]))), **counts,
                       "hard_negative_kinds": list(r.get("hard_kinds", HARD_KINDS)),
                       "splits": "benchmarks/splits/rmfd_dev.txt (all people); lfw_train_people.txt (<= 2 photos each)",
                       "crops": f"{detector} + ArcFace 112 crop through maskinv.serve.pipeline (RMFD); "
                                "InsightFace aligned112 (LFW)"},
        "recipe": {"name": recipe, **r, "epochs": EPOCHS, "hard_colours": list(HARD_COLOURS) if r["colour_masks"] else None},
        "epochs": EPOCHS, "seed": 100, "train_seconds": train_s, "params": int(sum(p.numel() for p in net.parameters())),
        "unmasked_below_rule": f"fixed at {UNMASKED_BELOW} (a design choice, not fitted); [{UNMASKED_BELOW}, masked_at) "
                               "is 'unsure' and gets the stricter threshold",
        "validation": ch,
        "made_by": f"python -m benchmarks.train_mask_classifier cv --fold 0..{N_FOLDS - 1} && choose && final "
                   f"(--model {model_name} --detector {detector} --recipe {recipe})",
        "round": 4, **({"recipe_choice": compared} if compared else {})})
    print(f"wrote {DEFAULT_WEIGHTS} ({DEFAULT_WEIGHTS.stat().st_size} bytes), masked_at {masked_at:.4f}")
    return DEFAULT_WEIGHTS


def compare(model_name: str, detector: str) -> dict:
    """Every recipe's cross-validated result (its :func:`choose` output), for the sidecar."""
    keys = ("masked_at", "accuracy_counting_detection_failures", "accuracy_ci95", "false_masked_count",
            "real_masked_detected", "auc")
    out = {"rule": "the recipe with the best out-of-fold accuracy at its chosen cut (same rule for every recipe), "
                   "fewer false 'masked' on a tie; the test split is not used"}
    for name in RECIPES:
        f = rdir(name) / f"choose_{model_name}_{detector}.json"
        if f.is_file():
            ch = json.loads(f.read_text())
            out[name] = {k: ch[k] for k in keys}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("pools", "cv", "choose", "final"))
    ap.add_argument("--model", default="sface", help="the cache of benchmarks.serve_rmfd prep (crops are the same for any model)")
    ap.add_argument("--detector", default=DEFAULT_DETECTOR)
    ap.add_argument("--fold", type=int, default=None)
    ap.add_argument("--recipe", choices=tuple(RECIPES), default="r4c", help="default: the shipped one")
    a = ap.parse_args(argv)
    if a.step == "pools":
        P = pools(a.model, a.detector)
        print({k: v.shape for k, v in P.items()})
    elif a.step == "cv":
        for k in ([a.fold] if a.fold is not None else range(N_FOLDS)):
            run_fold(a.model, a.detector, k, a.recipe)
    elif a.step == "choose":
        choose(a.model, a.detector, a.recipe)
    else:
        final(a.model, a.detector, a.recipe, compare(a.model, a.detector))


if __name__ == "__main__":
    main(sys.argv[1:])

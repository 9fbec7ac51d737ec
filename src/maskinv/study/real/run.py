"""``maskinv study-real``: MaskInv on a real recogniser (SFace), trained on real LFW photos, tested on
real masks (RMFD probe/reference) and on LFW folds 6-10 (U-U / M-U / M-M). See :mod:`maskinv.study.real`."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .core import StudyContext, open_out_dir
from maskinv.masks.protocols import PROBE_REF, UU
from maskinv.utils.machine import machine_line

from .data import renderer_info
from .settings import RealSettings
from .tails import RowSpec

__all__ = ["run_real_study", "row_specs", "ROW_TITLES", "PRIMARY"]

ROW_TITLES = {"sface": "SFace (teacher, frozen)", "aug": "ElasticFace-Arc-Aug (λ = 0)", "lg": "MaskInv-LG",
              "hg": "MaskInv-HG", "adapt": "MaskInv-adapt (label-free)"}
#: The primary model, declared before any result.
PRIMARY = "lg"


def row_specs(s: RealSettings) -> list[RowSpec]:
    """The trained rows in training order (HG continues LG)."""
    common = dict(batch_size=s.batch_size, mask_prob=s.mask_prob, seed=s.seed, freeze_bn=s.freeze_bn)
    rows = [RowSpec("aug", 0.0, True, s.lr_aug, s.epochs, **common),
            RowSpec("lg", s.lam_lg, True, s.lr_lg, s.epochs, **common)]
    if s.with_hg:
        rows.append(RowSpec("hg", s.lam_hg, True, s.lr_lg, s.hg_epochs, init="lg", **common))
    if s.with_adapt:
        rows.append(RowSpec("adapt", s.lam_adapt, False, s.lr_adapt, s.epochs, unlabelled=s.adapt_unlabelled, **common))
    return rows


def _train_samples(specs: list[RowSpec], n_labelled: int, n_all: int) -> dict[str, int]:
    out = {}
    for r in specs:
        n = n_all if (r.unlabelled or not r.head) else n_labelled
        out[r.name] = int(np.ceil(r.epochs * n / min(r.batch_size, n)) * min(r.batch_size, n))
    return out


def run_real_study(out_dir: str | Path, lfw_dir: str | Path, rmfd_dir: str | Path, *,
                   settings: RealSettings | None = None, splits_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, model: Any = None, selected: dict | None = None,
                   command: str | None = None, quiet: bool = False,
                   reuse_dirs: tuple[str | Path, ...] = (), against: str | Path | None = None) -> dict[str, Any]:
    """Train the rows, score every row on the same aligned sets, write results.json + report.md + plots.

    ``against``: a finished run that differs only in the mask renderer; its rows are scored on this
    run's RMFD test and LFW clean pairs and compared row by row (:mod:`.against`)."""
    from maskinv.utils.io import atomic_write_json, atomic_write_text

    from . import report as R
    from .scoring import PROTOCOLS, compare, lfw_metrics, lfw_scores, rmfd_metrics, rmfd_scores

    against_doc_in = None
    if against is not None:  # a missing or mismatched run fails before anything is written
        from .against import read_against

        against_doc_in = read_against(against, (settings or RealSettings()).validate().to_dict())
    s, out, log, cache = open_out_dir(out_dir, settings, cache_dir, log_name="study.log", quiet=quiet)
    t_start = time.perf_counter()
    ctx = StudyContext(Path(lfw_dir), Path(rmfd_dir), s, splits_dir=splits_dir, cache_dir=cache, model=model, log=log)
    specs = row_specs(s)
    other = None
    if against is not None:  # weights and split files: checked before any training
        from .against import load_against

        other = (against_doc_in, load_against(against, against_doc_in, ctx, [sp.name for sp in specs]))
        log(f"--against {against}: rows {', '.join(other[1])} (renderer {other[0]['settings'].get('renderer')})")

    # cost arithmetic before any work (photo counts from the split lists)
    from .data import lfw_person_photos, rmfd_photos
    from maskinv.data.pairs import read_pairs

    n_train = len(lfw_person_photos(ctx.lfw_dir / "images", ctx.splits.train_people))
    n_rmfd = len(rmfd_photos(ctx.rmfd_dir, ctx.splits.rmfd_test)[0])
    n_test = len(read_pairs(ctx.splits.test_pairs, ctx.lfw_dir / "aligned112").images)
    counts = {"align:lfw_train": n_train, "align:rmfd_test": n_rmfd, "lfw_train (clean + 1 masked draw)": 2 * n_train,
              "lfw_test (clean + masked)": 2 * n_test, "rmfd_test (clean)": n_rmfd}
    cost = ctx.cost_lines(counts, _train_samples(specs, n_train, n_train))
    log("cost arithmetic (estimate):")
    for ln in cost:
        log("  " + ln)

    # data and features: every row uses these same aligned sets and features
    train, labels, classes = ctx.train_photos()
    data = ctx.train_set(train, labels)
    # rows (trained before the test features are made: nothing of the test sets reaches training)
    models_dir = out / "models"
    models: dict[str, Any] = {"sface": ctx.model}
    train_recs: dict[str, Any] = {}
    for spec in specs:
        init = models.get(spec.init) if spec.init != "sface" else None
        head_state = train_recs[spec.init].get("head_state") if spec.init in train_recs else None
        init_key = train_recs[spec.init]["weights_sha256"] if spec.init in train_recs else None
        model, rec = ctx.train_row(spec, data, models_dir, init=init, head_state=head_state, init_key=init_key,
                                   reuse_dirs=tuple(Path(d) for d in reuse_dirs))
        models[spec.name] = model
        train_recs[spec.name] = rec
    del data
    t_feat = time.perf_counter()
    rset, is_probe = ctx.rmfd(ctx.splits.rmfd_test, "rmfd_test")
    keep = np.flatnonzero(rset.valid)
    rset, is_probe = rset.subset(keep), is_probe[keep]
    rmfd_keys = ctx.feature_keys(rset, False, "rmfd_test")
    pl, test = ctx.lfw_pairs(ctx.splits.test_pairs, "lfw_test")
    test_clean, test_masked = ctx.feature_keys(test, False, "lfw_test"), ctx.feature_keys(test, True, "lfw_test")
    features_s = time.perf_counter() - t_feat

    # scoring: the same crops, masks and comparisons for every row
    folds = 5
    issame = np.asarray(pl.issame, bool)
    lfw_groups = np.asarray(pl.identities, dtype=object)[pl.first].astype(str)
    results: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    for name, model in models.items():
        tail = ctx.row_tail(model)
        t0 = time.perf_counter()
        ec, em = ctx.embed_keys(tail, test_clean), ctx.embed_keys(tail, test_masked)
        er = ctx.embed_keys(tail, rmfd_keys)
        ls = lfw_scores(ec, em, pl.first, pl.second)
        rs = rmfd_scores(er, rset.identities, is_probe)
        scores[name] = {"lfw": ls, "rmfd": rs["scores"]}
        results[name] = {"title": ROW_TITLES[name],
                         "lfw": {p: lfw_metrics(ls[p], issame, folds) for p in PROTOCOLS},
                         "rmfd": rmfd_metrics(rs["scores"], rs["genuine"]),
                         "embed_seconds": time.perf_counter() - t0}
        if name in train_recs:
            r = {k: v for k, v in train_recs[name].items() if k not in ("head_state",)}
            results[name]["training"] = r
        log(R.row_line(name, results[name]))
        rmfd_gen, rmfd_groups = rs["genuine"], np.asarray(rs["identity_names"], dtype=object)[rs["probe_identity"]]

    # identity-clustered paired intervals, every trained row against SFace (and LG against Aug)
    # FNMR at FMR f is bootstrapped only with >= 2/f impostor comparisons (a resample must keep >= 1/f)
    n_imp = int((~rmfd_gen).sum())
    rmfd_boot = ("eer",) + tuple(m for m, f in (("fmr100", 1e-2), ("fmr1000", 1e-3)) if n_imp * f >= 2)
    memo_l: dict = {}
    memo_r: dict = {}
    comps = []
    pairs = [("sface", n) for n in models if n != "sface"] + ([("aug", "lg")] if "aug" in models else [])
    for a, b in pairs:
        for p in PROTOCOLS:
            r = compare(scores[a]["lfw"][p], scores[b]["lfw"][p], issame, lfw_groups, ("accuracy", "eer"),
                        n_boot=s.n_boot, seed=s.seed, folds=folds, memo=memo_l.setdefault(p, {}))
            comps.append({"a": a, "b": b, "benchmark": "lfw_test", "protocol": p, **_cmp(r)})
        r = compare(scores[a]["rmfd"], scores[b]["rmfd"], rmfd_gen, rmfd_groups, rmfd_boot,
                    n_boot=s.n_boot, seed=s.seed, folds=10, memo=memo_r)
        comps.append({"a": a, "b": b, "benchmark": "rmfd_test", "protocol": PROBE_REF, **_cmp(r)})

    against_doc = None
    if other is not None:
        from .against import compare_against

        against_doc = {"run": str(against), "renderer": other[0].get("renderer"),
                       "settings": other[0]["settings"], "command": other[0].get("command"),
                       "comparisons": compare_against(
                           ctx, other[1], scores, rmfd_keys=rmfd_keys, rmfd_set=rset, is_probe=is_probe,
                           rmfd_genuine=rmfd_gen, rmfd_groups=rmfd_groups, lfw_clean_keys=test_clean, pairs=pl,
                           issame=issame, lfw_groups=lfw_groups, rmfd_boot=rmfd_boot, n_boot=s.n_boot, seed=s.seed,
                           memo_rmfd=memo_r, memo_lfw_uu=memo_l.setdefault(UU, {}))}

    # plots
    plots = R.plots(out, scores, issame, rmfd_gen)
    total_s = time.perf_counter() - t_start
    doc = {
        "study": "MaskInv on a real recogniser (SFace)", "primary": PRIMARY, "command": command,
        "settings": s.to_dict(), "selected": selected, "lambda": {"lg": s.lam_lg, "hg": s.lam_hg, "adapt": s.lam_adapt},
        "lambda_per_sample": {"lg": s.lam_lg / ctx.embedding_size, "hg": s.lam_hg / ctx.embedding_size,
                              "adapt": s.lam_adapt / ctx.embedding_size},
        "embedding_size": ctx.embedding_size, "renderer": renderer_info(s.renderer),
        "recogniser": {"class": type(ctx.model).__name__, "weights_fingerprint": ctx.weights_fingerprint,
                       "input_convention": getattr(ctx.model, "input_convention", None),
                       "meta": getattr(ctx.model, "maskinv_meta", None),
                       "trunk": f"stem + blocks 1..{s.split_k} (frozen, features cached fp16)",
                       "trained": f"blocks {s.split_k + 1}..13 + head"},
        "splits": {"dir": str(ctx.splits.root), "sha256": ctx.splits.sha256},
        "data": {"train_photos": int(train.crops.shape[0]), "train_labelled": int((labels >= 0).sum()),
                 "train_classes": len(classes), "lfw_test_pairs": int(issame.size),
                 "lfw_test_images": len(test.keys), "rmfd_test_images": len(rset.keys),
                 "rmfd_test_probes": int(is_probe.sum()), "rmfd_test_references": int((~is_probe).sum()),
                 "rmfd_comparisons": int(rmfd_gen.size), "rmfd_genuine": int(rmfd_gen.sum())},
        "detection": ctx.detection, "results": results, "comparisons": comps,
        "rmfd_bootstrap_metrics": list(rmfd_boot), "against": against_doc,
        "goals": R.goals(results, comps), "plots": plots,
        "cost": {"estimate": cost, "measured_seconds": {**ctx.timings, "test_data_and_features": features_s,
                                                        "total": total_s},
                 "features_computed": ctx.features.computed, "features_reused": ctx.features.reused,
                 "feature_ms_per_image": (1000 * ctx.features.seconds / ctx.features.computed
                                          if ctx.features.computed else None)},
        "environment": {"torch": ctx.torch_version, "threads": ctx.threads, "python": platform.python_version(),
                        "machine": machine_line(), "processor": platform.processor() or platform.machine()},
    }
    atomic_write_json(out / "results.json", doc)
    atomic_write_text(out / "report.md", R.report_markdown(doc))
    log(f"wrote {out / 'results.json'} and {out / 'report.md'} ({total_s / 60:.1f} min)")
    return doc


def _cmp(r: dict[str, Any]) -> dict[str, Any]:
    return {"difference": "b - a (points)", "resampling": r["resampling"], "n_clusters": r["n_clusters"],
            "n_boot": r["n_boot"], "metrics": r["metrics"]}

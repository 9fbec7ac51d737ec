"""``maskinv study-real --select``: choose lr (Aug, LG, adapt) and λ (LG; HG = hg_factor x λ_LG) on
validation only: LFW folds 1-2 (``lfw_val_pairs.txt``, ``aligned112``, M-U and U-U), optionally
``rmfd_dev``. Never LFW folds 6-10 or rmfd_test.

Rule, per family: the candidate with the highest validation M-U accuracy among those whose U-U
accuracy is at most ``select_uu_tolerance`` points below SFace's (tie: lower M-U EER); if none
qualifies, the highest U-U accuracy. LG first picks lr at the default λ, then λ over
``{lam_lg} ∪ select_lambdas`` at that lr.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from maskinv.masks.protocols import MU, UU
from maskinv.utils.machine import machine_line

from .core import StudyContext, open_out_dir
from .settings import RealSettings, parse_list
from .tails import RowSpec

__all__ = ["run_real_select", "choose"]


VAL_FOLDS = 10


def _interleave(issame: np.ndarray) -> np.ndarray:
    """Pair order alternating genuine and impostor pairs (k-th genuine, k-th impostor, ...), the
    surplus of either kind at the end."""
    g, i = np.flatnonzero(issame), np.flatnonzero(~issame)
    n = min(g.size, i.size)
    return np.concatenate([np.column_stack([g[:n], i[:n]]).ravel(), g[n:], i[n:]]).astype(np.int64)


def choose(cands: list[dict[str, Any]], sface_uu: float, tol_points: float) -> dict[str, Any]:
    ok = [c for c in cands if 100 * (sface_uu - c["uu_acc"]) <= tol_points + 1e-9]
    if ok:
        return sorted(ok, key=lambda c: (-c["mu_acc"], c["mu_eer"]))[0]
    return sorted(cands, key=lambda c: (-c["uu_acc"], c["mu_eer"]))[0]


def run_real_select(out_dir: str | Path, lfw_dir: str | Path, rmfd_dir: str | Path | None, *,
                    settings: RealSettings | None = None, splits_dir: str | Path | None = None,
                    cache_dir: str | Path | None = None, model: Any = None, command: str | None = None,
                    quiet: bool = False) -> dict[str, Any]:
    from maskinv.utils.io import atomic_write_json, atomic_write_text

    from .scoring import lfw_metrics, lfw_scores, rmfd_metrics, rmfd_scores

    s, out, log, cache = open_out_dir(out_dir, settings, cache_dir, log_name="select.log", quiet=quiet)
    t_start = time.perf_counter()
    use_rmfd = s.select_rmfd_dev and rmfd_dir is not None
    ctx = StudyContext(Path(lfw_dir), Path(rmfd_dir) if use_rmfd else None, s, splits_dir=splits_dir,
                       cache_dir=cache, model=model, log=log)
    lrs, adapt_lrs = parse_list(s.select_lrs, "select_lrs"), parse_list(s.select_adapt_lrs, "select_adapt_lrs")
    lams = parse_list(s.select_lambdas, "select_lambdas") if str(s.select_lambdas).strip() else []
    n_lab_cands = 2 * len(lrs) + len([x for x in lams if x != s.lam_lg])
    n_adapt = len(adapt_lrs) if (s.with_adapt and s.select_adapt) else 0
    budget = (f"{n_lab_cands} labelled candidates + {n_adapt} adapt candidates, "
              f"{s.select_epochs:g} epochs each")
    log(f"select budget: {budget}")

    train, labels, classes = ctx.train_photos()
    data = ctx.train_set(train, labels)
    n_lab, n_all = int((labels >= 0).sum()), int(labels.size)
    est = n_lab_cands * s.select_epochs * n_lab + n_adapt * s.select_epochs * n_all
    log(f"select training estimate: {int(est)} samples x 15 ms = {est * 15e-3 / 60:.1f} min (plus features)")
    pl, val = ctx.lfw_pairs(ctx.splits.val_pairs, "lfw_val")
    n_pairs = 600 * s.select_val_folds  # LFW View 2 folds: 600 pairs each, in file order
    if len(pl) < n_pairs:
        n_pairs = len(pl)
    first, second = pl.first[:n_pairs], pl.second[:n_pairs]
    used = np.unique(np.concatenate([first, second]))
    val, remap = val.subset(used), {int(i): k for k, i in enumerate(used)}
    first, second = np.array([remap[int(i)] for i in first]), np.array([remap[int(i)] for i in second])
    vc = ctx.feature_keys(val, False, "lfw_val")
    probes = ctx.masked_subset_keys(val, second, "lfw_val_probes")  # M-U masks the second image only
    vm = [probes.get(i, vc[i]) for i in range(len(vc))]  # non-probe entries are never read as masked
    issame = np.asarray(pl.issame, bool)[:n_pairs]
    # LFW folds list 300 genuine then 300 impostor pairs: interleave them so that the contiguous
    # folds of the accuracy protocol each hold both kinds
    order = _interleave(issame)
    first, second, issame = first[order], second[order], issame[order]
    n_folds = max(1, min(VAL_FOLDS, issame.size // 2))  # 10 on LFW's 600 pairs (fewer on a tiny list)
    rkeys = None
    if use_rmfd:
        rset, is_probe = ctx.rmfd(ctx.splits.rmfd_dev, "rmfd_dev")
        keep = np.flatnonzero(rset.valid)
        rset, is_probe = rset.subset(keep), is_probe[keep]
        rkeys = ctx.feature_keys(rset, False, "rmfd_dev")

    def evaluate(model: Any) -> dict[str, Any]:
        tail = ctx.row_tail(model)
        sc = lfw_scores(ctx.embed_keys(tail, vc), ctx.embed_keys(tail, vm), first, second, (UU, MU))
        mu, uu = lfw_metrics(sc[MU], issame, n_folds), lfw_metrics(sc[UU], issame, n_folds)
        r = {"uu_acc": uu["accuracy_mean"], "mu_acc": mu["accuracy_mean"], "mu_eer": mu["eer"], "uu_eer": uu["eer"]}
        if rkeys is not None:
            rs = rmfd_scores(ctx.embed_keys(tail, rkeys), rset.identities, is_probe)
            r["rmfd_dev_eer"] = rmfd_metrics(rs["scores"], rs["genuine"])["eer"]
        return r

    base = evaluate(ctx.model)
    log(f"SFace on validation: U-U {100 * base['uu_acc']:.2f} M-U {100 * base['mu_acc']:.2f}")
    cands: list[dict[str, Any]] = []
    models_dir = out / "candidates"

    def run(family: str, lam: float, lr: float, head: bool, unlabelled: bool = False) -> dict[str, Any]:
        name = f"{family}_lam{lam:g}_lr{lr:g}"
        spec = RowSpec(name, lam, head, lr, s.select_epochs, batch_size=s.batch_size, mask_prob=s.mask_prob,
                       seed=s.seed, freeze_bn=s.freeze_bn, unlabelled=unlabelled)
        model, rec = ctx.train_row(spec, data, models_dir)
        c = {"family": family, "name": name, "lam": lam, "lambda_per_sample": lam / ctx.embedding_size, "lr": lr,
             "seconds": rec.get("seconds"), **evaluate(model)}
        log(f"candidate {name}: val U-U {100 * c['uu_acc']:.2f} M-U {100 * c['mu_acc']:.2f} (EER {100 * c['mu_eer']:.2f})")
        cands.append(c)
        return c

    tol = s.select_uu_tolerance
    aug = choose([run("aug", 0.0, lr, True) for lr in lrs], base["uu_acc"], tol)
    lg_lr = choose([run("lg", s.lam_lg, lr, True) for lr in lrs], base["uu_acc"], tol)
    lg = choose([c for c in cands if c["family"] == "lg"] + [run("lg", lam, lg_lr["lr"], True)
                                                              for lam in lams if lam != s.lam_lg], base["uu_acc"], tol)
    chosen = {"lr_aug": aug["lr"], "lr_lg": lg["lr"], "lam_lg": lg["lam"]}
    if s.with_adapt and s.select_adapt:
        ad = choose([run("adapt", s.lam_adapt, lr, False, s.adapt_unlabelled) for lr in adapt_lrs], base["uu_acc"], tol)
        chosen["lr_adapt"] = ad["lr"]
    total = time.perf_counter() - t_start
    doc = {"mode": "select", "command": command,
           "validation": f"LFW fold(s) 1-{s.select_val_folds} ({n_pairs} pairs of lfw_val_pairs.txt, aligned112), "
           f"M-U and U-U, {n_folds}-fold accuracy over genuine/impostor-interleaved pairs" + (" + rmfd_dev (reported, not used by the rule)" if use_rmfd else ""),
           "rule": f"highest val M-U accuracy with U-U >= SFace's - {tol:g} points (tie: lower M-U EER)",
           "budget": budget, "settings": s.to_dict(), "sface": base, "candidates": cands, "chosen": chosen,
           "hg": f"λ_HG = {s.hg_factor:g} x λ_LG = {s.hg_factor * chosen['lam_lg']:g}",
           "detection": ctx.detection, "seconds": total,
           "environment": {"torch": ctx.torch_version, "threads": ctx.threads, "machine": machine_line()}}
    atomic_write_json(out / "select.json", doc)
    lines = ["# study-real --select (validation only)\n", f"Command: `{command}`  ", f"Budget: {budget}; took {total / 60:.1f} min "
             f"({doc['environment']['machine']}, {ctx.threads} thread(s)).  ", f"Rule: {doc['rule']}.\n",
             "| candidate | λ | λ/D | lr | val U-U acc | val M-U acc | val M-U EER |", "|---|---|---|---|---|---|---|",
             f"| SFace | - | - | - | {100 * base['uu_acc']:.2f} | {100 * base['mu_acc']:.2f} | {100 * base['mu_eer']:.2f} |"]
    for c in cands:
        lines.append(f"| {c['name']} | {c['lam']:g} | {c['lambda_per_sample']:.4g} | {c['lr']:g} | {100 * c['uu_acc']:.2f} | "
                     f"{100 * c['mu_acc']:.2f} | {100 * c['mu_eer']:.2f} |")
    lines.append(f"\nChosen: {chosen}; {doc['hg']}.")
    atomic_write_text(out / "select.md", "\n".join(lines) + "\n")
    log(f"chosen {chosen}; wrote {out / 'select.json'}")
    return doc


def selected_overrides(doc: dict[str, Any]) -> list[str]:
    """``--selected select.json`` -> ``key=value`` overrides for the study."""
    from maskinv.errors import DataFormatError

    chosen = doc.get("chosen") if isinstance(doc, dict) else None
    if not isinstance(chosen, dict) or not chosen:
        raise DataFormatError("select.json: no 'chosen' settings")
    known = {f.name for f in dataclasses.fields(RealSettings)}
    bad = sorted(set(chosen) - known)
    if bad:
        raise DataFormatError(f"select.json: unknown chosen setting {bad[0]!r}")
    return [f"{k}={v}" for k, v in chosen.items()]

"""results.json -> report.md of the real study, the goal check and the ROC/DET plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maskinv.masks.protocols import MM, MU, PROBE_REF, UU

__all__ = ["row_line", "goals", "plots", "report_markdown"]

_PT = lambda x: "n/a" if x is None else f"{100 * x:.2f}"  # noqa: E731


def _tar(m: dict[str, Any], far: str) -> float | None:
    return (m.get("tar_at_far") or {}).get(far)


def row_line(name: str, r: dict[str, Any]) -> str:
    l, q = r["lfw"], r["rmfd"]
    return (f"{name}: RMFD EER {_PT(q['eer'])} %, TAR@FAR1e-3 {_PT(_tar(q, '0.001'))} %; LFW acc U-U "
            f"{_PT(l[UU]['accuracy_mean'])} M-U {_PT(l[MU]['accuracy_mean'])} M-M {_PT(l[MM]['accuracy_mean'])}")


def _find(comps: list[dict], a: str, b: str, bench: str, protocol: str) -> dict | None:
    for c in comps:
        if (c["a"], c["b"], c["benchmark"], c["protocol"]) == (a, b, bench, protocol):
            return c
    return None


def goals(results: dict[str, Any], comps: list[dict], primary: str = "lg") -> dict[str, Any]:
    """The pre-declared goals for the primary model against SFace, each with its verdict."""
    if primary not in results or "sface" not in results:
        return {}
    out: dict[str, Any] = {}
    r = _find(comps, "sface", primary, "rmfd_test", PROBE_REF)
    e_s, e_p = results["sface"]["rmfd"]["eer"], results[primary]["rmfd"]["eer"]
    if r is not None:
        eer = r["metrics"]["eer"]
        out["rmfd_eer"] = {"goal": "EER <= 0.75 x SFace's, interval of the difference below 0",
                           "sface": 100 * e_s, "model": 100 * e_p, "ratio": e_p / e_s if e_s else None,
                           "diff": eer["diff"], "ci95": eer["ci95"],
                           "met": bool(e_p <= 0.75 * e_s and eer["ci95"][1] < 0)}
        f = r["metrics"].get("fmr1000")
        out["rmfd_tar_1e-3"] = {"goal": "TAR at FAR 1e-3 above SFace's", "diff": None, "ci95": None,
                                "met": False, "verdict": "undefined (fewer than 2,000 impostor comparisons)"}
    if r is not None and f is not None:
        out["rmfd_tar_1e-3"] = {"goal": "TAR at FAR 1e-3 above SFace's, interval of the difference above 0",
                                "sface": 100 - f["a"], "model": 100 - f["b"], "diff": -f["diff"],
                                "ci95": [-f["ci95"][1], -f["ci95"][0]], "met": bool(f["ci95"][1] < 0)}
    for p, key in ((UU, "lfw_uu"), (MU, "lfw_mu"), (MM, "lfw_mm")):
        c = _find(comps, "sface", primary, "lfw_test", p)
        if c is None:
            continue
        a = c["metrics"]["accuracy"]
        lo, hi = a["ci95"]
        if p == UU:
            verdict = "met" if lo >= -0.5 else ("not met" if hi < -0.5 else f"undecided (interval width {hi - lo:.2f} points)")
            out[key] = {"goal": "LFW U-U accuracy: lower bound of the difference >= -0.5 points", "diff": a["diff"],
                        "ci95": a["ci95"], "verdict": verdict, "met": verdict == "met"}
        else:
            out[key] = {"goal": f"LFW {p.upper()[0]}-{p.upper()[1]} accuracy above SFace's", "diff": a["diff"],
                        "ci95": a["ci95"], "met": bool(lo > 0),
                        "verdict": "above (interval excludes 0)" if lo > 0 else
                        ("below (interval excludes 0)" if hi < 0 else "not distinguishable (interval holds 0)")}
    return out


def plots(out: Path, scores: dict[str, Any], issame: np.ndarray, rmfd_genuine: np.ndarray) -> dict[str, str]:
    """ROC/DET curves: RMFD probe/reference and LFW M-U, one line per row."""
    from maskinv.evaluate.plots import plot_roc_det

    d = out / "plots"
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    p = plot_roc_det({n: (v["rmfd"], rmfd_genuine) for n, v in scores.items()}, d / "rmfd_test_roc_det.png",
                     title="RMFD test: masked probes vs unmasked references")
    paths["rmfd_test"] = str(p.relative_to(out))
    for proto in (MU, UU):
        p = plot_roc_det({n: (v["lfw"][proto], issame) for n, v in scores.items()}, d / f"lfw_test_{proto}_roc_det.png",
                         title=f"LFW folds 6-10, {proto.upper()[0]}-{proto.upper()[1]}")
        paths[f"lfw_test_{proto}"] = str(p.relative_to(out))
    return paths


def _ci(m: dict[str, Any] | None, neg: bool = False) -> str:
    if m is None:
        return "n/a (too few impostor comparisons)"
    d, (lo, hi) = m["diff"], m["ci95"]
    if neg:
        d, lo, hi = -d, -hi, -lo
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def report_markdown(doc: dict[str, Any]) -> str:
    res, comps, s = doc["results"], doc["comparisons"], doc["settings"]
    L: list[str] = []
    L.append("# MaskInv on a real recogniser (SFace)\n")
    L.append(f"Command: `{doc.get('command') or 'maskinv study-real ...'}`  ")
    env = doc["environment"]
    L.append(f"Machine: {env.get('machine', 'not recorded')}, torch {env['torch']}, {env['threads']} thread(s); "
             f"total {doc['cost']['measured_seconds']['total'] / 60:.1f} min.  ")
    L.append(f"Primary model (declared before the run): **{doc['primary'].upper()}**. Renderer: `{doc['renderer']['name']}` "
             f"({doc['renderer']['function']}, kind {doc['renderer']['kind']}, from the crop's five aligned points).  ")
    conv = doc["recogniser"].get("input_convention") or {}
    L.append(f"Recogniser: {doc['recogniser']['class']} (weights sha256 `{doc['recogniser']['weights_fingerprint'][:16]}…`, "
             f"fed {conv.get('channel_order', '?')} inside the module).  ")
    L.append(f"Trunk: {doc['recogniser']['trunk']}; trained: {doc['recogniser']['trained']}; flip off; "
             f"BN statistics frozen: {s['freeze_bn']}.\n")
    lam, lps = doc["lambda"], doc["lambda_per_sample"]
    L.append(f"λ (maskinv scale, MSE over batch x D, D = {doc['embedding_size']}): LG {lam['lg']:g} (λ/D {lps['lg']:.4g}), "
             f"HG {lam['hg']:g} (λ/D {lps['hg']:.4g}), adapt {lam['adapt']:g} (λ/D {lps['adapt']:.4g}). "
             f"lr Aug {s['lr_aug']:g}, LG/HG {s['lr_lg']:g}, adapt {s['lr_adapt']:g}; epochs {s['epochs']:g} "
             f"(HG {s['hg_epochs']:g} more from LG); batch {s['batch_size']}; mask probability {s['mask_prob']:g}; "
             f"seed {s['seed']}.")
    sel = doc.get("selected")
    L.append(f"Settings chosen by `--select` on validation only: {sel.get('chosen') if sel else 'none (defaults)'}.\n")

    L.append("## Results\n")
    L.append("RMFD test: masked probes vs unmasked references of the same people, all comparisons. "
             f"LFW: `lfw_test_pairs.txt` (folds 6-10 of View 2, {doc['data']['lfw_test_pairs']} pairs) on `aligned112`, "
             f"5-fold accuracy (%), each image with one fixed renderer-{doc['renderer']['name']} mask (M-U: second image masked, M-M: both).\n")
    L.append("| model | RMFD EER % | RMFD TAR@FAR1e-3 % | RMFD FNMR@FMR1e-2 % | RMFD FNMR@FMR 1:2000 % | LFW U-U acc | LFW M-U acc | LFW M-M acc | LFW M-U EER % |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for n, r in res.items():
        q, lf = r["rmfd"], r["lfw"]
        t2000 = _tar(q, "0.0005")
        L.append(f"| {r['title']} | {_PT(q['eer'])} | {_PT(_tar(q, '0.001'))} | {_PT(q.get('fmr100'))} | "
                 f"{_PT(None if t2000 is None else 1 - t2000)} | {_PT(lf[UU]['accuracy_mean'])} | "
                 f"{_PT(lf[MU]['accuracy_mean'])} | {_PT(lf[MM]['accuracy_mean'])} | {_PT(lf[MU]['eer'])} |")
    L.append("")
    L.append("## Differences against SFace (points, 95 % paired bootstrap, identity clusters resampled)\n")
    L.append("RMFD: clusters = probe subjects; LFW: clusters = the person of each pair's first image. "
             "TAR difference = minus the FNMR@FMR1e-3 difference.\n")
    L.append("| model − SFace | RMFD EER | RMFD TAR@1e-3 | LFW U-U acc | LFW M-U acc | LFW M-M acc |")
    L.append("|---|---|---|---|---|---|")
    others = [c["b"] for c in comps if c["a"] == "sface" and c["benchmark"] == "rmfd_test"]
    for b in others:
        r = _find(comps, "sface", b, "rmfd_test", PROBE_REF)
        cells = [_ci(r["metrics"]["eer"]), _ci(r["metrics"].get("fmr1000"), neg=True)]
        for p in (UU, MU, MM):
            cells.append(_ci(_find(comps, "sface", b, "lfw_test", p)["metrics"]["accuracy"]))
        L.append(f"| {res[b]['title']} | " + " | ".join(cells) + " |")
    r = _find(comps, "aug", "lg", "rmfd_test", PROBE_REF)
    if r is not None:
        cells = [_ci(r["metrics"]["eer"]), _ci(r["metrics"].get("fmr1000"), neg=True)]
        cells += [_ci(_find(comps, "aug", "lg", "lfw_test", p)["metrics"]["accuracy"]) for p in (UU, MU, MM)]
        L.append("| (LG − Aug) | " + " | ".join(cells) + " |")
    n_cl = {c["benchmark"]: c["n_clusters"] for c in comps}
    L.append(f"\nClusters: RMFD {n_cl.get('rmfd_test')}, LFW {n_cl.get('lfw_test')}; {s['n_boot']} replicates.\n")

    if doc.get("against"):
        L += against_section(doc["against"], res, doc["renderer"]["name"])
    L.append("## Goals (primary model MaskInv-LG against SFace)\n")
    for k, g in doc["goals"].items():
        verdict = g.get("verdict") or ("met" if g["met"] else "not met")
        extra = f" (LG {g['model']:.2f} vs SFace {g['sface']:.2f})" if "model" in g else ""
        num = "n/a" if g["diff"] is None else f"{g['diff']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]"
        L.append(f"- {g['goal']}: {num}{extra} — **{verdict}**")
    L.append("")
    L.append("## Data, detection and the same aligned set for every model\n")
    d = doc["data"]
    unl = s.get("with_adapt") and s.get("adapt_unlabelled")
    L.append(f"Training: {d['train_photos']} detected LFW photos of the training people ({d['train_labelled']} of "
             f"{d['train_classes']} people with >= 2 photos, labelled, train every row; the one-photo people's "
             f"{'photos are used by MaskInv-adapt only' if unl else 'photos are not used (adapt_unlabelled off)'}). "
             f"LFW test: {d['lfw_test_pairs']} pairs, {d['lfw_test_images']} crops. RMFD test: {d['rmfd_test_images']} "
             f"detected photos ({d['rmfd_test_probes']} masked probes, {d['rmfd_test_references']} references), "
             f"{d['rmfd_comparisons']} comparisons ({d['rmfd_genuine']} genuine).\n")
    L.append("| subset | detector | detected / images | rate |")
    L.append("|---|---|---|---|")
    for k, v in doc["detection"].items():
        L.append(f"| {k} | {v['detector'] or 'none (aligned112 as given)'} | {v['detected']} / {v['images']} | "
                 f"{_PT(v['rate'])} % |")
    L.append("\nUndetected photos are left out for every model alike.\n")
    L.append("## Cost\n")
    L.append("Estimate printed at start:\n")
    L += [f"    {x}" for x in doc["cost"]["estimate"]]
    ms = doc["cost"]["measured_seconds"]
    fm = doc["cost"]["feature_ms_per_image"]
    L.append(f"\nMeasured: test data + features {ms['test_data_and_features'] / 60:.1f} min "
             f"({doc['cost']['features_computed']} features computed"
             f"{f', {fm:.0f} ms/image' if fm else ''}, {doc['cost']['features_reused']} reused from the cache); "
             f"total {ms['total'] / 60:.1f} min.")
    if not doc["cost"]["features_computed"]:
        L.append("(Every trunk feature came from the cache: earlier invocations with the same cache computed them; "
                 "their logs give the per-image time.)")
    for n, r in res.items():
        t = r.get("training")
        if t:
            L.append(f"- {n}: {t['steps']} steps x {t['batch_size']} ({t['photos']} photos), "
                     f"{t['seconds'] / 60:.1f} min, {t['ms_per_sample']:.0f} ms/sample"
                     f"{' (reused)' if t.get('reused') else ''}; weights sha256 `{t['weights_sha256']}`")
    L.append("\n## Plots\n")
    for k, v in doc["plots"].items():
        L.append(f"- {k}: `{v}`")
    return "\n".join(L) + "\n"


def against_section(ag: dict[str, Any], res: dict[str, Any], renderer: str) -> list[str]:
    """The ``--against`` table: each row of this run minus the same row of the other run."""
    other = (ag.get("renderer") or {}).get("name") or ag["settings"].get("renderer")
    L = [f"## Against `{ag['run']}` (renderer `{other}`; this run: `{renderer}`)\n",
         "The other run's trained rows scored on this run's aligned sets; the runs' settings, recogniser and splits "
         "were checked equal except the renderer. Only renderer-free comparisons are paired: RMFD (real masks) and "
         "LFW U-U (clean). Differences this − other in points, 95 % paired bootstrap over identity clusters.\n",
         f"| row | RMFD EER | RMFD TAR@1e-3 | LFW U-U acc |", "|---|---|---|---|"]
    for name in dict.fromkeys(c["row"] for c in ag["comparisons"]):
        r = next(c for c in ag["comparisons"] if c["row"] == name and c["benchmark"] == "rmfd_test")
        u = next(c for c in ag["comparisons"] if c["row"] == name and c["benchmark"] == "lfw_test")
        title = res.get(name, {}).get("title", name)
        L.append(f"| {title} | {_ci(r['metrics']['eer'])} | {_ci(r['metrics'].get('fmr1000'), neg=True)} | "
                 f"{_ci(u['metrics']['accuracy'])} |")
    L.append("")
    return L

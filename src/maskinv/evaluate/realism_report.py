"""Markdown summary of a :func:`maskinv.evaluate.realism.realism` result."""
from __future__ import annotations

import statistics
from typing import Any

#: The three probe conditions, in report order (realism.py scores them).
CONDITIONS = ("unmasked", "synthetic", "real")

__all__ = ["CONDITIONS", "realism_report"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def realism_report(res: dict[str, Any]) -> str:
    """Markdown summary of a :func:`realism` result."""
    fkey = f"fnmr@fmr{res['fmr']:g}"
    lines = [f"# Mask realism: {res['benchmark']}", "",
             f"model `{res['model']}`, masks renderer **{res['masks']['renderer']}** "
             f"(revision {res['masks'].get('revision', 'not recorded')}, kind {res['masks']['kind']}, "
             f"seed {res['masks']['seed']}, draws {res['masks'].get('draws', 1)}), detector {res['detector']}, people {res['people']}, references "
             f"{res['references']}, unmasked probes held back per person: {res['holdout']}", "",
             "| condition | probes | EER % | FNMR@FMR1e-2 % |", "|---|---:|---:|---:|"]
    for c in CONDITIONS:
        m = res["metrics"][c]
        lines.append(f"| {c} | {res['counts'][c]['probes']} | {_pct(m['eer'])} | {_pct(m[fkey])} |")
    lines += [""]
    for m, label in (("eer", "EER"), (fkey, "FNMR at FMR 1e-2")):
        r = res["ratio"][m]
        ci = r["ci95"]
        cis = "n/a" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"
        pt = "n/a" if r["point"] is None else f"{r['point']:.2f}"
        d = res["synthetic_minus_real"][m]
        dci = "n/a" if d["ci95"] is None else f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
        lines.append(f"- realism ratio on {label}: **{pt}** (95 % bootstrap over identities {cis}); "
                     f"synthetic - real {100 * d['point']:+.2f} points {dci}")
    pd = res.get("per_draw")
    if pd:
        lines += ["", "Each draw alone (synthetic condition with only that draw's masks; unmasked and real unchanged):", "",
                  "| draw | probes | lost | synthetic EER % | FNMR@FMR1e-2 % | ratio EER | ratio FNMR |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for d in pd:
            m, r = d["metrics"] or {}, d["ratio"] or {}
            rs = ["n/a" if r.get(k) is None else f"{r[k]:.2f}" for k in ("eer", fkey)]
            lines.append(f"| {d['draw']} | {d['probes']} | {d['lost']} | {_pct(m.get('eer'))} | {_pct(m.get(fkey))} | "
                         f"{rs[0]} | {rs[1]} |")
        e = [d["metrics"]["eer"] for d in pd if d["metrics"]]
        if len(e) > 1:
            lines.append(f"\nSynthetic EER across the {len(e)} draws: {100 * min(e):.2f} - {100 * max(e):.2f} % "
                         f"(SD {100 * statistics.stdev(e):.2f} points).")
        oc = res.get("draws_on_common_identities")
        if oc:
            pe = [m["eer"] for m in oc["per_draw"]]
            lines.append(f"On the {oc['identities']} identities every draw kept: pooled synthetic EER "
                         f"{_pct(oc['pooled']['eer'])} %, the draws alone {', '.join(_pct(x) for x in pe)} % "
                         f"(mean {_pct(sum(pe) / len(pe))} %).")
    up = res.get("upper_face_control")
    if up:
        lines += ["", f"Upper-face control (probe photos blanked from face-frame height {up['cut']:g} down, no mask "
                      "visible; references untouched):", "",
                  "| condition | EER % | FNMR@FMR1e-2 % |", "|---|---:|---:|"]
        for c in CONDITIONS:
            lines.append(f"| {c} | {_pct(up['metrics'][c]['eer'])} | {_pct(up['metrics'][c][fkey])} |")
        lines.append("")
        for m, label in (("eer", "EER"), (fkey, "FNMR at FMR 1e-2")):
            d, a = up["real_minus_synthetic"][m], up["adjusted_ratio"][m]
            dci = "n/a" if d["ci95"] is None else f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
            aci = "n/a" if a["ci95"] is None else f"[{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}]"
            apt = "n/a" if a["point"] is None else f"{a['point']:.2f}"
            lines.append(f"- {label}: real - synthetic with the lower face blanked {100 * d['point']:+.2f} points {dci}; "
                         f"ratio with that excess taken off the real side (estimate) {apt} {aci}")
    lines += ["", f"Photos without a detected face (dropped in every condition alike): {res['dropped_no_face'] or 'none'}",
              "", f"Weighting: {res['weighting']}.", "", f"Caveat: {res['caveat']}", ""]
    return "\n".join(lines)

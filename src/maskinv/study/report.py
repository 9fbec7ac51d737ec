"""Rendering the study: model titles, the paper-style Markdown table, ``report.md`` and the
mask gallery image."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maskinv.evaluate.bootstrap import signed
from maskinv.masks.protocols import MU, PROTOCOLS, UU, legend, title

#: Display names of the models of the study, in table order.
MODEL_TITLES = {
    "teacher": "ElasticFace-Arc (teacher, no masks)",
    "elasticface_arc_aug": "ElasticFace-Arc-Aug (masks, λ=0{aug_detail})",
    "elasticface_arc_aug_init": "Aug from the teacher (masks, λ=0{aug_detail})",
    "elasticface_arc_aug_long": "Aug, teacher + student steps (masks, λ=0{aug_detail})",
    "maskinv_lg": "MaskInv-LG (masks + KD, λ={lambda_lg:g}, λ/D={lg_per_sample:.3g})",
    "maskinv_hg": "MaskInv-HG (from LG, λ={lambda_hg_used:g}, λ/D={hg_per_sample:.3g}, +{hg_steps} steps)",
    "maskinv_lg_long": "control: LG +{hg_steps} steps (λ={lambda_lg:g})",
    "maskinv_adapt": "MaskInv-adapt (no labels)",
}

#: Short names for the comparison lines.
SHORT_NAMES = {"teacher": "teacher", "elasticface_arc_aug": "Aug", "elasticface_arc_aug_init": "Aug-init",
               "elasticface_arc_aug_long": "Aug-long", "maskinv_lg": "LG", "maskinv_hg": "HG",
               "maskinv_lg_long": "LG+steps", "maskinv_adapt": "adapt"}


def lambda_values(settings: dict) -> dict[str, float]:
    """λ of LG and HG as used, and per sample (λ/D), from a settings document (older ones lack the factor)."""
    lg = float(settings["lambda_lg"])
    factor = settings.get("lambda_hg_factor")
    hg = float(settings["lambda_hg"]) if factor is None else float(factor) * lg
    d = float(settings["embedding_size"])
    return {"lambda_hg_used": hg, "lg_per_sample": lg / d, "hg_per_sample": hg / d}


def model_title(name: str, settings: dict) -> str:
    """Table label of a model of the study, with the λ actually used (and λ/D, the weight per sample)."""
    aug = []
    if settings.get("aug_lr") is not None:
        aug.append(f"lr {settings['aug_lr']:g}")
    if settings.get("aug_s") is not None:
        aug.append(f"s {settings['aug_s']:g}")
    values = {**settings, **lambda_values(settings), "aug_detail": "".join(", " + a for a in aug)}
    return MODEL_TITLES.get(name, name).format(**values)


def warnings_markdown(warnings: list[dict]) -> str:
    """The collapse warnings of a results document as Markdown lines ("none" when there are none)."""
    if not warnings:
        return "None: every model's scores span more than 1e-3, accuracy and 100 − EER agree within 2 points " \
               "(checked on 200 pairs or more), and no student's training loss fell below half the teacher's.\n"
    return "".join(f"- **{SHORT_NAMES.get(w['model'], w['model'])}**"
                   f"{' ' + title(w['protocol']) if w.get('protocol') in PROTOCOLS else ''}: {w['message']}\n"
                   for w in warnings)


def comparisons_markdown(doc: dict) -> str:
    """The paired-bootstrap differences of ``doc["comparisons"]`` as Markdown lines (B − A)."""
    from maskinv.evaluate.bootstrap import render_comparisons_markdown

    return render_comparisons_markdown(doc.get("comparisons") or [], SHORT_NAMES)


def adapt_vs_lg(models: dict) -> dict[str, float | None] | None:
    """MaskInv-adapt against issue 14's two goals on one seed, in accuracy points: its M-U gain over
    the teacher, MaskInv-LG's, the share (adapt's / LG's; the goal: at least 0.5) and adapt's U-U
    change (the goal: at least -1). None without the three rows."""
    names = ("teacher", "maskinv_lg", "maskinv_adapt")
    if any(not {UU, MU} <= set(models.get(n) or ()) for n in names):
        return None

    def acc(name: str, proto: str) -> float:
        return 100.0 * float(models[name][proto]["accuracy_mean"])

    lg, ad = acc("maskinv_lg", MU) - acc("teacher", MU), acc("maskinv_adapt", MU) - acc("teacher", MU)
    return {"lg_mu_gain": lg, "adapt_mu_gain": ad, "share": ad / lg if lg > 0 else None,
            "adapt_uu_change": acc("maskinv_adapt", UU) - acc("teacher", UU)}


def meets_adapt_goals(g: dict) -> bool:
    """Both goals of :func:`adapt_vs_lg` (share >= 0.5, U-U change >= -1 point), with adapt's own
    float slack: differences of fold means round (exactly -1.00 can come out as -1.0000000000000142)."""
    from maskinv.adapt.select import FLOAT_SLACK

    return (g["share"] is not None and g["share"] >= 0.5 - FLOAT_SLACK
            and g["adapt_uu_change"] >= -1.0 - FLOAT_SLACK)


def adapt_vs_lg_markdown(rows: dict[str, dict]) -> str:
    """``{label: adapt_vs_lg(...)}`` as a table (a row per seed, and whatever summary rows)."""
    def share(r: dict) -> str:
        return "n/a (LG gained nothing)" if r["share"] is None else f"{100 * r['share']:.0f} %"

    lines = ["| seed | LG − teacher M-U | adapt − teacher M-U | adapt's share of LG's gain (goal ≥ 50 %) | "
             "adapt − teacher U-U (goal ≥ −1.00) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {signed(r['lg_mu_gain'])} | {signed(r['adapt_mu_gain'])} | {share(r)} | {signed(r['adapt_uu_change'])} |"
              for k, r in rows.items()]
    return "\n".join(lines)


def num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def results_table(doc: dict) -> str:
    """The paper-style table: rows models, columns protocol x (accuracy, EER, FMR100)."""
    protos = [p for p in PROTOCOLS if any(p in m for m in doc["models"].values())]
    head = "| model | " + " | ".join(f"{title(p)} acc | {title(p)} EER | {title(p)} FMR100" for p in protos) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(protos))]
    for name, m in doc["models"].items():
        cells = []
        for p in protos:
            r = m.get(p, {})
            cells += [_pct(r.get("accuracy_mean")), _pct(r.get("eer")), _pct(r.get("fmr100"))]
        lines.append(f"| {model_title(name, doc['settings'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Below this many teacher steps a demo is a smoke test (``--quick`` trains a handful).
TOY_STEPS = 100


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def report_markdown(doc: dict, table: str) -> str:
    """``report.md``: what was run, the table, training figures, timings and the configs."""
    s = doc["settings"]
    t = doc["timings"]
    toy = int(s["teacher_steps"]) < TOY_STEPS
    lines = [
        "# maskinv demo — MaskInv on SynthFaces", "",
        *([f"**Toy scale ({s['teacher_steps']} teacher steps, e.g. `--quick`): the numbers below mean nothing. "
           "This run only shows that every stage works; `make demo` gives numbers worth reading.**", ""] if toy else []),
        f"Seed {doc['seed']}; {s['identities']} training identities × {s['images_per_identity']} images at "
        f"{s['size']}×{s['size']}; {s['val_pairs']} held-out verification pairs of {s['val_identities']} unseen identities. "
        f"Backbone {s['backbone']} (width ×{s['width_mult']}, {s['embedding_size']}-d), batch {s['batch_size']}, "
        f"{s['teacher_steps']} teacher / {s['student_steps']} student steps (HG and the control: {s['hg_steps']} more from LG "
        f"at lr {s['hg_lr']:g}), mask probability {s['mask_prob']}; ElasticFace-Arc s {s['head_kwargs'].get('s')}, "
        f"σ {s['teacher_head_kwargs'].get('std')} (teacher) / {s['head_kwargs'].get('std')} (students).", "",
        f"Evaluation: flip test {'on' if s['flip'] else 'off'}, precision {s['eval_precision']}, "
        f"mask seed {doc.get('data', {}).get('eval_mask_seed', s['eval_seed'])}"
        + (f"; masks: trained on {', '.join(doc['data']['train_mask_kinds'])}, tested on "
           f"{doc['data']['eval_mask_kind']} alone (held out)" if s.get("heldout_mask_kind") else "") + ". "
        + ("Accuracy: 10-fold LFW protocol with thresholds at the observed scores (%). "
           if doc.get("accuracy_protocol") == "exact-midpoints" else
           "Accuracy: 10-fold LFW protocol on the InsightFace grid (%). ")
        + "EER and FMR100 (FNMR at FMR ≤ 1 %) in %. " + legend() + ". λ/D is λ per sample "
        "(kd_loss averages over the D template dimensions; the paper: LG 0.195, HG 5.86).", "",
        table, "",
        "## Warnings (collapse checks)", "",
        warnings_markdown(doc.get("warnings") or []),
        f"## Paired differences (B − A, points; 95 % paired bootstrap, {s['bootstrap']} replicates, "
        f"resampling {', '.join(doc.get('resampling') or ['pairs'])})", "",
        "All students of the seed share initialisation, batch order and mask and margin draws; every model "
        "scores the same masked pairs. Positive accuracy / negative EER differences favour B.", "",
        comparisons_markdown(doc) or "(no comparisons: bootstrap = 0)", "",
    ]
    goal = adapt_vs_lg(doc["models"])
    if goal is not None:
        lines += ["## MaskInv-adapt against MaskInv-LG (accuracy points)", "",
                  adapt_vs_lg_markdown({str(doc["seed"]): goal}), ""]
    lines += [
        "## Training", "",
        "| model | steps | λ | λ/D | final loss | head loss | KD loss | img/s | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in doc["models"].items():
        r = m["run"]
        lines.append(f"| {model_title(name, s)} | {r['step']} | {num(r.get('lambda'), 'g')} | "
                     f"{num(r.get('lambda_per_sample'), '.4g')} | {num(r['loss'])} | {num(r['head_loss'])} | "
                     f"{num(r['kd_loss'], '.4f')} | {num(r['images_per_s'], '.0f')} | {num(r['elapsed_s'], '.0f')} |")
    lines += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k[:-2]} | {v:.1f} |" for k, v in t.items()]
    lines += ["", "## Configs", "", "Each run folder holds its resolved `config.yaml`. The first run's config as given, "
              "then only what each other run changes:", ""]
    runs = list(doc["models"].items())
    if runs:
        base_name, base = runs[0][0], _flat(runs[0][1]["run"]["config"])
        lines += [f"### {base_name}", "", "```json", json.dumps(runs[0][1]["run"]["config"], indent=1), "```", ""]
        for name, m in runs[1:]:
            cfg = _flat(m["run"]["config"])
            diff = [f"`{k}`: {json.dumps(base.get(k))} → {json.dumps(cfg.get(k))}" for k in sorted(set(base) | set(cfg))
                    if base.get(k) != cfg.get(k)]
            lines += [f"- **{name}** (against {base_name}): " + ("; ".join(diff) if diff else "the same config"), ""]
    lines += ["Plots: `eval/` (ROC/DET per protocol, genuine/impostor score histograms); masks: `mask_gallery.png`.", ""]
    return "\n".join(lines)


def mask_gallery(val_bin: Path, path: Path, seed: int) -> Path | None:
    """A grid of a few held-out faces with several random masks each (PNG)."""
    import cv2
    import numpy as np

    from maskinv.data.bins import decode_bin
    from maskinv.masks import apply_mask, image_rng
    from maskinv.utils.images import encode_image
    from maskinv.utils.io import atomic_write_bytes
    from maskinv.utils.seeds import derive_seed

    images, _ = decode_bin(val_bin)
    faces = images[: min(6, len(images)) * 2 : 2]
    rows = []
    for i, face in enumerate(faces):
        row = [face] + [apply_mask(face, rng=image_rng(derive_seed(seed, "mask_gallery", j), i)).image for j in range(5)]
        rows.append(np.concatenate(row, axis=1))
    grid = np.concatenate(rows, axis=0)
    scale = max(1, -(-112 // faces.shape[1]))  # show small crops at 112 px or more per face
    if scale > 1:
        grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    atomic_write_bytes(path, encode_image(grid, "png"))
    return path

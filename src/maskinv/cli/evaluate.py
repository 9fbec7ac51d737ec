"""``maskinv eval`` (models × benchmarks × masked protocols -> report) and ``maskinv metrics``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maskinv.masks.protocols import DESCRIPTIONS, PROTOCOLS, TITLES


def register(subparsers: Any) -> None:
    """Add the ``eval`` and ``metrics`` commands."""
    p = subparsers.add_parser(
        "eval",
        help="verification accuracy/EER/FMR100 of models on .bin pair lists under " + ", ".join(TITLES.values()),
        description=(
            "Evaluate one or more backbones on verification .bin files under masked protocols ("
            + "; ".join(f"{p}: {DESCRIPTIONS[p]}" for p in PROTOCOLS) + "). Writes "
            "DIR/results.json, DIR/results.md, ROC/DET and score-histogram PNGs and score CSVs."
        ),
    )
    p.add_argument("--model", action="append", required=True, metavar="MODEL_FILE",
                   help="exported backbone (.pt + .json sidecar), training checkpoint or raw .pth; repeat to compare")
    p.add_argument("--arch", action="append", default=None, metavar="NAME",
                   help="architecture for raw .pth files without a sidecar (once for all models, or once per --model)")
    p.add_argument("--bench", action="append", required=True, metavar="BIN_OR_DIR",
                   help="verification .bin, or an image folder (Name/Name_0001.png + pairs.txt); repeatable")
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help=f"comma-separated subset of {','.join(PROTOCOLS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="mask seed; image i's mask depends on (seed, i) only")
    p.add_argument("--mask-kind", default="random", help="mask kind (default: random mix of all kinds)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (embedding of x only)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast where the device supports it natively")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--folds", type=int, default=10, help="folds of the accuracy protocol (default 10)")
    p.add_argument("--exact", action="store_true", help="accuracy threshold over all score midpoints instead of the InsightFace grid")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="compare every two models on each benchmark and protocol (B - A, paired by pair index) with "
                   "N paired-bootstrap replicates: 95 %% CIs under 'comparisons' in results.json (default 0: off)")
    # folder benchmarks (a --bench that is a directory); the logic lives in maskinv.data.folder_bench
    from maskinv.cli.data import add_folder_bench_options

    add_folder_bench_options(p)
    p.add_argument("--probe-list", metavar="FILE", default=None,
                   help="folder benchmarks: images listed here (Name_0001 or Name/Name_0001.png per line) are "
                        "probes, all others references; adds protocol probe_ref (every probe vs every reference)")
    p.add_argument("--min-false-matches", type=int, default=1, metavar="K",
                   help="probe_ref: report TAR at FAR f only with >= K/f impostor comparisons (default 1)")
    p.set_defaults(func=cmd_eval)

    m = subparsers.add_parser(
        "metrics",
        help="verification metrics of a score file (CSV: score,genuine)",
        description=(
            "Compute accuracy (10-fold), EER, FMR100, FMR1000, FDR, AUC and TAR@FAR from a CSV "
            "with header 'score,genuine' (higher score = more alike; genuine 1/0), in pair order."
        ),
    )
    m.add_argument("scores", metavar="SCORES.csv")
    m.add_argument("--json", action="store_true", help="print the full metrics dict as JSON")
    m.add_argument("--folds", type=int, default=10)
    m.add_argument("--exact", action="store_true", help="accuracy threshold over all score midpoints")
    m.add_argument("--far", type=float, action="append", default=None, metavar="F",
                   help="extra FAR target for tar_at_far (repeatable); 1e-2, 1e-3, 1e-4 are always reported")
    m.set_defaults(func=cmd_metrics)


# --------------------------------------------------------------------------- metrics
_TRUE = {"1", "true", "yes", "genuine", "1.0"}
_FALSE = {"0", "false", "no", "impostor", "0.0"}


def read_scores_csv(path: str | Path):
    """Read a ``score,genuine`` CSV -> (float64 scores, bool genuine); errors name the line."""
    import csv
    import math

    import numpy as np

    from maskinv.errors import DataFormatError

    path = Path(path)
    scores: list[float] = []
    genuine: list[bool] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(f"{path}: empty file; expected a header 'score,genuine'") from None
        except csv.Error as exc:
            raise DataFormatError(f"{path}: line 1: {exc}") from None
        cols = [h.strip().lower() for h in header]
        if "score" not in cols or "genuine" not in cols:
            raise DataFormatError(f"{path}: line 1: header must name columns 'score' and 'genuine', got {header!r}")
        si, gi = cols.index("score"), cols.index("genuine")
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(cols):
                    raise DataFormatError(f"{path}: line {line}: {len(row)} fields, header has {len(cols)}: {row!r}")
                try:
                    s = float(row[si])
                except ValueError:
                    raise DataFormatError(f"{path}: line {line}: score {row[si]!r} is not a number") from None
                if not math.isfinite(s):
                    raise DataFormatError(f"{path}: line {line}: score is {row[si].strip()!r}; scores must be finite")
                g = row[gi].strip().lower()
                if g in _TRUE:
                    genuine.append(True)
                elif g in _FALSE:
                    genuine.append(False)
                else:
                    raise DataFormatError(f"{path}: line {line}: genuine {row[gi]!r} is not 1/0 (or true/false)")
                scores.append(s)
        except csv.Error as exc:
            raise DataFormatError(f"{path}: line {reader.line_num}: {exc}") from None
    if not scores:
        raise DataFormatError(f"{path}: no score rows after the header")
    g_arr = np.asarray(genuine, dtype=bool)
    n_gen = int(g_arr.sum())
    if n_gen == 0 or n_gen == g_arr.size:
        which = "impostor (genuine=0)" if n_gen == 0 else "genuine (genuine=1)"
        raise DataFormatError(f"{path}: all {g_arr.size} rows are {which}; metrics need both classes")
    return np.asarray(scores, dtype=np.float64), g_arr


def _summary_lines(m: dict) -> list[str]:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.3f}%"

    lines = [
        f"pairs            {m['num_pairs']} ({m['num_genuine']} genuine, {m['num_impostor']} impostor)",
        f"accuracy         {pct(m['accuracy_mean'])} ± {pct(m['accuracy_std'])} ({m['folds']}-fold, {m['accuracy_protocol']})",
        f"EER              {pct(m['eer'])} (threshold {m['eer_threshold']:.6g})",
        f"FMR100           {pct(m['fmr100'])}",
        f"FMR1000          {pct(m['fmr1000'])}",
        f"FDR              {'n/a' if m['fdr'] is None else format(m['fdr'], '.4f')}",
        f"AUC              {m['auc']:.6f}",
    ]
    for far, tar in m["tar_at_far"].items():
        thr = m["threshold_at_fmr"][far]
        lines.append(f"TAR@FAR={far:g}".ljust(17) + f"{pct(tar)}" + ("" if thr is None else f" (threshold {thr:.6g})"))
    for k, why in m["undefined"].items():
        lines.append(f"undefined        {k}: {why}")
    return lines


def cmd_metrics(args: argparse.Namespace) -> int:
    from maskinv.evaluate.metrics import DEFAULT_FAR_TARGETS, verification_metrics
    from maskinv.evaluate.reports import results_json

    scores, genuine = read_scores_csv(args.scores)
    far = tuple(args.far or ()) + DEFAULT_FAR_TARGETS
    for f in far:
        if not 0.0 < f < 1.0:
            from maskinv.errors import ConfigError

            raise ConfigError(f"--far must lie in (0, 1), got {f}")
    m = verification_metrics(scores, genuine, folds=args.folds, far_targets=far, exact=args.exact)
    if args.json:
        print(json.dumps(results_json(m), indent=2))
    else:
        print("\n".join(_summary_lines(m)))
    return 0


# --------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from maskinv.errors import ConfigError
    from maskinv.evaluate import ModelSpec, evaluate_models

    archs = args.arch or [None]
    if len(archs) not in (1, len(args.model)):
        raise ConfigError(f"--arch given {len(archs)} times for {len(args.model)} --model; give it once or once per model")
    if len(archs) == 1:
        archs = archs * len(args.model)
    doc = evaluate_models(
        [ModelSpec(path=path, arch=arch) for path, arch in zip(args.model, archs)], args.bench, args.protocols,
        seed=args.seed, mask_kind=args.mask_kind, flip=not args.no_flip, batch_size=args.batch_size,
        precision=args.precision, device=args.device, folds=args.folds, exact=args.exact,
        out_dir=args.out, plots=not args.no_plots, log=lambda msg: print(msg, file=sys.stderr),
        bootstrap=args.bootstrap,
    )
    if doc.get("comparisons"):
        from maskinv.evaluate.bootstrap import render_comparisons_markdown

        print(render_comparisons_markdown(doc["comparisons"]), end="")
    written = doc["report"]
    print(f"wrote {written['json']} and {written['markdown']} ({len(written['plots'])} plots)", file=sys.stderr)
    return 0


def _eval_folder(args: argparse.Namespace, blabel: str, bpath: str, protocols, models, results) -> None:
    """A folder benchmark: prepare (align/cache/drop) once, then score every model on it."""
    from maskinv.cli.data import prepare_folder_from_args
    from maskinv.evaluate.probe_ref import evaluate_folder_bench, folder_pair_inputs, read_probe_list, report_metrics

    bench = prepare_folder_from_args(bpath, args, Path(args.out) / ".maskinv-align-cache", probe_list=bool(args.probe_list))
    probe = read_probe_list(args.probe_list, bench.keys) if args.probe_list else None
    entry = dict(bench.info)
    if probe is not None:
        entry.update(probe_list=str(Path(args.probe_list).resolve()), num_probe_images=int(probe.sum()),
                     num_reference_images=int((~probe).sum()))
    results["benchmarks"][blabel] = entry
    pair_inputs = folder_pair_inputs(bench, protocols, args.seed, args.mask_kind) if bench.pairs is not None else None
    for mlabel, model in models:
        res = evaluate_folder_bench(
            model, bench, protocols=protocols, probe=probe, pair_inputs=pair_inputs, flip=not args.no_flip,
            batch_size=args.batch_size, device=args.device, precision=args.precision, folds=args.folds,
            exact=args.exact, min_false_matches=args.min_false_matches,
        )
        for proto, m in res.items():
            results["results"].append({"model": mlabel, "benchmark": blabel, "protocol": proto, "metrics": report_metrics(m)})
            tar = (m.get("tar_at_far") or {}).get(5e-4)
            extra = "" if proto != "probe_ref" else f"  TAR@FAR=1:2000 {'n/a' if tar is None else f'{100 * tar:.2f}%'}"
            print(f"{mlabel} {blabel} {proto}: EER {100 * m['eer']:.2f}% ({m['num_genuine']} genuine, "
                  f"{m['num_impostor']} impostor){extra}", file=sys.stderr)

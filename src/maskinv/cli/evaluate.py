"""``maskinv eval`` (models × benchmarks × masked protocols -> report) and ``maskinv metrics``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maskinv.cli import args as A


def register(subparsers: Any) -> None:
    """Add the ``eval`` and ``metrics`` commands."""
    p = subparsers.add_parser(
        "eval",
        help="verification accuracy/EER/FMR100 of models on .bin pair lists under U-U, M-U, M-M",
        description=(
            "Evaluate one or more backbones on verification .bin files under masked protocols "
            "(uu: none masked, mu: the second image of every pair masked, mm: both). Writes "
            "DIR/results.json, DIR/results.md, ROC/DET and score-histogram PNGs and score CSVs."
        ),
    )
    p.add_argument("--model", action="append", required=True, metavar="MODEL_FILE", type=A.existing_file,
                   help="exported backbone (.pt + .json sidecar), training checkpoint or raw .pth; repeat to compare")
    p.add_argument("--arch", action="append", default=None, metavar="NAME",
                   help="architecture for raw .pth files without a sidecar (once for all models, or once per --model)")
    p.add_argument("--bench", action="append", required=True, metavar="BIN", type=A.existing_file,
                   help="verification .bin; repeatable")
    p.add_argument("--protocols", default="uu,mu,mm", type=A.choice_list(("uu", "mu", "mm"), "protocol"), help="comma-separated subset of uu,mu,mm (default: all)")
    p.add_argument("--seed", type=A.seed, default=0, help="mask seed; image i's mask depends on (seed, i) only")
    p.add_argument("--mask-kind", default="random", type=A.mask_kind, help="mask kind (default: random mix of all kinds)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (embedding of x only)")
    p.add_argument("--batch-size", type=A.positive_int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast where the device supports it natively")
    p.add_argument("--device", default=None, type=A.device, help="torch device (default: cpu)")
    p.add_argument("--folds", type=A.positive_int, default=10, help="folds of the accuracy protocol (default 10)")
    p.add_argument("--exact", action="store_true", help="accuracy threshold over all score midpoints instead of the InsightFace grid")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--out", required=True, metavar="DIR", type=A.output_dir, help="output folder")
    p.set_defaults(func=cmd_eval)

    m = subparsers.add_parser(
        "metrics",
        help="verification metrics of a score file (CSV: score,genuine)",
        description=(
            "Compute accuracy (10-fold), EER, FMR100, FMR1000, FDR, AUC and TAR@FAR from a CSV "
            "with header 'score,genuine' (higher score = more alike; genuine 1/0), in pair order."
        ),
    )
    m.add_argument("scores", metavar="SCORES.csv", type=A.existing_file, help="CSV with header 'score,genuine'")
    m.add_argument("--json", action="store_true", help="print the full metrics dict as JSON")
    m.add_argument("--folds", type=A.positive_int, default=10, help="folds of the accuracy protocol (default 10)")
    m.add_argument("--exact", action="store_true", help="accuracy threshold over all score midpoints")
    m.add_argument("--far", type=A.probability, action="append", default=None, metavar="F",
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
        try:
            fh.read(65536)  # a binary file fails here, with a message naming it
            fh.seek(0)
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}: not a UTF-8 text CSV (byte {exc.start}: {exc.reason})") from None
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
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}: after line {reader.line_num}: not UTF-8 text ({exc.reason})") from None
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
    from maskinv.evaluate.protocols import evaluate_arrays, load_bench, masked_images, parse_protocols, resolve_precision
    from maskinv.evaluate.reports import new_results, unique_labels, write_report
    from maskinv.models import load_backbone, model_fingerprint
    from maskinv.utils.hashing import file_sha256

    protocols = parse_protocols(args.protocols)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.folds < 1:
        raise ConfigError(f"--folds must be >= 1, got {args.folds}")
    archs = args.arch or [None]
    if len(archs) not in (1, len(args.model)):
        raise ConfigError(f"--arch given {len(archs)} times for {len(args.model)} --model; give it once or once per model")
    if len(archs) == 1:
        archs = archs * len(args.model)
    for b in args.bench:
        if not Path(b).is_file():
            raise FileNotFoundError(2, "No such file or directory", str(b))

    settings = {
        "protocols": list(protocols), "seed": args.seed, "mask_kind": args.mask_kind, "flip": not args.no_flip,
        "batch_size": args.batch_size, "precision": args.precision,
        "precision_used": resolve_precision(args.precision, args.device), "device": args.device or "cpu",
        "folds": args.folds, "accuracy_protocol": "exact-midpoints" if args.exact else "insightface-grid",
    }
    results = new_results(settings)
    models = []
    for label, path, arch in zip(unique_labels(args.model), args.model, archs):
        model = load_backbone(path, arch)
        if args.device:
            model.to(args.device)
        models.append((label, model))
        results["models"][label] = {
            "path": str(Path(path).resolve()),
            "sha256": model_fingerprint(path),
            "arch": getattr(model, "arch", None),
        }
        print(f"model {label}: {path} ({(getattr(model, 'arch', None) or {}).get('name', '?')})", file=sys.stderr)

    for blabel, bpath in zip(unique_labels(args.bench), args.bench):
        images, issame, _ = load_bench(bpath)
        results["benchmarks"][blabel] = {
            "path": str(Path(bpath).resolve()),
            "sha256": file_sha256(bpath),
            "num_pairs": int(issame.shape[0]),
            "num_genuine": int(issame.sum()),
            "image_size": [int(images.shape[1]), int(images.shape[2])],
        }
        # decode and mask once per bench; every model sees the same bytes
        masked = masked_images(images, protocols, args.seed, args.mask_kind)
        for mlabel, model in models:
            res = evaluate_arrays(
                model, images, issame, masked, protocols, flip=not args.no_flip, batch_size=args.batch_size,
                device=args.device, precision=args.precision, folds=args.folds, exact=args.exact,
            )
            for proto, m in res.items():
                results["results"].append({"model": mlabel, "benchmark": blabel, "protocol": proto, "metrics": m})
                acc = "n/a" if m["accuracy_mean"] is None else f"{100 * m['accuracy_mean']:.2f}%"
                print(f"{mlabel} {blabel} {proto}: accuracy {acc}  EER {100 * m['eer']:.2f}%", file=sys.stderr)

    written = write_report(args.out, results, plots=not args.no_plots)
    print(f"wrote {written['json']} and {written['markdown']} ({len(written['plots'])} plots)", file=sys.stderr)
    return 0

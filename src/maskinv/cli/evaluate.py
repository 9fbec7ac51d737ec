"""``maskinv eval`` (models × benchmarks × masked protocols -> report) and ``maskinv metrics``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maskinv.cli import args as A
from maskinv.utils.precision import MODES_INFER

from maskinv.masks.protocols import DESCRIPTIONS, PROTOCOLS, TITLES


def register(subparsers: Any) -> None:
    """Add the ``eval`` and ``metrics`` commands."""
    p = subparsers.add_parser(
        "eval",
        help="verification accuracy/EER/FMR100 of models on .bin pair lists or image folders under "
             + ", ".join(TITLES.values()),
        description=(
            "Evaluate one or more models on verification .bin files and image folders under masked protocols ("
            + "; ".join(f"{p}: {DESCRIPTIONS[p]}" for p in PROTOCOLS) + "; with --probe-list also probe_ref). "
            "Writes DIR/results.json, DIR/results.md, ROC/DET and score-histogram PNGs and score CSVs; "
            "the previous report's files in DIR that this run does not rewrite are removed."
        ),
    )
    p.add_argument("--model", action="append", required=True, metavar="MODEL", type=A.model_ref,
                   help=A.model_help("backbone.pt (+ .json sidecar), training checkpoint, InsightFace/ElasticFace/MagFace "
                                     ".pth, .onnx or a named model; repeat to compare"))
    p.add_argument("--arch", action="append", default=None, metavar="NAME",
                   help="architecture for raw .pth files without a sidecar (once for all models, or once per --model)")
    p.add_argument("--layout", action="append", default=None, choices=("auto", "insightface", "elasticface", "magface"),
                   help=".pth checkpoint layout (default auto; once for all models, or once per --model)")
    p.add_argument("--input-mean", action="append", type=A.number, default=None, metavar="MEAN",
                   help="model input = (pixel - MEAN) / STD, pixels 0..255, for weights without a sidecar/metadata "
                        "(once for all models, or once per --model)")
    p.add_argument("--input-std", action="append", type=A.positive_float, default=None, metavar="STD", help="see --input-mean")
    p.add_argument("--channel-order", action="append", choices=("RGB", "BGR"), default=None,
                   help="channel order the model expects (once for all models, or once per --model)")
    p.add_argument("--bench", action="append", required=True, metavar="BIN_OR_DIR", type=A.existing_path,
                   help="verification .bin, or an image folder (Name/Name_0001.png + pairs.txt); repeatable")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), type=A.protocol_list,
                   help=f"comma-separated subset of {','.join(PROTOCOLS)} (default: all)")
    p.add_argument("--seed", type=A.seed, default=0, help="mask seed; image i's mask depends on (seed, i) only")
    p.add_argument("--mask-kind", default="random", type=A.mask_kind, help="mask kind (default: random mix of all kinds)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (embedding of x only)")
    p.add_argument("--batch-size", type=A.positive_int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--precision", choices=MODES_INFER, default="auto",
                   help="auto: bf16 autocast where the device supports it natively")
    p.add_argument("--device", default=None, type=A.device, help="torch device (default: cpu)")
    p.add_argument("--folds", type=A.positive_int, default=10, help="folds of the accuracy protocol (default 10)")
    p.add_argument("--exact", action="store_true", help="accuracy threshold over all score midpoints instead of the InsightFace grid")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--out", required=True, metavar="DIR", type=A.output_dir, help="output folder")
    p.add_argument("--bootstrap", type=A.non_negative_int, default=0, metavar="N",
                   help="compare every two models on each benchmark and protocol (B - A, paired by pair index) with "
                   "N paired-bootstrap replicates: 95 %% CIs under 'comparisons' in results.json (default 0: off)")
    # folder benchmarks (a --bench that is a directory); the logic lives in maskinv.data.folder_bench
    from maskinv.cli.data import add_folder_bench_options

    add_folder_bench_options(p)
    p.add_argument("--probe-list", metavar="FILE", default=None, type=A.existing_file,
                   help="folder benchmarks: images listed here (Name_0001 or Name/Name_0001.png per line) are "
                        "probes, all others references; adds protocol probe_ref (every probe vs every reference)")
    p.add_argument("--min-false-matches", type=A.positive_int, default=1, metavar="K",
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
    from maskinv.evaluate.metrics import FAR_GRID, verification_metrics
    from maskinv.evaluate.reports import results_json

    scores, genuine = read_scores_csv(args.scores)
    far = tuple(args.far or ()) + FAR_GRID
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
def _per_model(args: argparse.Namespace, name: str) -> list:
    """``--NAME`` given once (all models) or once per ``--model``."""
    vals = getattr(args, name) or [None]
    if len(vals) not in (1, len(args.model)):
        from maskinv.errors import ConfigError

        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} given {len(vals)} times for {len(args.model)} --model; give it once or once per model")
    return vals * len(args.model) if len(vals) == 1 else vals


def eval_inputs(args: argparse.Namespace) -> tuple[list, list]:
    """``(models, benchmarks)`` for :func:`maskinv.evaluate.evaluate_models` from the options:
    ModelSpecs, and a FolderBenchSpec (with the folder options) for each --bench that is a folder."""
    from maskinv.errors import ConfigError
    from maskinv.evaluate import FolderBenchSpec, ModelSpec

    per = {k: _per_model(args, k) for k in ("arch", "layout", "input_mean", "input_std", "channel_order")}
    models = [ModelSpec(path=path, **{k: v[i] for k, v in per.items()}) for i, path in enumerate(args.model)]
    folders = [b for b in args.bench if Path(b).is_dir()]
    if args.probe_list and not folders:
        raise ConfigError("--probe-list applies to folder benchmarks; no --bench is a folder")
    if args.pairs and not folders:
        raise ConfigError("--pairs applies to folder benchmarks; no --bench is a folder")
    if len(folders) > 1 and (args.probe_list or args.pairs):
        raise ConfigError(f"--pairs/--probe-list name the images of one folder benchmark; {len(folders)} --bench are folders")
    cache = Path(args.align_cache) if args.align_cache else Path(args.out) / ".maskinv-align-cache"
    benches = [
        FolderBenchSpec(b, pairs=args.pairs, aligned=args.aligned, on_miss=args.on_miss, detector=args.detector,
                        probe_list=args.probe_list, cache_dir=cache, min_false_matches=args.min_false_matches,
                        strict=args.strict)
        if b in folders else b
        for b in args.bench
    ]
    return models, benches


def _check_bench_files(args: argparse.Namespace) -> None:
    """A --bench file that is not a pickle (every .bin is one) fails here, before any model is
    loaded and any progress line printed (the contract: one line for a user mistake)."""
    from maskinv.cli.args import looks_like_bin
    from maskinv.errors import DataFormatError

    for b in args.bench:
        if Path(b).is_file() and not looks_like_bin(b):
            raise DataFormatError(f"{b}: not a verification .bin (a pickle of images and issame flags, "
                                  "as InsightFace and `maskinv data bin` write)")


def probe_writable(folder: str | Path) -> None:
    """Refuse, before any work, an output folder that cannot be created or written (e.g. under
    /proc, where even root's permission bits say yes): make and remove a scratch folder there."""
    import tempfile

    from maskinv.errors import ConfigError

    p = Path(folder).absolute()
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        Path(tempfile.mkdtemp(prefix=".maskinv-probe-", dir=base)).rmdir()
    except OSError as exc:
        raise ConfigError(f"argument --out: {folder}: cannot write there ({exc.strerror or exc})") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from maskinv.evaluate import evaluate_models

    if args.bootstrap and len(args.model) < 2:  # a mistake is caught before any model is loaded
        from maskinv.errors import ConfigError

        raise ConfigError(f"--bootstrap compares models: give two or more --model, got {len(args.model)}")
    _check_bench_files(args)
    probe_writable(args.out)
    models, benches = eval_inputs(args)
    doc = evaluate_models(
        models, benches, args.protocols,
        seed=args.seed, mask_kind=args.mask_kind, flip=not args.no_flip, batch_size=args.batch_size,
        precision=args.precision, device=args.device, folds=args.folds, exact=args.exact,
        out_dir=args.out, plots=not args.no_plots, log=lambda msg: print(msg, file=sys.stderr),
        bootstrap=args.bootstrap,
    )
    written = doc["report"]
    # the results on stdout (`> log.txt` keeps them); progress and notes went to stderr
    print(Path(written["markdown"]).read_text(encoding="utf-8"), end="")
    print(f"wrote {written['json']} and {written['markdown']} ({len(written['plots'])} plots)", file=sys.stderr)
    return 0

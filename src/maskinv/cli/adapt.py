"""``maskinv adapt --teacher MODEL --images DIR_OR_REC --out RUN_DIR [--aligned] [--detector NAME]
[--max-steps N] [--resume RUN_DIR] [key.sub=value ...]``: make a pretrained model mask-invariant
from unlabeled photos (:mod:`maskinv.adapt`; the same run folder as ``maskinv train``).
``maskinv adapt --show-defaults`` prints the shipped defaults (``maskinv/adapt/adapt.yaml``)."""
from __future__ import annotations

import argparse

from maskinv.cli import args as A


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "adapt", help="make a pretrained face model mask-invariant from unlabeled photos (no labels, no head)",
        description="Distil a frozen teacher (torch .pt/.pth, .onnx, or 'dlib') into a student that sees the same "
                    "photos masked: template distillation only. A torch teacher is copied (BatchNorm statistics "
                    "frozen); an ONNX or dlib teacher gets a student trained from scratch, which needs a large set "
                    "(at least 10,000 photos). Photos are detected and aligned once into RUN_DIR/data; aligned crops "
                    "of another size are resized to the teacher's; unreadable files are skipped and listed "
                    "(--strict stops). Defaults: maskinv/adapt/adapt.yaml (--show-defaults prints it); overrides "
                    "key.sub=value. --val: a .bin of "
                    "labelled pairs, e.g. `maskinv data bin LFW_LAYOUT_FOLDER/ val.bin` from a folder with a "
                    "pairs.txt (docs/adapt.md).")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. masks.prob=0.5 kd.weight=100")
    p.add_argument("--teacher", type=A.model_ref, help="the model to adapt: .pt/.pth (copied), .onnx or dlib (templates cached once)")
    p.add_argument("--images", type=A.existing_path, help="a folder tree of photos, of aligned crops (--aligned), or a RecordIO folder/.rec")
    p.add_argument("--out", type=A.output_dir, help="run folder")
    p.add_argument("--aligned", action="store_true", help="the images are already aligned square crops")
    A.detector_arg(p, "face detector for photos")
    p.add_argument("--max-steps", type=A.positive_int, default=None, help="total optimiser steps (a resumed run stops at the same total)")
    p.add_argument("--resume", metavar="RUN_DIR", type=A.existing_dir, help="continue the run in RUN_DIR from its newest checkpoint")
    p.add_argument("--val", metavar="BIN", type=A.bin_file,
                   help="validation pairs (.bin; never the test pairs): U-U/M-U while adapting; make one from labelled "
                        "pairs with `maskinv data bin FOLDER/ val.bin` (FOLDER: Name/Name_0001.jpg + pairs.txt)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable photo (default: skip and list it)")
    p.add_argument("--eval-every", type=A.positive_int, default=200, help="steps between validations with --val (default 200)")
    p.add_argument("--tolerance", type=A.non_negative_float, default=1.0,
                   help="U-U points the student may lose against the teacher on --val (default 1.0)")
    p.add_argument("--patience", type=A.positive_int, default=3, help="validations without a better M-U before stopping (default 3)")
    p.add_argument("--show-defaults", action="store_true",
                   help="print the shipped defaults (maskinv/adapt/adapt.yaml, with why each value) and exit")
    p.set_defaults(func=_cmd_adapt)


def _cmd_adapt(args: argparse.Namespace) -> int:
    from pathlib import Path

    from maskinv.adapt.pipeline import adapt_model
    from maskinv.errors import ConfigError

    if args.show_defaults:
        from maskinv.adapt.config import DEFAULTS_FILE, defaults_text

        print(f"# maskinv/adapt/{DEFAULTS_FILE}\n{defaults_text()}", end="")
        return 0
    overrides = list(args.overrides or [])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"adapt: expected key.sub=value overrides, got {bad[0]!r}")
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ConfigError("--out and --resume name different folders; --resume continues in RUN_DIR")
        out = args.resume
    else:
        missing = [f for f, v in (("--teacher", args.teacher), ("--images", args.images), ("--out", args.out)) if not v]
        if missing:
            raise ConfigError(f"adapt: {', '.join(missing)} required (or --resume RUN_DIR)")
        out = args.out
    if args.max_steps is not None and args.max_steps < 0:
        raise ConfigError(f"--max-steps must be >= 0, got {args.max_steps}")
    s = adapt_model(args.teacher, args.images, out, aligned=args.aligned, detector=args.detector,
                    max_steps=args.max_steps, resume=bool(args.resume), overrides=overrides,
                    log=lambda m: print(m, flush=True), val=args.val, eval_every=args.eval_every,
                    tolerance=args.tolerance, patience=args.patience, strict=args.strict)
    print(f"run: {s['out_dir']}  status: {s['status']}  step: {s['step']}/{s['total_steps']}  loss: {s['loss']:.6f}")
    if s.get("backbone"):
        sel = s.get("selection") or {}
        why = "best on --val" if sel.get("met_tolerance", True) else "no step within --tolerance: the least U-U loss"
        print(f"backbone: {s['backbone']}" + (f"  (step {s['backbone_step']}, {why})" if s.get("backbone_step") else ""))
    if s["status"] == "interrupted":
        return 128 + int(s.get("signal") or 15)
    return 0

"""``maskinv demo``: the MaskInv study end to end on SynthFaces."""
from __future__ import annotations

import argparse

from maskinv.cli import args as A


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the MaskInv study on SynthFaces (teacher, Aug baseline, MaskInv-LG/HG; U-U/M-U/M-M)",
        description="Generate SynthFaces, train a teacher, the ElasticFace-Arc-Aug baseline and MaskInv students, "
        "evaluate all on U-U, M-U and M-M, write results.json, report.md and plots, print the table.",
    )
    p.add_argument("--out", default="demo_out", type=A.output_dir, help="output folder (default: demo_out)")
    p.add_argument("--seed", type=A.seed, default=0, help="seed of data, training and masks (default: 0)")
    p.add_argument("--minutes", type=A.positive_float, default=10.0, help="time budget; scales the step counts (default: 10)")
    p.add_argument("--no-hg", action="store_true", help="skip MaskInv-HG")
    p.add_argument("--quick", action="store_true", help="seconds-scale smoke run (tiny data, few steps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study setting, e.g. --set size=48 --set student_steps=900, or a trainer "
                   "config key of every run, e.g. --set optim.momentum=0.85 (repeatable; defaults in "
                   "maskinv/study/demo.yaml)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from maskinv.study import apply_settings_overrides, default_settings, quick_settings, run_demo

    s = quick_settings(args.seed) if args.quick else default_settings(args.seed)
    s.minutes = args.minutes
    if args.no_hg:
        s.with_hg = False
    s = apply_settings_overrides(s, args.overrides)
    run_demo(args.out, s)
    return 0

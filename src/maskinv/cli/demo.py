"""``maskinv demo`` (the MaskInv study end to end on SynthFaces, ``--select-lambda``) and
``maskinv study`` (the same over several seeds, with a summary)."""
from __future__ import annotations

import argparse

from maskinv.cli import args as A


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=A.positive_float, default=10.0, help="time budget; scales the step counts (default: 10)")
    p.add_argument("--no-hg", action="store_true", help="skip MaskInv-HG and its control")
    p.add_argument("--no-control", action="store_true", help="skip the control 'LG + HG's extra steps'")
    p.add_argument("--quick", action="store_true", help="seconds-scale smoke run (tiny data, few steps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study setting, e.g. --set size=48 --set student_steps=900, or a trainer "
                   "config key of every run, e.g. --set optim.momentum=0.85 (repeatable; defaults in "
                   "maskinv/study/demo.yaml)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the MaskInv study on SynthFaces (teacher, Aug baseline, MaskInv-LG/HG; U-U/M-U/M-M)",
        description="Generate SynthFaces, train a teacher, the ElasticFace-Arc-Aug baseline and MaskInv students "
        "(one runtime seed for all students), evaluate all on U-U, M-U and M-M, compare them with paired-bootstrap "
        "CIs, write results.json, report.md and plots, print the table. With --select-lambda: choose λ of "
        "MaskInv-LG on validation pairs instead (select_lambda.json/.md).",
    )
    p.add_argument("--out", default="demo_out", type=A.output_dir, help="output folder (default: demo_out)")
    p.add_argument("--seed", type=A.seed, default=0, help="seed of data, training and masks (default: 0)")
    p.add_argument("--select-lambda", metavar="L1,L2,...", default=None, nargs="?", const="25,75,250,750",
                   help="train the teacher and one MaskInv-LG per λ and pick λ by M-U accuracy on validation "
                   "pairs (identities disjoint from training and test; tie: lower EER); use a seed that the "
                   "seed study does not use, e.g. --seed 100. Without a list: 25,75,250,750 (λ/D at D=128: the "
                   "paper's LG 0.195 and HG 5.86 per sample and two steps between)")
    p.add_argument("--select-aug", metavar="LR1,LR2,.../S1,S2", default=None, nargs="?", const="",
                   help="tune the ElasticFace-Arc-Aug baseline's learning rate and scale s on validation pairs the "
                   "same way (one Aug run per pair; default grid 0.025,0.05,0.1/32,64); set the pick with "
                   "--set aug_lr=... --set aug_s=...")
    _common(p)
    p.set_defaults(func=_run)

    q = sub.add_parser(
        "study",
        help="the MaskInv study over several seeds: per-seed results and a summary with confidence intervals",
        description="Run `maskinv demo` for each seed into OUT/seed_N (a re-run reuses finished seeds), then write "
        "OUT/summary.json and OUT/summary.md: per model mean ± sd over seeds, per difference the mean over "
        "seeds with its 95 %% t-interval and each seed's paired-bootstrap interval.",
    )
    q.add_argument("--seeds", required=True, help="seeds, e.g. 1,2,3,4,5 or 1-5")
    q.add_argument("--out", default="study_out", type=A.output_dir, help="output folder (default: study_out)")
    _common(q)
    q.set_defaults(func=_run_study)


def _settings(args: argparse.Namespace, seed: int):
    from maskinv.study import apply_settings_overrides, default_settings, quick_settings

    s = quick_settings(seed) if args.quick else default_settings(seed)
    s.minutes = args.minutes
    if args.no_hg:
        s.with_hg = False
        s.with_control = False
    if args.no_control:
        s.with_control = False
    return apply_settings_overrides(s, args.overrides)


def _run(args: argparse.Namespace) -> int:
    s = _settings(args, args.seed)
    if args.select_lambda is not None and args.select_aug is not None:
        from maskinv.errors import ConfigError

        raise ConfigError("--select-lambda and --select-aug: one selection per output folder; run them one at a time")
    if args.select_aug is not None:
        from maskinv.study.select import parse_aug_grid, select_aug

        select_aug(args.out, s, *parse_aug_grid(args.select_aug))
        return 0
    if args.select_lambda is not None:
        from maskinv.study.select import parse_lambdas, select_lambda

        select_lambda(args.out, s, parse_lambdas(args.select_lambda))
        return 0
    from maskinv.study import run_demo

    run_demo(args.out, s)
    return 0


def _run_study(args: argparse.Namespace) -> int:
    from maskinv.study.seeds import parse_seeds, run_study

    seeds = parse_seeds(args.seeds)
    run_study(args.out, _settings(args, seeds[0]), seeds)
    return 0

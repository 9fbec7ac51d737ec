"""``maskinv study-real``: MaskInv on a real recogniser (SFace), real photos (LFW, RMFD)."""
from __future__ import annotations

import argparse
import shlex
import sys

from maskinv.cli import args as A


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study-real",
        help="MaskInv on SFace with real photos: fine-tune SFace's last blocks on LFW, test on RMFD masks and LFW",
        description="Start from SFace (frozen trunk through block 11, features cached once per image and mask draw), "
        "train SFace's last blocks + FC as ElasticFace-Arc-Aug, MaskInv-LG (primary), MaskInv-HG and MaskInv-adapt "
        "on the LFW training people of benchmarks/splits, and score every row on the same aligned sets: RMFD test "
        "(masked probes vs unmasked references) and LFW folds 6-10 (U-U, M-U, M-M), with identity-clustered "
        "paired intervals against SFace. --select chooses lr and λ on validation only (LFW validation pairs: fold 1 by default; rmfd_dev optional).",
    )
    p.add_argument("lfw_dir", type=A.existing_dir, help="LFW folder with images/ (deep-funneled), aligned112/ and pairs.txt")
    p.add_argument("rmfd_dir", type=A.existing_dir, help="RMFD folder with images/ and masked.txt")
    p.add_argument("--out", default="study_real_out", type=A.output_dir, help="output folder (default: study_real_out)")
    p.add_argument("--splits", type=A.existing_dir, default=None,
                   help="folder of the split lists (default: the checkout's benchmarks/splits)")
    p.add_argument("--cache", type=A.output_dir, default=None,
                   help="cache of aligned crops and trunk features (default: OUT/cache); shared by runs")
    p.add_argument("--select", action="store_true", help="choose lr and λ on validation pairs only (writes select.json)")
    p.add_argument("--selected", type=A.existing_file, default=None, metavar="SELECT_JSON",
                   help="apply the settings a --select run chose (its select.json); its trained candidates with "
                   "the same settings are reused, not retrained")
    p.add_argument("--against", type=A.existing_dir, default=None, metavar="RUN_DIR",
                   help="a finished study-real run that differs only in the mask renderer: its rows are scored on "
                   "this run's RMFD test and LFW clean pairs and compared row by row (paired intervals)")
    p.add_argument("--threads", type=A.positive_int, default=1,
                   help="torch threads (default: 1; the same seed, torch version and threads give the same weights)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set epochs=2 (repeatable; see maskinv.study.real.settings)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from maskinv.errors import DataFormatError
    from maskinv.study.real.select import selected_overrides
    from maskinv.study.real.settings import RealSettings, apply_overrides

    selected = None
    overrides = list(args.overrides)
    if args.selected is not None:
        try:
            selected = json.loads(Path(args.selected).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFormatError(f"{args.selected}: not a select.json ({e})") from None
        overrides = selected_overrides(selected) + overrides
    s = apply_overrides(RealSettings(), overrides)
    from maskinv.study.real.data import read_splits

    read_splits(args.splits)  # bad split files fail before anything is written
    torch.set_num_threads(args.threads)
    command = "maskinv " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["study-real"] else None
    if args.select:
        from maskinv.study.real.select import run_real_select

        run_real_select(args.out, args.lfw_dir, args.rmfd_dir, settings=s, splits_dir=args.splits,
                        cache_dir=args.cache, command=command)
        return 0
    from maskinv.study.real.run import run_real_study

    reuse = (Path(args.selected).resolve().parent / "candidates",) if args.selected is not None else ()
    doc = run_real_study(args.out, args.lfw_dir, args.rmfd_dir, settings=s, splits_dir=args.splits,
                         cache_dir=args.cache, selected=selected, command=command, reuse_dirs=reuse,
                         against=args.against)
    for k, g in doc["goals"].items():
        print(f"goal {k}: {g.get('verdict') or ('met' if g['met'] else 'not met')}")
    return 0

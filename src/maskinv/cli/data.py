"""``maskinv data``: synth, info, pack, unpack.

- ``data synth OUT_DIR --identities N --images-per-identity K --seed S [--size 112]
  [--val-identities M --val-pairs P] [--difficulty default] [--preview grid.png]``
- ``data info PATH [--json]``   (a RecordIO folder / ``.rec``, or a ``.bin``)
- ``data pack IMAGE_FOLDER OUT_DIR [--quality 95] [--strict]``
- ``data unpack REC_DIR OUT_DIR``
- ``data bin IMAGES_DIR OUT.bin [--pairs FILE] [--aligned] [--on-miss drop|center] [--detector NAME]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskinv.cli import args as A


def register(subparsers) -> None:
    """Add the ``data`` command group."""
    p = subparsers.add_parser("data", help="data sets: SynthFaces, RecordIO, .bin",
                              description=__doc__.replace("``", ""),  # plain text in --help
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(p))

    def _no_subcommand(_args) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_subcommand)

    s = sub.add_parser("synth", help="generate a SynthFaces data set (RecordIO + verification bin)")
    s.add_argument("out_dir", metavar="OUT_DIR", type=A.output_dir, help="output folder (created)")
    s.add_argument("--identities", type=A.positive_int, required=True, help="training identities")
    s.add_argument("--images-per-identity", type=A.positive_int, required=True, help="images per training identity")
    s.add_argument("--seed", type=A.seed, required=True, help="seed; the same seed gives the same bytes")
    s.add_argument("--size", type=A.positive_int, default=112, help="image side in pixels (default 112)")
    s.add_argument("--val-identities", type=A.non_negative_int, default=0, help="held-out identities for synth_val.bin")
    s.add_argument("--val-pairs", type=A.non_negative_int, default=0, help="pairs in synth_val.bin (half genuine)")
    s.add_argument("--difficulty", default="default", help="easy | default | hard | a number (nuisance scale)")
    s.add_argument("--workers", type=A.positive_int, default=1, help="processes (output bytes do not depend on it)")
    s.add_argument("--preview", metavar="PNG", type=A.output_file, help="also write a grid of sample identities (rows) x images")
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("info", help="describe a RecordIO folder or a verification .bin")
    i.add_argument("path", metavar="PATH", type=A.existing_path, help="RecordIO folder, .rec file or verification .bin")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_cmd_info)

    k = sub.add_parser("pack", help="image folder (one sub-folder per identity) -> RecordIO (InsightFace layout)")
    k.add_argument("image_folder", metavar="IMAGE_FOLDER", type=A.existing_dir, help="one sub-folder of images per identity")
    k.add_argument("out_dir", metavar="OUT_DIR", type=A.output_dir,
                   help="output folder for train.rec, train.idx, property and labels.json (created)")
    k.add_argument("--quality", type=A.int_range(1, 100), default=95, help="JPEG quality for images that are not JPEG already")
    add_strict_option(k)
    k.set_defaults(func=_cmd_pack)

    u = sub.add_parser("unpack", help="RecordIO -> OUT_DIR/<label or name>/<key>.<ext> (bytes unchanged; "
                       "identity names from the labels.json that pack writes)")
    u.add_argument("rec_dir", metavar="REC_DIR", type=A.existing_path, help="RecordIO folder (or its .rec file)")
    u.add_argument("out_dir", metavar="OUT_DIR", type=A.output_dir, help="output folder (created)")
    u.set_defaults(func=_cmd_unpack)

    b = sub.add_parser("bin", help="image folder + LFW-style pairs.txt -> aligned verification .bin")
    b.add_argument("images_dir", metavar="IMAGES_DIR", type=A.existing_dir, help="one sub-folder per identity (Name/Name_0001.png)")
    b.add_argument("out", metavar="OUT.bin", type=A.output_file, help="output verification .bin")
    add_folder_bench_options(b)
    b.set_defaults(func=_cmd_bin)


def add_folder_bench_options(p) -> None:
    """Options of a folder benchmark (shared by ``data bin`` and ``eval``)."""
    p.add_argument("--pairs", metavar="FILE", type=A.existing_file, help="LFW-style pairs file (default IMAGES_DIR/pairs.txt)")
    p.add_argument("--aligned", action="store_true", help="images are already 112x112 ArcFace crops: no detection")
    p.add_argument("--on-miss", choices=("drop", "center"), default="drop",
                   help="image without a detected face: drop it and its pairs (default) or use a centre crop")
    A.detector_arg(p)
    p.add_argument("--align-cache", default=None, metavar="DIR", type=A.output_dir,
                   help="cache of aligned crops, keyed by file sha256 + detector + size (default: next to the output)")
    add_strict_option(p)


def add_strict_option(p) -> None:
    """``--strict``: stop at the first unreadable image (default: skip it, with its pairs, and report it)."""
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable or undecodable image (default: skip and list it; a benchmark "
                        "drops its pairs)")


def prepare_folder_from_args(images_dir, args, default_cache: Path, probe_list: bool = False):
    """A :class:`FolderBench` from the shared folder options."""
    from maskinv.data.folder_bench import prepare_folder_bench

    return prepare_folder_bench(
        images_dir, args.pairs, aligned=args.aligned, detector=args.detector, on_miss=args.on_miss,
        cache_dir=Path(args.align_cache) if args.align_cache else default_cache, all_images=probe_list or None,
        progress=lambda line: print(line, file=sys.stderr), strict=args.strict,
    )


def _cmd_bin(args) -> int:
    from maskinv.data.folder_bench import save_folder_bin

    bench = prepare_folder_from_args(args.images_dir, args, Path(args.out).resolve().parent / ".maskinv-align-cache")
    if bench.pairs is None:
        from maskinv.errors import ConfigError

        raise ConfigError(f"{args.images_dir}: no pairs.txt; pass --pairs FILE")
    info = save_folder_bin(bench, args.out)
    print(json.dumps(info, indent=2))
    return 0


def _parse_difficulty(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _cmd_synth(args) -> int:
    from maskinv.data.synth import generate_dataset, preview_grid

    summary = generate_dataset(
        args.out_dir,
        identities=args.identities,
        images_per_identity=args.images_per_identity,
        seed=args.seed,
        size=args.size,
        val_identities=args.val_identities,
        val_pairs=args.val_pairs,
        difficulty=_parse_difficulty(args.difficulty),
        workers=args.workers,
        progress=True,
    )
    if args.preview:
        summary["preview"] = str(preview_grid(args.preview, seed=args.seed, identities=min(8, args.identities),
                                              images_per_identity=8, size=args.size,
                                              difficulty=_parse_difficulty(args.difficulty)))
    print(json.dumps(summary, indent=2))
    return 0


def _info(path: Path) -> dict:
    if path.is_file() and path.suffix != ".rec":
        from maskinv.data.bins import bin_info

        return bin_info(path)
    from maskinv.data.packing import read_label_names
    from maskinv.data.recordio import recordio_info

    info = recordio_info(path)
    names = read_label_names(info["path"], info["num_classes"])
    if names is not None:  # written by `data pack`: label -> identity folder name
        info["label_names"] = [names[i] for i in range(len(names))]
    return info


def _cmd_info(args) -> int:
    info = _info(Path(args.path))
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            if k == "label_names" and len(v) > 10:
                v = ", ".join(v[:10]) + f", ... ({len(v)} names)"
            print(f"{k}: {v}")
    return 0


def _cmd_pack(args) -> int:
    from maskinv.data.packing import pack_image_folder
    from maskinv.errors import ConfigError

    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    info = pack_image_folder(args.image_folder, args.out_dir, quality=args.quality, progress=True, strict=args.strict)
    for s in info["skipped"][:5]:
        print(f"maskinv: note: skipped {s['image']}: {s['reason']}", file=sys.stderr)
    if len(info["skipped"]) > 5:
        print(f"maskinv: note: skipped {len(info['skipped']) - 5} more (listed under 'skipped')", file=sys.stderr)
    print(json.dumps(info))
    return 0


def _cmd_unpack(args) -> int:
    from maskinv.data.packing import unpack_recordio

    print(json.dumps(unpack_recordio(args.rec_dir, args.out_dir, progress=True)))
    return 0

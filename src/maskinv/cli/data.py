"""``maskinv data``: synth, info, pack, unpack.

- ``data synth OUT_DIR --identities N --images-per-identity K --seed S [--size 112]
  [--val-identities M --val-pairs P] [--difficulty default] [--preview grid.png]``
- ``data info PATH [--json]``   (a RecordIO folder / ``.rec``, or a ``.bin``)
- ``data pack IMAGE_FOLDER OUT_DIR [--quality 95]``
- ``data unpack REC_DIR OUT_DIR``
- ``data bin IMAGES_DIR OUT.bin [--pairs FILE] [--aligned] [--on-miss drop|center] [--detector NAME]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``data`` command group."""
    p = subparsers.add_parser("data", help="data sets: SynthFaces, RecordIO, .bin", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(p))

    def _no_subcommand(_args) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_subcommand)

    s = sub.add_parser("synth", help="generate a SynthFaces data set (RecordIO + verification bin)")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--identities", type=int, required=True, help="training identities")
    s.add_argument("--images-per-identity", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--size", type=int, default=112, help="image side in pixels (default 112)")
    s.add_argument("--val-identities", type=int, default=0, help="held-out identities for synth_val.bin")
    s.add_argument("--val-pairs", type=int, default=0, help="pairs in synth_val.bin (half genuine)")
    s.add_argument("--difficulty", default="default", help="easy | default | hard | a number (nuisance scale)")
    s.add_argument("--workers", type=int, default=1, help="processes (output bytes do not depend on it)")
    s.add_argument("--preview", metavar="PNG", help="also write a grid of sample identities (rows) x images")
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("info", help="describe a RecordIO folder or a verification .bin")
    i.add_argument("path", metavar="PATH")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_cmd_info)

    k = sub.add_parser("pack", help="image folder (one sub-folder per identity) -> RecordIO (InsightFace layout)")
    k.add_argument("image_folder", metavar="IMAGE_FOLDER")
    k.add_argument("out_dir", metavar="OUT_DIR")
    k.add_argument("--quality", type=int, default=95, help="JPEG quality for images that are not JPEG already")
    k.set_defaults(func=_cmd_pack)

    u = sub.add_parser("unpack", help="RecordIO -> OUT_DIR/<label>/<key>.<ext> (bytes unchanged)")
    u.add_argument("rec_dir", metavar="REC_DIR")
    u.add_argument("out_dir", metavar="OUT_DIR")
    u.set_defaults(func=_cmd_unpack)

    b = sub.add_parser("bin", help="image folder + LFW-style pairs.txt -> aligned verification .bin")
    b.add_argument("images_dir", metavar="IMAGES_DIR", help="one sub-folder per identity (Name/Name_0001.png)")
    b.add_argument("out", metavar="OUT.bin")
    add_folder_bench_options(b)
    b.set_defaults(func=_cmd_bin)


def add_folder_bench_options(p) -> None:
    """Options of a folder benchmark (shared by ``data bin`` and ``eval``)."""
    p.add_argument("--pairs", metavar="FILE", help="LFW-style pairs file (default IMAGES_DIR/pairs.txt)")
    p.add_argument("--aligned", action="store_true", help="images are already 112x112 ArcFace crops: no detection")
    p.add_argument("--on-miss", choices=("drop", "center"), default="drop",
                   help="image without a detected face: drop it and its pairs (default) or use a centre crop")
    p.add_argument("--detector", default=None, metavar="NAME", help="face detector backend (default: the package default)")
    p.add_argument("--align-cache", default=None, metavar="DIR",
                   help="cache of aligned crops, keyed by file sha256 + detector + size (default: next to the output)")


def prepare_folder_from_args(images_dir, args, default_cache: Path, probe_list: bool = False):
    """A :class:`FolderBench` from the shared folder options."""
    from maskinv.data.folder_bench import prepare_folder_bench

    return prepare_folder_bench(
        images_dir, args.pairs, aligned=args.aligned, detector=args.detector, on_miss=args.on_miss,
        cache_dir=Path(args.align_cache) if args.align_cache else default_cache, all_images=probe_list or None,
        progress=lambda line: print(line, file=sys.stderr),
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
    from maskinv.errors import DataFormatError

    if path.is_file() and path.suffix != ".rec":
        from maskinv.data.bins import bin_info

        return bin_info(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(path)
    if len(ds) == 0:
        raise DataFormatError(f"{path}: no image records")
    h, w = ds.image_size
    return {
        "format": "recordio",
        "path": str(ds.rec_path),
        "layout": ds.layout,
        "num_images": len(ds),
        "num_classes": int(ds.num_classes),
        "image_size": [int(h), int(w)],
    }


def _cmd_info(args) -> int:
    info = _info(Path(args.path))
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _cmd_pack(args) -> int:
    import cv2

    from maskinv.data.folders import ImageFolderDataset
    from maskinv.data.recordio import decode_image, write_insightface_recordio
    from maskinv.errors import ConfigError, DataFormatError

    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    ds = ImageFolderDataset(args.image_folder)
    size: list[tuple[int, int]] = []

    def items():
        for i in range(len(ds)):
            data, label = ds.read_encoded(i)
            img = decode_image(data, str(ds.paths[i]))  # validates every image and its size
            if not size:
                size.append(img.shape[:2])
            elif img.shape[:2] != size[0]:
                raise DataFormatError(f"{ds.paths[i]}: {img.shape[1]}x{img.shape[0]} differs from the first image "
                                      f"({size[0][1]}x{size[0][0]}); a RecordIO set has one image size")
            if not _is_jpeg(data):
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, args.quality])
                data = buf.tobytes()
            yield label, data

    # image size is known only after the first decode: peek it
    first = decode_image(ds.read_encoded(0)[0], str(ds.paths[0]))
    rec = write_insightface_recordio(args.out_dir, items(), num_classes=ds.num_classes, image_size=first.shape[:2],
                                     progress=True, total=len(ds))
    print(json.dumps({"rec": str(rec), "num_images": len(ds), "num_classes": ds.num_classes,
                      "image_size": [int(first.shape[0]), int(first.shape[1])]}))
    return 0


_SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"GIF8", "gif"),
               (b"II*\x00", "tif"), (b"MM\x00*", "tif"))


def _ext(data: bytes) -> str:
    for sig, ext in _SIGNATURES:
        if data.startswith(sig):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _cmd_unpack(args) -> int:
    from tqdm import tqdm

    import os

    from maskinv.data.recordio import RecordIODataset

    ds = RecordIODataset(args.rec_dir)
    out = Path(args.out_dir)
    made: set[int] = set()
    for i in tqdm(range(len(ds)), desc="unpack", unit="img", leave=False):
        data, label = ds.read_encoded(i)
        if label not in made:
            (out / str(label)).mkdir(parents=True, exist_ok=True)
            made.add(label)
        target = out / str(label) / f"{int(ds.keys[i])}.{_ext(data)}"
        # temp + rename: never a truncated image; no fsync per file (millions of files)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    print(json.dumps({"out_dir": str(out), "num_images": len(ds)}))
    return 0

"""``maskinv mask`` and ``maskinv mask-bin``: synthetic masks on image files and verification bins.

    maskinv mask INPUT OUTPUT [--kind K|random] [--seed S] [--landmarks FILE] [--preview grid.png]
    maskinv mask-bin IN.bin OUT.bin --protocol {mu,mm} --seed S [--kind K] [--format jpg|png]
    maskinv mask-realism --model M --bench FOLDER --probe-list MASKED.txt [--people FILE] [--renderer v1|mesh] [--draws N] --out DIR

Image ``i`` (sorted relative path order for a folder, 0 for a single file) is masked with the
generator ``image_rng(seed, i)``: reruns give the same bytes, and any image can be regenerated.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from maskinv.cli import args as A
from maskinv.masks.protocols import DESCRIPTIONS, MASKED_PROTOCOLS

#: Output formats of ``maskinv mask`` images and previews.
_OUTPUT_FORMATS = ("jpg", "jpeg", "png")


def register(subparsers) -> None:
    """Add the ``mask`` and ``mask-bin`` commands."""
    from maskinv.masks.kinds import MASK_KINDS

    kinds = ("random",) + MASK_KINDS
    p = subparsers.add_parser(
        "mask", help="draw synthetic masks on an aligned image or a folder of them",
        description="Draw a seeded synthetic mask on an aligned face image or on every image of a folder "
                    "(output mirrors the folder). Landmarks default to the 112x112 ArcFace template scaled "
                    "to each image.")
    p.add_argument("input", type=A.existing_path, help="image file or folder of images")
    p.add_argument("output", type=A.output_path, help="output image file (or folder, for a folder input)")
    p.add_argument("--kind", default="random", choices=kinds, help="mask kind (default: random per image)")
    p.add_argument("--renderer", default="v1", choices=("v1", "mesh"),
                   help="v1 (default): outlines from 5/68 points; mesh: 468-point face mesh, real-world looks")
    p.add_argument("--seed", type=A.seed, default=0, help="seed; image i uses image_rng(seed, i) (default 0)")
    p.add_argument("--landmarks", default=None, type=A.existing_file,
                   help="landmarks: .npy of shape (K,2) for all images or (N,K,2) in sorted order, or .json "
                        "mapping relative path -> [[x,y],...]; K = 5 (ArcFace order) or 68 (iBUG)")
    p.add_argument("--preview", default=None, metavar="GRID.png", type=A.output_file,
                   help="also write a picture grid of many random masks on the first few faces")
    p.add_argument("--preview-faces", type=A.positive_int, default=4, help="faces (rows) in the preview grid (default 4)")
    p.add_argument("--preview-masks", type=A.positive_int, default=8, help="masks (columns) per face in the preview (default 8)")
    p.add_argument("--quality", type=A.int_range(1, 100), default=95, help="JPEG quality of .jpg outputs (default 95)")
    p.set_defaults(func=cmd_mask)

    b = subparsers.add_parser(
        "mask-bin", help="write a masked copy of a verification .bin (M-U or M-M protocol)",
        description="Masked copy of a verification bin. mu: exactly the second image of every pair is masked; "
                    "mm: both. Image i's mask comes from (seed, i) alone, so the probe of a pair gets the same "
                    "mask in mu and mm files with the same seed. Unmasked images keep their bytes.")
    b.add_argument("input", type=A.existing_file, help="input .bin")
    b.add_argument("output", type=A.output_file, help="output .bin")
    b.add_argument("--protocol", required=True, choices=MASKED_PROTOCOLS,
                   help="; ".join(f"{p}: {DESCRIPTIONS[p]}" for p in MASKED_PROTOCOLS))
    b.add_argument("--seed", type=A.seed, required=True, help="mask seed; image i uses image_rng(seed, i)")
    b.add_argument("--kind", default="random", choices=kinds, help="mask kind (default: random per image)")
    b.add_argument("--format", dest="image_format", default="jpg", choices=("jpg", "png"),
                   help="encoding of masked images: jpg (quality --quality, default) or png (lossless)")
    b.add_argument("--quality", type=A.int_range(1, 100), default=95, help="JPEG quality (default 95)")
    b.add_argument("--progress", action="store_true", help="show a progress bar")
    b.set_defaults(func=cmd_mask_bin)

    r = subparsers.add_parser(
        "mask-realism", help="how much synthetic masks cost a model compared with real masks (realism ratio)",
        description="Scores held-back unmasked probes, the same probes with synthetic masks drawn on the full photo, "
                    "and real masked probes against the same unmasked references (people with >= 1 real masked and "
                    ">= 2 unmasked photos; MTCNN boxes for every model; each identity weighs equally). Writes "
                    "realism.json, realism.md and contact_sheet.png (real | synthetic | unmasked) to --out.")
    r.add_argument("--model", required=True, type=A.model_ref,
                   help="model file (.pt/.pth/.onnx) or a named model such as 'dlib'")
    r.add_argument("--arch", default=None, help="architecture name for a bare .pth (r18 r34 r50 r100 r200 mbf)")
    r.add_argument("--bench", required=True, type=A.existing_dir, help="photo folder: one sub-folder per identity")
    r.add_argument("--probe-list", dest="probe_list", required=True, type=A.existing_file,
                   help="text file listing the real masked photos (relative paths, one per line)")
    r.add_argument("--people", default=None, type=A.existing_file,
                   help="only these identities (one folder name per line), e.g. benchmarks/splits/rmfd_dev.txt")
    r.add_argument("--renderer", default="v1", type=A.choice_list(("v1", "mesh"), "renderer"),
                   help="synthetic mask renderer(s): v1 (5-point outlines), mesh (468-point mesh, real-world looks), "
                        "or v1,mesh (both in one run, sharing detections and embeddings; files get a _v1/_mesh suffix)")
    r.add_argument("--kind", default="random", choices=kinds, help="mask kind (default: random per probe)")
    r.add_argument("--seed", type=A.seed, default=0, help="seed of the probe choice and the masks (default 0)")
    r.add_argument("--holdout", type=A.positive_int, default=1,
                   help="unmasked photos per person held back as probes (at most all but one; default 1)")
    r.add_argument("--bootstrap", type=A.positive_int, default=1000,
                   help="bootstrap replicates over identities (default 1000)")
    r.add_argument("--draws", type=A.positive_int, default=5,
                   help="synthetic masks per unmasked probe, all scored (draw 0 = the single draw of --draws 1; "
                        "each probe's draws share its weight; default 5)")
    r.add_argument("--out", required=True, type=A.output_dir, help="output folder")
    r.set_defaults(func=cmd_mask_realism)


def _list_images(root: Path) -> list[Path]:
    from maskinv.utils.images import IMAGE_EXTENSIONS

    return sorted((q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda q: q.relative_to(root).as_posix())


def _write(path: Path, image, quality: int) -> None:
    from maskinv.utils.images import encode_format_for, encode_image
    from maskinv.utils.io import atomic_write_bytes

    atomic_write_bytes(path, encode_image(image, encode_format_for(path, _OUTPUT_FORMATS), quality))


def cmd_mask(args: argparse.Namespace) -> int:
    from maskinv.errors import ConfigError
    from maskinv.masks import apply_mask, image_rng
    from maskinv.masks.geometry import as_landmarks
    from maskinv.masks.landmark_files import load_landmarks
    from maskinv.masks.preview import mask_preview
    from maskinv.utils.images import IMAGE_EXTENSIONS, decode_image, encode_format_for

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise FileNotFoundError(2, "No such file or directory", str(src))
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if src.is_dir():
        files = _list_images(src)
        if not files:
            raise ConfigError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
        rels = [f.relative_to(src).as_posix() for f in files]
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"{dst}: output must be a folder for a folder input")
        outs = [dst / r for r in rels]
        if dst.resolve() == src.resolve():
            raise ConfigError(f"{dst}: output folder would overwrite the input images")
    else:
        files, rels = [src], [src.name]
        outs = [dst / src.name if dst.is_dir() else dst]
        if outs[0].resolve() == src.resolve():
            raise ConfigError(f"{dst}: output would overwrite the input image")
    lms = load_landmarks(args.landmarks, rels) if args.landmarks else [None] * len(files)
    for f, lm in zip(files, lms):  # validate every landmark set before writing anything
        if lm is not None:
            as_landmarks(lm, (1, 1), source=f"{args.landmarks} ({f.name})")
    if args.preview:
        encode_format_for(args.preview, _OUTPUT_FORMATS)  # refuse a bad preview name before any work
    previews = []
    for i, (f, o, lm) in enumerate(zip(files, outs, lms)):
        img = decode_image(f.read_bytes(), str(f))
        res = apply_mask(img, lm, image_rng(args.seed, i), args.kind, renderer=args.renderer)
        _write(o, res.image, args.quality)
        if len(previews) < args.preview_faces:
            previews.append((img, lm))
    print(f"masked {len(files)} image(s) -> {dst}")
    if args.preview:
        grid = mask_preview([p[0] for p in previews], [p[1] for p in previews], args.kind, args.seed,
                            max(1, args.preview_masks))
        _write(Path(args.preview), grid, 95)
        print(f"preview grid -> {args.preview}")
    return 0


def cmd_mask_bin(args: argparse.Namespace) -> int:
    from maskinv.errors import ConfigError
    from maskinv.masks.bins import mask_bin

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if not Path(args.input).is_file():
        raise FileNotFoundError(2, "No such file or directory", str(args.input))
    info = mask_bin(args.input, args.output, args.protocol, args.seed, args.kind,
                    image_format=args.image_format, quality=args.quality, progress=args.progress)
    print(f"{info['protocol']}: masked {info['masked']} of {info['images']} images "
          f"({info['pairs']} pairs, {info['image_format']}) -> {info['output']}")
    return 0


def cmd_mask_realism(args: argparse.Namespace) -> int:
    from maskinv.api import load_model
    from maskinv.evaluate.realism import realism, realism_report
    from maskinv.masks.mesh import MESH_KINDS
    from maskinv.utils.io import atomic_write_json, atomic_write_text

    from maskinv.errors import ConfigError

    renderers = list(dict.fromkeys(x.strip() for x in args.renderer.split(",")))
    if "mesh" in renderers and args.kind not in ("random",) + MESH_KINDS:
        raise ConfigError(f"argument --kind: the mesh renderer draws {', '.join(MESH_KINDS)} or random, not {args.kind!r}")
    model = load_model(args.model, args.arch)
    out = Path(args.out)
    cache: dict = {}
    results = []
    for rname in renderers:
        res = realism(model, args.bench, args.probe_list, people_file=args.people, renderer=rname,
                      kind=args.kind, seed=args.seed, holdout=args.holdout, bootstrap=args.bootstrap, cache=cache,
                      draws=args.draws)
        results.append((rname, res.pop("_sheet"), res))
    for rname, sheet, res in results:   # write only once every renderer has run
        sfx = f"_{rname}" if len(renderers) > 1 else ""
        atomic_write_json(out / f"realism{sfx}.json", res)
        atomic_write_text(out / f"realism{sfx}.md", realism_report(res))
        if sheet is not None:
            _write(out / f"contact_sheet{sfx}.png", sheet, 95)
        r = res["ratio"]["eer"]
        pt = "n/a" if r["point"] is None else f"{r['point']:.2f}"
        ci = "" if r["ci95"] is None else f" [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        print(f"{rname}: realism ratio (EER) {pt}{ci}; EER unmasked/synthetic/real "
              + "/".join(f"{100 * res['metrics'][c]['eer']:.2f}" for c in ("unmasked", "synthetic", "real"))
              + f" % -> {out}")
    return 0

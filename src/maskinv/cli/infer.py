"""Inference commands: ``align``, ``embed``, ``verify``, ``calibrate``, ``gallery``, ``export``.

``maskinv verify`` exit codes: 0 verified, 1 not verified, 2 error (no face, bad file,
no calibrated threshold, ...). ``maskinv align IN_DIR OUT_DIR``: 0 every image aligned,
1 some images missed (listed in the report), 2 error. ``embed`` and ``gallery add/search`` go on
past images that cannot be read or show no face: 0 all embedded, 1 some skipped (each named on
stderr, the rest written), 2 error (with ``--strict``: the first such image). Every other
command: 0 success, 2 error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskinv.cli import args as A
from maskinv.utils.precision import MODES_INFER
from maskinv.masks.protocols import DEFAULT_PROTOCOL, DESCRIPTIONS, PROBE_REF, PROTOCOLS

VERIFY_EPILOG = """exit codes: 0 = verified (same person), 1 = not verified, 2 = error
(unreadable image, no face found, model/threshold problem).
threshold: --threshold T (explicit cosine) or --fmr F (calibrated with `maskinv calibrate`
for this model); with neither, the calibrated threshold beside the model is used
(smallest FMR of --protocol), else an error."""

BATCH_EPILOG = """exit codes: 0 = every image embedded, 1 = some images skipped (one line each on stderr
naming the file and why, then a summary; the others are written), 2 = error (bad arguments,
model problem; with --strict also the first image that cannot be read or shows no face).
aligned crops of another size than the model's input are resized (one note)."""

ALIGN_EPILOG = """folder mode: `maskinv align IN_DIR OUT_DIR` aligns the largest face of every image in the
tree (--all: every face), mirrors the tree under OUT_DIR (JPEG stays JPEG, other formats
become PNG) and writes OUT_DIR/align_report.csv and .json (per image: found, score, box,
five landmarks, or the reason of a miss). A miss never stops the run.
exit codes: single image: 0 aligned, 2 error (no face, unreadable file).
folder: 0 every image aligned, 1 some images missed (see the report), 2 error (no images, bad path).
detector: mtcnn (default; finds masked faces), yunet (best on tight masked crops such as RMFD's)
or dlib (HOG; misses most masked faces). Without
the MTCNN weights the default falls back to dlib with a warning; install them with
`pip install --no-deps facenet-pytorch==2.6.0`."""

def _add_detector_arg(p: argparse.ArgumentParser) -> None:
    A.detector_arg(p)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=A.model_ref,
                   help=A.model_help("backbone.pt (+ .json sidecar), an InsightFace/ElasticFace/MagFace .pth, an .onnx "
                                     "(ours or an ArcFace-style zoo model)"))
    p.add_argument("--arch", default=None, help=A.arch_help())
    p.add_argument("--layout", choices=("auto", "insightface", "elasticface", "magface"), default=None,
                   help=".pth checkpoint layout (default auto: MagFace is detected from its key prefix)")
    p.add_argument("--input-mean", type=A.number, default=None,
                   help="model input = (pixel - MEAN) / STD, pixels 0..255 (e.g. 127.5 for zoo ONNX models); "
                        "a sidecar JSON or the model's metadata, if any, must agree")
    p.add_argument("--input-std", type=A.positive_float, default=None, help="see --input-mean (e.g. 127.5)")
    p.add_argument("--channel-order", choices=("RGB", "BGR"), default=None, help="channel order the model expects")
    p.add_argument("--backend", choices=("torch", "onnx"), default=None, help="default: from the file suffix")
    p.add_argument("--precision", choices=[m for m in MODES_INFER if m != "auto"], default="fp32",
                   help="torch backend only")


def _add_face_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aligned", action="store_true", help="inputs are already aligned crops: skip detection")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no flip test (faster; must match how thresholds were calibrated)")
    _add_detector_arg(p)


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    p.epilog = BATCH_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be read or shows no face (exit 2) instead of skipping it")


def register(subparsers) -> None:
    p = subparsers.add_parser("align", help="detect faces and write ArcFace-aligned crops (an image or a folder)",
                              description="Detect faces (MTCNN, five landmarks) and write the ArcFace-aligned crop(s) "
                                          "of one image, or of every image in a folder tree.",
                              epilog=ALIGN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=A.existing_path, help="input image, or a folder (folder mode)")
    p.add_argument("out", type=A.output_path, help="output image (.png/.jpg; with --all: OUT_0.png, OUT_1.png, ... largest first), "
                               "or the output folder in folder mode")
    p.add_argument("--all", action="store_true", help="write every face, not just the largest")
    p.add_argument("--size", type=A.positive_int, default=112, help="crop side in pixels (template scaled; default 112)")
    p.add_argument("--json", action="store_true", help="print the detections as JSON (single image)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="folder mode: no progress bar")
    _add_detector_arg(p)
    p.set_defaults(func=_cmd_align)

    p = subparsers.add_parser("embed", help="face images -> L2-normalised embeddings (.npy)",
                              description="Embed the largest face of each image (or aligned crops) into an (N, D) "
                                          "float32 .npy, rows in argument order.")
    p.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="face photos (or aligned crops with --aligned)")
    _add_model_args(p)
    _add_face_args(p)
    p.add_argument("--out", required=True, type=A.output_file,
                   help="output .npy; OUT.json beside it lists the image of each row and the images skipped")
    _add_batch_args(p)
    p.set_defaults(func=_cmd_embed)

    p = subparsers.add_parser("verify", help="one-to-one decision between two face images",
                              description="Decide whether two photos show the same person.",
                              epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_a", type=A.existing_file, help="first face photo")
    p.add_argument("image_b", type=A.existing_file, help="second face photo")
    _add_model_args(p)
    _add_face_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fmr", type=A.probability, default=None, help="use the threshold calibrated at this false-match rate")
    g.add_argument("--threshold", type=A.cosine, default=None, help="explicit cosine threshold in [-1, 1]")
    p.add_argument("--protocol", choices=(*PROTOCOLS, PROBE_REF), default=DEFAULT_PROTOCOL,
                   help=f"calibration scenario of the threshold (default {DEFAULT_PROTOCOL}: masked probe vs unmasked; "
                        "probe_ref: calibrated on really masked photos with --probe-list)")
    p.add_argument("--thresholds", metavar="PATH", type=A.existing_file, default=None,
                   help="calibrated thresholds file to read (default: the one beside the model; named models such as "
                        "dlib have none)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_cmd_verify)

    p = subparsers.add_parser("calibrate", help="store the threshold that gives a false-match rate on a benchmark",
                              description="Score a verification .bin or an image folder (as `maskinv eval` takes it: "
                                          "pairs.txt, or --probe-list of masked photos for real masks) and write the "
                                          "threshold at --fmr, with provenance, to <model stem>.thresholds.json beside "
                                          "the model or to --thresholds PATH (needed for dlib). The pair counts and the "
                                          "destination are checked before anything is embedded.")
    _add_model_args(p)
    p.add_argument("--bench", required=True, type=A.existing_path,
                   help="verification .bin, or an image folder (Name/Name_0001.jpg + pairs.txt, or with --probe-list)")
    p.add_argument("--protocol", choices=(*PROTOCOLS, PROBE_REF), default=DEFAULT_PROTOCOL,
                   help="; ".join(f"{p}: {DESCRIPTIONS[p]}" for p in PROTOCOLS) + f" (default {DEFAULT_PROTOCOL}); "
                        "probe_ref: --probe-list images (real masks) against every other image (set by --probe-list)")
    p.add_argument("--thresholds", metavar="PATH", type=A.output_file, default=None,
                   help="thresholds file to write (default: <model stem>.thresholds.json beside the model; "
                        "required for named models such as dlib)")
    p.add_argument("--probe-list", metavar="FILE", default=None, type=A.existing_file,
                   help="folder benchmarks: the listed (masked) images are probes, all others references (probe_ref)")
    from maskinv.cli.data import add_folder_bench_options

    add_folder_bench_options(p)
    p.add_argument("--fmr", type=A.probability, default=1e-3, help="target false-match rate (default 1e-3)")
    p.add_argument("--seed", type=A.seed, default=0, help="mask seed of the protocol")
    p.add_argument("--mask-kind", default="random", type=A.mask_kind, help="mask kind (default: random mix of all kinds)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no flip test (verify must then use --no-flip too)")
    p.add_argument("--batch-size", type=A.positive_int, default=128, help="images per forward pass (default 128)")
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("gallery", help="1:N search: add, search, list, remove identities in a SQLite gallery")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    a = gsub.add_parser("add", help="enrol images of one identity, or a folder tree (one sub-folder per person)",
                        description="Enrol photos: `gallery add DB NAME IMAGE...` for one person, or "
                                    "`gallery add DB --tree FOLDER` for everybody at once (FOLDER/<person>/<photo>). "
                                    "A photo already enrolled (an identical template) is refused (one person) or "
                                    "skipped and listed (--tree).")
    a.add_argument("db", type=A.output_file, help="gallery database (SQLite; created if missing)")
    a.add_argument("name", nargs="?", default=None, help="identity name (not with --tree)")
    a.add_argument("images", nargs="*", metavar="IMAGE", type=A.existing_file, help="photos of this identity")
    a.add_argument("--tree", metavar="FOLDER", type=A.existing_dir, default=None,
                   help="enrol every sub-folder of FOLDER as one identity (its name), all its photos")
    a.add_argument("--skip-list", metavar="FILE", type=A.existing_file, default=None,
                   help="with --tree: photos not to enrol (Name/photo.jpg or a stem per line), e.g. the masked ones "
                        "kept as probes")
    _add_model_args(a)
    _add_face_args(a)
    _add_batch_args(a)
    a.set_defaults(func=_cmd_gallery_add)
    s = gsub.add_parser("search", help="top-k identities for each probe image")
    s.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    s.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="probe photos")
    s.add_argument("-k", type=A.positive_int, default=5, help="matches per probe (default 5)")
    t = s.add_mutually_exclusive_group()
    t.add_argument("--threshold", type=A.cosine, default=None,
                   help="best score below this cosine -> the answer is 'unknown' (open-set search)")
    t.add_argument("--fpir", type=A.probability, default=None,
                   help="use the threshold `gallery evaluate --store` measured for this false-positive "
                        "identification rate")
    t.add_argument("--fmr", type=A.probability, default=None,
                   help="use the 1:1 threshold calibrated at this false-match rate (`maskinv calibrate`; "
                        "per comparison: a gallery of N people false-matches more often)")
    s.add_argument("--protocol", choices=(*PROTOCOLS, PROBE_REF), default=DEFAULT_PROTOCOL,
                   help="with --fmr: the calibration scenario (default mu)")
    s.add_argument("--thresholds", metavar="PATH", type=A.existing_file, default=None,
                   help="with --fmr: the thresholds file (default: beside the model; dlib has none)")
    _add_model_args(s)
    _add_face_args(s)
    s.add_argument("--json", action="store_true", help="print the matches as JSON")
    _add_batch_args(s)
    s.set_defaults(func=_cmd_gallery_search)
    ev = gsub.add_parser("evaluate", help="1:N accuracy of a gallery: rank-1/rank-k and FNIR at FPIR for probe photos",
                         description="Search every probe photo of FOLDER (FOLDER/<person>/<photo>; only those in "
                                     "--probe-list when given) in the gallery and report rank-k identification rates "
                                     "of the probes whose person is enrolled and FNIR at FPIR (non-mated searches: "
                                     "probes of people not enrolled, and every enrolled probe searched without its "
                                     "own person). Results on stdout; --store keeps the FPIR thresholds in the "
                                     "gallery for `gallery search --fpir`.")
    ev.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    ev.add_argument("folder", metavar="FOLDER", type=A.existing_dir, help="probe photos, one sub-folder per person")
    ev.add_argument("--probe-list", metavar="FILE", type=A.existing_file, default=None,
                    help="only these photos are probes (Name/photo.jpg or a stem per line), e.g. the masked ones")
    ev.add_argument("--rank", type=A.positive_int, action="append", default=None, help="rank k to report (default 1 and 5)")
    ev.add_argument("--fpir", type=A.probability, action="append", default=None,
                    help="FPIR to report FNIR at (repeatable; default 0.1, 0.01, 0.001)")
    ev.add_argument("--store", action="store_true", help="store the thresholds at --fpir in the gallery")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_model_args(ev)
    _add_face_args(ev)
    _add_batch_args(ev)
    ev.set_defaults(func=_cmd_gallery_evaluate)
    ls = gsub.add_parser("list", help="identities and template counts")
    ls.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    ls.set_defaults(func=_cmd_gallery_list)
    rm = gsub.add_parser("remove", help="delete an identity")
    rm.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    rm.add_argument("name", help="identity name")
    rm.set_defaults(func=_cmd_gallery_remove)
    p.set_defaults(func=lambda args, _p=p: (_p.print_help(sys.stderr), 2)[1])

    p = subparsers.add_parser("export", help="export a model (onnx)")
    esub = p.add_subparsers(dest="export_format", metavar="FORMAT")
    o = esub.add_parser("onnx", help="ONNX with dynamic batch, metadata and a parity check vs PyTorch")
    o.add_argument("model", type=A.existing_file, help="PyTorch backbone (.pt + sidecar, training checkpoint or .pth)")
    o.add_argument("out", type=A.output_file, help="output .onnx")
    o.add_argument("--arch", default=None, help=A.arch_help())
    o.add_argument("--opset", type=A.int_range(17, 23), default=17, help="ONNX opset version, 17..23 (default 17)")
    o.add_argument("--tol", type=A.non_negative_float, default=1e-4, help="max cosine distance allowed by the parity check")
    o.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    o.set_defaults(func=_cmd_export_onnx)
    p.set_defaults(func=lambda args, _p=p: (_p.print_help(sys.stderr), 2)[1])


# --------------------------------------------------------------------------- helpers
def _model(args):
    from maskinv.api import load_model

    extra = {k: getattr(args, k, None) for k in ("layout", "input_mean", "input_std", "channel_order")}
    return load_model(args.model, args.arch, backend=args.backend, precision=args.precision,
                      **{k: v for k, v in extra.items() if v is not None})


def _embed_batch(args, m):
    """Embed ``args.images`` (missing files refused first: a typo is not a bad photo)."""
    from maskinv.api import embed_batch
    from maskinv.errors import ConfigError

    for im in args.images:
        if not Path(im).is_file():
            raise ConfigError(f"{im}: image file not found")
    return embed_batch(args.images, m, aligned=args.aligned, flip=args.flip, detector=args.detector,
                       on_error="raise" if args.strict else "skip")


def _cli_words(text: str, args) -> str:
    """A library hint in command-line words (``pass aligned=True`` -> ``pass --aligned``), or dropped
    when this command has no such flag (the same table as the one-line errors)."""
    import re

    from maskinv.cli import _CLI_PHRASES

    for py, cli, flag in _CLI_PHRASES:
        if py in text:
            has = hasattr(args, flag.lstrip("-").replace("-", "_"))
            text = text.replace(py, cli) if has else re.sub(rf"\s*\([^()]*{re.escape(py)}[^()]*\)", "", text)
    return text


def _report_misses(args, r, what: str) -> int:
    """One stderr line per skipped image, then a summary; the exit code (1 when any was skipped)."""
    if not r.misses:
        return 0
    cmd = " ".join(x for x in (args.command, getattr(args, "gallery_command", None)) if x)
    for miss in r.misses:
        print(f"maskinv {cmd}: skipped {_cli_words(miss.reason, args)}", file=sys.stderr)
    print(f"maskinv {cmd}: {r.summary()}; {what} (--strict stops at the first)", file=sys.stderr)
    return 1


def _encode_image(path: Path, rgb) -> bytes:
    from maskinv.utils.images import encode_format_for, encode_image

    return encode_image(rgb, encode_format_for(path, default="png"))


# --------------------------------------------------------------------------- commands
def _cmd_align(args) -> int:
    from maskinv.align import align_faces
    from maskinv.utils.io import atomic_write_bytes

    from maskinv.errors import ConfigError

    src, out = Path(args.image), Path(args.out)
    if src.is_dir() and out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; with a folder as input (folder mode) OUT must be a folder")
    if not src.is_dir() and out.is_dir():
        raise ConfigError(f"{out}: is a folder; for one image OUT is the output image file (.png/.jpg)")
    if src.is_dir():
        return _align_folder(args)
    faces = align_faces(args.image, args.detector, size=args.size, name=args.image)
    if not args.all:
        faces = faces[:1]
    out = Path(args.out)
    written = []
    for i, f in enumerate(faces):
        dst = out.with_name(f"{out.stem}_{i}{out.suffix}") if args.all else out
        atomic_write_bytes(dst, _encode_image(dst, f.crop))
        written.append({"out": str(dst), **f.to_dict()})
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        for w in written:
            print(f"{w['out']}: face box {w['box']} score {w['score']}")
    return 0


def _align_folder(args) -> int:
    from maskinv.align.folder import align_folder

    r = align_folder(args.image, args.out, args.detector, size=args.size, all_faces=args.all,
                     progress=args.progress)
    for row in r.rows:
        if not row["found"]:
            print(f"{Path(args.image) / row['image']}: {row['reason']}", file=sys.stderr)
    print(r.summary())
    return 0 if r.n_missed == 0 else 1


def _cmd_embed(args) -> int:
    import io

    import numpy as np

    from maskinv.errors import ConfigError
    from maskinv.utils.io import atomic_write_bytes, atomic_write_json

    out = Path(args.out)
    rows_file = out.with_suffix(".json")
    if out.suffix.lower() == ".json":
        raise ConfigError(f"--out {out}: give a .npy name (the row list is written to NAME.json beside it)")
    m = _model(args)
    r = _embed_batch(args, m)
    emb = r.embeddings
    buf = io.BytesIO()
    np.save(buf, emb)
    atomic_write_bytes(out, buf.getvalue())
    # which input each row is: with skipped images, row i is not argument i
    atomic_write_json(rows_file, {
        "format": "maskinv-embeddings", "format_version": 1, "embeddings": out.name,
        "rows": r.sources, "input_index": r.indices, "skipped": [x.to_dict() for x in r.misses],
        "model_fingerprint": m.fingerprint, "embedding_size": int(m.embedding_size),
        "aligned": bool(args.aligned), "flip": bool(args.flip)})
    print(f"{out}: {emb.shape[0]} embeddings of dimension {m.embedding_size} (image of each row: {rows_file})")
    return _report_misses(args, r, f"{emb.shape[0]} rows written to {out}")


def _cmd_verify(args) -> int:
    from maskinv.api import verify

    import time

    _check_thresholds_arg(args)
    t_load = time.perf_counter()
    m = _model(args)
    load_ms = (time.perf_counter() - t_load) * 1e3
    threshold, from_file = args.threshold, None
    if args.thresholds and threshold is None:
        from maskinv.thresholds import lookup

        from_file = lookup(args.thresholds, m.fingerprint, fmr=args.fmr, protocol=args.protocol, flip=args.flip)
        threshold = float(from_file["threshold"])
    r = verify(args.image_a, args.image_b, m, threshold=threshold, fmr=None if from_file else args.fmr,
               protocol=args.protocol, aligned=args.aligned, flip=args.flip, detector=args.detector)
    if from_file is not None:
        r.threshold_source, r.provenance = "calibrated", from_file
    if args.json:
        print(r.to_json())
    else:
        src = r.threshold_source
        if r.provenance:
            pv = r.provenance
            src += f" at FMR {pv['fmr']:g} ({pv['protocol']}, {Path(pv['bench']['path']).name}, {pv['bench']['num_pairs']} pairs)"
        print(f"{'VERIFIED' if r.verified else 'NOT VERIFIED'}: score {r.score:.4f} "
              f"{'>=' if r.verified else '<'} threshold {r.threshold:.4f} [{src}] "
              f"in {r.timings['total_ms']:.0f} ms (detection, embedding and scoring; loading the model took "
              f"{load_ms:.0f} ms, Python and library start-up are not counted)")
    return 0 if r.verified else 1


def _cmd_calibrate(args) -> int:
    from maskinv.errors import ConfigError
    from maskinv.thresholds import calibrate

    bench = Path(args.bench)
    if not bench.is_dir():
        used = [f for f, v in (("--pairs", args.pairs), ("--probe-list", args.probe_list)) if v]
        if used:
            raise ConfigError(f"{', '.join(used)} apply to a folder benchmark; --bench {bench} is a file")
    m = _model(args)
    cache = Path(args.align_cache) if args.align_cache else None
    e = calibrate(m, bench, fmr=args.fmr, protocol=args.protocol, seed=args.seed, flip=args.flip,
                  mask_kind=args.mask_kind, batch_size=args.batch_size, out=args.thresholds, pairs=args.pairs,
                  probe_list=args.probe_list, aligned=args.aligned, detector=args.detector, on_miss=args.on_miss,
                  cache_dir=cache, strict=args.strict, log=lambda line: print(line, file=sys.stderr))
    b = e["bench"]
    print(f"{e['file']}: {e['protocol']}@{args.fmr:g} threshold {e['threshold']:.6f} "
          f"(achieved FMR {e['fmr_achieved']:.3g}, TAR {e['tar']:.4f}; {b['num_genuine']:,} genuine and "
          f"{b['num_impostor']:,} impostor comparisons)")
    return 0


def _tree_photos(folder, skip_list=None, keep_list=None) -> tuple[list[Path], list[str]]:
    """(photos, person of each) of FOLDER/<person>/<photo>, minus ``skip_list`` / only ``keep_list``."""
    import numpy as np

    from maskinv.data.folders import scan_image_folder

    classes, paths, labels = scan_image_folder(folder)
    keys = [Path(q).relative_to(folder).as_posix() for q in paths]
    sel = np.ones(len(paths), bool)
    if skip_list or keep_list:
        from maskinv.evaluate.probe_ref import read_probe_list

        if skip_list:
            sel &= ~read_probe_list(skip_list, keys)
        if keep_list:
            sel &= read_probe_list(keep_list, keys)
    return [Path(paths[i]) for i in np.flatnonzero(sel)], [classes[int(labels[i])] for i in np.flatnonzero(sel)]


def _cmd_gallery_add(args) -> int:
    from maskinv.errors import ConfigError
    from maskinv.gallery import Gallery

    if args.tree is not None:
        if args.name is not None or args.images:
            raise ConfigError("give either --tree FOLDER or NAME IMAGE..., not both")
        photos, people = _tree_photos(args.tree, skip_list=args.skip_list)
        if not photos:
            raise ConfigError(f"{args.tree}: no photos to enrol")
        args.images = [str(q) for q in photos]
    else:
        if args.skip_list:
            raise ConfigError("--skip-list applies to --tree")
        if args.name is None or not args.images:
            raise ConfigError("give NAME IMAGE... (one person) or --tree FOLDER (one sub-folder per person)")
        people = [args.name] * len(args.images)
    m = _model(args)
    with Gallery(args.db, create=False) if Path(args.db).is_file() else _nullgallery() as g0:
        if g0 is not None:
            g0.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
    r = _embed_batch(args, m)
    if not len(r.embeddings):  # nothing to enrol: leave the gallery (or its absence) as it was
        return _report_misses(args, r, f"nothing added to {args.db}")
    dup_lines: list[str] = []
    added: dict[str, int] = {}
    with Gallery(args.db, fingerprint=m.fingerprint, embedding_size=m.embedding_size) as g:
        if args.tree is None:
            ids = g.add(args.name, r.embeddings, sources=r.sources, fingerprint=m.fingerprint)
            added[args.name] = len(ids)
        else:
            import numpy as np

            who = np.array([people[i] for i in r.indices])
            for name in dict.fromkeys(who):
                rows = np.flatnonzero(who == name)
                ids = g.add(name, r.embeddings[rows], sources=[r.sources[i] for i in rows],
                            fingerprint=m.fingerprint, on_duplicate="skip")
                added[name] = len(ids)
                dup_lines += [d["reason"] for d in g.skipped_duplicates]
        total = len(g)
    n = sum(added.values())
    if args.tree is None:
        print(f"{args.db}: added {n} template(s) for {args.name!r} ({total} templates in the gallery)")
    else:
        print(f"{args.db}: added {n} template(s) for {sum(1 for v in added.values() if v)} people from {args.tree} "
              f"({total} templates in the gallery)")
    for line in dup_lines:
        print(f"maskinv gallery add: skipped {line}", file=sys.stderr)
    rc = _report_misses(args, r, f"{n} template(s) added")
    return 1 if dup_lines else rc


def _check_thresholds_arg(args) -> None:
    """--thresholds PATH: a thresholds file (read now), and only where a calibrated threshold is used."""
    if not getattr(args, "thresholds", None):
        return
    from maskinv.errors import ConfigError
    from maskinv.thresholds import read_thresholds

    if args.threshold is not None or getattr(args, "fpir", None) is not None:
        raise ConfigError("--thresholds is read for a calibrated threshold (--fmr or the default); "
                          "it does not go with --threshold" + (" or --fpir" if hasattr(args, "fpir") else ""))
    read_thresholds(args.thresholds)


class _nullgallery:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _search_threshold(args, m, g):
    """(threshold, where it came from) for ``gallery search``, or (None, None)."""
    if args.threshold is not None:
        return float(args.threshold), "explicit"
    if args.fpir is not None:
        t = g.fpir_threshold(args.fpir)
        at = g.meta().get(f"threshold@fpir={args.fpir:g}.templates")
        if at is not None and int(at) != len(g):
            print(f"maskinv: note: the FPIR {args.fpir:g} threshold was measured with {at} templates, the gallery "
                  f"now holds {len(g)}; run `maskinv gallery evaluate ... --store` again", file=sys.stderr)
        return t, f"FPIR {args.fpir:g} (gallery evaluate)"
    if args.fmr is not None:
        from maskinv.errors import ConfigError
        from maskinv.thresholds import lookup, thresholds_path

        path = args.thresholds or (thresholds_path(m.path) if m.path else None)
        if path is None:
            raise ConfigError("this model has no file beside it to hold thresholds (e.g. dlib); pass --thresholds PATH")
        e = lookup(path, m.fingerprint, fmr=args.fmr, protocol=args.protocol, flip=args.flip)
        return float(e["threshold"]), f"1:1 FMR {args.fmr:g} ({args.protocol}, calibrated)"
    return None, None


def _cmd_gallery_search(args) -> int:
    from maskinv.gallery import Gallery

    from maskinv.gallery import UNKNOWN

    _check_thresholds_arg(args)
    m = _model(args)
    with Gallery(args.db, create=False) as g:
        g.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
        thr, thr_src = _search_threshold(args, m, g)
        r = _embed_batch(args, m)
        results = g.search(r.embeddings, k=args.k, fingerprint=m.fingerprint) if len(r.embeddings) else []
    found = dict(zip(r.indices, results))

    def answer(hits):
        if thr is None:
            return None
        return hits[0].name if hits and hits[0].score >= thr else UNKNOWN

    if args.json:  # every input, in order; a skipped one carries its error instead of matches
        missed = {x.index: x for x in r.misses}
        extra = {} if thr is None else {"threshold": thr, "threshold_source": thr_src}
        print(json.dumps([{"image": str(im), "matches": [h.to_dict() for h in found[i]],
                           **({"answer": answer(found[i])} if thr is not None else {}), **extra} if i in found else
                          {"image": str(im), "matches": None, "error": missed[i].reason}
                          for i, im in enumerate(args.images)], indent=2))
    else:
        for i, im in enumerate(args.images):
            if i not in found:
                continue
            if thr is None:
                print(f"{im}:")
            else:
                print(f"{im}: {answer(found[i])}  (threshold {thr:.4f}, {thr_src})")
            for rank, h in enumerate(found[i], 1):
                print(f"  {rank}. {h.name}  {h.score:.4f}")
    return _report_misses(args, r, f"{len(found)} searched")


def _cmd_gallery_evaluate(args) -> int:
    from maskinv.gallery import Gallery, identification_metrics

    ranks = sorted(set(args.rank or (1, 5)))
    fpirs = sorted(set(args.fpir or (0.1, 0.01, 0.001)), reverse=True)
    photos, people = _tree_photos(args.folder, keep_list=args.probe_list)
    if not photos:
        from maskinv.errors import ConfigError

        raise ConfigError(f"{args.folder}: no probe photos")
    args.images = [str(q) for q in photos]
    m = _model(args)
    with Gallery(args.db, create=False) as g:
        g.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
        r = _embed_batch(args, m)
        S, names = g.identity_scores(r.embeddings, fingerprint=m.fingerprint)
        res = identification_metrics(S, names, [people[i] for i in r.indices], ranks=ranks, fpirs=fpirs)
        if args.store:
            for f, t in res["threshold_at_fpir"].items():
                if t is not None:
                    g.set_meta(f"threshold@fpir={f:g}", repr(t))
                    g.set_meta(f"threshold@fpir={f:g}.templates", str(len(g)))
    res.update(probes=len(photos), skipped=len(r.misses), gallery=str(args.db))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.db}: {res['num_identities']} people; {res['num_probes']} probes searched "
              f"({res['num_mated']} of enrolled people, {res['num_nonmated_searches']} non-mated searches)")
        for k, v in res["rank"].items():
            print(f"rank-{k}".ljust(18) + f"{100 * v:.2f} %")
        for f in fpirs:
            v, t = res["fnir_at_fpir"][f], res["threshold_at_fpir"][f]
            if v is None:
                print(f"FNIR @ FPIR {f:g}".ljust(18) + f"n/a ({res['undefined'][f'fnir_at_fpir[{f:g}]']})")
            else:
                print(f"FNIR @ FPIR {f:g}".ljust(18) + f"{100 * v:.2f} % (threshold {t:.4f})"
                      + ("  stored" if args.store else ""))
    return _report_misses(args, r, f"{len(r.indices)} searched")


def _cmd_gallery_list(args) -> int:
    from maskinv.gallery import Gallery

    with Gallery(args.db, create=False) as g:
        rows = g.identities()
        meta = g.meta()
    print(f"{args.db}: {len(rows)} identities, model {meta.get('model_fingerprint', '?')[:16]}..., "
          f"{meta.get('embedding_size', '?')}-d")
    for name, n in rows:
        print(f"  {name}\t{n}")
    return 0


def _cmd_gallery_remove(args) -> int:
    from maskinv.gallery import Gallery

    with Gallery(args.db, create=False) as g:
        n = g.remove(args.name)
    print(f"{args.db}: removed {args.name!r} ({n} templates)")
    return 0


def _cmd_export_onnx(args) -> int:
    from maskinv.export import export_onnx

    r = export_onnx(args.model, args.out, arch=args.arch, opset=args.opset, check=args.check, tol=args.tol)
    line = f"{r['path']}: ONNX opset {r['opset']} ({r['exporter']} exporter)"
    if "max_cosine_distance" in r:
        line += f"; parity vs PyTorch: max cosine distance {r['max_cosine_distance']:.3g}, max abs diff {r['max_abs_diff']:.3g}"
    print(line)
    return 0

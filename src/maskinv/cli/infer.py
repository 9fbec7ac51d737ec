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
from maskinv.cli.infer_common import (add_batch_args, add_json_arg, add_detector_arg, add_model_and_face_args, add_model_args,
                                      check_thresholds_arg, embed_images, model_from_args, report_misses)
from maskinv.masks.protocols import DEFAULT_PROTOCOL, DESCRIPTIONS, PROBE_REF, PROTOCOLS

VERIFY_EPILOG = """exit codes: 0 = verified (same person), 1 = not verified, 2 = error
(unreadable image, no face found, model/threshold problem).
threshold: --threshold T (explicit cosine) or --fmr F (calibrated with `maskinv calibrate`
for this model); with neither, the calibrated threshold beside the model is used
(smallest FMR of --protocol), else an error."""


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
    add_detector_arg(p)
    p.set_defaults(func=_cmd_align)

    p = subparsers.add_parser("embed", help="face images -> L2-normalised embeddings (.npy)",
                              description="Embed the largest face of each image (or aligned crops) into an (N, D) "
                                          "float32 .npy, rows in argument order.")
    p.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="face photos (or aligned crops with --aligned)")
    add_model_and_face_args(p)
    p.add_argument("--out", required=True, type=A.output_file,
                   help="output .npy; OUT.json beside it lists the image of each row and the images skipped")
    add_batch_args(p)
    p.set_defaults(func=_cmd_embed)

    p = subparsers.add_parser("verify", help="one-to-one decision between two face images",
                              description="Decide whether two photos show the same person.",
                              epilog=VERIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_a", type=A.existing_file, help="first face photo")
    p.add_argument("image_b", type=A.existing_file, help="second face photo")
    add_model_and_face_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fmr", type=A.probability, default=None, help="use the threshold calibrated at this false-match rate")
    g.add_argument("--threshold", type=A.cosine, default=None, help="explicit cosine threshold in [-1, 1]")
    p.add_argument("--protocol", choices=(*PROTOCOLS, PROBE_REF), default=DEFAULT_PROTOCOL,
                   help=f"calibration scenario of the threshold (default {DEFAULT_PROTOCOL}: masked probe vs unmasked; "
                        "probe_ref: calibrated on really masked photos with --probe-list)")
    p.add_argument("--thresholds", metavar="PATH", type=A.existing_file, default=None,
                   help="calibrated thresholds file to read (default: the one beside the model; named models such as "
                        "dlib have none)")
    add_json_arg(p, "the full result")
    p.set_defaults(func=_cmd_verify)

    p = subparsers.add_parser("calibrate", help="store the threshold that gives a false-match rate on a benchmark",
                              description="Score a verification .bin or an image folder (as `maskinv eval` takes it: "
                                          "pairs.txt, or --probe-list of masked photos for real masks) and write the "
                                          "threshold at --fmr, with provenance, to <model stem>.thresholds.json beside "
                                          "the model or to --thresholds PATH (needed for dlib). The pair counts and the "
                                          "destination are checked before anything is embedded.")
    add_model_args(p)
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

    from maskinv.cli import gallery

    gallery.register(subparsers)

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
    m = model_from_args(args)
    r = embed_images(args, m)
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
    return report_misses(args, r, f"{emb.shape[0]} rows written to {out}")


def _cmd_verify(args) -> int:
    from maskinv.api import verify

    import time

    check_thresholds_arg(args)
    t_load = time.perf_counter()
    m = model_from_args(args)
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
    m = model_from_args(args)
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


def _cmd_export_onnx(args) -> int:
    from maskinv.export import export_onnx

    r = export_onnx(args.model, args.out, arch=args.arch, opset=args.opset, check=args.check, tol=args.tol)
    line = f"{r['path']}: ONNX opset {r['opset']} ({r['exporter']} exporter)"
    if "max_cosine_distance" in r:
        line += f"; parity vs PyTorch: max cosine distance {r['max_cosine_distance']:.3g}, max abs diff {r['max_abs_diff']:.3g}"
    print(line)
    return 0

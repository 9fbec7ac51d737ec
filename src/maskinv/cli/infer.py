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
from maskinv.masks.protocols import DEFAULT_PROTOCOL, DESCRIPTIONS, PROTOCOLS

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
detector: mtcnn (default; finds masked faces) or dlib (HOG; misses most masked faces). Without
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
    p.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help=f"calibration scenario of the threshold (default {DEFAULT_PROTOCOL}: masked probe vs unmasked)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_cmd_verify)

    p = subparsers.add_parser("calibrate", help="store the threshold that gives a false-match rate on a benchmark",
                              description="Score a verification .bin under a masked protocol and write the threshold "
                                          "at --fmr, with provenance, to <model stem>.thresholds.json beside the model.")
    _add_model_args(p)
    p.add_argument("--bench", required=True, type=A.existing_file, help="verification .bin (pairs)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help="; ".join(f"{p}: {DESCRIPTIONS[p]}" for p in PROTOCOLS) + f" (default {DEFAULT_PROTOCOL})")
    p.add_argument("--fmr", type=A.probability, default=1e-3, help="target false-match rate (default 1e-3)")
    p.add_argument("--seed", type=A.seed, default=0, help="mask seed of the protocol")
    p.add_argument("--mask-kind", default="random", type=A.mask_kind, help="mask kind (default: random mix of all kinds)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no flip test (verify must then use --no-flip too)")
    p.add_argument("--batch-size", type=A.positive_int, default=128, help="images per forward pass (default 128)")
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("gallery", help="1:N search: add, search, list, remove identities in a SQLite gallery")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    a = gsub.add_parser("add", help="enrol images of one identity")
    a.add_argument("db", type=A.output_file, help="gallery database (SQLite; created if missing)")
    a.add_argument("name", help="identity name")
    a.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="photos of this identity")
    _add_model_args(a)
    _add_face_args(a)
    _add_batch_args(a)
    a.set_defaults(func=_cmd_gallery_add)
    s = gsub.add_parser("search", help="top-k identities for each probe image")
    s.add_argument("db", type=A.existing_file, help="gallery database (SQLite)")
    s.add_argument("images", nargs="+", metavar="IMAGE", type=A.existing_file, help="probe photos")
    s.add_argument("-k", type=A.positive_int, default=5, help="matches per probe (default 5)")
    _add_model_args(s)
    _add_face_args(s)
    s.add_argument("--json", action="store_true", help="print the matches as JSON")
    _add_batch_args(s)
    s.set_defaults(func=_cmd_gallery_search)
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


def _report_misses(args, r, what: str) -> int:
    """One stderr line per skipped image, then a summary; the exit code (1 when any was skipped)."""
    if not r.misses:
        return 0
    cmd = " ".join(x for x in (args.command, getattr(args, "gallery_command", None)) if x)
    for miss in r.misses:
        print(f"maskinv {cmd}: skipped {miss.reason}", file=sys.stderr)
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

    r = verify(args.image_a, args.image_b, _model(args), threshold=args.threshold, fmr=args.fmr,
               protocol=args.protocol, aligned=args.aligned, flip=args.flip, detector=args.detector)
    if args.json:
        print(r.to_json())
    else:
        src = r.threshold_source
        if r.provenance:
            pv = r.provenance
            src += f" at FMR {pv['fmr']:g} ({pv['protocol']}, {Path(pv['bench']['path']).name}, {pv['bench']['num_pairs']} pairs)"
        print(f"{'VERIFIED' if r.verified else 'NOT VERIFIED'}: score {r.score:.4f} "
              f"{'>=' if r.verified else '<'} threshold {r.threshold:.4f} [{src}] "
              f"in {r.timings['total_ms']:.0f} ms")
    return 0 if r.verified else 1


def _cmd_calibrate(args) -> int:
    from maskinv.thresholds import calibrate, thresholds_path

    m = _model(args)
    e = calibrate(m, args.bench, fmr=args.fmr, protocol=args.protocol, seed=args.seed, flip=args.flip,
                  mask_kind=args.mask_kind, batch_size=args.batch_size)
    print(f"{thresholds_path(m.path)}: {args.protocol}@{args.fmr:g} threshold {e['threshold']:.6f} "
          f"(achieved FMR {e['fmr_achieved']:.3g}, TAR {e['tar']:.4f}, {e['bench']['num_pairs']} pairs)")
    return 0


def _cmd_gallery_add(args) -> int:
    from maskinv.gallery import Gallery

    m = _model(args)
    r = _embed_batch(args, m)
    if not len(r.embeddings):  # nothing to enrol: leave the gallery (or its absence) as it was
        return _report_misses(args, r, f"nothing added to {args.db}")
    with Gallery(args.db, fingerprint=m.fingerprint, embedding_size=m.embedding_size) as g:
        ids = g.add(args.name, r.embeddings, sources=r.sources, fingerprint=m.fingerprint)
        total = len(g)
    print(f"{args.db}: added {len(ids)} template(s) for {args.name!r} ({total} templates in the gallery)")
    return _report_misses(args, r, f"{len(ids)} template(s) added")


def _cmd_gallery_search(args) -> int:
    from maskinv.gallery import Gallery

    m = _model(args)
    with Gallery(args.db, create=False) as g:
        g.check_model(m.fingerprint, m.embedding_size)  # before paying for detection
        r = _embed_batch(args, m)
        results = g.search(r.embeddings, k=args.k, fingerprint=m.fingerprint) if len(r.embeddings) else []
    found = dict(zip(r.indices, results))
    if args.json:  # every input, in order; a skipped one carries its error instead of matches
        missed = {x.index: x for x in r.misses}
        print(json.dumps([{"image": str(im), "matches": [h.to_dict() for h in found[i]]} if i in found else
                          {"image": str(im), "matches": None, "error": missed[i].reason}
                          for i, im in enumerate(args.images)], indent=2))
    else:
        for i, im in enumerate(args.images):
            if i not in found:
                continue
            print(f"{im}:")
            for rank, h in enumerate(found[i], 1):
                print(f"  {rank}. {h.name}  {h.score:.4f}")
    return _report_misses(args, r, f"{len(found)} searched")


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

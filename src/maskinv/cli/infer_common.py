"""Arguments and helpers shared by the inference commands (:mod:`maskinv.cli.infer`,
:mod:`maskinv.cli.gallery`): the model and face options, loading the model they name, embedding
a list of images with per-image misses, and reporting those misses."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskinv.cli import args as A
from maskinv.utils.precision import MODES_INFER

BATCH_EPILOG = """exit codes: 0 = every image embedded, 1 = some images skipped (one line each on stderr
naming the file and why, then a summary; the others are written), 2 = error (bad arguments,
model problem; with --strict also the first image that cannot be read or shows no face).
aligned crops of another size than the model's input are resized (one note)."""


def add_detector_arg(p: argparse.ArgumentParser) -> None:
    A.detector_arg(p)


def add_model_args(p: argparse.ArgumentParser) -> None:
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


def add_face_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aligned", action="store_true", help="inputs are already aligned crops: skip detection")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no flip test (faster; must match how thresholds were calibrated)")
    add_detector_arg(p)


def add_json_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--json``: print ``what`` as JSON instead of text."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_model_and_face_args(p: argparse.ArgumentParser) -> None:
    """The model options, then the face options (every command that embeds photos)."""
    add_model_args(p)
    add_face_args(p)


def add_batch_args(p: argparse.ArgumentParser) -> None:
    p.epilog = BATCH_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be read or shows no face (exit 2) instead of skipping it")



# --------------------------------------------------------------------------- helpers
def model_from_args(args):
    from maskinv.api import load_model

    extra = {k: getattr(args, k, None) for k in ("layout", "input_mean", "input_std", "channel_order")}
    return load_model(args.model, args.arch, backend=args.backend, precision=args.precision,
                      **{k: v for k, v in extra.items() if v is not None})


def embed_images(args, m):
    """Embed ``args.images`` (missing files refused first: a typo is not a bad photo)."""
    from maskinv.api import embed_batch
    from maskinv.errors import ConfigError

    for im in args.images:
        if not Path(im).is_file():
            raise ConfigError(f"{im}: image file not found")
    return embed_batch(args.images, m, aligned=args.aligned, flip=args.flip, detector=args.detector,
                       on_error="raise" if args.strict else "skip")


def cli_words(text: str, args) -> str:
    """A library hint in command-line words (``pass aligned=True`` -> ``pass --aligned``), or dropped
    when this command has no such flag (the same table as the one-line errors)."""
    import re

    from maskinv.cli import _CLI_PHRASES

    for py, cli, flag in _CLI_PHRASES:
        if py in text:
            has = hasattr(args, flag.lstrip("-").replace("-", "_"))
            text = text.replace(py, cli) if has else re.sub(rf"\s*\([^()]*{re.escape(py)}[^()]*\)", "", text)
    return text


def report_misses(args, r, what: str) -> int:
    """One stderr line per skipped image, then a summary; the exit code (1 when any was skipped)."""
    if not r.misses:
        return 0
    cmd = " ".join(x for x in (args.command, getattr(args, "gallery_command", None)) if x)
    for miss in r.misses:
        print(f"maskinv {cmd}: skipped {cli_words(miss.reason, args)}", file=sys.stderr)
    print(f"maskinv {cmd}: {r.summary()}; {what} (--strict stops at the first)", file=sys.stderr)
    return 1



def check_thresholds_arg(args) -> None:
    """--thresholds PATH: a thresholds file (read now), and only where a calibrated threshold is used."""
    if not getattr(args, "thresholds", None):
        return
    from maskinv.errors import ConfigError
    from maskinv.thresholds import read_thresholds

    if args.threshold is not None or getattr(args, "fpir", None) is not None:
        raise ConfigError("--thresholds is read for a calibrated threshold (--fmr or the default); "
                          "it does not go with --threshold" + (" or --fpir" if hasattr(args, "fpir") else ""))
    read_thresholds(args.thresholds)

"""The ``maskinv`` command line.

Each command group lives in its own module under :mod:`maskinv.cli` and exposes
``register(subparsers)``; that module adds its sub-parsers and sets ``func`` (a
callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Heavy imports (torch, cv2) happen inside the command functions so ``--help`` is quick.

Exit codes: 0 success (``verify``: verified), 1 ``verify``: not verified,
2 error (bad input, missing file, invalid config). User mistakes print one line,
never a traceback; set ``MASKINV_DEBUG=1`` to see the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# Command-group modules, in the order they appear in --help.
_GROUPS = ("data", "mask", "train", "adapt", "evaluate", "demo", "infer")


class _Parser(argparse.ArgumentParser):
    """argparse that prints a one-line error and exits with code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from maskinv import __version__

    parser = _Parser(
        prog="maskinv",
        description="Mask-invariant face recognition: data, masks, training, evaluation, inference.",
    )
    parser.add_argument("--version", action="version", version=f"maskinv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in _GROUPS:
        importlib.import_module(f"maskinv.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from maskinv.errors import MaskinvError

    parser = build_parser()
    # key=value overrides may come after options (`maskinv train CFG --out DIR a.b=1`): argparse
    # leaves those as extras; commands with an `overrides` list take them, others refuse them.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("maskinv: interrupted", file=sys.stderr)
        return 130
    except (MaskinvError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("MASKINV_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)) and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        print(f"maskinv {args.command}: error: {msg}", file=sys.stderr)
        return 2

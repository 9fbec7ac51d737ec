"""The ``maskinv`` command line.

Each command group lives in its own module under :mod:`maskinv.cli` and exposes
``register(subparsers)``; that module adds its sub-parsers and sets ``func`` (a
callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Heavy imports (torch, cv2) happen inside the command functions so ``--help`` is quick.

Exit codes: 0 success (``verify``: verified), 1 ``verify``: not verified, 2 error (bad input,
missing file, invalid config), 130 interrupted, 141 stdout closed early (``maskinv ... | head``).
:func:`main` returns the code and never raises ``SystemExit`` (not for ``--help`` or a bad
argument either), so in-process callers compare it.

The contract: a user mistake prints one line ``maskinv CMD: error: ...`` naming the argument or
file, exits 2 and writes nothing; argument values are checked by the types in
:mod:`maskinv.cli.args` before a command runs. Python warnings print as ``maskinv: note: ...``
(once each), OpenCV logs errors only and libjpeg's stderr text becomes a note naming the image.
``MASKINV_DEBUG=1`` shows the traceback and all of that output raw.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import warnings
from typing import Sequence

# Command-group modules, in the order they appear in --help.
_GROUPS = ("data", "mask", "train", "adapt", "evaluate", "demo", "study_real", "infer", "serve")


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


# Library messages speak Python (``aligned=True``, ``name=``); at the command line the same
# advice names the flag. Applied to the one-line error of a MaskinvError.
# (library text, command-line text, the flag it needs): a command without that flag drops the
# parenthesised hint instead (``align`` has no --aligned).
_CLI_PHRASES = (
    ("pass aligned=True", "pass --aligned", "--aligned"),
    ("drop aligned=True", "drop --aligned", "--aligned"),
    ("pass an explicit threshold", "pass --threshold T (a cosine in [-1, 1])", "--threshold"),
    ("pass name=", "pass --arch NAME", "--arch"),
    ("pass threshold=", "pass --threshold T", "--threshold"),
    ("input_mean/input_std/channel_order", "--input-mean/--input-std/--channel-order", "--input-mean"),
)
_MAX_NOTES = 20  # a flood of warnings (one per corrupt image) ends in one "suppressed" line


def _debug() -> bool:
    return os.environ.get("MASKINV_DEBUG", "") not in ("", "0")


class _Notes:
    """``warnings.showwarning`` replacement: ``maskinv: note: <message>``, once per message,
    without the source path and line that Python's default format adds."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text in self.seen:
            return
        self.seen.add(text)
        if len(self.seen) > _MAX_NOTES:
            if len(self.seen) == _MAX_NOTES + 1:
                print("maskinv: note: further notes suppressed (MASKINV_DEBUG=1 shows all)", file=sys.stderr)
            return
        print(f"maskinv: note: {text}", file=sys.stderr)


@contextlib.contextmanager
def _quiet_output(debug: bool):
    """Python warnings -> one-line notes; OpenCV logs errors only; C-library text on fd 2
    during image decoding (libjpeg's "Corrupt JPEG data") becomes a note naming the image.
    Everything is restored on exit (``main`` also runs in-process, e.g. in tests)."""
    if debug:
        yield
        return
    from maskinv.utils import native_stderr

    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read by cv2 when it is first imported
    cv_log = getattr(getattr(sys.modules.get("cv2"), "utils", None), "logging", None)  # already imported
    old_level = None
    if cv_log is not None and hasattr(cv_log, "setLogLevel"):
        old_level = cv_log.getLogLevel()
        cv_log.setLogLevel(cv_log.LOG_LEVEL_ERROR)
    was = native_stderr.enable(True)
    with warnings.catch_warnings():
        warnings.showwarning = _Notes()
        try:
            yield
        finally:
            native_stderr.enable(was)
            if old_level is not None:
                cv_log.setLogLevel(old_level)


def _stdout_gone() -> int:
    """The reader of stdout went away (``maskinv ... | head``): stop quietly, like a Unix tool
    killed by SIGPIPE (status 141). Point fd 1 at /dev/null so the interpreter's final flush
    of the remaining buffer does not raise a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (in-process runs)
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    debug = _debug()
    try:
        with _quiet_output(debug):
            code = _main(argv, debug)
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()


def _main(argv: Sequence[str] | None, debug: bool) -> int:
    from maskinv.errors import MaskinvError

    parser = build_parser()
    try:
        # key=value overrides may come after options (`maskinv train CFG --out DIR a.b=1`): argparse
        # leaves those as extras; commands with an `overrides` list take them, others refuse them.
        args, extra = parser.parse_known_args(argv)
        if extra:
            if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-") for e in extra):
                args.overrides += extra
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a bad argument (one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("maskinv: interrupted", file=sys.stderr)
        return 130
    except (MaskinvError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)) and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        names, leaf = _command(parser, args)
        print(f"maskinv {names}: error: {_cli_phrasing(msg, leaf)}", file=sys.stderr)
        return 2


def _cli_phrasing(msg: str, leaf: argparse.ArgumentParser) -> str:
    flags = {o for a in leaf._actions for o in a.option_strings}
    for py, cli, flag in _CLI_PHRASES:
        if py in msg:
            msg = msg.replace(py, cli) if flag in flags else re.sub(rf"\s*\([^()]*{re.escape(py)}[^()]*\)", "", msg)
    return msg


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, argparse.ArgumentParser]:
    """(``"data info"``, its parser): the sub-command path the user typed."""
    names, p = [], parser
    while True:
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if name not in (sub.choices if sub is not None else ()):
            return " ".join(names) or "maskinv", p
        names.append(name)
        p = sub.choices[name]

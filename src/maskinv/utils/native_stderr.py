"""Capture what C libraries write straight to file descriptor 2 during one call.

libjpeg (inside OpenCV) prints "Corrupt JPEG data: ..." / "Premature end of JPEG file" with
``fprintf(stderr)`` and still returns an image; OpenCV adds ``[ WARN:0@...]`` lines. Python
cannot catch that text, so it would break the command line's one-line-per-problem output.
:func:`captured` points fd 2 at an in-memory file around the call and re-raises whatever
arrived as a :class:`NativeLibraryWarning` naming the input (the CLI prints it as a note).

Off by default: a library caller sees the raw text. ``maskinv`` turns it on unless
``MASKINV_DEBUG`` is set. Cost: a few system calls, about 5 us per call
(``benchmarks/bench_decode_capture.py``), against 70-200 us for decoding a 112x112 JPEG.
Calls are serialised by a lock (fd 2 is process-wide); forked workers get their own sink.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from typing import Iterator

__all__ = ["NativeLibraryWarning", "captured", "enable"]

_MAX_TEXT = 4096


class NativeLibraryWarning(UserWarning):
    """Text a C library wrote to stderr while decoding an input (the input was still used)."""


_enabled = False
_lock = threading.Lock()  # fd 2 is process-wide: one swap at a time
_sink: tuple[int, int] | None = None  # (pid, fd): a forked worker makes its own


def enable(on: bool = True) -> bool:
    """Turn capturing on or off; returns the previous setting."""
    global _enabled
    was, _enabled = _enabled, bool(on)
    return was


def _sink_fd() -> int:
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        try:
            fd = os.memfd_create("maskinv-native-stderr", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # not Linux
            import tempfile

            fd = os.dup(tempfile.TemporaryFile().fileno())
        _sink = (os.getpid(), fd)
    return _sink[1]


@contextlib.contextmanager
def captured(where: str) -> Iterator[None]:
    """Run the body with fd 2 captured; any text becomes a warning ``"<where>: <text>"``."""
    if not _enabled:
        yield
        return
    text = b""
    with _lock:
        try:
            sink = _sink_fd()
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            saved = os.dup(2)
        except OSError:  # no fd 2 (daemonised) or no sink: nothing to capture
            saved = -1
        if saved < 0:
            yield
            return
        os.dup2(sink, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.fstat(sink).st_size
            if size:
                os.lseek(sink, 0, os.SEEK_SET)
                text = os.read(sink, min(size, _MAX_TEXT))
                os.ftruncate(sink, 0)
                os.lseek(sink, 0, os.SEEK_SET)
    if text:
        msg = " ".join(text.decode("utf-8", "replace").split())
        warnings.warn(f"{where}: {msg}", NativeLibraryWarning, stacklevel=3)

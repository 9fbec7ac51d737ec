"""SIGTERM/SIGINT during training: record the signal instead of dying, so the loop can stop after
the current step and write a final checkpoint (job schedulers send SIGTERM before killing)."""
from __future__ import annotations

import signal
import threading
from typing import Any


class StopFlag:
    """SIGTERM/SIGINT -> ``signum`` (checked after every step); handlers restored on exit.

    Outside the main thread (where handlers cannot be installed) it stays a flag that never rises.
    """

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def requested(self, distributed: bool = False) -> bool:
        """True when this rank (or, ``distributed``, any rank) got a signal: all ranks stop at the same step."""
        mine = self.signum is not None
        if not distributed:
            return mine
        from . import distributed as D

        return D.all_reduce_flag(mine)

    @property
    def reported(self) -> int:
        """The signal to report; a rank stopped by another rank's signal reports SIGTERM."""
        return self.signum if self.signum is not None else int(signal.SIGTERM)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False

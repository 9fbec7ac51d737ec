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
        self._pending = None  # (work, tensor) of the deferred all-reduce of the previous step

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def requested(self, distributed: bool = False, deferred: bool = False) -> bool:
        """True when this rank (or, ``distributed``, any rank) got a signal: all ranks stop at the same step.

        ``deferred`` (NCCL): start an asynchronous all-reduce of this step's flag and answer with
        the previous step's result, so the host never waits for the current step's GPU work (a
        signal stops the run one step later; every rank still stops at the same step).
        """
        mine = self.signum is not None
        if not distributed:
            return mine
        from . import distributed as D

        if not deferred:
            return D.all_reduce_flag(mine)
        import torch
        import torch.distributed as dist

        prev, answer = self._pending, False
        if prev is not None:
            prev[0].synchronize()  # waits for the previous step's work only (this one is queued)
            answer = bool(prev[1][0] > 0)
        t = torch.full((1,), 1.0 if mine else 0.0, device=torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True).wait()  # NCCL: the stream waits, not the host
        host = torch.empty(1, pin_memory=True)
        host.copy_(t, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        self._pending = (ev, host)
        return answer

    @property
    def reported(self) -> int:
        """The signal to report; a rank stopped by another rank's signal reports SIGTERM."""
        return self.signum if self.signum is not None else int(signal.SIGTERM)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False

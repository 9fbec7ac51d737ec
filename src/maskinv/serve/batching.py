"""Micro-batching of template computation across concurrent requests.

Worker threads hand aligned crops to one batching thread, which waits up to ``max_wait_ms`` for
more (at most ``max_batch``) and runs one ``embed_aligned`` call for all of them. A network
pays its per-call overhead once per batch instead of once per request. A recogniser that aligns
photos itself (``needs_photo``, dlib) embeds photo by photo and is not batched.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

__all__ = ["MicroBatcher"]


class MicroBatcher:
    def __init__(self, model, *, max_batch: int = 16, max_wait_ms: float = 2.0):
        if getattr(model, "needs_photo", False):
            raise ValueError("a recogniser that aligns photos itself cannot be micro-batched")
        self.model = model
        self.max_batch = max(1, int(max_batch))
        mb = getattr(model, "max_batch", None)  # a fixed-batch ONNX graph
        if mb:
            self.max_batch = min(self.max_batch, int(mb))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1e3
        self._q: queue.Queue = queue.Queue()
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._loop, name="maskinv-batcher", daemon=True)
        self._thread.start()

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """The template of one aligned crop (H, W, 3), computed in a batch with concurrent callers."""
        fut: Future = Future()
        self._q.put((crop, fut))
        return fut.result()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch) -> None:
        try:
            m = self.model
            emb = m.embed_aligned(np.stack([c for c, _ in batch]), flip=m.supports_flip,
                                  batch_size=2 * len(batch) if m.supports_flip else len(batch))
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for _, f in batch:
                f.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, f), e in zip(batch, emb):
            f.set_result(np.asarray(e, np.float32))

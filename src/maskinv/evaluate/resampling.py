"""Bootstrap replicates of a pair list as flat arrays (:class:`Resamples`): stratified pairs, whole
clusters, or identities of both sides of every pair (:class:`DyadicResamples`), each replicate's
pairs in their original list order and split into contiguous folds (the rules are in
:mod:`maskinv.evaluate.bootstrap`)."""
from __future__ import annotations

import numpy as np

from maskinv.errors import DataFormatError
from maskinv.evaluate.metrics import fold_bounds

_CHUNK_ELEMENTS = 8_000_000  # histogram cells per chunk of replicates (bounds memory, ~64 MB)


class Resamples:
    """Replicates as flat arrays sorted by (replicate, original pair index).

    ``rep[i]`` is the replicate of entry ``i``, ``pair[i]`` the original pair index, ``fold[i]``
    its fold inside the replicate; ``sizes[r]`` the number of pairs of replicate ``r``.
    """

    def __init__(self, rep: np.ndarray, pair: np.ndarray, sizes: np.ndarray, folds: int,
                 fold: np.ndarray | None = None):
        if np.any(sizes < folds):
            raise DataFormatError(f"a resample has {int(sizes.min())} pairs, fewer than {folds} folds")
        self.rep, self.pair, self.sizes, self.folds = rep, pair, sizes, folds
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        if fold is None:
            pos = np.arange(rep.shape[0], dtype=np.int64) - self.starts[:-1][rep]  # position in the replicate
            n = sizes[rep]
            q, r = n // folds, n % folds  # KFold(shuffle=False): the first n % folds folds get q + 1
            fold = np.where(pos < r * (q + 1), pos // (q + 1), r + (pos - r * (q + 1)) // q)
        self.fold = fold

    @property
    def count(self) -> int:
        return int(self.sizes.shape[0])

    @classmethod
    def identity(cls, n: int, folds: int) -> "Resamples":
        """The original list once: metrics on it equal ``verification_metrics``."""
        return cls(np.zeros(n, np.int64), np.arange(n, dtype=np.int64), np.array([n], np.int64), folds)

    @classmethod
    def stratified(cls, genuine: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int) -> "Resamples":
        gen, imp = np.flatnonzero(genuine), np.flatnonzero(~genuine)
        n = genuine.shape[0]
        offset = (np.arange(n_boot, dtype=np.int64) * n)[:, None]
        # multiplicity of each pair in each replicate, then the pairs in original order: O(B n), no sort
        counts = np.bincount((gen[rng.integers(0, gen.size, (n_boot, gen.size))] + offset).ravel(), minlength=n_boot * n)
        counts += np.bincount((imp[rng.integers(0, imp.size, (n_boot, imp.size))] + offset).ravel(), minlength=n_boot * n)
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), n_boot), counts)
        sizes = np.full(n_boot, n, np.int64)
        fold_of_pos = np.repeat(np.arange(folds, dtype=np.int64), np.diff(fold_bounds(n, folds)))
        return cls(np.repeat(np.arange(n_boot, dtype=np.int64), n), pair, sizes, folds, np.tile(fold_of_pos, n_boot))

    @classmethod
    def from_counts(cls, counts: np.ndarray, folds: int) -> "Resamples":
        """Replicates given by the multiplicity of every pair: ``counts`` (B, n) ints."""
        b, n = counts.shape
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), b), counts.ravel())
        sizes = counts.sum(axis=1).astype(np.int64)
        return cls(np.repeat(np.arange(b, dtype=np.int64), sizes), pair, sizes, folds)

    @classmethod
    def dyadic(cls, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int,
               genuine: np.ndarray | None = None) -> "Resamples":
        """The identity (vertex) bootstrap: ``codes`` (n, 2) identity codes ``0..K-1`` of both sides of
        every pair; each replicate draws K identities with replacement; a pair ``(i, j)`` comes
        ``m_i · m_j`` times (``i != j``) or ``m_i`` times (``i == j``), ``m`` the draw counts.

        With ``genuine`` given, a replicate without genuine or without impostor pairs, or with fewer
        pairs than ``folds`` (possible only with few identities) is drawn again (up to 100 times, then
        :class:`DataFormatError`): the interval is conditional on a measurable replicate. The
        replicates are expanded chunk by chunk (:class:`DyadicResamples`)."""
        return DyadicResamples(codes, n_boot, rng, folds, genuine)

    @classmethod
    def clustered(cls, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int) -> "Resamples":
        """Whole clusters drawn with replacement (``codes`` (n,) cluster codes ``0..K-1``), each
        replicate's pairs in original list order; expanded chunk by chunk (:class:`ClusteredResamples`)."""
        return ClusteredResamples(codes, n_boot, rng, folds)

    def chunks(self, cells_per_replicate: int):
        """Slices of whole replicates holding at most ~_CHUNK_ELEMENTS histogram cells."""
        step = max(1, _CHUNK_ELEMENTS // max(1, cells_per_replicate))
        for r0 in range(0, self.count, step):
            r1 = min(self.count, r0 + step)
            yield r0, r1, slice(int(self.starts[r0]), int(self.starts[r1]))

    def chunk_arrays(self, cells_per_replicate: int):
        """``(r0, r1, rep - r0, pair, fold)`` per chunk of whole replicates (:meth:`chunks`)."""
        for r0, r1, sl in self.chunks(cells_per_replicate):
            yield r0, r1, self.rep[sl] - r0, self.pair[sl], self.fold[sl]


def _fold_of_position(sizes: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicate (local) and fold of every entry of replicates of ``sizes`` laid end to end
    (``KFold(shuffle=False)`` sizes: the first ``n % folds`` folds get one more)."""
    rep = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pos = np.arange(rep.shape[0], dtype=np.int64) - starts[:-1][rep]
    n = sizes[rep]
    q, r = n // folds, n % folds
    return rep, np.where(pos < r * (q + 1), pos // (q + 1), r + (pos - r * (q + 1)) // q)


class DyadicResamples(Resamples):
    """The identity bootstrap (:meth:`Resamples.dyadic`) without holding every replicate: only the
    identities' draw counts (B, K) are kept, and each chunk of replicates is expanded when a metric
    needs it, so memory stays bounded for large probe/reference sets (P·R comparisons × B)."""

    _ROWS = 16  # replicates expanded at once while drawing (bounds the (rows, n) count matrix)

    def __init__(self, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int,
                 genuine: np.ndarray | None = None):
        self.codes, self.folds = codes, folds
        self._a, self._b = codes[:, 0], codes[:, 1]
        self._same = self._a == self._b
        k = int(codes.max()) + 1
        self.mult = np.zeros((n_boot, k), np.int64)
        sizes = np.empty(n_boot, np.int64)
        for r0 in range(0, n_boot, self._ROWS):
            r1 = min(n_boot, r0 + self._ROWS)
            for attempt in range(101):
                todo = np.arange(r0, r1) if attempt == 0 else bad
                m = np.zeros((todo.size, k), np.int64)
                np.add.at(m, (np.repeat(np.arange(todo.size), k), rng.integers(0, k, (todo.size, k)).ravel()), 1)
                self.mult[todo] = m
                c = self._counts_of(m)
                n_all = c.sum(axis=1)
                sizes[todo] = n_all
                if genuine is None:
                    break
                n_gen = c[:, genuine].sum(axis=1)
                bad = todo[(n_gen == 0) | (n_gen == n_all) | (n_all < folds)]
                if bad.size == 0:
                    break
            else:
                raise DataFormatError(f"identity bootstrap: {k} identities give replicates without genuine or "
                                      f"impostor pairs, or with fewer than {folds} pairs; use more identities")
        if np.any(sizes < folds):
            raise DataFormatError(f"a resample has {int(sizes.min())} pairs, fewer than {folds} folds")
        self.sizes = sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self._full: tuple | None = None

    def _counts_of(self, mult: np.ndarray) -> np.ndarray:
        return np.where(self._same, mult[:, self._a], mult[:, self._a] * mult[:, self._b])

    def _expand(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = self._counts_of(self.mult[r0:r1])
        n = counts.shape[1]
        pair = np.repeat(np.tile(np.arange(n, dtype=np.int64), r1 - r0), counts.ravel())
        rep, fold = _fold_of_position(self.sizes[r0:r1], self.folds)
        return rep, pair, fold

    def chunk_arrays(self, cells_per_replicate: int):
        r0 = 0
        while r0 < self.count:
            r1 = r0 + 1  # whole replicates, at most ~_CHUNK_ELEMENTS cells and entries (at least one)
            while (r1 < self.count and (r1 + 1 - r0) * cells_per_replicate <= _CHUNK_ELEMENTS
                   and self.starts[r1 + 1] - self.starts[r0] <= _CHUNK_ELEMENTS):
                r1 += 1
            yield (r0, r1, *self._expand(r0, r1))
            r0 = r1

    def _materialize(self) -> tuple:
        if self._full is None:
            rep, pair, fold = self._expand(0, self.count)
            self._full = (rep, pair, fold)
        return self._full

    # the eager attributes, materialised on demand (small sets, tests)
    rep = property(lambda self: self._materialize()[0])
    pair = property(lambda self: self._materialize()[1])
    fold = property(lambda self: self._materialize()[2])


class ClusteredResamples(DyadicResamples):
    """The cluster bootstrap (:meth:`Resamples.clustered`) without holding every replicate: only the
    drawn cluster codes (B, K) are kept and each chunk of replicates is expanded when a metric needs
    it. Holding them all cost 3 x 8 bytes per entry plus sorting temporaries: for RMFD's 205,465
    comparisons x 1,000 replicates that was ~15 GB at the peak. The arrays are the eager version's,
    entry for entry (tested)."""

    def __init__(self, codes: np.ndarray, n_boot: int, rng: np.random.Generator, folds: int):
        codes = np.asarray(codes, np.int64)
        self.folds = folds
        self._n = codes.shape[0]
        k = int(codes.max()) + 1
        self._order = np.argsort(codes, kind="stable")
        self._counts = np.bincount(codes, minlength=k)
        self._cstarts = np.cumsum(self._counts) - self._counts
        self._codes = codes
        self.drawn = rng.integers(0, k, (n_boot, k))
        sizes = self._counts[self.drawn].sum(axis=1)
        if np.any(sizes < folds):
            raise DataFormatError(f"a resample has {int(sizes.min())} pairs, fewer than {folds} folds")
        self.sizes = sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self._full = None

    def per_replicate(self, weights: np.ndarray) -> np.ndarray:
        """Sum of ``weights`` (n,) over every replicate's pairs (e.g. its genuine pairs), (B,)."""
        per_cluster = np.bincount(self._codes, weights=weights, minlength=self._counts.shape[0])
        return per_cluster[self.drawn].sum(axis=1)

    def _expand(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        drawn = self.drawn[r0:r1].ravel()
        cnt = self._counts[drawn]
        total = int(cnt.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        pair = self._order[np.repeat(self._cstarts[drawn], cnt) + within]
        sizes = self.sizes[r0:r1]
        rep, fold = _fold_of_position(sizes, self.folds)
        pair = np.sort(rep * self._n + pair) % self._n  # original list order inside each replicate
        return rep, pair, fold

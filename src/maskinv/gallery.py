"""1:N gallery search: identities and templates in one SQLite file, exact cosine search.

The file records the model fingerprint and embedding size in a ``meta`` table; adding or
searching with another model raises :class:`ModelMismatchError` (scores between embeddings
of different models are meaningless). Templates are stored L2-normalised as float32 blobs.
Search loads the templates once into one (N, D) float32 matrix and scores queries against it
in batches with a single matrix product per chunk — exact, no index to go stale.

>>> g = Gallery("people.db", fingerprint=model.fingerprint, embedding_size=512)
>>> g.add("alice", embeddings)                    # (k, D) or (D,)
>>> g.search(query_embedding, k=5)[0]             # [Match(name, score, ...), ...]
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, DataFormatError, ModelMismatchError

__all__ = ["Gallery", "Match", "DuplicateTemplateError", "identification_metrics", "UNKNOWN", "set_durable"]

#: The answer of a thresholded search whose best score is below the threshold.
UNKNOWN = "unknown"
#: Two templates this close are the same photo (two photos of one person score far lower).
DUPLICATE_COSINE = 0.9999


class DuplicateTemplateError(ConfigError):
    """A template identical to one already in the gallery (the same photo enrolled twice)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL, source TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS templates_identity ON templates(identity_id);
"""
_FORMAT = "maskinv-gallery"
_FORMAT_VERSION = "1"


@dataclass(frozen=True)
class Match:
    """One search hit: the identity and its best-scoring template."""

    name: str
    score: float            # cosine similarity of the query and the best template of `name`
    template_id: int
    source: str | None

    def to_dict(self) -> dict:
        return {"name": self.name, "score": round(self.score, 6), "template_id": self.template_id,
                "source": self.source}


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
    from .models.embedding import l2_normalize

    return l2_normalize(x, what=what)


class Gallery:
    """A gallery file. ``fingerprint``/``embedding_size`` bind a new file to a model and are
    checked against an existing one; pass ``None`` to open a file read-only-ish without a check
    (``list``/``meta``), but :meth:`add` and :meth:`search` always check what they are given."""

    def __init__(self, path: str | Path, *, fingerprint: str | None = None,
                 embedding_size: int | None = None, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise DataFormatError(f"{self.path}: gallery file not found")
        if self.path.exists() and self.path.is_dir():
            raise DataFormatError(f"{self.path}: is a directory, not a gallery file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path))
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self._conn:
                self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataFormatError(f"{self.path}: not a gallery (SQLite) file: {exc}") from exc
        self._matrix: np.ndarray | None = None
        self._cache_key: tuple | None = None
        meta = self.meta()
        if meta.get("format", _FORMAT) != _FORMAT:
            raise DataFormatError(f"{self.path}: SQLite file is not a maskinv gallery (format {meta['format']!r})")
        if fingerprint is not None or embedding_size is not None:
            self._bind(fingerprint, embedding_size)

    # ------------------------------------------------------------------ metadata
    def meta(self) -> dict[str, str]:
        """The meta table: format, model_fingerprint, embedding_size, created."""
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def fingerprint(self) -> str | None:
        return self.meta().get("model_fingerprint")

    @property
    def embedding_size(self) -> int | None:
        v = self.meta().get("embedding_size")
        return int(v) if v is not None else None

    def _bind(self, fingerprint: str | None, embedding_size: int | None) -> None:
        meta = self.meta()
        if "model_fingerprint" not in meta:
            if fingerprint is None or embedding_size is None:
                return  # bound on the first add()
            with self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [("format", _FORMAT), ("format_version", _FORMAT_VERSION),
                     ("model_fingerprint", fingerprint), ("embedding_size", str(int(embedding_size))),
                     ("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))])
            return
        self.check_model(fingerprint, embedding_size)

    def check_model(self, fingerprint: str | None, embedding_size: int | None) -> None:
        """Raise :class:`ModelMismatchError` unless the gallery was built with this model."""
        meta = self.meta()
        have_fp, have_d = meta.get("model_fingerprint"), meta.get("embedding_size")
        if fingerprint is not None and have_fp is not None and fingerprint != have_fp:
            raise ModelMismatchError(
                f"{self.path}: gallery was built with model {have_fp[:16]}..., not {fingerprint[:16]}...; "
                "templates of different models cannot be compared (use a new gallery file)")
        if embedding_size is not None and have_d is not None and int(embedding_size) != int(have_d):
            raise ModelMismatchError(
                f"{self.path}: gallery holds {have_d}-d templates, got {embedding_size}-d embeddings")

    # ------------------------------------------------------------------ writing
    def duplicates(self, embeddings) -> list[tuple[int, str, str | None] | None]:
        """Per row of ``embeddings`` (L2-normalised): ``(template id, identity, source)`` of a stored
        template at cosine >= :data:`DUPLICATE_COSINE` (the same photo through the same model; batch
        size and kernels move the last bits), else None."""
        q = np.atleast_2d(np.asarray(embeddings, np.float32))
        if self.embedding_size is None or not len(self):
            return [None] * len(q)
        self._load()
        if q.shape[1] != self._matrix.shape[1]:
            return [None] * len(q)
        s = q @ self._matrix.T
        best = s.argmax(axis=1)
        ident_of = np.repeat(np.arange(len(self._starts)), np.diff(np.r_[self._starts, len(self._tids)]))
        return [(int(self._tids[j]), self._names[ident_of[j]], self._sources[j]) if s[i, j] >= DUPLICATE_COSINE
                else None for i, j in enumerate(best)]

    def add(self, name: str, embeddings, *, sources: Sequence[str | None] | None = None,
            fingerprint: str | None = None, on_duplicate: str = "raise") -> list[int]:
        """Add templates for identity ``name`` (created if new). Returns the template ids.

        A template identical to one stored (or to another in this call) is the same photo enrolled
        twice: ``on_duplicate="raise"`` refuses the whole call (:class:`DuplicateTemplateError`
        naming both), ``"skip"`` leaves it out (listed in :attr:`skipped_duplicates`)."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("identity name must be a non-empty string")
        if on_duplicate not in ("raise", "skip"):
            raise ConfigError(f"on_duplicate must be 'raise' or 'skip', got {on_duplicate!r}")
        emb = _normalise(embeddings, f"{self.path}: templates for {name!r}")
        if sources is not None and len(sources) != len(emb):
            raise ConfigError(f"{len(sources)} sources for {len(emb)} templates")
        self.skipped_duplicates: list[dict] = []
        keep, seen = [], {}
        for i, dup in enumerate(self.duplicates(emb)):
            src = None if sources is None else sources[i]
            same = [k for k, e in seen.items() if float(emb[i] @ emb[k]) >= DUPLICATE_COSINE]
            if dup is None and same:
                dup = (None, name, seen[same[0]])
            if dup is not None:
                what = f"{src or f'template {i}'}: already enrolled as {dup[1]!r}" + (f" (from {dup[2]})" if dup[2] else "")
                if on_duplicate == "raise":
                    raise DuplicateTemplateError(f"{self.path}: {what}; nothing added")
                self.skipped_duplicates.append({"index": i, "source": src, "reason": what})
                continue
            seen[i] = src
            keep.append(i)
        emb = emb[keep]
        if sources is not None:
            sources = [sources[i] for i in keep]
        if not len(emb):
            return []
        if "model_fingerprint" not in self.meta():
            if fingerprint is None:
                raise ConfigError(f"{self.path}: a new gallery needs the model fingerprint")
            self._bind(fingerprint, emb.shape[1])
        self.check_model(fingerprint, emb.shape[1])
        if sources is not None and len(sources) != len(emb):
            raise ConfigError(f"{len(sources)} sources for {len(emb)} templates")
        now = time.time()
        with self._conn:  # one transaction: all templates or none
            row = self._conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            ident = row[0] if row else self._conn.execute(
                "INSERT INTO identities(name, created) VALUES (?, ?)", (name, now)).lastrowid
            ids = []
            for i, vec in enumerate(emb):
                src = None if sources is None else (None if sources[i] is None else str(sources[i]))
                cur = self._conn.execute(
                    "INSERT INTO templates(identity_id, vector, source, created) VALUES (?, ?, ?, ?)",
                    (ident, vec.astype("<f4").tobytes(), src, now))
                ids.append(int(cur.lastrowid))
        self._matrix = None
        return ids

    def add_many(self, names: Sequence[str], embeddings, *, fingerprint: str | None = None) -> None:
        """Bulk insert: one template per row of ``embeddings`` for ``names[i]`` (one transaction)."""
        emb = _normalise(embeddings, f"{self.path}: templates")
        if len(names) != len(emb):
            raise ConfigError(f"{len(names)} names for {len(emb)} templates")
        if "model_fingerprint" not in self.meta():
            if fingerprint is None:
                raise ConfigError(f"{self.path}: a new gallery needs the model fingerprint")
            self._bind(fingerprint, emb.shape[1])
        self.check_model(fingerprint, emb.shape[1])
        now = time.time()
        with self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO identities(name, created) VALUES (?, ?)",
                                   [(n, now) for n in dict.fromkeys(names)])
            ids = dict(self._conn.execute("SELECT name, id FROM identities").fetchall())
            self._conn.executemany(
                "INSERT INTO templates(identity_id, vector, source, created) VALUES (?, ?, NULL, ?)",
                [(ids[n], v.astype("<f4").tobytes(), now) for n, v in zip(names, emb)])
        self._matrix = None

    def remove(self, name: str) -> int:
        """Delete an identity and its templates; returns the number of templates removed."""
        with self._conn:
            row = self._conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ConfigError(f"{self.path}: no identity named {name!r}")
            n = self._conn.execute("DELETE FROM templates WHERE identity_id = ?", (row[0],)).rowcount
            self._conn.execute("DELETE FROM identities WHERE id = ?", (row[0],))
        self._matrix = None
        return int(n)

    # ------------------------------------------------------------------ reading
    def identities(self) -> list[tuple[str, int]]:
        """``(name, number of templates)`` for every identity, by name."""
        return [(n, int(c)) for n, c in self._conn.execute(
            "SELECT i.name, COUNT(t.id) FROM identities i LEFT JOIN templates t ON t.identity_id = i.id "
            "GROUP BY i.id ORDER BY i.name")]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    def template_of(self, name: str) -> np.ndarray | None:
        """The L2-normalised mean of ``name``'s templates (D,), or ``None`` if no such identity."""
        d = self.embedding_size or 0
        rows = self._conn.execute("SELECT t.vector FROM templates t JOIN identities i ON i.id = t.identity_id "
                                  "WHERE i.name = ?", (name,)).fetchall()
        if not rows:
            return None
        m = np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").astype(np.float64).reshape(len(rows), d).mean(0)
        return (m / np.linalg.norm(m)).astype(np.float32)

    def _load(self) -> None:
        key = self._conn.execute("SELECT COUNT(*), MAX(id) FROM templates").fetchone()
        if self._matrix is not None and key == self._cache_key:
            return
        d = self.embedding_size or 0
        rows = self._conn.execute(
            "SELECT t.id, t.identity_id, t.vector, t.source, i.name FROM templates t "
            "JOIN identities i ON i.id = t.identity_id ORDER BY t.identity_id, t.id").fetchall()
        for tid, _, blob, _, _ in rows:
            if len(blob) != 4 * d:
                raise DataFormatError(f"{self.path}: template {tid} has {len(blob)} bytes, expected {4 * d}")
        # one join + one frombuffer: ~10x faster than a row-by-row copy for 100k templates
        joined = b"".join(r[2] for r in rows)
        self._matrix = np.frombuffer(joined, dtype="<f4").astype(np.float32).reshape(len(rows), d)
        self._tids = np.array([r[0] for r in rows], dtype=np.int64)
        self._sources = [r[3] for r in rows]
        ident = np.array([r[1] for r in rows], dtype=np.int64)
        # rows are grouped by identity: segment starts let np.maximum.reduceat take per-identity maxima
        self._starts = np.flatnonzero(np.r_[True, ident[1:] != ident[:-1]]) if len(rows) else np.zeros(0, np.int64)
        self._names = [rows[s][4] for s in self._starts]
        self._cache_key = key

    def search(self, queries, k: int = 5, *, fingerprint: str | None = None,
               per_identity: bool = True, batch_size: int = 256) -> list[list[Match]]:
        """Top-``k`` matches for each query embedding (one list per query, best first).

        ``per_identity`` (default) ranks identities by their best template; otherwise
        templates are ranked individually (an identity may then appear several times).
        """
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = _normalise(queries, f"{self.path}: query")
        self.check_model(fingerprint, q.shape[1])
        self._load()
        n = len(self._tids)
        if n == 0:
            return [[] for _ in range(len(q))]
        out: list[list[Match]] = []
        # bound the score block to ~64 MB whatever the gallery size
        step = max(1, min(batch_size, (16 << 20) // max(n, 1)))
        for b in range(0, len(q), step):
            scores = q[b:b + step] @ self._matrix.T                     # (B, N) cosine
            if per_identity:
                seg = np.maximum.reduceat(scores, self._starts, axis=1)  # (B, identities)
                for row, srow in zip(seg, scores):
                    top = _topk(row, k)
                    hits = []
                    for ident in top:
                        lo = self._starts[ident]
                        hi = self._starts[ident + 1] if ident + 1 < len(self._starts) else n
                        j = lo + int(np.argmax(srow[lo:hi]))
                        hits.append(Match(self._names[ident], float(row[ident]), int(self._tids[j]), self._sources[j]))
                    out.append(hits)
            else:
                ident_of = np.repeat(np.arange(len(self._starts)), np.diff(np.r_[self._starts, n]))
                for srow in scores:
                    out.append([Match(self._names[ident_of[j]], float(srow[j]), int(self._tids[j]), self._sources[j])
                                for j in _topk(srow, k)])
        return out

    def identity_scores(self, queries, *, fingerprint: str | None = None) -> tuple[np.ndarray, list[str]]:
        """``(S, names)``: S[p, i] = the best cosine score of query p against identity ``names[i]``'s
        templates (the matrix :func:`identification_metrics` reads)."""
        q = _normalise(queries, f"{self.path}: query")
        self.check_model(fingerprint, q.shape[1])
        self._load()
        if not len(self._tids):
            return np.zeros((len(q), 0)), []
        return np.maximum.reduceat(q @ self._matrix.T, self._starts, axis=1), list(self._names)

    def set_meta(self, key: str, value: str) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))

    def fpir_threshold(self, fpir: float) -> float:
        """The threshold stored by ``maskinv gallery evaluate --store`` for FPIR ``fpir``."""
        v = self.meta().get(f"threshold@fpir={float(fpir):g}")
        if v is None:
            have = sorted(k.split("=", 1)[1] for k in self.meta() if k.startswith("threshold@fpir="))
            raise ConfigError(f"{self.path}: no threshold measured for FPIR {fpir:g} (have: {', '.join(have) or 'none'}); "
                              f"run `maskinv gallery evaluate {self.path} PROBES --fpir {fpir:g} --store` or pass --threshold")
        return float(v)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _topk(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries, best first (ties broken by index for determinism)."""
    k = min(k, len(row))
    idx = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
    return idx[np.lexsort((idx, -row[idx]))]


def identification_metrics(scores: np.ndarray, names: Sequence[str], labels: Sequence[str], *,
                           ranks: Sequence[int] = (1, 5), fpirs: Sequence[float] = (0.1, 0.01, 0.001)) -> dict:
    """Open-set 1:N metrics from ``scores`` (P probes x I gallery identities, each an identity's best
    template score), the gallery's identity ``names`` and each probe's true identity ``labels``.

    * rank-k (closed set, over mated probes: those whose identity is in the gallery): the true
      identity among the k best;
    * FNIR at FPIR f: non-mated searches are the probes whose identity is not enrolled (their best
      score) and, for mated probes, the search without their own identity (best score among the
      others: every probe also serves as a stranger). The threshold t is the smallest score with
      at most a fraction f of non-mated searches at or above it; FNIR is the fraction of mated
      probes whose true identity is not ranked first with a score >= t. ``None`` (with the reason
      under ``undefined``) when there are fewer than 1/f non-mated searches.
    """
    scores = np.asarray(scores, np.float64)
    names = list(names)
    col = {n: j for j, n in enumerate(names)}
    P = scores.shape[0]
    true = np.array([col.get(lab, -1) for lab in labels])
    mated = true >= 0
    out: dict = {"num_probes": int(P), "num_mated": int(mated.sum()), "num_identities": len(names),
                 "rank": {}, "fnir_at_fpir": {}, "threshold_at_fpir": {}, "undefined": {}}
    if mated.any():
        ms = scores[mated]
        own = ms[np.arange(len(ms)), true[mated]]
        # rank of the true identity: 1 + identities scoring strictly higher
        rank = 1 + (ms > own[:, None]).sum(axis=1)
        for k in ranks:
            out["rank"][int(k)] = float((rank <= k).mean())
        others = ms.copy()
        others[np.arange(len(ms)), true[mated]] = -np.inf
        parts = [others.max(axis=1)] if ms.shape[1] > 1 else []
        first_ok = rank == 1
    else:
        for k in ranks:
            out["undefined"][f"rank[{k}]"] = "no probe's identity is in the gallery"
        parts, own, first_ok = [], np.zeros(0), np.zeros(0, bool)
    if (~mated).any() and scores.shape[1]:
        parts.append(scores[~mated].max(axis=1))
    nonmated = np.concatenate(parts) if parts else np.zeros(0)
    out["num_nonmated_searches"] = int(len(nonmated))
    srt = np.sort(nonmated)[::-1]
    for f in fpirs:
        need = int(np.ceil(1.0 / f - 1e-9))
        if len(nonmated) < need or not mated.any():
            out["fnir_at_fpir"][float(f)] = out["threshold_at_fpir"][float(f)] = None
            out["undefined"][f"fnir_at_fpir[{f:g}]"] = (
                f"needs >= {need} non-mated searches for FPIR <= {f:g}, have {len(nonmated)}" if mated.any()
                else "no mated probe")
            continue
        allowed = int(np.floor(f * len(nonmated) + 1e-9))  # non-mated searches allowed at or above t
        # t just above the (allowed+1)-th best non-mated score
        t = float(np.nextafter(srt[allowed], np.inf)) if allowed < len(srt) else float(srt[-1])
        out["threshold_at_fpir"][float(f)] = t
        out["fnir_at_fpir"][float(f)] = float(1.0 - (first_ok & (own >= t)).mean())
    return out


def set_durable(gallery: Gallery) -> dict[str, str]:
    """Settings for a long-running writer (``maskinv serve``): WAL journal (readers never wait for
    a writer), ``synchronous=FULL`` (a committed transaction survives a crash or kill -9) and
    ``secure_delete`` (removed templates are overwritten on disk). Returns the values in force."""
    c = gallery._conn
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("PRAGMA secure_delete=ON")
    return {k: str(c.execute(f"PRAGMA {k}").fetchone()[0]) for k in ("journal_mode", "synchronous", "secure_delete")}

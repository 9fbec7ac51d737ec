"""Gallery: exact top-k cosine search in SQLite, model binding, persistence."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from maskinv.errors import ConfigError, DataFormatError, ModelMismatchError
from maskinv.gallery import Gallery

FP = "a" * 64
OTHER = "b" * 64


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_planted_match_first_among_1000(tmp_path, rng):
    d = 64
    gal = _unit(rng.standard_normal((1000, d))).astype(np.float32)
    names = [f"id{i:04d}" for i in range(1000)]
    g = Gallery(tmp_path / "g.db", fingerprint=FP, embedding_size=d)
    g.add_many(names, gal, fingerprint=FP)
    assert len(g) == 1000
    planted = [17, 503, 999]
    queries = _unit(gal[planted] + 0.3 * _unit(rng.standard_normal((3, d))))
    results = g.search(queries, k=5, fingerprint=FP)
    for p, hits in zip(planted, results):
        assert hits[0].name == names[p]
        assert len(hits) == 5
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        # exact: equals a brute-force cosine over all templates
        brute = _unit(gal) @ queries[planted.index(p)]
        np.testing.assert_allclose([h.score for h in hits], np.sort(brute)[::-1][:5], rtol=1e-5)
    # batched search with a tiny batch gives the same answers
    again = g.search(queries, k=5, fingerprint=FP, batch_size=1)
    assert [[h.name for h in r] for r in again] == [[h.name for h in r] for r in results]


def test_identity_ranked_by_best_template_and_persisted(tmp_path, rng):
    d = 16
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        a = _unit(rng.standard_normal((3, d)))
        ids = g.add("alice", a, sources=["a1.jpg", "a2.jpg", "a3.jpg"], fingerprint=FP)
        g.add("bob", _unit(rng.standard_normal((2, d))), fingerprint=FP)
        g.add("alice", _unit(rng.standard_normal(d)), fingerprint=FP)  # same identity, more templates
    with Gallery(path, create=False) as g:
        assert g.fingerprint == FP and g.embedding_size == d
        assert g.identities() == [("alice", 4), ("bob", 2)]
        hits = g.search(a[1], k=5, fingerprint=FP)[0]
        assert [h.name for h in hits] == ["alice", "bob"]  # identities, not templates
        assert hits[0].template_id == ids[1] and hits[0].source == "a2.jpg"
        assert hits[0].score == pytest.approx(1.0, abs=1e-6)
        per_t = g.search(a[1], k=3, fingerprint=FP, per_identity=False)[0]
        assert len(per_t) == 3 and per_t[0].template_id == ids[1]
        assert g.remove("bob") == 2
        assert g.identities() == [("alice", 4)]
        assert [h.name for h in g.search(a[1], k=5, fingerprint=FP)[0]] == ["alice"]


def test_mixing_models_refused(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery(path, fingerprint=FP, embedding_size=8)
    g.add("x", _unit(rng.standard_normal(8)), fingerprint=FP)
    with pytest.raises(ModelMismatchError, match="different models"):
        g.add("y", _unit(rng.standard_normal(8)), fingerprint=OTHER)
    with pytest.raises(ModelMismatchError, match="different models"):
        g.search(_unit(rng.standard_normal(8)), fingerprint=OTHER)
    with pytest.raises(ModelMismatchError, match="8-d"):
        g.search(_unit(rng.standard_normal(9)), fingerprint=FP)
    with pytest.raises(ModelMismatchError):
        Gallery(path, fingerprint=OTHER, embedding_size=8)
    assert g.identities() == [("x", 1)]  # nothing was written by the refused calls


def test_bad_inputs(tmp_path, rng):
    g = Gallery(tmp_path / "g.db")
    with pytest.raises(ConfigError, match="fingerprint"):
        g.add("x", np.ones(4))
    with pytest.raises(DataFormatError, match="all zeros"):
        g.add("x", np.zeros(4), fingerprint=FP)
    with pytest.raises(DataFormatError, match="NaN"):
        g.add("x", np.full(4, np.nan), fingerprint=FP)
    with pytest.raises(ConfigError, match="non-empty"):
        g.add("", np.ones(4), fingerprint=FP)
    assert g.search(np.ones(4), k=3) == [[]]
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DataFormatError, match="junk.db"):
        Gallery(tmp_path / "junk.db")
    with pytest.raises(DataFormatError, match="not found"):
        Gallery(tmp_path / "missing.db", create=False)


def test_templates_stored_normalised_float32(tmp_path):
    path = tmp_path / "g.db"
    g = Gallery(path)
    g.add("x", np.array([3.0, 4.0]), fingerprint=FP)
    g.close()
    blob = sqlite3.connect(path).execute("SELECT vector FROM templates").fetchone()[0]
    np.testing.assert_allclose(np.frombuffer(blob, "<f4"), [0.6, 0.8], rtol=1e-6)

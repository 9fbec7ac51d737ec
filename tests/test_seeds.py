"""derive_seed: the legacy derivations reproduce the formulas the call sites used before it (so
committed numbers reproduce bit for bit), and the hash derivation is stable and separates tags."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from maskinv.utils.seeds import LEGACY_DERIVATIONS, derive_seed, step_seed

SRC = Path(__file__).resolve().parents[1] / "src" / "maskinv"

SEEDS = (0, 1, 2, 7, 42, 1234, 2**31 - 1, 2**40 + 3)
SMALL = (0, 1, 2, 3, 7, 999)

# (tag, the formula the call site had, written out, the ranges of its integer arguments)
OLD_FORMULAS = [
    ("dropout", lambda seed, rank: seed * 7919 + rank, (SMALL,)),                   # train/trainer.py
    ("partial_fc", lambda seed, rank: seed * 1000 + 17 + rank, (SMALL,)),           # train/build.py
    ("head", lambda seed: seed + 1, ()),                                            # train/build.py
    ("study_run", lambda seed, offset: seed * 1000 + offset, ((1, 2, 5, 17),)),     # study/recipe.py, adapt_row.py
    ("adapt_data", lambda seed: seed + 1_000_000, ()),                              # study/adapt_row.py
    ("mask_preview", lambda seed, r, c: 1_000_000 + r * 1000 + c, (SMALL, SMALL)),  # masks/preview.py
    ("head_margins", lambda seed: seed + 0x9E3779B9, ()),                           # heads.py
    ("realism_bootstrap", lambda seed: seed + 1, ()),                               # evaluate/realism.py
    ("mask_gallery", lambda seed, j: seed + 1 + j, (range(5),)),                    # study/report.py
]


def test_every_legacy_tag_is_in_the_table():
    assert {t for t, _, _ in OLD_FORMULAS} == set(LEGACY_DERIVATIONS)


@pytest.mark.parametrize("tag,old,ranges", OLD_FORMULAS, ids=[t for t, _, _ in OLD_FORMULAS])
def test_legacy_derivation_equals_the_old_formula(tag, old, ranges):
    for seed in SEEDS:
        for ints in itertools.product(*ranges):
            got = derive_seed(seed, tag, *ints)
            assert type(got) is int
            assert got == old(seed, *ints), (tag, seed, ints)
            assert derive_seed(np.int64(seed), tag, *(np.int32(i) for i in ints)) == got


def test_call_sites_use_derive_seed_not_arithmetic():
    """The old expressions are gone from the call sites (a regression would bring back a copy)."""
    old = {
        "train/trainer.py": r"seed \* 7919",
        "train/build.py": r"seed \* 1000 \+ 17|runtime\.seed \+ 1",
        "study/recipe.py": r"s\.seed \* 1000",
        "study/adapt_row.py": r"s\.seed \* 1000|seed\) \+ DATA_SEED_OFFSET",
        "masks/preview.py": r"1_000_000 \+ r",
        "train/heads.py": r"seed\) \+ 0x9E3779B9",
        "study/report.py": r"seed \+ 1 \+ j",
        "evaluate/realism.py": r"default_rng\(seed \+ 1\)",
    }
    for rel, pattern in old.items():
        text = (SRC / rel).read_text()
        assert not re.search(pattern, text), rel
        assert "derive_seed(" in text, rel


def test_study_runtime_seeds_unchanged():
    """The study's teacher / student runtime seeds of seed s are s*1000+1 / s*1000+2, as before."""
    from maskinv.study.adapt_row import adapt_data_seed
    from maskinv.study.recipe import STUDENT_SEED_OFFSET, TEACHER_SEED_OFFSET

    for s in SEEDS:
        assert derive_seed(s, "study_run", TEACHER_SEED_OFFSET) == s * 1000 + 1
        assert derive_seed(s, "study_run", STUDENT_SEED_OFFSET) == s * 1000 + 2
        assert adapt_data_seed(s) == s + 1_000_000


def test_hash_derivation_is_stable_and_separates():
    # pinned: the same value in every process and platform (no Python hash randomisation)
    assert derive_seed(0, "example") == derive_seed(0, "example")
    vals = {derive_seed(s, t, *i) for s in (0, 1, 2**32, -1) for t in ("a", "b", "ab")
            for i in ((), (0,), (1,), (0, 1), (1, 0), ("x",))}
    assert len(vals) == 4 * 3 * 6  # no collisions among 72 distinct (seed, tags)
    assert all(0 <= v < 2**63 for v in vals)
    assert derive_seed(3, "a", 1) != derive_seed(3, "a", "1")


def test_hash_derivation_pinned_value():
    """A fixed value, written out: a change of the mixing would silently change every new seed."""
    import hashlib

    word = int.from_bytes(hashlib.sha256(b"example").digest()[:8], "little")
    a, b = np.random.SeedSequence([5, 0, 0, 1, word, 2, 3, 0]).generate_state(2, dtype=np.uint32)
    assert derive_seed(5, "example", 3) == (int(a) << 31) ^ int(b)


def test_step_seed_unchanged():
    for seed, rank, step, stream in itertools.product((0, 9, 2**33 + 1), (0, 3), (0, 1, 10_000), (0, 1)):
        a, b = np.random.SeedSequence([seed & 0xFFFFFFFF, rank, step, stream]).generate_state(2, dtype=np.uint32)
        assert step_seed(seed, rank, step, stream) == (int(a) << 31) ^ int(b)
    from maskinv.train.step import step_seed as from_step

    assert from_step is step_seed


@pytest.mark.parametrize("args", [("dropout",), ("dropout", 1, 2), ("head", 1), ("dropout", "x"), (), (3,)])
def test_bad_tags_refused(args):
    with pytest.raises(TypeError):
        derive_seed(0, *args)


def test_bad_seed_refused():
    for bad in (1.5, "1", True, None):
        with pytest.raises(TypeError):
            derive_seed(bad, "a")


def test_head_margin_generator_stream_unchanged():
    """A seeded head draws its margins from ``seed + 0x9E3779B9`` (as before derive_seed), apart
    from its kernel initialisation's stream."""
    import torch

    from maskinv.train.heads import get_head

    for seed in (0, 5, 2**31 - 1):
        head = get_head("arcface", 8, 4, seed=seed)
        want = torch.Generator().manual_seed(seed + 0x9E3779B9)
        assert torch.equal(torch.rand(6, generator=head.generator), torch.rand(6, generator=want))
        assert head.generator.initial_seed() != torch.Generator().manual_seed(seed).initial_seed()


def test_mask_gallery_masks_unchanged(tmp_path, monkeypatch):
    """Column ``j`` of the study's mask gallery masks face ``i`` with ``image_rng(seed + 1 + j, i)``, as before."""
    from maskinv.masks import image_rng
    from maskinv.study import report

    seen = []

    def fake_apply(face, *, rng):
        seen.append(int(rng.integers(2**31)))
        class R:  # noqa: E306
            image = face
        return R()

    faces = (np.arange(4 * 2 * 8 * 8 * 3) % 251).astype(np.uint8).reshape(8, 8, 8, 3)
    monkeypatch.setattr("maskinv.data.bins.decode_bin", lambda p: (faces, None))
    monkeypatch.setattr("maskinv.masks.apply_mask", fake_apply)
    assert report.mask_gallery(tmp_path / "v.bin", tmp_path / "g.png", 7) == tmp_path / "g.png"
    want = [int(image_rng(7 + 1 + j, i).integers(2**31)) for i in range(4) for j in range(5)]
    assert seen == want

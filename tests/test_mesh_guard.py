"""Guard of the mesh renderer's looks: a canonical set of masks drawn on fixed meshes (a few poses)
must keep the summary statistics recorded for the current revision
(:data:`maskinv.masks.mesh.RENDERER_REVISIONS`). A visible change of the renderer without a
revision bump fails here: bump the revision, then record its values
(``MASKINV_RECORD_GUARD=1 pytest -s tests/test_mesh_guard.py`` prints them). Caches of masked
features are keyed by the revision (study-real view names, the realism cache), so a stale
revision would silently reuse features of the old masks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from maskinv.masks.protocols import MU

HERE = Path(__file__).resolve().parent
MESH_FIXTURE = HERE / "helpers" / "mesh_astronaut.npy"
POSES = ((0, 0), (30, 0), (-20, 15))
SEEDS = (0, 1, 2, 3, 4, 5)

#: revision -> "kind|yaw|roll|seed" -> [coverage fraction (alpha > 0.5) of the 180 px image,
#: mean R, G, B where alpha > 0.9]
EXPECTED: dict[str, dict[str, list[float]]] = {
    'mesh-r3': {
        "random|0|0|0": [0.1567, 90.4, 89.3, 91.2], "random|0|0|1": [0.1583, 58.1, 61.1, 104.5], "random|0|0|2": [0.1551, 189.0, 180.8, 208.0],
        "random|0|0|3": [0.1602, 139.7, 176.0, 204.2], "random|0|0|4": [0.1579, 209.0, 183.9, 147.7], "random|0|0|5": [0.1613, 201.8, 205.4, 208.2],
        "random|30|0|0": [0.1506, 88.5, 87.5, 89.4], "random|30|0|1": [0.1556, 56.9, 59.8, 102.4], "random|30|0|2": [0.1493, 184.9, 176.9, 203.5],
        "random|30|0|3": [0.1546, 136.9, 172.4, 200.0], "random|30|0|4": [0.1539, 204.5, 179.9, 144.5], "random|30|0|5": [0.1581, 197.1, 200.7, 203.3],
        "random|-20|15|0": [0.157, 88.8, 87.8, 89.7], "random|-20|15|1": [0.16, 57.5, 60.4, 103.3], "random|-20|15|2": [0.1544, 185.5, 177.5, 204.2],
        "random|-20|15|3": [0.1591, 138.1, 173.8, 201.6], "random|-20|15|4": [0.1585, 206.3, 181.5, 145.8], "random|-20|15|5": [0.1601, 199.3, 202.9, 205.6],
        "surgical|0|0|0": [0.1537, 192.7, 191.6, 194.6], "surgical|0|0|1": [0.1559, 227.4, 221.2, 237.3], "surgical|0|0|2": [0.1551, 137.6, 169.8, 219.1],
        "surgical|0|0|3": [0.1602, 139.7, 176.0, 204.2], "surgical|0|0|4": [0.1554, 155.9, 206.6, 175.0], "surgical|0|0|5": [0.1585, 57.7, 60.6, 68.5],
        "surgical|30|0|0": [0.1481, 188.5, 187.4, 190.3], "surgical|30|0|1": [0.1534, 222.8, 216.7, 233.6], "surgical|30|0|2": [0.1493, 134.6, 166.1, 214.4],
        "surgical|30|0|3": [0.1546, 136.9, 172.4, 200.0], "surgical|30|0|4": [0.1518, 152.6, 202.3, 171.4], "surgical|30|0|5": [0.1544, 56.4, 59.2, 67.0],
        "surgical|-20|15|0": [0.1542, 188.9, 187.8, 190.8], "surgical|-20|15|1": [0.1573, 224.7, 218.5, 234.1], "surgical|-20|15|2": [0.1544, 135.0, 166.6, 215.0],
        "surgical|-20|15|3": [0.1591, 138.1, 173.8, 201.6], "surgical|-20|15|4": [0.156, 154.0, 204.1, 172.9], "surgical|-20|15|5": [0.1572, 56.7, 59.6, 67.4],
        "cloth|0|0|0": [0.1567, 90.4, 89.3, 91.2], "cloth|0|0|1": [0.1583, 58.1, 61.1, 104.5], "cloth|0|0|2": [0.1577, 48.7, 38.5, 64.6],
        "cloth|0|0|3": [0.1625, 52.6, 47.5, 52.5], "cloth|0|0|4": [0.1579, 231.3, 176.9, 176.8], "cloth|0|0|5": [0.1606, 209.6, 213.4, 221.2],
        "cloth|30|0|0": [0.1506, 88.5, 87.5, 89.4], "cloth|30|0|1": [0.1556, 56.9, 59.8, 102.4], "cloth|30|0|2": [0.1514, 47.5, 37.6, 63.0],
        "cloth|30|0|3": [0.1564, 51.4, 46.4, 51.3], "cloth|30|0|4": [0.1539, 226.7, 173.0, 172.9], "cloth|30|0|5": [0.1562, 205.0, 208.8, 216.5],
        "cloth|-20|15|0": [0.157, 88.8, 87.8, 89.7], "cloth|-20|15|1": [0.16, 57.5, 60.4, 103.3], "cloth|-20|15|2": [0.1572, 47.7, 37.8, 63.4],
        "cloth|-20|15|3": [0.1615, 52.0, 47.0, 51.9], "cloth|-20|15|4": [0.1585, 228.0, 174.6, 174.5], "cloth|-20|15|5": [0.1594, 206.4, 210.2, 217.8],
    },
}


def _posed(yaw_deg: float, roll_deg: float) -> np.ndarray:
    m = np.load(MESH_FIXTURE).astype(np.float64)
    c = m[[1]].copy()
    a, r = np.deg2rad(yaw_deg), np.deg2rad(roll_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (m - c) @ Ry.T @ Rz.T + c


def _canvas() -> np.ndarray:
    """A skin-toned face-sized canvas lit from the image left (the renderer measures the light)."""
    x = np.linspace(1.1, 0.8, 180, dtype=np.float32)[None, :, None]
    rgb = np.array([190, 150, 130], np.float32) * x * np.ones((180, 1, 1), np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _stats() -> dict[str, list[float]]:
    from maskinv.masks import apply_mask

    img = _canvas()
    out = {}
    for kind in ("random", "surgical", "cloth"):
        for yaw, roll in POSES:
            mesh = _posed(yaw, roll)
            for seed in SEEDS:
                res = apply_mask(img, None, seed, kind, renderer="mesh", mesh=mesh)
                inside = res.alpha > 0.9
                col = res.image[inside].astype(np.float64).mean(0) if inside.any() else np.zeros(3)
                out[f"{kind}|{yaw}|{roll}|{seed}"] = [round(float((res.alpha > 0.5).mean()), 4),
                                                      *[round(float(c), 1) for c in col]]
    return out


def test_mesh_renderer_looks_match_the_recorded_revision():
    from maskinv.masks.mesh import RENDERER_REVISIONS

    rev = RENDERER_REVISIONS["mesh"]
    got = _stats()
    if os.environ.get("MASKINV_RECORD_GUARD"):
        print(f"\n    {rev!r}: " + json.dumps(got, indent=None))
    assert rev in EXPECTED, (f"no guard values recorded for mesh revision {rev!r}: record them "
                             "(MASKINV_RECORD_GUARD=1 pytest -s tests/test_mesh_guard.py)")
    exp = EXPECTED[rev]
    assert set(got) == set(exp)
    bad = []
    for k, (cov, *rgb) in got.items():
        ecov, *ergb = exp[k]
        if abs(cov - ecov) > 0.004 or max(abs(a - b) for a, b in zip(rgb, ergb)) > 2.0:
            bad.append(f"{k}: got {[cov, *rgb]}, recorded {exp[k]}")
    assert not bad, (f"the mesh renderer draws differently from what revision {rev!r} recorded "
                     f"(bump RENDERER_REVISIONS['mesh'] and record new values): " + "; ".join(bad[:5]))


def test_guard_statistics_see_a_change_in_looks(monkeypatch):
    """The guard's statistics move when the colours or the coverage move (it can fail)."""
    import maskinv.masks.mesh as mm

    base = _stats()
    looks = tuple(type(lk)(lk.kind, lk.colour, tuple(min(255, c + 40) for c in lk.rgb), lk.weight, lk.texture)
                  for lk in mm.LOOKS)
    monkeypatch.setattr(mm, "LOOKS", looks)
    brighter = _stats()
    assert np.mean([brighter[k][1] - base[k][1] for k in base]) > 10
    monkeypatch.setattr(mm, "LOOKS", mm.LOOKS)


def test_revision_names_the_renderer_and_its_looks(monkeypatch):
    import maskinv.masks.mesh as mm
    from maskinv.errors import ConfigError

    assert mm.renderer_revision("v1") == "v1"
    r = mm.renderer_revision("mesh")
    assert r.startswith(mm.RENDERER_REVISIONS["mesh"] + "+") and len(r.split("+")[1]) == 8
    looks = list(mm.LOOKS)
    looks[0] = type(looks[0])(looks[0].kind, looks[0].colour, looks[0].rgb, looks[0].weight + 0.01)
    monkeypatch.setattr(mm, "LOOKS", tuple(looks))
    assert mm.renderer_revision("mesh") != r                      # an edited mix changes the id
    with pytest.raises(ConfigError, match="renderer"):
        mm.renderer_revision("v9")


def test_cache_keys_and_records_differ_by_revision(monkeypatch):
    import maskinv.masks.mesh as mm
    from maskinv.study.real.data import renderer_info
    from maskinv.study.real.features import FeatureCache, view_name
    from maskinv.thresholds import calibrate_from_scores

    crop = np.zeros((4, 4, 3), np.uint8)
    assert view_name("v1", 0, 0) == "v1:seed0:draw0"          # v1 caches stay valid
    now = view_name("mesh", 0, 0)
    assert now.startswith(mm.renderer_revision("mesh") + ":")
    assert renderer_info("mesh")["revision"] == mm.renderer_revision("mesh")
    s = np.array([0.9, 0.8, 0.2, 0.1, 0.3, 0.7])
    g = np.array([True, True, False, False, False, True])
    e = calibrate_from_scores(s, g, fmr=0.34, protocol=MU, fingerprint="x", source={}, mask_renderer="mesh")
    assert e["mask_renderer"] == "mesh" and e["mask_renderer_revision"] == mm.renderer_revision("mesh")
    monkeypatch.setitem(mm.RENDERER_REVISIONS, "mesh", "mesh-r2")
    old = view_name("mesh", 0, 0)
    assert old != now and old.startswith("mesh-r2+")
    assert FeatureCache.item_key(None, crop, old) != FeatureCache.item_key(None, crop, now)
    assert renderer_info("mesh")["revision"].startswith("mesh-r2+")


def test_trained_backbone_sidecar_records_the_revision(monkeypatch, tmp_path):
    import maskinv.models as models
    from maskinv.masks.mesh import renderer_revision
    from maskinv.train.config import load_config
    from maskinv.train.outputs import export_student

    seen = {}
    monkeypatch.setattr(models, "export_backbone", lambda bb, path, extra_meta: seen.update(extra_meta))
    tiny = HERE.parent / "configs" / "tiny-cpu.yaml"
    for over in ([], ["masks.renderer=mesh", "masks.kinds=[random]"]):
        cfg = load_config(tiny, over)
        export_student(cfg, tmp_path, None, None, 0)
        assert seen["mask_renderer"] == cfg.masks.renderer
        assert seen["mask_renderer_revision"] == renderer_revision(cfg.masks.renderer)

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
EXPECTED: dict[str, dict[str, list[float]]] = {}


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
    return np.clip(np.array([190, 150, 130], np.float32) * x * np.ones((180, 1, 1), np.float32), 0, 255).astype(np.uint8)


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

"""maskinv.masks.landmark_files and maskinv.masks.preview as library calls."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.constants import ARCFACE_TEMPLATE_112
from maskinv.errors import DataFormatError
from maskinv.masks import apply_mask, image_rng
from maskinv.masks.kinds import MASK_KINDS
from maskinv.masks.landmark_files import load_landmarks
from maskinv.masks.preview import CELL, mask_preview


def test_npy_shared_and_per_image(tmp_path):
    lm = ARCFACE_TEMPLATE_112.astype(np.float32)
    np.save(tmp_path / "one.npy", lm)
    got = load_landmarks(tmp_path / "one.npy", ["a.png", "b.png"])
    assert len(got) == 2 and all(np.array_equal(g, lm) for g in got)
    np.save(tmp_path / "each.npy", np.stack([lm, lm + 1]))
    got = load_landmarks(tmp_path / "each.npy", ["a.png", "b.png"])
    np.testing.assert_array_equal(got[1], lm + 1)
    with pytest.raises(DataFormatError, match=r"each.npy: landmarks of shape \(2, 5, 2\) do not fit 3 image"):
        load_landmarks(tmp_path / "each.npy", ["a", "b", "c"])


def test_json_by_relative_path(tmp_path):
    lm = ARCFACE_TEMPLATE_112.tolist()
    (tmp_path / "lm.json").write_text(json.dumps({"x/a.png": lm, "b.png": lm}))
    got = load_landmarks(tmp_path / "lm.json", ["b.png", "x/a.png"])
    assert [g.shape for g in got] == [(5, 2), (5, 2)] and got[0].dtype == np.float64
    with pytest.raises(DataFormatError, match=r"lm.json: no landmarks for 'c.png' \(\+1 more\)"):
        load_landmarks(tmp_path / "lm.json", ["c.png", "d.png"])
    (tmp_path / "single.json").write_text(json.dumps({"other-name.png": lm}))
    assert len(load_landmarks(tmp_path / "single.json", ["face.png"])) == 1  # one image, one entry
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(DataFormatError, match="bad.json: invalid JSON"):
        load_landmarks(tmp_path / "bad.json", ["a"])
    with pytest.raises(DataFormatError, match="lm.txt: landmarks file must be .npy or .json"):
        load_landmarks(tmp_path / "lm.txt", ["a"])


def test_preview_layout_and_streams(rng):
    faces = [rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8) for _ in range(2)]
    grid = mask_preview(faces, [None, None], "random", 3, 4)
    assert grid.shape == (18 + 2 * CELL, 5 * CELL, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[18:18 + CELL, :CELL], faces[0])  # clean face first (112 px: no resize)
    # row 1, column 2 is the third mask kind on face 1 from stream (seed, 10**6 + 1000 + 2)
    want = apply_mask(faces[1], None, image_rng(3, 1_000_000 + 1000 + 2), MASK_KINDS[2]).image
    np.testing.assert_array_equal(grid[18 + CELL:, 3 * CELL:4 * CELL], want)
    assert (grid[:18] < 255).any()  # header text drawn

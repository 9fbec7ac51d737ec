"""Image folder datasets: deterministic labels, RGB decode, errors."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from maskinv.data.folders import ImageFolderDataset
from maskinv.errors import DataFormatError


def _write(path, rgb, ext):
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())


def test_labels_sorted_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {}
    for name, files in {"bob": ["b.png", "a.PNG"], "alice": ["x.bmp"], "carl": ["z.png", "notes.txt"]}.items():
        (tmp_path / name).mkdir()
        for f in files:
            if f.endswith(".txt"):
                (tmp_path / name / f).write_text("ignore me")
                continue
            img = rng.integers(0, 256, (10, 8, 3), dtype=np.uint8)
            _write(tmp_path / name / f, img, "." + f.split(".")[1].lower())
            imgs[(name, f)] = img
    (tmp_path / ".hidden").mkdir()
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["alice", "bob", "carl"]
    assert [p.name for p in ds.paths] == ["x.bmp", "a.PNG", "b.png", "z.png"]
    assert ds.labels.tolist() == [0, 1, 1, 2]
    assert ds.num_classes == 3 and len(ds) == 4 and ds.image_size == (10, 8)
    img, label = ds[1]
    assert label == 1
    np.testing.assert_array_equal(img, imgs[("bob", "a.PNG")])  # RGB, not BGR
    ds2 = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(ds2[3][0], imgs[("carl", "z.png")])


def test_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no identity sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataFormatError, match="no images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"nope")
    ds = ImageFolderDataset(tmp_path)
    with pytest.raises(DataFormatError, match=r"broken.jpg: undecodable"):
        ds[0]

"""utils.images: the one owner of decode/encode (BGR<->RGB), extensions, sniffing, grids."""
from __future__ import annotations

import numpy as np
import pytest

from maskinv.errors import ConfigError, DataFormatError
from maskinv.utils.images import (
    IMAGE_EXTENSIONS,
    decode_image,
    encode_format_for,
    encode_image,
    image_grid,
    sniff_image_format,
)


@pytest.fixture
def img(rng):
    a = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    a[0, 0] = (255, 0, 0)  # pure red: a BGR/RGB swap would show
    return a


@pytest.mark.parametrize("fmt", ["png", "bmp", "tif", "tiff"])
def test_lossless_round_trip_keeps_rgb(img, fmt):
    data = encode_image(img, fmt)
    assert sniff_image_format(data) == ("tif" if fmt == "tiff" else fmt)
    np.testing.assert_array_equal(decode_image(data), img)


def test_jpeg_keeps_channel_order_and_quality_matters(img):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    out = decode_image(encode_image(red, "jpg", 95))
    assert out[..., 0].min() > 240 and out[..., 2].max() < 15
    assert len(encode_image(img, "jpeg", 30)) < len(encode_image(img, "jpg", 100))
    assert sniff_image_format(encode_image(img, "jpg")) == "jpg"


def test_bad_inputs_name_the_value(img):
    with pytest.raises(ConfigError, match="'gif'"):
        encode_image(img, "gif")
    with pytest.raises(DataFormatError, match=r"x.jpg: undecodable image \(5 bytes\)"):
        decode_image(b"hello", "x.jpg")


def test_sniff_unknown_and_webp():
    assert sniff_image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image_format(b"GIF89a") == "gif"
    assert sniff_image_format(b"\0\1\2") == "bin"


def test_encode_format_for(tmp_path):
    assert encode_format_for(tmp_path / "a.JPG") == "jpg"
    assert encode_format_for(tmp_path / "noext", default="png") == "png"
    with pytest.raises(ConfigError, match=r"a.bmp: unsupported output image type '.bmp'"):
        encode_format_for(tmp_path / "a.bmp", ("jpg", "png"))
    with pytest.raises(ConfigError, match="no extension"):
        encode_format_for(tmp_path / "noext")


def test_extensions_are_lower_case_with_dot():
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} <= set(IMAGE_EXTENSIONS)


def test_image_grid_layout():
    cells = np.stack([np.full((2, 3, 3), i, np.uint8) for i in range(5)])
    g = image_grid(cells, 2)
    assert g.shape == (3 * 2, 2 * 3, 3)
    assert g[0, 0, 0] == 0 and g[0, 3, 0] == 1 and g[2, 0, 0] == 2 and g[4, 0, 0] == 4
    assert g[4, 3:].max() == 0  # padded cell
    np.testing.assert_array_equal(image_grid(cells, 5), np.concatenate(list(cells), axis=1))
    with pytest.raises(ConfigError, match="cols must be >= 1, got 0"):
        image_grid(cells, 0)
    with pytest.raises(ConfigError, match="shape"):
        image_grid(np.zeros((0, 2, 2, 3), np.uint8), 1)


def test_a_truncated_jpeg_is_named_truncated():
    import cv2

    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    with pytest.raises(DataFormatError, match=r"cut.jpg: a truncated JPEG \(the file ends before its end-of-image marker\)"):
        decode_image(data[:200], "cut.jpg")
    with pytest.raises(DataFormatError, match=r"e.jpg: an empty file"):
        decode_image(b"", "e.jpg")


def test_resize_rule_area_down_linear_up():
    import cv2

    from maskinv.models.embedding import resize_images as from_embedding
    from maskinv.utils.images import resize_images

    assert from_embedding is resize_images  # one owner, old import path kept
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    got = resize_images(big, 32)  # shrinking (32 < min side 40): area
    assert got.shape == (2, 32, 32, 3) and got.dtype == np.uint8
    for g, im in zip(got, big):
        np.testing.assert_array_equal(g, cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA))
    got = resize_images(small, 32)  # enlarging: linear
    for g, im in zip(got, small):
        np.testing.assert_array_equal(g, cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR))


def test_resize_note_texts():
    import warnings

    from maskinv.utils.images import resize_note

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        resize_note([(40, 48)], 112, stacklevel=1)
        resize_note([(112, 100), (90, 90), (112, 100)], 112, total=5, stacklevel=1)
        resize_note([(1, 1), (2, 2), (3, 3), (4, 4)], 8, total=4, stacklevel=1)
    texts = [str(x.message) for x in w]
    assert texts == ["resizing images from 40x48 to the model's input size 112x112",
                     "resized 3 of 5 aligned images (90x90, 112x100) to the model's input size 112x112",
                     "resized 4 of 4 aligned images (1x1, 2x2, 3x3, ...) to the model's input size 8x8"]
    assert all(x.category is UserWarning and x.filename == __file__ for x in w)  # points at the caller


def test_safe_name():
    from maskinv.utils.naming import safe_name

    assert safe_name("m0.pt") == "m0.pt"
    assert safe_name("mtcnn+yunet") == "mtcnn+yunet"
    assert safe_name("a/b c\\d") == "a_b_c_d"
    assert safe_name("  ünï côdé ") == "n_c_d"
    assert safe_name("__x__") == "x"
    assert safe_name(3) == "3"
    for empty in ("", "///", "..", ".", "_._"):
        assert safe_name(empty) == "item"
    assert safe_name("", fallback="detector") == "detector"


def test_safe_name_per_char_keeps_the_detector_cache_names():
    """``per_char=True`` is exactly the rule the detector caches (data/folder_bench.py, study/real/data.py)
    used before: existing cache folders and recorded detector tags keep their names."""
    from maskinv.utils.naming import safe_name

    old = lambda t: "".join(c if c.isalnum() or c in "-_." else "_" for c in t)  # noqa: E731
    for name in ("mtcnn", "dlib", "yunet", "mtcnn+yunet", "My Det/v2", "__x__", "a++b", "ünï", "x.y-z_1"):
        assert safe_name(name, fallback="detector", per_char=True) == old(name), name
    assert safe_name("mtcnn+yunet", per_char=True) == "mtcnn_yunet" != safe_name("mtcnn+yunet")
    assert safe_name("", fallback="detector", per_char=True) == "detector"
    assert safe_name("..", fallback="detector", per_char=True) == "detector"


def test_center_crop_uses_the_one_resize_rule():
    """data.folder_bench.center_crop: the same pixels as the crop it made with cv2 directly (area when
    shrinking, linear when enlarging), now through utils.images.resize_images."""
    import cv2

    from maskinv.data.folder_bench import center_crop

    rng = np.random.default_rng(0)
    for h, w, size in ((160, 120, 112), (90, 100, 112), (112, 130, 112), (40, 40, 16)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        s = min(h, w)
        sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        want = sq if s == size else cv2.resize(
            sq, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
        got = center_crop(img, size)
        assert got.shape == (size, size, 3) and np.array_equal(got, want), (h, w, size)

"""Verification .bin files: safe loading, Python-2 pickles, round trips."""
from __future__ import annotations

import pickle
import struct

import cv2
import numpy as np
import pytest

from maskinv.data.bins import decode_bin, load_bin, save_bin
from maskinv.errors import DataFormatError, UnsafePickleError


def _png(seed: int, size: int = 16) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """Hand-assembled protocol-2 pickle as Python 2 wrote it: str -> (SHORT_)BINSTRING."""
    out = bytearray(b"\x80\x02")  # PROTO 2
    out += b"]("  # EMPTY_LIST, MARK
    for b in images:
        if len(b) < 256:
            out += b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
        else:
            out += b"T" + struct.pack("<i", len(b)) + b  # BINSTRING
    out += b"e"  # APPENDS
    out += b"]("
    out += b"".join(b"\x88" if v else b"\x89" for v in issame)  # NEWTRUE / NEWFALSE
    out += b"e"
    out += b"\x86."  # TUPLE2, STOP
    return bytes(out)


def test_python2_pickle_loads(tmp_path):
    imgs = [_png(i, 16 if i % 2 else 40) for i in range(4)]
    assert any(len(b) >= 256 for b in imgs) and any(len(b) < 256 for b in [b"x" * 10])
    data = _py2_pickle(imgs, [True, False])
    assert b"T" in data
    # plain pickle without encoding='bytes' would fail on these; ours reads them
    p = tmp_path / "py2.bin"
    p.write_bytes(data)
    got, issame = load_bin(p)
    assert got == imgs
    assert issame.dtype == bool and issame.tolist() == [True, False]


def test_short_binstring_images(tmp_path):
    imgs = [b"\xff\xd8tiny%d" % i for i in range(2)]
    p = tmp_path / "s.bin"
    p.write_bytes(_py2_pickle(imgs, [True]))
    assert load_bin(p)[0] == imgs


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_os_system_pickle_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.bin"
    p.write_bytes(pickle.dumps(([_Evil(marker), b"x"], [True])))
    assert b"system" in p.read_bytes()
    with pytest.raises(UnsafePickleError, match=r"evil.bin.*(posix|os)\.system"):
        load_bin(p)
    assert not marker.exists()
    # protocol 0 (GLOBAL opcode) is refused too
    p.write_bytes(pickle.dumps((_Evil(marker),), protocol=0))
    with pytest.raises(UnsafePickleError):
        load_bin(p)
    assert not marker.exists()


def test_non_bool_numpy_array_refused(tmp_path):
    p = tmp_path / "objarr.bin"
    p.write_bytes(pickle.dumps(([b"a", b"b"], np.array([1], dtype=object))))
    with pytest.raises(UnsafePickleError, match="dtype"):
        load_bin(p)
    p.write_bytes(pickle.dumps(([b"a", b"b"], np.array([1.0]))))
    with pytest.raises(UnsafePickleError):
        load_bin(p)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_bool_issame_all_protocols(tmp_path, protocol):
    p = tmp_path / "np.bin"
    imgs = [_png(i) for i in range(6)]
    flags = np.array([True, False, True])
    p.write_bytes(pickle.dumps((imgs, flags), protocol=protocol))
    got, issame = load_bin(p)
    assert got == imgs and issame.tolist() == [True, False, True]
    p.write_bytes(pickle.dumps((imgs, [np.bool_(True), np.bool_(False), np.bool_(True)]), protocol=protocol))
    assert load_bin(p)[1].tolist() == [True, False, True]


def test_save_load_decode_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrs = rng.integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    imgs = [cv2.imencode(".png", cv2.cvtColor(a, cv2.COLOR_RGB2BGR))[1].tobytes() for a in arrs]
    p = tmp_path / "rt.bin"
    save_bin(p, imgs, [False, True])
    got, issame = load_bin(p)
    assert got == imgs and issame.tolist() == [False, True]
    dec, same = decode_bin(p)
    np.testing.assert_array_equal(dec, arrs)  # RGB, lossless
    dec2, _ = decode_bin(p, image_size=(6, 5))
    assert dec2.shape == (4, 6, 5, 3)


def test_structure_errors(tmp_path):
    p = tmp_path / "bad.bin"
    p.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(DataFormatError, match=r"bad.bin: 3 images for 1 pairs"):
        load_bin(p)
    p.write_bytes(pickle.dumps(([b"a", b"b"], [1])))
    with pytest.raises(DataFormatError, match=r"issame\[0\]"):
        load_bin(p)
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(DataFormatError, match="bad.bin"):
        load_bin(p)
    with pytest.raises(ValueError):
        save_bin(tmp_path / "x.bin", [b"a"], [True])


def test_python2_numpy_bool_array(tmp_path):
    """issame as a NumPy bool array pickled by Python 2 (every string a BINSTRING)."""

    def sbs(b: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(b)]) + b

    arr = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + b"K\x00\x85" + sbs(b"b") + b"\x87R"  # (ndarray, (0,), 'b') REDUCE
        + b"(K\x01K\x03\x85"  # MARK, version 1, shape (3,)
        + b"cnumpy\ndtype\n" + sbs(b"b1") + b"K\x00K\x01\x87R"  # dtype('b1', 0, 1)
        + b"(K\x03" + sbs(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # dtype state, BUILD
        + b"\x89" + sbs(b"\x01\x00\x01") + b"tb"  # fortran False, raw bytes; TUPLE, BUILD
    )
    imgs = [b"img%d" % i for i in range(6)]
    data = b"\x80\x02](" + b"".join(sbs(b) for b in imgs) + b"e" + arr + b"\x86."
    p = tmp_path / "py2np.bin"
    p.write_bytes(data)
    got, issame = load_bin(p)
    assert got == imgs and issame.dtype == bool and issame.tolist() == [True, False, True]


def test_save_bin_count_mismatch_names_counts(tmp_path):
    from maskinv.errors import ConfigError

    with pytest.raises(ConfigError, match="save_bin: 3 images for 1 pairs"):
        save_bin(tmp_path / "x.bin", [b"a", b"b", b"c"], [True])
    assert not (tmp_path / "x.bin").exists()

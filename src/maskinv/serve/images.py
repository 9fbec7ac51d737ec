"""Uploaded image bytes -> uint8 RGB, with the checks a public endpoint needs *before* decoding:
the format (JPEG or PNG, by signature), the pixel count read from the header (a decompression
bomb is refused without allocating it), and a complete file (a truncated JPEG/PNG is refused,
not decoded half grey)."""
from __future__ import annotations

import struct

import numpy as np

from ..utils.images import decode_image, sniff_image_format
from .errors import ServeError

__all__ = ["header_size", "decode_upload", "ACCEPTED_FORMATS"]

ACCEPTED_FORMATS = ("jpg", "png")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF or a PNG's IHDR; None when the header is unreadable."""
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def _complete(data: bytes, fmt: str) -> bool:
    tail = data.rstrip(b"\x00\r\n ")
    if fmt == "jpg":
        return tail.endswith(b"\xff\xd9")
    return b"IEND" in data[-16:]


def decode_upload(data: bytes, field: str, *, max_pixels: int, content_type: str | None = None) -> np.ndarray:
    """Decode one uploaded image or raise :class:`ServeError` (4xx) naming ``field`` and the problem."""
    if not data:
        raise ServeError(400, "empty_image", f"{field}: zero bytes (an empty upload)")
    if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise ServeError(415, "wrong_content_type", f"{field}: content type {content_type!r} is not an image "
                         "(send image/jpeg or image/png)")
    fmt = sniff_image_format(data[:16])
    if fmt not in ACCEPTED_FORMATS:
        raise ServeError(415, "not_an_image", f"{field}: not a JPEG or PNG image ({len(data)} bytes, "
                         f"{'format ' + fmt if fmt != 'bin' else 'unknown signature'})")
    size = header_size(data, fmt)
    if size is None:
        raise ServeError(400, "bad_image", f"{field}: {fmt.upper()} header is damaged or cut off")
    w, h = size
    if w < 1 or h < 1:
        raise ServeError(400, "bad_image", f"{field}: image header says {w}x{h} pixels")
    if w * h > max_pixels:
        raise ServeError(413, "too_many_pixels", f"{field}: {w}x{h} = {w * h / 1e6:.1f} megapixels; "
                         f"the limit is {max_pixels / 1e6:.1f} megapixels")
    if not _complete(data, fmt):
        raise ServeError(400, "truncated_image", f"{field}: the {fmt.upper()} file is truncated (no end marker)")
    try:
        return decode_image(data, field)
    except Exception as exc:  # noqa: BLE001 - re-raised as a 4xx naming the field
        raise ServeError(400, "bad_image", f"{field}: could not decode the image ({exc})") from None

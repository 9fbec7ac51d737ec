"""The one owner of image I/O conventions: encoded bytes <-> uint8 RGB arrays (OpenCV works
in BGR: :func:`decode_image` and :func:`encode_image` are the only BGR<->RGB sites), the
image-file extensions, format sniffing, picture grids, and the one resize rule (with its note)
for aligned crops of another size than a model's input."""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from maskinv.errors import ConfigError, DataFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ENCODE_FORMATS",
    "decode_image",
    "encode_image",
    "encode_format_for",
    "sniff_image_format",
    "image_grid",
    "resize_images",
    "resize_note",
]

#: Extensions (lower case) of files read as images (folder scans, ``maskinv mask``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".ppm", ".pgm")
#: Formats :func:`encode_image` writes (``jpeg`` is ``jpg``, ``tiff`` is ``tif``).
ENCODE_FORMATS = ("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff")

# Leading bytes of the formats OpenCV reads (WebP is checked separately: RIFF....WEBP).
_SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"GIF8", "gif"),
               (b"II*\x00", "tif"), (b"MM\x00*", "tif"))


def _why_undecodable(data: bytes) -> str:
    """What is wrong with bytes OpenCV could not decode: empty, a truncated JPEG/PNG, or not an image."""
    if not data:
        return "an empty file, not an image"
    if data[:3] == b"\xff\xd8\xff":
        return "a truncated JPEG (the file ends before its end-of-image marker)" if b"\xff\xd9" not in data[-64:] \
            else "a damaged JPEG (undecodable)"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "a truncated PNG (no IEND chunk)" if b"IEND" not in data[-16:] else "a damaged PNG (undecodable)"
    return "undecodable image"


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3); grey/alpha are converted.

    ``IMREAD_COLOR`` applies the EXIF orientation and always gives 3 channels.
    Raises :class:`DataFormatError` naming ``where`` when the bytes are not an image.
    """
    import cv2

    from maskinv.utils.native_stderr import captured

    buf = np.frombuffer(data, dtype=np.uint8)
    with captured(where):  # libjpeg's "Corrupt JPEG data" -> a warning naming the image (CLI only)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise DataFormatError(f"{where}: {_why_undecodable(data)} ({len(data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_image(image: np.ndarray, image_format: str = "jpg", quality: int = 95) -> bytes:
    """uint8 RGB -> encoded bytes.

    ``jpg``/``jpeg``: JPEG at ``quality`` (written from BGR, as the reference RecordIO files
    are); ``png``: lossless, compression level 3; ``bmp``, ``webp``, ``tif``/``tiff``: OpenCV's
    defaults.
    """
    import cv2

    fmt = str(image_format).lower().lstrip(".")
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif fmt in ENCODE_FORMATS:
        ok, buf = cv2.imencode(f".{fmt}", bgr)
    else:
        raise ConfigError(f"image format must be one of {', '.join(ENCODE_FORMATS)}, got {image_format!r}")
    if not ok:  # pragma: no cover - OpenCV failure
        raise DataFormatError(f"could not encode a {image.shape} image as {fmt}")
    return buf.tobytes()


def encode_format_for(path: str | os.PathLike, allowed: Sequence[str] = ENCODE_FORMATS, default: str | None = None) -> str:
    """The :func:`encode_image` format for an output path's extension.

    Raises :class:`ConfigError` naming the path when the extension is not in ``allowed``
    (``default`` is used for a path without extension, when given).
    """
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if not ext and default:
        ext = default
    if ext not in allowed:
        raise ConfigError(f"{path}: unsupported output image type {('.' + ext) if ext else '(no extension)'!r}; "
                          f"use one of {', '.join('.' + a for a in allowed)}")
    return ext


def sniff_image_format(data: bytes) -> str:
    """File extension (without dot) of encoded image bytes from their signature, ``bin`` if unknown."""
    for sig, ext in _SIGNATURES:
        if data.startswith(sig):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def image_grid(images: Sequence[np.ndarray] | np.ndarray, cols: int) -> np.ndarray:
    """Tile equally sized (H, W, 3) images row by row, ``cols`` per row, into one array.

    A last, incomplete row is padded with black cells.
    """
    imgs = np.asarray(images) if not isinstance(images, np.ndarray) else images
    if imgs.ndim != 4 or len(imgs) == 0:
        raise ConfigError(f"image_grid: expected a non-empty (N, H, W, C) stack, got shape {imgs.shape}")
    cols = int(cols)
    if cols < 1:
        raise ConfigError(f"image_grid: cols must be >= 1, got {cols}")
    n, h, w, c = imgs.shape
    rows = -(-n // cols)
    if rows * cols != n:
        imgs = np.concatenate([imgs, np.zeros((rows * cols - n, h, w, c), imgs.dtype)])
    return np.ascontiguousarray(imgs.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c))


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) -> (N, size, size, 3): area interpolation when shrinking, linear when enlarging
    (the one resize rule for crops of another size than the model's)."""
    import cv2

    h, w = images.shape[1:3]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def resize_note(sizes: Sequence[tuple[int, int]], size: int, *, total: int | None = None,
                stacklevel: int = 2) -> None:
    """The one warning for aligned crops resized to the model's ``size`` x ``size`` input
    (``sizes``: the (width, height) of each resized crop; ``stacklevel``: as if the caller called
    ``warnings.warn`` itself, so the default 2 points at the caller's caller).

    With ``total`` (one batch, one call: the facade) the note counts: "resized N of T aligned
    images (WxH) to ...". Without it (evaluation embeds the same images once per protocol and side,
    so a count per call over-counts and makes each call's note different, while the CLI prints a
    note once per text): "resizing images from WxH to ...".
    """
    distinct = sorted(set(sizes))
    listed = ", ".join(f"{w}x{h}" for w, h in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    if total is None:
        text = f"resizing images from {listed} to the model's input size {size}x{size}"
    else:
        text = f"resized {len(sizes)} of {total} aligned images ({listed}) to the model's input size {size}x{size}"
    warnings.warn(text, UserWarning, stacklevel=stacklevel + 1)

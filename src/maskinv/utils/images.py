"""Encoded image bytes <-> uint8 RGB arrays (OpenCV works in BGR: convert only here)."""
from __future__ import annotations

import numpy as np

from maskinv.errors import ConfigError, DataFormatError


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3); grey/alpha are converted.

    Raises :class:`DataFormatError` naming ``where`` when the bytes are not an image.
    """
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise DataFormatError(f"{where}: undecodable image ({len(data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_image(image: np.ndarray, image_format: str = "jpg", quality: int = 95) -> bytes:
    """uint8 RGB -> JPEG (``quality``; written from BGR as the reference RecordIO files are) or PNG bytes."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if image_format in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        raise ConfigError(f"image format must be 'jpg' or 'png', got {image_format!r}")
    if not ok:  # pragma: no cover - OpenCV failure
        raise DataFormatError(f"could not encode a {image.shape} image as {image_format}")
    return buf.tobytes()

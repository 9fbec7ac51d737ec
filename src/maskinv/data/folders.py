"""Image folders: ``root/<identity>/<image>``, one sub-folder per identity (REFERENCE §5).

Identities are the sub-folder names sorted as strings — or by value when every name is
a decimal number, as ``maskinv data unpack`` writes them (label = rank); images inside each
folder are sorted by file name, so the same tree always gives the same labels and order.
Hidden files/folders (leading ``.``) are ignored; files with other extensions are skipped.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskinv.errors import DataFormatError
from maskinv.utils.images import IMAGE_EXTENSIONS, decode_image

__all__ = ["ImageFolderDataset", "scan_image_folder"]


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, image paths, int64 labels) of an identity-per-folder tree."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(2, "No such directory", str(root))
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    # All-numeric names (as written by ``maskinv data unpack``) sort by value so labels
    # survive an unpack/pack round trip; otherwise plain string order.
    numeric = bool(names) and all(n.isdigit() for n in names)
    classes = sorted(names, key=(lambda n: (int(n), n)) if numeric else None)
    if not classes:
        raise DataFormatError(f"{root}: no identity sub-folders (expected root/<identity>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            (f for f in (root / name).iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda f: f.name,
        )
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataFormatError(f"{root}: {len(classes)} identity folders but no images ({', '.join(IMAGE_EXTENSIONS)})")
    return classes, paths, np.asarray(labels, dtype=np.int64)


class ImageFolderDataset:
    """Aligned face images in identity folders; same item contract as ``RecordIODataset``.

    Item ``i`` is ``(uint8 RGB (H, W, 3), int label)``.  Attributes: ``classes`` (folder
    names, label order), ``paths``, ``labels`` (int64), ``keys`` (``arange(len)``),
    ``num_classes``, ``image_size`` ((H, W) of the first image).  Picklable (holds paths only).
    Identities whose folder holds no image still take a label, so labels match folder order.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.classes, self.paths, self.labels = scan_image_folder(self.root)
        self.keys = np.arange(len(self.paths), dtype=np.int64)
        self._image_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def read_encoded(self, i: int) -> tuple[bytes, int]:
        """(file bytes, label) of item ``i``."""
        return self.paths[i].read_bytes(), int(self.labels[i])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        data, label = self.read_encoded(i)
        return decode_image(data, str(self.paths[i])), label

    @property
    def image_size(self) -> tuple[int, int]:
        if self._image_size is None:
            img, _ = self[0]
            self._image_size = (int(img.shape[0]), int(img.shape[1]))
        return self._image_size

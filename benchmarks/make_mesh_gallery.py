"""docs/mask_gallery_mesh.png: v1 and mesh masks on the public-domain astronaut photo (skimage's
astronaut.png, NASA), upright and rolled by +-20 degrees.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/make_mesh_gallery.py docs/mask_gallery_mesh.png

Rows: roll -20, 0, +20 degrees. Columns: clean crop, two v1 masks, five mesh masks (seeds 0-4),
each mask drawn on the full photo from MTCNN's five points, then cropped around the face.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np


def main(out: str) -> None:
    import cv2

    from maskinv.align import detect_faces
    from maskinv.align.mesh import mesh_points
    from maskinv.masks import mask_photo
    from maskinv.utils.images import decode_image, encode_image
    from maskinv.utils.io import atomic_write_bytes

    loc = list(importlib.util.find_spec("skimage").submodule_search_locations)[0]
    photo = decode_image((Path(loc) / "data" / "astronaut.png").read_bytes())
    rows = []
    for roll in (-20, 0, 20):
        R = cv2.getRotationMatrix2D((256, 256), roll, 1.0)
        img = cv2.warpAffine(photo, R, (512, 512), borderMode=cv2.BORDER_REFLECT)
        face = detect_faces(img, "mtcnn")[0]
        mesh = mesh_points(img, face.landmarks).points[0]
        x0, y0, x1, y1 = face.box
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0), 1.5 * max(x1 - x0, y1 - y0)

        def crop(im):
            s = 128 / side
            M = np.float32([[s, 0, 64 - cx * s], [0, s, 64 - cy * s]])
            return cv2.warpAffine(im, M, (128, 128), flags=cv2.INTER_AREA)

        row = [crop(img)]
        row += [crop(mask_photo(img, face.landmarks, s).image) for s in (0, 1)]
        row += [crop(mask_photo(img, face.landmarks, s, renderer="mesh", mesh=mesh).image) for s in range(5)]
        rows.append(np.concatenate(row, 1))
    atomic_write_bytes(out, encode_image(np.concatenate(rows, 0), "png"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/mask_gallery_mesh.png")

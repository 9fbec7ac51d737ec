"""``maskinv mask`` and ``maskinv mask-bin``: synthetic masks on image files and verification bins.

    maskinv mask INPUT OUTPUT [--kind K|random] [--seed S] [--landmarks FILE] [--preview grid.png]
    maskinv mask-bin IN.bin OUT.bin --protocol {mu,mm} --seed S [--kind K] [--format jpg|png]

Image ``i`` (sorted relative path order for a folder, 0 for a single file) is masked with the
generator ``image_rng(seed, i)``: reruns give the same bytes, and any image can be regenerated.
"""
from __future__ import annotations

import argparse
from pathlib import Path

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def register(subparsers) -> None:
    """Add the ``mask`` and ``mask-bin`` commands."""
    from maskinv.masks.kinds import MASK_KINDS

    kinds = ("random",) + MASK_KINDS
    p = subparsers.add_parser(
        "mask", help="draw synthetic masks on an aligned image or a folder of them",
        description="Draw a seeded synthetic mask on an aligned face image or on every image of a folder "
                    "(output mirrors the folder). Landmarks default to the 112x112 ArcFace template scaled "
                    "to each image.")
    p.add_argument("input", help="image file or folder of images")
    p.add_argument("output", help="output image file (or folder, for a folder input)")
    p.add_argument("--kind", default="random", choices=kinds, help="mask kind (default: random per image)")
    p.add_argument("--seed", type=int, default=0, help="seed; image i uses image_rng(seed, i) (default 0)")
    p.add_argument("--landmarks", default=None,
                   help="landmarks: .npy of shape (K,2) for all images or (N,K,2) in sorted order, or .json "
                        "mapping relative path -> [[x,y],...]; K = 5 (ArcFace order) or 68 (iBUG)")
    p.add_argument("--preview", default=None, metavar="GRID.png",
                   help="also write a picture grid of many random masks on the first few faces")
    p.add_argument("--preview-faces", type=int, default=4, help="faces (rows) in the preview grid (default 4)")
    p.add_argument("--preview-masks", type=int, default=8, help="masks (columns) per face in the preview (default 8)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of .jpg outputs (default 95)")
    p.set_defaults(func=cmd_mask)

    b = subparsers.add_parser(
        "mask-bin", help="write a masked copy of a verification .bin (M-U or M-M protocol)",
        description="Masked copy of a verification bin. mu: exactly the second image of every pair is masked; "
                    "mm: both. Image i's mask comes from (seed, i) alone, so the probe of a pair gets the same "
                    "mask in mu and mm files with the same seed. Unmasked images keep their bytes.")
    b.add_argument("input", help="input .bin")
    b.add_argument("output", help="output .bin")
    b.add_argument("--protocol", required=True, choices=("mu", "mm"))
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--kind", default="random", choices=kinds)
    b.add_argument("--format", dest="image_format", default="jpg", choices=("jpg", "png"),
                   help="encoding of masked images: jpg (quality --quality, default) or png (lossless)")
    b.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    b.add_argument("--progress", action="store_true", help="show a progress bar")
    b.set_defaults(func=cmd_mask_bin)


def _list_images(root: Path) -> list[Path]:
    return sorted((q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in _IMAGE_EXTS),
                  key=lambda q: q.relative_to(root).as_posix())


def _read(path: Path):
    from maskinv.utils.images import decode_image

    return decode_image(path.read_bytes(), str(path))


def _write(path: Path, image, quality: int) -> None:
    from maskinv.utils.images import encode_image
    from maskinv.utils.io import atomic_write_bytes

    ext = path.suffix.lower()
    if ext not in (".jpg", ".jpeg", ".png"):
        from maskinv.errors import ConfigError

        raise ConfigError(f"{path}: output must be .jpg, .jpeg or .png")
    atomic_write_bytes(path, encode_image(image, "png" if ext == ".png" else "jpg", quality))


def load_landmarks(path, rel_paths: list[str]):
    """Landmarks per image (list aligned with ``rel_paths``; None = template) from .npy/.json."""
    import json

    import numpy as np

    from maskinv.errors import DataFormatError

    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a plain .npy array ({exc})") from None
        if arr.ndim == 2:
            return [arr] * len(rel_paths)
        if arr.ndim == 3 and arr.shape[0] == len(rel_paths):
            return list(arr)
        raise DataFormatError(f"{path}: landmarks of shape {arr.shape} do not fit {len(rel_paths)} image(s); "
                              "expected (K, 2) or (N, K, 2)")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}: expected an object mapping relative image paths to landmarks")
        missing = [r for r in rel_paths if r not in data]
        if missing and len(rel_paths) == 1 and len(data) == 1:
            return [np.asarray(next(iter(data.values())), dtype=np.float64)]
        if missing:
            raise DataFormatError(f"{path}: no landmarks for {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [np.asarray(data[r], dtype=np.float64) for r in rel_paths]
    raise DataFormatError(f"{path}: landmarks file must be .npy or .json")


def make_preview(faces, landmarks, kind: str, seed: int, n_masks: int):
    """Grid (uint8 RGB): one row per face, ``n_masks`` masks each plus the clean face first.

    With kind "random" the columns cycle through every kind (paper included) so each appears.
    """
    import numpy as np

    from maskinv.masks import apply_mask, image_rng
    from maskinv.masks.kinds import MASK_KINDS

    import cv2

    cell = 112
    rows = []
    for r, (face, lm) in enumerate(zip(faces, landmarks)):
        h, w = face.shape[:2]
        row = [cv2.resize(face, (cell, cell), interpolation=cv2.INTER_AREA)]
        for c in range(n_masks):
            k = MASK_KINDS[c % len(MASK_KINDS)] if kind == "random" else kind
            # Preview streams sit far from the per-file streams (indices 10^6 + ...).
            res = apply_mask(face, lm, image_rng(seed, 1_000_000 + r * 1000 + c), k)
            scale = cell / max(h, w)
            row.append(cv2.resize(res.image, (cell, cell), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
        rows.append(np.concatenate(row, 1))
    grid = np.concatenate(rows, 0)
    # Header with the column kinds.
    header = np.full((18, grid.shape[1], 3), 255, np.uint8)
    labels = ["clean"] + [(MASK_KINDS[c % len(MASK_KINDS)] if kind == "random" else kind) for c in range(n_masks)]
    for c, text in enumerate(labels):
        cv2.putText(header, text, (c * cell + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, grid], 0)


def cmd_mask(args: argparse.Namespace) -> int:
    from maskinv.errors import ConfigError
    from maskinv.masks import apply_mask, image_rng
    from maskinv.utils.images import encode_image
    from maskinv.masks.geometry import as_landmarks
    from maskinv.utils.io import atomic_write_bytes

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise FileNotFoundError(2, "No such file or directory", str(src))
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if src.is_dir():
        files = _list_images(src)
        if not files:
            raise ConfigError(f"{src}: no images ({', '.join(_IMAGE_EXTS)}) found")
        rels = [f.relative_to(src).as_posix() for f in files]
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"{dst}: output must be a folder for a folder input")
        outs = [dst / r for r in rels]
        if dst.resolve() == src.resolve():
            raise ConfigError(f"{dst}: output folder would overwrite the input images")
    else:
        files, rels = [src], [src.name]
        outs = [dst / src.name if dst.is_dir() else dst]
        if outs[0].resolve() == src.resolve():
            raise ConfigError(f"{dst}: output would overwrite the input image")
    lms = load_landmarks(args.landmarks, rels) if args.landmarks else [None] * len(files)
    for f, lm in zip(files, lms):  # validate every landmark set before writing anything
        if lm is not None:
            as_landmarks(lm, (1, 1), source=f"{args.landmarks} ({f.name})")
    previews = []
    for i, (f, o, lm) in enumerate(zip(files, outs, lms)):
        img = _read(f)
        res = apply_mask(img, lm, image_rng(args.seed, i), args.kind)
        _write(o, res.image, args.quality)
        if len(previews) < args.preview_faces:
            previews.append((img, lm))
    print(f"masked {len(files)} image(s) -> {dst}")
    if args.preview:
        pv = Path(args.preview)
        if pv.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ConfigError(f"{pv}: preview must be .png or .jpg")
        grid = make_preview([p[0] for p in previews], [p[1] for p in previews], args.kind, args.seed,
                            max(1, args.preview_masks))
        atomic_write_bytes(pv, encode_image(grid, "png" if pv.suffix.lower() == ".png" else "jpg", 95))
        print(f"preview grid -> {pv}")
    return 0


def cmd_mask_bin(args: argparse.Namespace) -> int:
    from maskinv.errors import ConfigError
    from maskinv.masks.bins import mask_bin

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if not Path(args.input).is_file():
        raise FileNotFoundError(2, "No such file or directory", str(args.input))
    info = mask_bin(args.input, args.output, args.protocol, args.seed, args.kind,
                    image_format=args.image_format, quality=args.quality, progress=args.progress)
    print(f"{info['protocol']}: masked {info['masked']} of {info['images']} images "
          f"({info['pairs']} pairs, {info['image_format']}) -> {info['output']}")
    return 0

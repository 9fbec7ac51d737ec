"""Align every image of a folder tree: mirrored output tree plus a CSV and JSON report.

>>> from maskinv.align.folder import align_folder
>>> r = align_folder("photos/", "aligned/")          # never stops at a miss
>>> r.n_found, r.n_missed, r.report_json

Output names mirror the input tree. JPEG inputs stay JPEG (quality 95); every other format is
written as PNG (lossless) with a ``.png`` suffix. An image without a face, or one that cannot
be decoded, is a *miss*: it gets a report row with the reason and the walk goes on.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import INPUT_SIZE
from ..errors import ConfigError, DataFormatError
from .image import read_image
from .interface import FaceDetector
from .registry import resolve_detector
from .transform import warp_to_template

__all__ = ["align_folder", "FolderAlignResult", "IMAGE_SUFFIXES", "REPORT_NAME"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
REPORT_NAME = "align_report"
_CSV_FIELDS = ["image", "found", "out", "faces", "score", "x0", "y0", "x1", "y1",
               *(f"{p}_{c}" for p in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r") for c in "xy"), "reason"]


@dataclass
class FolderAlignResult:
    """Outcome of :func:`align_folder`; ``rows`` are the per-image report entries."""

    rows: list[dict[str, Any]]
    detector: str
    report_csv: Path
    report_json: Path
    skipped: list[str] = field(default_factory=list)   # files without an image suffix

    @property
    def n_found(self) -> int:
        return sum(r["found"] for r in self.rows)

    @property
    def n_missed(self) -> int:
        return len(self.rows) - self.n_found

    def summary(self) -> str:
        line = (f"aligned {self.n_found}/{len(self.rows)} images with {self.detector}; "
                f"{self.n_missed} missed")
        if self.skipped:
            line += f"; {len(self.skipped)} non-image file(s) ignored"
        return line + f"; report {self.report_csv}"


def _out_path(out_dir: Path, rel: Path, index: int | None) -> tuple[Path, str]:
    fmt = "jpg" if rel.suffix.lower() in (".jpg", ".jpeg") else "png"
    stem = rel.stem if index is None else f"{rel.stem}_{index}"
    suffix = rel.suffix if fmt == "jpg" else ".png"
    return out_dir / rel.parent / f"{stem}{suffix}", fmt


def _list_images(in_dir: Path, out_dir: Path) -> tuple[list[Path], list[str]]:
    images, skipped = [], []
    for p in sorted(in_dir.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if out_dir in p.parents:
            continue
        (images if p.suffix.lower() in IMAGE_SUFFIXES else skipped).append(p)
    return images, [str(p.relative_to(in_dir)) for p in skipped]


def align_folder(in_dir, out_dir, detector: str | FaceDetector | None = None, *, size: int = INPUT_SIZE,
                 all_faces: bool = False, progress: bool = True) -> FolderAlignResult:
    """Detect and align the largest face (every face with ``all_faces``) of each image.

    Writes crops under ``out_dir`` (mirroring ``in_dir``) and ``out_dir/align_report.{csv,json}``,
    all atomically. Misses (no face / undecodable) are reported, never raised. Raises
    :class:`ConfigError` for a missing ``in_dir``, ``out_dir`` equal to it, or a tree without images.
    """
    from ..utils.io import atomic_write_json, atomic_write_text

    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise ConfigError(f"{src}: input folder not found")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"{dst}: output folder must differ from the input folder (crops would replace photos)")
    images, skipped = _list_images(src.resolve(), dst.resolve())
    if not images:
        raise ConfigError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) found in the folder tree")
    det = resolve_detector(detector)

    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(images, desc="align", unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for path in bar:
        rows.append(_align_one(path, path.relative_to(src.resolve()), dst, det, size, all_faces))
        bar.set_postfix(missed=sum(not r["found"] for r in rows), refresh=False)
    bar.close()

    name = getattr(det, "name", type(det).__name__)
    result = FolderAlignResult(rows=rows, detector=name, report_csv=dst / f"{REPORT_NAME}.csv",
                               report_json=dst / f"{REPORT_NAME}.json", skipped=skipped)
    atomic_write_text(result.report_csv, _to_csv(rows))
    atomic_write_json(result.report_json, {
        "in_dir": str(src), "out_dir": str(dst), "detector": name, "size": size, "all_faces": all_faces,
        "n_images": len(rows), "n_found": result.n_found, "n_missed": result.n_missed,
        "skipped_non_images": skipped, "images": rows})
    return result


def _align_one(path: Path, rel: Path, dst: Path, det: FaceDetector, size: int, all_faces: bool) -> dict[str, Any]:
    """Report row of one image; writes its crop(s). Misses are rows, not exceptions."""
    from ..utils.images import encode_image
    from ..utils.io import atomic_write_bytes

    row: dict[str, Any] = {"image": str(rel), "found": False, "out": "", "faces": 0, "reason": ""}
    try:
        img = read_image(path)
    except DataFormatError as exc:
        row["reason"] = f"unreadable image: {str(exc).removeprefix(str(path) + ': ')}"
        return row
    faces = det.detect(img)
    row["faces"] = len(faces)
    if not faces:
        row["reason"] = "no face detected"
        return row
    outs = []
    for i, face in enumerate(faces if all_faces else faces[:1]):
        crop, _ = warp_to_template(img, face.landmarks, size)
        out, fmt = _out_path(dst, rel, i if all_faces else None)
        atomic_write_bytes(out, encode_image(crop, fmt))
        outs.append(str(out.relative_to(dst)))
    best = faces[0].to_dict()
    row.update(found=True, out=";".join(outs), score=best["score"], box=best["box"], landmarks=best["landmarks"])
    return row


def _to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = {k: r.get(k, "") for k in ("image", "found", "out", "faces", "score", "reason")}
        flat["found"] = int(r["found"])
        if r["found"]:
            flat.update(zip(("x0", "y0", "x1", "y1"), r["box"]))
            flat.update(zip(_CSV_FIELDS[9:19], [v for pt in r["landmarks"] for v in pt]))
        w.writerow(flat)
    return buf.getvalue()

"""LFW-style ``pairs.txt`` pair lists over an image folder (``root/Name/Name_0001.png``).

Format (whitespace separated; blank lines and ``#`` comments skipped):

* an optional header as the first line: one or two integers (``6000`` or ``10 300``, LFW's
  folds × pairs per fold); it is informational only and not checked against the count;
* ``name i j`` — a genuine pair: ``name/name_%04d.<ext>`` with indices ``i`` and ``j``;
* ``name1 i name2 j`` — a pair of two identities (genuine only when the names are equal).

``<ext>`` is any of png/jpg/jpeg/bmp/webp in any letter case. Each distinct file becomes one
entry of the unique image list; pairs refer to it by index, so an image used by ten pairs is
read (and aligned) once. Duplicate pair lines are kept: each line is one comparison.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskinv.errors import DataFormatError

__all__ = ["PAIR_IMAGE_EXTENSIONS", "PairList", "read_pairs", "resolve_image"]

#: Extensions (lower case) tried for ``name/name_%04d``.
PAIR_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class PairList:
    """A parsed pair list. ``first[k]``/``second[k]`` index ``images``; ``lines[k]`` is the
    1-based line of pair ``k`` in ``path``."""

    path: Path
    root: Path
    images: list[Path]
    identities: list[str]
    first: np.ndarray
    second: np.ndarray
    issame: np.ndarray
    lines: np.ndarray
    header: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.issame.shape[0])


class _DirIndex:
    """Lower-cased file names of each identity folder, listed once (case-insensitive lookup)."""

    def __init__(self, root: Path):
        self.root = root
        self._dirs: dict[str, dict[str, list[str]]] = {}

    def files(self, name: str) -> dict[str, list[str]]:
        d = self._dirs.get(name)
        if d is None:
            d = {}
            folder = self.root / name
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.is_file():
                        d.setdefault(entry.name.lower(), []).append(entry.name)
            self._dirs[name] = d
        return d


def resolve_image(root: Path, name: str, index: int, where: str, index_cache: _DirIndex | None = None) -> Path:
    """The file ``root/name/name_%04d.<ext>`` for any known extension (case-insensitive).

    Raises :class:`DataFormatError` naming ``where`` and the path tried when none (or more
    than one) exists.
    """
    idx = index_cache or _DirIndex(root)
    stem = f"{name}_{index:04d}"
    files = idx.files(name)
    found = [real for ext in PAIR_IMAGE_EXTENSIONS for real in files.get((stem + ext).lower(), [])]
    tried = root / name / f"{stem}.{{{','.join(e[1:] for e in PAIR_IMAGE_EXTENSIONS)}}}"
    if not found:
        raise DataFormatError(f"{where}: image not found: {tried}")
    if len(found) > 1:
        raise DataFormatError(f"{where}: {len(found)} files match {tried} ({', '.join(sorted(found))}); keep one")
    return root / name / found[0]


def _int_token(tok: str) -> int | None:
    try:
        return int(tok)
    except ValueError:
        return None


def read_pairs(pairs_path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairList:
    """Parse ``pairs_path`` against the image folder ``root`` (default: the pairs file's folder).

    Raises :class:`DataFormatError` naming the file and line for a malformed line (wrong number
    of fields, an index that is not a non-negative integer) or a missing image file.
    """
    path = Path(pairs_path)
    if not path.is_file():
        raise DataFormatError(f"{path}: pairs file not found")
    base = Path(root) if root is not None else path.parent
    if not base.is_dir():
        raise DataFormatError(f"{base}: image folder not found (pairs file {path})")
    dirs = _DirIndex(base)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({exc})") from None

    images: list[Path] = []
    identities: list[str] = []
    index_of: dict[tuple[str, int], int] = {}
    first: list[int] = []
    second: list[int] = []
    issame: list[bool] = []
    lines: list[int] = []
    header: tuple[int, ...] | None = None
    seen_content = False

    def image_index(name: str, tok: str, lineno: int) -> int:
        i = _int_token(tok)
        if i is None or i < 0:
            raise DataFormatError(f"{path}: line {lineno}: image number {tok!r} is not a non-negative integer")
        key = (name, i)
        k = index_of.get(key)
        if k is None:
            k = len(images)
            images.append(resolve_image(base, name, i, f"{path}: line {lineno}", dirs))
            identities.append(name)
            index_of[key] = k
        return k

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        if not seen_content and len(toks) in (1, 2) and all(_int_token(t) is not None for t in toks):
            header = tuple(int(t) for t in toks)
            seen_content = True
            continue
        seen_content = True
        if len(toks) == 3:
            a_name, a_tok, b_name, b_tok = toks[0], toks[1], toks[0], toks[2]
        elif len(toks) == 4:
            a_name, a_tok, b_name, b_tok = toks
        else:
            raise DataFormatError(
                f"{path}: line {lineno}: expected 'name i j' (genuine) or 'name1 i name2 j', got {len(toks)} fields: {raw.strip()!r}")
        first.append(image_index(a_name, a_tok, lineno))
        second.append(image_index(b_name, b_tok, lineno))
        issame.append(a_name == b_name)
        lines.append(lineno)
    if not first:
        raise DataFormatError(f"{path}: no pair lines")
    return PairList(
        path=path, root=base, images=images, identities=identities,
        first=np.asarray(first, np.int64), second=np.asarray(second, np.int64),
        issame=np.asarray(issame, bool), lines=np.asarray(lines, np.int64), header=header,
    )

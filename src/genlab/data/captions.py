"""Caption files for folder datasets: a CSV or JSONL file mapping each image to its caption.

CSV (``.csv``, ``.tsv``): a header row with an image column (``image``, ``file``, ``filename`` or
``path``) and a caption column (``caption`` or ``text``). JSONL (``.jsonl``, ``.ndjson``): one object
per line, ``{"image": "cats/001.png", "caption": "a black cat"}`` (or ``file`` / ``text``).
Images are matched by their path relative to the dataset folder, or by file name when that name is
unique in the folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..errors import GenlabError

IMAGE_COLUMNS = ("image", "file", "filename", "path")
CAPTION_COLUMNS = ("caption", "text")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SHOW = 5  # how many offending names an error message lists


@dataclass(frozen=True)
class CaptionEntry:
    """One row of a caption file: which image, its caption, and the line it came from (1-based)."""

    image: str
    caption: str
    line: int


def resolve_caption_file(captions: str | Path, root: Path) -> Path:
    """An absolute path as is; a relative one inside the dataset folder first, then from the working directory."""
    path = Path(captions).expanduser()
    if path.is_absolute():
        tried = [path]
    else:
        tried = [root / path, Path.cwd() / path]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(p) for p in dict.fromkeys(tried))
    raise GenlabError(f"caption file {captions}: not found (looked for {where})")


def _pick_column(fields: list[str], options: Sequence[str], path: Path, what: str) -> str:
    lowered = {f.strip().lower(): f for f in fields if f is not None}
    for name in options:
        if name in lowered:
            return lowered[name]
    raise GenlabError(
        f"{path}:1: no {what} column (found columns: {', '.join(repr(f) for f in fields) or 'none'}); expected one of {', '.join(options)}"
    )


def _read_csv(path: Path, delimiter: str) -> list[CaptionEntry]:
    entries = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise GenlabError(f"{path}: empty caption file; expected a header row with columns image,caption")
        fields = list(reader.fieldnames)
        image_col = _pick_column(fields, IMAGE_COLUMNS, path, "image")
        caption_col = _pick_column(fields, CAPTION_COLUMNS, path, "caption")
        for row in reader:
            # line_num is where the record ends; quoted captions may span lines, so count back to its start
            line = reader.line_num - sum((v or "").count("\n") for k, v in row.items() if isinstance(v, str))
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            entries.append(CaptionEntry((row.get(image_col) or "").strip(), (row.get(caption_col) or "").strip(), line))
    return entries


def _read_jsonl(path: Path) -> list[CaptionEntry]:
    entries = []
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise GenlabError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise GenlabError(
                    f'{path}:{line_no}: expected a JSON object like {{"image": ..., "caption": ...}}, got {type(record).__name__}'
                )
            image_key = next((k for k in IMAGE_COLUMNS if k in record), None)
            caption_key = next((k for k in CAPTION_COLUMNS if k in record), None)
            if image_key is None:
                raise GenlabError(
                    f"{path}:{line_no}: no image key (found: {', '.join(record) or 'none'}); expected one of {', '.join(IMAGE_COLUMNS)}"
                )
            if caption_key is None:
                raise GenlabError(
                    f"{path}:{line_no}: no caption key (found: {', '.join(record) or 'none'}); expected one of {', '.join(CAPTION_COLUMNS)}"
                )
            image, caption = record[image_key], record[caption_key]
            if not isinstance(image, str) or not isinstance(caption, str):
                raise GenlabError(f"{path}:{line_no}: image and caption must be strings")
            entries.append(CaptionEntry(image.strip(), caption.strip(), line_no))
    return entries


def read_caption_file(path: str | Path) -> list[CaptionEntry]:
    """Rows of a CSV/TSV/JSONL caption file, checked for blank images and empty captions."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"caption file {path}: not found")
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            entries = _read_csv(path, CSV_SUFFIXES[suffix])
        elif suffix in JSONL_SUFFIXES:
            entries = _read_jsonl(path)
        else:
            raise GenlabError(
                f"caption file {path}: unknown format {suffix or '(no suffix)'}; use .csv (columns image,caption), .tsv or .jsonl"
            )
    except UnicodeDecodeError as exc:
        raise GenlabError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise GenlabError(f"{path}: malformed CSV ({exc})") from None
    for e in entries:
        if not e.image:
            raise GenlabError(f"{path}:{e.line}: the image name is empty")
        if not e.caption:
            raise GenlabError(f"{path}:{e.line}: empty caption for {e.image}")
    if not entries:
        raise GenlabError(f"{path}: holds no captions")
    return entries


def _normalise(name: str) -> str:
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in (".", "")]
    return "/".join(parts)


def _relative_to(path: Path, root: Path, root_abs: Path) -> str:
    """``path`` relative to the dataset folder; a path not under it is taken as already relative."""
    for candidate, base in ((path, root), (path.resolve(), root_abs)):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def captions_for_files(caption_file: str | Path, root: str | Path, files: Sequence[str | Path]) -> list[str]:
    """The caption of each image in ``files`` (in that order), from ``caption_file``.

    Parameters
    ----------
    caption_file : path
        CSV/TSV/JSONL file; relative paths are looked up in ``root`` first, then in the working directory.
    root : path
        The dataset folder.
    files : sequence of paths
        The dataset's images: paths under ``root`` (as ``root / ...`` or absolute), or relative to it.

    Raises GenlabError naming the caption file and line for unknown images, images listed twice with
    different captions, empty captions, and (listing a few) images that have no caption.
    """
    root = Path(root)
    path = resolve_caption_file(caption_file, root)
    entries = read_caption_file(path)
    root_abs = root.resolve()
    relative = [_normalise(_relative_to(Path(f), root, root_abs)) for f in files]
    by_path = {rel: i for i, rel in enumerate(relative)}
    by_name: dict[str, list[int]] = {}
    for i, rel in enumerate(relative):
        by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(i)
    found: dict[int, CaptionEntry] = {}
    for e in entries:
        key = e.image
        if Path(key).is_absolute():
            try:
                key = Path(key).resolve().relative_to(root_abs).as_posix()
            except ValueError:
                raise GenlabError(f"{path}:{e.line}: image {e.image} is not inside the dataset folder {root}") from None
        key = _normalise(key)
        index = by_path.get(key)
        if index is None:
            same_name = by_name.get(key.rsplit("/", 1)[-1], []) if "/" not in key else []
            if len(same_name) > 1:
                shown = ", ".join(relative[i] for i in same_name[:_SHOW])
                raise GenlabError(
                    f"{path}:{e.line}: image name {e.image} is ambiguous ({shown}); give its path relative to {root}"
                )
            if not same_name:
                raise GenlabError(
                    f"{path}:{e.line}: unknown image {e.image}: no such image in {root} (give its path relative to the folder, or its file name)"
                )
            index = same_name[0]
        previous = found.get(index)
        if previous is not None and previous.caption != e.caption:
            raise GenlabError(
                f"{path}:{e.line}: image {relative[index]} already has a different caption on line {previous.line} "
                f"({previous.caption!r} vs {e.caption!r})"
            )
        found.setdefault(index, e)
    missing = [relative[i] for i in range(len(relative)) if i not in found]
    if missing:
        shown = ", ".join(missing[:_SHOW]) + (f", ... ({len(missing) - _SHOW} more)" if len(missing) > _SHOW else "")
        raise GenlabError(f"{path}: {len(missing)} of {len(relative)} images have no caption: {shown}")
    return [found[i].caption for i in range(len(relative))]

"""Validation of run names and server-side paths: nothing outside RUNS_DIR and the allowed
data roots is ever read or written."""

from __future__ import annotations

import re
from pathlib import Path

from .limits import MAX_RUN_NAME

_NAME = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_RUN_NAME)


class HTTPError(Exception):
    """A request the app refuses: ``status`` (400/404/409/413) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_run_name(name: str, field: str = "run") -> str:
    """A run name: ``[A-Za-z0-9._-]{1,100}``, not starting with a dot (no '..', no slashes)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("."):
        raise HTTPError(
            400,
            f"{field}: {str(name)[:120]!r} is not a valid run name (letters, digits, '.', '_', '-'; not starting with '.')",
        )
    return name


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside ``root`` (resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def run_path(runs_dir: Path, name: str, *, must_exist: bool = True) -> Path:
    """RUNS_DIR/name, refused when the name is invalid or the folder (after resolving
    symlinks) is not inside RUNS_DIR; 404 when ``must_exist`` and it is not a run."""
    check_run_name(name)
    path = runs_dir / name
    if path.is_symlink() or (path.exists() and not inside(path, runs_dir)):
        raise HTTPError(400, f"run {name!r}: a link out of the runs folder")
    if must_exist and not (path / "config.json").is_file():
        raise HTTPError(404, f"run {name!r}: no such run in {runs_dir}")
    return path


def data_path(text: str, roots: list[Path], field: str = "data") -> Path:
    """A server-side data path (of an ``npz:``/``folder:`` spec) that must lie under one of
    ``roots`` (after resolving symlinks)."""
    if not roots:
        raise HTTPError(400, f"{field}: server paths are not allowed (start genlab serve with --data-root)")
    if "\x00" in text or not text.strip():
        raise HTTPError(400, f"{field}: {text[:120]!r} is not a path")
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    for cand in candidates:
        for root in roots:
            if inside(cand, root):
                if not cand.exists():
                    raise HTTPError(404, f"{field}: {text} does not exist")
                return cand.resolve()
    raise HTTPError(400, f"{field}: {text} is outside the allowed data folders ({', '.join(str(r) for r in roots)})")

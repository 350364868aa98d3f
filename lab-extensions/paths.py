"""Paths a user names in a request, confined to the lab's root directory."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from sciplat.labextension.errors import BadRequest, NotFound

__all__ = ["relative_to_root", "resolve_in_root", "write_new_file"]


def resolve_in_root(root: Path, relative: object, *, must_exist: bool = True) -> Path:
    """The real path of *relative* (a lab path such as ``data/t.csv``) inside *root*.

    Refuses absolute paths, ``..`` components and symlinks that lead out of the root (400);
    a missing file is 404 when *must_exist*.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise BadRequest("Give the file's path relative to your lab's home ('path').")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\0" in relative:
        raise BadRequest(
            f"{relative!r} is outside your lab's files: use a path relative to the file "
            "browser's root, without '..'."
        )
    root = Path(os.path.realpath(root))
    path = Path(os.path.realpath(root / pure))
    if path != root and root not in path.parents:
        raise BadRequest(f"{relative!r} leads outside your lab's files (a symbolic link?).")
    if must_exist and not path.exists():
        raise NotFound(f"There is no file {relative!r} in your lab.")
    return path


def relative_to_root(root: Path, path: Path) -> str:
    """*path* as the lab (file browser) names it: relative to the root, with ``/``."""
    return Path(path).relative_to(os.path.realpath(root)).as_posix()


def write_new_file(directory: Path, stem: str, suffix: str, text: str) -> Path:
    """Write *text* to ``<directory>/<stem><suffix>``, or ``<stem>-1<suffix>``, ...: never over
    an existing file (exclusive create, so two requests at once cannot collide)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        candidate = directory / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
        try:
            with open(candidate, "x", encoding="utf-8") as f:
                f.write(text)
            return candidate
        except FileExistsError:
            n += 1

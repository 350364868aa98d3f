"""Tutorials, commissioning notebooks and templates shipped with the platform.

Every lab sees the current tutorials read-only, and a user takes a personal, editable copy of
one to change it::

    import sciplat.notebooks as nb
    nb.link_tutorials(home)                 # at lab start: ~/tutorials -> the shipped copy
    nb.copy_tutorial("02-tap-adql.ipynb")   # in a lab: ~/notebooks/tutorials/02-tap-adql.ipynb

The shipped directory is owned by root and not writable by users, so ``~/tutorials`` always
shows the platform's current version; the copies in ``~/notebooks/tutorials`` are the user's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["copy_tutorial", "link_tutorials", "list_tutorials", "tutorials_dir"]

#: Where the read-only tutorials appear in a home directory, and where copies go.
LINK_NAME = "tutorials"
COPIES_DIR = Path("notebooks") / "tutorials"


def tutorials_dir() -> Path:
    """The shipped tutorials (``notebooks/tutorials`` of the installed sciplat)."""
    return Path(__file__).resolve().parent / "tutorials"


def list_tutorials() -> list[str]:
    """File names of the tutorials, in order."""
    return sorted(p.name for p in tutorials_dir().glob("*.ipynb"))


def link_tutorials(home: Path) -> Path:
    """Make ``<home>/tutorials`` a link to the shipped tutorials (replacing an old link only;
    a real file or directory of the user's with that name is left alone). Run as the user."""
    link = Path(home) / LINK_NAME
    target = tutorials_dir()
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return link
        link.unlink()
    elif link.exists():
        return link
    link.symlink_to(target, target_is_directory=True)
    return link


def copy_tutorial(name: str, home: Path | None = None, *, overwrite: bool = False) -> Path:
    """Copy tutorial *name* into ``<home>/notebooks/tutorials/`` for editing; returns the copy.

    An existing copy is kept (FileExistsError) unless *overwrite*.
    """
    source = tutorials_dir() / name
    if "/" in name or not source.is_file():
        raise FileNotFoundError(f"no tutorial {name!r} (tutorials: {', '.join(list_tutorials())})")
    destination = Path(home or Path.home()) / COPIES_DIR / name
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists; pass overwrite=True to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    destination.chmod(0o644)
    return destination

"""The Tutorials menu: the shipped, read-only tutorials by section, and personal copies.

The tutorials are ``sciplat.notebooks.tutorials_dir()`` (root-owned, read-only; every lab also
sees them as ``~/tutorials``). Each subdirectory is a section; notebooks at the top form the
"Tutorials" section. Opening one copies it to ``<lab root>/notebooks/tutorials/<path>``, and an
existing copy (the user's edits) is never replaced unless they ask.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from sciplat.labextension.errors import BadRequest, Conflict, NotFound
from sciplat.labextension.paths import relative_to_root
from sciplat.notebooks import COPIES_DIR, tutorials_dir

__all__ = ["copy_tutorial", "list_tutorials", "notebook_title"]

TOP_SECTION = "tutorials"


def notebook_title(path: Path) -> str:
    """The first Markdown heading of a notebook, else its file name."""
    try:
        notebook = json.loads(path.read_text())
        for cell in notebook.get("cells", []):
            if cell.get("cell_type") != "markdown":
                continue
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            for line in text.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    except (OSError, ValueError, AttributeError):
        pass
    return path.stem


def _section_title(name: str) -> str:
    return name.replace("-", " ").replace("_", " ").strip().capitalize()


def list_tutorials(root: Path | None = None) -> dict[str, Any]:
    """The contract's ``tutorials`` answer: sections of notebooks, paths relative to *root*."""
    root = root or tutorials_dir()
    sections = []
    top = sorted(p for p in root.glob("*.ipynb") if p.is_file())
    if top:
        sections.append(
            {
                "name": TOP_SECTION,
                "title": "Tutorials",
                "notebooks": [{"path": p.name, "title": notebook_title(p)} for p in top],
            }
        )
    for directory in sorted(d for d in root.iterdir() if d.is_dir() and d.name[0] not in "._"):
        notebooks = sorted(directory.glob("*.ipynb"))
        if notebooks:
            sections.append(
                {
                    "name": directory.name,
                    "title": _section_title(directory.name),
                    "notebooks": [
                        {"path": f"{directory.name}/{p.name}", "title": notebook_title(p)}
                        for p in notebooks
                    ],
                }
            )
    return {"sections": sections}


def _source(root: Path, relative: object) -> Path:
    if not isinstance(relative, str) or not relative.endswith(".ipynb"):
        raise BadRequest("Give the tutorial's 'path' as listed by the Tutorials menu.")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or len(pure.parts) > 2:
        raise BadRequest(f"{relative!r} is not a tutorial path.")
    source = root / pure
    if not source.is_file():
        raise NotFound(f"There is no tutorial {relative!r}; refresh the Tutorials menu.")
    return source


def copy_tutorial(
    lab_root: Path, relative: object, *, overwrite: bool = False, root: Path | None = None
) -> dict[str, str]:
    """Copy tutorial *relative* into the lab; returns ``{"copied_to": <lab path>}``.

    An existing copy is kept and reported (409 ``exists`` with its path) unless *overwrite*.
    """
    root = root or tutorials_dir()
    source = _source(root, relative)
    lab_root = Path(os.path.realpath(lab_root))
    destination = lab_root / COPIES_DIR / PurePosixPath(str(relative))
    # The copies directory is the user's: refuse a symlink planted to lead elsewhere.
    real_parent = Path(os.path.realpath(destination.parent))
    if lab_root not in real_parent.parents and real_parent != lab_root:
        raise BadRequest(f"{COPIES_DIR} leads outside your lab's files; rename it and retry.")
    copied_to = relative_to_root(lab_root, destination)
    if (destination.exists() or destination.is_symlink()) and not overwrite:
        raise Conflict(
            f"You already have a copy of this tutorial at {copied_to}: open it, or replace it "
            "with a fresh copy (your edits in it are then lost).",
            copied_to=copied_to,
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.copying")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o644)
    os.replace(tmp, destination)
    return {"copied_to": copied_to}

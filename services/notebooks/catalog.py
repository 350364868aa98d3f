"""The template catalogue: notebooks with a sidecar YAML of parameters, read from directories.

A template is ``<dir>/<stem>.ipynb`` plus ``<dir>/<stem>.yaml``::

    title: Per-visit image quality
    description: Seeing, sky, zeropoint and astrometric residuals of one visit.
    timeout: 300            # optional, seconds
    parameters:
      visit: {type: integer, default: 1, minimum: 0, description: Visit id}
      band: {type: string, enum: [u, g, r, i, z, y], default: r}

A template whose sidecar or notebook is unusable is listed as *broken* with the reason; it is
never run and never takes the service down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sciplat.services.notebooks.params import check_parameter_schema

__all__ = ["Template", "TemplateCatalog", "default_template_dirs", "read_notebook"]

_SIDECAR_KEYS = {"title", "description", "parameters", "timeout", "tags", "authors"}


def read_notebook(text: str) -> dict[str, Any]:
    """Parse notebook JSON into nbformat 4 with each source one string (files often store
    sources as lists of lines); raises for text that is not a notebook."""
    import nbformat  # lazily: it imports jsonschema, which is slow to import

    return json.loads(json.dumps(nbformat.reads(text, as_version=4)))


def default_template_dirs() -> list[Path]:
    """The shipped collections: ``notebooks/templates`` and ``notebooks/commissioning``."""
    import sciplat.notebooks

    root = Path(sciplat.notebooks.__file__).resolve().parent
    return [root / "templates", root / "commissioning"]


@dataclass(frozen=True)
class Template:
    """One entry of the catalogue (possibly broken)."""

    collection: str
    stem: str
    notebook_path: Path
    sidecar_path: Path
    title: str = ""
    description: str = ""
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: int | None = None
    tags: tuple[str, ...] = ()
    content_hash: str = ""
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.collection}/{self.stem}"

    @property
    def ok(self) -> bool:
        return self.error is None

    def notebook(self) -> dict[str, Any]:
        """The notebook as a plain dict, sources joined into strings."""
        return read_notebook(self.notebook_path.read_text())

    def summary(self) -> dict[str, Any]:
        """The JSON form the API lists."""
        return {
            "name": self.name,
            "collection": self.collection,
            "title": self.title or self.stem,
            "description": self.description,
            "status": "ok" if self.ok else "broken",
            "error": self.error,
            "parameters": self.parameters,
            "timeout": self.timeout,
            "tags": list(self.tags),
        }


def _load(collection: str, stem: str, notebook: Path, sidecar: Path) -> Template:
    base = {
        "collection": collection,
        "stem": stem,
        "notebook_path": notebook,
        "sidecar_path": sidecar,
    }
    if not sidecar.is_file():
        return Template(**base, error=f"no sidecar {sidecar.name}")
    if not notebook.is_file():
        return Template(**base, error=f"sidecar without a notebook ({notebook.name} is missing)")
    try:
        meta = yaml.safe_load(sidecar.read_text())
    except yaml.YAMLError as exc:
        return Template(**base, error=f"{sidecar.name} is not valid YAML: {exc}")
    if not isinstance(meta, dict):
        return Template(**base, error=f"{sidecar.name}: the top level must be a mapping")
    unknown = sorted(set(meta) - _SIDECAR_KEYS)
    problems = [f"unknown keys {unknown}"] if unknown else []
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append("'title' must be a non-empty string")
    description = meta.get("description", "")
    if not isinstance(description, str):
        problems.append("'description' must be a string")
    params = meta.get("parameters") or {}
    if not isinstance(params, dict):
        problems.append("'parameters' must be a mapping of name -> JSON Schema")
        params = {}
    for name, schema in params.items():
        try:
            check_parameter_schema(str(name), schema)
        except ValueError as exc:
            problems.append(str(exc))
    timeout = meta.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
        problems.append("'timeout' must be a positive number of seconds")
    tags = meta.get("tags") or []
    raw = notebook.read_bytes()
    import nbformat  # lazily: it imports jsonschema, which is slow to import

    try:
        nb = nbformat.reads(raw.decode(), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several types for unreadable notebooks
        problems.append(f"{notebook.name} is not a valid notebook: {str(exc).splitlines()[0]}")
        nb = None
    if (
        nb is not None
        and params
        and not any(
            c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
            for c in nb.cells
        )
    ):
        problems.append(f"{notebook.name} has no code cell tagged 'parameters'")
    return Template(
        **base,
        title=title if isinstance(title, str) else "",
        description=description if isinstance(description, str) else "",
        parameters=params if not problems else {},
        timeout=timeout if isinstance(timeout, int) else None,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        content_hash=hashlib.sha256(raw).hexdigest(),
        error="; ".join(problems) or None,
    )


class TemplateCatalog:
    """Templates in a list of directories (the directory name is the collection)."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self.directories = [Path(d) for d in directories]
        self._cache: tuple[tuple, list[Template]] | None = None

    def _fingerprint(self) -> tuple:
        stamps = []
        for directory in self.directories:
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    if path.suffix in (".ipynb", ".yaml", ".yml"):
                        st = path.stat()
                        stamps.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def templates(self) -> list[Template]:
        """Every template, broken ones included; re-read when the files change."""
        stamp = self._fingerprint()
        if self._cache and self._cache[0] == stamp:
            return self._cache[1]
        found: list[Template] = []
        for directory in self.directories:
            if not directory.is_dir():
                continue
            stems: dict[str, Path] = {}
            for path in sorted(directory.iterdir()):
                if path.name.startswith(".") or path.suffix not in (".ipynb", ".yaml", ".yml"):
                    continue
                stems.setdefault(path.stem, path)
            for stem in sorted(stems):
                sidecar = directory / f"{stem}.yaml"
                if not sidecar.exists() and (directory / f"{stem}.yml").exists():
                    sidecar = directory / f"{stem}.yml"
                found.append(_load(directory.name, stem, directory / f"{stem}.ipynb", sidecar))
        self._cache = (stamp, found)
        return found

    def get(self, name: str) -> Template | None:
        return next((t for t in self.templates() if t.name == name), None)

"""Read-only connections to the data preview's DuckDB catalog, shared with TAP.

DuckDB keeps one database instance per file in a process and refuses a second connection
with a different configuration, so every area of the API service must open the catalog with
the same settings as TAP's backend (``sciplat.services.tap.storage.duckdb``): read-only, no
external access (no reading arbitrary files or URLs through SQL), configuration locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The TAP backend's configuration (one definition, so the two cannot drift apart).
from sciplat.services.tap.storage.duckdb import CATALOG_CONFIG

__all__ = ["CATALOG_CONFIG", "connect_catalog"]


def connect_catalog(path: Path) -> Any:
    """A read-only DuckDB connection to *path*."""
    import duckdb

    return duckdb.connect(str(path), read_only=True, config=dict(CATALOG_CONFIG))

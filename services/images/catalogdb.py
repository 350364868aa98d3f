"""Read-only connections to the data preview's DuckDB catalog, shared with TAP.

DuckDB keeps one database instance per file in a process and refuses a second connection
with a different configuration, so every area of the API service must open the catalog with
the same settings as TAP's backend (``sciplat.services.tap.storage.duckdb``): read-only, no
external access (no reading arbitrary files or URLs through SQL), configuration locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CATALOG_CONFIG", "connect_catalog"]

#: Must equal the TAP backend's configuration.
CATALOG_CONFIG: dict[str, str | int | bool] = {
    "enable_external_access": False,
    "lock_configuration": True,
}


def connect_catalog(path: Path) -> Any:
    """A read-only DuckDB connection to *path*."""
    import duckdb

    return duckdb.connect(str(path), read_only=True, config=dict(CATALOG_CONFIG))

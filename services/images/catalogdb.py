"""Read-only connections to the data preview's DuckDB catalog, shared with TAP.

DuckDB keeps one database instance per file in a process and refuses a second connection
with a different configuration, so every area of the API service must open the catalog with
the same settings as TAP's backend (``sciplat.services.tap.storage.duckdb``): read-only, no
external access (no reading arbitrary files or URLs through SQL), configuration locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciplat.services.common.errors import ServiceError

# The TAP backend's configuration (one definition, so the two cannot drift apart).
from sciplat.services.tap.storage.duckdb import CATALOG_CONFIG

__all__ = ["CATALOG_CONFIG", "CatalogUnavailableError", "catalog_stamp", "connect_catalog"]


class CatalogUnavailableError(ServiceError):
    """The catalog is not there (not built yet, or being rebuilt): HTTP 503."""

    status_code = 503
    error_code = "ServiceUnavailable"


def catalog_stamp(path: Path, missing: str) -> tuple[float, int]:
    """(mtime, size) of the catalog file, to notice a rebuild; *missing* is the 503 message."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CatalogUnavailableError(missing) from None
    return (stat.st_mtime, stat.st_size)


def connect_catalog(path: Path) -> Any:
    """A read-only DuckDB connection to *path*."""
    import duckdb

    return duckdb.connect(str(path), read_only=True, config=dict(CATALOG_CONFIG))

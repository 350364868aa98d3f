"""Storage: the ObsCore table (``ivoa.obscore`` in the data preview's DuckDB catalog).

The table has one row per image (thousands at most in the data previews), so it is read once
into memory with each ``s_region`` parsed into a sphgeom region, and re-read when the catalog
file changes. SIA queries and DataLink/SODA look-ups then filter it in Python, exactly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lsst.sphgeom as sg

from sciplat.pipelines.obscore_model import OBSCORE_COLUMNS, obscore_column
from sciplat.services.images.butler import DataUnavailableError
from sciplat.services.images.catalogdb import catalog_stamp, connect_catalog
from sciplat.services.images.regions import parse_s_region
from sciplat.services.images.votable import Field

__all__ = ["OBSCORE_FIELDS", "ObsCoreRow", "ObsCoreStore", "obscore_field"]

log = logging.getLogger(__name__)

#: The ObsCore 1.1 columns, in the standard's order.
OBSCORE_FIELDS = [c.name for c in OBSCORE_COLUMNS]

_DUCKDB_TYPES = {
    "DOUBLE": "double",
    "FLOAT": "float",
    "REAL": "float",
    "BIGINT": "long",
    "HUGEINT": "long",
    "UBIGINT": "long",
    "INTEGER": "int",
    "UINTEGER": "long",
    "SMALLINT": "short",
    "TINYINT": "short",
    "BOOLEAN": "boolean",
}


def obscore_field(name: str, duckdb_type: str = "VARCHAR") -> Field:
    """FIELD metadata of an ObsCore column (standard UCDs/utypes; others from their type)."""
    standard = obscore_column(name)
    if standard is not None:
        return Field(
            name,
            standard.votable_datatype,
            ucd=standard.ucd,
            utype=standard.full_utype,
            unit=standard.unit,
        )
    return Field(name, _DUCKDB_TYPES.get(duckdb_type.upper(), "char"))


@dataclass(frozen=True)
class ObsCoreRow:
    values: dict[str, Any]
    region: sg.Region | None

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


class ObsCoreStore:
    """The ObsCore table of ``catalog.duckdb``, cached in memory."""

    def __init__(self, catalog: Path, *, table: str = "ivoa.obscore") -> None:
        self.catalog = Path(catalog)
        self.table = table
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._rows: list[ObsCoreRow] = []
        self._by_did: dict[str, ObsCoreRow] = {}
        self._fields: list[Field] = []

    def _load(self) -> None:
        stamp = catalog_stamp(
            self.catalog, "The ObsCore table is not available (the data preview is not built)"
        )
        if stamp == self._stamp:
            return
        import duckdb

        try:
            con = connect_catalog(self.catalog)
        except duckdb.Error as exc:
            raise DataUnavailableError(f"The catalog cannot be opened now: {exc}") from exc
        try:
            cursor = con.execute(f"SELECT * FROM {self.table}")
            description = cursor.description
            records = cursor.fetchall()
        except duckdb.Error as exc:
            raise DataUnavailableError(f"The ObsCore table cannot be read: {exc}") from exc
        finally:
            con.close()
        names = [d[0] for d in description]
        fields = [obscore_field(d[0], str(d[1])) for d in description]
        rows = []
        for record in records:
            values = dict(zip(names, record, strict=True))
            region = parse_s_region(values.get("s_region") or "")
            rows.append(ObsCoreRow(values, region))
        self._fields = fields
        self._rows = rows
        self._by_did = {str(r["obs_publisher_did"]): r for r in rows}
        self._stamp = stamp
        log.info("loaded %d ObsCore rows from %s", len(rows), self.catalog)

    def snapshot(self) -> tuple[list[Field], list[ObsCoreRow]]:
        """The columns and rows as of now (reloaded if the catalog changed)."""
        with self._lock:
            self._load()
            return self._fields, self._rows

    def by_did(self, did: str) -> ObsCoreRow | None:
        with self._lock:
            self._load()
            return self._by_did.get(did.strip())

"""Storage: cone searches on the catalog's Object table (DuckDB, read-only).

Pruning uses the table's HEALPix index column when it has one (HATS' ``_healpix_29``: the
NESTED index at order 29, by which the data preview stores its rows sorted): the cone's pixels
at a coarser order suited to its radius (astropy-healpix) become ``BETWEEN`` ranges of the
order-29 index (pixel *p* at order *k* is ``p << 2(29-k)`` .. ``((p+1) << 2(29-k)) - 1``),
which prune DuckDB's row groups. A declination band and an RA window are added in any case;
the exact test is the haversine distance in SQL. Internal columns (``_...``) are not output.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sciplat.services.images.catalogdb import (
    CatalogUnavailableError,
    catalog_stamp,
    connect_catalog,
)
from sciplat.services.images.votable import Field

__all__ = ["ConeCatalog", "ConeColumn", "ConeResult"]

_PIXEL_SIZE = math.sqrt(math.pi / 3)  # radians: sqrt of a HEALPix pixel's area at order 0

_HEALPIX_NAME = re.compile(r"^_?(?:hpx|healpix)_?(\d{1,2})$", re.IGNORECASE)
_TYPES = {
    "DOUBLE": "double",
    "FLOAT": "float",
    "REAL": "float",
    "BIGINT": "long",
    "UBIGINT": "long",
    "HUGEINT": "long",
    "INTEGER": "int",
    "UINTEGER": "long",
    "SMALLINT": "short",
    "TINYINT": "short",
    "BOOLEAN": "boolean",
}


@dataclass(frozen=True)
class ConeColumn:
    name: str
    field: Field
    principal: bool


@dataclass(frozen=True)
class ConeResult:
    fields: list[Field]
    rows: list[tuple[Any, ...]]
    overflow: bool


class ConeCatalog:
    """The Object table: its columns (with TAP_SCHEMA metadata) and cone queries."""

    def __init__(
        self,
        catalog: Path,
        *,
        table: str = "dp1.Object",
        id_column: str = "objectId",
        ra_column: str = "coord_ra",
        dec_column: str = "coord_dec",
    ) -> None:
        self.catalog = Path(catalog)
        self.table = table
        self.id_column, self.ra_column, self.dec_column = id_column, ra_column, dec_column
        self._lock = threading.Lock()
        self._con: Any = None
        self._stamp: tuple[float, int] | None = None
        self._columns: list[ConeColumn] = []
        self.healpix: tuple[str, int] | None = None
        self._local = threading.local()

    def _connect(self) -> Any:
        """The shared read-only connection (re-opened when the catalog file changes)."""
        stamp = catalog_stamp(self.catalog, "The catalog is not available (no data preview)")
        with self._lock:
            if self._con is None or stamp != self._stamp:
                import duckdb

                if self._con is not None:
                    self._con.close()
                try:
                    self._con = connect_catalog(self.catalog)
                    self._columns = self._describe(self._con)
                except duckdb.Error as exc:
                    self._con = None
                    raise CatalogUnavailableError(f"The catalog cannot be read now: {exc}") from exc
                self._stamp = stamp
                self._local = threading.local()
            return self._con

    def _cursor(self) -> Any:
        con = self._connect()
        cursor = getattr(self._local, "cursor", None)
        if cursor is None or getattr(self._local, "con", None) is not con:
            cursor = con.cursor()
            self._local.cursor, self._local.con = cursor, con
        return cursor

    def _describe(self, con: Any) -> list[ConeColumn]:
        schema, _, table = self.table.rpartition(".")
        info = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema or "main", table],
        ).fetchall()
        if not info:
            raise CatalogUnavailableError(f"The catalog has no table {self.table}")
        meta: dict[str, tuple[Any, ...]] = {}
        try:
            for row in con.execute(
                "SELECT column_name, unit, ucd, description, principal FROM tap_schema.columns "
                "WHERE table_name = ?",
                [self.table],
            ).fetchall():
                meta[row[0]] = row[1:]
        except Exception:  # no TAP_SCHEMA: types only
            meta = {}
        columns = []
        self.healpix = None
        for name, duck_type in info:
            match = _HEALPIX_NAME.match(name)
            if match and duck_type.upper() in ("BIGINT", "INTEGER", "UBIGINT"):
                self.healpix = (name, int(match.group(1)))
            if name.startswith("_"):
                continue
            unit, ucd, description, principal = meta.get(name, (None, None, None, 0))
            special = {
                self.id_column: "ID_MAIN",
                self.ra_column: "POS_EQ_RA_MAIN",
                self.dec_column: "POS_EQ_DEC_MAIN",
            }
            base = duck_type.upper().split("(")[0]
            datatype = _TYPES.get(base, "char")
            field = Field(
                name,
                datatype,
                ucd=special.get(name, ucd or None),
                unit=unit or None,
                description=description or None,
            )
            columns.append(ConeColumn(name, field, bool(principal) or name in special))
        return columns

    def columns(self, verb: int) -> list[ConeColumn]:
        """VERB=1: id and position; 2: TAP principal columns; 3: every column."""
        self._connect()
        if verb == 1:
            keep = {self.id_column, self.ra_column, self.dec_column}
            return [c for c in self._columns if c.name in keep]
        if verb == 2:
            return [c for c in self._columns if c.principal]
        return list(self._columns)

    def _healpix_ranges(self, ra: float, dec: float, radius: float) -> list[tuple[int, int]]:
        """Index ranges (inclusive) of the HEALPix column covering the cone.

        Plain floats into astropy-healpix's C cone search: the Quantity wrappers cost more
        Python time (held GIL) than the search itself, which showed under concurrent clients.
        """
        from astropy_healpix import _core

        assert self.healpix is not None
        column_order = self.healpix[1]
        # About a dozen pixels across the cone: few ranges, little excess. A pixel's size at
        # order k is sqrt(pi / 3) / 2**k radians (astropy-healpix's pixel resolution).
        wanted = math.radians(max(radius / 4, 1e-5))
        order = max(0, min(column_order, math.floor(math.log2(_PIXEL_SIZE / wanted))))
        pixel_deg = math.degrees(_PIXEL_SIZE / 2**order)
        pixels = np.sort(_core.healpix_cone_search(ra, dec, radius + pixel_deg, 2**order, "nested"))
        shift = 2 * (column_order - order)
        ranges: list[tuple[int, int]] = []
        for pixel in pixels.tolist():
            if ranges and pixel << shift == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], ((pixel + 1) << shift) - 1)
            else:
                ranges.append((pixel << shift, ((pixel + 1) << shift) - 1))
        return ranges

    def search(self, ra: float, dec: float, radius: float, verb: int, maxrec: int) -> ConeResult:
        """Rows within *radius* degrees of (ra, dec), at most *maxrec* (overflow flagged)."""
        cursor = self._cursor()
        columns = self.columns(verb)
        ra_c, dec_c = f'"{self.ra_column}"', f'"{self.dec_column}"'
        where = [f"{dec_c} BETWEEN ? AND ?"]
        args: list[Any] = [dec - radius, dec + radius]
        cos_dec = math.cos(math.radians(min(89.9, abs(dec) + radius)))
        half_width = radius / cos_dec if cos_dec > 1e-6 else 360.0
        if half_width < 180.0 and abs(dec) + radius < 89.9:
            lo, hi = (ra - half_width) % 360.0, (ra + half_width) % 360.0
            joiner = "AND" if lo <= hi else "OR"
            where.append(f"({ra_c} >= ? {joiner} {ra_c} <= ?)")
            args += [lo, hi]
        if self.healpix is not None and radius < 10.0:
            column = f'"{self.healpix[0]}"'
            ranges = self._healpix_ranges(ra, dec, radius)
            where.append(
                "(" + " OR ".join(f"{column} BETWEEN {a} AND {b}" for a, b in ranges) + ")"
                if ranges
                else "FALSE"
            )
        where.append(
            f"2 * asin(sqrt(pow(sin(radians({dec_c} - ?) / 2), 2) + cos(radians({dec_c})) * "
            f"cos(radians(?)) * pow(sin(radians({ra_c} - ?) / 2), 2))) <= radians(?)"
        )
        args += [dec, dec, ra, radius]
        select = ", ".join(f'"{c.name}"' for c in columns)
        sql = f"SELECT {select} FROM {self.table} WHERE {' AND '.join(where)} LIMIT {maxrec + 1}"
        rows = cursor.execute(sql, args).fetchall()
        overflow = len(rows) > maxrec
        return ConeResult([c.field for c in columns], rows[:maxrec], overflow)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

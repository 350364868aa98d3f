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

from sciplat.services.images.butler import DataUnavailableError
from sciplat.services.images.catalogdb import connect_catalog
from sciplat.services.images.regions import parse_s_region
from sciplat.services.images.votable import Field

__all__ = ["OBSCORE_FIELDS", "ObsCoreRow", "ObsCoreStore", "obscore_field"]

log = logging.getLogger(__name__)

# name: (datatype, ucd, utype suffix, unit)
_STANDARD: dict[str, tuple[str, str, str, str | None]] = {
    "dataproduct_type": ("char", "meta.id", "ObsDataset.dataProductType", None),
    "dataproduct_subtype": ("char", "meta.id", "ObsDataset.dataProductSubtype", None),
    "calib_level": ("short", "meta.code;obs.calib", "ObsDataset.calibLevel", None),
    "obs_collection": ("char", "meta.id", "DataID.Collection", None),
    "obs_id": ("char", "meta.id", "DataID.observationID", None),
    "obs_title": ("char", "meta.title;obs", "DataID.Title", None),
    "obs_publisher_did": ("char", "meta.ref.ivoid", "Curation.PublisherDID", None),
    "obs_creator_did": ("char", "meta.id", "DataID.CreatorDID", None),
    "access_url": ("char", "meta.ref.url", "Access.Reference", None),
    "access_format": ("char", "meta.code.mime", "Access.Format", None),
    "access_estsize": ("long", "phys.size;meta.file", "Access.Size", "kbyte"),
    "target_name": ("char", "meta.id;src", "Target.Name", None),
    "s_ra": (
        "double",
        "pos.eq.ra",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
        "deg",
    ),
    "s_dec": (
        "double",
        "pos.eq.dec",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
        "deg",
    ),
    "s_fov": (
        "double",
        "phys.angSize;instr.fov",
        "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
        "deg",
    ),
    "s_region": ("char", "pos.outline;obs.field", "Char.SpatialAxis.Coverage.Support.Area", None),
    "s_resolution": (
        "double",
        "pos.angResolution",
        "Char.SpatialAxis.Resolution.Refval.value",
        "arcsec",
    ),
    "s_xel1": ("long", "meta.number", "Char.SpatialAxis.numBins1", None),
    "s_xel2": ("long", "meta.number", "Char.SpatialAxis.numBins2", None),
    "t_min": (
        "double",
        "time.start;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
        "d",
    ),
    "t_max": (
        "double",
        "time.end;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
        "d",
    ),
    "t_exptime": (
        "double",
        "time.duration;obs.exposure",
        "Char.TimeAxis.Coverage.Support.Extent",
        "s",
    ),
    "t_resolution": ("double", "time.resolution", "Char.TimeAxis.Resolution.Refval.value", "s"),
    "t_xel": ("long", "meta.number", "Char.TimeAxis.numBins", None),
    "em_min": ("double", "em.wl;stat.min", "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", "m"),
    "em_max": ("double", "em.wl;stat.max", "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", "m"),
    "em_res_power": (
        "double",
        "spect.resolution",
        "Char.SpectralAxis.Resolution.ResolPower.refVal",
        None,
    ),
    "em_xel": ("long", "meta.number", "Char.SpectralAxis.numBins", None),
    "em_ucd": ("char", "meta.ucd", "Char.SpectralAxis.ucd", None),
    "o_ucd": ("char", "meta.ucd", "Char.ObservableAxis.ucd", None),
    "pol_states": ("char", "meta.code;phys.polarization", "Char.PolarizationAxis.stateList", None),
    "pol_xel": ("long", "meta.number", "Char.PolarizationAxis.numBins", None),
    "facility_name": ("char", "meta.id;instr.tel", "Provenance.ObsConfig.Facility.name", None),
    "instrument_name": ("char", "meta.id;instr", "Provenance.ObsConfig.Instrument.name", None),
}
#: The ObsCore 1.1 columns, in the standard's order.
OBSCORE_FIELDS = list(_STANDARD)

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
    if name in _STANDARD:
        datatype, ucd, utype, unit = _STANDARD[name]
        return Field(name, datatype, ucd=ucd, utype=f"obscore:{utype}", unit=unit)
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
        try:
            stat = self.catalog.stat()
        except FileNotFoundError:
            raise DataUnavailableError(
                "The ObsCore table is not available (the data preview is not built)"
            ) from None
        stamp = (stat.st_mtime, stat.st_size)
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

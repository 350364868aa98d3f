"""The ObsCore 1.1 columns (IVOA ObsCore 1.1, §4 and Appendix B: the ObsTAP ``ivoa.ObsCore``
table): name, type, UCD, utype, unit and whether the standard makes the column mandatory.

One table for everything that publishes ObsCore: the felis schema of ``ivoa.ObsCore`` (and so
TAP_SCHEMA) is made to agree with it, and the image services' SIA answers take their FIELD
metadata from it. Utypes carry the ``obscore:`` prefix, as ObsTAP asks (and taplint checks).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OBSCORE_COLUMNS", "ObsCoreColumn", "obscore_column"]


@dataclass(frozen=True)
class ObsCoreColumn:
    name: str
    #: felis datatype (``string``, ``int``, ``long``, ``double``).
    datatype: str
    ucd: str
    #: Without the ``obscore:`` prefix.
    utype: str
    unit: str | None = None
    mandatory: bool = True
    description: str = ""
    #: felis ``length`` of string columns.
    length: int | None = None

    @property
    def full_utype(self) -> str:
        return f"obscore:{self.utype}"

    @property
    def votable_datatype(self) -> str:
        return "char" if self.datatype == "string" else self.datatype


def _c(name, datatype, ucd, utype, unit=None, *, optional=False, length=None, description=""):
    return ObsCoreColumn(name, datatype, ucd, utype, unit, not optional, description, length)


_SPATIAL = "Char.SpatialAxis"
_TIME = "Char.TimeAxis"
_SPECTRAL = "Char.SpectralAxis"

#: The standard's columns, in its order (mandatory ones, then the optional ones we publish).
OBSCORE_COLUMNS: list[ObsCoreColumn] = [
    _c("dataproduct_type", "string", "meta.code.class", "ObsDataset.dataProductType"),
    _c("dataproduct_subtype", "string", "meta.code.class", "ObsDataset.dataProductSubtype",
       optional=True),
    _c("calib_level", "int", "meta.code;obs.calib", "ObsDataset.calibLevel"),
    _c("obs_collection", "string", "meta.id", "DataID.Collection"),
    _c("obs_id", "string", "meta.id", "DataID.observationID"),
    _c("obs_title", "string", "meta.title;obs", "DataID.Title", optional=True),
    _c("obs_publisher_did", "string", "meta.ref.ivoid", "Curation.PublisherDID"),
    _c("obs_creator_did", "string", "meta.id", "DataID.CreatorDID", optional=True),
    _c("access_url", "string", "meta.ref.url", "Access.Reference"),
    _c("access_format", "string", "meta.code.mime", "Access.Format"),
    _c("access_estsize", "long", "phys.size;meta.file", "Access.Size", "kbyte",
       description="Estimated size of the dataset (the file behind access_url's #this link)"),
    _c("target_name", "string", "meta.id;src", "Target.Name"),
    _c("s_ra", "double", "pos.eq.ra", f"{_SPATIAL}.Coverage.Location.Coord.Position2D.Value2.C1",
       "deg"),
    _c("s_dec", "double", "pos.eq.dec", f"{_SPATIAL}.Coverage.Location.Coord.Position2D.Value2.C2",
       "deg"),
    _c("s_fov", "double", "phys.angSize;instr.fov", f"{_SPATIAL}.Coverage.Bounds.Extent.diameter",
       "deg"),
    _c("s_region", "string", "pos.outline;obs.field", f"{_SPATIAL}.Coverage.Support.Area"),
    _c("s_resolution", "double", "pos.angResolution", f"{_SPATIAL}.Resolution.Refval.value",
       "arcsec"),
    _c("s_xel1", "long", "meta.number", f"{_SPATIAL}.numBins1"),
    _c("s_xel2", "long", "meta.number", f"{_SPATIAL}.numBins2"),
    _c("t_xel", "long", "meta.number", f"{_TIME}.numBins"),
    _c("t_min", "double", "time.start;obs.exposure", f"{_TIME}.Coverage.Bounds.Limits.StartTime",
       "d"),
    _c("t_max", "double", "time.end;obs.exposure", f"{_TIME}.Coverage.Bounds.Limits.StopTime",
       "d"),
    _c("t_exptime", "double", "time.duration;obs.exposure", f"{_TIME}.Coverage.Support.Extent",
       "s"),
    _c("t_resolution", "double", "time.resolution", f"{_TIME}.Resolution.Refval.value", "s"),
    _c("em_xel", "long", "meta.number", f"{_SPECTRAL}.numBins"),
    _c("em_min", "double", "em.wl;stat.min", f"{_SPECTRAL}.Coverage.Bounds.Limits.LoLimit", "m"),
    _c("em_max", "double", "em.wl;stat.max", f"{_SPECTRAL}.Coverage.Bounds.Limits.HiLimit", "m"),
    _c("em_res_power", "double", "spect.resolution", f"{_SPECTRAL}.Resolution.ResolPower.refVal"),
    _c("em_ucd", "string", "meta.ucd", f"{_SPECTRAL}.ucd", optional=True),
    _c("o_ucd", "string", "meta.ucd", "Char.ObservableAxis.ucd"),
    _c("pol_states", "string", "meta.code;phys.polarization", "Char.PolarizationAxis.stateList",
       length=32,
       description="List of polarization states (e.g. /I/Q/U/), NULL when not polarimetric"),
    _c("pol_xel", "long", "meta.number", "Char.PolarizationAxis.numBins"),
    _c("facility_name", "string", "meta.id;instr.tel", "Provenance.ObsConfig.Facility.name"),
    _c("instrument_name", "string", "meta.id;instr", "Provenance.ObsConfig.Instrument.name"),
]  # fmt: skip

_BY_NAME = {c.name: c for c in OBSCORE_COLUMNS}


def obscore_column(name: str) -> ObsCoreColumn | None:
    """The standard's definition of column *name*, or None for a non-standard column."""
    return _BY_NAME.get(name.lower())

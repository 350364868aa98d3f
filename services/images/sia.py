"""SIA 2.0 over the ObsCore table: parameters, matching and the ``/sia`` routes.

Every parameter of SIA 2.0 §2 is supported; several values of one parameter are ORed, different
parameters ANDed. ``access_url`` in the answer points at DataLink for each dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from sciplat.services.common.errors import UsageError
from sciplat.services.common.params import DaliParams
from sciplat.services.images.backend import (
    IMAGE_SCOPE,
    ImageBackend,
    ImageRequest,
    image_plugin,
    image_request,
    image_router,
)
from sciplat.services.images.intervals import parse_band, parse_interval, parse_pol, parse_time
from sciplat.services.images.obscore import ObsCoreRow
from sciplat.services.images.regions import SkyRegion, parse_pos
from sciplat.services.images.vosi import Capability
from sciplat.services.images.votable import votable_document

__all__ = ["IMAGE_SCOPE", "SiaQuery", "datalink_url", "parse_sia", "plugin", "search"]

VOTABLE = "application/x-votable+xml"
DEFAULT_MAXREC = 1000
MAX_MAXREC = 100_000
_RESPONSE_FORMATS = {"votable", "application/x-votable+xml", "text/xml"}

#: String parameters matched exactly against an ObsCore column.
_EXACT = {
    "ID": "obs_publisher_did",
    "COLLECTION": "obs_collection",
    "FACILITY": "facility_name",
    "INSTRUMENT": "instrument_name",
    "DPTYPE": "dataproduct_type",
    "TARGET": "target_name",
    "FORMAT": "access_format",
}
#: Numeric interval parameters and the ObsCore column they bound.
_RANGES = {"FOV": "s_fov", "SPATRES": "s_resolution", "EXPTIME": "t_exptime"}


@dataclass
class SiaQuery:
    """A parsed SIA 2.0 query."""

    pos: list[SkyRegion] = field(default_factory=list)
    band: list[tuple[float, float]] = field(default_factory=list)
    time: list[tuple[float, float]] = field(default_factory=list)
    pol: list[str] = field(default_factory=list)
    ranges: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    exact: dict[str, list[str]] = field(default_factory=dict)
    calib: list[int] = field(default_factory=list)
    maxrec: int = DEFAULT_MAXREC


def parse_sia(params: DaliParams) -> SiaQuery:
    """Parse and check every SIA parameter; a :class:`UsageError` names the first bad one."""
    query = SiaQuery()
    query.pos = [parse_pos(v) for v in params.getlist("POS")]
    query.band = [parse_band(v) for v in params.getlist("BAND")]
    query.time = [parse_time(v) for v in params.getlist("TIME")]
    query.pol = [parse_pol(v) for v in params.getlist("POL")]
    for name, column in _RANGES.items():
        values = [parse_interval(name, v) for v in params.getlist(name)]
        if values:
            query.ranges[column] = values
    for name, column in _EXACT.items():
        values = [v.strip() for v in params.getlist(name)]
        if values:
            query.exact[column] = values
    for value in params.getlist("CALIB"):
        if value.strip() not in ("0", "1", "2", "3", "4"):
            raise UsageError(f"CALIB must be 0, 1, 2, 3 or 4, not {value!r}")
        query.calib.append(int(value))
    maxrec = params.single("MAXREC")
    if maxrec is not None:
        try:
            query.maxrec = int(maxrec)
        except ValueError:
            raise UsageError(f"MAXREC must be an integer, not {maxrec!r}") from None
        if query.maxrec < 0:
            raise UsageError(f"MAXREC must not be negative, not {maxrec!r}")
        query.maxrec = min(query.maxrec, MAX_MAXREC)
    fmt = params.single("RESPONSEFORMAT")
    if fmt is not None and fmt.strip().lower().split(";")[0] not in _RESPONSE_FORMATS:
        raise UsageError(f"RESPONSEFORMAT {fmt!r} is not supported; use votable")
    return query


def _overlap(lo: float, hi: float, row_lo: object, row_hi: object) -> bool:
    if row_lo is None or row_hi is None:
        return False
    a, b = float(row_lo), float(row_hi)  # type: ignore[arg-type]
    if math.isnan(a) or math.isnan(b):
        return False
    return a <= hi and b >= lo


def _within(lo: float, hi: float, value: object) -> bool:
    if value is None:
        return False
    v = float(value)  # type: ignore[arg-type]
    return not math.isnan(v) and lo <= v <= hi


def _matchers(query: SiaQuery) -> list[Callable[[ObsCoreRow], bool]]:
    tests: list[Callable[[ObsCoreRow], bool]] = []
    if query.pos:
        tests.append(
            lambda r: r.region is not None and any(p.overlaps(r.region) for p in query.pos)
        )
    if query.band:
        tests.append(
            lambda r: any(_overlap(lo, hi, r["em_min"], r["em_max"]) for lo, hi in query.band)
        )
    if query.time:
        tests.append(
            lambda r: any(_overlap(lo, hi, r["t_min"], r["t_max"]) for lo, hi in query.time)
        )
    if query.pol:
        tests.append(lambda r: any(f"/{p}/" in (r["pol_states"] or "") for p in query.pol))
    for column, values in query.ranges.items():
        tests.append(lambda r, c=column, v=values: any(_within(lo, hi, r[c]) for lo, hi in v))
    for column, values in query.exact.items():
        tests.append(lambda r, c=column, v=set(values): str(r[c]) in v)
    if query.calib:
        tests.append(
            lambda r: r["calib_level"] is not None and int(r["calib_level"]) in query.calib
        )
    return tests


def search(rows: list[ObsCoreRow], query: SiaQuery) -> tuple[list[ObsCoreRow], bool]:
    """The matching rows (at most MAXREC) and whether more matched."""
    tests = _matchers(query)
    found: list[ObsCoreRow] = []
    for row in rows:
        if all(test(row) for test in tests):
            if len(found) == query.maxrec:
                return found, True
            found.append(row)
    return found, False


def datalink_url(backend: ImageBackend, did: str) -> str:
    from urllib.parse import quote

    return f"{backend.url('datalink', 'links')}?ID={quote(did, safe='')}"


def results_document(backend: ImageBackend, query: SiaQuery) -> StreamingResponse:
    fields, rows = backend.obscore.snapshot()
    found, overflow = search(rows, query)
    names = [f.name for f in fields]

    def values(row: ObsCoreRow) -> list[object]:
        out = [row[n] for n in names]
        if "access_url" in names:
            out[names.index("access_url")] = datalink_url(backend, str(row["obs_publisher_did"]))
        if "access_format" in names:
            out[names.index("access_format")] = "application/x-votable+xml;content=datalink"
        return out

    document = votable_document(
        fields,
        (values(r) for r in found),
        infos={"QUERY_STATUS": "OK", "standardID": "ivo://ivoa.net/std/SIA#query-2.0"},
        trailing_infos={"QUERY_STATUS": "OVERFLOW"} if overflow else None,
    )
    return StreamingResponse(document, media_type=VOTABLE)


def _router() -> APIRouter:
    router = image_router(
        "sia",
        [Capability("ivo://ivoa.net/std/SIA#query-2.0", "query", version="2.0")],
    )

    @router.api_route("/query", methods=["GET", "POST"])
    async def query(call: ImageRequest = Depends(image_request)) -> StreamingResponse:
        """SIA 2.0 query: ObsCore rows of the images matching the parameters."""
        return results_document(call.backend, parse_sia(call.params))

    return router


plugin = image_plugin("sia", _router)

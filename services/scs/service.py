"""Simple Cone Search 1.03: ``/scs/cone?RA=&DEC=&SR=[&VERB=]`` over the Object table.

Errors a user causes come back in the form SCS 1.03 prescribes - a VOTable with
``<INFO name="Error">`` (plus the DALI ``QUERY_STATUS``) - with HTTP 200, as SCS clients expect.
Catalog access needs ``custom:tap:read``, like TAP.
"""

from __future__ import annotations

import math
import os
from xml.sax.saxutils import escape, quoteattr

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import UsageError
from sciplat.services.common.params import DaliParams, dali_params
from sciplat.services.images.vosi import Capability, add_vosi_routes
from sciplat.services.images.votable import votable_document
from sciplat.services.plugin import AppContext, ServicePlugin
from sciplat.services.scs.cone import ConeCatalog

__all__ = ["ConeQuery", "parse_cone", "plugin"]

CATALOG_SCOPE = "custom:tap:read"
VOTABLE = "application/x-votable+xml"
MAX_SR = 10.0  # degrees


class ConeQuery:
    def __init__(self, ra: float, dec: float, sr: float, verb: int, maxrec: int) -> None:
        self.ra, self.dec, self.sr, self.verb, self.maxrec = ra, dec, sr, verb, maxrec


def _number(params: DaliParams, name: str) -> float:
    value = params.single(name)
    if value is None or not value.strip():
        raise UsageError(f"{name} is required")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{name} must be a number in degrees, not {value!r}") from None
    if not math.isfinite(number):
        raise UsageError(f"{name} must be finite, not {value!r}")
    return number


def parse_cone(params: DaliParams, default_maxrec: int, max_rows: int) -> ConeQuery:
    ra, dec, sr = _number(params, "RA"), _number(params, "DEC"), _number(params, "SR")
    if not 0.0 <= ra <= 360.0:
        raise UsageError(f"RA {ra:g} is outside [0, 360] degrees")
    if not -90.0 <= dec <= 90.0:
        raise UsageError(f"DEC {dec:g} is outside [-90, 90] degrees")
    if sr < 0.0:
        raise UsageError(f"SR {sr:g} must not be negative")
    if sr > MAX_SR:
        raise UsageError(f"SR {sr:g} is larger than the {MAX_SR:g} degrees this service allows")
    verb_text = params.single("VERB", "2") or "2"
    if verb_text.strip() not in ("1", "2", "3"):
        raise UsageError(f"VERB must be 1, 2 or 3, not {verb_text!r}")
    maxrec = default_maxrec
    if (text := params.single("MAXREC")) is not None:
        try:
            maxrec = int(text)
        except ValueError:
            raise UsageError(f"MAXREC must be an integer, not {text!r}") from None
        if maxrec < 0:
            raise UsageError("MAXREC must not be negative")
    return ConeQuery(ra % 360.0, dec, sr, int(verb_text), min(maxrec, max_rows))


def scs_error(message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        f"<DESCRIPTION>{escape(message)}</DESCRIPTION>\n"
        f'<INFO name="Error" value={quoteattr(message)}/>\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    )
    return Response(body, media_type=VOTABLE)


def _catalog(context: AppContext) -> ConeCatalog:
    catalog = context.state.get("scs")
    if catalog is None:
        catalog = ConeCatalog(context.settings.dataset_dir / "catalog" / "catalog.duckdb")
        context.state["scs"] = catalog
    return catalog


def _answer(catalog: ConeCatalog, query: ConeQuery) -> bytes:
    """Search and the whole VOTable in one worker-thread call: the rows are in memory already
    (at most MAXREC), so streaming them would only add a thread-pool hop per chunk."""
    result = catalog.search(query.ra, query.dec, query.sr, query.verb, query.maxrec)
    document = votable_document(
        result.fields,
        result.rows,
        infos={"QUERY_STATUS": "OK"},
        trailing_infos={"QUERY_STATUS": "OVERFLOW"} if result.overflow else None,
        resource_name="cone",
    )
    return "".join(document).encode()


def _limiter(context: AppContext) -> CapacityLimiter:
    """At most one cone search per CPU at a time; more clients wait in line. Measured on 2
    cores: with every request in its own pool thread, server CPU per request rose from 10 to
    13-14 ms at 4-8 clients (GIL and DuckDB threads contending) and throughput fell."""
    limiter = context.state.get("scs_limiter")
    if limiter is None:
        limiter = context.state["scs_limiter"] = CapacityLimiter(os.cpu_count() or 1)
    return limiter


def _available(context: AppContext) -> tuple[bool, str]:
    ok = _catalog(context).catalog.exists()
    return ok, "service is accepting queries" if ok else "the catalog is not built"


def _router() -> APIRouter:
    router = APIRouter()
    add_vosi_routes(
        router,
        "scs",
        [Capability("ivo://ivoa.net/std/ConeSearch", "cone", version="1.03")],
        _available,
    )

    @router.api_route("/cone", methods=["GET", "POST"])
    async def cone(
        request: Request,
        params: DaliParams = Depends(dali_params),
        user: AuthenticatedUser = Depends(require_scope(CATALOG_SCOPE)),
    ) -> Response:
        """Objects within SR degrees of (RA, DEC)."""
        context: AppContext = request.app.state.context
        settings = context.settings.catalog
        try:
            query = parse_cone(params, settings.default_maxrec, settings.max_rows)
        except UsageError as exc:
            return scs_error(exc.message)
        body = await to_thread.run_sync(
            _answer, _catalog(context), query, limiter=_limiter(context)
        )
        return Response(body, media_type=VOTABLE)

    return router


async def _shutdown(context: AppContext) -> None:
    catalog = context.state.pop("scs", None)
    if catalog is not None:
        catalog.close()


plugin = ServicePlugin(name="scs", router_factory=_router, shutdown=_shutdown)

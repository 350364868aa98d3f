"""HTTP: ``GET /alerts`` (summary), ``/alerts/archive`` (JSON), ``/alerts/stream`` (SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from sciplat.services.alerts import SCOPE
from sciplat.services.alerts.filters import FilterError, parse_filter
from sciplat.services.alerts.service import AlertStreamService, to_json
from sciplat.services.common.auth import AuthenticatedUser, require_scope
from sciplat.services.common.errors import UsageError

__all__ = ["build_router"]


def _service(request: Request) -> AlertStreamService:
    return request.app.state.context.state["alerts"]


def _filter(text: str | None):
    try:
        return parse_filter(text)
    except FilterError as exc:
        raise UsageError(f"Bad filter: {exc}") from exc


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("")
    async def summary(
        _: AuthenticatedUser = Depends(require_scope(SCOPE)),
        service: AlertStreamService = Depends(_service),
    ) -> dict:
        return service.summary()

    @router.get("/archive")
    async def archive(
        filter: str | None = Query(None, description="e.g. diaSource.snr > 10"),
        since_visit: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100_000),
        cutouts: bool = False,
        _: AuthenticatedUser = Depends(require_scope(SCOPE)),
        service: AlertStreamService = Depends(_service),
    ) -> dict:
        alert_filter = _filter(filter)
        alerts = [to_json(a, cutouts) for a in service.query(since_visit, alert_filter, limit)]
        return {"alerts": alerts, "count": len(alerts)}

    @router.get("/stream")
    async def stream(
        filter: str | None = Query(None),
        since_visit: int = Query(0, ge=0),
        idle_timeout: float | None = Query(None, ge=0, description="end after this many idle s"),
        cutouts: bool = False,
        _: AuthenticatedUser = Depends(require_scope(SCOPE)),
        service: AlertStreamService = Depends(_service),
    ) -> StreamingResponse:
        alert_filter = _filter(filter)

        async def events() -> AsyncIterator[bytes]:
            async for alert in service.follow(since_visit, alert_filter, idle_timeout):
                payload = json.dumps(to_json(alert, cutouts))
                yield f"id: {alert['diaSourceId']}\nevent: alert\ndata: {payload}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return router

"""VOSI routes (availability, capabilities) of the image and cone-search services.

Both endpoints are anonymous, as for TAP; the documents come from the shared
:mod:`sciplat.services.common.vosi`. Each service lists its own protocol capabilities next to
the two VOSI ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sciplat.services.common import vosi
from sciplat.services.plugin import AppContext

__all__ = ["Capability", "add_vosi_routes"]


@dataclass(frozen=True)
class Capability:
    """A protocol capability: its standardID and the path it is served at (under the service)."""

    standard_id: str
    path: str
    version: str | None = None


def _capabilities(base_url: str, caps: list[Capability]) -> str:
    entries = [
        vosi.Capability(vosi.CAPABILITIES_ID, f"{base_url}/capabilities"),
        vosi.Capability(vosi.AVAILABILITY_ID, f"{base_url}/availability"),
    ]
    entries += [
        vosi.Capability(
            cap.standard_id, f"{base_url}/{cap.path}", use="base", role="std", version=cap.version
        )
        for cap in caps
    ]
    return vosi.capabilities_xml(entries)


def add_vosi_routes(
    router: APIRouter,
    service: str,
    caps: list[Capability],
    check: Callable[[AppContext], tuple[bool, str]],
) -> None:
    """Anonymous ``/availability`` and ``/capabilities`` for *service* (its URL segment);
    *check(context)* says whether the service can answer, and why not."""

    @router.get("/availability", include_in_schema=False)
    async def availability(request: Request) -> Response:
        available, note = check(request.app.state.context)
        return vosi.xml_response(vosi.availability_xml(available, note))

    @router.get("/capabilities", include_in_schema=False)
    async def capabilities(request: Request) -> Response:
        base = f"{request.app.state.context.public_url}/{service}"
        return vosi.xml_response(_capabilities(base, caps))

"""VOSI documents (availability, capabilities) of the image and cone-search services.

Both endpoints are anonymous, as for TAP. Each service lists its own protocol capability next
to the two VOSI ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Request
from fastapi.responses import Response

__all__ = ["Capability", "add_vosi_routes", "availability_xml", "capabilities_xml"]


@dataclass(frozen=True)
class Capability:
    """One capability: a standardID and where it is served (a path under the service)."""

    standard_id: str
    path: str
    version: str | None = None
    xsi_type: str = "vs:ParamHTTP"
    use: str = "base"


def capabilities_xml(base_url: str, capabilities: list[Capability]) -> str:
    entries = [
        Capability("ivo://ivoa.net/std/VOSI#capabilities", "capabilities", use="full"),
        Capability("ivo://ivoa.net/std/VOSI#availability", "availability", use="full"),
        *capabilities,
    ]
    body = []
    for cap in entries:
        role = ' role="std"' if cap.version else ""
        version = f" version={quoteattr(cap.version)}" if cap.version else ""
        url = f"{base_url.rstrip('/')}/{cap.path}".rstrip("/")
        body.append(
            f"  <capability standardID={quoteattr(cap.standard_id)}>\n"
            f'    <interface xsi:type="{cap.xsi_type}"{role}{version}>\n'
            f"      <accessURL use={quoteattr(cap.use)}>{escape(url)}</accessURL>\n"
            "    </interface>\n  </capability>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        + "".join(body)
        + "</vosi:capabilities>\n"
    )


def availability_xml(available: bool, note: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
        f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
        f"  <vosi:note>{escape(note)}</vosi:note>\n"
        "</vosi:availability>\n"
    )


def add_vosi_routes(router: APIRouter, service: str, caps: list[Capability], check) -> None:
    """Anonymous ``/availability`` and ``/capabilities`` for *service* (its URL segment).

    *check(context)* returns (available, note).
    """

    @router.get("/availability", include_in_schema=False)
    async def availability(request: Request) -> Response:
        available, note = check(request.app.state.context)
        return Response(availability_xml(available, note), media_type="text/xml")

    @router.get("/capabilities", include_in_schema=False)
    async def capabilities(request: Request) -> Response:
        base = f"{request.app.state.context.public_url}/{service}"
        return Response(capabilities_xml(base, caps), media_type="text/xml")

"""VOSI 1.1 documents every VO service serves: capabilities and availability.

A service lists its capabilities as :class:`Capability` objects (its own standard plus the
VOSI endpoints); protocol-specific content (TAPRegExt language, SIA parameters) goes in
``extra`` as ready XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from fastapi.responses import Response

__all__ = [
    "AVAILABILITY_ID",
    "CAPABILITIES_ID",
    "EXAMPLES_ID",
    "TABLES_ID",
    "Capability",
    "availability_xml",
    "capabilities_xml",
    "xml_response",
]

CAPABILITIES_ID = "ivo://ivoa.net/std/VOSI#capabilities"
AVAILABILITY_ID = "ivo://ivoa.net/std/VOSI#availability"
TABLES_ID = "ivo://ivoa.net/std/VOSI#tables-1.1"
EXAMPLES_ID = "ivo://ivoa.net/std/DALI#examples"

_NAMESPACES = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
    'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0"'
)


@dataclass(frozen=True)
class Capability:
    standard_id: str
    access_url: str
    #: ``base`` for a service root, ``full`` for a complete URL.
    use: str = "full"
    #: xsi:type of the capability element (e.g. ``tr:TableAccess``), if any.
    xsi_type: str | None = None
    #: Interface role and version (``std``, ``1.1``) for the standard interface.
    role: str | None = None
    version: str | None = None
    #: XML placed after the interface (TAPRegExt language, output formats, ...).
    extra: str = ""


def _capability(cap: Capability) -> str:
    kind = f" xsi:type={quoteattr(cap.xsi_type)}" if cap.xsi_type else ""
    role = f" role={quoteattr(cap.role)}" if cap.role else ""
    version = f" version={quoteattr(cap.version)}" if cap.version else ""
    return (
        f"  <capability standardID={quoteattr(cap.standard_id)}{kind}>\n"
        f'    <interface xsi:type="vs:ParamHTTP"{role}{version}>\n'
        f"      <accessURL use={quoteattr(cap.use)}>{escape(cap.access_url)}</accessURL>\n"
        "    </interface>\n"
        f"{cap.extra}"
        "  </capability>\n"
    )


def capabilities_xml(capabilities: list[Capability]) -> str:
    body = "".join(_capability(c) for c in capabilities)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<vosi:capabilities {_NAMESPACES}>\n{body}</vosi:capabilities>\n"
    )


def availability_xml(available: bool, note: str | None = None) -> str:
    notes = f"  <vosi:note>{escape(note)}</vosi:note>\n" if note else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
        f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
        f"{notes}</vosi:availability>\n"
    )


def xml_response(text: str, status_code: int = 200) -> Response:
    return Response(text, status_code=status_code, media_type="text/xml")

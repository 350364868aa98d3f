"""A small TABLEDATA VOTable writer for the image and cone-search services.

Results of SIA, DataLink and SCS are small (hundreds to thousands of rows), so TABLEDATA is
fine and keeps full control over FIELD metadata, INFOs and extra RESOURCEs (DataLink service
descriptors). Values stream out row by row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np

__all__ = ["Field", "Param", "votable_document"]

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
)


@dataclass(frozen=True)
class Field:
    """One column: VOTable FIELD attributes."""

    name: str
    datatype: str  # char, unicodeChar, double, float, long, int, short, boolean
    arraysize: str | None = None
    ucd: str | None = None
    utype: str | None = None
    unit: str | None = None
    xtype: str | None = None
    description: str | None = None
    id: str | None = None

    def xml(self, tag: str = "FIELD", extra: str = "") -> str:
        attrs = [f"name={quoteattr(self.name)}", f"datatype={quoteattr(self.datatype)}"]
        if self.id:
            attrs.append(f"ID={quoteattr(self.id)}")
        arraysize = self.arraysize or ("*" if self.datatype in ("char", "unicodeChar") else None)
        for key, value in (
            ("arraysize", arraysize),
            ("ucd", self.ucd),
            ("utype", self.utype),
            ("unit", self.unit),
            ("xtype", self.xtype),
        ):
            if value:
                attrs.append(f"{key}={quoteattr(value)}")
        body = f"<DESCRIPTION>{escape(self.description)}</DESCRIPTION>" if self.description else ""
        if body:
            return f"<{tag} {' '.join(attrs)}{extra}>{body}</{tag}>"
        return f"<{tag} {' '.join(attrs)}{extra}/>"


@dataclass(frozen=True)
class Param:
    """A PARAM: a field with one value."""

    field: Field
    value: str

    def xml(self) -> str:
        return self.field.xml("PARAM", f" value={quoteattr(self.value)}")


def _cell(value: object, datatype: str) -> str:
    if value is None:
        return "<TD/>"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "<TD/>"
        if datatype in ("long", "int", "short"):
            return f"<TD>{int(value)}</TD>"
        return f"<TD>{float(value)!r}</TD>"
    if isinstance(value, bool | np.bool_):
        return f"<TD>{'T' if value else 'F'}</TD>"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return f"<TD>{escape(str(value))}</TD>"


def votable_document(
    fields: Sequence[Field],
    rows: Iterable[Sequence[object]],
    *,
    infos: dict[str, str] | None = None,
    params: Sequence[Param] = (),
    resource_name: str | None = None,
    trailing_infos: dict[str, str] | None = None,
    extra_resources: Sequence[str] = (),
) -> Iterator[str]:
    """Yield the document in chunks: one results RESOURCE with one TABLE, then *extra_resources*
    (literal XML, e.g. DataLink service descriptors). *infos* go before the table (so a
    ``QUERY_STATUS`` comes first); *trailing_infos* after it (``QUERY_STATUS=OVERFLOW``)."""
    name = f" name={quoteattr(resource_name)}" if resource_name else ""
    head = [_HEAD, f'<RESOURCE type="results"{name}>\n']
    head += [
        f"<INFO name={quoteattr(k)} value={quoteattr(v)}/>\n" for k, v in (infos or {}).items()
    ]
    head += [p.xml() + "\n" for p in params]
    head.append("<TABLE>\n")
    head += [f.xml() + "\n" for f in fields]
    head.append("<DATA><TABLEDATA>\n")
    yield "".join(head)
    types = [f.datatype for f in fields]
    batch: list[str] = []
    for row in rows:
        batch.append(
            "<TR>" + "".join(_cell(v, t) for v, t in zip(row, types, strict=True)) + "</TR>\n"
        )
        if len(batch) >= 500:
            yield "".join(batch)
            batch = []
    tail = [*batch, "</TABLEDATA></DATA>\n</TABLE>\n"]
    tail += [
        f"<INFO name={quoteattr(k)} value={quoteattr(v)}/>\n"
        for k, v in (trailing_infos or {}).items()
    ]
    tail.append("</RESOURCE>\n")
    tail += list(extra_resources)
    tail.append("</VOTABLE>\n")
    yield "".join(tail)

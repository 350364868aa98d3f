"""Small VOTable documents every VO service returns: DALI errors and status INFOs."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

__all__ = ["VOTABLE_MEDIA_TYPE", "error_votable"]

VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
)


def error_votable(message: str, *, infos: dict[str, str] | None = None) -> str:
    """A DALI error document: ``QUERY_STATUS=ERROR`` with *message* as the INFO content."""
    extra = "".join(
        f"    <INFO name={quoteattr(k)} value={quoteattr(v)}/>\n" for k, v in (infos or {}).items()
    )
    return (
        f'{_HEAD}  <RESOURCE type="results">\n'
        f'    <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        f"{extra}  </RESOURCE>\n</VOTABLE>\n"
    )

"""Image access from a notebook: SIA 2.0 searches, DataLink and SODA cutouts with your token.

(Named ``imaging``: ``sciplat.images`` is the image-environment catalogue, ``images/``.)

In a lab::

    import sciplat
    sia = sciplat.get_sia_service()
    found = sia.search(pos=(62.0, -37.0, 0.05), band=(5e-7, 6e-7))
    links = sciplat.get_datalink(found[0])                 # pyvo DatalinkResults
    hdus = sciplat.cutout(found[0], circle=(62.0, -37.0, 0.01))   # astropy HDUList

Outside a lab, pass ``discovery=sciplat.discovery("https://dac.example.org", token="...")``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import unescape

from sciplat.client import Discovery
from sciplat.client import discovery as _discovery

__all__ = ["cutout", "get_datalink", "get_sia_service"]


def _doc(discovery: Discovery | None) -> Discovery:
    return discovery if discovery is not None else _discovery()


def _did(dataset: Any) -> str:
    """A publisher DID from a string or an SIA/ObsCore result row."""
    if isinstance(dataset, str):
        return dataset
    for key in ("obs_publisher_did", "ID"):
        try:
            value = dataset[key]
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if value:
            return value.decode() if isinstance(value, bytes) else str(value)
    raise ValueError(f"cannot find a dataset ID (obs_publisher_did) in {dataset!r}")


def get_sia_service(*, discovery: Discovery | None = None) -> Any:
    """The platform's SIA 2.0 service as a ``pyvo.dal.SIA2Service`` that sends your token."""
    from pyvo.dal import SIA2Service

    doc = _doc(discovery)
    return SIA2Service(doc.url("sia"), session=doc.requests_session())


def get_datalink(dataset: Any, *, discovery: Discovery | None = None) -> Any:
    """DataLink links of *dataset* (a publisher DID or an SIA result row):
    ``pyvo.dal.adhoc.DatalinkResults``."""
    from pyvo.dal.adhoc import DatalinkResults

    doc = _doc(discovery)
    url = f"{doc.url('datalink')}/links?ID={quote(_did(dataset), safe='')}"
    return DatalinkResults.from_result_url(url, session=doc.requests_session())


def cutout(
    dataset: Any,
    *,
    circle: Sequence[float] | None = None,
    polygon: Sequence[float] | None = None,
    band: Sequence[float] | None = None,
    time: Sequence[float] | None = None,
    discovery: Discovery | None = None,
) -> Any:
    """A SODA cutout of *dataset* as an ``astropy.io.fits.HDUList`` (IMAGE, MASK, VARIANCE).

    *circle* is (ra, dec, radius) and *polygon* (ra1, dec1, ra2, dec2, ...) in degrees; *band*
    (metres) and *time* (MJD) are (lo, hi) intervals. A refusal raises
    ``pyvo.dal.DALQueryError`` with the service's message.
    """
    from astropy.io import fits
    from pyvo.dal import DALQueryError, DALServiceError

    if circle is None and polygon is None:
        raise ValueError("give circle=(ra, dec, radius) or polygon=(ra1, dec1, ...)")
    params: list[tuple[str, str]] = [("ID", _did(dataset))]
    if circle is not None:
        params.append(("CIRCLE", " ".join(repr(float(v)) for v in circle)))
    if polygon is not None:
        params.append(("POLYGON", " ".join(repr(float(v)) for v in polygon)))
    if band is not None:
        params.append(("BAND", " ".join(repr(float(v)) for v in band)))
    if time is not None:
        params.append(("TIME", " ".join(repr(float(v)) for v in time)))
    doc = _doc(discovery)
    response = doc.requests_session().get(f"{doc.url('soda')}/sync", params=params, timeout=300)
    kind = response.headers.get("content-type", "")
    if response.status_code == 200 and kind.startswith("application/fits"):
        return fits.open(io.BytesIO(response.content))
    if "votable" in kind or "xml" in kind:
        message = _error_message(response.content)
        raise DALQueryError(message or f"SODA refused the cutout (HTTP {response.status_code})")
    raise DALServiceError(
        f"SODA answered HTTP {response.status_code} ({kind})", response.status_code
    )


def _error_message(content: bytes) -> str:
    """The message of a DALI error VOTable."""
    match = re.search(rb'name="QUERY_STATUS" value="ERROR">([^<]*)<', content)
    return unescape(match.group(1).decode("utf-8", "replace")) if match else ""

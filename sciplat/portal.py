"""Notebook <-> portal: send tables, images and plots to the portal; fetch portal queries.

Both ways use IPAC Firefly's protocol through the real ``firefly_client``: with ``$FIREFLY_URL``
pointing at a Firefly server it drives that Firefly; otherwise (or when it points at the
embedded portal, as labs have it) the sciplat portal, which speaks the same protocol::

    import sciplat
    table = sciplat.get_query("abc123")        # a portal query's result, as astropy Table
    # (sciplat.portal.get_query is the same function)
    sciplat.portal.show_table(table)           # ... and back to the portal
    sciplat.portal.show_image("calexp.fits")
    sciplat.portal.show_plot(table, x="r_psfFlux", y="g_psfFlux")
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from sciplat.client import Discovery, discovery
from sciplat.tap import get_query

__all__ = [
    "PortalError",
    "client",
    "get_query",
    "portal_url",
    "show_image",
    "show_plot",
    "show_table",
]

_clients: dict[tuple[str, str], Any] = {}


class PortalError(RuntimeError):
    """The portal (or Firefly) refused an action; the message says why."""


def portal_url(doc: Discovery | None = None) -> str:
    """``$FIREFLY_URL`` if set, else the platform's portal from the discovery document."""
    return os.environ.get("FIREFLY_URL") or (doc or discovery()).url("portal")


def client(url: str | None = None, *, token: str | None = None, channel: str | None = None):
    """A ``firefly_client.FireflyClient`` on the portal (cached per URL and channel).

    The token is sent on every request (firefly_client itself sends it only over https);
    *channel* defaults to ``$FIREFLY_CHANNEL`` (labs get one signed for their user).
    """
    from firefly_client import FireflyClient

    doc = None
    if url is None or token is None:
        try:
            doc = discovery()
        except RuntimeError:
            doc = None
    url = (url or portal_url(doc)).rstrip("/")
    token = token if token is not None else (doc.token if doc else None)
    channel = channel or os.environ.get("FIREFLY_CHANNEL")
    key = (url, channel or "")
    if key in _clients:
        return _clients[key]
    fc = FireflyClient.make_client(
        url,
        launch_browser=False,
        channel_override=channel,
        token=token if url.startswith("https") else None,
    )
    if token:
        headers = {"Authorization": f"Bearer {token}"}
        fc.session.headers.update(headers)
        fc.auth_headers = headers
    _clients[key] = fc
    return fc


def _check(status: dict[str, Any], what: str) -> dict[str, Any]:
    if not status.get("success", False):
        raise PortalError(f"{what}: {status.get('error', 'refused')}")
    return status


def show_table(table_or_job: Any, *, title: str | None = None, fc: Any = None) -> str:
    """Show an astropy Table, a file path, a URL or a TAP job (id or pyvo job) in the portal.

    Returns the table id to use with :func:`show_plot`.
    """
    fc = fc or client()
    source, name = _table_source(table_or_job, fc)
    tbl_id = f"sciplat-{abs(hash((source, title or name))) % 10**8}"
    _check(fc.show_table(source, tbl_id=tbl_id, title=title or name), "show_table")
    return tbl_id


def _table_source(obj: Any, fc: Any) -> tuple[str, str]:
    if isinstance(obj, str | Path) and Path(obj).is_file():
        return fc.upload_file(str(obj)), Path(obj).name
    if isinstance(obj, str) and obj.startswith(("http://", "https://")):
        return obj, obj.rsplit("/", 1)[-1]
    if hasattr(obj, "fetch_result"):  # a pyvo AsyncTAPJob (its result may be Parquet)
        obj = get_query(obj.url)
    elif isinstance(obj, str):  # a TAP job id
        obj = get_query(obj)
    buffer = io.BytesIO()
    obj.write(buffer, format="votable")
    buffer.seek(0)
    return fc.upload_data(buffer, "UNKNOWN"), "table"


def show_image(image: Any, *, title: str | None = None, fc: Any = None) -> dict[str, Any]:
    """Show a FITS image (path, URL, HDUList or bytes) in the portal's image viewer."""
    fc = fc or client()
    if isinstance(image, bytes):
        image = io.BytesIO(image)
    elif hasattr(image, "writeto"):
        buffer = io.BytesIO()
        image.writeto(buffer)
        image = buffer
    if isinstance(image, io.IOBase):
        image.seek(0)
        source = fc.upload_fits_data(image)
    elif isinstance(image, str | Path) and Path(image).is_file():
        source = fc.upload_file(str(image))
    else:
        source = str(image)
    kwargs = {"title": title} if title else {}
    return _check(fc.show_fits_image(source, **kwargs), "show_image")


def show_plot(
    table: Any, *, x: str, y: str | None = None, kind: str = "scatter", fc: Any = None
) -> dict[str, Any]:
    """Plot columns of a table in the portal: ``kind`` is ``scatter`` (x, y) or ``histogram``.

    *table* is a table id :func:`show_table` returned, or anything it takes (shown first).
    """
    fc = fc or client()
    is_id = (
        isinstance(table, str)
        and not Path(table).is_file()
        and not table.startswith(("http://", "https://"))
    )
    tbl_id = table if is_id else show_table(table, fc=fc)
    if kind == "histogram":
        return _check(fc.show_histogram(tbl_id, col=x), "show_plot")
    if kind != "scatter" or y is None:
        raise ValueError("show_plot needs kind='scatter' with x and y, or kind='histogram'")
    return _check(fc.show_xyplot(tbl_id, xCol=x, yCol=y), "show_plot")

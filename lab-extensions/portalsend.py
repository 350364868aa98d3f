"""The Portal menu: the portal's URL for a lab tab, and sending a lab table file to it.

Sending reuses :mod:`sciplat.portal` (the real ``firefly_client`` against the portal's
Firefly-compatible upload and ``show_table``) with the lab's token and signed channel, so the
table appears in the user's open portal page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sciplat.labextension.errors import LabError, UnsupportedType
from sciplat.labextension.paths import resolve_in_root
from sciplat.labextension.platform import PlatformClient

__all__ = ["TABLE_SUFFIXES", "portal_url", "send_to_portal", "table_kind"]

#: File name endings the portal shows as tables.
TABLE_SUFFIXES = {
    ".xml": "VOTable",
    ".vot": "VOTable",
    ".votable": "VOTable",
    ".parquet": "Parquet",
    ".csv": "CSV",
    ".fits": "FITS table",
    ".fit": "FITS table",
}


def table_kind(path: Path) -> str:
    """The table format of *path* by its name, or 415 naming the accepted ones."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        accepted = ", ".join(sorted(TABLE_SUFFIXES))
        raise UnsupportedType(
            f"The portal cannot show {path.name!r} ({suffix or 'no extension'}): send a table "
            f"file ({accepted}).",
            accepted=sorted(TABLE_SUFFIXES),
        )
    return TABLE_SUFFIXES[suffix]


def portal_url(platform: PlatformClient) -> dict[str, str]:
    """``{"url"}`` of the portal page (``$FIREFLY_URL`` as the spawner sets it, else
    discovery); 503 ``portal-unavailable`` when the lab knows no portal."""
    url = platform.env.get("SCIPLAT_PORTAL_URL") or platform.env.get("FIREFLY_URL")
    if not url:
        try:
            url = platform.url("portal")
        except LabError as exc:
            raise platform.unreachable("portal", "this lab knows no portal").renamed(
                "portal-unavailable"
            ) from exc
    return {"url": url.rstrip("/") + "/"}


def _show(path: Path, url: str, token: str | None, channel: str | None) -> str:
    import sciplat.portal as portal

    fc = portal.client(url, token=token or "", channel=channel)
    return portal.show_table(str(path), title=path.name, fc=fc)


async def send_to_portal(platform: PlatformClient, lab_root: Path, relative: object) -> dict:
    """Upload lab file *relative* to the portal and show it; ``{"portal_url", "table_id"}``."""
    path = resolve_in_root(lab_root, relative)
    if not path.is_file():
        raise UnsupportedType(f"{relative!r} is a directory; select a table file.")
    kind = table_kind(path)
    url = portal_url(platform)["url"]
    channel = platform.env.get("FIREFLY_CHANNEL")
    try:
        table_id = await asyncio.to_thread(_show, path, url.rstrip("/"), platform.token, channel)
    except Exception as exc:  # firefly_client raises many types
        raise _portal_error(platform, path, kind, exc) from exc
    return {"portal_url": url, "table_id": table_id}


def _portal_error(platform: PlatformClient, path: Path, kind: str, exc: Exception) -> LabError:
    import requests

    from sciplat.portal import PortalError

    if isinstance(exc, PortalError):
        return LabError(f"The portal could not show {path.name} as a {kind}: {exc}").renamed(
            "portal-refused", status=422
        )
    if isinstance(exc, requests.RequestException | ConnectionError | OSError):
        return platform.unreachable("portal", f"{type(exc).__name__}: {exc}").renamed(
            "portal-unavailable"
        )
    return LabError(f"Sending {path.name} to the portal failed: {exc}").renamed(
        "portal-failed", status=502
    )

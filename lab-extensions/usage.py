"""Workspace disk use for the status bar: the home's and the user's group directories'.

The figures are the workspace service's own (its WebDAV folders' RFC 4331 properties
``quota-used-bytes`` / ``quota-available-bytes``), so the lab shows exactly the measurement
that uploads, TAP results and lab writes over WebDAV are checked against; nothing is measured
twice.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote, urlsplit

from sciplat.labextension.platform import PlatformClient

__all__ = ["PROPFIND_QUOTA", "parse_quota", "workspace_usage"]

_DAV = "{DAV:}"
PROPFIND_QUOTA = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<propfind xmlns="DAV:"><prop><quota-used-bytes/><quota-available-bytes/></prop></propfind>'
)


def _int(element: ET.Element | None) -> int | None:
    try:
        return int((element.text or "").strip()) if element is not None else None
    except ValueError:
        return None


def parse_quota(xml: bytes) -> dict[str, dict[str, int | None]]:
    """``{folder path: {"used_bytes", "quota_bytes"}}`` from a PROPFIND multistatus answer
    (quota = used + available; None where the server gave no figure)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    folders: dict[str, dict[str, int | None]] = {}
    for response in root.iter(f"{_DAV}response"):
        href = unquote(urlsplit(response.findtext(f"{_DAV}href", "")).path).rstrip("/")
        used = _int(response.find(f".//{_DAV}quota-used-bytes"))
        left = _int(response.find(f".//{_DAV}quota-available-bytes"))
        if used is None and left is None:
            continue
        quota = used + left if used is not None and left is not None else None
        folders[href] = {"used_bytes": used, "quota_bytes": quota}
    return folders


async def _propfind(platform: PlatformClient, url: str, depth: str) -> dict[str, Any]:
    response = await platform.request(
        "webdav",
        "PROPFIND",
        url,
        content=PROPFIND_QUOTA,
        headers={"Depth": depth, "Content-Type": "application/xml"},
    )
    if response.status_code != 207:
        raise platform.unreachable("webdav", f"PROPFIND answered HTTP {response.status_code}", 502)
    return parse_quota(response.content)


async def workspace_usage(platform: PlatformClient) -> dict[str, Any]:
    """The contract's ``usage`` answer: ``{"home": {path, used_bytes, quota_bytes},
    "groups": [{name, path, used_bytes, quota_bytes}]}``."""
    user = platform.env.get("JUPYTERHUB_USER")
    if not user:
        raise platform.unreachable("webdav", "this lab does not know its user (not in a hub)")
    dav = platform.url("webdav")
    dav_path = urlsplit(dav).path.rstrip("/")
    home = await _propfind(platform, f"{dav}/home/{user}/", "0")
    groups = await _propfind(platform, f"{dav}/groups/", "1")
    home_figures = home.get(f"{dav_path}/home/{user}", {"used_bytes": None, "quota_bytes": None})
    prefix = f"{dav_path}/groups/"
    return {
        "home": {"path": f"home/{user}", **home_figures},
        "groups": [
            {"name": href.removeprefix(prefix), "path": href.removeprefix(dav_path + "/"), **fig}
            for href, fig in sorted(groups.items())
            if href.startswith(prefix) and "/" not in href.removeprefix(prefix)
        ],
    }

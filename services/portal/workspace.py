"""The user's workspace as the portal sees it: the platform's WebDAV service, called with the
user's token (so WebDAV's own checks - the user's home only, quotas, ownership - apply).

Paths are relative to the user's home (``/webdav/home/<user>/``); ``..``, absolute paths and
empty segments are refused here before WebDAV sees them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlparse

import httpx

from sciplat.services.common.errors import (
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceError,
    UsageError,
)

__all__ = ["WorkspaceClient", "clean_path"]

_DAV = "{DAV:}"
_MAX_DEPTH = 32


def clean_path(path: str, *, allow_root: bool = True) -> str:
    """*path* as ``a/b/c`` inside the home; refuses ``..``, ``.``, and characters WebDAV
    would read differently."""
    parts = [p for p in (path or "").replace("\\", "/").split("/") if p]
    for part in parts:
        if part in (".", "..") or any(ord(c) < 32 for c in part):
            raise UsageError(f"Bad workspace path {path!r}: no '.', '..' or control characters")
    if len(parts) > _MAX_DEPTH:
        raise UsageError(f"Bad workspace path {path!r}: too deep")
    if not parts and not allow_root:
        raise UsageError("A file name is needed")
    return "/".join(parts)


@dataclass
class WorkspaceClient:
    """WebDAV on the user's home, as the user."""

    api_url: str  # .../services/api (internal address)
    public_api_url: str
    user: str
    token: str
    http: httpx.AsyncClient

    @property
    def _base(self) -> str:
        return f"{self.api_url}/webdav/home/{quote(self.user)}"

    def url(self, rel: str, *, public: bool = False) -> str:
        base = f"{self.public_api_url}/webdav/home/{quote(self.user)}" if public else self._base
        return f"{base}/{quote(rel)}" if rel else f"{base}/"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _request(self, method: str, rel: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = await self.http.request(method, self.url(rel), headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"The workspace (WebDAV) could not be reached: {exc}") from exc
        _raise_for(response, rel or "~")
        return response

    async def list(self, rel: str) -> list[dict[str, Any]]:
        """The entries of folder *rel* (name, path, folder or not, size, modified)."""
        rel = clean_path(rel)
        response = await self._request("PROPFIND", rel + "/" if rel else "", headers={"Depth": "1"})
        own = urlparse(self.url(rel)).path.rstrip("/")
        entries = []
        for item in ET.fromstring(response.content).iter(f"{_DAV}response"):
            href = urlparse(item.findtext(f"{_DAV}href") or "").path.rstrip("/")
            if href == own or not href:
                continue
            name = unquote(href.rsplit("/", 1)[-1])
            prop = item.find(f"{_DAV}propstat/{_DAV}prop")
            folder = (
                prop is not None and prop.find(f"{_DAV}resourcetype/{_DAV}collection") is not None
            )
            size = prop.findtext(f"{_DAV}getcontentlength") if prop is not None else None
            modified = prop.findtext(f"{_DAV}getlastmodified") if prop is not None else None
            entries.append(
                {
                    "name": name,
                    "path": f"{rel}/{name}" if rel else name,
                    "folder": folder,
                    "size": int(size) if size and size.isdigit() else None,
                    "modified": _iso(modified),
                }
            )
        return sorted(entries, key=lambda e: (not e["folder"], e["name"].lower()))

    async def mkdirs(self, rel: str) -> None:
        """Make folder *rel* and its parents (existing ones are fine)."""
        done = []
        for part in clean_path(rel).split("/") if rel else []:
            done.append(part)
            response = await self.http.request(
                "MKCOL", self.url("/".join(done)) + "/", headers=self._headers
            )
            if response.status_code not in (201, 405):  # 405: it exists
                _raise_for(response, "/".join(done))

    async def put(self, rel: str, data: bytes | AsyncIterator[bytes]) -> str:
        """Write file *rel* (its folder is made); returns its public WebDAV URL."""
        rel = clean_path(rel, allow_root=False)
        if "/" in rel:
            await self.mkdirs(rel.rsplit("/", 1)[0])
        await self._request("PUT", rel, content=data)
        return self.url(rel, public=True)


def _raise_for(response: httpx.Response, what: str) -> None:
    """WebDAV's refusals as the portal's errors (quota: its own message, shown as it is)."""
    status = response.status_code
    if status < 400:
        return
    text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())
    text = re.sub(r"\s*WsgiDAV/\S+ - .*$", "", text)[:300]  # its error pages' footer
    if status == 507:
        start = text.lower().find("quota exceeded")
        raise QuotaExceededError(text[start:] if start >= 0 else "Quota exceeded: " + text)
    if status == 404:
        raise NotFoundError(f"No {what!r} in your workspace")
    if status in (401, 403):
        raise PermissionDeniedError(f"The workspace refused {what!r}: {text}")
    if status < 500:
        raise UsageError(f"The workspace refused {what!r} (HTTP {status}: {text})")
    raise ServiceError(f"The workspace failed on {what!r} (HTTP {status}: {text})")


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError):
        return value

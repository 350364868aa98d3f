"""Calls from the lab to platform services as its user (the lab's token), with one error form.

Service URLs come from the lab's discovery document (:func:`sciplat.client.discovery`); a
service that cannot be reached or answers with a server error becomes a
:class:`~sciplat.labextension.errors.ServiceUnreachable` with the contract's code
(``tap-unreachable``, ``notebooks-unreachable``, ...), never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from sciplat.client import Discovery
from sciplat.labextension.errors import Forbidden, ServiceUnreachable

__all__ = ["PlatformClient"]

_NAMES = {"tap": "TAP", "notebooks": "notebook-execution", "portal": "portal", "hub": "hub",
          "webdav": "workspace (WebDAV)"}  # fmt: skip


class PlatformClient:
    """What one lab knows of the platform: its discovery document, token and hub API."""

    def __init__(self, env: Mapping[str, str], *, timeout: float = 15.0) -> None:
        self.env = env
        self.timeout = timeout

    @property
    def token(self) -> str | None:
        return self.env.get("ACCESS_TOKEN") or self.env.get("JUPYTERHUB_API_TOKEN")

    def discovery(self, service: str) -> Discovery:
        """The discovery document; ``<service>-unreachable`` (503) when the lab has none."""
        path = self.env.get("SCIPLAT_DISCOVERY")
        if not path:
            raise self.unreachable(service, "this lab has no discovery document")
        try:
            doc = Discovery.model_validate(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise self.unreachable(
                service, f"the discovery document is unreadable ({exc})"
            ) from exc
        doc.token = self.token
        return doc

    def url(self, service: str) -> str:
        try:
            return self.discovery(service).url(service).rstrip("/")
        except LookupError as exc:
            raise self.unreachable(service, str(exc)) from exc

    def unreachable(self, service: str, why: str, status: int = 503) -> ServiceUnreachable:
        name = _NAMES.get(service, service)
        return ServiceUnreachable(
            f"The {name} service is unreachable ({why}). The rest of the lab keeps working; "
            "try again in a minute, or tell the platform's administrators if it persists.",
            code=f"{service}-unreachable",
            status=status,
        )

    async def request(self, service: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """*method* *url* with the lab's token. Connection failures and 5xx answers raise
        ``<service>-unreachable``; 4xx answers are returned for the caller to interpret."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kwargs.pop("headers", {}))
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(service, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise self.unreachable(service, f"HTTP {response.status_code}", status=502)
        if response.status_code in (401, 403):
            raise Forbidden(
                f"The {_NAMES.get(service, service)} service refused this lab's token "
                f"(HTTP {response.status_code}): your groups may not grant it. Ask the "
                "platform's administrators for access."
            )
        return response

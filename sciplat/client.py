"""Client side of service discovery: what a lab (or an outside script) knows about the platform.

Each lab gets a discovery document (``$SCIPLAT_DISCOVERY``, JSON) listing service URLs and data
sets, and a token (``$JUPYTERHUB_API_TOKEN`` / ``$ACCESS_TOKEN``) with exactly its user's scopes.
Outside a lab, the same calls take a base URL and a token::

    import sciplat
    d = sciplat.discovery()                        # inside a lab
    d = sciplat.discovery("https://dac.example.org", token="...")   # anywhere else
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

__all__ = ["Discovery", "ServiceInfo", "discovery", "discovery_document", "token"]

#: Service name -> path under the hub's public URL (embedded default layout).
SERVICE_PATHS: dict[str, str] = {
    "tap": "services/api/tap",
    "mydb": "services/api/mydb",
    "sia": "services/api/sia",
    "soda": "services/api/soda",
    "datalink": "services/api/datalink",
    "scs": "services/api/scs",
    "hips": "services/api/hips",
    "webdav": "services/api/webdav",
    "notebooks": "services/api/notebooks",
    "alerts": "services/api/alerts",
    "portal": "services/portal",
    "dask_gateway": "services/dask-gateway",
}


class ServiceInfo(BaseModel):
    url: str
    extra: dict[str, Any] = Field(default_factory=dict)


class Discovery(BaseModel):
    """The discovery document (version 1)."""

    version: int = 1
    hub_url: str
    services: dict[str, ServiceInfo] = Field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    token: str | None = Field(None, exclude=True, description="Never written to the document.")

    def url(self, service: str) -> str:
        """URL of *service*, with a clear error naming what is available."""
        try:
            return self.services[service].url
        except KeyError:
            raise LookupError(
                f"service {service!r} is not in the discovery document "
                f"(available: {sorted(self.services)})"
            ) from None

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that sends the user's token."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(headers=headers, follow_redirects=True, **kwargs)

    def requests_session(self) -> Any:
        """A requests session that sends the user's token (what pyvo takes)."""
        import requests

        session = requests.Session()
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session


def discovery_document(
    hub_url: str,
    datasets: dict[str, dict[str, Any]] | None = None,
    services: dict[str, str] | None = None,
) -> Discovery:
    """Build the document for a platform at *hub_url* (the server side uses this too)."""
    base = hub_url.rstrip("/")
    paths = services if services is not None else SERVICE_PATHS
    return Discovery(
        hub_url=base,
        services={name: ServiceInfo(url=f"{base}/{path}") for name, path in paths.items()},
        datasets=datasets or {},
    )


def token() -> str | None:
    """The token of this lab, if running in one."""
    for var in ("ACCESS_TOKEN", "JUPYTERHUB_API_TOKEN"):
        if value := os.environ.get(var):
            return value
    return None


def discovery(base_url: str | None = None, *, token: str | None = None) -> Discovery:
    """The platform's discovery document.

    In a lab (``$SCIPLAT_DISCOVERY`` set) it is read from that file; with *base_url* it is built
    for that platform. *token* defaults to the lab's token.
    """
    tok = token if token is not None else globals()["token"]()
    if base_url is None:
        path = os.environ.get("SCIPLAT_DISCOVERY")
        if not path:
            raise RuntimeError(
                "not in a sciplat lab ($SCIPLAT_DISCOVERY is not set): "
                "call sciplat.discovery(base_url, token=...)"
            )
        doc = Discovery.model_validate(json.loads(Path(path).read_text()))
    else:
        doc = discovery_document(base_url)
    doc.token = tok
    return doc

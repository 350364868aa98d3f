"""How an area plugs into the sciplat API service.

An area (TAP, images, workspace, ...) exposes a module-level ``plugin = ServicePlugin(...)`` and
is listed in :data:`sciplat.services.app.PLUGINS`. Its router is mounted at
``<service prefix>/<name>``; its ``startup``/``shutdown`` hooks open and close its process
singletons (database pools, job runners), which it keeps in ``context.state[name]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request
from starlette.types import ASGIApp

from sciplat.config import Settings
from sciplat.services.common.auth import HubTokenVerifier

__all__ = ["AppContext", "ServicePlugin", "get_context"]


@dataclass
class AppContext:
    """Process singletons of the API service, built once in the app's lifespan."""

    settings: Settings
    verifier: HubTokenVerifier
    http: httpx.AsyncClient
    #: Public URL of the API service (e.g. http://127.0.0.1:8000/services/api).
    public_url: str
    #: Per-plugin state, keyed by plugin name.
    state: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[AppContext], Awaitable[None]]


@dataclass(frozen=True)
class ServicePlugin:
    """One area of the API service."""

    name: str
    router_factory: Callable[[], APIRouter] | None = None
    #: For areas that are whole ASGI applications (e.g. WebDAV): mounted at the same prefix,
    #: after the router's routes. They render their own errors.
    asgi_app_factory: Callable[[], ASGIApp] | None = None
    #: How errors under this plugin's prefix are rendered: DALI VOTable, JSON or plain text.
    error_format: Literal["votable", "json", "text"] = "votable"
    startup: Hook | None = None
    shutdown: Hook | None = None


def get_context(request: Request) -> AppContext:
    """FastAPI dependency: the process context."""
    return request.app.state.context

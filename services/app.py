"""The sciplat API service: one FastAPI app, mounted as one hub service at ``/services/api``.

``create_app(settings)`` builds it; nothing happens at import time. The areas listed in
:data:`PLUGINS` contribute routers (see :mod:`sciplat.services.plugin`).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from sciplat.client import discovery_document
from sciplat.config import Settings
from sciplat.services.common.auth import (
    WWW_AUTHENTICATE,
    AuthenticatedUser,
    HubTokenVerifier,
    require_user,
)
from sciplat.services.common.errors import ServiceError, UsageError
from sciplat.services.common.votable import VOTABLE_MEDIA_TYPE, error_votable
from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["PLUGINS", "create_app"]

log = logging.getLogger("sciplat.services")

#: The areas mounted in the API service, as "module:attribute" of a ServicePlugin.
PLUGINS: list[str] = [
    "sciplat.services.tap:plugin",
    "sciplat.services.mydb:plugin",
    "sciplat.services.notebooks:plugin",
    "sciplat.services.workspace:plugin",
    "sciplat.services.images.sia:plugin",
    "sciplat.services.images.datalink:plugin",
    "sciplat.services.images.soda:plugin",
    "sciplat.services.scs:plugin",
    "sciplat.services.hips:plugin",
    "sciplat.services.alerts:plugin",
]


def load_plugins(names: list[str] | None = None) -> list[ServicePlugin]:
    plugins = []
    for spec in PLUGINS if names is None else names:
        module_name, _, attr = spec.partition(":")
        plugins.append(getattr(importlib.import_module(module_name), attr or "plugin"))
    return plugins


def create_app(
    settings: Settings,
    *,
    prefix: str | None = None,
    hub_api_url: str | None = None,
    public_url: str | None = None,
    plugins: list[ServicePlugin] | None = None,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the API service.

    *prefix* is where the hub's proxy forwards (``$JUPYTERHUB_SERVICE_PREFIX``, default
    ``/services/api``); *hub_api_url* is where tokens are checked (``$JUPYTERHUB_API_URL``).
    """
    prefix = (prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/services/api").rstrip("/")
    hub_api_url = (
        hub_api_url
        or os.environ.get("JUPYTERHUB_API_URL")
        or f"http://127.0.0.1:{settings.ports.hub}/hub/api"
    )
    public_url = (public_url or f"{settings.public_url}{prefix}").rstrip("/")
    plugins = load_plugins() if plugins is None else plugins

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        context = AppContext(
            settings=settings,
            verifier=HubTokenVerifier(hub_api_url, http=client),
            http=client,
            public_url=public_url,
        )
        app.state.context = context
        started: list[ServicePlugin] = []
        try:
            for plugin in plugins:
                if plugin.startup:
                    await plugin.startup(context)
                started.append(plugin)
            yield
        finally:
            for plugin in reversed(started):
                if plugin.shutdown:
                    try:
                        await plugin.shutdown(context)
                    except Exception:
                        log.exception("shutdown of %s failed", plugin.name)
            if http is None:
                await client.aclose()

    app = FastAPI(
        title="sciplat API",
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    formats = {plugin.name: plugin.error_format for plugin in plugins}

    def error_format(request: Request) -> str:
        path = request.url.path
        if path.startswith(prefix + "/"):
            return formats.get(path[len(prefix) + 1 :].split("/", 1)[0], "json")
        return "json"

    def render(request: Request, status: int, exc: ServiceError) -> Response:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
        fmt = error_format(request)
        if fmt == "votable":
            return Response(
                error_votable(f"{exc.error_code}: {exc.message}"),
                status_code=status,
                media_type=VOTABLE_MEDIA_TYPE,
                headers=headers,
            )
        if fmt == "text":
            return PlainTextResponse(
                f"{exc.error_code}: {exc.message}\n", status_code=status, headers=headers
            )
        return JSONResponse(
            {"error": exc.error_code, "message": exc.message}, status_code=status, headers=headers
        )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if exc.status_code >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return render(request, exc.status_code, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return render(request, 400, UsageError(problems or "Invalid request"))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        error = ServiceError("Internal error; it has been logged")
        return render(request, 500, error)

    for plugin in plugins:
        if plugin.router_factory is not None:
            app.include_router(plugin.router_factory(), prefix=f"{prefix}/{plugin.name}")

    @app.get(f"{prefix}/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{prefix}/discovery")
    async def discovery(
        request: Request, user: AuthenticatedUser = Depends(require_user)
    ) -> JSONResponse:
        """The discovery document (service URLs and data sets) for the calling user."""
        doc = discovery_document(request.app.state.context.settings.public_url)
        return JSONResponse(doc.model_dump(mode="json"))

    # Whole-application areas last, so their catch-all mounts never shadow routes.
    for plugin in plugins:
        if plugin.asgi_app_factory is not None:
            app.mount(f"{prefix}/{plugin.name}", plugin.asgi_app_factory())

    return app

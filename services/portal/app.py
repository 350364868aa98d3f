"""``create_app(settings)``: the portal service (nothing happens at import time)."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sciplat.config import Settings
from sciplat.services.common.auth import WWW_AUTHENTICATE, AuthenticatedUser, HubTokenVerifier
from sciplat.services.common.errors import ServiceError
from sciplat.services.portal import bokehplots, firefly, handlers
from sciplat.services.portal.auth import STATE_COOKIE, LoginRequired, OAuthClient, SessionStore
from sciplat.services.portal.channels import ChannelBus, ChannelSigner, channel_secret
from sciplat.services.portal.images import ImageStore
from sciplat.services.portal.results import ResultCache
from sciplat.services.portal.service import PortalService

__all__ = ["PortalContext", "aladin_path", "create_app", "image_surveys"]

log = logging.getLogger("sciplat.services.portal")


def _warm_plots() -> None:
    try:
        bokehplots.warm_up()
    except Exception:  # a failed warm-up only costs the first plot its compile time
        log.exception("datashader warm-up failed")


_warmed = threading.Event()


def warm_plots_once() -> None:
    """Import HoloViews/Bokeh and compile datashader in the background once a user opens the
    portal (not at start-up: a platform whose users never plot should not pay for it)."""
    if not _warmed.is_set():
        _warmed.set()
        threading.Thread(target=_warm_plots, name="portal-warm-up", daemon=True).start()


def aladin_path() -> Path | None:
    """Aladin Lite's ``aladin.js`` as installed from npm by ``scripts/setup.sh``."""
    prefix = Path(os.environ.get("SCIPLAT_PREFIX", "/opt/sciplat"))
    path = prefix / "node" / "node_modules" / "aladin-lite" / "dist" / "aladin.js"
    return path if path.is_file() else None


@dataclass
class PortalContext:
    settings: Settings
    service: PortalService
    verifier: HubTokenVerifier
    sessions: SessionStore
    oauth: OAuthClient | None
    signer: ChannelSigner
    bus: ChannelBus
    http: httpx.AsyncClient
    upload_dir: Path
    aladin_js: Path | None

    async def hips_surveys(self, user: AuthenticatedUser) -> list[str]:
        response = await self.http.get(
            f"{self.service.api_url}/hips/list",
            headers={"Authorization": f"Bearer {user.token}"},
        )
        if response.status_code != 200:
            return []
        return image_surveys(response.text)


def image_surveys(hips_list: str) -> list[str]:
    """Names of the image surveys in a HiPS list (catalogue HiPS are not for Aladin's base
    layer). Each survey's ``key = value`` lines end with its ``hips_service_url``."""
    names, props = [], {}
    for line in hips_list.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        props[key.strip()] = value.strip()
        if key.strip() == "hips_service_url":
            if props.get("dataproduct_type", "image") == "image":
                names.append(value.strip().rstrip("/").rsplit("/", 1)[-1])
            props = {}
    return names


def create_app(
    settings: Settings,
    *,
    prefix: str | None = None,
    hub_api_url: str | None = None,
    api_url: str | None = None,
) -> FastAPI:
    """Build the portal. *prefix* is ``$JUPYTERHUB_SERVICE_PREFIX`` (``/services/portal``);
    *api_url* is the API service as the portal reaches it (default: through the hub's proxy on
    loopback)."""
    prefix = (prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/services/portal").rstrip(
        "/"
    )
    hub_api_url = (
        hub_api_url
        or os.environ.get("JUPYTERHUB_API_URL")
        or f"http://127.0.0.1:{settings.ports.hub}/hub/api"
    )
    proxy_host = settings.hub.ip if settings.hub.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
    api_url = (api_url or f"http://{proxy_host}:{settings.hub.port}/services/api").rstrip("/")
    state_dir = settings.data_dir / "portal"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        results = ResultCache(state_dir / "results")
        service = PortalService(
            api_url=api_url,
            public_api_url=f"{settings.public_url}/services/api",
            hub_url=settings.public_url,
            results=results,
            images=ImageStore(state_dir / "images"),
            http=http,
            work_dir=state_dir / "tmp",
        )
        app.state.portal = PortalContext(
            settings=settings,
            service=service,
            verifier=HubTokenVerifier(hub_api_url, http=http),
            sessions=SessionStore(),
            oauth=OAuthClient.from_env(hub_api_url, prefix),
            signer=ChannelSigner(channel_secret(settings)),
            bus=ChannelBus(),
            http=http,
            upload_dir=state_dir / "uploads",
            aladin_js=aladin_path(),
        )
        try:
            yield
        finally:
            results.close()
            await http.aclose()

    app = FastAPI(
        title="sciplat portal",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{prefix}/openapi.json",
    )

    def render(status: int, code: str, message: str) -> Response:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
        return JSONResponse(
            {"error": code, "message": message}, status_code=status, headers=headers
        )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if exc.status_code >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return render(exc.status_code, exc.error_code, exc.message)

    @app.exception_handler(LoginRequired)
    async def login(request: Request, exc: LoginRequired) -> Response:
        oauth: OAuthClient = request.app.state.portal.oauth
        state = secrets.token_urlsafe(16)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(oauth.login_url(state), status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            f"{state}|{target}",
            httponly=True,
            samesite="lax",
            path=prefix,
            max_age=600,
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return render(400, "UsageError", problems or "Invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return render(500, "Error", "Internal error; it has been logged")

    @app.get(f"{prefix}/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get(prefix, include_in_schema=False)
    async def bare() -> Response:
        return RedirectResponse(f"{prefix}/")

    app.include_router(firefly.build_router(), prefix=prefix)
    app.include_router(handlers.build_router(prefix), prefix=prefix)
    return app

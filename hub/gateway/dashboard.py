"""Cluster dashboards behind the hub's authentication (the hole of dask-gateway#570 closed).

dask-gateway proxies ``/clusters/<name>/`` straight to the scheduler's Bokeh server, so anyone
who knows the URL reads the dashboard. Our backend does not add that route; the gateway's own
web application answers it instead (:func:`install`): it authenticates the caller (a hub token
in ``Authorization``, or - for browsers - a hub OAuth login kept in a cookie), checks that they
own the cluster or are a hub admin, and only then forwards HTTP and websocket traffic to the
scheduler. The caller's token and cookies are never forwarded to the scheduler, which runs the
cluster owner's code.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from dask_gateway_server.models import ClusterStatus

from sciplat.hub.gateway.auth import token_from_headers

__all__ = ["COOKIE", "DashboardProxy", "install"]

COOKIE = "sciplat-dask-gateway"
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "set-cookie",
}
_CACHE_SECONDS = 60


class DashboardProxy:
    """Authenticating reverse proxy from ``<prefix>/clusters/<name>/...`` to a scheduler."""

    def __init__(self, backend: Any, authenticator: Any) -> None:
        self.backend = backend
        self.auth = authenticator
        self.log = backend.log
        self.session: aiohttp.ClientSession | None = None
        self._users: dict[str, tuple[float, Any]] = {}
        self._states: dict[str, tuple[float, str]] = {}

    @property
    def prefix(self) -> str:
        return self.backend.proxy.prefix

    async def close(self, _app: Any = None) -> None:
        if self.session is not None:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(auto_decompress=False)
        return self.session

    # -- who is asking ---------------------------------------------------------------------
    async def _user_for(self, token: str) -> Any:
        now = time.monotonic()
        cached = self._users.get(token)
        if cached and cached[0] > now:
            return cached[1]
        user = await self.auth.user_for_token(token)
        self._users[token] = (now + _CACHE_SECONDS, user)
        if len(self._users) > 10_000:
            self._users = {k: v for k, v in self._users.items() if v[0] > now}
        return user

    async def user(self, request: web.Request) -> Any:
        """The authenticated caller, or an exception: 401 for APIs, a hub login for browsers."""
        token = token_from_headers(request.headers)
        if token is None:
            token = request.cookies.get(COOKIE)
            if token is not None:
                try:
                    return await self._user_for(token)
                except web.HTTPUnauthorized:
                    token = None  # expired or revoked: log in again
        if token is not None:
            return await self._user_for(token)
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPFound(self._login_url(self.prefix + request.path_qs))
        raise web.HTTPUnauthorized(
            headers={"WWW-Authenticate": "jupyterhub"},
            text="Dashboards need the cluster owner's hub token (Authorization: token ...) or "
            "a hub login in a browser.",
        )

    def _login_url(self, next_url: str) -> str:
        now = time.monotonic()
        self._states = {k: v for k, v in self._states.items() if v[0] > now}
        state = secrets.token_urlsafe(24)
        self._states[state] = (now + 600, next_url)
        hub = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL") or (
            os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
        )
        params = {
            "client_id": os.environ.get("JUPYTERHUB_CLIENT_ID", "service-dask-gateway"),
            "redirect_uri": self._redirect_uri(),
            "response_type": "code",
            "state": state,
        }
        return f"{hub.rstrip('/')}/api/oauth2/authorize?{urlencode(params)}"

    def _redirect_uri(self) -> str:
        return os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", f"{self.prefix}/oauth_callback")

    async def oauth_callback(self, request: web.Request) -> web.Response:
        """Finish the hub login: trade the code for a token, keep it in a cookie."""
        state = request.query.get("state", "")
        entry = self._states.pop(state, None)
        code = request.query.get("code")
        if entry is None or entry[0] < time.monotonic() or not code:
            raise web.HTTPBadRequest(text="Login expired or invalid; open the dashboard again.")
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": os.environ.get("JUPYTERHUB_CLIENT_ID", "service-dask-gateway"),
            "client_secret": self.auth.jupyterhub_api_token,
            "redirect_uri": self._redirect_uri(),
        }
        async with self._session().post(
            f"{self.auth.jupyterhub_api_url}/oauth2/token", data=data
        ) as resp:
            if resp.status != 200:
                self.log.warning("OAuth code exchange failed: HTTP %s", resp.status)
                raise web.HTTPForbidden(text="The hub did not accept this login; try again.")
            token = (await resp.json())["access_token"]
        await self._user_for(token)  # 403 here if the user may not use the gateway
        response = web.HTTPFound(entry[1])
        response.set_cookie(
            COOKIE,
            token,
            path=self.prefix + "/",
            httponly=True,
            samesite="Lax",
            secure=request.headers.get("X-Forwarded-Proto") == "https",
        )
        raise response

    # -- forwarding ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["cluster_name"]
        user = await self.user(request)
        cluster = await self.backend.get_cluster(name)
        if cluster is None:
            raise web.HTTPNotFound(text=f"Cluster {name} not found")
        if not user.has_permissions(cluster):
            raise web.HTTPForbidden(text=f"{user.name} may not view cluster {name}")
        if cluster.status != ClusterStatus.RUNNING or not cluster.dashboard_address:
            raise web.HTTPConflict(text=f"Cluster {name} is not running a dashboard")
        tail = request.match_info.get("tail", "")
        target = f"{cluster.dashboard_address}/{tail}"
        if request.query_string:
            target += "?" + request.query_string
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target)
        return await self._http(request, target, name)

    def _forward_headers(self, headers: Any) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k.lower() not in _HOP}

    async def _http(self, request: web.Request, target: str, name: str) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self._session().request(
                request.method,
                target,
                headers=self._forward_headers(request.headers),
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            raise web.HTTPBadGateway(text=f"The dashboard of {name} did not answer") from exc
        async with upstream:
            headers = self._forward_headers(upstream.headers)
            location = headers.get("Location")
            if location and location.startswith("/"):
                headers["Location"] = f"{self.prefix}/clusters/{name}{location}"
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, target: str) -> web.WebSocketResponse:
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        url = "ws" + target[len("http") :]
        try:  # upstream first, so a refusal there is an HTTP answer here
            up = await self._session().ws_connect(url, protocols=offered, max_msg_size=0)
        except (aiohttp.ClientError, OSError) as exc:
            raise web.HTTPBadGateway(text="The dashboard refused the websocket") from exc
        downstream = web.WebSocketResponse(protocols=offered, max_msg_size=0)
        try:
            await downstream.prepare(request)

            async def pump(src: Any, dst: Any) -> None:
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)
                    else:
                        break

            tasks = [
                asyncio.ensure_future(pump(downstream, up)),
                asyncio.ensure_future(pump(up, downstream)),
            ]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            await up.close()
            await downstream.close()
        return downstream


def install(app: web.Application, backend: Any) -> DashboardProxy:
    """Add the dashboard and OAuth-callback routes to the gateway's web application."""
    proxy = DashboardProxy(backend, app["authenticator"])

    async def bare(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{proxy.prefix}/clusters/{request.match_info['cluster_name']}/status")

    app.add_routes(
        [
            web.get("/oauth_callback", proxy.oauth_callback),
            web.get("/clusters/{cluster_name}", bare),
            web.route("*", "/clusters/{cluster_name}/{tail:.*}", proxy.handle),
        ]
    )
    app.on_cleanup.append(proxy.close)
    return proxy

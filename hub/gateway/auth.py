"""Who is calling the gateway: a hub token, checked against the hub, with scopes enforced.

:class:`SciplatHubAuthenticator` is dask-gateway's ``JupyterHubAuthenticator`` with the service
name required (so ``access:services!service=dask-gateway`` is enforced) and a clear refusal: a
valid token without that scope gets 403 naming the scope, not a bare 401 that the client would
answer by retrying. Hub admins may see, connect to, scale and stop every user's clusters.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator, unauthorized
from dask_gateway_server.models import User
from traitlets import List, Unicode

__all__ = [
    "ERROR_HEADER",
    "SciplatHubAuthenticator",
    "SciplatUser",
    "error_header_middleware",
    "token_from_headers",
]

#: Refusals also carry their message in this header: dask-gateway's client shows only the
#: status line for a 403 (and its Go proxy drops custom reason phrases).
ERROR_HEADER = "X-Dask-Gateway-Error"

_SCHEMES = {"jupyterhub", "token", "bearer"}


class SciplatUser(User):
    """A gateway user; admins may act on every cluster."""

    def has_permissions(self, cluster: Any) -> bool:
        return self.admin or self.name == cluster.username


def token_from_headers(headers: Any) -> str | None:
    """The hub token in ``Authorization: jupyterhub|token|Bearer <token>``, if any."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() in _SCHEMES and token.strip():
        return token.strip()
    return None


class SciplatHubAuthenticator(JupyterHubAuthenticator):
    """JupyterHub token authentication with the service's access scope enforced."""

    admin_services = List(
        Unicode(),
        ["sciplat-cli"],
        help="""Hub services treated as gateway admins (they may list, scale and stop every
        user's clusters), e.g. the ``sciplat-cli`` service behind ``sciplat admin clusters``.
        They still need the ``access:services!service=dask-gateway`` scope.""",
    ).tag(config=True)

    def get_token(self, request: web.Request) -> str | None:
        return token_from_headers(request.headers)

    async def authenticate(self, request: web.Request) -> SciplatUser:
        token = self.get_token(request)
        if token is None:
            raise unauthorized("jupyterhub")
        return await self.user_for_token(token)

    async def user_for_token(self, token: str) -> SciplatUser:
        """Ask the hub who owns *token*; 401 if nobody, 403 if it lacks the access scope."""
        if not self.jupyterhub_service_name:
            raise web.HTTPInternalServerError(
                reason="The gateway is misconfigured (jupyterhub_service_name is not set)"
            )
        resp = await self.session.get(
            f"{self.jupyterhub_api_url}/user",
            headers={"Authorization": f"token {token}"},
            ssl=self.ssl_context,
        )
        if resp.status in (401, 403, 404):
            self.log.debug("Hub rejected a token (%s)", resp.status)
            raise unauthorized("jupyterhub")
        if resp.status >= 400:
            self.log.error("Hub answered %s while checking a token", resp.status)
            raise web.HTTPBadGateway(reason="The hub could not verify the token; try again")
        data = await resp.json()
        name = data["name"]
        if data.get("kind") != "user" or ":" in name:
            name = f"{data.get('kind', 'unknown')}:{name}"
        scope = f"access:services!service={self.jupyterhub_service_name}"
        if not {"access:services", scope} & set(data.get("scopes", [])):
            self.log.info("Refused %s: token lacks %s", name, scope)
            raise web.HTTPForbidden(
                reason=f"{name} may not use batch compute: the token lacks the scope {scope}. "
                "Ask an administrator to add you to a group that grants it (in a lab, "
                "restart your server after a group change)."
            )
        admin = bool(data.get("admin")) or (
            data.get("kind") == "service" and data["name"] in self.admin_services
        )
        return SciplatUser(name, groups=data.get("groups", []), admin=admin)


@web.middleware
async def error_header_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Copy the ``{"error": ...}`` message of a 4xx JSON answer into :data:`ERROR_HEADER`."""
    response = await handler(request)
    if not (
        400 <= response.status < 500
        and isinstance(response, web.Response)
        and response.content_type == "application/json"
        and response.body
    ):
        return response
    try:
        message = json.loads(response.body).get("error")
    except (ValueError, AttributeError, TypeError):
        message = None
    if isinstance(message, str) and message:
        flat = " ".join(message.split())[:500]
        response.headers[ERROR_HEADER] = flat.encode("ascii", "replace").decode()
    return response

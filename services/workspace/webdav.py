"""WebDAV access to workspaces: WsgiDAV behind the hub's token check.

The ASGI front end authenticates every request with the caller's hub token (scope
``custom:files:write``), then hands it to WsgiDAV (through a2wsgi) with the caller's name and
groups in the WSGI environ. WsgiDAV's own authentication is replaced by a domain controller that
trusts only that environ, which no client can set.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from a2wsgi import WSGIMiddleware
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from wsgidav.wsgidav_app import WsgiDAVApp

from sciplat.config import Settings
from sciplat.hub.accounts import AccountManager, current_account
from sciplat.hub.errors import SciplatSpawnError
from sciplat.services.common.auth import WWW_AUTHENTICATE, AuthenticatedUser, extract_token
from sciplat.services.common.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ServiceError,
)
from sciplat.services.plugin import AppContext
from sciplat.services.workspace.provider import (
    ENVIRON_GROUPS,
    ENVIRON_USER,
    Workspace,
    WorkspaceProvider,
)
from sciplat.services.workspace.quota import DiskUsage

__all__ = ["SCOPE", "WebDAVFrontend"]

log = logging.getLogger(__name__)

SCOPE = "custom:files:write"
_USER_HEADER = b"x-sciplat-dav-user"
_GROUPS_HEADER = b"x-sciplat-dav-groups"


class WorkspaceUnavailableError(ServiceError, status=503, code="WorkspaceUnavailable"):
    """The caller's home could not be created or found (HTTP 503)."""


class TrustedDomainController:
    """WsgiDAV domain controller: the front end has already authenticated the caller."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        self.config = config

    def __str__(self) -> str:
        return "sciplat hub tokens"

    def get_domain_realm(self, path_info: str, environ: dict) -> str:
        return "sciplat"

    def require_authentication(self, realm: str, environ: dict) -> bool:
        user = environ.get("HTTP_X_SCIPLAT_DAV_USER", "")
        environ[ENVIRON_USER] = user
        groups = environ.get("HTTP_X_SCIPLAT_DAV_GROUPS", "")
        environ[ENVIRON_GROUPS] = [g for g in groups.split(",") if g]
        environ["wsgidav.auth.user_name"] = user
        return not user

    def is_share_anonymous(self, path_info: str) -> bool:
        return False

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
        return False

    def supports_http_digest_auth(self) -> bool:
        return False


def make_wsgidav(settings: Settings, mount_path: str) -> WsgiDAVApp:
    """WsgiDAV over the workspaces; *mount_path* is where it is reached (for hrefs)."""
    provider = WorkspaceProvider(Workspace(settings), DiskUsage())
    config = {
        "mount_path": mount_path.rstrip("/"),
        "provider_mapping": {"/": provider},
        "http_authenticator": {
            "domain_controller": TrustedDomainController,
            "accept_basic": True,  # never reached: the front end authenticates
            "accept_digest": False,
            "default_to_digest": False,
        },
        "property_manager": True,
        "lock_storage": True,
        "verbose": 1,
        "logging": {"enable": False},
        "dir_browser": {"enable": True, "response_trailer": "sciplat workspace"},
        "suppress_version_info": True,
        "add_header_MS_Author_Via": True,
    }
    return WsgiDAVApp(config)


class WebDAVFrontend:
    """ASGI app: token check, then WsgiDAV. Built lazily from the service's settings."""

    def __init__(self) -> None:
        self._dav: WSGIMiddleware | None = None
        self._accounts: AccountManager | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        context: AppContext = scope["app"].state.context
        headers = [(k, v) for k, v in scope["headers"] if k not in (_USER_HEADER, _GROUPS_HEADER)]
        try:
            user = await self._authenticate(context, scope)
            await self._ensure_home(context.settings, user.name)
        except ServiceError as exc:
            await _plain(send, exc.status_code, f"{exc.error_code}: {exc.message}\n")
            return
        headers += [
            (_USER_HEADER, user.name.encode()),
            (_GROUPS_HEADER, ",".join(user.groups).encode()),
        ]
        if self._dav is None:
            dav = make_wsgidav(context.settings, scope.get("root_path", ""))
            self._dav = WSGIMiddleware(dav, workers=8)
        await self._dav({**scope, "headers": headers}, receive, send)

    async def _ensure_home(self, settings: Settings, username: str) -> None:
        """A user who never started a lab gets their account and home now."""
        if (settings.homes_dir / username).is_dir():
            return
        try:
            if os.geteuid() == 0:
                self._accounts = self._accounts or AccountManager(settings.homes_dir)
                await self._accounts.ensure(username)
            else:
                current_account(username, settings.homes_dir)
        except SciplatSpawnError as exc:
            log.error("cannot prepare the home of %s: %s", username, exc)
            raise WorkspaceUnavailableError(
                f"Your workspace could not be prepared ({exc.reason}); an operator has the details"
            ) from exc

    @staticmethod
    async def _authenticate(context: AppContext, scope: Scope) -> AuthenticatedUser:
        token = extract_token(Request(scope))
        if token is None:
            raise AuthenticationError(
                "Authentication required: send a hub token (Bearer, or as the Basic password)"
            )
        user = await context.verifier.verify(token)
        if not user.has_scope(SCOPE):
            raise PermissionDeniedError(f"This token does not grant {SCOPE!r}")
        return user


async def _plain(send: Send, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 401:
        headers.append((b"www-authenticate", WWW_AUTHENTICATE.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})

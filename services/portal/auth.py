"""Who is calling the portal: the hub OAuth login for browsers, hub tokens for programs.

Browsers: a request without a session cookie is sent to the hub's OAuth authorize endpoint; the
hub (where the user logs in once) redirects back to ``oauth_callback`` with a code, which the
portal trades for an OAuth token holding the user's scopes among
:data:`~sciplat.services.portal.hubconf.TOKEN_SCOPES`. The token stays on the server, in a
session named by a random, HttpOnly cookie. Programs send a hub token (``Authorization``).
Every route needs ``custom:portal:use``.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from fastapi import Request

from sciplat.services.common.auth import AuthenticatedUser, HubTokenVerifier, extract_token
from sciplat.services.common.errors import AuthenticationError, PermissionDeniedError

__all__ = ["PORTAL_SCOPE", "LoginRequired", "OAuthClient", "SessionStore"]

PORTAL_SCOPE = "custom:portal:use"
SESSION_COOKIE = "sciplat-portal-session"
STATE_COOKIE = "sciplat-portal-oauth-state"


class LoginRequired(Exception):
    """A browser page needs the hub login first."""


@dataclass
class OAuthClient:
    """The portal's OAuth client registration with the hub (from the service environment)."""

    client_id: str
    client_secret: str
    redirect_uri: str
    authorize_url: str
    token_url: str

    @classmethod
    def from_env(cls, hub_api_url: str, prefix: str) -> OAuthClient | None:
        secret = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not secret:
            return None
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
        return cls(
            client_id=os.environ.get("JUPYTERHUB_CLIENT_ID", "service-portal"),
            client_secret=secret,
            redirect_uri=os.environ.get(
                "JUPYTERHUB_OAUTH_CALLBACK_URL", f"{prefix}/oauth_callback"
            ),
            authorize_url=f"{base}/hub/api/oauth2/authorize",
            token_url=f"{hub_api_url.rstrip('/')}/oauth2/token",
        )

    def login_url(self, state: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "response_type": "code",
                "state": state,
            }
        )
        return f"{self.authorize_url}?{query}"

    async def token_for_code(self, http: httpx.AsyncClient, code: str) -> str:
        response = await http.post(
            self.token_url,
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
            },
        )
        if response.status_code != 200:
            raise AuthenticationError(f"The hub refused the login code ({response.status_code})")
        return response.json()["access_token"]


@dataclass
class Session:
    user: AuthenticatedUser
    expires: float


@dataclass
class SessionStore:
    """Browser sessions: random id -> the user's OAuth token (in memory; a restarted portal
    sends browsers through the hub's login again, which needs no password while the hub
    session lasts)."""

    ttl: float = 12 * 3600
    _sessions: dict[str, Session] = field(default_factory=dict)

    def create(self, user: AuthenticatedUser) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
        self._sessions[sid] = Session(user, now + self.ttl)
        return sid

    def get(self, sid: str | None) -> AuthenticatedUser | None:
        session = self._sessions.get(sid or "")
        if session is None or session.expires < time.time():
            return None
        return session.user

    def drop(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)


async def current_user(request: Request, *, browser: bool = False) -> AuthenticatedUser:
    """The caller, holding ``custom:portal:use``; :class:`LoginRequired` for a browser page
    without a session, 401 for a program without a token."""
    context = request.app.state.portal
    token = extract_token(request)
    if token is not None:
        verifier: HubTokenVerifier = context.verifier
        user = await verifier.verify(token)
    else:
        user = context.sessions.get(request.cookies.get(SESSION_COOKIE))
        if user is None:
            if browser and context.oauth is not None:
                raise LoginRequired()
            raise AuthenticationError(
                "Log in at the hub (open the portal in a browser) or send a hub token as "
                "'Authorization: Bearer <token>'"
            )
    if not user.has_scope(PORTAL_SCOPE):
        raise PermissionDeniedError(f"Using the portal needs the {PORTAL_SCOPE!r} scope")
    return user


async def api_user(request: Request) -> AuthenticatedUser:
    """FastAPI dependency for the portal's JSON API."""
    return await current_user(request)


async def page_user(request: Request) -> AuthenticatedUser:
    """FastAPI dependency for HTML pages (redirects to the hub login)."""
    return await current_user(request, browser=True)

"""Authentication against JupyterHub, the platform's identity provider and token authority.

Every data endpoint takes a hub token, sent as ``Authorization: Bearer <token>`` (or ``token
<token>``), or - for clients like STILTS/TOPCAT that only speak HTTP Basic - as the Basic
password (the RSP's convention). The hub tells us who owns the token and which scopes it holds
(``GET /hub/api/user`` with the token itself, so this service needs no admin rights). Answers are
cached briefly; bad tokens too, so a client retrying with a wrong token does not load the hub.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from fastapi import Request

from sciplat.services.common.errors import AuthenticationError, PermissionDeniedError

__all__ = [
    "WWW_AUTHENTICATE",
    "AuthenticatedUser",
    "HubTokenVerifier",
    "StaticTokenVerifier",
    "extract_token",
    "require_scope",
    "require_user",
]

#: Sent with every 401 so clients know how to authenticate (IVOA SSO: Bearer and Basic).
WWW_AUTHENTICATE = 'Bearer realm="sciplat", Basic realm="sciplat"'


@dataclass(frozen=True)
class AuthenticatedUser:
    """The owner of a verified token and what the token may do."""

    name: str
    scopes: frozenset[str]
    groups: tuple[str, ...] = ()
    admin: bool = False
    token: str = field(default="", repr=False)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def extract_token(request: Request) -> str | None:
    """The token in the request's Authorization header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("bearer", "token") and value:
        return value
    if scheme == "basic" and value:
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or username or None
    return None


class StaticTokenVerifier:
    """Accepts exactly one token, as one user: for benchmarks, which run without a hub."""

    def __init__(self, token: str, user: str, scopes: set[str], groups: tuple[str, ...] = ()):
        self.token = token
        self.user = AuthenticatedUser(user, frozenset(scopes), groups, token=token)

    async def verify(self, token: str) -> AuthenticatedUser:
        if token != self.token:
            raise AuthenticationError("Invalid or expired token")
        return self.user


class HubTokenVerifier:
    """Asks the hub who owns a token, with a small TTL cache and in-flight de-duplication."""

    def __init__(
        self,
        hub_api_url: str,
        *,
        http: httpx.AsyncClient,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        self.hub_api_url = hub_api_url.rstrip("/")
        self._http = http
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, AuthenticatedUser | None]] = {}
        self._inflight: dict[str, asyncio.Future[AuthenticatedUser | None]] = {}

    async def verify(self, token: str) -> AuthenticatedUser:
        """The user behind *token*; :class:`AuthenticationError` if the hub does not know it."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and cached[0] > now:
            user = cached[1]
        elif key in self._inflight:
            user = await asyncio.shield(self._inflight[key])
        else:
            future: asyncio.Future[AuthenticatedUser | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._inflight[key] = future
            try:
                user = await self._ask_hub(token)
                future.set_result(user)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved
                raise
            finally:
                del self._inflight[key]
            self._remember(key, user, now)
        if user is None:
            raise AuthenticationError("Invalid or expired token")
        return user

    def _remember(self, key: str, user: AuthenticatedUser | None, now: float) -> None:
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        ttl = self._ttl if user is not None else self._negative_ttl
        self._cache[key] = (now + ttl, user)

    async def _ask_hub(self, token: str) -> AuthenticatedUser | None:
        try:
            response = await self._http.get(
                f"{self.hub_api_url}/user", headers={"Authorization": f"token {token}"}
            )
        except httpx.HTTPError as exc:
            raise AuthenticationError("The hub could not be reached to check the token") from exc
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise AuthenticationError(f"The hub answered {response.status_code} checking the token")
        model = response.json()
        if model.get("kind", "user") != "user":
            return None
        return AuthenticatedUser(
            name=model["name"],
            scopes=frozenset(model.get("scopes", [])),
            groups=tuple(model.get("groups", [])),
            admin=bool(model.get("admin", False)),
            token=token,
        )


async def require_user(request: Request) -> AuthenticatedUser:
    """A FastAPI dependency: the user behind the request's token, whatever its scopes.

    No or bad credentials -> 401 (rendered with ``WWW-Authenticate``).
    """
    token = extract_token(request)
    if token is None:
        raise AuthenticationError(
            "Authentication required: send a hub token as 'Authorization: Bearer <token>' "
            "(or as the HTTP Basic password)"
        )
    verifier: HubTokenVerifier = request.app.state.context.verifier
    return await verifier.verify(token)


def require_scope(scope: str) -> Callable[[Request], Awaitable[AuthenticatedUser]]:
    """A FastAPI dependency: the authenticated user, who must hold *scope* (else 403)."""

    async def dependency(request: Request) -> AuthenticatedUser:
        user = await require_user(request)
        if not user.has_scope(scope):
            raise PermissionDeniedError(f"This token does not grant {scope!r}")
        return user

    return dependency

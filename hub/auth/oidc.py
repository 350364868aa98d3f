"""Production identity: an OpenID Connect provider (Keycloak, CILogon, Dex, ...).

:class:`SciplatOIDCAuthenticator` is oauthenticator's ``GenericOAuthenticator`` with sciplat's
username rule, the provider's groups claim synced into hub groups on every login (plus the
default groups), and clear error pages where the upstream class answers 500 (an expired or
replayed code, an unreachable provider, a missing claim).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import reduce
from typing import Any

import httpx
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError

from .errors import IdentityConfigError
from .groups import SciplatAuthMixin

__all__ = ["SciplatOIDCAuthenticator", "discover"]


def discover(issuer: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """Fetch and check the provider's ``/.well-known/openid-configuration``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise IdentityConfigError(
            f"hub.oidc.issuer: cannot read the discovery document {url}: {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise IdentityConfigError(f"hub.oidc.issuer: {url} is not a JSON object")
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise IdentityConfigError(
            f"hub.oidc.issuer is {issuer!r} but the provider calls itself "
            f"{document.get('issuer')!r} (OpenID Connect Discovery 1.0, section 4.3)"
        )
    return document


class SciplatOIDCAuthenticator(SciplatAuthMixin, GenericOAuthenticator):
    """Log in through an OpenID Connect provider; its groups claim becomes hub groups.

    Every login replaces the user's hub groups with the claim's groups plus
    :attr:`default_groups`. Groups that ``sciplat.yaml`` does not describe are kept as hub
    groups (visible to admins and usable for sharing) but carry no role, so no data rights.
    A leading ``/`` (Keycloak's full group path) is removed.
    """

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        return self.claim_groups(auth_state) | set(self.default_groups)

    def claim_groups(self, auth_state: dict[str, Any]) -> set[str]:
        """The provider's groups for a user, from ``auth_state`` (see auth_state_groups_key)."""
        key = self.auth_state_groups_key
        if callable(key):
            value = key(auth_state)
        else:
            value = reduce(
                lambda node, part: node.get(part) if isinstance(node, dict) else None,
                key.split("."),
                auth_state,
            )
        if value is None:
            return set()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set):
            self.log.warning("Ignoring groups claim that is not a list: %.80r", value)
            return set()
        return {name.lstrip("/") for name in value if isinstance(name, str) and name.strip("/")}

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        # allowed_groups is about what the provider says, not the default groups we add.
        if auth_model and self.manage_groups and self.allowed_groups:
            claimed = self.claim_groups(auth_model.get("auth_state") or {})
            auth_model = {**auth_model, "groups": sorted(claimed)}
        return await super().check_allowed(username, auth_model)

    def user_info_to_username(self, user_info: dict[str, Any]) -> str:
        claim = self.username_claim if isinstance(self.username_claim, str) else "username"
        value = (
            self.username_claim(user_info)
            if callable(self.username_claim)
            else user_info.get(claim)
        )
        if not value or not isinstance(value, str):
            self.log.error("No %r claim in the user info: keys %s", claim, sorted(user_info))
            raise web.HTTPError(
                403,
                f"The identity provider did not send a {claim!r} claim, which this platform "
                "uses as the username. Ask the platform's administrators to check "
                "hub.oidc.username_claim and hub.oidc.scopes.",
            )
        problem = self.username_problem(self.normalize_username(value))
        if problem:
            raise web.HTTPError(
                403,
                f"Your identity provider's username cannot be used here. {problem} "
                "Ask the platform's administrators to map it to a valid name.",
            )
        return value

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        return await _ask_provider(
            super().get_token_info(handler, params),
            "complete the sign-in",
            lambda exc: (
                f"The identity provider refused the sign-in ({_oauth_error(exc)}). The "
                "link may have expired or been used already: please log in again."
            ),
        )

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        return await _ask_provider(
            super().token_to_user(token_info),
            "read your user details",
            lambda exc: (
                f"The identity provider refused to give your user details (HTTP "
                f"{exc.code}). Please log in again."
            ),
        )


async def _ask_provider(
    call: Awaitable[dict[str, Any]], what: str, refused: Callable[[HTTPClientError], str]
) -> dict[str, Any]:
    """Await *call* (a request to the provider): a 4xx answer is a 403 with ``refused(exc)``,
    any other failure a 502 saying the provider could not be reached to do *what*."""
    try:
        return await call
    except HTTPClientError as exc:
        if exc.response is not None and 400 <= exc.code < 500:
            raise web.HTTPError(403, refused(exc)) from exc
        raise _unreachable(what, exc) from exc
    except OSError as exc:  # tornado raises connection errors as they are
        raise _unreachable(what, exc) from exc


def _unreachable(what: str, exc: Exception) -> web.HTTPError:
    return web.HTTPError(
        502,
        f"The identity provider could not be reached to {what} ({exc}). Please try again later.",
    )


def _oauth_error(exc: HTTPClientError) -> str:
    try:
        body = json.loads(exc.response.body)
        return ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    except (ValueError, TypeError, AttributeError):
        return f"HTTP {exc.code}"

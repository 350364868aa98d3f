"""Identity and authorization: who may log in, under which name, and in which groups.

Groups carry the data rights (their roles and quotas are rendered from ``settings.groups`` by
:mod:`sciplat.hub.hubconfig`); this package decides how people get into groups:

- ``hub.authenticator: native`` (embedded default): :class:`SciplatNativeAuthenticator`,
  sign-up with admin approval; approved users join ``hub.default_groups``, admins can add more
  memberships on the admin page.
- ``hub.authenticator: oidc`` (production): :class:`SciplatOIDCAuthenticator`, an OpenID
  Connect provider's groups claim becomes the user's hub groups at every login (plus
  ``hub.default_groups``). JupyterHub then forbids ``JupyterHub.load_groups`` (the groups
  belong to the provider); roles naming groups still work.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from sciplat.config import Settings

from .errors import IdentityConfigError, IdentityError, SignupError
from .native import SciplatNativeAuthenticator
from .oidc import SciplatOIDCAuthenticator, discover
from .usernames import USERNAME_PATTERN, reserved_names, username_problem

__all__ = [
    "USERNAME_PATTERN",
    "IdentityConfigError",
    "IdentityError",
    "SciplatNativeAuthenticator",
    "SciplatOIDCAuthenticator",
    "SignupError",
    "configure_auth",
    "reserved_names",
    "username_problem",
]

#: Environment variable that supplies the OIDC client secret when sciplat.yaml does not.
CLIENT_SECRET_ENV = "SCIPLAT_OIDC_CLIENT_SECRET"


def configure_auth(c: Any, settings: Settings) -> None:
    """Set ``c.JupyterHub.authenticator_class`` and its traits from ``settings.hub``.

    Raises :class:`IdentityConfigError` for settings that cannot work (a reserved admin name,
    an unreachable OIDC issuer, a missing client secret, ...).
    """
    hub = settings.hub
    for name in hub.admin_users:
        problem = username_problem(name)
        if problem:
            raise IdentityConfigError(f"hub.admin_users: {problem}")
    c.Authenticator.admin_users = set(hub.admin_users)
    if hub.authenticator == "native":
        _configure_native(c, settings)
    else:
        _configure_oidc(c, settings)


def _configure_native(c: Any, settings: Settings) -> None:
    hub = settings.hub
    c.JupyterHub.authenticator_class = SciplatNativeAuthenticator
    auth = c.SciplatNativeAuthenticator
    auth.enable_signup = True
    auth.open_signup = hub.open_signup
    auth.minimum_password_length = hub.minimum_password_length
    auth.check_common_password = True
    auth.default_groups = list(hub.default_groups)
    # Approval (or open sign-up) is the gate; JupyterHub 5+ wants the choice explicit.
    c.Authenticator.allow_all = True
    # Group membership stays with the hub's admins (default groups are added, never removed).
    auth.manage_groups = False


def _configure_oidc(c: Any, settings: Settings) -> None:
    hub = settings.hub
    oidc = hub.oidc
    assert oidc is not None  # HubConfig's validator guarantees it
    secret = oidc.client_secret or os.environ.get(CLIENT_SECRET_ENV, "")
    if not secret:
        raise IdentityConfigError(
            f"hub.oidc.client_secret is empty and {CLIENT_SECRET_ENV} is not set"
        )
    both = sorted(set(oidc.admin_groups) & set(hub.default_groups))
    if both:
        raise IdentityConfigError(
            f"hub.oidc.admin_groups {both} are also hub.default_groups: every user would be admin"
        )
    endpoints = {
        "authorize_url": oidc.authorize_url,
        "token_url": oidc.token_url,
        "userdata_url": oidc.userdata_url,
    }
    if not all(endpoints.values()):
        document = discover(oidc.issuer)
        for trait, field in (
            ("authorize_url", "authorization_endpoint"),
            ("token_url", "token_endpoint"),
            ("userdata_url", "userinfo_endpoint"),
        ):
            endpoints[trait] = endpoints[trait] or document.get(field, "")
            if not endpoints[trait]:
                raise IdentityConfigError(
                    f"the provider's discovery document has no {field}; set hub.oidc.{trait}"
                )

    c.JupyterHub.authenticator_class = SciplatOIDCAuthenticator
    auth = c.SciplatOIDCAuthenticator
    auth.client_id = oidc.client_id
    auth.client_secret = secret
    for trait, url in endpoints.items():
        setattr(auth, trait, url)
    auth.oauth_callback_url = f"{settings.public_url}/hub/oauth_callback"
    auth.scope = list(oidc.scopes)
    auth.username_claim = oidc.username_claim
    auth.login_service = urlparse(oidc.issuer).hostname or "OpenID Connect"
    auth.manage_groups = True
    auth.auth_state_groups_key = (
        f"{SciplatOIDCAuthenticator.user_auth_state_key}.{oidc.groups_claim}"
    )
    auth.admin_groups = set(oidc.admin_groups)
    auth.allowed_groups = set(oidc.allowed_groups)
    auth.allow_all = not oidc.allowed_groups
    auth.default_groups = list(hub.default_groups)

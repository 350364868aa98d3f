"""Register the portal with JupyterHub (an entry of ``sciplat.hub.hubconfig.EXTENSIONS``).

The portal is a hub-managed service at ``/services/portal`` with an OAuth client: browser users
log in once at the hub and the portal receives an OAuth token holding the scopes below that the
user has (it calls TAP, images and WebDAV with it, as the user). Members of groups granted
``custom:portal:use`` also get ``access:services!service=portal`` (JupyterHub refuses the OAuth
login to anyone else). Labs get ``FIREFLY_URL`` (the portal) and ``FIREFLY_CHANNEL`` (a channel
signed for their user), so ``FireflyClient.make_client()`` in a lab drives the user's portal.
"""

from __future__ import annotations

import sys
from typing import Any

from sciplat.config import Settings
from sciplat.services.portal.channels import DEFAULT_NONCE, ChannelSigner, channel_secret

__all__ = ["PORTAL_SCOPE", "SERVICE_NAME", "TOKEN_SCOPES", "configure"]

SERVICE_NAME = "portal"
PORTAL_SCOPE = "custom:portal:use"
#: What the portal's OAuth token may carry (each only if the user holds it).
TOKEN_SCOPES = [PORTAL_SCOPE, "custom:tap:read", "custom:image:read", "custom:files:write"]


def configure(c: Any, settings: Settings) -> None:
    """Add the portal service, its access role and the labs' Firefly environment to *c*."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings_file = settings.run_dir / "settings.json"
    if not settings_file.exists():
        settings_file.touch(mode=0o600)
        settings_file.write_text(settings.model_dump_json(indent=2))
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "url": f"http://127.0.0.1:{settings.ports.portal}",
            "command": [
                sys.executable,
                "-m",
                "sciplat.services.portal",
                "--settings",
                str(settings_file),
            ],
            "display": True,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": TOKEN_SCOPES,
        }
    )
    groups = [name for name, group in settings.groups.items() if PORTAL_SCOPE in group.scopes]
    if groups:
        c.JupyterHub.load_roles.append(
            {
                "name": "portal-access",
                "description": "Log in to the portal (members of groups with custom:portal:use)",
                "scopes": [f"access:services!service={SERVICE_NAME}"],
                "groups": groups,
            }
        )
    signer = ChannelSigner(channel_secret(settings))
    portal_url = f"{settings.public_url}/services/{SERVICE_NAME}"
    c.Spawner.environment.update(
        {
            "FIREFLY_URL": portal_url,
            "SCIPLAT_PORTAL_URL": portal_url,
            "FIREFLY_CHANNEL": lambda spawner: signer.make(spawner.user.name, DEFAULT_NONCE),
        }
    )

"""Save All and Exit: the lab asks the hub to stop it, with its own token.

The hub must record the server as stopped (so the home page offers "Start"), so the stop goes
through the hub's REST API, not a plain shutdown. The lab's token carries
``servers!server=<user>/<name>`` for that (``sciplat.hub.hubconfig.LAB_TOKEN_BASE_SCOPES``).
The answer (where the browser goes next) is sent before the stop starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote

from sciplat.labextension.errors import Forbidden, LabError
from sciplat.labextension.platform import PlatformClient

__all__ = ["exit_plan", "stop_own_server"]

log = logging.getLogger("sciplat.labextension")


def _server_path(env: Mapping[str, str]) -> str:
    user = quote(env["JUPYTERHUB_USER"], safe="")
    name = env.get("JUPYTERHUB_SERVER_NAME", "")
    return f"/users/{user}/servers/{quote(name, safe='')}" if name else f"/users/{user}/server"


def _hub_prefix(env: Mapping[str, str]) -> str:
    base = env.get("JUPYTERHUB_BASE_URL", "/")
    return base.rstrip("/") + "/hub/"


async def exit_plan(platform: PlatformClient, logout: bool) -> dict[str, str]:
    """Check that this lab may stop itself; ``{"redirect"}`` for the browser.

    Refuses (before anything is saved or stopped) a lab outside JupyterHub (400), without a
    token (503) or whose token lacks the scope (403).
    """
    env = platform.env
    if not env.get("JUPYTERHUB_API_URL") or not env.get("JUPYTERHUB_USER"):
        raise LabError("This server does not run under JupyterHub; close the tab instead.").renamed(
            "not-in-hub"
        )
    if not platform.token:
        raise platform.unreachable("hub", "this lab has no token").renamed("token-missing")
    api = env["JUPYTERHUB_API_URL"].rstrip("/")
    response = await platform.request("hub", "GET", f"{api}/user")
    if response.status_code != 200:
        raise platform.unreachable("hub", f"HTTP {response.status_code}", 502)
    scopes = set(response.json().get("scopes", []))
    user, name = env["JUPYTERHUB_USER"], env.get("JUPYTERHUB_SERVER_NAME", "")
    allowed = {"servers", f"servers!user={user}", f"servers!server={user}/{name}"}
    if not scopes & allowed:
        raise Forbidden(
            "This lab's token may not stop its own server (it lacks "
            f"'servers!server={user}/{name}'). Stop it from the hub's home page instead "
            "(File > Hub Control Panel)."
        )
    return {"redirect": _hub_prefix(env) + ("logout" if logout else "home")}


async def stop_own_server(platform: PlatformClient) -> None:
    """Ask the hub to stop this server (the hub then stops this very process)."""
    api = platform.env["JUPYTERHUB_API_URL"].rstrip("/")
    try:
        response = await platform.request("hub", "DELETE", api + _server_path(platform.env))
        log.info("Asked the hub to stop this server: HTTP %s", response.status_code)
    except LabError as exc:
        log.error("Could not stop this server through the hub: %s", exc.message)

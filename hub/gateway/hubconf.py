"""The gateway as a hub-managed service, and the lab environment that finds it.

:func:`configure_hub` is a hub extension (``sciplat.hub.hubconfig.EXTENSIONS``): it registers
``/services/dask-gateway`` (the hub starts and restarts the gateway with its own API token and
OAuth client, used for dashboard logins), and sets ``DASK_GATEWAY__*`` in every lab so
``Gateway()`` works with no arguments. Access is the scope
``access:services!service=dask-gateway``, which groups grant through their roles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciplat.config import GATEWAY_SCOPE, Settings
from sciplat.hub.gateway.server_config import (
    PREFIX,
    SERVICE_NAME,
    server_command,
    write_server_config,
)

__all__ = ["OPERATOR_SERVICE", "configure_hub", "lab_environment"]

#: The hub service whose token operator commands use (``sciplat.hub.hubconfig.CLI_SERVICE``).
OPERATOR_SERVICE = "sciplat-cli"
#: Hub templates: ``admin.html`` adds a "Batch compute" section to the hub's admin page.
TEMPLATES = Path(__file__).parent / "templates"


def lab_environment(settings: Settings) -> dict[str, str]:
    """What a lab needs so ``Gateway()`` and the dask JupyterLab extension use the gateway."""
    return {
        # Labs run on this machine: talk to the gateway's proxy directly.
        "DASK_GATEWAY__ADDRESS": f"http://127.0.0.1:{settings.ports.gateway}{PREFIX}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{settings.ports.gateway_tcp}",
        # Dashboard links are opened by the user's browser.
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"{settings.public_url}{PREFIX}",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
        "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
    }


def configure_hub(c: Any, settings: Settings) -> None:
    """Register the gateway service and the lab environment in the hub config *c*."""
    config = write_server_config(settings)
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "url": f"http://127.0.0.1:{settings.ports.gateway}",
            "command": server_command(config),
            "display": False,
            "oauth_no_confirm": True,
        }
    )
    c.Spawner.environment.update(lab_environment(settings))
    c.JupyterHub.template_paths.insert(0, str(TEMPLATES))
    # `sciplat admin clusters` and `sciplat bench dask` reach the gateway as the hub's CLI
    # service (when the full hub config defines it).
    services = {s.get("name") for s in c.JupyterHub.services}
    if OPERATOR_SERVICE in services:
        c.JupyterHub.load_roles.append(
            {
                "name": "dask-gateway-operator",
                "description": "Operate every user's dask-gateway clusters",
                "scopes": [GATEWAY_SCOPE],
                "services": [OPERATOR_SERVICE],
            }
        )

"""Register the API service with JupyterHub (called from the hub's configuration)."""

from __future__ import annotations

import sys
from typing import Any

from sciplat.config import Settings

__all__ = ["API_SERVICE_NAME", "configure"]

API_SERVICE_NAME = "api"


def configure(c: Any, settings: Settings) -> None:
    """Add the API service as a hub-managed service at ``/services/api``.

    The hub starts it with its own token and ``JUPYTERHUB_*`` environment; the service reads the
    platform settings from a file the hub configuration writes (mode 0600).
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings_file = settings.run_dir / "settings.json"
    settings_file.write_text(settings.model_dump_json(indent=2))
    settings_file.chmod(0o600)
    c.JupyterHub.services.append(
        {
            "name": API_SERVICE_NAME,
            "url": f"http://127.0.0.1:{settings.ports.api}",
            "command": [sys.executable, "-m", "sciplat.services", "--settings", str(settings_file)],
            "display": False,
            "oauth_no_confirm": True,
            # Importing every area takes > 30 s (JupyterHub's default) on a loaded 2-core host.
            "timeout": 120,
        }
    )

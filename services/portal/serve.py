"""Run the portal under uvicorn."""

from __future__ import annotations

from pathlib import Path

from sciplat.services.portal.app import create_app
from sciplat.services.serve import read_settings, run

__all__ = ["serve"]


def serve(settings_file: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve the portal for the settings in *settings_file* (JSON or YAML)."""
    settings = read_settings(settings_file)
    run(create_app, settings, host=host, port=port or settings.ports.portal, ws_max_size=16 * 2**20)

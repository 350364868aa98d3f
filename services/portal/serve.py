"""Run the portal under uvicorn."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import uvicorn

from sciplat.config import Settings
from sciplat.services.portal.app import create_app

__all__ = ["serve"]


def serve(settings_file: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve the portal for the settings in *settings_file* (JSON or YAML)."""
    text = settings_file.read_text()
    if settings_file.suffix == ".json":
        settings = Settings.model_validate(json.loads(text))
    else:
        from sciplat.config import load_settings

        settings = load_settings(settings_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port or settings.ports.portal,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        ws_max_size=16 * 2**20,
    )

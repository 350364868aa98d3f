"""Run the API service under uvicorn (what the hub's managed service executes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import uvicorn

from sciplat.config import Settings
from sciplat.services.app import create_app

__all__ = ["serve"]


def serve(settings_file: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve the API service for the settings in *settings_file* (JSON or YAML)."""
    text = settings_file.read_text()
    if settings_file.suffix == ".json":
        settings = Settings.model_validate(json.loads(text))
    else:
        from sciplat.config import load_settings

        settings = load_settings(settings_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port or settings.ports.api,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )

"""Run the API service under uvicorn (what the hub's managed service executes)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from sciplat.config import Settings

__all__ = ["KEEP_ALIVE_SECONDS", "read_settings", "run", "serve"]

KEEP_ALIVE_SECONDS = 600


def read_settings(settings_file: Path) -> Settings:
    """The settings in *settings_file* (JSON as the hub writes it, or YAML)."""
    text = settings_file.read_text()
    if settings_file.suffix == ".json":
        return Settings.model_validate(json.loads(text))
    from sciplat.config import load_settings

    return load_settings(settings_file)


def run(
    make_app: Callable[[Settings], Any], settings: Settings, *, host: str, port: int, **options: Any
) -> None:
    """Log to stderr and serve ``make_app(settings)`` behind the hub's proxy on loopback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        make_app(settings),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        # The proxy's upstream agent keeps idle sockets open without a limit; with uvicorn's
        # 5 s default it reused sockets uvicorn was closing ("socket hang up", a 503).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **options,
    )


def serve(settings_file: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
    """Serve the API service for the settings in *settings_file* (JSON or YAML)."""
    from sciplat.services.app import create_app

    settings = read_settings(settings_file)
    run(create_app, settings, host=host, port=port or settings.ports.api)

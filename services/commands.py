"""CLI of the API service: ``sciplat serve api``."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    @cli.group()
    def serve() -> None:
        """Run a platform service in the foreground."""

    @serve.command("api")
    @click.option(
        "--settings",
        "settings_file",
        type=click.Path(exists=True, path_type=Path),
        required=True,
        help="sciplat.yaml or the settings JSON the hub writes",
    )
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=None, help="default: settings.ports.api")
    def serve_api(settings_file: Path, host: str, port: int | None) -> None:
        """The sciplat API service (TAP, images, SCS, workspace, notebooks)."""
        from sciplat.services.serve import serve as run

        run(settings_file, host=host, port=port)
